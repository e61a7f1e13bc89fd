//! `vipd bench probe-floor` (started by `vipd bench checkers --floor`): the kernel's
//! share of an HTTP health check, measured with the least a client can do.
//!
//! One thread, one epoll set, no runtime, no parsing, no state beyond a file
//! descriptor: each server is checked once per `delay_loop`, spread evenly like the
//! daemons' checkers (those due within 10 ms started together, as vipd does), with a
//! non-blocking connect, one `send` of the request the
//! daemons send, `recv` until the server closes, `close`. What this process costs is
//! then (almost) only the kernel's work for the connection — the syscalls, TCP on both
//! ends of the veth as far as it runs in the sender's context — which any checker
//! that opens a connection per check, as keepalived's HTTP_GET does, pays as well.
//!
//! * **plain**: connect, wait for writable, send, read to EOF, close (FIN): what a
//!   straightforward event-loop checker does.
//! * **lean**: the tricks vipd's checker uses (crates/check `tcp_connect_first`,
//!   `close_after_peer`): the handshake's last ACK held back to ride on the request
//!   (`TCP_DEFER_ACCEPT`), the request sent straight from `connect` when the handshake
//!   completed inside it, and RST instead of FIN after the server has closed.
//!
//! Nothing is checked in the answer: a floor, not a checker.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    /// Connect, wait for writable, send, read to EOF, close with FIN.
    Plain,
    /// vipd's wire tricks: deferred handshake ACK, send from connect, RST close.
    Lean,
}

impl FloorKind {
    pub fn name(self) -> &'static str {
        match self {
            FloorKind::Plain => "floor-plain",
            FloorKind::Lean => "floor-lean",
        }
    }
}

impl std::fmt::Display for FloorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FloorKind::Plain => "plain",
            FloorKind::Lean => "lean",
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct ProbeFloorArgs {
    /// The servers' address.
    #[arg(long)]
    pub target: Ipv4Addr,
    /// The first server's port; the others follow it.
    #[arg(long)]
    pub first_port: u16,
    /// How many servers (ports).
    #[arg(long)]
    pub servers: usize,
    /// Seconds between two checks of one server.
    #[arg(long, default_value_t = 1.0)]
    pub delay_loop: f64,
    /// Which client.
    #[arg(long, value_enum)]
    pub kind: FloorKind,
}

/// A connection gives up after this long (the daemons' `connect_timeout 3`).
const GIVE_UP: Duration = Duration::from_secs(3);

/// What is in flight on one descriptor.
#[derive(Clone, Copy)]
struct Conn {
    started: Instant,
    sent: bool,
}

pub fn run(a: ProbeFloorArgs) -> Result<ExitCode> {
    if a.servers == 0 || a.delay_loop <= 0.0 {
        bail!("--servers and --delay-loop must be positive");
    }
    let request = format!(
        "GET / HTTP/1.0\r\nHost: {}\r\nUser-Agent: KeepAliveClient\r\n\r\n",
        a.target
    )
    .into_bytes();
    // SAFETY: plain syscalls on descriptors this function owns; every buffer passed
    // is valid for the length given.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        bail!("epoll_create1: {}", std::io::Error::last_os_error());
    }
    let start = Instant::now();
    let step_ns = (a.delay_loop * 1e9 / a.servers as f64) as u64;
    let due_at = |k: u64| start + Duration::from_nanos(step_ns * k);
    let mut next = 0u64; // checks started so far; check k is due at start + k·step
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 2048];
    let mut last_sweep = Instant::now();
    loop {
        let now = Instant::now();
        // Checks due within the next 10 ms start now, as vipd's checker starts them:
        // one wake-up for several.
        while due_at(next) <= now + vipd_check::runner::START_TOGETHER {
            let port = a.first_port + (next % a.servers as u64) as u16;
            next += 1;
            if let Some((fd, c)) = open(a.kind, SocketAddrV4::new(a.target, port), &request, ep) {
                let i = fd as usize;
                if conns.len() <= i {
                    conns.resize(i + 1, None);
                }
                conns[i] = Some(c);
            }
        }
        if now.duration_since(last_sweep) >= Duration::from_secs(1) {
            last_sweep = now;
            for (fd, c) in conns.iter_mut().enumerate() {
                if c.is_some_and(|c| now.duration_since(c.started) > GIVE_UP) {
                    *c = None;
                    // SAFETY: fd is ours (recorded when opened, not yet closed).
                    unsafe { libc::close(fd as RawFd) };
                }
            }
        }
        let due = due_at(next);
        let wait_ms = due
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000) as i32;
        // SAFETY: events has room for its length.
        let n = unsafe {
            libc::epoll_wait(
                ep,
                events.as_mut_ptr(),
                events.len() as i32,
                wait_ms.min(1000),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("epoll_wait: {e}");
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            let Some(Some(c)) = conns.get_mut(fd as usize) else {
                continue;
            };
            let failed = ev.events & (libc::EPOLLERR as u32) != 0;
            if !c.sent && !failed && ev.events & (libc::EPOLLOUT as u32) != 0 {
                // SAFETY: fd is an open socket of ours; request outlives the call.
                let r = unsafe { libc::send(fd, request.as_ptr().cast(), request.len(), 0) };
                if r < 0 {
                    finish(&mut conns, fd, false);
                    continue;
                }
                c.sent = true;
                let mut e = libc::epoll_event {
                    events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                    u64: fd as u64,
                };
                // SAFETY: fd is registered in ep.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, &mut e) };
                continue;
            }
            if failed {
                finish(&mut conns, fd, false);
                continue;
            }
            if ev.events & ((libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32) != 0 {
                // Read what is there; the server closes after its answer.
                let eof = loop {
                    // SAFETY: buf is valid for its length.
                    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                    if r > 0 {
                        continue;
                    }
                    if r == 0 {
                        break Some(true);
                    }
                    let e = std::io::Error::last_os_error();
                    break if e.kind() == std::io::ErrorKind::WouldBlock {
                        None
                    } else {
                        Some(false)
                    };
                };
                if let Some(clean) = eof {
                    finish(&mut conns, fd, clean && a.kind == FloorKind::Lean);
                }
            }
        }
    }
}

/// Starts one check: a non-blocking socket, connect, and (lean, when the handshake
/// completed inside connect) the request at once. Registered in `ep` for what comes
/// next.
fn open(kind: FloorKind, to: SocketAddrV4, request: &[u8], ep: RawFd) -> Option<(RawFd, Conn)> {
    // SAFETY: plain syscalls on a descriptor created here; the address and option
    // buffers are valid for the lengths given.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return None;
        }
        if kind == FloorKind::Lean {
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: to.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*to.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let connected = r == 0;
        if !connected && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            libc::close(fd);
            return None;
        }
        let mut sent = false;
        if kind == FloorKind::Lean && connected {
            if libc::send(fd, request.as_ptr().cast(), request.len(), 0) < 0 {
                libc::close(fd);
                return None;
            }
            sent = true;
        }
        let mut e = libc::epoll_event {
            events: if sent {
                (libc::EPOLLIN | libc::EPOLLRDHUP) as u32
            } else {
                libc::EPOLLOUT as u32
            },
            u64: fd as u64,
        };
        if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut e) < 0 {
            libc::close(fd);
            return None;
        }
        Some((
            fd,
            Conn {
                started: Instant::now(),
                sent,
            },
        ))
    }
}

/// Ends a check: closes the socket (with RST when `reset`: the server has closed).
fn finish(conns: &mut [Option<Conn>], fd: RawFd, reset: bool) {
    conns[fd as usize] = None;
    // SAFETY: fd is an open socket of ours; closing drops it from the epoll set.
    unsafe {
        if reset {
            let l = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        libc::close(fd);
    }
}
