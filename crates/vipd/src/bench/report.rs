//! What `bench failover` and `bench tracking` share: the checks of the common
//! arguments, the run matrix, and the common parts of the report.

use super::stats::median;
use super::{ms, Impl};
use anyhow::{bail, Result};
use serde_json::json;
use std::fmt::{Display, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One run of one implementation × advert interval × scenario.
pub struct RunRecord<S, M> {
    pub imp: Impl,
    pub advert_ms: u32,
    pub scenario: S,
    pub run: usize,
    pub outcome: std::result::Result<M, String>,
}

/// Checks `--runs`, `--adverts` and `--impl`; the implementations to measure.
pub fn check_args(runs: usize, adverts: &[u32], impls: &[Impl]) -> Result<Vec<Impl>> {
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    for &adv in adverts {
        anyhow::ensure!(
            adv >= 10 && adv % 10 == 0 && adv <= 40950,
            "--adverts: {adv} ms is not a VRRPv3 interval (a multiple of 10 ms)"
        );
    }
    if impls.contains(&Impl::Keepalived) && !vipd_netns::Keepalived::new().is_installed() {
        bail!("keepalived is not installed (apt-get install keepalived), or pass --impl vipd");
    }
    let mut impls = impls.to_vec();
    impls.dedup();
    Ok(impls)
}

/// Runs `one_run` `runs` times for every advert interval × scenario, the
/// implementations interleaved run by run (so background noise hits both alike),
/// with a progress line a run (`describe` tells what a successful one measured).
pub fn run_all<S: Copy + Display, M>(
    adverts: &[u32],
    scenarios: &[S],
    runs: usize,
    impls: &[Impl],
    mut one_run: impl FnMut(Impl, u32, S) -> Result<M>,
    describe: impl Fn(u32, S, &M) -> String,
) -> Result<Vec<RunRecord<S, M>>> {
    let total = adverts.len() * scenarios.len() * runs * impls.len();
    let mut records = Vec::with_capacity(total);
    let started = Instant::now();
    for &adv in adverts {
        for &scenario in scenarios {
            for run in 1..=runs {
                for &imp in impls {
                    super::check_interrupt()?;
                    let label = format!(
                        "[{}/{total}] {imp} {adv} ms {scenario} run {run}/{runs}",
                        records.len() + 1,
                    );
                    let outcome = one_run(imp, adv, scenario).map_err(|e| format!("{e:#}"));
                    super::check_interrupt()?;
                    match &outcome {
                        Ok(m) => eprintln!("{label}: {}", describe(adv, scenario, m)),
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
    Ok(records)
}

/// Prints the report (JSON or markdown); failure if any run failed.
pub fn finish<S, M>(
    as_json: bool,
    records: &[RunRecord<S, M>],
    to_json: impl FnOnce() -> serde_json::Value,
    markdown: impl FnOnce() -> String,
) -> Result<ExitCode> {
    let failed = records.iter().filter(|r| r.outcome.is_err()).count();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&to_json())?);
    } else {
        print!("{}", markdown());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The runs of one implementation × advert interval × scenario.
pub struct Cell<'a, S, M> {
    pub imp: Impl,
    pub advert_ms: u32,
    pub scenario: S,
    /// Runs in all.
    pub total: usize,
    /// The successful runs' measurements.
    pub ok: Vec<&'a M>,
}

/// The cells that have runs, in report order.
pub fn cells<'a, S: Copy + PartialEq, M>(
    adverts: &[u32],
    scenarios: &[S],
    impls: &[Impl],
    records: &'a [RunRecord<S, M>],
) -> Vec<Cell<'a, S, M>> {
    let mut out = vec![];
    for &adv in adverts {
        for &scenario in scenarios {
            for &imp in impls {
                let rs: Vec<&RunRecord<S, M>> = records
                    .iter()
                    .filter(|r| r.imp == imp && r.advert_ms == adv && r.scenario == scenario)
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                out.push(Cell {
                    imp,
                    advert_ms: adv,
                    scenario,
                    total: rs.len(),
                    ok: rs.iter().filter_map(|r| r.outcome.as_ref().ok()).collect(),
                });
            }
        }
    }
    out
}

/// What every summary row starts with: the cell and its figure's median, min
/// and max over the successful runs.
pub struct Head<S> {
    pub imp: Impl,
    pub advert_ms: u32,
    pub scenario: S,
    pub ok: usize,
    pub total: usize,
    pub median: Option<Duration>,
    pub min: Option<Duration>,
    pub max: Option<Duration>,
}

impl<S: Copy + Display> Head<S> {
    pub fn new<M>(c: &Cell<'_, S, M>, figure: impl Fn(&M) -> Duration) -> Head<S> {
        let v: Vec<Duration> = c.ok.iter().map(|m| figure(m)).collect();
        Head {
            imp: c.imp,
            advert_ms: c.advert_ms,
            scenario: c.scenario,
            ok: c.ok.len(),
            total: c.total,
            median: median(&v),
            min: v.iter().min().copied(),
            max: v.iter().max().copied(),
        }
    }

    /// The median over `limit`.
    pub fn median_over(&self, limit: Duration) -> Option<f64> {
        self.median.map(|m| ms(m) / ms(limit))
    }

    /// The max over `limit`.
    pub fn max_over(&self, limit: Duration) -> Option<f64> {
        self.max.map(|m| ms(m) / ms(limit))
    }

    /// A markdown row's first cells: `| impl | advert | scenario |`.
    pub fn key(&self) -> String {
        format!(
            "| {} | {} ms | {} |",
            self.imp, self.advert_ms, self.scenario
        )
    }

    /// [`key`](Self::key), then `runs ok | median | min | max |`.
    pub fn row(&self) -> String {
        format!(
            "{} {}/{} | {} | {} | {} |",
            self.key(),
            self.ok,
            self.total,
            d(self.median),
            d(self.min),
            d(self.max)
        )
    }

    /// The summary's JSON: these fields, then `rest`'s.
    pub fn json(&self, rest: serde_json::Value) -> serde_json::Value {
        let mut v = json!({
            "impl": self.imp.name(),
            "advert_ms": self.advert_ms,
            "scenario": self.scenario.to_string(),
            "runs_ok": self.ok,
            "runs": self.total,
            "median_ms": self.median.map(ms),
            "min_ms": self.min.map(ms),
            "max_ms": self.max.map(ms),
        });
        merge(&mut v, rest);
        v
    }
}

/// Signed milliseconds from `t0` to `t`.
pub fn rel_ms(t0: Instant, t: Instant) -> f64 {
    if t >= t0 {
        ms(t - t0)
    } else {
        -ms(t0 - t)
    }
}

/// `+1.2 ms` or `-`.
pub fn opt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:+.1} ms"))
        .unwrap_or_else(|| "-".into())
}

/// A duration in ms for a table, or `–`.
pub fn d(v: Option<Duration>) -> String {
    v.map(|x| format!("{:.1}", ms(x)))
        .unwrap_or_else(|| "–".into())
}

/// Milliseconds for a table, or `–`.
pub fn f(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into())
}

/// A ratio for a table (`1.02×`), or `–`.
pub fn times(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())
}

/// A markdown table's header row and alignment row.
pub fn table_head(s: &mut String, header: &str, align: &str) {
    let _ = writeln!(s, "{header}");
    let _ = writeln!(s, "{align}");
}

/// The "vipd vs keepalived" table of medians, when both were measured.
pub fn vs_table<S: Copy + PartialEq + Display>(
    s: &mut String,
    adverts: &[u32],
    scenarios: &[S],
    impls: &[Impl],
    heads: &[&Head<S>],
) {
    if !(impls.contains(&Impl::Vipd) && impls.contains(&Impl::Keepalived)) {
        return;
    }
    let _ = writeln!(s, "\n### vipd vs keepalived (medians)\n");
    table_head(
        s,
        "| advert | scenario | vipd | keepalived | vipd / keepalived |",
        "|---:|---|---:|---:|---:|",
    );
    for &adv in adverts {
        for &scenario in scenarios {
            let get = |imp| {
                heads
                    .iter()
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

/// The "every run" table (`title`, last column `column`: each run's `figure`)
/// and the list of failed runs.
pub fn every_run<S: Copy + PartialEq + Display, M>(
    s: &mut String,
    title: &str,
    column: &str,
    heads: &[&Head<S>],
    records: &[RunRecord<S, M>],
    figure: impl Fn(&M) -> Duration,
) {
    let _ = writeln!(s, "\n### {title}\n");
    table_head(
        s,
        &format!("| impl | advert | scenario | {column} |"),
        "|---|---:|---|---|",
    );
    for x in heads {
        let v: Vec<String> = records
            .iter()
            .filter(|r| r.imp == x.imp && r.advert_ms == x.advert_ms && r.scenario == x.scenario)
            .map(|r| match &r.outcome {
                Ok(m) => format!("{:.1}", ms(figure(m))),
                Err(_) => "FAILED".into(),
            })
            .collect();
        let _ = writeln!(s, "{} {} |", x.key(), v.join(", "));
    }
    let failures: Vec<&RunRecord<S, M>> = records.iter().filter(|r| r.outcome.is_err()).collect();
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
}

/// Adds `rest`'s fields to the object `v`.
fn merge(v: &mut serde_json::Value, rest: serde_json::Value) {
    if let (Some(o), serde_json::Value::Object(r)) = (v.as_object_mut(), rest) {
        o.extend(r);
    }
}

/// The JSON report: the machine, `runs_per_cell`, `extra`'s fields, the
/// summary rows, and every run (what it was, then the fields `measured` gives
/// for a successful run, or its error).
pub fn json_report<S: Display, M>(
    runs_per_cell: usize,
    extra: serde_json::Value,
    summary: Vec<serde_json::Value>,
    records: &[RunRecord<S, M>],
    measured: impl Fn(&M) -> serde_json::Value,
) -> serde_json::Value {
    let mut v = json!({
        "machine": super::machine(),
        "runs_per_cell": runs_per_cell,
        "summary": summary,
        "runs": runs_json(records, measured),
    });
    merge(&mut v, extra);
    v
}

fn runs_json<S: Display, M>(
    records: &[RunRecord<S, M>],
    measured: impl Fn(&M) -> serde_json::Value,
) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| {
            let mut v = json!({
                "impl": r.imp.name(),
                "advert_ms": r.advert_ms,
                "scenario": r.scenario.to_string(),
                "run": r.run,
            });
            match &r.outcome {
                Ok(m) => merge(&mut v, measured(m)),
                Err(e) => v["error"] = json!(e),
            }
            v
        })
        .collect()
}
