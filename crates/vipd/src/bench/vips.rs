//! `vipd bench vips` (issue 16 item 4): one VRRP instance holding many VIPs (default
//! 10,000): how long from the decision to take over until every address is in the
//! kernel and announced (GARP / unsolicited NA for each), and how long a stopping
//! master takes to remove them all; vipd next to keepalived 2.2.7 and 2.4.3 on the
//! same keepalived.conf.
//!
//! A [`Pair`] (r1 priority 200, r2 priority 100, VRRPv3 at `--advert` ms) on the
//! lab LAN; the instance has its first VIP in `virtual_ipaddress` and the others in
//! `virtual_ipaddress_excluded` (an advert cannot list thousands; keepalived's man
//! page recommends this for large sets). Addresses: IPv6 `2001:db8::1:0/64` on (the
//! LAN's prefix), or IPv4 /32s from the documentation ranges — they hold only
//! [`V4_MAX`], so the IPv4 variant is capped there.
//!
//! One run: r1 takes all VIPs, r2 settles as backup; an rtnetlink listener in r2's
//! namespace (address groups) and a capture on the client's port start; r1 is
//! killed (-9). *Decision* = r2's first advert on the wire (both implementations
//! send it before touching an address: keepalived by design, vipd because adding is
//! a message to its address thread). *Installed* = the last VIP's RTM_NEWADDR in
//! r2; *announced* = the client has seen a GARP / NA from r2 for every VIP. The
//! take-over figure is the later of the two. Then SIGTERM to r2: *release* = from
//! the signal to the last VIP's RTM_DELADDR. Times are taken by the observers when
//! they read the event (on this 2-core machine they share a core with the daemon,
//! so a busy daemon delays them too — the same for every variant).

use super::checkers::{cpu_user_sys, tree};
use super::pair::{Pair, BACKUP_PRIORITY, MASTER_PRIORITY, VRID};
use super::scale::Variant;
use super::stats::median_ms;
use super::{check_interrupt, machine, ms, sleep, wait_for, Impl};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vipd_netns::{Capture, Netns, Signal};

#[derive(Args, Debug, Clone)]
pub struct VipsArgs {
    /// VIPs on the instance (the IPv4 variant holds at most 662: the documentation
    /// ranges).
    #[arg(long, default_value_t = 10_000)]
    pub vips: usize,
    /// Address families to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_values_t = vec![VipFamily::V4, VipFamily::V6, VipFamily::V6Shared])]
    pub families: Vec<VipFamily>,
    /// VRRPv3 advert interval in milliseconds (a multiple of 10).
    #[arg(long, default_value_t = 100)]
    pub advert: u32,
    /// Runs per variant and family (interleaved; the report gives medians).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Variants to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![Variant::Vipd, Variant::Keepalived227, Variant::Keepalived243])]
    pub variants: Vec<Variant>,
    /// Print JSON instead of markdown tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipFamily {
    V4,
    V6,
    /// IPv6 VIPs that share one solicited-node multicast group (`2001:db8::K:0:1`,
    /// the same low 24 bits): the kernel's own cost per address stays flat (see
    /// BENCHMARKS.md), so what is left is the daemons' work.
    #[value(name = "v6-shared")]
    V6Shared,
}

impl std::fmt::Display for VipFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VipFamily::V4 => "IPv4",
            VipFamily::V6 => "IPv6",
            VipFamily::V6Shared => "IPv6 (one solicited-node group)",
        })
    }
}

/// IPv4 VIPs the documentation ranges hold beside the LAN's own addresses:
/// 198.51.100.1–254, 203.0.113.1–254 and 192.0.2.101–254.
pub const V4_MAX: usize = 254 + 254 + 154;

/// VIP `k` of `family` (`k` < [`V4_MAX`] for IPv4).
pub fn vip(family: VipFamily, k: usize) -> IpAddr {
    match family {
        VipFamily::V4 => {
            let (net, host) = match k {
                0..=253 => ([198, 51, 100], k + 1),
                254..=507 => ([203, 0, 113], k - 253),
                _ => ([192, 0, 2], k - 508 + 101),
            };
            assert!(host <= 254, "IPv4 VIP {k} is past the documentation ranges");
            IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], host as u8))
        }
        VipFamily::V6 => {
            let n = 0x1_0000 + k as u64;
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                (n >> 16) as u16,
                n as u16,
            ))
        }
        VipFamily::V6Shared => {
            assert!(
                k < 0xffff,
                "IPv6 VIP {k}: at most 65,534 share a group here"
            );
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, k as u16 + 1, 0, 1))
        }
    }
}

/// The keepalived.conf both implementations read (router `router`).
pub fn config(family: VipFamily, n: usize, router: usize, priority: u8, advert_ms: u32) -> String {
    let advert = format!("{:.2}", f64::from(advert_ms) / 1000.0);
    let len = match family {
        VipFamily::V4 => 32,
        VipFamily::V6 | VipFamily::V6Shared => 64,
    };
    let mut c = String::with_capacity(n * 32 + 512);
    let _ = write!(
        c,
        "global_defs {{\n    router_id bench_vips_r{router}\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {VRID}\n    \
         priority {priority}\n    advert_int {advert}\n    version 3\n    \
         virtual_ipaddress {{\n        {}/{len}\n    }}\n    virtual_ipaddress_excluded {{\n",
        vip(family, 0)
    );
    for k in 1..n {
        let _ = writeln!(c, "        {}/{len}", vip(family, k));
    }
    c.push_str("    }\n}\n");
    c
}

/// Address notifications in one namespace, as (read at, added?, address).
struct AddrMonitor {
    events: Arc<Mutex<Vec<(Instant, bool, IpAddr)>>>,
    overflow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

impl AddrMonitor {
    fn start(ns: &Netns) -> Result<AddrMonitor> {
        let fd = ns.run(open_listener)??;
        let events = Arc::new(Mutex::new(Vec::new()));
        let overflow = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, o, s) = (events.clone(), overflow.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bench-addrmon".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !s.load(Ordering::Relaxed) {
                    // SAFETY: valid buffer of that length.
                    let n = unsafe {
                        libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    };
                    let at = Instant::now();
                    if n < 0 {
                        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                            o.store(true, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let evs = vipd_linux::netlink::address_events(&buf[..n as usize]);
                    let mut g = e.lock().expect("monitor lock");
                    g.extend(evs.into_iter().map(|(added, k)| (at, added, k.addr)));
                }
            })?;
        Ok(AddrMonitor {
            events,
            overflow,
            stop,
            thread: Some(thread),
        })
    }

    /// When the last of `vips` had its `added` event (`None`: not all of them yet).
    fn all(&self, vips: &HashSet<IpAddr>, added: bool) -> Option<Instant> {
        let g = self.events.lock().expect("monitor lock");
        let mut seen = HashSet::with_capacity(vips.len());
        for &(at, a, addr) in g.iter() {
            if a == added && vips.contains(&addr) && seen.insert(addr) && seen.len() == vips.len() {
                return Some(at);
            }
        }
        None
    }

    /// When the first of `vips` had an `added` event.
    fn first(&self, vips: &HashSet<IpAddr>, added: bool) -> Option<Instant> {
        let g = self.events.lock().expect("monitor lock");
        g.iter()
            .find(|e| e.1 == added && vips.contains(&e.2))
            .map(|e| e.0)
    }

    fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::Relaxed)
    }
}

impl Drop for AddrMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An rtnetlink socket subscribed to the IPv4 and IPv6 address groups, with a large
/// receive buffer (10,000 notifications in a burst) and a 50 ms receive timeout.
fn open_listener() -> Result<OwnedFd> {
    // SAFETY: plain libc calls with valid arguments; the fd is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_NETLINK)");
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let rcvbuf: libc::c_int = 64 << 20;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid option values and sizes.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = (1 << (RTNLGRP_IPV4_IFADDR - 1)) | (1 << (RTNLGRP_IPV6_IFADDR - 1));
    // SAFETY: valid sockaddr_nl.
    let r = unsafe {
        libc::bind(
            raw,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("bind(AF_NETLINK)");
    }
    Ok(fd)
}

/// How many of `vips` are addresses in `ns` (one netlink dump).
fn present(ns: &Netns, vips: &HashSet<IpAddr>) -> usize {
    ns.run(|| {
        vipd_linux::netlink::Rtnetlink::open()
            .and_then(|mut nl| nl.dump_addresses())
            .map(|a| a.iter().filter(|k| vips.contains(&k.addr)).count())
            .unwrap_or(0)
    })
    .unwrap_or(0)
}

/// Packets sent so far on `ns`'s eth0.
fn tx_packets(ns: &Netns) -> u64 {
    ns.ip(["-s", "-j", "link", "show", "dev", "eth0"])
        .ok()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
        .and_then(|v| v[0]["stats64"]["tx"]["packets"].as_u64())
        .unwrap_or(0)
}

/// r2 is a backup now (keepalived: its last state line says so — it may have taken
/// over for a moment while r1 was busy announcing).
fn settled_backup(pair: &Pair) -> bool {
    match pair.imp {
        Impl::Vipd => pair.is_backup(2),
        Impl::Keepalived => pair.daemons[1].as_ref().is_some_and(|d| {
            let log = d.proc.log();
            log.rfind("Entering BACKUP STATE") > log.rfind("Entering MASTER STATE")
        }),
    }
}

/// The daemons' log tails with each line cut short (a transition line lists every
/// VIP).
fn logs(pair: &Pair) -> String {
    pair.logs()
        .lines()
        .map(|l| match l.char_indices().nth(300) {
            Some((at, _)) => format!("{}…\n", &l[..at]),
            None => format!("{l}\n"),
        })
        .collect()
}

/// One run of one variant.
#[derive(Debug, Clone)]
struct Measure {
    /// From the kill to r2's first advert (Master_Down_Interval, for reference).
    master_down: Duration,
    /// From the decision to the last VIP in r2's kernel.
    installed: Duration,
    /// From the decision to the client having seen every VIP announced.
    announced: Duration,
    /// GARP / NA frames from r2 the client saw in the take-over's first burst window.
    frames: usize,
    /// CPU seconds (user, system) of r2's daemon from the kill until the take-over was
    /// seen complete.
    takeover_cpu: (f64, f64),
    /// From SIGTERM to the last VIP gone.
    release: Option<Duration>,
    /// From the first VIP gone to the last (the removal itself: vipd holds the
    /// addresses one advert interval after its priority-0 advert, make-before-break).
    removal: Option<Duration>,
    /// VIPs still in the kernel after the daemon exited (then no release figures).
    left: usize,
}

impl Measure {
    fn takeover(&self) -> Duration {
        self.installed.max(self.announced)
    }
}

/// How long a run may take for one step (keepalived at 10,000 VIPs is slow).
const STEP: Duration = Duration::from_secs(300);

fn one_run(a: &VipsArgs, family: VipFamily, n: usize, v: Variant) -> Result<Measure> {
    let imp = match v {
        Variant::Vipd => Impl::Vipd,
        _ => Impl::Keepalived,
    };
    let mut pair = Pair::new(imp, "bench-vips")?;
    if let Some(ver) = v.keepalived() {
        pair.keepalived = ver;
    }
    let vips: HashSet<IpAddr> = (0..n).map(|k| vip(family, k)).collect();
    pair.start_daemon(1, &config(family, n, 1, MASTER_PRIORITY, a.advert), &[])?;
    if !wait_for(STEP, Duration::from_millis(200), || {
        present(pair.lan.router(1), &vips) == n
    }) {
        check_interrupt()?;
        bail!(
            "{v}: r1 holds {} of {n} VIPs after {STEP:?}\n{}",
            present(pair.lan.router(1), &vips),
            logs(&pair)
        );
    }
    // r1's announcements (five rounds, and five more garp_master_delay = 5 s later)
    // must be over before r2 starts: a daemon sending tens of thousands of them may
    // miss its adverts meanwhile, and r2 would take over.
    let all_in = Instant::now();
    let advert_rate = 1000 / u64::from(a.advert);
    let mut last = (Instant::now(), tx_packets(pair.lan.router(1)));
    let quiet = wait_for(STEP, Duration::from_millis(1000), || {
        let now = (Instant::now(), tx_packets(pair.lan.router(1)));
        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
        last = now;
        all_in.elapsed() > Duration::from_secs(6) && rate < (2 * advert_rate + 10) as f64
    });
    if !quiet {
        check_interrupt()?;
        bail!("{v}: r1 still announcing after {STEP:?}\n{}", logs(&pair));
    }
    pair.start_daemon(2, &config(family, n, 2, BACKUP_PRIORITY, a.advert), &[])?;
    if !wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        settled_backup(&pair) && present(pair.lan.router(2), &vips) == 0
    }) {
        check_interrupt()?;
        bail!("{v}: r2 did not settle as backup\n{}", logs(&pair));
    }
    sleep(Duration::from_secs(1))?;
    if !settled_backup(&pair) || present(pair.lan.router(2), &vips) != 0 {
        bail!("{v}: r2 holds VIPs as backup\n{}", logs(&pair));
    }
    let mon = AddrMonitor::start(pair.lan.router(2))?;
    let cap = Capture::start(pair.lan.client(), "eth0")?;
    let r2 = pair.lan.router_mac(2);
    let r2_pids = tree(pair.daemon_mut(2).proc.pid());
    let cpu0 = cpu_user_sys(&r2_pids);
    let killed = Instant::now();
    pair.daemon_mut(1).proc.kill9();
    let announced_all = |frames: &[vipd_netns::Frame]| {
        let mut seen = HashSet::with_capacity(n);
        for f in frames.iter().filter(|f| {
            f.src_mac == r2 && f.at >= killed && (f.is_gratuitous_arp() || f.is_unsolicited_na())
        }) {
            if let Some(addr) = f.announced_addr() {
                if vips.contains(&addr) && seen.insert(addr) && seen.len() == n {
                    return Some(f.at);
                }
            }
        }
        None
    };
    let mut done = None;
    let deadline = Instant::now() + STEP;
    while Instant::now() < deadline && done.is_none() {
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(250));
        let Some(installed) = mon.all(&vips, true) else {
            continue;
        };
        if cap.len() < n {
            continue;
        }
        let frames = cap.snapshot();
        if let Some(announced) = announced_all(&frames) {
            done = Some((installed, announced, frames));
        }
    }
    let cpu1 = cpu_user_sys(&r2_pids);
    let Some((installed, announced, frames)) = done else {
        bail!(
            "{v}: take-over incomplete after {STEP:?}: {} of {n} VIPs in r2, {} frames captured{}\n{}",
            present(pair.lan.router(2), &vips),
            cap.len(),
            if mon.overflowed() { " (address listener overflowed)" } else { "" },
            logs(&pair)
        );
    };
    let Some(decided) = frames
        .iter()
        .find(|f| f.src_mac == r2 && f.at >= killed && f.vrrp().is_some())
        .map(|f| f.at)
    else {
        bail!("{v}: no advert from r2 captured");
    };
    let burst_end = announced.max(installed) + Duration::from_secs(1);
    let announcements = frames
        .iter()
        .filter(|f| f.src_mac == r2 && f.at >= killed && f.at <= burst_end)
        .filter(|f| f.is_gratuitous_arp() || f.is_unsolicited_na())
        .count();
    drop(cap);
    // Release: SIGTERM to the master holding every VIP.
    let termed = Instant::now();
    pair.daemon_mut(2).proc.signal(Signal::SIGTERM)?;
    let mut released = None;
    let deadline = Instant::now() + STEP;
    // keepalived 2.2.7 at 10,000 IPv6 VIPs: its parent kills the VRRP process after a
    // few seconds of removing, and the rest of the VIPs stay. Counted, not waited for.
    let mut exited_at = None;
    while Instant::now() < deadline && released.is_none() {
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(100));
        released = mon.all(&vips, false);
        let running = pair.daemon_mut(2).proc.is_running();
        match (running, exited_at) {
            (true, _) => exited_at = None,
            (false, None) => exited_at = Some(Instant::now()),
            (false, Some(t)) if t.elapsed() > Duration::from_secs(2) => break,
            _ => {}
        }
    }
    let left = match released {
        Some(_) => 0,
        None if exited_at.is_some() => present(pair.lan.router(2), &vips),
        None => 0,
    };
    let released = match released {
        Some(t) => Some(t),
        None if left > 0 => None,
        None => mon.all(&vips, false),
    };
    if left > 0 {
        eprintln!("{v}: exited after SIGTERM leaving {left} of {n} VIPs in the kernel");
    }
    let Some(released) = released.or(if left > 0 { Some(termed) } else { None }) else {
        bail!(
            "{v}: release incomplete after {STEP:?}: {} of {n} VIPs still in r2{}\n{}",
            present(pair.lan.router(2), &vips),
            if mon.overflowed() {
                " (address listener overflowed)"
            } else {
                ""
            },
            logs(&pair)
        );
    };
    if mon.overflowed() {
        bail!("{v}: the address listener overflowed: figures would be wrong");
    }
    let first_gone = mon.first(&vips, false).unwrap_or(released);
    let (release, removal) = match left {
        0 => (
            Some(released.saturating_duration_since(termed)),
            Some(released.saturating_duration_since(first_gone)),
        ),
        _ => (None, None),
    };
    Ok(Measure {
        master_down: decided.saturating_duration_since(killed),
        installed: installed.saturating_duration_since(decided),
        announced: announced.saturating_duration_since(decided),
        frames: announcements,
        takeover_cpu: (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
        release,
        removal,
        left,
    })
}

pub fn run(a: VipsArgs) -> Result<ExitCode> {
    anyhow::ensure!(a.vips >= 1, "--vips: at least 1");
    anyhow::ensure!(a.runs >= 1, "--runs: at least 1");
    anyhow::ensure!(
        a.advert >= 10 && a.advert.is_multiple_of(10) && a.advert <= 40950,
        "--advert: {} ms is not a VRRPv3 interval (a multiple of 10 ms)",
        a.advert
    );
    for v in &a.variants {
        if let Some(ver) = v.keepalived() {
            if ver.require().is_none() {
                bail!("{ver:?} is not installed, or leave out {v}");
            }
        }
    }
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut failed = 0;
    let mut tables = Vec::new();
    for &family in &a.families {
        let n = match family {
            VipFamily::V4 => a.vips.min(V4_MAX),
            VipFamily::V6 | VipFamily::V6Shared => a.vips,
        };
        if n < a.vips {
            eprintln!(
                "{family}: {n} VIPs (all the documentation ranges hold), not {}",
                a.vips
            );
        }
        let mut results: Vec<(Variant, Vec<Measure>)> =
            a.variants.iter().map(|&v| (v, Vec::new())).collect();
        for run in 1..=a.runs {
            for (v, ms_) in results.iter_mut() {
                check_interrupt()?;
                let t = Instant::now();
                match one_run(&a, family, n, *v) {
                    Ok(m) => {
                        eprintln!(
                            "{family} {n} VIPs, {v} run {run}/{}: take-over {:.1} ms (installed {:.1}, announced {:.1}, {} GARP/NA, CPU {:.2} s user + {:.2} s sys), release {:.1} ms (removal {:.1}); Master_Down {:.0} ms; run took {:.0} s",
                            a.runs,
                            ms(m.takeover()),
                            ms(m.installed),
                            ms(m.announced),
                            m.frames,
                            m.takeover_cpu.0,
                            m.takeover_cpu.1,
                            m.release.map_or(f64::NAN, ms),
                            m.removal.map_or(f64::NAN, ms),
                            ms(m.master_down),
                            t.elapsed().as_secs_f64()
                        );
                        ms_.push(m);
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{family} {v} run {run}/{}: FAILED: {e:#}", a.runs);
                    }
                }
            }
        }
        tables.push((family, n, results));
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let med = |m: &[Measure], f: fn(&Measure) -> Duration| {
        median_ms(m.iter().map(|x| ms(f(x))).collect())
    };
    let takeover = |m: &Measure| m.takeover();
    let installed = |m: &Measure| m.installed;
    let announced = |m: &Measure| m.announced;
    // Over the runs that removed every VIP.
    let med_opt = |m: &[Measure], f: fn(&Measure) -> Option<Duration>| {
        median_ms(m.iter().filter_map(|x| f(x).map(ms)).collect())
    };
    let release = |m: &Measure| m.release;
    let removal = |m: &Measure| m.removal;
    let master_down = |m: &Measure| m.master_down;
    if a.json {
        let fams: Vec<_> = tables
            .iter()
            .map(|(family, n, results)| {
                json!({
                    "family": family.to_string(), "vips": n,
                    "variants": results.iter().map(|(v, m)| json!({
                        "variant": v.to_string(),
                        "runs": m.iter().map(|m| json!({
                            "master_down_ms": ms(m.master_down),
                            "installed_ms": ms(m.installed),
                            "announced_ms": ms(m.announced),
                            "takeover_ms": ms(m.takeover()),
                            "announcements": m.frames,
                            "takeover_cpu_user_s": m.takeover_cpu.0,
                            "takeover_cpu_sys_s": m.takeover_cpu.1,
                            "release_ms": m.release.map(ms),
                            "removal_ms": m.removal.map(ms),
                            "vips_left_after_exit": m.left,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = json!({
            "machine": machine(), "advert_ms": a.advert, "runs": a.runs,
            "loadavg_before": load_before.trim(), "loadavg_after": load_after.trim(),
            "families": fams,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut s = String::new();
        let f1 = |x: Option<f64>| x.map(|x| format!("{x:.1}")).unwrap_or("–".into());
        for (family, n, results) in &tables {
            let _ = writeln!(
                s,
                "### {n} {family} VIPs on one VRRPv3 instance ({} ms adverts): take-over and release \
                 (medians of {} run(s), ms)\n\n\
                 Load average before: {}; after: {}.\n\n\
                 | variant | runs ok | Master_Down (kill → first advert) | all installed | all announced | take-over (later of the two) | GARP/NA frames until 1 s after | daemon CPU s during take-over (user + sys) | release (SIGTERM → last gone) | removal (first gone → last gone) |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                a.advert,
                a.runs,
                load_before.trim(),
                load_after.trim(),
            );
            for (v, m) in results {
                let _ = writeln!(
                    s,
                    "| {v} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    m.len(),
                    a.runs,
                    f1(med(m, master_down)),
                    f1(med(m, installed)),
                    f1(med(m, announced)),
                    f1(med(m, takeover)),
                    m.last().map(|m| m.frames.to_string()).unwrap_or("–".into()),
                    match (
                        median_ms(m.iter().map(|m| m.takeover_cpu.0).collect()),
                        median_ms(m.iter().map(|m| m.takeover_cpu.1).collect()),
                    ) {
                        (Some(u), Some(s)) => format!("{u:.2} + {s:.2}"),
                        _ => "–".into(),
                    },
                    match m.iter().map(|m| m.left).max() {
                        Some(left) if left > 0 => format!(
                            "exited leaving {left} of {n} VIPs ({} of {} runs)",
                            m.iter().filter(|m| m.left > 0).count(),
                            m.len()
                        ),
                        _ => f1(med_opt(m, release)),
                    },
                    f1(med_opt(m, removal)),
                );
            }
            if let Some((_, vm)) = results.iter().find(|(v, _)| *v == Variant::Vipd) {
                let _ = writeln!(
                    s,
                    "\n| vipd / … | take-over | release | removal |\n|---|---:|---:|---:|"
                );
                for (v, m) in results.iter().filter(|(v, _)| *v != Variant::Vipd) {
                    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
                        (Some(x), Some(y)) if y > 0.0 => format!("{:.3}×", x / y),
                        _ => "–".into(),
                    };
                    let r =
                        |f: fn(&Measure) -> Option<Duration>| ratio(med_opt(vm, f), med_opt(m, f));
                    let _ = writeln!(
                        s,
                        "| {v} | {} | {} | {} |",
                        ratio(med(vm, takeover), med(m, takeover)),
                        r(release),
                        r(removal)
                    );
                }
            }
            s.push('\n');
        }
        print!("{s}");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_are_unique_documentation_addresses() {
        let v4: HashSet<IpAddr> = (0..V4_MAX).map(|k| vip(VipFamily::V4, k)).collect();
        assert_eq!(v4.len(), V4_MAX);
        assert_eq!(vip(VipFamily::V4, 0).to_string(), "198.51.100.1");
        assert_eq!(vip(VipFamily::V4, 254).to_string(), "203.0.113.1");
        assert_eq!(vip(VipFamily::V4, 508).to_string(), "192.0.2.101");
        assert_eq!(vip(VipFamily::V4, V4_MAX - 1).to_string(), "192.0.2.254");
        for a in &v4 {
            let IpAddr::V4(a) = a else { unreachable!() };
            let net = [a.octets()[0], a.octets()[1], a.octets()[2]];
            assert!(
                [[192, 0, 2], [198, 51, 100], [203, 0, 113]].contains(&net),
                "{a}"
            );
            // Not the LAN's own (routers .11…, client .50, VIP_V4 .100).
            assert!(a.octets()[..3] != [192, 0, 2] || a.octets()[3] > 100, "{a}");
        }
        let v6: HashSet<IpAddr> = (0..10_000).map(|k| vip(VipFamily::V6, k)).collect();
        assert_eq!(v6.len(), 10_000);
        assert_eq!(vip(VipFamily::V6, 0).to_string(), "2001:db8::1:0");
        assert_eq!(vip(VipFamily::V6, 9_999).to_string(), "2001:db8::1:270f");
        let shared: HashSet<IpAddr> = (0..10_000).map(|k| vip(VipFamily::V6Shared, k)).collect();
        assert_eq!(shared.len(), 10_000);
        assert_eq!(vip(VipFamily::V6Shared, 0).to_string(), "2001:db8::1:0:1");
        for a in &shared {
            let IpAddr::V6(a) = a else { unreachable!() };
            let o = a.octets();
            assert_eq!(
                o[..8],
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0],
                "the LAN's /64"
            );
            assert_eq!(o[13..], [0, 0, 1], "one solicited-node group");
        }
        let c = config(VipFamily::V6, 3, 2, 100, 100);
        assert!(
            c.contains("virtual_ipaddress {\n        2001:db8::1:0/64\n    }"),
            "{c}"
        );
        assert!(c.contains(
            "virtual_ipaddress_excluded {\n        2001:db8::1:1/64\n        2001:db8::1:2/64\n    }"
        ));
        assert!(c.contains("priority 100\n") && c.contains("advert_int 0.10\n"));
    }
}
