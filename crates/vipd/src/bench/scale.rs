//! `vipd bench scale` (issue 16): memory and CPU of a master running many VRRPv3
//! instances, vipd next to keepalived 2.2.7 and 2.4.3 on the same keepalived.conf.
//!
//! Two namespaces joined by ⌈N / 255⌉ veth pairs: `r` runs the daemon, `p` is the
//! other end of every link (a silent peer: it only receives the adverts). Interface
//! `eth<k>` carries instances k·255 … k·255 + 254 with VRIDs 1…255, so a VRID is
//! unique per interface. Instance i has one VIP, the three documentation ranges
//! taken in turn: 198.51.100.x/24, 203.0.113.x/24, 2001:db8:1::x/64 (an IPv4 range
//! that runs out hands its turn to IPv6). Every instance is `state MASTER`,
//! priority 200, VRRPv3, `advert_int` = the advert interval.
//!
//! For each variant (one after the other, each in a fresh lab): start the daemon,
//! wait until all N VIPs are installed, let it settle, then over a window: CPU time
//! (utime + stime of every process of the daemon, /proc/PID/stat), adverts sent
//! (the tx packet counters of r's links: a daemon that falls behind would look cheap),
//! and at the end the resident memory summed over every process: VmRSS (what the
//! issue's target counts; keepalived's forked processes share pages, which this
//! counts in each), PSS (shared pages split between the processes that map them,
//! /proc/PID/smaps_rollup) and VmHWM (peak). vipd runs from a private copy of this
//! binary, as an installed daemon is its executable's only user (`bench::private_exe`).

use super::checkers::{cpu_seconds, memory_kib, tree};
use super::stats::median_ms;
use super::{check_interrupt, machine, private_exe, sleep, wait_for};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vipd_netns::{Keepalived, Netns, Proc, Version, WorkDir};

#[derive(Args, Debug, Clone)]
pub struct ScaleArgs {
    /// VRRPv3 instances (one VIP each; 255 per interface).
    #[arg(long, default_value_t = 510)]
    pub instances: usize,
    /// Advert interval in milliseconds (a multiple of 10).
    #[arg(long, default_value_t = 100)]
    pub advert: u32,
    /// Seconds between the last VIP installed and the window.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
    /// Length of the CPU window, seconds.
    #[arg(long, default_value_t = 20)]
    pub window: u64,
    /// Measurements per variant (interleaved; the report gives medians).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Variants to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![Variant::Vipd, Variant::Keepalived227, Variant::Keepalived243])]
    pub variants: Vec<Variant>,
    /// Print JSON instead of markdown tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Vipd,
    #[value(name = "keepalived-2.2.7")]
    Keepalived227,
    #[value(name = "keepalived-2.4.3")]
    Keepalived243,
}

impl Variant {
    pub(super) fn name(self) -> &'static str {
        match self {
            Variant::Vipd => "vipd",
            Variant::Keepalived227 => "keepalived-2.2.7",
            Variant::Keepalived243 => "keepalived-2.4.3",
        }
    }

    pub(super) fn keepalived(self) -> Option<Version> {
        match self {
            Variant::Vipd => None,
            Variant::Keepalived227 => Some(Version::V2_2_7),
            Variant::Keepalived243 => Some(Version::V2_4_3),
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const PER_IFACE: usize = 255;
/// Interfaces get 192.0.2.16k+1 (r) / +2 (p) in /28s: 16 of them at most.
const MAX_IFACES: usize = 16;

/// Instance `i`'s VIP with its prefix length (`addr/len`).
fn vip(i: usize) -> String {
    let (pool, k) = (i % 3, i / 3);
    match pool {
        0 if k < 254 => format!("198.51.100.{}/24", k + 1),
        1 if k < 254 => format!("203.0.113.{}/24", k + 1),
        _ => format!("2001:db8:1::{:x}/64", i + 1),
    }
}

fn ifaces(n: usize) -> usize {
    n.div_ceil(PER_IFACE)
}

/// The keepalived.conf both implementations read.
pub fn config(n: usize, advert_ms: u32) -> String {
    let advert = format!("{:.2}", f64::from(advert_ms) / 1000.0);
    let mut c = String::with_capacity(n * 200 + 64);
    c.push_str("global_defs {\n    router_id bench_scale\n}\n");
    for i in 0..n {
        let (iface, vrid) = (i / PER_IFACE, i % PER_IFACE + 1);
        let _ = write!(
            c,
            "vrrp_instance VI_{i} {{\n    state MASTER\n    interface eth{iface}\n    \
             virtual_router_id {vrid}\n    priority 200\n    advert_int {advert}\n    \
             version 3\n    virtual_ipaddress {{\n        {}\n    }}\n}}\n",
            vip(i)
        );
    }
    c
}

/// The two namespaces and their links.
struct Lab {
    // The daemon first: dropped (SIGKILLed) before its namespace goes.
    daemon: Option<Proc>,
    r: Netns,
    _p: Netns,
    links: usize,
    work: WorkDir,
}

impl Lab {
    fn new(n: usize) -> Result<Lab> {
        let links = ifaces(n);
        let r = Netns::unique("sclr")?;
        let p = Netns::unique("sclp")?;
        for ns in [&r, &p] {
            // Link-local addresses usable at once (IPv6 instances send from them).
            ns.sysctls(&[
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
                ("net.ipv6.conf.default.dad_transmits", "0"),
            ])?;
        }
        let mut batch_r = String::new();
        let mut batch_p = String::new();
        for k in 0..links {
            let peer = format!("s{}x{k}", std::process::id());
            r.ip([
                "link",
                "add",
                &format!("eth{k}"),
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ])?;
            r.ip(["link", "set", &peer, "netns", p.name()])?;
            let _ = writeln!(batch_p, "link set {peer} name eth{k}");
            let base = 16 * k;
            let _ = writeln!(batch_r, "addr add 192.0.2.{}/28 dev eth{k}", base + 1);
            let _ = writeln!(batch_r, "link set eth{k} up");
            let _ = writeln!(batch_p, "addr add 192.0.2.{}/28 dev eth{k}", base + 2);
            let _ = writeln!(batch_p, "link set eth{k} up");
        }
        r.ip_batch(&batch_r)?;
        p.ip_batch(&batch_p)?;
        let mut work = WorkDir::new("bench-scale")?;
        if std::env::var_os("VIPD_BENCH_KEEP").is_some() {
            work.keep();
        }
        Ok(Lab {
            daemon: None,
            r,
            _p: p,
            links,
            work,
        })
    }

    fn start(&mut self, v: Variant, conf: &str) -> Result<i32> {
        let proc = match v.keepalived() {
            None => {
                let path = self.work.join("vipd.conf");
                std::fs::write(&path, conf)?;
                let exe = private_exe(&self.work)?;
                let args: Vec<std::ffi::OsString> = vec![
                    exe.into(),
                    "run".into(),
                    "-f".into(),
                    path.into(),
                    "--control-socket".into(),
                    self.work.join("vipd.sock").into(),
                    "--pid-file".into(),
                    self.work.join("vipd.pid").into(),
                ];
                self.r.spawn(&args, self.work.join("vipd.log"))?
            }
            Some(ver) => Keepalived::new().version(ver).start(
                &self.r,
                conf,
                &self.work.join(format!("ka-{}", ver.name())),
            )?,
        };
        let pid = proc.pid();
        self.daemon = Some(proc);
        Ok(pid)
    }

    fn log_tail(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log_tail(20))
            .unwrap_or_default()
    }

    /// How many of the VIPs are on r's links.
    fn vips_installed(&self, vips: &std::collections::HashSet<String>) -> usize {
        let Ok(out) = self.r.ip(["-o", "addr", "show"]) else {
            return 0;
        };
        out.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|x| x == "inet" || x == "inet6")?;
                w.next()
            })
            .filter(|a| vips.contains(*a))
            .count()
    }

    /// Packets sent on r's links so far (adverts, plus the few GARP/NA).
    fn tx_packets(&self) -> Result<u64> {
        let out = self.r.ip(["-s", "-j", "link", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("ip -s -j link")?;
        let mut sum = 0;
        for l in v.as_array().into_iter().flatten() {
            let name = l["ifname"].as_str().unwrap_or("");
            if (0..self.links).any(|k| name == format!("eth{k}")) {
                sum += l["stats64"]["tx"]["packets"].as_u64().unwrap_or(0);
            }
        }
        Ok(sum)
    }
}

/// One measurement of one variant.
#[derive(Debug, Clone)]
struct Measure {
    processes: usize,
    threads: u64,
    rss_kib: u64,
    pss_kib: u64,
    hwm_kib: u64,
    cpu_s: f64,
    window_s: f64,
    adverts_per_s: f64,
    up_s: f64,
}

/// PSS in KiB summed over `pids` (smaps_rollup).
fn pss_kib(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn threads(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn one_run(a: &ScaleArgs, v: Variant, conf: &str) -> Result<Measure> {
    let mut lab = Lab::new(a.instances)?;
    let vips: std::collections::HashSet<String> = (0..a.instances).map(vip).collect();
    let t0 = Instant::now();
    let pid = lab.start(v, conf)?;
    let all_up = wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
        lab.vips_installed(&vips) == a.instances
    });
    check_interrupt()?;
    if !all_up {
        bail!(
            "{v}: only {} of {} VIPs installed after 120 s\n{}",
            lab.vips_installed(&vips),
            a.instances,
            lab.log_tail()
        );
    }
    let up_s = t0.elapsed().as_secs_f64();
    sleep(Duration::from_secs(a.settle))?;
    let pids = tree(pid);
    let (c0, tx0, w0) = (cpu_seconds(&pids), lab.tx_packets()?, Instant::now());
    sleep(Duration::from_secs(a.window))?;
    let (c1, tx1) = (cpu_seconds(&pids), lab.tx_packets()?);
    let window_s = w0.elapsed().as_secs_f64();
    // The tree again: a process that appeared during the window counts too.
    let pids = tree(pid);
    let (rss_kib, hwm_kib) = memory_kib(&pids);
    let m = Measure {
        processes: pids.len(),
        threads: threads(&pids),
        rss_kib,
        pss_kib: pss_kib(&pids),
        hwm_kib,
        cpu_s: c1 - c0,
        window_s,
        adverts_per_s: (tx1 - tx0) as f64 / window_s,
        up_s,
    };
    if lab.vips_installed(&vips) != a.instances {
        bail!("{v}: VIPs lost during the window\n{}", lab.log_tail());
    }
    Ok(m)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(a: ScaleArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        (1..=MAX_IFACES * PER_IFACE).contains(&a.instances),
        "--instances: 1..={}",
        MAX_IFACES * PER_IFACE
    );
    anyhow::ensure!(
        a.advert >= 10 && a.advert.is_multiple_of(10) && a.advert <= 40950,
        "--advert: {} ms is not a VRRPv3 interval (a multiple of 10 ms)",
        a.advert
    );
    anyhow::ensure!(
        a.rounds > 0 && a.window > 0,
        "--rounds and --window: at least 1"
    );
    for v in &a.variants {
        if let Some(ver) = v.keepalived() {
            if ver.require().is_none() {
                bail!("{ver:?} is not installed, or leave out {v}");
            }
        }
    }
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let conf = config(a.instances, a.advert);
    let mut results: Vec<(Variant, Vec<Measure>)> =
        a.variants.iter().map(|&v| (v, Vec::new())).collect();
    let mut failed = 0;
    for round in 1..=a.rounds {
        for (v, ms) in results.iter_mut() {
            check_interrupt()?;
            match one_run(&a, *v, &conf) {
                Ok(m) => {
                    eprintln!(
                        "{v} round {round}/{}: RSS {:.1} MiB (PSS {:.1}), {} process(es), {} thread(s), \
                         CPU {:.1} % of one core, {:.0} packets/s, all VIPs after {:.1} s",
                        a.rounds,
                        mib(m.rss_kib),
                        mib(m.pss_kib),
                        m.processes,
                        m.threads,
                        m.cpu_s / m.window_s * 100.0,
                        m.adverts_per_s,
                        m.up_s
                    );
                    ms.push(m);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{v} round {round}/{}: FAILED: {e:#}", a.rounds);
                }
            }
        }
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let med = |ms: &[Measure], f: fn(&Measure) -> f64| median_ms(ms.iter().map(f).collect());
    let rss = |m: &Measure| mib(m.rss_kib);
    let pss = |m: &Measure| mib(m.pss_kib);
    let hwm = |m: &Measure| mib(m.hwm_kib);
    let cpu = |m: &Measure| m.cpu_s / m.window_s * 100.0;
    let pps = |m: &Measure| m.adverts_per_s;
    if a.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(v, ms)| {
                json!({
                    "variant": v.name(),
                    "runs": ms.iter().map(|m| json!({
                        "processes": m.processes, "threads": m.threads,
                        "rss_kib": m.rss_kib, "pss_kib": m.pss_kib, "hwm_kib": m.hwm_kib,
                        "cpu_s": m.cpu_s, "window_s": m.window_s,
                        "packets_per_s": m.adverts_per_s, "all_vips_s": m.up_s,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = json!({
            "machine": machine(), "instances": a.instances, "advert_ms": a.advert,
            "settle_s": a.settle, "window_s": a.window,
            "loadavg_before": load_before.trim(), "loadavg_after": load_after.trim(),
            "variants": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut s = String::new();
        let f1 = |x: Option<f64>| x.map(|x| format!("{x:.1}")).unwrap_or("–".into());
        let _ = writeln!(
            s,
            "### {} VRRPv3 instances at {} ms adverts, one VIP each, master only: \
             memory and CPU ({} s window after {} s settle; medians of {} round(s))\n\n\
             Load average before: {}; after: {}; expected adverts/s: {}.\n\n\
             | variant | runs ok | processes | threads | RSS MiB (sum) | PSS MiB (sum) | peak RSS MiB (sum of VmHWM) | CPU % of one core | packets/s sent | all VIPs after s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            a.instances,
            a.advert,
            a.window,
            a.settle,
            a.rounds,
            load_before.trim(),
            load_after.trim(),
            a.instances as u64 * 1000 / u64::from(a.advert)
        );
        for (v, ms) in &results {
            let _ = writeln!(
                s,
                "| {v} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                ms.len(),
                a.rounds,
                ms.last()
                    .map(|m| m.processes.to_string())
                    .unwrap_or("–".into()),
                ms.last()
                    .map(|m| m.threads.to_string())
                    .unwrap_or("–".into()),
                f1(med(ms, rss)),
                f1(med(ms, pss)),
                f1(med(ms, hwm)),
                f1(med(ms, cpu)),
                med(ms, pps)
                    .map(|x| format!("{x:.0}"))
                    .unwrap_or("–".into()),
                f1(med(ms, |m| m.up_s)),
            );
        }
        if let Some((_, vm)) = results.iter().find(|(v, _)| *v == Variant::Vipd) {
            let _ = writeln!(s, "\n| vipd / … | RSS | PSS | CPU |\n|---|---:|---:|---:|");
            for (v, ms) in results.iter().filter(|(v, _)| *v != Variant::Vipd) {
                let r = |f: fn(&Measure) -> f64| match (med(vm, f), med(ms, f)) {
                    (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
                    _ => "–".into(),
                };
                let _ = writeln!(s, "| {v} | {} | {} | {} |", r(rss), r(pss), r(cpu));
            }
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
    fn vips_are_unique_and_vrids_unique_per_interface() {
        let n = 16 * 255;
        let vips: std::collections::HashSet<String> = (0..n).map(vip).collect();
        assert_eq!(vips.len(), n);
        assert_eq!(vip(0), "198.51.100.1/24");
        assert_eq!(vip(1), "203.0.113.1/24");
        assert_eq!(vip(2), "2001:db8:1::3/64");
        // Past 254 per IPv4 range: IPv6.
        assert_eq!(vip(3 * 254), "2001:db8:1::2fb/64");
        let c = config(510, 100);
        assert_eq!(c.matches("vrrp_instance").count(), 510);
        assert!(c.contains("interface eth1\n    virtual_router_id 255\n"));
        assert!(!c.contains("interface eth2"));
        assert!(c.contains("advert_int 0.10\n"));
        let ids: std::collections::HashSet<(usize, usize)> =
            (0..n).map(|i| (i / PER_IFACE, i % PER_IFACE + 1)).collect();
        assert_eq!(ids.len(), n);
        assert_eq!(ifaces(510), 2);
        assert_eq!(ifaces(511), 3);
    }
}
