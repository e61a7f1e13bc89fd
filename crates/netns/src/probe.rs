//! The [`Prober`]: a high-rate ICMP echo prober for outage measurement.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::Netns;

/// Options for [`Prober::start`].
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Time between echo requests. Default 1 ms.
    pub interval: Duration,
    /// Stop sending after this long (then [`Prober::wait`] returns). `None`
    /// (default): until [`Prober::stop`].
    pub duration: Option<Duration>,
    /// Bind to this interface (`SO_BINDTODEVICE`); required for IPv6
    /// link-local targets (it supplies the scope id). Default `None`.
    pub interface: Option<String>,
    /// How long [`Prober::stop`] keeps listening for replies still in flight
    /// after the last request. Default 20 ms.
    pub grace: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            interval: Duration::from_millis(1),
            duration: None,
            interface: None,
            grace: Duration::from_millis(20),
        }
    }
}

impl ProbeOptions {
    /// Default options with the given interval.
    pub fn every(interval: Duration) -> Self {
        ProbeOptions {
            interval,
            ..Default::default()
        }
    }
}

/// One answered echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Sequence number of the request (0, 1, 2, … — not wrapped at 16 bits).
    pub seq: u64,
    /// When the request was sent.
    pub sent_at: Instant,
    /// When the reply was received.
    pub received_at: Instant,
}

impl Reply {
    /// Round-trip time.
    pub fn rtt(&self) -> Duration {
        self.received_at.saturating_duration_since(self.sent_at)
    }
}

/// What a [`Prober`] saw.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The probed address.
    pub target: IpAddr,
    /// Requested interval between requests.
    pub interval: Duration,
    /// When probing started (just before the first request).
    pub start: Instant,
    /// When probing ended (after the last request).
    pub end: Instant,
    /// Echo requests sent (attempted; see `send_errors`).
    pub sent: u64,
    /// Requests that were answered (each counted once).
    pub received: u64,
    /// Extra replies to already answered requests.
    pub duplicates: u64,
    /// `sendto` failures (e.g. no route / neighbour unreachable).
    pub send_errors: u64,
    /// Answered requests, ordered by receive time.
    pub replies: Vec<Reply>,
}

impl ProbeReport {
    /// Largest interval between two consecutive received replies. With fewer
    /// than two replies there is no continuity at all, and the whole probing
    /// time (`end - start`) is returned.
    pub fn largest_gap(&self) -> Duration {
        if self.replies.len() < 2 {
            return self.end.saturating_duration_since(self.start);
        }
        self.replies
            .windows(2)
            .map(|w| w[1].received_at.saturating_duration_since(w[0].received_at))
            .max()
            .unwrap_or_default()
    }

    /// Sequence numbers of requests that got no reply (not counting requests whose
    /// send failed). Unlike a gap between replies, which a stalled prober thread on a
    /// loaded machine also produces, a lost request means the target did not answer.
    pub fn lost(&self) -> Vec<u64> {
        let mut answered = vec![false; self.sent as usize];
        for r in &self.replies {
            if let Some(a) = answered.get_mut(r.seq as usize) {
                *a = true;
            }
        }
        (0..self.sent).filter(|&s| !answered[s as usize]).collect()
    }

    /// Periods without replies longer than `threshold`, as
    /// `(start offset from self.start, duration)`. An outage starts at the
    /// last reply before it (or at `start`) and ends at the first reply
    /// after it (or at `end`, for an outage that lasted until the end).
    pub fn outages(&self, threshold: Duration) -> Vec<(Duration, Duration)> {
        let mut edges = Vec::with_capacity(self.replies.len() + 2);
        edges.push(self.start);
        edges.extend(self.replies.iter().map(|r| r.received_at));
        edges.push(self.end.max(*edges.last().expect("non-empty")));
        edges
            .windows(2)
            .filter_map(|w| {
                let d = w[1].saturating_duration_since(w[0]);
                (d > threshold).then(|| (w[0].saturating_duration_since(self.start), d))
            })
            .collect()
    }

    /// Replies received at or after `t`.
    pub fn received_after(&self, t: Instant) -> usize {
        self.replies.iter().filter(|r| r.received_at >= t).count()
    }

    /// The first reply received at or after `t`.
    pub fn first_reply_after(&self, t: Instant) -> Option<&Reply> {
        self.replies.iter().find(|r| r.received_at >= t)
    }

    /// The last reply received before `t`.
    pub fn last_reply_before(&self, t: Instant) -> Option<&Reply> {
        self.replies.iter().rev().find(|r| r.received_at < t)
    }

    /// Largest round-trip time seen.
    pub fn max_rtt(&self) -> Duration {
        self.replies
            .iter()
            .map(Reply::rtt)
            .max()
            .unwrap_or_default()
    }

    /// Fraction of requests not answered (0.0 – 1.0).
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }
}

struct Shared {
    stop_send: AtomicBool,
    stop_recv: AtomicBool,
    received: AtomicU64,
    sent: AtomicU64,
}

struct SendLog {
    sent_at: Vec<Instant>,
    errors: u64,
    end: Instant,
}

/// Sends ICMP/ICMPv6 echo requests from a namespace to a target at a fixed
/// rate and records every reply's receive time (on the [`Instant`] clock,
/// i.e. CLOCK_MONOTONIC — comparable with [`Capture`](crate::Capture)
/// timestamps).
///
/// A sender thread sleeps to absolute deadlines (`clock_nanosleep`,
/// `TIMER_ABSTIME`, 1 ns timer slack); a second thread blocks on the raw
/// socket, so receive timestamps aren't delayed by the send schedule. Each
/// request carries a per-prober token and a 64-bit sequence number, so
/// several probers can run in one namespace.
///
/// Dropping a `Prober` without [`stop`](Self::stop) stops it as well.
pub struct Prober {
    shared: Arc<Shared>,
    sender: Option<JoinHandle<SendLog>>,
    receiver: Option<JoinHandle<Vec<(u64, Instant)>>>,
    target: IpAddr,
    interval: Duration,
    grace: Duration,
    start: Instant,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("target", &self.target)
            .field("interval", &self.interval)
            .field("sent", &self.sent())
            .field("received", &self.received())
            .finish()
    }
}

const ICMP_ECHO: u8 = 8;
const ICMP_ECHOREPLY: u8 = 0;
const ICMP6_ECHO: u8 = 128;
const ICMP6_ECHOREPLY: u8 = 129;
const PAYLOAD_LEN: usize = 16;

impl Prober {
    /// Starts probing `target` from namespace `ns`.
    pub fn start(ns: &Netns, target: IpAddr, opts: ProbeOptions) -> Result<Prober> {
        anyhow::ensure!(!opts.interval.is_zero(), "probe interval must be > 0");
        let iface = opts.interface.clone();
        let (socket, scope) = ns
            .run(move || open_socket(target, iface.as_deref()))?
            .with_context(|| format!("opening ICMP socket in {}", ns.name()))?;
        let dest: SockAddr = match target {
            IpAddr::V4(_) => SocketAddr::new(target, 0).into(),
            IpAddr::V6(v6) => SocketAddrV6::new(v6, 0, 0, scope).into(),
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let token: u64 = ((std::process::id() as u64) << 32)
            | ((N.fetch_add(1, Ordering::Relaxed) as u64 & 0xffff) << 16)
            | (nanos_now() & 0xffff);
        let ident = (token ^ (token >> 16) ^ (token >> 32)) as u16;

        let shared = Arc::new(Shared {
            stop_send: AtomicBool::new(false),
            stop_recv: AtomicBool::new(false),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        let rsock = socket.try_clone()?;
        rsock.set_read_timeout(Some(Duration::from_millis(10)))?;
        let sh = shared.clone();
        let receiver = std::thread::Builder::new()
            .name("probe-rx".into())
            .spawn(move || receive_loop(rsock, target, token, &sh))?;

        let start = Instant::now();
        let sh = shared.clone();
        let (interval, duration) = (opts.interval, opts.duration);
        let sender = std::thread::Builder::new()
            .name("probe-tx".into())
            .spawn(move || {
                send_loop(socket, dest, target, ident, token, interval, duration, &sh)
            })?;
        Ok(Prober {
            shared,
            sender: Some(sender),
            receiver: Some(receiver),
            target,
            interval: opts.interval,
            grace: opts.grace,
            start,
        })
    }

    /// Probes for `duration` and returns the report (blocking).
    pub fn probe_for(
        ns: &Netns,
        target: IpAddr,
        interval: Duration,
        duration: Duration,
    ) -> Result<ProbeReport> {
        let p = Prober::start(
            ns,
            target,
            ProbeOptions {
                interval,
                duration: Some(duration),
                ..Default::default()
            },
        )?;
        Ok(p.wait())
    }

    /// The probed address.
    pub fn target(&self) -> IpAddr {
        self.target
    }

    /// When probing started.
    pub fn started_at(&self) -> Instant {
        self.start
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Replies received so far (including duplicates).
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Stops sending, listens `grace` longer for late replies, and returns
    /// the report.
    pub fn stop(mut self) -> ProbeReport {
        self.shared.stop_send.store(true, Ordering::Relaxed);
        self.finish()
    }

    /// Waits for the configured `duration` to elapse (like [`stop`](Self::stop)
    /// if none was configured) and returns the report.
    pub fn wait(mut self) -> ProbeReport {
        self.finish()
    }

    fn finish(&mut self) -> ProbeReport {
        let log = match self.sender.take().map(JoinHandle::join) {
            Some(Ok(log)) => log,
            _ => SendLog {
                sent_at: vec![],
                errors: 0,
                end: Instant::now(),
            },
        };
        std::thread::sleep(self.grace);
        self.shared.stop_recv.store(true, Ordering::Relaxed);
        let raw = match self.receiver.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => vec![],
        };
        let mut seen = vec![false; log.sent_at.len()];
        let mut replies = Vec::with_capacity(raw.len());
        let mut duplicates = 0;
        for (seq, at) in raw {
            let Some(sent_at) = log.sent_at.get(seq as usize) else {
                continue;
            };
            if std::mem::replace(&mut seen[seq as usize], true) {
                duplicates += 1;
                continue;
            }
            replies.push(Reply {
                seq,
                sent_at: *sent_at,
                received_at: at,
            });
        }
        replies.sort_by_key(|r| r.received_at);
        ProbeReport {
            target: self.target,
            interval: self.interval,
            start: self.start,
            end: log.end,
            sent: log.sent_at.len() as u64,
            received: replies.len() as u64,
            duplicates,
            send_errors: log.errors,
            replies,
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.shared.stop_send.store(true, Ordering::Relaxed);
        self.shared.stop_recv.store(true, Ordering::Relaxed);
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
    }
}

/// Runs inside the namespace: raw ICMP(v6) socket that only passes echo
/// replies; returns it with the interface's scope id (0 if none).
fn open_socket(target: IpAddr, iface: Option<&str>) -> Result<(Socket, u32)> {
    let socket = match target {
        IpAddr::V4(_) => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?,
        IpAddr::V6(_) => Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?,
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    match target {
        IpAddr::V4(_) => {
            // ICMP_FILTER: a set bit drops that type.
            let mask: u32 = !(1u32 << ICMP_ECHOREPLY);
            setsockopt(fd, libc::SOL_RAW, 1 /* ICMP_FILTER */, &mask)?;
        }
        IpAddr::V6(_) => {
            // ICMP6_FILTER: a set bit blocks that type.
            let mut filter = [u32::MAX; 8];
            filter[(ICMP6_ECHOREPLY >> 5) as usize] &= !(1u32 << (ICMP6_ECHOREPLY & 31));
            setsockopt(fd, libc::IPPROTO_ICMPV6, 1 /* ICMP6_FILTER */, &filter)?;
        }
    }
    let _ = socket.set_recv_buffer_size(1 << 20);
    let mut scope = 0;
    if let Some(name) = iface {
        socket.bind_device(Some(name.as_bytes()))?;
        let c = std::ffi::CString::new(name)?;
        scope = unsafe { libc::if_nametoindex(c.as_ptr()) };
        anyhow::ensure!(scope != 0, "no interface {name}");
    }
    Ok((socket, scope))
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, val: &T) -> std::io::Result<()> {
    // SAFETY: `val` points to a live T of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn nanos_now() -> u64 {
    let ts = monotonic_now();
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

fn ts_add(ts: libc::timespec, nanos: u64) -> libc::timespec {
    let total = ts.tv_nsec as u64 + nanos;
    libc::timespec {
        tv_sec: ts.tv_sec + (total / 1_000_000_000) as libc::time_t,
        tv_nsec: (total % 1_000_000_000) as libc::c_long,
    }
}

fn ts_nanos(ts: &libc::timespec) -> u128 {
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Sleeps until the absolute CLOCK_MONOTONIC time `until`.
fn sleep_until(until: &libc::timespec) {
    loop {
        // SAFETY: valid pointers.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                until,
                std::ptr::null_mut(),
            )
        };
        if r != libc::EINTR {
            return;
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, ident: u16, token: u64, seq: u64) -> [u8; 8 + PAYLOAD_LEN] {
    let mut p = [0u8; 8 + PAYLOAD_LEN];
    p[0] = if v6 { ICMP6_ECHO } else { ICMP_ECHO };
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&(seq as u16).to_be_bytes());
    p[8..16].copy_from_slice(&token.to_be_bytes());
    p[16..24].copy_from_slice(&seq.to_be_bytes());
    if !v6 {
        // The kernel computes ICMPv6 checksums for raw ICMPv6 sockets.
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

#[allow(clippy::too_many_arguments)]
fn send_loop(
    socket: Socket,
    dest: SockAddr,
    target: IpAddr,
    ident: u16,
    token: u64,
    interval: Duration,
    duration: Option<Duration>,
    sh: &Shared,
) -> SendLog {
    // SAFETY: plain prctl; 1 ns timer slack for precise wake-ups.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let v6 = target.is_ipv6();
    let step = interval.as_nanos() as u64;
    let max_sleep = 10_000_000u64; // wake at least every 10 ms to check `stop`
    let t0 = monotonic_now();
    let t0_instant = Instant::now();
    let mut log = SendLog {
        sent_at: Vec::with_capacity(
            duration.map_or(1 << 16, |d| (d.as_nanos() / step as u128) as usize + 2),
        ),
        errors: 0,
        end: t0_instant,
    };
    let mut slot: u64 = 0;
    loop {
        if sh.stop_send.load(Ordering::Relaxed) {
            break;
        }
        let offset = slot * step;
        if duration.is_some_and(|d| offset as u128 >= d.as_nanos()) {
            break;
        }
        // Sleep towards the deadline, in bounded chunks so `stop` is seen.
        let deadline = ts_add(t0, offset);
        loop {
            let now = monotonic_now();
            let (n, d) = (ts_nanos(&now), ts_nanos(&deadline));
            if n >= d {
                break;
            }
            if d - n > max_sleep as u128 {
                sleep_until(&ts_add(now, max_sleep));
                if sh.stop_send.load(Ordering::Relaxed) {
                    break;
                }
            } else {
                sleep_until(&deadline);
            }
        }
        if sh.stop_send.load(Ordering::Relaxed) {
            break;
        }
        let seq = log.sent_at.len() as u64;
        let pkt = echo_request(v6, ident, token, seq);
        let at = Instant::now();
        if socket.send_to(&pkt, &dest).is_err() {
            log.errors += 1;
        }
        log.sent_at.push(at);
        sh.sent.fetch_add(1, Ordering::Relaxed);
        // Next slot; if we fell behind by more than one interval (preempted),
        // skip the missed slots rather than sending a burst.
        slot += 1;
        let behind = (ts_nanos(&monotonic_now()) - ts_nanos(&t0)) as u64;
        if behind > slot * step + step {
            slot = behind / step + 1;
        }
    }
    log.end = Instant::now();
    log
}

fn receive_loop(socket: Socket, target: IpAddr, token: u64, sh: &Shared) -> Vec<(u64, Instant)> {
    let mut out = Vec::with_capacity(1 << 14);
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    while !sh.stop_recv.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue, // timeout / EINTR: re-check the stop flag
        };
        let at = Instant::now();
        // SAFETY: recv_from initialised the first n bytes.
        let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) };
        if from.as_socket().map(|s| s.ip()) != Some(target) {
            continue;
        }
        let icmp = match target {
            IpAddr::V4(_) => {
                let ihl = (data.first().copied().unwrap_or(0) & 0x0f) as usize * 4;
                if ihl < 20 || data.len() < ihl {
                    continue;
                }
                &data[ihl..]
            }
            IpAddr::V6(_) => data,
        };
        if icmp.len() < 8 + PAYLOAD_LEN {
            continue;
        }
        let want = if target.is_ipv6() {
            ICMP6_ECHOREPLY
        } else {
            ICMP_ECHOREPLY
        };
        if icmp[0] != want || icmp[8..16] != token.to_be_bytes() {
            continue;
        }
        let seq = u64::from_be_bytes(icmp[16..24].try_into().expect("8 bytes"));
        out.push((seq, at));
        sh.received.fetch_add(1, Ordering::Relaxed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(start: Instant, replies_ms: &[u64], end_ms: u64) -> ProbeReport {
        let ms = |m| start + Duration::from_millis(m);
        ProbeReport {
            target: "192.0.2.1".parse().unwrap(),
            interval: Duration::from_millis(1),
            start,
            end: ms(end_ms),
            sent: end_ms,
            received: replies_ms.len() as u64,
            duplicates: 0,
            send_errors: 0,
            replies: replies_ms
                .iter()
                .enumerate()
                .map(|(i, &m)| Reply {
                    seq: i as u64,
                    sent_at: ms(m),
                    received_at: ms(m),
                })
                .collect(),
        }
    }

    #[test]
    fn gaps_and_outages() {
        let s = Instant::now();
        let r = report(s, &[1, 2, 3, 50, 51, 52], 100);
        assert_eq!(r.largest_gap(), Duration::from_millis(47));
        let o = r.outages(Duration::from_millis(10));
        assert_eq!(
            o,
            vec![
                (Duration::from_millis(3), Duration::from_millis(47)),
                (Duration::from_millis(52), Duration::from_millis(48)),
            ]
        );
        assert_eq!(r.received_after(s + Duration::from_millis(50)), 3);
        assert_eq!(
            r.first_reply_after(s + Duration::from_millis(4))
                .unwrap()
                .seq,
            3
        );
        let none = report(s, &[], 30);
        assert_eq!(none.largest_gap(), Duration::from_millis(30));
        assert_eq!(
            none.outages(Duration::from_millis(5)),
            vec![(Duration::ZERO, Duration::from_millis(30))]
        );
    }

    #[test]
    fn icmp_checksum_is_valid() {
        let p = echo_request(false, 0x1234, 42, 7);
        assert_eq!(checksum(&p), 0);
        assert_eq!(p[0], ICMP_ECHO);
        assert_eq!(&p[6..8], &7u16.to_be_bytes());
    }
}
