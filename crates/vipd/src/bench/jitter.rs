//! `vipd bench jitter`: advert interval jitter on the wire and spurious transitions
//! while busy loops saturate every CPU; all implementations at the same time, each
//! pair in its own LAN.

use super::pair::{rt_capture, Pair};
use super::stats::percentile;
use super::{ms, sleep, Impl, JitterArgs};
use anyhow::{bail, Result};
use serde_json::json;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use vipd_netns::{has_address, Capture, Frame, Proc, WorkDir, VIP_V4};

struct Lane {
    pair: Pair,
    cap: Option<Capture>,
    /// Samples (every 250 ms) in which r2 held the VIP.
    r2_vip_samples: u64,
    /// Samples in which r1 did not hold the VIP.
    r1_missing_samples: u64,
    died: Option<String>,
}

#[derive(Debug, Default)]
struct Result1 {
    imp: String,
    adverts: usize,
    expected: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    p999: Option<Duration>,
    max: Option<Duration>,
    over_1_5: usize,
    over_3: usize,
    backup_became_master: usize,
    r2_adverts: usize,
    r2_garps: usize,
    r2_vip_samples: u64,
    r1_missing_samples: u64,
    samples: u64,
    became_master: Option<(u64, u64)>,
    died: Option<String>,
    rt_capture: bool,
}

pub fn run(a: JitterArgs) -> Result<ExitCode> {
    #[allow(clippy::manual_is_multiple_of)] // MSRV 1.82
    let valid = a.advert >= 10 && a.advert % 10 == 0;
    anyhow::ensure!(
        valid,
        "--advert: {} ms is not a VRRPv3 interval (a multiple of 10 ms)",
        a.advert
    );
    anyhow::ensure!(a.seconds > 0, "--seconds must be > 0");
    if a.impls.contains(&Impl::Keepalived) && !vipd_netns::Keepalived::new().is_installed() {
        bail!("keepalived is not installed (apt-get install keepalived), or pass --impl vipd");
    }
    let mut impls = a.impls.clone();
    impls.dedup();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n_load = a.load.unwrap_or(nproc);

    let mut lanes = Vec::new();
    for &imp in &impls {
        eprintln!("starting a {imp} pair ({} ms adverts)…", a.advert);
        let pair = Pair::start(imp, a.advert, Duration::from_secs(2), "bench-jit")?;
        lanes.push(Lane {
            pair,
            cap: None,
            r2_vip_samples: 0,
            r1_missing_samples: 0,
            died: None,
        });
    }
    let mut rt_ok = true;
    for lane in &mut lanes {
        let (cap, rt) = rt_capture(lane.pair.lan.client(), "eth0")?;
        rt_ok &= rt;
        lane.cap = Some(cap);
    }
    if !rt_ok {
        eprintln!("warning: could not make the capture thread SCHED_FIFO; timestamps include scheduling delay");
    }

    let load_dir = WorkDir::new("bench-load")?;
    let mut load = Vec::with_capacity(n_load);
    for k in 0..n_load {
        let mut c = Command::new("sh");
        c.args(["-c", "while :; do :; done"]);
        load.push(Proc::spawn(c, &load_dir.join(format!("load{k}.log")))?);
    }
    eprintln!(
        "{n_load} busy loop(s) on {nproc} CPU(s); measuring for {} s…",
        a.seconds
    );
    let t_start = Instant::now();
    let duration = Duration::from_secs(a.seconds);
    let mut samples = 0u64;
    let mut next_progress = Duration::from_secs(30);
    let vip = IpAddr::V4(VIP_V4);
    while t_start.elapsed() < duration {
        sleep(Duration::from_millis(250))?;
        samples += 1;
        for lane in &mut lanes {
            if has_address(lane.pair.lan.router(2), "eth0", vip) {
                lane.r2_vip_samples += 1;
            }
            if !has_address(lane.pair.lan.router(1), "eth0", vip) {
                lane.r1_missing_samples += 1;
            }
            for i in 1..=2 {
                if lane.died.is_none() && !lane.pair.daemon_mut(i).proc.is_running() {
                    lane.died = Some(format!(
                        "r{i} exited after {:.0} s",
                        t_start.elapsed().as_secs_f64()
                    ));
                    eprintln!("{}: {}", lane.pair.imp, lane.died.as_ref().expect("set"));
                }
            }
        }
        if t_start.elapsed() >= next_progress {
            let counts: Vec<String> = lanes
                .iter()
                .map(|l| {
                    format!(
                        "{} {} frames",
                        l.pair.imp,
                        l.cap.as_ref().map_or(0, Capture::len)
                    )
                })
                .collect();
            eprintln!(
                "  {:>4.0} s: {}",
                t_start.elapsed().as_secs_f64(),
                counts.join(", ")
            );
            next_progress += Duration::from_secs(30);
        }
    }
    let t_end = Instant::now();
    drop(load);
    eprintln!("load stopped; analysing");

    let mut results = Vec::new();
    for lane in &mut lanes {
        let frames = lane.cap.take().expect("capture").stop();
        let became_master = if lane.pair.imp == Impl::Vipd {
            let get = |i: usize| {
                lane.pair.daemons[i - 1]
                    .as_ref()
                    .and_then(|d| d.instance())
                    .and_then(|v| v["became_master"].as_u64())
            };
            get(1).zip(get(2))
        } else {
            None
        };
        let mut r = analyse(&lane.pair, &frames, a.advert, t_start, t_end);
        r.r2_vip_samples = lane.r2_vip_samples;
        r.r1_missing_samples = lane.r1_missing_samples;
        r.samples = samples;
        r.became_master = became_master;
        r.died = lane.died.clone();
        r.rt_capture = rt_ok;
        results.push(r);
    }

    if a.json {
        let v: Vec<serde_json::Value> = results.iter().map(to_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "machine": super::machine(),
                "seconds": a.seconds,
                "advert_ms": a.advert,
                "load_processes": n_load,
                "results": v,
            }))?
        );
    } else {
        print!("{}", markdown(&results, &a, n_load));
    }
    // Exit status judges vipd only (keepalived is the reference): no spurious
    // transition, and every daemon still alive.
    let clean = results
        .iter()
        .all(|r| r.died.is_none() && (r.imp != "vipd" || r.backup_became_master == 0));
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn analyse(pair: &Pair, frames: &[Frame], advert_ms: u32, t0: Instant, t1: Instant) -> Result1 {
    let r1 = pair.addr(1);
    let r2 = pair.addr(2);
    let r2_mac = pair.lan.router_mac(2);
    let window: Vec<&Frame> = frames.iter().filter(|f| f.at >= t0 && f.at <= t1).collect();
    let adverts: Vec<&Frame> = window
        .iter()
        .copied()
        .filter(|f| f.vrrp().is_some_and(|h| h.vrid == super::pair::VRID))
        .collect();
    let master: Vec<Instant> = adverts
        .iter()
        .filter(|f| f.src == r1 && f.vrrp().is_some_and(|h| h.priority > 0))
        .map(|f| f.at)
        .collect();
    let mut iv: Vec<Duration> = master.windows(2).map(|w| w[1] - w[0]).collect();
    iv.sort();
    let adv = Duration::from_millis(u64::from(advert_ms));
    // Each maximal run of adverts from r2 in the advert sequence = r2 became master once.
    let mut became = 0;
    let mut prev_r2 = false;
    for f in &adverts {
        let is_r2 = f.src == r2 && f.vrrp().is_some_and(|h| h.priority > 0);
        if is_r2 && !prev_r2 {
            became += 1;
        }
        prev_r2 = is_r2;
    }
    Result1 {
        imp: pair.imp.name().into(),
        adverts: master.len(),
        expected: (t1 - t0).as_secs_f64() / adv.as_secs_f64(),
        p50: percentile(&iv, 50.0),
        p99: percentile(&iv, 99.0),
        p999: percentile(&iv, 99.9),
        max: iv.last().copied(),
        over_1_5: iv.iter().filter(|&&d| d > adv * 3 / 2).count(),
        over_3: iv.iter().filter(|&&d| d > adv * 3).count(),
        backup_became_master: became,
        r2_adverts: adverts.iter().filter(|f| f.src == r2).count(),
        r2_garps: window
            .iter()
            .filter(|f| f.is_gratuitous_arp() && f.src_mac == r2_mac)
            .count(),
        ..Default::default()
    }
}

fn d(v: Option<Duration>) -> String {
    v.map(|x| format!("{:.2}", ms(x)))
        .unwrap_or_else(|| "–".into())
}

fn markdown(rs: &[Result1], a: &JitterArgs, n_load: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Advert jitter: VRRPv3 {} ms adverts, {} s, {n_load} busy loop(s) saturating the CPUs\n\n\
         Intervals between consecutive adverts of the master (r1), timestamped on the \
         client's interface{}.\n",
        a.advert,
        a.seconds,
        if rs.first().is_some_and(|r| r.rt_capture) {
            " by a SCHED_FIFO capture thread"
        } else {
            ""
        }
    );
    let _ = write!(s, "| |");
    for r in rs {
        let _ = write!(s, " {} |", r.imp);
    }
    let _ = write!(s, "\n|---|");
    for _ in rs {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    let adv = f64::from(a.advert);
    type Row = (String, Box<dyn Fn(&Result1) -> String>);
    let rows: Vec<Row> = vec![
        (
            "master adverts seen (expected)".into(),
            Box::new(|r| format!("{} ({:.0})", r.adverts, r.expected)),
        ),
        ("interval p50 (ms)".into(), Box::new(|r| d(r.p50))),
        ("interval p99 (ms)".into(), Box::new(|r| d(r.p99))),
        ("interval p99.9 (ms)".into(), Box::new(|r| d(r.p999))),
        ("interval max (ms)".into(), Box::new(|r| d(r.max))),
        (
            format!("intervals > 1.5 × advert ({:.0} ms)", 1.5 * adv),
            Box::new(|r| r.over_1_5.to_string()),
        ),
        (
            format!("intervals > 3 × advert ({:.0} ms)", 3.0 * adv),
            Box::new(|r| r.over_3.to_string()),
        ),
        (
            "**spurious transitions** (backup became master, from the wire)".into(),
            Box::new(|r| format!("**{}**", r.backup_became_master)),
        ),
        (
            "adverts / GARPs from the backup".into(),
            Box::new(|r| format!("{} / {}", r.r2_adverts, r.r2_garps)),
        ),
        (
            "samples with the VIP on the backup / missing on the master".into(),
            Box::new(|r| {
                format!(
                    "{} / {} of {}",
                    r.r2_vip_samples, r.r1_missing_samples, r.samples
                )
            }),
        ),
        (
            "vipd `became_master` counters r1 / r2".into(),
            Box::new(|r| {
                r.became_master
                    .map(|(a, b)| format!("{a} / {b}"))
                    .unwrap_or_else(|| "–".into())
            }),
        ),
        (
            "daemons alive at the end".into(),
            Box::new(|r| r.died.clone().unwrap_or_else(|| "yes".into())),
        ),
    ];
    for (name, f) in rows {
        let _ = write!(s, "| {name} |");
        for r in rs {
            let _ = write!(s, " {} |", f(r));
        }
        s.push('\n');
    }
    s
}

fn to_json(r: &Result1) -> serde_json::Value {
    json!({
        "impl": r.imp,
        "master_adverts": r.adverts,
        "expected_adverts": r.expected,
        "p50_ms": r.p50.map(ms),
        "p99_ms": r.p99.map(ms),
        "p999_ms": r.p999.map(ms),
        "max_ms": r.max.map(ms),
        "over_1_5x": r.over_1_5,
        "over_3x": r.over_3,
        "spurious_transitions": r.backup_became_master,
        "backup_adverts": r.r2_adverts,
        "backup_garps": r.r2_garps,
        "backup_vip_samples": r.r2_vip_samples,
        "master_vip_missing_samples": r.r1_missing_samples,
        "samples": r.samples,
        "vipd_became_master": r.became_master,
        "died": r.died,
        "rt_capture": r.rt_capture,
    })
}
