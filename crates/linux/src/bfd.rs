//! The BFD thread ("vipd-bfd"): runs the `bfd_instance` sessions of the plan with the
//! sans-IO engine of `vipd-bfd`, on a thread of its own (tuned by `bfd_priority` /
//! `bfd_rt_priority`) so that no checker, script or VRRP work delays a BFD packet.
//!
//! * Receiving: one UDP socket per address family and destination port (3784; 4784
//!   only while a multihop session exists), reporting the TTL / hop limit and the
//!   destination address of every packet. A packet goes to the session whose local
//!   discriminator is its Your Discriminator, or — Your Discriminator 0 — to the
//!   session of its (source, destination, hop mode); others are counted as unmatched.
//! * Sending: one UDP socket per session, bound to its `source_ip` (if any) and the
//!   first free port of RFC 5881's range drawn for the session, TTL / hop limit set.
//!   Send errors are counted, and logged once per errno.
//! * Timers: the thread sleeps in `ppoll` until the earliest session deadline
//!   (microseconds on the monotonic clock) or a packet or a command.
//! * Events, with keepalived's meaning: `Up` when a session enters Up, `Down` when it
//!   leaves Up, except when the peer took it administratively down.
//! * Reload ([`BfdHandle::configure`]): sessions are the same across reloads when their
//!   (neighbour, source, multihop) are; a changed interval or multiplier is applied
//!   with a Poll Sequence (no flap); other changes restart the session; a removed
//!   session is taken AdminDown and closed one detection time later.

use crate::plan::{BfdKey, BfdPlan, BfdSessionPlan};
use crate::status::{BfdSessionStatus, IoErrors, Snapshot};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vipd_bfd::engine::Micros;
use vipd_bfd::{Action, RxMeta, Session, State};

/// What the BFD thread reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BfdEvent {
    /// A session's state changed (every change, for the log and `vipd events`).
    Changed {
        name: String,
        from: State,
        to: State,
        diagnostic: String,
    },
    /// keepalived's BFD event: `up` on entering Up, `!up` on leaving Up (not when the
    /// peer signalled AdminDown). Also sent for every session after a configuration,
    /// so whoever tracks it learns its current state; `to_vrrp` / `to_checker` say who
    /// listens (`vrrp` / `checker` in the `bfd_instance`).
    Tracked {
        name: String,
        up: bool,
        to_vrrp: bool,
        to_checker: bool,
        /// `false` for the report of the current state after a configuration.
        transition: bool,
    },
    /// The session left Up because the peer signalled AdminDown: not a failure, so
    /// trackers hear nothing (keepalived's rule), but it is no longer Up, so a
    /// `bfd_takeover` forgets since when it was (else a session that comes back and
    /// fails at once would pass the `min_up` guard on its earlier Up time).
    PeerAdminDown { name: String, to_vrrp: bool },
    /// A socket could not be opened or bound (the session stays down).
    Error { name: String, error: String },
}

/// What leaving or entering Up means to the session's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpChange {
    Up,
    /// A failure: trackers and `bfd_takeover` hear Down.
    Down,
    /// Left Up on the peer's AdminDown: only `bfd_takeover` hears it, as not Up.
    AdminDown,
}

fn up_change(from: State, to: State, remote: State) -> Option<UpChange> {
    if to == State::Up {
        Some(UpChange::Up)
    } else if from != State::Up {
        None
    } else if remote == State::AdminDown {
        Some(UpChange::AdminDown)
    } else {
        Some(UpChange::Down)
    }
}

enum Msg {
    Configure(BfdPlan, Sender<()>),
    Stop,
}

/// The running BFD thread.
pub struct BfdHandle {
    tx: Sender<Msg>,
    wake: Arc<OwnedFd>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl BfdHandle {
    /// Apply a plan (sessions added, changed, removed; see the module doc) and wait
    /// until the thread has done so, so its [`BfdEvent::Tracked`] events are queued.
    pub fn configure(&self, plan: BfdPlan) {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Msg::Configure(plan, ack)).is_ok() {
            self.poke();
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Stop the thread (sessions close without telling the peers, as when the process
    /// ends).
    pub fn stop(&self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = self.tx.send(Msg::Stop);
            self.poke();
            let _ = t.join();
        }
    }

    fn poke(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

impl Drop for BfdHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start the BFD thread with `plan`; `events` is called on that thread (it must not
/// block: hand the event on through a channel).
pub fn start(
    plan: BfdPlan,
    events: impl Fn(BfdEvent) + Send + 'static,
    status: Arc<Mutex<Snapshot>>,
) -> io::Result<BfdHandle> {
    // SAFETY: eventfd(2) returns a new fd we own.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    let (tx, rx) = mpsc::channel();
    let (nice, rt, cpus) = (plan.nice, plan.rt_priority, plan.cpu_affinity.clone());
    let mut owner = Owner {
        clock: Instant::now(),
        sessions: Vec::new(),
        receivers: BTreeMap::new(),
        unmatched: 0,
        events: Box::new(events),
        status,
        wake: wake.clone(),
        seed: seed(),
        io_errors: IoErrors::default(),
    };
    owner.configure(plan);
    let thread = std::thread::Builder::new()
        .name("vipd-bfd".into())
        .spawn(move || {
            // SAFETY: prctl on the calling thread with valid arguments.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
            for error in vipd_exec::tuning::tune_thread("bfd", nice, rt, &cpus) {
                (owner.events)(BfdEvent::Error {
                    name: "*".into(),
                    error,
                });
            }
            owner.run(rx)
        })?;
    Ok(BfdHandle {
        tx,
        wake,
        thread: Mutex::new(Some(thread)),
    })
}

/// Entropy for discriminators and jitter seeds (not security relevant: RFC 5880 asks
/// only that discriminators be unique and preferably random).
fn seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom into a buffer of 8 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
    }
}

struct Sess {
    plan: BfdSessionPlan,
    engine: Session,
    sock: Option<Socket>,
    port: Option<u16>,
    /// Leaving the configuration: closed at this time.
    leaving: Option<Micros>,
    send_errors: u64,
}

struct Owner {
    clock: Instant,
    sessions: Vec<Sess>,
    /// (IPv6?, port) → receive socket.
    receivers: BTreeMap<(bool, u16), Socket>,
    unmatched: u64,
    events: Box<dyn Fn(BfdEvent) + Send>,
    status: Arc<Mutex<Snapshot>>,
    wake: Arc<OwnedFd>,
    seed: u64,
    io_errors: IoErrors,
}

impl Owner {
    fn now(&self) -> Micros {
        self.clock.elapsed().as_micros() as Micros
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random non-zero discriminator no session uses.
    fn discriminator(&mut self) -> u32 {
        loop {
            let d = self.next_random() as u32;
            if d != 0
                && !self
                    .sessions
                    .iter()
                    .any(|s| s.engine.local_discriminator() == d)
            {
                return d;
            }
        }
    }

    fn new_session(&mut self, plan: BfdSessionPlan, now: Micros) -> Sess {
        let disc = self.discriminator();
        let seed = self.next_random();
        let mut engine = Session::new(plan.session_config(disc, seed))
            .expect("the configuration checked the ranges");
        let (sock, port) = match open_sender(&plan, engine.source_ports()) {
            Ok((s, p)) => (Some(s), Some(p)),
            Err(e) => {
                (self.events)(BfdEvent::Error {
                    name: plan.name.clone(),
                    error: format!("cannot open its send socket: {e}"),
                });
                (None, None)
            }
        };
        engine.start(now);
        Sess {
            plan,
            engine,
            sock,
            port,
            leaving: None,
            send_errors: 0,
        }
    }

    fn configure(&mut self, plan: BfdPlan) {
        let now = self.now();
        let mut old: HashMap<BfdKey, Sess> = HashMap::new();
        for s in std::mem::take(&mut self.sessions) {
            if s.leaving.is_some() {
                // Already leaving: a session of the same key starts afresh.
                self.sessions.push(s);
            } else {
                old.insert(s.plan.key(), s);
            }
        }
        let mut kept = Vec::new();
        for p in plan.sessions {
            match old.remove(&p.key()) {
                Some(mut s) if same_but_timers(&s.plan, &p) => {
                    if (s.plan.min_tx_us, s.plan.min_rx_us, s.plan.multiplier)
                        != (p.min_tx_us, p.min_rx_us, p.multiplier)
                    {
                        // A Poll Sequence tells the peer: no flap.
                        let _ = s
                            .engine
                            .set_intervals(now, p.min_tx_us, p.min_rx_us, p.multiplier);
                    }
                    s.plan = p;
                    kept.push(s);
                }
                Some(s) => {
                    // Restart: the old session ends (Down if it was Up), a new one begins.
                    if s.engine.state() == State::Up {
                        self.tracked(&s.plan, false, true);
                    }
                    kept.push(self.new_session(p, now));
                }
                None => kept.push(self.new_session(p, now)),
            }
        }
        // Removed: AdminDown for one detection time, then closed.
        for (_, mut s) in old {
            let linger =
                u64::from(s.plan.multiplier) * s.engine.tx_interval().max(s.engine.rx_interval());
            s.engine.set_admin_down(now, true);
            s.leaving = Some(now + linger.max(1));
            self.sessions.push(s);
        }
        self.sessions.extend(kept);
        self.drain(now);
        self.open_receivers();
        // Whoever tracks a session learns its state now (a tracked BFD starts down).
        let current: Vec<_> = self
            .sessions
            .iter()
            .filter(|s| s.leaving.is_none())
            .map(|s| (s.plan.clone(), s.engine.state() == State::Up))
            .collect();
        for (p, up) in current {
            self.tracked(&p, up, false);
        }
        self.publish();
    }

    fn tracked(&self, p: &BfdSessionPlan, up: bool, transition: bool) {
        (self.events)(BfdEvent::Tracked {
            name: p.name.clone(),
            up,
            to_vrrp: p.to_vrrp,
            to_checker: p.to_checker,
            transition,
        });
    }

    /// Receive sockets for what the sessions need; those no longer needed close.
    fn open_receivers(&mut self) {
        let mut want = Vec::new();
        for s in &self.sessions {
            let key = (
                s.plan.neighbor.is_ipv6(),
                if s.plan.multihop {
                    vipd_bfd::PORT_MULTI_HOP
                } else {
                    vipd_bfd::PORT_SINGLE_HOP
                },
            );
            if !want.contains(&key) {
                want.push(key);
            }
        }
        self.receivers.retain(|k, _| want.contains(k));
        for key in want {
            if self.receivers.contains_key(&key) {
                continue;
            }
            match open_receiver(key.0, key.1) {
                Ok(sock) => {
                    self.receivers.insert(key, sock);
                }
                Err(e) => (self.events)(BfdEvent::Error {
                    name: "*".into(),
                    error: format!(
                        "cannot listen on UDP port {} ({}): {e}",
                        key.1,
                        if key.0 { "IPv6" } else { "IPv4" }
                    ),
                }),
            }
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut buf = [0u8; 2048];
        let mut next_publish = Instant::now();
        loop {
            let now = self.now();
            for s in &mut self.sessions {
                if s.engine.poll_timeout().is_some_and(|t| t <= now) {
                    s.engine.handle_timeout(now);
                }
            }
            self.drain(now);
            let before = self.sessions.len();
            self.sessions
                .retain(|s| s.leaving.is_none_or(|until| until > now));
            if self.sessions.len() != before {
                self.open_receivers();
                self.publish();
            }
            if Instant::now() >= next_publish {
                self.publish();
                next_publish = Instant::now() + Duration::from_secs(1);
            }
            let deadline = self
                .sessions
                .iter()
                .filter_map(|s| s.engine.poll_timeout())
                .chain(self.sessions.iter().filter_map(|s| s.leaving))
                .min();
            let wait_us = deadline
                .map(|d| d.saturating_sub(self.now()))
                .unwrap_or(1_000_000)
                .min(1_000_000);
            let ready = self.wait(wait_us);
            for key in ready {
                self.receive_all(key, &mut buf);
            }
            loop {
                match rx.try_recv() {
                    Ok(Msg::Configure(plan, ack)) => {
                        self.configure(plan);
                        let _ = ack.send(());
                    }
                    Ok(Msg::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
        }
    }

    /// ppoll on the wake fd and the receive sockets for up to `us` microseconds; the
    /// receive sockets that are readable.
    fn wait(&self, us: u64) -> Vec<(bool, u16)> {
        let keys: Vec<(bool, u16)> = self.receivers.keys().copied().collect();
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.wake.as_raw_fd())
            .chain(self.receivers.values().map(|s| s.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ts = libc::timespec {
            tv_sec: (us / 1_000_000) as libc::time_t,
            tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
        };
        // SAFETY: fds is a live array of pollfd of the length given.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n <= 0 {
            return Vec::new();
        }
        if fds[0].revents != 0 {
            let mut v = 0u64;
            // SAFETY: reading 8 bytes from our eventfd into a u64.
            unsafe { libc::read(self.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
        fds[1..]
            .iter()
            .zip(keys)
            .filter(|(p, _)| p.revents != 0)
            .map(|(_, k)| k)
            .collect()
    }

    fn receive_all(&mut self, key: (bool, u16), buf: &mut [u8]) {
        loop {
            let Some(sock) = self.receivers.get(&key) else {
                return;
            };
            let got = match recv(sock.as_raw_fd(), buf) {
                Ok(Some(got)) => got,
                Ok(None) => return,
                Err(e) => {
                    if self.io_errors.count("bfd_receive", &e) {
                        (self.events)(BfdEvent::Error {
                            name: "*".into(),
                            error: format!("receive on port {}: {e}", key.1),
                        });
                    }
                    return;
                }
            };
            let now = self.now();
            let payload = &buf[..got.len];
            let multihop = key.1 == vipd_bfd::PORT_MULTI_HOP;
            let idx = match vipd_bfd::wire::peek_your_discriminator(payload) {
                Some(d) if d != 0 => self
                    .sessions
                    .iter()
                    .position(|s| s.engine.local_discriminator() == d),
                _ => self.sessions.iter().position(|s| {
                    s.plan.multihop == multihop
                        && s.plan.neighbor == got.src
                        && s.plan.source.is_none_or(|a| Some(a) == got.dst)
                }),
            };
            let Some(i) = idx else {
                self.unmatched += 1;
                continue;
            };
            let s = &mut self.sessions[i];
            // A packet naming our discriminator from another address than the
            // neighbour's is not the session's: unmatched.
            if s.plan.neighbor != got.src {
                self.unmatched += 1;
                continue;
            }
            s.engine
                .handle_packet(now, RxMeta { ttl: got.ttl }, payload);
            self.drain(now);
        }
    }

    /// Carry out every session's actions.
    fn drain(&mut self, _now: Micros) {
        let mut changed = false;
        for i in 0..self.sessions.len() {
            while let Some(a) = self.sessions[i].engine.poll_action() {
                match a {
                    Action::Send { packet } => self.send(i, &packet),
                    Action::StateChange { from, to, diag } => {
                        changed = true;
                        let s = &self.sessions[i];
                        (self.events)(BfdEvent::Changed {
                            name: s.plan.name.clone(),
                            from,
                            to,
                            diagnostic: diag.as_str().to_string(),
                        });
                        if s.leaving.is_some() {
                            continue;
                        }
                        match up_change(from, to, s.engine.remote_state()) {
                            Some(UpChange::Up) => self.tracked(&s.plan, true, true),
                            Some(UpChange::Down) => self.tracked(&s.plan, false, true),
                            Some(UpChange::AdminDown) => (self.events)(BfdEvent::PeerAdminDown {
                                name: s.plan.name.clone(),
                                to_vrrp: s.plan.to_vrrp,
                            }),
                            None => {}
                        }
                    }
                }
            }
        }
        if changed {
            self.publish();
        }
    }

    fn send(&mut self, i: usize, packet: &[u8]) {
        let s = &mut self.sessions[i];
        let Some(sock) = &s.sock else {
            s.send_errors += 1;
            return;
        };
        let port = if s.plan.multihop {
            vipd_bfd::PORT_MULTI_HOP
        } else {
            vipd_bfd::PORT_SINGLE_HOP
        };
        let to = SockAddr::from(SocketAddr::new(s.plan.neighbor, port));
        if let Err(e) = sock.send_to(packet, &to) {
            s.send_errors += 1;
            if self.io_errors.count("bfd_send", &e) {
                let name = s.plan.name.clone();
                (self.events)(BfdEvent::Error {
                    name,
                    error: format!(
                        "send to {}: {e} (further errors like it are counted, not logged)",
                        s.plan.neighbor
                    ),
                });
            }
        }
    }

    fn publish(&self) {
        let lines: Vec<BfdSessionStatus> = self.sessions.iter().map(status_of).collect();
        if let Ok(mut snap) = self.status.lock() {
            snap.bfd = lines;
            snap.bfd_unmatched = self.unmatched;
            for e in self.io_errors.lines() {
                if let Some(x) = snap
                    .io_errors
                    .iter_mut()
                    .find(|x| x.op == e.op && x.reason == e.reason)
                {
                    x.count = e.count;
                } else {
                    snap.io_errors.push(e);
                }
            }
        }
    }
}

fn status_of(s: &Sess) -> BfdSessionStatus {
    let e = &s.engine;
    let st = e.stats();
    BfdSessionStatus {
        name: s.plan.name.clone(),
        neighbor: s.plan.neighbor.to_string(),
        source: s.plan.source.map(|a| a.to_string()),
        multihop: s.plan.multihop,
        state: e.state().as_str().to_string(),
        remote_state: e.remote_state().as_str().to_string(),
        diagnostic: e.local_diag().as_str().to_string(),
        remote_diagnostic: e.remote_diag().as_str().to_string(),
        local_discriminator: e.local_discriminator(),
        remote_discriminator: e.remote_discriminator(),
        source_port: s.port,
        tx_interval_us: e.tx_interval(),
        rx_interval_us: e.rx_interval(),
        detection_time_us: e.detection_time(),
        packets_sent: st.packets_sent,
        packets_received: st.packets_received,
        ups: st.ups,
        downs: st.downs,
        drops: st
            .drops
            .iter()
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect(),
        send_errors: s.send_errors,
        leaving: s.leaving.is_some(),
    }
}

/// Whether two plans of one key differ at most in the timers a Poll Sequence changes.
fn same_but_timers(a: &BfdSessionPlan, b: &BfdSessionPlan) -> bool {
    let timers = |p: &BfdSessionPlan| BfdSessionPlan {
        name: String::new(),
        to_vrrp: false,
        to_checker: false,
        min_rx_us: 0,
        min_tx_us: 0,
        multiplier: 0,
        ..p.clone()
    };
    timers(a) == timers(b)
}

fn udp(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    if v6 {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

fn setsockopt_int(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live int and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A session's send socket: bound to its source address and the first port of
/// `ports` that is free, TTL / hop limit set.
fn open_sender(p: &BfdSessionPlan, ports: impl Iterator<Item = u16>) -> io::Result<(Socket, u16)> {
    let v6 = p.neighbor.is_ipv6();
    let sock = udp(v6)?;
    if v6 {
        sock.set_unicast_hops_v6(u32::from(p.ttl))?;
    } else {
        sock.set_ttl(u32::from(p.ttl))?;
    }
    // Send even before the source address is configured (or while it is tentative).
    let _ = if v6 {
        setsockopt_int(&sock, libc::SOL_IPV6, libc::IPV6_FREEBIND, 1)
    } else {
        setsockopt_int(&sock, libc::SOL_IP, libc::IP_FREEBIND, 1)
    };
    let any = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let src = p.source.unwrap_or(any);
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for port in ports {
        match sock.bind(&SockAddr::from(SocketAddr::new(src, port))) {
            Ok(()) => return Ok((sock, port)),
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A receive socket on `port` of every address, reporting TTL / hop limit and the
/// destination address.
fn open_receiver(v6: bool, port: u16) -> io::Result<Socket> {
    let sock = udp(v6)?;
    sock.set_reuse_address(true)?;
    sock.set_recv_buffer_size(1 << 18)?;
    if v6 {
        setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        sock.bind(&SockAddr::from(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port,
        )))?;
    } else {
        setsockopt_int(&sock, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        setsockopt_int(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        sock.bind(&SockAddr::from(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )))?;
    }
    Ok(sock)
}

struct Got {
    len: usize,
    src: IpAddr,
    dst: Option<IpAddr>,
    ttl: Option<u8>,
}

/// One datagram with its source, destination and TTL / hop limit; `None`: nothing more.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<Got>> {
    // SAFETY: zeroed sockaddr_storage / msghdr are valid.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let (mut ttl, mut dst) = (None, None);
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_TTL) | (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    let v = std::ptr::read_unaligned(data as *const libc::c_int);
                    ttl = Some(v.clamp(0, 255) as u8);
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data as *const libc::in_pktinfo);
                    dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_addr.s_addr,
                    ))));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    // SAFETY: the kernel filled `name` with msg_namelen bytes of a socket address.
    let src = unsafe { SockAddr::new(name, msg.msg_namelen) }
        .as_socket()
        .map(|a| match a.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            ip => ip,
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    Ok(Some(Got {
        len: n as usize,
        src,
        dst,
        ttl,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaving_up_on_the_peers_admin_down_is_not_a_failure_but_not_up_either() {
        use State::*;
        assert_eq!(up_change(Init, Up, Up), Some(UpChange::Up));
        assert_eq!(up_change(Down, Up, Init), Some(UpChange::Up));
        assert_eq!(up_change(Up, Down, Down), Some(UpChange::Down));
        assert_eq!(up_change(Up, Down, Up), Some(UpChange::Down));
        assert_eq!(up_change(Up, Down, AdminDown), Some(UpChange::AdminDown));
        // Our own AdminDown (a removed session) is handled by the caller (leaving).
        assert_eq!(up_change(Up, AdminDown, Up), Some(UpChange::Down));
        assert_eq!(up_change(Down, Init, Down), None);
        assert_eq!(up_change(Init, Down, AdminDown), None);
    }

    fn plan(name: &str) -> BfdSessionPlan {
        BfdSessionPlan {
            name: name.into(),
            neighbor: "192.0.2.2".parse().unwrap(),
            source: Some("192.0.2.1".parse().unwrap()),
            multihop: false,
            min_rx_us: 10_000,
            min_tx_us: 10_000,
            idle_tx_us: 1_000_000,
            multiplier: 5,
            passive: false,
            ttl: 255,
            min_rx_ttl: Some(255),
            to_vrrp: true,
            to_checker: true,
        }
    }

    #[test]
    fn timer_changes_are_not_restarts() {
        let a = plan("a");
        let mut b = plan("renamed");
        b.min_tx_us = 50_000;
        b.multiplier = 3;
        b.to_checker = false;
        assert!(same_but_timers(&a, &b));
        let mut c = plan("a");
        c.passive = true;
        assert!(!same_but_timers(&a, &c));
        let mut d = plan("a");
        d.idle_tx_us = 2_000_000;
        assert!(!same_but_timers(&a, &d), "idle_tx restarts");
    }
}
