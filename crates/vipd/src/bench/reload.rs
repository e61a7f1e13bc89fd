//! `vipd bench reload`: a reload at scale — V virtual servers × R real servers, one
//! real server replaced in the file, SIGHUP — for vipd and keepalived 2.2.7 / 2.4.3 on
//! the same keepalived.conf, in the `vipd bench checkers` lab (director namespace,
//! server farm on 192.0.2.2:10000..).
//!
//! Virtual server k is `192.0.2.(100 + k / 250):(20000 + k % 250)` (NAT, rr), its real
//! servers `192.0.2.2:10000..10000+R` (the same few listeners for every virtual
//! server), with `--check tcp` a `TCP_CHECK` each every `--delay-loop`, with
//! `--check none` no checker (keepalived and vipd both keep such servers up).
//!
//! After the kernel table holds all V × R destinations and a quiet period (baseline
//! CPU rate), the file is rewritten with the real server `R / 2` of virtual server
//! `V / 2` moved from port `10000 + R/2` to `10000 + R`, and the daemon gets SIGHUP at
//! t0. The figure is t0 → the kernel table showing the change (old destination gone,
//! new one there; IPVS: `ipvsadm -Ln -t VS`, nftables: `nft list map` of that virtual
//! server's destination map), polled every 2 ms; the CPU figure is utime + stime of
//! the daemon's process tree (/proc) from t0 until it is quiet again (two 1 s samples
//! in a row near the baseline rate measured just before: the least of four 1 s samples),
//! minus the baseline. Afterwards the table
//! must still hold V × R destinations (nothing else went missing).

use super::checkers::{cpu_seconds, setup, spawn_daemon, tree, Daemon, Setup};
use super::scale::Variant;
use super::{check_interrupt, machine, sleep, wait_for};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct ReloadArgs {
    /// Virtual servers.
    #[arg(long, default_value_t = 2000)]
    pub vs: usize,
    /// Real servers per virtual server.
    #[arg(long, default_value_t = 20)]
    pub rs: usize,
    /// Health checks of every real server.
    #[arg(long, value_enum, default_value_t = Check::None)]
    pub check: Check,
    /// `delay_loop` of the checks, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub delay_loop: f64,
    /// Reloads per variant (each moves the real server back and forth).
    #[arg(long, default_value_t = 3)]
    pub reloads: usize,
    /// Give up on a start or a reload after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Variants to measure (one after the other).
    #[arg(long, value_delimiter = ',', default_values_t = vec![Variant::Vipd, Variant::Keepalived227, Variant::Keepalived243])]
    pub variants: Vec<Variant>,
    /// vipd's data-plane backend (`auto`, `nftables`, `ipvs`).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// The vipd binary to measure (default: this one).
    #[arg(long)]
    pub vipd: Option<PathBuf>,
    /// Print JSON instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    Tcp,
}

const SERVERS: &str = "192.0.2.2";
const FIRST_PORT: usize = 10_000;

fn vs_key(k: usize) -> (String, usize) {
    (format!("192.0.2.{}", 100 + k / 250), 20_000 + k % 250)
}

/// The keepalived.conf; `moved` = the changed real server sits on its new port.
fn config(a: &ReloadArgs, moved: bool) -> String {
    let mut c = String::with_capacity(a.vs * a.rs * 80);
    c.push_str("global_defs {\n    router_id bench_reload\n}\n");
    let check = match a.check {
        Check::None => String::new(),
        Check::Tcp => "        TCP_CHECK {\n            connect_timeout 3\n        }\n".into(),
    };
    for k in 0..a.vs {
        let (addr, port) = vs_key(k);
        let _ = write!(
            c,
            "virtual_server {addr} {port} {{\n    delay_loop {}\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n",
            a.delay_loop
        );
        for i in 0..a.rs {
            let rport = if moved && k == a.vs / 2 && i == a.rs / 2 {
                FIRST_PORT + a.rs
            } else {
                FIRST_PORT + i
            };
            let _ = write!(
                c,
                "    real_server {SERVERS} {rport} {{\n        weight 1\n{check}    }}\n"
            );
        }
        c.push_str("}\n");
    }
    c
}

/// How the bench reads the kernel table.
#[derive(Clone)]
enum Table {
    Ipvs,
    /// nftables; the destination map of the changed virtual server once known.
    Nft(Option<String>),
}

impl Table {
    /// Destinations in the whole table.
    fn count(&self, s: &Setup) -> Result<usize> {
        let needle = format!("{SERVERS}:");
        Ok(match self {
            Table::Ipvs => s
                .dir
                .exec(&["ipvsadm", "-Ln"])?
                .lines()
                .filter(|l| l.trim_start().starts_with("->") && l.contains(&needle))
                .count(),
            Table::Nft(_) => nft_dests(&s.dir.exec(&["nft", "list", "table", "ip", "vipd"])?),
        })
    }

    /// (old destination present, new destination present) in the changed service.
    fn state(&self, s: &Setup, a: &ReloadArgs) -> Result<(bool, bool)> {
        let (addr, port) = vs_key(a.vs / 2);
        let (old, new) = (FIRST_PORT + a.rs / 2, FIRST_PORT + a.rs);
        match self {
            Table::Ipvs => {
                let out = s
                    .dir
                    .exec(&["ipvsadm", "-Ln", "-t", &format!("{addr}:{port}")])?;
                let has = |p: usize| {
                    let n = format!("{SERVERS}:{p}");
                    out.lines()
                        .any(|l| l.split_whitespace().nth(1) == Some(n.as_str()))
                };
                Ok((has(old), has(new)))
            }
            Table::Nft(map) => {
                let Some(map) = map else {
                    bail!("the changed virtual server's map is not known");
                };
                let out = s.dir.exec(&["nft", "list", "map", "ip", "vipd", map])?;
                let has = |p: usize| {
                    let n = format!("{SERVERS} . {p}");
                    out.match_indices(&n)
                        .any(|(i, m)| !out[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
                };
                Ok((has(old), has(new)))
            }
        }
    }
}

/// Destinations in `nft list table` text: `: 192.0.2.2 . PORT` map data.
fn nft_dests(out: &str) -> usize {
    out.matches(&format!(": {SERVERS} . ")).count()
}

/// The destination map of the virtual server `addr:port` in `nft list table` text: the
/// dispatch rule/element naming it jumps to chain `svcN`, whose rules look its
/// destination up in a map `svcN_...` holding `SERVERS . port` data.
fn nft_map_of(out: &str, addr: &str, port: usize) -> Option<String> {
    let port = port.to_string();
    let chain = out.lines().find_map(|l| {
        let t: Vec<&str> = l.split(|c: char| c.is_whitespace() || c == ',').collect();
        if !(t.contains(&addr) && t.contains(&port.as_str())) {
            return None;
        }
        let i = t.iter().position(|w| *w == "goto" || *w == "jump")?;
        t.get(i + 1)
            .filter(|c| c.starts_with("svc"))
            .map(|c| c.to_string())
    })?;
    // The chain's maps: `map svcN_xxx {` blocks whose elements carry destinations.
    let mut current: Option<String> = None;
    for l in out.lines() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("map ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            current = (name.starts_with(&format!("{chain}_"))).then(|| name.to_string());
        } else if let Some(m) = &current {
            if t.contains(&format!("{SERVERS} . ")) {
                return Some(m.clone());
            }
        }
    }
    None
}

struct Row {
    variant: Variant,
    start_s: f64,
    reload_ms: Vec<f64>,
    cpu_s: Vec<f64>,
    quiet_s: Vec<f64>,
    program_ms: Vec<f64>,
    dests_after: usize,
}

fn daemon_of(v: Variant, a: &ReloadArgs) -> Result<Daemon> {
    Ok(match v.keepalived() {
        None => Daemon::Vipd(match &a.vipd {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        }),
        Some(ver) => Daemon::Keepalived(
            ver.find()
                .with_context(|| format!("keepalived {} is not runnable", ver.name()))?,
        ),
    })
}

fn measure(s: &Setup, v: Variant, a: &ReloadArgs) -> Result<Row> {
    let path = s.work.join(format!("{v}.conf"));
    std::fs::write(&path, config(a, false))?;
    let log = s.work.join(format!("{v}.log"));
    let ipvs_kernel = Path::new("/proc/net/ip_vs").exists();
    let mut table = match v {
        Variant::Vipd if !ipvs_kernel || a.backend == "nftables" => Table::Nft(None),
        _ => Table::Ipvs,
    };
    if matches!(table, Table::Ipvs) && !ipvs_kernel {
        bail!("{v} needs IPVS and this kernel has none (run inside bench/vm/run.sh)");
    }
    let total = a.vs * a.rs;
    let t_start = Instant::now();
    let mut daemon = spawn_daemon(&s.dir, &s.work, &daemon_of(v, a)?, &path, &log, &a.backend)?;
    let timeout = Duration::from_secs(a.timeout);
    let mut last = 0;
    if !wait_for(timeout, Duration::from_millis(500), || {
        last = table.count(s).unwrap_or(0);
        last >= total || !daemon.is_running()
    }) || last < total
    {
        bail!(
            "{v}: {last} of {total} destinations after {:?}:\n{}",
            t_start.elapsed(),
            daemon.log_tail(20)
        );
    }
    let start_s = t_start.elapsed().as_secs_f64();
    eprintln!("{v}: {total} destinations in the kernel after {start_s:.1} s");
    if let Table::Nft(map) = &mut table {
        let out = s.dir.exec(&["nft", "list", "table", "ip", "vipd"])?;
        let (addr, port) = vs_key(a.vs / 2);
        *map = nft_map_of(&out, &addr, port);
        if map.is_none() {
            bail!("{v}: no destination map for {addr}:{port} in the nftables listing");
        }
    }
    let mut row = Row {
        variant: v,
        start_s,
        reload_ms: vec![],
        cpu_s: vec![],
        quiet_s: vec![],
        program_ms: vec![],
        dests_after: 0,
    };
    for r in 0..a.reloads {
        check_interrupt()?;
        let moved = r % 2 == 0;
        // Settled first; then the baseline rate (the daemon's idle cost, checkers
        // included): the least of four 1 s samples. A mean over 2 s took in whatever
        // periodic work fell there (vipd's traffic-counter read every 30 s: a CPU-second
        // at 40,000 destinations in the guest), and subtracting that from the reload's
        // span zeroed some reloads' CPU.
        let pids = tree(daemon.pid());
        sleep(Duration::from_secs(2))?;
        let mut c0 = cpu_seconds(&pids);
        let mut base = f64::INFINITY;
        for _ in 0..4 {
            sleep(Duration::from_secs(1))?;
            let now = cpu_seconds(&pids);
            base = base.min(now - c0);
            c0 = now;
        }
        let want = (!moved, moved);
        std::fs::write(&path, config(a, moved))?;
        let log_before = daemon.log().len();
        let t0 = Instant::now();
        daemon.signal(nix::sys::signal::Signal::SIGHUP)?;
        let mut seen = (moved, !moved);
        if !wait_for(timeout, Duration::from_millis(2), || {
            seen = table.state(s, a).unwrap_or(seen);
            seen == want || !daemon.is_running()
        }) || seen != want
        {
            bail!(
                "{v}: reload {r} not in the kernel after {:?} (old, new present: {seen:?}):\n{}",
                t0.elapsed(),
                daemon.log_tail(20)
            );
        }
        let took = t0.elapsed();
        let pids = tree(daemon.pid());
        quiet(&pids, base, Duration::from_secs(a.timeout))?;
        let done = t0.elapsed();
        let cpu = (cpu_seconds(&pids) - c0 - base * done.as_secs_f64()).max(0.0);
        eprintln!(
            "{v}: reload {r}: in the kernel after {:.1} ms, quiet after {:.2} s, {cpu:.3} CPU-s",
            took.as_secs_f64() * 1000.0,
            done.as_secs_f64()
        );
        row.reload_ms.push(took.as_secs_f64() * 1000.0);
        row.cpu_s.push(cpu);
        row.quiet_s.push(done.as_secs_f64());
        if v == Variant::Vipd {
            let log = daemon.log();
            row.program_ms.extend(super::checkers::programming_times(
                &log[log_before.min(log.len())..],
            ));
        }
    }
    row.dests_after = table.count(s)?;
    if row.dests_after != total {
        bail!(
            "{v}: {} destinations after the reloads, not {total}",
            row.dests_after
        );
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM).ok();
    daemon.wait_timeout(Duration::from_secs(60));
    Ok(row)
}

/// Waits until the tree's CPU use is back at `base` CPU-s per second (× 1.25, + 20 ms:
/// periodic housekeeping lands in whole seconds) for two 1 s samples in a row.
fn quiet(pids: &[i32], base: f64, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    let mut calm = 0;
    let mut prev = cpu_seconds(pids);
    while Instant::now() < end {
        sleep(Duration::from_secs(1))?;
        let now = cpu_seconds(pids);
        let d = now - prev;
        prev = now;
        if d <= base * 1.25 + 0.020 {
            calm += 1;
            if calm >= 2 {
                return Ok(());
            }
        } else {
            calm = 0;
        }
    }
    bail!("the daemon did not settle within {timeout:?}")
}

fn median(v: &[f64]) -> f64 {
    super::stats::median_ms(v.to_vec()).unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    super::stats::max_ms(v.iter().copied()).unwrap_or(f64::NAN)
}

pub fn run(a: ReloadArgs) -> Result<ExitCode> {
    let s = setup(a.rs + 1).context("building the bench topology")?;
    let mut rows: Vec<Row> = Vec::new();
    for &v in &a.variants {
        rows.push(measure(&s, v, &a)?);
    }
    let vipd_backend = if !Path::new("/proc/net/ip_vs").exists() || a.backend == "nftables" {
        "nftables"
    } else {
        "ipvs"
    };
    if a.json {
        let out = json!({
            "machine": machine(), "virtual_servers": a.vs, "real_servers_per_vs": a.rs,
            "check": format!("{:?}", a.check).to_lowercase(), "delay_loop": a.delay_loop,
            "vipd_backend": vipd_backend,
            "results": rows.iter().map(|r| json!({
                "variant": r.variant.to_string(), "start_seconds": r.start_s,
                "reload_ms": r.reload_ms, "cpu_seconds": r.cpu_s, "quiet_seconds": r.quiet_s,
                "programming_ms": r.program_ms, "destinations_after": r.dests_after,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} virtual servers × {} real servers ({} destinations), checks: {:?}, vipd backend {vipd_backend}; {} reload(s) each, one real server moved\n",
        a.vs,
        a.rs,
        a.vs * a.rs,
        a.check,
        a.reloads
    );
    println!("| variant | start → all in kernel (s) | SIGHUP → kernel median / max (ms) | CPU-s per reload (median) | quiet after (s, median) | vipd programming median (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} / {:.1} | {:.3} | {:.2} | {} |",
            r.variant,
            r.start_s,
            median(&r.reload_ms),
            max(&r.reload_ms),
            median(&r.cpu_s.iter().map(|c| c * 1000.0).collect::<Vec<_>>()) / 1000.0,
            median(&r.quiet_s.iter().map(|c| c * 1000.0).collect::<Vec<_>>()) / 1000.0,
            if r.program_ms.is_empty() {
                "—".to_string()
            } else {
                format!("{:.2}", median(&r.program_ms))
            }
        );
    }
    if let Some(v) = rows.iter().find(|r| r.variant == Variant::Vipd) {
        for k in rows.iter().filter(|r| r.variant != Variant::Vipd) {
            println!(
                "\nvipd / {}: time {:.2}×, CPU {:.2}×",
                k.variant,
                median(&v.reload_ms) / median(&k.reload_ms),
                median(&v.cpu_s) / median(&k.cpu_s)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_real_server_moves() {
        let a = ReloadArgs {
            vs: 4,
            rs: 3,
            check: Check::Tcp,
            delay_loop: 30.0,
            reloads: 1,
            timeout: 1,
            variants: vec![],
            backend: "auto".into(),
            vipd: None,
            json: false,
        };
        let (before, after) = (config(&a, false), config(&a, true));
        let diff: Vec<_> = before
            .lines()
            .zip(after.lines())
            .filter(|(x, y)| x != y)
            .collect();
        assert_eq!(
            diff,
            vec![(
                "    real_server 192.0.2.2 10001 {",
                "    real_server 192.0.2.2 10003 {"
            )]
        );
        assert_eq!(before.matches("TCP_CHECK").count(), 12);
        assert!(before.contains("virtual_server 192.0.2.100 20002 {"));
    }

    #[test]
    fn finds_the_destination_map_of_a_virtual_server() {
        let out = "table ip vipd {
\tmap svc1_slots {
\t\ttype mark : ipv4_addr . inet_service
\t\telements = { 0x00000000 : 192.0.2.2 . 10000, 0x00000001 : 192.0.2.2 . 10001 }
\t}
\tmap svc2_slots {
\t\ttype mark : ipv4_addr . inet_service
\t\telements = { 0x00000000 : 192.0.2.2 . 10000 }
\t}
\tchain pre {
\t\tip daddr 192.0.2.100 tcp dport 20000 goto svc1
\t\tip daddr 192.0.2.100 tcp dport 20001 goto svc2
\t}
}";
        assert_eq!(
            nft_map_of(out, "192.0.2.100", 20001).as_deref(),
            Some("svc2_slots")
        );
        assert_eq!(
            nft_map_of(out, "192.0.2.100", 20000).as_deref(),
            Some("svc1_slots")
        );
        assert_eq!(nft_map_of(out, "192.0.2.100", 2000), None);
        assert_eq!(nft_dests(out), 3);
    }
}
