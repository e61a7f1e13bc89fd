//! Asynchronous probes (tokio). Each takes a [`Probe`] and returns an [`Outcome`]
//! with a short reason; each enforces its own timeout (`connect_timeout`, or
//! `misc_timeout` for MISC_CHECK), so a probe never outlives [`Probe::budget`].

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::time::Instant;

use crate::sched::Outcome;

pub mod dns;
pub mod file;
pub mod http;
pub mod misc;
pub mod ping;
pub mod smtp;
pub mod udp;

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct Probe {
    pub kind: ProbeKind,
    /// `connect_ip` / `connect_port`, else the real server's address and port (port 0
    /// for probes that need none).
    pub target: SocketAddr,
    /// `bindto`: source address.
    pub bind_addr: Option<IpAddr>,
    /// `bind_port`: source port.
    pub bind_port: Option<u16>,
    /// `bind_if`: SO_BINDTODEVICE (and the scope of an IPv6 link-local target).
    pub bind_if: Option<String>,
    /// `fwmark`: SO_MARK on the probe's packets.
    pub fwmark: Option<u32>,
    /// `connect_timeout` (MISC_CHECK: `misc_timeout`).
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum ProbeKind {
    Http(http::Http),
    Tcp,
    Udp(udp::Udp),
    Dns(dns::Dns),
    Smtp(smtp::Smtp),
    Ping,
    Misc(misc::Misc),
    File(file::FileCheck),
    /// BFD_CHECK: evaluated by the runner from the session's events.
    Bfd(BfdCheck),
}

/// BFD_CHECK: up while the named `bfd_instance` is Up. Before its first event the
/// checker keeps its initial state (up, or down with `alpha`), as keepalived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdCheck {
    pub name: String,
    pub alpha: bool,
}

impl BfdCheck {
    /// The outcome given the session's last event (`None`: none yet).
    pub fn evaluate(&self, up: Option<bool>) -> Outcome {
        match up {
            Some(true) => Outcome::ok(),
            Some(false) => Outcome::fail(format!("BFD {} is down", self.name)),
            None if self.alpha => Outcome::fail(format!("BFD {}: not Up yet (alpha)", self.name)),
            None => Outcome::ok(),
        }
    }
}

impl Probe {
    /// The longest a run of this probe can take (the runner's backstop timeout adds a
    /// grace period on top).
    pub fn budget(&self) -> Duration {
        match &self.kind {
            ProbeKind::Http(h) => self.timeout * (h.urls().len().max(1) as u32),
            _ => self.timeout,
        }
    }

    /// Runs the probe once.
    ///
    /// Every probe is a task whose future holds the largest state of any kind it may
    /// run, alive as long as the probe is in flight (thousands at once at 10,000 real
    /// servers). HTTP_GET and TCP_CHECK, the common kinds, are kept inline; the other
    /// kinds' (larger) states are boxed, so they do not size every probe's task.
    pub async fn run(&self) -> Outcome {
        match &self.kind {
            ProbeKind::Http(h) => h.run(self).await,
            ProbeKind::Tcp => tcp_check(self).await,
            ProbeKind::Udp(u) => Box::pin(u.run(self)).await,
            ProbeKind::Dns(d) => Box::pin(d.run(self)).await,
            ProbeKind::Smtp(s) => Box::pin(s.run(self)).await,
            ProbeKind::Ping => Box::pin(ping::run(self)).await,
            ProbeKind::Misc(m) => Box::pin(m.run()).await,
            ProbeKind::File(f) => f.evaluate(file::read_value(&f.path)),
            // The runner evaluates BFD_CHECK from the events it is given; run alone
            // (no events), it reports what it starts with.
            ProbeKind::Bfd(b) => b.evaluate(None),
        }
    }

    /// The address to connect to, with the scope of `bind_if` for an IPv6
    /// link-local target.
    pub(crate) fn target_addr(&self) -> SocketAddr {
        match self.target {
            SocketAddr::V6(a) if a.scope_id() == 0 && is_link_local(a.ip()) => {
                let scope = self
                    .bind_if
                    .as_deref()
                    .and_then(|i| nix::net::if_::if_nametoindex(i).ok())
                    .unwrap_or(0);
                SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0, scope))
            }
            a => a,
        }
    }

    /// A non-blocking socket of the target's family with the source options applied.
    pub(crate) fn socket(&self, ty: Type, proto: Option<Protocol>) -> io::Result<Socket> {
        let domain = Domain::for_address(self.target);
        let s = Socket::new(domain, ty.nonblocking().cloexec(), proto)?;
        self.configure(&s)?;
        Ok(s)
    }

    /// Applies fwmark, bind_if, bindto and bind_port to a socket.
    pub(crate) fn configure(&self, s: &Socket) -> io::Result<()> {
        if let Some(mark) = self.fwmark {
            s.set_mark(mark)?;
        }
        if let Some(dev) = &self.bind_if {
            s.bind_device(Some(dev.as_bytes()))?;
        }
        if self.bind_addr.is_some() || self.bind_port.is_some() {
            let ip = self.bind_addr.unwrap_or(match self.target {
                SocketAddr::V4(_) => IpAddr::from([0u8; 4]),
                SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
            });
            if self.bind_port.is_some() {
                s.set_reuse_address(true)?;
            }
            let mut local = SocketAddr::new(ip, self.bind_port.unwrap_or(0));
            if let (SocketAddr::V6(l), Some(dev)) = (&mut local, &self.bind_if) {
                if is_link_local(l.ip()) {
                    l.set_scope_id(nix::net::if_::if_nametoindex(dev.as_str()).unwrap_or(0));
                }
            }
            s.bind(&SockAddr::from(local))?;
        }
        Ok(())
    }
}

fn is_link_local(ip: &std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// An io::Error as a short lowercase reason: "connection refused".
pub(crate) fn short(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s.to_string(),
    }
}

/// `1.5s`, `5s`, `250ms`.
pub(crate) fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let n = format!("{:.3}", d.as_secs_f64());
        format!("{}s", n.trim_end_matches('0'))
    }
}

/// Runs `fut` until `deadline`; on expiry fails with "`stage`: timed out".
pub(crate) async fn until<T>(
    deadline: Instant,
    stage: &str,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("{stage}: timed out")),
    }
}

/// A UDP socket connected to the probe's target, honouring the source options (ICMP
/// errors for the target then surface on its receives).
pub(crate) async fn udp_connect(p: &Probe) -> Result<tokio::net::UdpSocket, String> {
    let s = p
        .socket(Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket: {}", short(&e)))?;
    let sock = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))
        .map_err(|e| format!("socket: {}", short(&e)))?;
    sock.connect(p.target_addr())
        .await
        .map_err(|e| format!("connect: {}", short(&e)))?;
    Ok(sock)
}

/// Connects a TCP stream to the probe's target, honouring the source options.
pub(crate) async fn tcp_connect(p: &Probe) -> Result<tokio::net::TcpStream, String> {
    let s = p
        .socket(Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("socket: {}", short(&e)))?;
    let sock = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(s));
    // No TCP_NODELAY: no probe writes in pieces that Nagle could hold back.
    sock.connect(p.target_addr())
        .await
        .map_err(|e| format!("connect: {}", short(&e)))
}

/// Connects for a protocol where the client speaks first (HTTP, TLS) and sends
/// `first` (may be empty), returning how much of it went out.
///
/// Cheaper on the wire and in the kernel than [`tcp_connect`] plus a write:
/// * the handshake's last ACK is held back (`TCP_DEFER_ACCEPT` on a client socket) and
///   rides on the first data: one packet fewer per probe, and for the server one
///   round of processing fewer (nothing waits for that ACK alone: the client speaks
///   next anyway). Never for SMTP, where the server speaks first;
/// * when the handshake completes within `connect()` (a local or near server), `first`
///   goes out at once, without a trip through the event loop; otherwise it is sent when
///   the connection is up.
///
/// A failure of that first send is a failure to connect (the refusal or reset of the
/// handshake is what it reports).
pub(crate) async fn tcp_connect_first(
    p: &Probe,
    first: &[u8],
) -> Result<(tokio::net::TcpStream, usize), String> {
    let s = p
        .socket(Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("socket: {}", short(&e)))?;
    // Best effort: without it the ACK is just sent on its own.
    let _ = defer_handshake_ack(&s);
    match s.connect(&SockAddr::from(p.target_addr())) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(format!("connect: {}", short(&e))),
    }
    let sent = if first.is_empty() {
        None
    } else {
        match s.send(first) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => return Err(format!("connect: {}", short(&e))),
        }
    };
    let stream = tokio::net::TcpStream::from_std(std::net::TcpStream::from(s))
        .map_err(|e| format!("socket: {}", short(&e)))?;
    if let Some(n) = sent {
        return Ok((stream, n));
    }
    // Still connecting: wait for it like tokio's connect does.
    stream
        .writable()
        .await
        .map_err(|e| format!("connect: {}", short(&e)))?;
    if let Some(e) = stream
        .take_error()
        .map_err(|e| format!("connect: {}", short(&e)))?
    {
        return Err(format!("connect: {}", short(&e)));
    }
    Ok((stream, 0))
}

/// `TCP_DEFER_ACCEPT` on a connecting socket: Linux then delays the handshake's final
/// ACK (up to 200 ms) for data or a FIN to carry it.
fn defer_handshake_ack(s: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a valid pointer, on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Before closing a stream: if the server has closed its side already (its FIN came
/// in, as it does right after the response of an HTTP/1.0 or `Connection: close`
/// exchange), close with RST instead of FIN, so that the server does not keep a
/// TIME_WAIT socket for every probe and neither side goes through the FIN/ACK
/// exchange. The server cannot tell the difference, having closed already; one that
/// has not gets the usual FIN. (HAProxy closes its health checks with RST as well.)
pub(crate) async fn close_after_peer(stream: &tokio::net::TcpStream) {
    // What the event loop has seen of the stream: no syscall.
    let peer_closed = tokio::select! {
        biased;
        r = stream.ready(tokio::io::Interest::READABLE) => r.is_ok_and(|r| r.is_read_closed()),
        () = std::future::ready(()) => false,
    };
    if peer_closed {
        let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    }
}

async fn tcp_check(p: &Probe) -> Outcome {
    let deadline = Instant::now() + p.timeout;
    match until(deadline, "connect", tcp_connect_close(p)).await {
        Ok(()) => Outcome::ok(),
        Err(e) => Outcome::fail(e),
    }
}

/// TCP_CHECK: connects and closes (FIN; with the handshake's last ACK held back, the
/// FIN carries it). When the handshake completes within `connect()`, nothing goes
/// through the event loop.
async fn tcp_connect_close(p: &Probe) -> Result<(), String> {
    let s = p
        .socket(Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("socket: {}", short(&e)))?;
    let _ = defer_handshake_ack(&s);
    match s.connect(&SockAddr::from(p.target_addr())) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(format!("connect: {}", short(&e))),
    }
    // Connected already? (Not while connecting, nor after a refusal.)
    if s.peer_addr().is_ok() {
        return Ok(());
    }
    let stream = tokio::net::TcpStream::from_std(std::net::TcpStream::from(s))
        .map_err(|e| format!("socket: {}", short(&e)))?;
    stream
        .writable()
        .await
        .map_err(|e| format!("connect: {}", short(&e)))?;
    match stream.take_error() {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(format!("connect: {}", short(&e))),
    }
}

/// A small non-cryptographic random number (DNS ids, UDP payloads, ping cookies).
pub(crate) fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let mut x = t ^ n ^ ((std::process::id() as u64) << 32);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reasons() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(short(&e), "connection refused");
        assert_eq!(secs(Duration::from_secs(5)), "5s");
        assert_eq!(secs(Duration::from_millis(250)), "250ms");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
    }
}
