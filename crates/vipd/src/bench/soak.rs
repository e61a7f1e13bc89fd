//! `vipd bench soak`: a pair and a three-router cluster at 50 ms adverts through
//! hundreds of random faults, vipd and keepalived side by side on the same seeded
//! fault sequence, with the invariants checked after every heal.
//!
//! Faults (one at a time; the LAN and daemons are back to normal between them):
//!
//! * `port-down` — a router's switch port down, then up (cable pull).
//! * `kill9` — `kill -9` a daemon (keepalived: its whole process group), restart it.
//! * `kill9-stale` — `kill -9` the master (its VIP stays, by design), restart it
//!   while its port is down: the restarted daemon must remove the stale VIP
//!   (vipd finds it by `proto 118`), then the port comes back.
//! * `sigterm` — SIGTERM, the daemon must exit and leave no VIP, restart it.
//! * `loss` — 30 % of every router's frames dropped at the switch.
//! * `reorder` — 25 % of the frames to every router held back in a slow queue.
//! * `duplicate` — 30 % of every router's frames delivered twice to the others.
//! * `partition` — one router cut off from the other routers, then healed.
//! * `sighup-storm` — ten SIGHUPs (reloads of the unchanged config) in ~0.3 s.
//! * `link-recreate` — a router's `eth0` deleted and re-created (new ifindex).
//!
//! The kernel this was written on has no `sch_netem`, so loss, duplication and
//! reordering are made with nftables on the switch (`numgen random` drops,
//! `dup to` the other ports, and a `meta priority` into a 6 kbit/s HTB class
//! without burst that delays a quarter of the frames by ~20 to ~250 ms, checked
//! with `ping -i 0.05` across the switch: 0.05 ms for the others).
//!
//! After each heal: exactly one holder of the VIP, and it is r1 (the highest
//! priority, preemption on), within one Master_Down_Interval of r1 plus
//! `--slack-ms` (for the loaded machine), and staying so for three adverts;
//! vipd's status says MASTER on r1 and BACKUP elsewhere; every daemon alive.
//! A stopped daemon must leave no VIP. The last router (the "witness") is never
//! restarted: its file descriptors, threads and VmRSS (keepalived: its VRRP
//! child's) are sampled after a warm-up of a tenth of the faults and at the end.

use super::pair::{config, Pair};
use super::{ms, sleep, wait_for, Impl};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vipd_netns::{Lan, Signal, Version, VIP_V4};

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Faults per implementation and topology.
    #[arg(long, default_value_t = 300)]
    pub faults: usize,
    /// Seed of the fault sequence (default: from the clock; always printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Topologies: number of routers (2 = a pair, 3 = a cluster).
    #[arg(long, value_delimiter = ',', default_values_t = vec![2usize, 3])]
    pub routers: Vec<usize>,
    /// Implementations (each in its own LAN, all at the same time).
    #[arg(long = "impl", value_delimiter = ',', default_values_t = vec![Target::Vipd, Target::Keepalived227, Target::Keepalived243])]
    pub impls: Vec<Target>,
    /// Fault kinds to draw from (each block of as many faults is a shuffle of all).
    #[arg(long, value_delimiter = ',', default_values_t = FaultKind::ALL.to_vec())]
    pub kinds: Vec<FaultKind>,
    /// VRRPv3 advert interval in milliseconds (a multiple of 10).
    #[arg(long, default_value_t = 50)]
    pub advert: u32,
    /// Allowance on top of Master_Down_Interval for a loaded machine.
    #[arg(long, default_value_t = 500)]
    pub slack_ms: u64,
    /// Print JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Vipd,
    #[value(name = "keepalived-2.2.7")]
    Keepalived227,
    #[value(name = "keepalived-2.4.3")]
    Keepalived243,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Vipd => "vipd",
            Target::Keepalived227 => "keepalived-2.2.7",
            Target::Keepalived243 => "keepalived-2.4.3",
        }
    }
    fn imp(self) -> Impl {
        match self {
            Target::Vipd => Impl::Vipd,
            _ => Impl::Keepalived,
        }
    }
    fn version(self) -> Version {
        match self {
            Target::Keepalived243 => Version::V2_4_3,
            _ => Version::V2_2_7,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    PortDown,
    Kill9,
    Kill9Stale,
    Sigterm,
    Loss,
    Reorder,
    Duplicate,
    Partition,
    SighupStorm,
    LinkRecreate,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::PortDown,
        FaultKind::Kill9,
        FaultKind::Kill9Stale,
        FaultKind::Sigterm,
        FaultKind::Loss,
        FaultKind::Reorder,
        FaultKind::Duplicate,
        FaultKind::Partition,
        FaultKind::SighupStorm,
        FaultKind::LinkRecreate,
    ];

    fn name(self) -> &'static str {
        match self {
            FaultKind::PortDown => "port-down",
            FaultKind::Kill9 => "kill9",
            FaultKind::Kill9Stale => "kill9-stale",
            FaultKind::Sigterm => "sigterm",
            FaultKind::Loss => "loss",
            FaultKind::Reorder => "reorder",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Partition => "partition",
            FaultKind::SighupStorm => "sighup-storm",
            FaultKind::LinkRecreate => "link-recreate",
        }
    }

    /// Faults that stop a daemon; never aimed at the witness.
    fn restarts(self) -> bool {
        matches!(
            self,
            FaultKind::Kill9 | FaultKind::Kill9Stale | FaultKind::Sigterm
        )
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// SplitMix64: small, seedable, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub kind: FaultKind,
    /// The router it hits (ignored by the LAN-wide loss/reorder/duplicate).
    pub router: usize,
    /// How long the fault lasts before the heal.
    pub hold: Duration,
}

/// The fault sequence for `n` routers: blocks that are shuffles of `kinds`.
pub fn plan(seed: u64, n: usize, faults: usize, kinds: &[FaultKind]) -> Vec<Fault> {
    let mut rng = Rng(seed ^ (n as u64).wrapping_mul(0xa076_1d64_78bd_642f));
    let mut out = Vec::with_capacity(faults);
    while out.len() < faults {
        let mut block = kinds.to_vec();
        for i in (1..block.len()).rev() {
            block.swap(i, rng.range(0, i as u64) as usize);
        }
        for kind in block.into_iter().take(faults - out.len()) {
            let router = match kind {
                FaultKind::Kill9Stale => 1,
                k if k.restarts() => rng.range(1, n as u64 - 1) as usize,
                _ => rng.range(1, n as u64) as usize,
            };
            let hold = Duration::from_millis(rng.range(200, 800));
            out.push(Fault { kind, router, hold });
        }
    }
    out
}

fn priorities(n: usize) -> Vec<u8> {
    match n {
        2 => vec![200, 100],
        _ => (0..n).map(|i| 200 - (100 * i / (n - 1)) as u8).collect(),
    }
}

/// Master_Down_Interval of the priority-200 router (RFC 9568: 3 × advert + skew).
pub fn master_down(advert_ms: u32) -> Duration {
    let adv = Duration::from_millis(u64::from(advert_ms));
    3 * adv + adv * (256 - 200) / 256
}

/// A violation's kind, as counted in the report.
const KINDS_OF_VIOLATION: [&str; 8] = [
    "not-converged",
    "flap",
    "state",
    "vip-after-stop",
    "stop-timeout",
    "stale-vip-kept",
    "daemon-died",
    "leak",
];

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    fds: usize,
    tasks: usize,
    rss_kb: u64,
}

fn usage(pid: i32) -> Option<Usage> {
    let count = |d: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{d}"))
            .ok()
            .map(|r| r.count())
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())?;
    Some(Usage {
        fds: count("fd")?,
        tasks: count("task")?,
        rss_kb,
    })
}

/// Tolerances of the leak check (start → end of the witness daemon).
const LEAK_FDS: usize = 2;
const LEAK_TASKS: usize = 1;
const LEAK_RSS_KB: u64 = 1024;

#[derive(Default)]
struct KindStats {
    faults: usize,
    violations: BTreeMap<&'static str, usize>,
    converge_ms: Vec<f64>,
}

struct LaneResult {
    target: Target,
    routers: usize,
    faults: usize,
    per_kind: BTreeMap<FaultKind, KindStats>,
    stale_left: usize,
    stale_marked: usize,
    leak: Option<(Usage, Usage)>,
    error: Option<String>,
    elapsed: Duration,
}

impl LaneResult {
    fn new(target: Target, routers: usize) -> LaneResult {
        LaneResult {
            target,
            routers,
            faults: 0,
            per_kind: BTreeMap::new(),
            stale_left: 0,
            stale_marked: 0,
            leak: None,
            error: None,
            elapsed: Duration::ZERO,
        }
    }

    fn violations(&self) -> BTreeMap<&'static str, usize> {
        let mut v = BTreeMap::new();
        for k in self.per_kind.values() {
            for (name, n) in &k.violations {
                *v.entry(*name).or_default() += n;
            }
        }
        if let Some((a, b)) = self.leak {
            if leaked(a, b) {
                *v.entry("leak").or_default() += 1;
            }
        }
        v
    }
}

fn leaked(a: Usage, b: Usage) -> bool {
    b.fds > a.fds + LEAK_FDS || b.tasks > a.tasks + LEAK_TASKS || b.rss_kb > a.rss_kb + LEAK_RSS_KB
}

struct Lane<'a> {
    target: Target,
    pair: Pair,
    texts: Vec<String>,
    args: &'a SoakArgs,
    label: String,
    result: LaneResult,
}

impl<'a> Lane<'a> {
    fn n(&self) -> usize {
        self.pair.lan.n_routers()
    }

    fn start(target: Target, n: usize, args: &'a SoakArgs) -> Result<Lane<'a>> {
        let mut pair = Pair::with_routers(target.imp(), n, "bench-soak")?;
        pair.keepalived = target.version();
        let texts: Vec<String> = priorities(n)
            .iter()
            .enumerate()
            .map(|(i, &p)| config(i + 1, p, args.advert))
            .collect();
        let mut lane = Lane {
            target,
            pair,
            texts,
            args,
            label: format!("{target}/{n} routers"),
            result: LaneResult::new(target, n),
        };
        for i in 1..=n {
            lane.restart(i)?;
            let ok = if i == 1 {
                wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
                    lane.pair.holds(1)
                })
            } else {
                wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
                    lane.pair.is_backup(i)
                })
            };
            super::check_interrupt()?;
            if !ok {
                bail!(
                    "{}: setup: r{i} did not settle\n{}",
                    lane.label,
                    lane.pair.logs()
                );
            }
        }
        if !wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
            lane.pair.holders() == [1]
        }) {
            bail!(
                "{}: setup: VIP held by {:?}",
                lane.label,
                lane.pair.holders()
            );
        }
        Ok(lane)
    }

    /// (Re)starts router `i`'s daemon and waits until it runs its instance.
    fn restart(&mut self, i: usize) -> Result<()> {
        self.pair.daemons[i - 1] = None;
        if self.target.imp() == Impl::Keepalived {
            // The killed daemons' pid files: their VRRP child may still be an
            // unreaped zombie, which keepalived takes for "already running". A
            // fresh /run after a crash has none either.
            for f in ["keepalived.pid", "vrrp.pid", "checkers.pid", "bfd.pid"] {
                let _ = std::fs::remove_file(self.pair.dir.join(format!("ka{i}/{f}")));
            }
        }
        let text = self.texts[i - 1].clone();
        self.pair.start_daemon(i, &text, &[])?;
        if self.target.imp() == Impl::Keepalived {
            let d = self.pair.daemons[i - 1].as_ref().expect("started");
            // 2.2.7 logs "Entering BACKUP STATE", 2.4.3 "entering FAULT state".
            if !wait_for(Duration::from_secs(10), Duration::from_millis(5), || {
                let log = d.proc.log().to_lowercase();
                ["backup", "master", "fault"]
                    .iter()
                    .any(|s| log.contains(&format!("entering {s} state")))
            }) {
                super::check_interrupt()?;
                bail!("keepalived on r{i} did not start\n{}", d.proc.log_tail(20));
            }
        }
        Ok(())
    }

    /// The PID whose resources are sampled: vipd itself, keepalived's VRRP child.
    fn sampled_pid(&self, i: usize) -> Option<i32> {
        let d = self.pair.daemons[i - 1].as_ref()?;
        match self.target.imp() {
            Impl::Vipd => Some(d.proc.pid()),
            Impl::Keepalived => {
                std::fs::read_to_string(self.pair.dir.join(format!("ka{i}/vrrp.pid")))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            }
        }
    }

    fn violation(&mut self, f: &Fault, no: usize, kind: &'static str, detail: String) {
        eprintln!(
            "[{}] fault {no} {} r{}: VIOLATION {kind}: {detail}",
            self.label, f.kind, f.router
        );
        *self
            .result
            .per_kind
            .entry(f.kind)
            .or_default()
            .violations
            .entry(kind)
            .or_default() += 1;
    }

    fn nft(&self, rules: &str) -> Result<()> {
        let file = self.pair.dir.join("soak.nft");
        std::fs::write(&file, rules)?;
        self.pair
            .lan
            .switch()
            .exec(&["nft".as_ref(), "-f".as_ref(), file.as_os_str()])
            .map(drop)
    }

    fn ports(&self) -> Vec<String> {
        (1..=self.n()).map(Lan::port_name).collect()
    }

    /// Installs the LAN-wide impairment of `kind`.
    fn impair(&self, kind: FaultKind) -> Result<()> {
        let mut r = String::from("table netdev soak {\n");
        for (k, port) in self.ports().iter().enumerate() {
            match kind {
                FaultKind::Loss => {
                    let _ = writeln!(
                        r,
                        "chain c{k} {{\ntype filter hook ingress device \"{port}\" priority 0\n\
                         numgen random mod 100 < 30 drop\n}}"
                    );
                }
                FaultKind::Duplicate => {
                    let dups: String = self
                        .ports()
                        .iter()
                        .filter(|p| *p != port)
                        .map(|p| format!(" dup to \"{p}\""))
                        .collect();
                    let _ = writeln!(
                        r,
                        "chain c{k} {{\ntype filter hook ingress device \"{port}\" priority 0\n\
                         numgen random mod 100 < 30{dups}\n}}"
                    );
                }
                FaultKind::Reorder => {
                    let sw = self.pair.lan.switch();
                    sw.exec(&[
                        "tc", "qdisc", "add", "dev", port, "root", "handle", "1:", "htb",
                        "default", "10",
                    ])?;
                    sw.exec(&[
                        "tc", "class", "add", "dev", port, "parent", "1:", "classid", "1:10",
                        "htb", "rate", "1gbit",
                    ])?;
                    sw.exec(&[
                        "tc", "class", "add", "dev", port, "parent", "1:", "classid", "1:20",
                        "htb", "rate", "6kbit", "ceil", "6kbit", "burst", "1", "cburst", "1",
                    ])?;
                    let _ = writeln!(
                        r,
                        "chain c{k} {{\ntype filter hook egress device \"{port}\" priority 0\n\
                         numgen random mod 100 < 25 meta priority set 1:20\n}}"
                    );
                }
                _ => unreachable!("not a LAN-wide impairment"),
            }
        }
        r.push_str("}\n");
        self.nft(&r)
    }

    fn unimpair(&self, kind: FaultKind) -> Result<()> {
        self.nft("delete table netdev soak\n")?;
        if kind == FaultKind::Reorder {
            for port in self.ports() {
                self.pair
                    .lan
                    .switch()
                    .exec(&["tc", "qdisc", "del", "dev", &port, "root"])?;
            }
        }
        Ok(())
    }

    fn partition(&self, r: usize, on: bool) -> Result<()> {
        if !on {
            return self.nft("delete table bridge soakpart\n");
        }
        let me = Lan::port_name(r);
        let others: Vec<String> = self.ports().into_iter().filter(|p| *p != me).collect();
        let set = others
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.nft(&format!(
            "table bridge soakpart {{\nchain f {{\ntype filter hook forward priority 0\n\
             iifname \"{me}\" oifname {{ {set} }} drop\n\
             iifname {{ {set} }} oifname \"{me}\" drop\n}}\n}}\n"
        ))
    }

    /// The VIP on router `r` carries vipd's address protocol (IFA_PROTO 118; the
    /// iproute2 here is too old to show it, so ask netlink from inside the namespace).
    fn stale_marked(&self, r: usize) -> bool {
        use vipd_linux::netlink::{Rtnetlink, VIPD_ADDR_PROTO};
        self.pair
            .lan
            .router(r)
            .run(|| -> Result<bool> {
                Ok(Rtnetlink::open()?.dump_addresses()?.iter().any(|a| {
                    a.addr == std::net::IpAddr::V4(VIP_V4) && a.proto == Some(VIPD_ADDR_PROTO)
                }))
            })
            .and_then(|r| r)
            .unwrap_or(false)
    }

    /// Injects fault `f` and heals it; returns the instant of the heal.
    fn inject(&mut self, f: &Fault, no: usize) -> Result<Instant> {
        let r = f.router;
        let bound = master_down(self.args.advert) + Duration::from_millis(self.args.slack_ms);
        match f.kind {
            FaultKind::PortDown => {
                self.pair.lan.set_port(r, false)?;
                sleep(f.hold)?;
                self.pair.lan.set_port(r, true)?;
            }
            FaultKind::Kill9 | FaultKind::Kill9Stale => {
                self.pair.daemon_mut(r).proc.kill9();
                if self.pair.holds(r) {
                    self.result.stale_left += 1;
                    if self.stale_marked(r) {
                        self.result.stale_marked += 1;
                    }
                }
                if f.kind == FaultKind::Kill9Stale {
                    self.pair.lan.set_port(r, false)?;
                    sleep(f.hold)?;
                    self.restart(r)?;
                    let up = Instant::now();
                    if !wait_for(bound, Duration::from_millis(10), || !self.pair.holds(r)) {
                        super::check_interrupt()?;
                        self.violation(
                            f,
                            no,
                            "stale-vip-kept",
                            format!(
                                "restarted r{r} (port down) still holds the VIP {:.0} ms after start",
                                ms(up.elapsed())
                            ),
                        );
                    }
                    self.pair.lan.set_port(r, true)?;
                    return Ok(Instant::now());
                }
                sleep(f.hold)?;
                self.restart(r)?;
            }
            FaultKind::Sigterm => {
                self.pair.daemon_mut(r).proc.signal(Signal::SIGTERM)?;
                if self
                    .pair
                    .daemon_mut(r)
                    .proc
                    .wait_timeout(Duration::from_secs(5))
                    .is_none()
                {
                    self.violation(
                        f,
                        no,
                        "stop-timeout",
                        "still running 5 s after SIGTERM".into(),
                    );
                    self.pair.daemon_mut(r).proc.kill9();
                } else if self.pair.holds(r) {
                    self.violation(
                        f,
                        no,
                        "vip-after-stop",
                        format!("r{r} exited holding the VIP"),
                    );
                }
                sleep(f.hold)?;
                self.restart(r)?;
            }
            FaultKind::Loss | FaultKind::Reorder | FaultKind::Duplicate => {
                self.impair(f.kind)?;
                sleep(f.hold)?;
                self.unimpair(f.kind)?;
            }
            FaultKind::Partition => {
                self.partition(r, true)?;
                sleep(f.hold)?;
                self.partition(r, false)?;
            }
            FaultKind::SighupStorm => {
                for _ in 0..10 {
                    self.pair.daemon_mut(r).proc.signal(Signal::SIGHUP)?;
                    sleep(Duration::from_millis(30))?;
                }
            }
            FaultKind::LinkRecreate => {
                self.pair.lan.delete_link(r)?;
                sleep(f.hold)?;
                self.pair.lan.recreate_link(r)?;
            }
        }
        Ok(Instant::now())
    }

    fn run_fault(&mut self, f: &Fault, no: usize) -> Result<()> {
        self.result.per_kind.entry(f.kind).or_default().faults += 1;
        self.result.faults += 1;
        let heal = self.inject(f, no)?;
        let bound = master_down(self.args.advert) + Duration::from_millis(self.args.slack_ms);
        let poll = Duration::from_millis(10);

        // Exactly one holder, r1, within the bound.
        let converged = wait_for(bound, poll, || self.pair.holders() == [1]);
        super::check_interrupt()?;
        if converged {
            let t = ms(heal.elapsed());
            self.result
                .per_kind
                .entry(f.kind)
                .or_default()
                .converge_ms
                .push(t);
        } else {
            let holders = self.pair.holders();
            self.violation(
                f,
                no,
                "not-converged",
                format!(
                    "VIP holders {holders:?} {:.0} ms after the heal (bound {:.0} ms)\n{}",
                    ms(heal.elapsed()),
                    ms(bound),
                    self.pair.logs()
                ),
            );
            // Let it recover (or not) before the next fault.
            if !wait_for(Duration::from_secs(10), poll, || self.pair.holders() == [1]) {
                super::check_interrupt()?;
                bail!(
                    "{}: no recovery 10 s after fault {no} ({}): VIP holders {:?}",
                    self.label,
                    f.kind,
                    self.pair.holders()
                );
            }
        }
        // Stays so for three adverts.
        let end = Instant::now() + 3 * Duration::from_millis(u64::from(self.args.advert));
        while Instant::now() < end {
            let h = self.pair.holders();
            if h != [1] {
                self.violation(f, no, "flap", format!("VIP holders {h:?} after converging"));
                wait_for(Duration::from_secs(5), poll, || self.pair.holders() == [1]);
                break;
            }
            std::thread::sleep(poll);
        }
        if self.target.imp() == Impl::Vipd {
            let states: Vec<Option<String>> = (1..=self.n()).map(|i| self.pair.state(i)).collect();
            let ok = states
                .iter()
                .enumerate()
                .all(|(i, s)| s.as_deref() == Some(if i == 0 { "MASTER" } else { "BACKUP" }));
            if !ok {
                self.violation(f, no, "state", format!("states {states:?}"));
            }
        }
        for i in 1..=self.n() {
            if !self.pair.daemon_mut(i).proc.is_running() {
                let tail = self.pair.daemon_mut(i).proc.log_tail(20);
                self.violation(f, no, "daemon-died", format!("r{i} exited\n{tail}"));
                self.restart(i)?;
            }
        }
        Ok(())
    }

    fn run(mut self, faults: &[Fault]) -> LaneResult {
        let started = Instant::now();
        let witness = self.n();
        let warmup = (faults.len() / 10).max(1);
        let mut first: Option<(i32, Usage)> = None;
        for (no, f) in faults.iter().enumerate() {
            if let Err(e) = self.run_fault(f, no + 1) {
                self.result.error = Some(format!("fault {} ({}): {e:#}", no + 1, f.kind));
                break;
            }
            if no + 1 == warmup {
                first = self
                    .sampled_pid(witness)
                    .and_then(|p| usage(p).map(|u| (p, u)));
            }
            if (no + 1) % 25 == 0 {
                eprintln!("[{}] {} faults done", self.label, no + 1);
            }
        }
        if let Some((pid, a)) = first {
            if self.sampled_pid(witness) == Some(pid) {
                if let Some(b) = usage(pid) {
                    self.result.leak = Some((a, b));
                }
            }
        }
        self.result.elapsed = started.elapsed();
        self.result
    }
}

pub fn run(a: SoakArgs) -> Result<ExitCode> {
    anyhow::ensure!(a.faults > 0, "--faults must be at least 1");
    anyhow::ensure!(!a.kinds.is_empty(), "--kinds: name at least one fault kind");
    anyhow::ensure!(
        a.advert >= 10 && a.advert.is_multiple_of(10),
        "--advert: {} ms is not a VRRPv3 interval (a multiple of 10 ms)",
        a.advert
    );
    for &n in &a.routers {
        anyhow::ensure!((2..=9).contains(&n), "--routers: {n} is not 2..=9");
    }
    for t in &a.impls {
        if t.imp() == Impl::Keepalived && t.version().find().is_none() {
            bail!("{t} is not installed; pass --impl without it");
        }
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    eprintln!(
        "soak: seed {seed} (replay with --seed {seed}), {} faults × routers {:?} × {:?}",
        a.faults, a.routers, a.impls
    );
    let started = Instant::now();
    let mut results: Vec<LaneResult> = Vec::new();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for &n in &a.routers {
            let faults = plan(seed, n, a.faults, &a.kinds);
            for &t in &a.impls {
                let a = &a;
                let faults = faults.clone();
                handles.push(s.spawn(move || match Lane::start(t, n, a) {
                    Ok(lane) => lane.run(&faults),
                    Err(e) => LaneResult {
                        error: Some(format!("setup: {e:#}")),
                        ..LaneResult::new(t, n)
                    },
                }));
            }
        }
        for h in handles {
            if let Ok(r) = h.join() {
                results.push(r);
            }
        }
    });
    super::check_interrupt()?;
    let elapsed = started.elapsed();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&a, seed, &results, elapsed))?
        );
    } else {
        print!("{}", markdown(&a, seed, &results, elapsed));
    }
    let vipd_bad = results
        .iter()
        .filter(|r| r.target == Target::Vipd)
        .any(|r| r.error.is_some() || !r.violations().is_empty());
    let any_error = results.iter().any(|r| r.error.is_some());
    Ok(if vipd_bad || any_error {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().max_by(f64::total_cmp)
}

fn to_json(
    a: &SoakArgs,
    seed: u64,
    results: &[LaneResult],
    elapsed: Duration,
) -> serde_json::Value {
    let lanes: Vec<_> = results
        .iter()
        .map(|r| {
            let kinds: serde_json::Map<String, serde_json::Value> = r
                .per_kind
                .iter()
                .map(|(k, s)| {
                    (
                        k.name().to_string(),
                        json!({
                            "faults": s.faults,
                            "violations": s.violations,
                            "converge_median_ms": median(&s.converge_ms),
                            "converge_max_ms": max(&s.converge_ms),
                        }),
                    )
                })
                .collect();
            json!({
                "impl": r.target.name(),
                "routers": r.routers,
                "faults": r.faults,
                "violations": r.violations(),
                "kinds": kinds,
                "stale_vips_after_kill9": r.stale_left,
                "stale_vips_marked_proto_118": r.stale_marked,
                "witness": r.leak.map(|(a, b)| json!({
                    "start": {"fds": a.fds, "tasks": a.tasks, "rss_kb": a.rss_kb},
                    "end": {"fds": b.fds, "tasks": b.tasks, "rss_kb": b.rss_kb},
                    "leaked": leaked(a, b),
                })),
                "error": r.error,
                "seconds": r.elapsed.as_secs_f64(),
            })
        })
        .collect();
    json!({
        "seed": seed,
        "faults": a.faults,
        "advert_ms": a.advert,
        "bound_ms": ms(master_down(a.advert)) + a.slack_ms as f64,
        "slack_ms": a.slack_ms,
        "leak_tolerance": {"fds": LEAK_FDS, "tasks": LEAK_TASKS, "rss_kb": LEAK_RSS_KB},
        "seconds": elapsed.as_secs_f64(),
        "machine": super::machine(),
        "lanes": lanes,
    })
}

fn markdown(a: &SoakArgs, seed: u64, results: &[LaneResult], elapsed: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Fault soak: seed {seed}, {} faults per lane, {} ms adverts, bound = \
         Master_Down_Interval {:.1} ms + slack {} ms, {:.0} s\n",
        a.faults,
        a.advert,
        ms(master_down(a.advert)),
        a.slack_ms,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| impl | routers | faults | violations | {} | kill -9 left VIP (proto 118) | witness fds / threads / RSS kB (start → end) | error |",
        KINDS_OF_VIOLATION.join(" | ")
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|{}---:|---|---|",
        "---:|".repeat(KINDS_OF_VIOLATION.len())
    );
    for r in results {
        let v = r.violations();
        let per: Vec<String> = KINDS_OF_VIOLATION
            .iter()
            .map(|k| v.get(k).copied().unwrap_or(0).to_string())
            .collect();
        let leak = r
            .leak
            .map(|(a, b)| {
                format!(
                    "{} → {} / {} → {} / {} → {}",
                    a.fds, b.fds, a.tasks, b.tasks, a.rss_kb, b.rss_kb
                )
            })
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} |",
            r.target,
            r.routers,
            r.faults,
            v.values().sum::<usize>(),
            per.join(" | "),
            r.stale_left,
            r.stale_marked,
            leak,
            r.error.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(
        s,
        "\n#### Per fault kind: faults, violations, heal → single holder r1 (median / max ms)\n"
    );
    let _ = writeln!(
        s,
        "| impl | routers | kind | faults | violations | median | max |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---|---:|---:|");
    for r in results {
        for (k, st) in &r.per_kind {
            let v: Vec<String> = st
                .violations
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect();
            let f = |x: Option<f64>| x.map(|x| format!("{x:.0}")).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.target,
                r.routers,
                k,
                st.faults,
                if v.is_empty() {
                    "0".into()
                } else {
                    v.join(", ")
                },
                f(median(&st.converge_ms)),
                f(max(&st.converge_ms))
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_replayable_and_balanced() {
        let a = plan(42, 3, 40, &FaultKind::ALL);
        let b = plan(42, 3, 40, &FaultKind::ALL);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(
            format!("{a:?}"),
            format!("{:?}", plan(43, 3, 40, &FaultKind::ALL))
        );
        for k in FaultKind::ALL {
            assert_eq!(a.iter().filter(|f| f.kind == k).count(), 4, "{k}");
        }
        // The witness (last router) is never restarted; kill9-stale hits the master.
        for f in &a {
            assert!((1..=3).contains(&f.router));
            if f.kind.restarts() {
                assert_ne!(f.router, 3);
            }
            if f.kind == FaultKind::Kill9Stale {
                assert_eq!(f.router, 1);
            }
            assert!(f.hold >= Duration::from_millis(200) && f.hold <= Duration::from_millis(800));
        }
    }

    #[test]
    fn bound_and_priorities() {
        assert_eq!(master_down(50), Duration::from_nanos(160_937_500));
        assert_eq!(priorities(2), [200, 100]);
        assert_eq!(priorities(3), [200, 150, 100]);
    }

    #[test]
    fn leak_tolerance() {
        let a = Usage {
            fds: 10,
            tasks: 2,
            rss_kb: 5000,
        };
        assert!(!leaked(
            a,
            Usage {
                fds: 12,
                tasks: 3,
                rss_kb: 6024
            }
        ));
        assert!(leaked(a, Usage { fds: 13, ..a }));
        assert!(leaked(a, Usage { tasks: 4, ..a }));
        assert!(leaked(a, Usage { rss_kb: 6025, ..a }));
    }
}
