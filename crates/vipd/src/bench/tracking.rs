//! `vipd bench tracking`: from a track condition changing on the master to the peer
//! answering on the VIP, for vipd and keepalived on the same keepalived.conf.
//!
//! Two routers, r1 priority 100 and r2 priority 99, VRRPv3, both tracking the same
//! kind of object (each its own file / interface). Scenarios, all triggered on r1:
//!
//! * `down-file` — `vrrp_script chk_down { script "[ ! -f FILE ]" interval I weight -2 }`;
//!   the trigger creates r1's FILE. r1 drops to 98 < 99 but stays master until r2,
//!   which discards the lower-priority adverts, lets its Master_Down timer run out.
//!   Bound: I (the check runs at most that long after the change) + Master_Down_Interval
//!   of r2 + one advert (allowance for the check's own run time and the advert in
//!   flight).
//! * `link-down` — `track_interface { up0 weight -50 }`, where `up0` is an extra veth
//!   inside each router's namespace (not the VRRP interface); the trigger sets r1's
//!   `up0` down. r1 keeps advertising on eth0 at priority 50, so this measures
//!   tracking + preemption, not the cable-pull (crash) case that `bench failover`
//!   already covers. Link events are immediate: bound = Master_Down_Interval of r2.
//! * `script-fail` — a weight-0 `vrrp_script` (`[ ! -f FILE ]`, failure = FAULT); the
//!   trigger creates r1's FILE, the next check exits 1, r1 goes FAULT, removes the VIP
//!   and (RFC-wise) sends priority 0, so r2 takes over after Skew_Time.
//!   Bound: I + Skew_Time of r2.
//!
//! The figure: trigger (taken just before the file is created / the `ip link` command
//! runs) → the first ICMP echo reply *from r2's MAC* with the VIP as source, on the
//! client. The client probes the VIP every 1 ms; an AF_PACKET sniffer on the client's
//! eth0 records every echo reply with its Ethernet source, so "who answered" is read
//! off the wire, not inferred. Before the trigger the bench waits a random fraction of
//! the script interval (link-down: of the advert interval), so the check's phase
//! relative to the change is uniform rather than an artefact of start-up timing.

use super::stats::median;
use super::{ms, sleep, wait_for, Impl, TrackScenario, TrackingArgs};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vipd_netns::{
    has_address, Capture, Frame, Keepalived, Lan, LanOptions, MacAddr, Netns, ProbeOptions, Prober,
    Proc, WorkDir, VIP_V4,
};

pub const MASTER_PRIORITY: u8 = 100;
pub const PEER_PRIORITY: u8 = 99;
const VRID: u8 = 51;

fn advert(advert_ms: u32) -> Duration {
    Duration::from_millis(u64::from(advert_ms))
}

/// Skew_Time of the peer (priority 99).
fn skew(advert_ms: u32) -> Duration {
    advert(advert_ms) * (256 - u32::from(PEER_PRIORITY)) / 256
}

/// Master_Down_Interval of the peer: 3 × advert + skew.
fn master_down(advert_ms: u32) -> Duration {
    3 * advert(advert_ms) + skew(advert_ms)
}

/// The bound the figure is compared with (see the module docs).
pub fn bound(scenario: TrackScenario, advert_ms: u32, interval_s: u32) -> Duration {
    let i = Duration::from_secs(u64::from(interval_s));
    match scenario {
        TrackScenario::DownFile => i + master_down(advert_ms) + advert(advert_ms),
        TrackScenario::LinkDown => master_down(advert_ms),
        TrackScenario::ScriptFail => i + skew(advert_ms),
    }
}

/// The protocol's part alone: from the advert r2's take-over timer runs from (r1's
/// last priority-100 advert, or its priority-0 advert for script-fail) to r2's GARP.
fn protocol_limit(scenario: TrackScenario, advert_ms: u32) -> Duration {
    match scenario {
        TrackScenario::DownFile | TrackScenario::LinkDown => master_down(advert_ms),
        TrackScenario::ScriptFail => skew(advert_ms),
    }
}

/// What r1 advertises once it has seen the condition.
fn changed_priority(scenario: TrackScenario) -> u8 {
    match scenario {
        TrackScenario::DownFile => MASTER_PRIORITY - 2,
        TrackScenario::LinkDown => MASTER_PRIORITY - 50,
        TrackScenario::ScriptFail => 0,
    }
}

/// The keepalived.conf both implementations read (router `i`; `trigger` is its file).
pub fn config(
    scenario: TrackScenario,
    router: usize,
    priority: u8,
    advert_ms: u32,
    interval_s: u32,
    trigger: &Path,
) -> String {
    let adv = format!("{:.2}", f64::from(advert_ms) / 1000.0);
    let script = |name: &str, weight: i32| {
        format!(
            "vrrp_script {name} {{\n    script \"[ ! -f {} ]\"\n    interval {interval_s}\n    weight {weight}\n}}\n",
            trigger.display()
        )
    };
    let (defs, track) = match scenario {
        TrackScenario::DownFile => (
            script("chk_down", -2),
            "    track_script {\n        chk_down\n    }\n".to_string(),
        ),
        TrackScenario::ScriptFail => (
            script("chk_fail", 0),
            "    track_script {\n        chk_fail\n    }\n".to_string(),
        ),
        TrackScenario::LinkDown => (
            String::new(),
            "    track_interface {\n        up0 weight -50\n    }\n".to_string(),
        ),
    };
    format!(
        "global_defs {{\n    router_id bench_r{router}\n}}\n{defs}\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {VRID}\n    \
         priority {priority}\n    advert_int {adv}\n    version 3\n{track}    \
         virtual_ipaddress {{\n        {VIP_V4}/24\n    }}\n}}\n"
    )
}

// ---- the two routers ----

struct Router {
    proc: Proc,
    socket: Option<PathBuf>,
}

impl Router {
    fn instance(&self) -> Option<serde_json::Value> {
        let socket = self.socket.as_ref()?;
        let v = vipd_linux::control::query_status(socket).ok()?;
        Some(v["instances"][0].clone())
    }
}

struct Setup {
    imp: Impl,
    scenario: TrackScenario,
    advert_ms: u32,
    interval_s: u32,
    // Daemons before the LAN: dropped (SIGKILLed) first.
    routers: [Option<Router>; 2],
    lan: Lan,
    dir: WorkDir,
}

impl Setup {
    fn start(imp: Impl, scenario: TrackScenario, advert_ms: u32, interval_s: u32) -> Result<Setup> {
        let lan = Lan::new(2, LanOptions::default()).context("building the LAN")?;
        let mut dir = WorkDir::new("bench-trk")?;
        if std::env::var_os("VIPD_BENCH_KEEP").is_some() {
            dir.keep();
        }
        let mut s = Setup {
            imp,
            scenario,
            advert_ms,
            interval_s,
            routers: [None, None],
            lan,
            dir,
        };
        if scenario == TrackScenario::LinkDown {
            for i in 1..=2 {
                let ns = s.lan.router(i);
                ns.ip_batch(
                    "link add up0 type veth peer name up1\nlink set up0 up\nlink set up1 up\n",
                )?;
                let up = wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
                    ns.ip(["-o", "link", "show", "up0"])
                        .is_ok_and(|o| o.contains("LOWER_UP"))
                });
                super::check_interrupt()?;
                if !up {
                    bail!("r{i}: up0 did not come up");
                }
            }
        }
        let settle = Duration::from_secs(10) + master_down(advert_ms);
        s.start_router(1, MASTER_PRIORITY)?;
        if !wait_for(settle, Duration::from_millis(10), || s.holds(1)) {
            super::check_interrupt()?;
            bail!("r1 did not take the VIP\n{}", s.logs());
        }
        s.start_router(2, PEER_PRIORITY)?;
        if !wait_for(settle, Duration::from_millis(10), || s.is_backup(2)) {
            super::check_interrupt()?;
            bail!("r2 did not settle as backup\n{}", s.logs());
        }
        // Stable: r1 alone holds the VIP for a while (and the checks have run).
        let stable = Duration::from_secs(1).max(3 * advert(advert_ms));
        let end = Instant::now() + stable;
        while Instant::now() < end {
            if s.holders() != [1] {
                bail!(
                    "setup not stable: VIP held by {:?}\n{}",
                    s.holders(),
                    s.logs()
                );
            }
            sleep(Duration::from_millis(50))?;
        }
        if imp == Impl::Vipd {
            let (i1, i2) = (s.instance(1), s.instance(2));
            let st = |i: &Option<serde_json::Value>| {
                i.as_ref()
                    .map(|v| (v["state"].clone(), v["effective_priority"].clone()))
            };
            let ok = st(&i1) == Some((json!("MASTER"), json!(MASTER_PRIORITY)))
                && st(&i2) == Some((json!("BACKUP"), json!(PEER_PRIORITY)));
            if !ok {
                bail!("setup: r1 {:?}, r2 {:?}\n{}", st(&i1), st(&i2), s.logs());
            }
        }
        Ok(s)
    }

    fn trigger_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("trigger-r{i}"))
    }

    fn start_router(&mut self, i: usize, priority: u8) -> Result<()> {
        let text = config(
            self.scenario,
            i,
            priority,
            self.advert_ms,
            self.interval_s,
            &self.trigger_file(i),
        );
        let ns = self.lan.router(i);
        let r = match self.imp {
            Impl::Vipd => {
                let conf = self.dir.join(format!("r{i}.conf"));
                std::fs::write(&conf, &text)?;
                let socket = self.dir.join(format!("r{i}.sock"));
                let args: Vec<std::ffi::OsString> = vec![
                    std::env::current_exe()?.into(),
                    "run".into(),
                    "-f".into(),
                    conf.into(),
                    "--control-socket".into(),
                    socket.clone().into(),
                    "--pid-file".into(),
                    self.dir.join(format!("r{i}.pid")).into(),
                    // vipd-config still labels vrrp_script/track_* "parsed but not
                    // active yet"; the runtime does act on them.
                    "--ignore-inactive".into(),
                ];
                let proc = ns.spawn(&args, self.dir.join(format!("r{i}.log")))?;
                let r = Router {
                    proc,
                    socket: Some(socket),
                };
                if !wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
                    r.instance().is_some()
                }) {
                    super::check_interrupt()?;
                    bail!("vipd on r{i} did not start\n{}", r.proc.log_tail(20));
                }
                r
            }
            Impl::Keepalived => {
                let proc = Keepalived::new().start(ns, &text, &self.dir.join(format!("ka{i}")))?;
                Router { proc, socket: None }
            }
        };
        self.routers[i - 1] = Some(r);
        Ok(())
    }

    fn instance(&self, i: usize) -> Option<serde_json::Value> {
        self.routers[i - 1].as_ref().and_then(Router::instance)
    }

    fn is_backup(&self, i: usize) -> bool {
        match self.imp {
            Impl::Vipd => self
                .instance(i)
                .is_some_and(|v| v["state"].as_str() == Some("BACKUP")),
            Impl::Keepalived => self.routers[i - 1]
                .as_ref()
                .is_some_and(|r| r.proc.log().contains("Entering BACKUP STATE")),
        }
    }

    fn holds(&self, i: usize) -> bool {
        has_address(self.lan.router(i), "eth0", IpAddr::V4(VIP_V4))
    }

    fn holders(&self) -> Vec<usize> {
        (1..=2).filter(|&i| self.holds(i)).collect()
    }

    fn logs(&self) -> String {
        self.routers
            .iter()
            .enumerate()
            .map(|(n, r)| match r {
                Some(r) => format!("--- r{}:\n{}\n", n + 1, r.proc.log_tail(15)),
                None => format!("--- r{}: not running\n", n + 1),
            })
            .collect()
    }
}

// ---- who answered: echo replies with their Ethernet source ----

#[derive(Debug, Clone, Copy)]
struct EchoReply {
    at: Instant,
    src_mac: MacAddr,
}

/// AF_PACKET sniffer of ICMP echo replies from `from` arriving on an interface.
struct ReplySniffer {
    replies: Arc<Mutex<Vec<EchoReply>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const ETH_P_IP: u16 = 0x0800;
const PACKET_OUTGOING: u8 = 4;

impl ReplySniffer {
    fn start(ns: &Netns, iface: &str, from: Ipv4Addr) -> Result<ReplySniffer> {
        let name = iface.to_string();
        let fd = ns
            .run(move || open_ip_packet_socket(&name))?
            .with_context(|| format!("echo-reply sniffer on {iface} in {}", ns.name()))?;
        let replies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (replies.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("sniff-echo".into())
            .spawn(move || sniff_loop(fd, from, &r2, &s2))?;
        Ok(ReplySniffer {
            replies,
            stop,
            thread: Some(thread),
        })
    }

    /// The first reply from `mac` received at or after `t`.
    fn first_from(&self, mac: MacAddr, t: Instant) -> Option<Instant> {
        let g = self.replies.lock().expect("sniffer lock");
        g.iter()
            .find(|r| r.at >= t && r.src_mac == mac)
            .map(|r| r.at)
    }

    fn stop(mut self) -> Vec<EchoReply> {
        self.halt();
        std::mem::take(&mut *self.replies.lock().expect("sniffer lock"))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ReplySniffer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn open_ip_packet_socket(iface: &str) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(iface)?;
    // SAFETY: plain libc calls with valid arguments.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface}");
    }
    // Protocol 0 until bound: nothing from other interfaces sneaks in.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_IP.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid sockaddr_ll.
    let r = unsafe {
        libc::bind(
            raw,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET)");
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 10_000,
    };
    let rcvbuf: libc::c_int = 4 << 20;
    // SAFETY: valid option values.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &rcvbuf as *const _ as *const libc::c_void,
            4,
        );
    }
    Ok(fd)
}

fn sniff_loop(
    fd: std::os::fd::OwnedFd,
    from: Ipv4Addr,
    out: &Mutex<Vec<EchoReply>>,
    stop: &AtomicBool,
) {
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: valid buffer and address storage.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut sll as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        };
        let at = Instant::now();
        if n <= 0 || sll.sll_pkttype == PACKET_OUTGOING {
            continue;
        }
        if let Some(src_mac) = parse_echo_reply(&buf[..n as usize], from) {
            out.lock()
                .expect("sniffer lock")
                .push(EchoReply { at, src_mac });
        }
    }
}

/// The Ethernet source of an IPv4 ICMP echo reply from `from`, else `None`.
fn parse_echo_reply(b: &[u8], from: Ipv4Addr) -> Option<MacAddr> {
    if b.len() < 14 + 20 || b[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &b[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 1 || ip[12..16] != from.octets() {
        return None;
    }
    let icmp = ip.get(ihl..)?;
    if icmp.first() != Some(&0) {
        return None;
    }
    Some(MacAddr(b[6..12].try_into().ok()?))
}

/// A number in [0, 1) (std's randomly keyed hasher; no extra dependency).
fn rand01() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

// ---- one run ----

/// Times are signed milliseconds relative to the trigger.
#[derive(Debug, Clone)]
struct Measure {
    /// The figure: trigger → first echo reply from r2's MAC.
    answer: Duration,
    /// Largest gap in the client's reply stream (whoever answered) across the change.
    outage: Duration,
    /// Random wait before the trigger (phase against the checks / adverts).
    phase_ms: f64,
    /// r1's first advert with the changed priority (98 / 50 / 0) on the client's wire.
    detect_ms: Option<f64>,
    /// The advert r2's timer runs from: r1's last priority-100 advert before r2's
    /// first advert (down-file, link-down) or r1's priority-0 advert (script-fail).
    ref_ms: Option<f64>,
    r2_advert_ms: Option<f64>,
    r2_garp_ms: Option<f64>,
    /// r2's GARP − the reference advert (RFC: Master_Down_Interval / Skew_Time).
    protocol_ms: Option<f64>,
    /// Last echo reply from r1's MAC.
    last_r1_reply_ms: Option<f64>,
    /// Cross-check of the method: the first prober reply to a request sent after
    /// r2's GARP reached the client (the client's ARP entry points at r2 by then).
    garp_method_ms: Option<f64>,
    sent: u64,
    received: u64,
}

fn one_run(imp: Impl, scenario: TrackScenario, advert_ms: u32, interval_s: u32) -> Result<Measure> {
    let s = Setup::start(imp, scenario, advert_ms, interval_s)?;
    let client = s.lan.client();
    let cap = Capture::start(client, "eth0")?;
    let sniff = ReplySniffer::start(client, "eth0", VIP_V4)?;
    let prober = Prober::start(
        client,
        IpAddr::V4(VIP_V4),
        ProbeOptions::every(Duration::from_millis(1)),
    )?;
    let (r1_mac, r2_mac) = (s.lan.router_mac(1), s.lan.router_mac(2));
    let t_start = Instant::now();
    // At least one whole advert interval on the capture before the trigger, so the
    // advert r2's timer runs from (r1's last priority-100 one) is on it.
    sleep(Duration::from_millis(300).max(advert(advert_ms) + Duration::from_millis(200)))?;
    if prober.received() < 150 || sniff.first_from(r1_mac, t_start).is_none() {
        bail!(
            "before the trigger r1 answered only {} of {} probes",
            prober.received(),
            prober.sent()
        );
    }
    // Uniform phase of the trigger against the checks (or the adverts).
    let period = match scenario {
        TrackScenario::LinkDown => advert(advert_ms),
        _ => Duration::from_secs(u64::from(interval_s)),
    };
    let phase = period.mul_f64(rand01());
    sleep(phase)?;

    let t0 = Instant::now();
    match scenario {
        TrackScenario::DownFile | TrackScenario::ScriptFail => {
            std::fs::write(s.trigger_file(1), "")?
        }
        TrackScenario::LinkDown => {
            s.lan.router(1).ip(["link", "set", "up0", "down"])?;
        }
    }

    let lim = bound(scenario, advert_ms, interval_s);
    let timeout = lim * 2 + Duration::from_secs(3);
    let answered = wait_for(timeout, Duration::from_millis(2), || {
        sniff.first_from(r2_mac, t0).is_some()
    });
    super::check_interrupt()?;
    if !answered {
        bail!(
            "r2 did not answer on the VIP within {timeout:?} (VIP holders {:?})\n{}",
            s.holders(),
            s.logs()
        );
    }
    if !wait_for(Duration::from_secs(2), Duration::from_millis(5), || {
        s.holders() == [2]
    }) {
        super::check_interrupt()?;
        bail!(
            "r2 answers but the VIP is held by {:?}\n{}",
            s.holders(),
            s.logs()
        );
    }
    sleep(Duration::from_millis(300))?;
    let report = prober.stop();
    let frames = cap.stop();
    let replies = sniff.stop();

    // Correctness afterwards.
    if s.holders() != [2] {
        bail!("VIP held by {:?} at the end\n{}", s.holders(), s.logs());
    }
    if let Some(last) = report.replies.last() {
        if report.end.saturating_duration_since(last.received_at) > Duration::from_millis(50) {
            bail!("probe replies stopped again before the end");
        }
    }
    if imp == Impl::Vipd {
        let i1 = s.instance(1).unwrap_or_default();
        let (want_state, want_prio) = match scenario {
            TrackScenario::DownFile => ("BACKUP", Some(98)),
            TrackScenario::LinkDown => ("BACKUP", Some(50)),
            TrackScenario::ScriptFail => ("FAULT", None),
        };
        if i1["state"].as_str() != Some(want_state)
            || want_prio.is_some_and(|p| i1["effective_priority"] != json!(p))
        {
            bail!(
                "r1 afterwards: state {}, effective priority {} (expected {want_state} {want_prio:?})",
                i1["state"],
                i1["effective_priority"]
            );
        }
    }

    let rel = |t: Instant| -> f64 {
        if t >= t0 {
            ms(t - t0)
        } else {
            -ms(t0 - t)
        }
    };
    let answer_at = replies
        .iter()
        .find(|r| r.at >= t0 && r.src_mac == r2_mac)
        .map(|r| r.at)
        .expect("seen above");
    let last_r1_reply_ms = replies
        .iter()
        .rev()
        .find(|r| r.src_mac == r1_mac)
        .map(|r| rel(r.at));
    let outage = report
        .replies
        .windows(2)
        .filter(|w| w[1].received_at >= t0)
        .map(|w| w[1].received_at.saturating_duration_since(w[0].received_at))
        .max()
        .unwrap_or_default();
    let (r1, r2) = (
        IpAddr::V4(s.lan.router_addr_v4(1)),
        IpAddr::V4(s.lan.router_addr_v4(2)),
    );
    let first = |pred: &dyn Fn(&Frame) -> bool| frames.iter().find(|f| f.at >= t0 && pred(f));
    let changed = changed_priority(scenario);
    let detect = first(&|f| f.src == r1 && f.vrrp().is_some_and(|h| h.priority == changed));
    let r2_advert = first(&|f| f.src == r2 && f.vrrp().is_some_and(|h| h.priority > 0));
    let vip = IpAddr::V4(VIP_V4);
    let r2_garp = first(&|f| f.is_gratuitous_arp() && f.src == vip && f.src_mac == r2_mac);
    let reference = match scenario {
        TrackScenario::ScriptFail => detect.map(|f| f.at),
        _ => frames
            .iter()
            .rev()
            .filter(|f| r2_advert.is_none_or(|a| f.at < a.at))
            .find(|f| f.src == r1 && f.vrrp().is_some_and(|h| h.priority == MASTER_PRIORITY))
            .map(|f| f.at),
    };
    let garp_method_ms = r2_garp.and_then(|g| {
        report
            .replies
            .iter()
            .find(|r| r.sent_at >= g.at)
            .map(|r| rel(r.received_at))
    });
    Ok(Measure {
        answer: answer_at - t0,
        outage,
        phase_ms: ms(phase),
        detect_ms: detect.map(|f| rel(f.at)),
        ref_ms: reference.map(rel),
        r2_advert_ms: r2_advert.map(|f| rel(f.at)),
        r2_garp_ms: r2_garp.map(|f| rel(f.at)),
        protocol_ms: reference.zip(r2_garp).map(|(r, g)| rel(g.at) - rel(r)),
        last_r1_reply_ms,
        garp_method_ms,
        sent: report.sent,
        received: report.received,
    })
}

// ---- the driver and the report ----

struct RunRecord {
    imp: Impl,
    advert_ms: u32,
    scenario: TrackScenario,
    run: usize,
    outcome: std::result::Result<Measure, String>,
}

pub fn run(a: TrackingArgs) -> Result<ExitCode> {
    anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(
        (1..=3600).contains(&a.interval),
        "--interval must be 1..=3600 s"
    );
    for &adv in &a.adverts {
        anyhow::ensure!(
            adv >= 10 && adv % 10 == 0 && adv <= 40950,
            "--adverts: {adv} ms is not a VRRPv3 interval (a multiple of 10 ms)"
        );
    }
    if a.impls.contains(&Impl::Keepalived) && !Keepalived::new().is_installed() {
        bail!("keepalived is not installed (apt-get install keepalived), or pass --impl vipd");
    }
    let mut impls = a.impls.clone();
    impls.dedup();
    let total = a.adverts.len() * a.scenarios.len() * a.runs * impls.len();
    let mut records = Vec::with_capacity(total);
    let started = Instant::now();
    for &adv in &a.adverts {
        for &scenario in &a.scenarios {
            for run in 1..=a.runs {
                // Interleaved run by run, so background noise hits both alike.
                for &imp in &impls {
                    super::check_interrupt()?;
                    let label = format!(
                        "[{}/{total}] {imp} {adv} ms {scenario} run {run}/{}",
                        records.len() + 1,
                        a.runs
                    );
                    let outcome =
                        one_run(imp, scenario, adv, a.interval).map_err(|e| format!("{e:#}"));
                    super::check_interrupt()?;
                    let lim = bound(scenario, adv, a.interval);
                    match &outcome {
                        Ok(m) => eprintln!(
                            "{label}: peer answers {:.1} ms ({:.2}× bound {:.1} ms); phase {:.0} ms; \
                             r1 changed advert {}, r2 advert {}, GARP {}, protocol {} (RFC {:.1}); \
                             r1 last reply {}; outage {:.1} ms; GARP-method {}",
                            ms(m.answer),
                            ms(m.answer) / ms(lim),
                            ms(lim),
                            m.phase_ms,
                            opt_ms(m.detect_ms),
                            opt_ms(m.r2_advert_ms),
                            opt_ms(m.r2_garp_ms),
                            opt_ms(m.protocol_ms),
                            ms(protocol_limit(scenario, adv)),
                            opt_ms(m.last_r1_reply_ms),
                            ms(m.outage),
                            opt_ms(m.garp_method_ms),
                        ),
                        Err(e) => eprintln!("{label}: FAILED: {e}"),
                    }
                    records.push(RunRecord {
                        imp,
                        advert_ms: adv,
                        scenario,
                        run,
                        outcome,
                    });
                }
            }
        }
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    let failed = records.iter().filter(|r| r.outcome.is_err()).count();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&a, &impls, &records))?
        );
    } else {
        print!("{}", markdown(&a, &impls, &records));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:+.1} ms"))
        .unwrap_or_else(|| "-".into())
}

struct Summary {
    imp: Impl,
    advert_ms: u32,
    scenario: TrackScenario,
    ok: usize,
    total: usize,
    median: Option<Duration>,
    min: Option<Duration>,
    max: Option<Duration>,
    bound: Duration,
    detect_med: Option<f64>,
    r2_advert_med: Option<f64>,
    garp_med: Option<f64>,
    protocol_med: Option<f64>,
    protocol_max: Option<f64>,
    outage_med: Option<Duration>,
    outage_max: Option<Duration>,
}

impl Summary {
    fn ratio(&self) -> Option<f64> {
        self.median.map(|m| ms(m) / ms(self.bound))
    }
    fn max_ratio(&self) -> Option<f64> {
        self.max.map(|m| ms(m) / ms(self.bound))
    }
}

/// Median of signed milliseconds.
fn fmed(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn fmax(v: impl Iterator<Item = f64>) -> Option<f64> {
    v.fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
}

fn summarize(a: &TrackingArgs, impls: &[Impl], records: &[RunRecord]) -> Vec<Summary> {
    let mut out = vec![];
    for &adv in &a.adverts {
        for &scenario in &a.scenarios {
            for &imp in impls {
                let rs: Vec<&RunRecord> = records
                    .iter()
                    .filter(|r| r.imp == imp && r.advert_ms == adv && r.scenario == scenario)
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                let ok: Vec<&Measure> = rs.iter().filter_map(|r| r.outcome.as_ref().ok()).collect();
                let answers: Vec<Duration> = ok.iter().map(|m| m.answer).collect();
                let outages: Vec<Duration> = ok.iter().map(|m| m.outage).collect();
                out.push(Summary {
                    imp,
                    advert_ms: adv,
                    scenario,
                    ok: ok.len(),
                    total: rs.len(),
                    median: median(&answers),
                    min: answers.iter().min().copied(),
                    max: answers.iter().max().copied(),
                    bound: bound(scenario, adv, a.interval),
                    detect_med: fmed(ok.iter().filter_map(|m| m.detect_ms).collect()),
                    r2_advert_med: fmed(ok.iter().filter_map(|m| m.r2_advert_ms).collect()),
                    garp_med: fmed(ok.iter().filter_map(|m| m.r2_garp_ms).collect()),
                    protocol_med: fmed(ok.iter().filter_map(|m| m.protocol_ms).collect()),
                    protocol_max: fmax(ok.iter().filter_map(|m| m.protocol_ms)),
                    outage_med: median(&outages),
                    outage_max: outages.iter().max().copied(),
                });
            }
        }
    }
    out
}

fn d(v: Option<Duration>) -> String {
    v.map(|x| format!("{:.1}", ms(x)))
        .unwrap_or_else(|| "–".into())
}

fn f(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into())
}

fn bound_text(scenario: TrackScenario) -> &'static str {
    match scenario {
        TrackScenario::DownFile => "interval + MDI + advert",
        TrackScenario::LinkDown => "MDI",
        TrackScenario::ScriptFail => "interval + skew",
    }
}

fn markdown(a: &TrackingArgs, impls: &[Impl], records: &[RunRecord]) -> String {
    let sums = summarize(a, impls, records);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Tracking: track condition on the master → first echo reply from the peer on the VIP (ms)\n\n\
         Priorities 100 / 99, VRRPv3, script `interval {}`. Peer (priority 99): \
         skew = 157/256 × advert, MDI = 3 × advert + skew. Bounds: down-file = interval + MDI + advert, \
         link-down = MDI, script-fail = interval + skew.\n",
        a.interval
    );
    let _ = writeln!(
        s,
        "| impl | advert | scenario | runs ok | median | min | max | bound | median / bound | max / bound |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in &sums {
        let _ = writeln!(
            s,
            "| {} | {} ms | {} | {}/{} | {} | {} | {} | {:.1} ({}) | {} | {} |",
            x.imp,
            x.advert_ms,
            x.scenario,
            x.ok,
            x.total,
            d(x.median),
            d(x.min),
            d(x.max),
            ms(x.bound),
            bound_text(x.scenario),
            x.ratio()
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into()),
            x.max_ratio()
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into()),
        );
    }

    if impls.contains(&Impl::Vipd) && impls.contains(&Impl::Keepalived) {
        let _ = writeln!(s, "\n### vipd vs keepalived (medians)\n");
        let _ = writeln!(
            s,
            "| advert | scenario | vipd | keepalived | vipd / keepalived |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|");
        for &adv in &a.adverts {
            for &scenario in &a.scenarios {
                let get = |imp| {
                    sums.iter()
                        .find(|x| x.imp == imp && x.advert_ms == adv && x.scenario == scenario)
                        .and_then(|x| x.median)
                };
                let (v, k) = (get(Impl::Vipd), get(Impl::Keepalived));
                let ratio = match (v, k) {
                    (Some(v), Some(k)) if !k.is_zero() => format!("{:.2}", ms(v) / ms(k)),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    s,
                    "| {adv} ms | {scenario} | {} | {} | {ratio} |",
                    d(v),
                    d(k)
                );
            }
        }
    }

    let _ = writeln!(
        s,
        "\n### Where the time goes (medians, ms after the trigger, on the client's wire)\n"
    );
    let _ = writeln!(
        s,
        "\"r1 changed advert\" = r1's first advert with the new priority (98 / 50 / 0): the \
         condition seen and advertised. \"Protocol part\" = r2's first GARP after the advert its \
         timer runs from (r1's last priority-100 advert; script-fail: r1's priority-0 advert), \
         phase-independent, against the RFC figure (MDI; script-fail: skew). \"Outage\" = \
         largest gap in the client's reply stream, whoever answered.\n"
    );
    let _ = writeln!(
        s,
        "| impl | advert | scenario | r1 changed advert | r2 first advert | r2 first GARP | peer answers | protocol part: median (max) | RFC | outage: median (max) |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in &sums {
        let _ = writeln!(
            s,
            "| {} | {} ms | {} | {} | {} | {} | {} | {} ({}) | {:.1} | {} ({}) |",
            x.imp,
            x.advert_ms,
            x.scenario,
            f(x.detect_med),
            f(x.r2_advert_med),
            f(x.garp_med),
            d(x.median),
            f(x.protocol_med),
            f(x.protocol_max),
            ms(protocol_limit(x.scenario, x.advert_ms)),
            d(x.outage_med),
            d(x.outage_max),
        );
    }

    let _ = writeln!(s, "\n### Every run (peer answers, ms after the trigger)\n");
    let _ = writeln!(s, "| impl | advert | scenario | runs |");
    let _ = writeln!(s, "|---|---:|---|---|");
    for x in &sums {
        let v: Vec<String> = records
            .iter()
            .filter(|r| r.imp == x.imp && r.advert_ms == x.advert_ms && r.scenario == x.scenario)
            .map(|r| match &r.outcome {
                Ok(m) => format!("{:.1}", ms(m.answer)),
                Err(_) => "FAILED".into(),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} ms | {} | {} |",
            x.imp,
            x.advert_ms,
            x.scenario,
            v.join(", ")
        );
    }
    let failures: Vec<&RunRecord> = records.iter().filter(|r| r.outcome.is_err()).collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\n### Failed runs\n");
        for r in failures {
            let Err(e) = &r.outcome else { continue };
            let first = e.lines().next().unwrap_or("");
            let _ = writeln!(
                s,
                "* {} {} ms {} run {}: {first}",
                r.imp, r.advert_ms, r.scenario, r.run
            );
        }
    }
    s
}

fn to_json(a: &TrackingArgs, impls: &[Impl], records: &[RunRecord]) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let mut v = json!({
                "impl": r.imp.name(),
                "advert_ms": r.advert_ms,
                "scenario": r.scenario.name(),
                "run": r.run,
            });
            match &r.outcome {
                Ok(m) => {
                    v["peer_answers_ms"] = json!(ms(m.answer));
                    v["outage_ms"] = json!(ms(m.outage));
                    v["phase_ms"] = json!(m.phase_ms);
                    v["r1_changed_advert_ms"] = json!(m.detect_ms);
                    v["reference_advert_ms"] = json!(m.ref_ms);
                    v["r2_advert_ms"] = json!(m.r2_advert_ms);
                    v["r2_garp_ms"] = json!(m.r2_garp_ms);
                    v["protocol_ms"] = json!(m.protocol_ms);
                    v["r1_last_reply_ms"] = json!(m.last_r1_reply_ms);
                    v["garp_method_answer_ms"] = json!(m.garp_method_ms);
                    v["probes_sent"] = json!(m.sent);
                    v["probes_received"] = json!(m.received);
                }
                Err(e) => v["error"] = json!(e),
            }
            v
        })
        .collect();
    let summary: Vec<serde_json::Value> = summarize(a, impls, records)
        .iter()
        .map(|x| {
            json!({
                "impl": x.imp.name(),
                "advert_ms": x.advert_ms,
                "scenario": x.scenario.name(),
                "runs_ok": x.ok,
                "runs": x.total,
                "median_ms": x.median.map(ms),
                "min_ms": x.min.map(ms),
                "max_ms": x.max.map(ms),
                "bound_ms": ms(x.bound),
                "bound": bound_text(x.scenario),
                "median_over_bound": x.ratio(),
                "max_over_bound": x.max_ratio(),
                "r1_changed_advert_median_ms": x.detect_med,
                "r2_advert_median_ms": x.r2_advert_med,
                "r2_garp_median_ms": x.garp_med,
                "protocol_median_ms": x.protocol_med,
                "protocol_max_ms": x.protocol_max,
                "protocol_rfc_ms": ms(protocol_limit(x.scenario, x.advert_ms)),
                "outage_median_ms": x.outage_med.map(ms),
                "outage_max_ms": x.outage_max.map(ms),
            })
        })
        .collect();
    json!({
        "machine": super::machine(),
        "runs_per_cell": a.runs,
        "script_interval_s": a.interval,
        "summary": summary,
        "runs": runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        // Peer priority 99: skew = 157/256 × advert.
        assert_eq!(skew(100), Duration::from_nanos(61_328_125));
        assert_eq!(master_down(100), Duration::from_nanos(361_328_125));
        assert_eq!(
            bound(TrackScenario::DownFile, 100, 1),
            Duration::from_nanos(1_461_328_125)
        );
        assert_eq!(
            bound(TrackScenario::LinkDown, 100, 1),
            Duration::from_nanos(361_328_125)
        );
        assert_eq!(
            bound(TrackScenario::ScriptFail, 100, 1),
            Duration::from_nanos(1_061_328_125)
        );
    }

    #[test]
    fn configs_are_balanced_and_track_what_they_say() {
        let p = Path::new("/tmp/x/trigger-r1");
        for sc in [
            TrackScenario::DownFile,
            TrackScenario::LinkDown,
            TrackScenario::ScriptFail,
        ] {
            let c = config(sc, 1, 100, 100, 1, p);
            assert_eq!(c.matches('{').count(), c.matches('}').count(), "{c}");
            assert!(c.contains("advert_int 0.10"), "{c}");
        }
        assert!(config(TrackScenario::DownFile, 1, 100, 100, 1, p)
            .contains("script \"[ ! -f /tmp/x/trigger-r1 ]\"\n    interval 1\n    weight -2"));
        assert!(config(TrackScenario::ScriptFail, 1, 100, 100, 1, p).contains("weight 0"));
        assert!(config(TrackScenario::LinkDown, 1, 100, 100, 1, p).contains("up0 weight -50"));
    }

    #[test]
    fn echo_replies_are_recognised() {
        let mut b = vec![0u8; 14 + 20 + 8];
        b[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 2]);
        b[12] = 0x08;
        b[14] = 0x45;
        b[14 + 9] = 1;
        b[14 + 12..14 + 16].copy_from_slice(&VIP_V4.octets());
        assert_eq!(
            parse_echo_reply(&b, VIP_V4),
            Some(MacAddr([2, 0, 0, 0, 1, 2]))
        );
        b[34] = 8; // echo request
        assert_eq!(parse_echo_reply(&b, VIP_V4), None);
    }
}
