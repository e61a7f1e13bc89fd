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

use super::pair::{Pair, VRID};
use super::report::{self, d, f, opt_ms, rel_ms, times, Head, RunRecord};
use super::stats::{max_ms, median, median_ms};
use super::{ms, sleep, Impl, TrackScenario, TrackingArgs};
use anyhow::{bail, Result};
use serde_json::json;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vipd_netns::{Capture, Frame, FrameKind, MacAddr, ProbeOptions, Prober, VIP_V4};

pub const MASTER_PRIORITY: u8 = 100;
pub const PEER_PRIORITY: u8 = 99;

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

/// The file whose existence router `i`'s check scripts test.
fn trigger_file(pair: &Pair, i: usize) -> PathBuf {
    pair.dir.join(format!("trigger-r{i}"))
}

/// r1 (priority 100) master, r2 (99) backup, tracking what `scenario` needs.
fn setup(imp: Impl, scenario: TrackScenario, advert_ms: u32, interval_s: u32) -> Result<Pair> {
    let mut s = Pair::new(imp, "bench-trk")?;
    if scenario == TrackScenario::LinkDown {
        for i in 1..=2 {
            let ns = s.lan.router(i);
            ns.ip_batch(
                "link add up0 type veth peer name up1\nlink set up0 up\nlink set up1 up\n",
            )?;
            let up = super::wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
                ns.ip(["-o", "link", "show", "up0"])
                    .is_ok_and(|o| o.contains("LOWER_UP"))
            });
            super::check_interrupt()?;
            if !up {
                bail!("r{i}: up0 did not come up");
            }
        }
    }
    let text = |i: usize, priority: u8| {
        config(
            scenario,
            i,
            priority,
            advert_ms,
            interval_s,
            &trigger_file(&s, i),
        )
    };
    let texts = [text(1, MASTER_PRIORITY), text(2, PEER_PRIORITY)];
    // vipd-config still labels vrrp_script/track_* "parsed but not active yet";
    // the runtime does act on them.
    let settle = Duration::from_secs(10) + master_down(advert_ms);
    // Stable: r1 alone holds the VIP for a while (and the checks have run).
    let stable = Duration::from_secs(1).max(3 * advert(advert_ms));
    s.start_daemons(texts, &["--ignore-inactive"], settle, stable)?;
    if imp == Impl::Vipd {
        let st = |i| {
            s.instance(i)
                .map(|v| (v["state"].clone(), v["effective_priority"].clone()))
        };
        let ok = st(1) == Some((json!("MASTER"), json!(MASTER_PRIORITY)))
            && st(2) == Some((json!("BACKUP"), json!(PEER_PRIORITY)));
        if !ok {
            bail!("setup: r1 {:?}, r2 {:?}\n{}", st(1), st(2), s.logs());
        }
    }
    Ok(s)
}

// ---- who answered: echo replies from the VIP with their Ethernet source ----

fn is_reply_from(f: &Frame, mac: MacAddr) -> bool {
    f.kind == FrameKind::EchoReply && !f.outgoing && f.src == IpAddr::V4(VIP_V4) && f.src_mac == mac
}

/// When the first echo reply from `mac` at or after `t` arrived.
fn first_reply(cap: &Capture, mac: MacAddr, t: Instant) -> Option<Instant> {
    cap.first(|f| f.at >= t && is_reply_from(f, mac))
        .map(|f| f.at)
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
    let s = setup(imp, scenario, advert_ms, interval_s)?;
    let client = s.lan.client();
    let cap = Capture::start_with_echo_replies(client, "eth0")?;
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
    if prober.received() < 150 || first_reply(&cap, r1_mac, t_start).is_none() {
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
            std::fs::write(trigger_file(&s, 1), "")?
        }
        TrackScenario::LinkDown => {
            s.lan.router(1).ip(["link", "set", "up0", "down"])?;
        }
    }

    let lim = bound(scenario, advert_ms, interval_s);
    let timeout = lim * 2 + Duration::from_secs(3);
    let answered = super::wait_for(timeout, Duration::from_millis(2), || {
        first_reply(&cap, r2_mac, t0).is_some()
    });
    super::check_interrupt()?;
    if !answered {
        bail!(
            "r2 did not answer on the VIP within {timeout:?} (VIP holders {:?})\n{}",
            s.holders(),
            s.logs()
        );
    }
    if !super::wait_for(Duration::from_secs(2), Duration::from_millis(5), || {
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

    let rel = |t: Instant| rel_ms(t0, t);
    let answer_at = frames
        .iter()
        .find(|r| r.at >= t0 && is_reply_from(r, r2_mac))
        .map(|r| r.at)
        .expect("seen above");
    let last_r1_reply_ms = frames
        .iter()
        .rev()
        .find(|r| is_reply_from(r, r1_mac))
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

type Record = RunRecord<TrackScenario, Measure>;

pub fn run(a: TrackingArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        (1..=3600).contains(&a.interval),
        "--interval must be 1..=3600 s"
    );
    let impls = report::check_args(a.runs, &a.adverts, &a.impls)?;
    let records = report::run_all(
        &a.adverts,
        &a.scenarios,
        a.runs,
        &impls,
        |imp, adv, scenario| one_run(imp, scenario, adv, a.interval),
        |adv, scenario, m| {
            let lim = bound(scenario, adv, a.interval);
            format!(
                "peer answers {:.1} ms ({:.2}× bound {:.1} ms); phase {:.0} ms; \
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
            )
        },
    )?;
    report::finish(
        a.json,
        &records,
        || to_json(&a, &impls, &records),
        || markdown(&a, &impls, &records),
    )
}

struct Summary {
    head: Head<TrackScenario>,
    bound: Duration,
    detect_med: Option<f64>,
    r2_advert_med: Option<f64>,
    garp_med: Option<f64>,
    protocol_med: Option<f64>,
    protocol_max: Option<f64>,
    outage_med: Option<Duration>,
    outage_max: Option<Duration>,
}

fn summarize(a: &TrackingArgs, impls: &[Impl], records: &[Record]) -> Vec<Summary> {
    report::cells(&a.adverts, &a.scenarios, impls, records)
        .into_iter()
        .map(|c| {
            let ok = &c.ok;
            let outages: Vec<Duration> = ok.iter().map(|m| m.outage).collect();
            Summary {
                head: Head::new(&c, |m| m.answer),
                bound: bound(c.scenario, c.advert_ms, a.interval),
                detect_med: median_ms(ok.iter().filter_map(|m| m.detect_ms).collect()),
                r2_advert_med: median_ms(ok.iter().filter_map(|m| m.r2_advert_ms).collect()),
                garp_med: median_ms(ok.iter().filter_map(|m| m.r2_garp_ms).collect()),
                protocol_med: median_ms(ok.iter().filter_map(|m| m.protocol_ms).collect()),
                protocol_max: max_ms(ok.iter().filter_map(|m| m.protocol_ms)),
                outage_med: median(&outages),
                outage_max: outages.iter().max().copied(),
            }
        })
        .collect()
}

fn bound_text(scenario: TrackScenario) -> &'static str {
    match scenario {
        TrackScenario::DownFile => "interval + MDI + advert",
        TrackScenario::LinkDown => "MDI",
        TrackScenario::ScriptFail => "interval + skew",
    }
}

fn markdown(a: &TrackingArgs, impls: &[Impl], records: &[Record]) -> String {
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
    report::table_head(&mut s, "| impl | advert | scenario | runs ok | median | min | max | bound | median / bound | max / bound |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in &sums {
        let _ = writeln!(
            s,
            "{} {:.1} ({}) | {} | {} |",
            x.head.row(),
            ms(x.bound),
            bound_text(x.head.scenario),
            times(x.head.median_over(x.bound)),
            times(x.head.max_over(x.bound)),
        );
    }

    let heads: Vec<_> = sums.iter().map(|x| &x.head).collect();
    report::vs_table(&mut s, &a.adverts, &a.scenarios, impls, &heads);

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
    report::table_head(&mut s, "| impl | advert | scenario | r1 changed advert | r2 first advert | r2 first GARP | peer answers | protocol part: median (max) | RFC | outage: median (max) |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in &sums {
        let _ = writeln!(
            s,
            "{} {} | {} | {} | {} | {} ({}) | {:.1} | {} ({}) |",
            x.head.key(),
            f(x.detect_med),
            f(x.r2_advert_med),
            f(x.garp_med),
            d(x.head.median),
            f(x.protocol_med),
            f(x.protocol_max),
            ms(protocol_limit(x.head.scenario, x.head.advert_ms)),
            d(x.outage_med),
            d(x.outage_max),
        );
    }

    report::every_run(
        &mut s,
        "Every run (peer answers, ms after the trigger)",
        "runs",
        &heads,
        records,
        |m| m.answer,
    );
    s
}

fn to_json(a: &TrackingArgs, impls: &[Impl], records: &[Record]) -> serde_json::Value {
    let summary: Vec<serde_json::Value> = summarize(a, impls, records)
        .iter()
        .map(|x| {
            x.head.json(json!({
                "bound_ms": ms(x.bound),
                "bound": bound_text(x.head.scenario),
                "median_over_bound": x.head.median_over(x.bound),
                "max_over_bound": x.head.max_over(x.bound),
                "r1_changed_advert_median_ms": x.detect_med,
                "r2_advert_median_ms": x.r2_advert_med,
                "r2_garp_median_ms": x.garp_med,
                "protocol_median_ms": x.protocol_med,
                "protocol_max_ms": x.protocol_max,
                "protocol_rfc_ms": ms(protocol_limit(x.head.scenario, x.head.advert_ms)),
                "outage_median_ms": x.outage_med.map(ms),
                "outage_max_ms": x.outage_max.map(ms),
            }))
        })
        .collect();
    let measured = |m: &Measure| {
        json!({
            "peer_answers_ms": ms(m.answer),
            "outage_ms": ms(m.outage),
            "phase_ms": m.phase_ms,
            "r1_changed_advert_ms": m.detect_ms,
            "reference_advert_ms": m.ref_ms,
            "r2_advert_ms": m.r2_advert_ms,
            "r2_garp_ms": m.r2_garp_ms,
            "protocol_ms": m.protocol_ms,
            "r1_last_reply_ms": m.last_r1_reply_ms,
            "garp_method_answer_ms": m.garp_method_ms,
            "probes_sent": m.sent,
            "probes_received": m.received,
        })
    };
    report::json_report(
        a.runs,
        json!({"script_interval_s": a.interval}),
        summary,
        records,
        measured,
    )
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
}
