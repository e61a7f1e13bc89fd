//! `vipd bench failover`: crash and graceful-handover gaps seen by a 1 ms prober.

use super::pair::{Pair, BACKUP_PRIORITY};
use super::report::{self, f, opt_ms, rel_ms, times, Head, RunRecord};
use super::stats::{max_ms, median};
use super::{ms, sleep, wait_for, FailoverArgs, Impl, Scenario};
use anyhow::{bail, Result};
use serde_json::json;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vipd_netns::{Capture, Frame, ProbeOptions, ProbeReport, Prober, Signal, VIP_V4};

/// What one successful run measured. Times "after trigger" are signed
/// milliseconds relative to the instant just before the port went down / the
/// signal was sent.
#[derive(Debug, Clone)]
pub(super) struct Measure {
    /// The figure: largest gap between consecutive probe replies.
    pub(super) gap: Duration,
    /// Where that gap lay, relative to the trigger.
    gap_from_ms: f64,
    gap_to_ms: f64,
    /// Trigger → r1's priority-0 advert on the client's wire (SIGTERM only).
    prio0_ms: Option<f64>,
    /// Trigger → r2's first advert on the client's wire.
    pub(super) advert_ms: Option<f64>,
    /// Trigger → r2's first gratuitous ARP for the VIP on the client's wire.
    garp_ms: Option<f64>,
    /// r2's first GARP after the advert the RFC timer runs from: r1's last
    /// advert before the trigger (crash; RFC: Master_Down_Interval later) or its
    /// priority-0 advert (sigterm; RFC: Skew_Time later). Phase-independent.
    garp_after_ref_ms: Option<f64>,
    sent: u64,
    received: u64,
}

type Record = RunRecord<Scenario, Measure>;

/// The RFC 5798/9568 bound for the backup (priority 100): Skew_Time for a handover
/// (priority 0 received), Master_Down_Interval = 3 × advert + skew for a crash.
pub fn limit(advert_ms: u32, scenario: Scenario) -> Duration {
    let adv = Duration::from_millis(u64::from(advert_ms));
    let skew = adv * (256 - u32::from(BACKUP_PRIORITY)) / 256;
    match scenario {
        Scenario::Crash => 3 * adv + skew,
        Scenario::Sigterm => skew,
    }
}

pub fn run(a: FailoverArgs) -> Result<ExitCode> {
    let impls = report::check_args(a.runs, &a.adverts, &a.impls)?;
    let records = report::run_all(
        &a.adverts,
        &a.scenarios,
        a.runs,
        &impls,
        one_run,
        |adv, scenario, m| {
            format!(
                "gap {:.1} ms ({:.2}× limit {:.1} ms) at {:+.1}..{:+.1} ms; \
                 r2 advert {}, GARP {} ({} after the reference advert){}",
                ms(m.gap),
                ms(m.gap) / ms(limit(adv, scenario)),
                ms(limit(adv, scenario)),
                m.gap_from_ms,
                m.gap_to_ms,
                opt_ms(m.advert_ms),
                opt_ms(m.garp_ms),
                opt_ms(m.garp_after_ref_ms),
                m.prio0_ms
                    .map(|p| format!(", r1 priority 0 {p:+.1} ms"))
                    .unwrap_or_default(),
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

fn one_run(imp: Impl, advert_ms: u32, scenario: Scenario) -> Result<Measure> {
    let mut pair = Pair::start(imp, advert_ms, Duration::from_secs(1), "bench-fo")?;
    measure(&mut pair, advert_ms, scenario)
}

/// Probes the VIP of a settled pair (r1 master), triggers `scenario` on r1 and
/// measures until r2 has taken over and clients are answered again.
pub(super) fn measure(pair: &mut Pair, advert_ms: u32, scenario: Scenario) -> Result<Measure> {
    let client = pair.lan.client();
    let cap = Capture::start(client, "eth0")?;
    let prober = Prober::start(
        client,
        IpAddr::V4(VIP_V4),
        ProbeOptions {
            interval: Duration::from_millis(1),
            ..Default::default()
        },
    )?;
    sleep(Duration::from_millis(300))?;
    if prober.received() < 150 {
        bail!(
            "before the trigger the VIP answered only {} of {} probes",
            prober.received(),
            prober.sent()
        );
    }

    let t0 = Instant::now();
    match scenario {
        Scenario::Crash => pair.lan.set_port(1, false)?,
        Scenario::Sigterm => pair.daemon_mut(1).proc.signal(Signal::SIGTERM)?,
    }

    // r2 is master once it advertises (seen on the client's wire; no process
    // spawning in the measurement window).
    let r1 = pair.addr(1);
    let r2 = pair.addr(2);
    let timeout = limit(advert_ms, Scenario::Crash) * 2 + Duration::from_secs(3);
    let took_over = wait_for(timeout, Duration::from_millis(5), || {
        cap.vrrp_adverts()
            .iter()
            .any(|f| f.at >= t0 && f.src == r2 && f.vrrp().is_some_and(|h| h.priority > 0))
    });
    super::check_interrupt()?;
    if !took_over {
        bail!(
            "r2 did not take over within {timeout:?} (VIP holders {:?})\n{}",
            pair.holders(),
            pair.logs()
        );
    }
    if !wait_for(Duration::from_secs(1), Duration::from_millis(5), || {
        pair.holds(2)
    }) {
        bail!("r2 advertises but does not hold the VIP\n{}", pair.logs());
    }
    let r0 = prober.received();
    if !wait_for(Duration::from_secs(3), Duration::from_millis(5), || {
        prober.received() >= r0 + 20
    }) {
        super::check_interrupt()?;
        bail!(
            "probe replies did not come back after r2 took over\n{}",
            pair.logs()
        );
    }
    sleep(Duration::from_millis(300))?;
    let report = prober.stop();
    let frames = cap.stop();

    // Correctness afterwards.
    if scenario == Scenario::Sigterm {
        let exited = pair.daemon_mut(1).proc.wait_timeout(Duration::from_secs(5));
        if exited.is_none() {
            bail!("r1 did not exit within 5 s of SIGTERM\n{}", pair.logs());
        }
        if pair.holds(1) {
            bail!("r1 still holds the VIP after its daemon exited");
        }
    }
    if !pair.holds(2) {
        bail!("r2 lost the VIP again\n{}", pair.logs());
    }
    if let Some(last) = report.replies.last() {
        if report.end.saturating_duration_since(last.received_at) > Duration::from_millis(50) {
            bail!("probe replies stopped again before the end");
        }
    }

    let (gap, gap_from, gap_to) = largest_gap(&report);
    debug_assert_eq!(gap, report.largest_gap());
    let rel = |t: Instant| rel_ms(t0, t);
    let first = |pred: &dyn Fn(&Frame) -> bool| frames.iter().find(|f| f.at >= t0 && pred(f));
    let vip = IpAddr::V4(VIP_V4);
    let r2_mac = pair.lan.router_mac(2);
    let prio0_ms =
        first(&|f| f.src == r1 && f.vrrp().is_some_and(|h| h.priority == 0)).map(|f| rel(f.at));
    let garp_ms =
        first(&|f| f.is_gratuitous_arp() && f.src == vip && f.src_mac == r2_mac).map(|f| rel(f.at));
    // r1's last advert that made it onto the wire: the port goes down a
    // millisecond or two after `t0` (the `ip` command), so look past `t0` too.
    let r2_first = first(&|f| f.src == r2 && f.vrrp().is_some()).map(|f| f.at);
    let last_r1_ms = frames
        .iter()
        .rev()
        .filter(|f| r2_first.is_none_or(|t| f.at < t))
        .find(|f| f.src == r1 && f.vrrp().is_some_and(|h| h.priority > 0))
        .map(|f| rel(f.at));
    let reference = match scenario {
        Scenario::Crash => last_r1_ms,
        Scenario::Sigterm => prio0_ms,
    };
    Ok(Measure {
        gap,
        gap_from_ms: rel(gap_from),
        gap_to_ms: rel(gap_to),
        prio0_ms,
        advert_ms: r2_first.map(rel),
        garp_ms,
        garp_after_ref_ms: reference.zip(garp_ms).map(|(r, g)| g - r),
        sent: report.sent,
        received: report.received,
    })
}

/// `(gap, received_at before it, received_at after it)` of the largest gap.
fn largest_gap(r: &ProbeReport) -> (Duration, Instant, Instant) {
    if r.replies.len() < 2 {
        return (r.end.saturating_duration_since(r.start), r.start, r.end);
    }
    r.replies
        .windows(2)
        .map(|w| {
            (
                w[1].received_at.saturating_duration_since(w[0].received_at),
                w[0].received_at,
                w[1].received_at,
            )
        })
        .max_by_key(|x| x.0)
        .expect("two replies")
}

struct Summary {
    head: Head<Scenario>,
    limit: Duration,
    advert_med: Option<f64>,
    garp_med: Option<f64>,
    prio0_med: Option<f64>,
    after_ref_med: Option<f64>,
    after_ref_max: Option<f64>,
}

impl Summary {
    /// The targets for vipd, as (text, met).
    fn target(&self) -> Option<(String, bool)> {
        let m = self.head.median?;
        match self.head.scenario {
            Scenario::Crash => Some(("≤ 1.03× limit".into(), ms(m) <= 1.03 * ms(self.limit))),
            Scenario::Sigterm if self.head.advert_ms == 10 => {
                Some(("≤ 8 ms".into(), m <= Duration::from_millis(8)))
            }
            Scenario::Sigterm => None,
        }
    }
}

fn fmed(v: Vec<f64>) -> Option<f64> {
    let d: Vec<Duration> = v
        .into_iter()
        .map(|x| Duration::from_secs_f64(x.max(0.0) / 1000.0))
        .collect();
    median(&d).map(ms)
}

fn summarize(a: &FailoverArgs, impls: &[Impl], records: &[Record]) -> Vec<Summary> {
    report::cells(&a.adverts, &a.scenarios, impls, records)
        .into_iter()
        .map(|c| {
            let ok = &c.ok;
            Summary {
                head: Head::new(&c, |m| m.gap),
                limit: limit(c.advert_ms, c.scenario),
                advert_med: fmed(ok.iter().filter_map(|m| m.advert_ms).collect()),
                garp_med: fmed(ok.iter().filter_map(|m| m.garp_ms).collect()),
                prio0_med: fmed(ok.iter().filter_map(|m| m.prio0_ms).collect()),
                after_ref_med: fmed(ok.iter().filter_map(|m| m.garp_after_ref_ms).collect()),
                after_ref_max: max_ms(ok.iter().filter_map(|m| m.garp_after_ref_ms)),
            }
        })
        .collect()
}

fn markdown(a: &FailoverArgs, impls: &[Impl], records: &[Record]) -> String {
    let sums = summarize(a, impls, records);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Failover: largest gap in a 1 ms probe stream to the VIP (ms)\n\n\
         RFC limit for the backup (priority 100): crash = 3 × advert + skew, \
         sigterm = skew, skew = (256 − 100)/256 × advert.\n"
    );
    report::table_head(&mut s, "| impl | advert | scenario | runs ok | median | min | max | RFC limit | median / limit | target |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for x in &sums {
        let target = if x.head.imp == Impl::Vipd {
            x.target()
                .map(|(t, ok)| format!("{t}: {}", if ok { "met" } else { "**missed**" }))
                .unwrap_or_else(|| "–".into())
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "{} {:.1} | {} | {} |",
            x.head.row(),
            ms(x.limit),
            times(x.head.median_over(x.limit)),
            target
        );
    }

    let heads: Vec<_> = sums.iter().map(|x| &x.head).collect();
    report::vs_table(&mut s, &a.adverts, &a.scenarios, impls, &heads);

    let _ = writeln!(
        s,
        "\n### Where the time goes (medians, ms after the trigger, seen on the client's wire)\n"
    );
    let _ = writeln!(
        s,
        "The last two columns are phase-independent: r2's first GARP measured from the advert \
         the RFC timer starts at (crash: r1's last advert that reached the wire, RFC: 3 × advert + \
         skew later; sigterm: r1's priority-0 advert, RFC: skew later).\n"
    );
    report::table_head(&mut s, "| impl | advert | scenario | r1 priority-0 advert | r2 first advert | r2 first GARP | GARP after reference advert: median (max) | RFC |", "|---|---:|---|---:|---:|---:|---:|---:|");
    for x in &sums {
        let _ = writeln!(
            s,
            "{} {} | {} | {} | {} ({}) | {:.1} |",
            x.head.key(),
            if x.head.scenario == Scenario::Sigterm {
                f(x.prio0_med)
            } else {
                "–".into()
            },
            f(x.advert_med),
            f(x.garp_med),
            f(x.after_ref_med),
            f(x.after_ref_max),
            ms(x.limit)
        );
    }

    report::every_run(&mut s, "Every run (gap ms)", "gaps", &heads, records, |m| {
        m.gap
    });
    s
}

fn to_json(a: &FailoverArgs, impls: &[Impl], records: &[Record]) -> serde_json::Value {
    let summary: Vec<serde_json::Value> = summarize(a, impls, records)
        .iter()
        .map(|x| {
            x.head.json(json!({
                "limit_ms": ms(x.limit),
                "median_over_limit": x.head.median_over(x.limit),
                "garp_after_reference_median_ms": x.after_ref_med,
                "garp_after_reference_max_ms": x.after_ref_max,
                "target": x.target().map(|(t, ok)| json!({"target": t, "met": ok})),
            }))
        })
        .collect();
    let measured = |m: &Measure| {
        json!({
            "gap_ms": ms(m.gap),
            "gap_from_ms": m.gap_from_ms,
            "gap_to_ms": m.gap_to_ms,
            "prio0_ms": m.prio0_ms,
            "r2_advert_ms": m.advert_ms,
            "r2_garp_ms": m.garp_ms,
            "r2_garp_after_reference_ms": m.garp_after_ref_ms,
            "probes_sent": m.sent,
            "probes_received": m.received,
        })
    };
    report::json_report(a.runs, json!({}), summary, records, measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_limits() {
        // skew = 156/256 × advert
        assert_eq!(
            limit(10, Scenario::Sigterm),
            Duration::from_nanos(6_093_750)
        );
        assert_eq!(limit(10, Scenario::Crash), Duration::from_nanos(36_093_750));
        assert_eq!(
            limit(50, Scenario::Sigterm),
            Duration::from_nanos(30_468_750)
        );
    }
}
