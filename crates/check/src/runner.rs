//! [`Checkers`]: the scheduler on an OS thread of its own ("vipd-check") with a
//! current-thread tokio runtime; probes run as tasks, health changes go out on a
//! `std::sync::mpsc::Sender` (the consumer is a data-plane thread; nothing here ever
//! waits for it, and nothing here can delay the VRRP thread).
//!
//! Per probe the runner does as little as it can, as it runs thousands a second: a
//! task, one result message; the probe's own deadline bounds it (a backstop timeout
//! is added only for the probes whose every step is not under their deadline, and for
//! MISC_CHECK). The state shown by [`Checkers::status`] stays with the runner and is
//! put together when asked for. On stop, probe tasks are simply dropped with the
//! runtime (closing their sockets); MISC_CHECK scripts are killed (their process
//! groups) and reaped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use vipd_config::model::{VirtualServer, VsKey};

use crate::probe::{file, secs, Probe, ProbeKind};
use crate::sched::{Action, CheckId, HealthChange, Outcome, Scheduler};
use crate::spec::{self, Globals, PlannedCheck};

/// Added to a probe's own time limit before the runner gives up on it.
pub const BACKSTOP_GRACE: Duration = Duration::from_secs(1);
/// How long a FILE_CHECK's value is reused for other checkers of the same file.
const FILE_CACHE: Duration = Duration::from_millis(500);
/// How long `stop` waits for running probes (MISC scripts being killed and reaped).
const STOP_WAIT: Duration = Duration::from_secs(3);
/// When the timer fires, the probes due within this much more start with the one
/// that is due: a wake-up of the thread costs more than most probes' own work, and
/// evenly spread checkers (one every 2 ms at 500 a second) would each get their own.
/// A probe starts at most this much early; its next one is timed from its result,
/// as always.
pub const START_TOGETHER: Duration = Duration::from_millis(10);

/// Start-up settings.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Seeds the spread of first probes within each warmup window.
    pub seed: u64,
    /// Virtual servers whose checkers start suspended (`ha_suspend` with the VIP not
    /// on this host).
    pub suspended: Vec<usize>,
    /// States kept from the checkers of a previous configuration (a reload): a checker
    /// with the same [`CheckerKey`] starts in that state instead of its `alpha` one.
    /// `Outcome::weight` is absolute here (see [`Checkers::carry_over`]).
    pub carried: HashMap<CheckerKey, Outcome>,
    /// The last event of each `bfd_instance` (name → Up) that BFD_CHECKs start from.
    pub bfd: HashMap<String, bool>,
}

/// A checker's identity across configurations: its virtual server, its real server,
/// its kind, and its position among that real server's checkers of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckerKey {
    pub vs: VsKey,
    pub addr: IpAddr,
    pub port: Option<u16>,
    /// `HTTP_GET`, ...
    pub kind: String,
    pub nth: usize,
}

/// The [`CheckerKey`]s of checkers given as (vs index, rs index, kind), in order.
fn checker_keys<'a>(
    vss: &'a [VirtualServer],
    checks: impl Iterator<Item = (usize, usize, &'a str)> + 'a,
) -> impl Iterator<Item = CheckerKey> + 'a {
    let mut seen: HashMap<(usize, usize, &'a str), usize> = HashMap::new();
    checks.map(move |(vs, rs, kind)| {
        let nth = seen.entry((vs, rs, kind)).or_insert(0);
        let r = &vss[vs].real_servers[rs];
        let key = CheckerKey {
            vs: vss[vs].key.clone(),
            addr: r.addr,
            port: r.port,
            kind: kind.to_string(),
            nth: *nth,
        };
        *nth += 1;
        key
    })
}

/// One checker's state for `vipd status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerStatus {
    pub vs: usize,
    pub rs: usize,
    /// `HTTP_GET`, ...
    pub kind: String,
    /// `HTTP_GET 192.0.2.1:80`.
    pub label: String,
    pub up: bool,
    pub suspended: bool,
    pub in_flight: bool,
    pub consecutive_failures: u32,
    pub last: Option<LastProbe>,
    /// The weight delta this checker adds to its server (dynamic checkers; else 0).
    pub delta: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastProbe {
    pub ok: bool,
    pub reason: String,
    /// When the result arrived.
    pub at: SystemTime,
    /// How long the probe ran.
    pub took: Duration,
}

enum Ctl {
    Suspend(usize, bool),
    Bfd(String, bool),
    Status(SyncSender<Vec<CheckerStatus>>),
    Stop,
}

/// The running health checkers. Dropping it stops them like [`Checkers::stop`].
pub struct Checkers {
    ctl: mpsc::UnboundedSender<Ctl>,
    thread: Option<JoinHandle<()>>,
    initial: Vec<HealthChange>,
    /// Checkers that started in a state carried from a previous configuration.
    kept: usize,
    /// Each checker's identity, by checker index (for [`Checkers::carry_over`]).
    keys: Vec<CheckerKey>,
    /// Each checker's server's configured weight, by checker index.
    rs_weights: Vec<i64>,
}

/// What the runner knows of a checker besides its scheduler state (the label is the
/// scheduler's).
struct Meta {
    kind: String,
    log_all_failures: bool,
}

impl Checkers {
    /// Builds the checkers of `vss` (the config's `virtual_servers`: `vs`/`rs` ids in
    /// health changes are indices into it and its `real_servers`) and starts them.
    /// Fails, naming keyword and line, on anything that cannot be honoured.
    pub fn start(
        vss: &[VirtualServer],
        globals: &Globals,
        opts: StartOptions,
        tx: Sender<HealthChange>,
    ) -> Result<Checkers> {
        let plan = spec::build(vss, globals)?;
        for f in &plan.init_files {
            if f.overwrite || !f.path.exists() {
                std::fs::write(&f.path, format!("{}\n", f.value))
                    .with_context(|| format!("track_file init_file {}", f.path.display()))?;
            }
        }
        let keys: Vec<CheckerKey> = checker_keys(
            vss,
            plan.checks
                .iter()
                .map(|c| (c.sched.vs, c.sched.rs, c.kind.as_str())),
        )
        .collect();
        let mut kept = 0;
        let mut rs_weights = Vec::with_capacity(plan.checks.len());
        let now = Instant::now();
        let mut specs = Vec::with_capacity(plan.checks.len());
        let mut probes = Vec::with_capacity(plan.checks.len());
        let mut meta = Vec::with_capacity(plan.checks.len());
        for PlannedCheck {
            mut sched,
            probe,
            kind,
            log_all_failures,
        } in plan.checks
        {
            if let ProbeKind::File(f) = &probe.kind {
                sched.initial = Some(f.evaluate(file::read_value(&f.path)));
            } else if let ProbeKind::Bfd(b) = &probe.kind {
                sched.initial = Some(b.evaluate(opts.bfd.get(&b.name).copied()));
            } else if let Some(o) = keys.get(specs.len()).and_then(|k| opts.carried.get(k)) {
                // Carried weights are absolute (see `carry_over`): the delta is taken
                // from this file's configured weight.
                sched.initial = Some(Outcome {
                    weight: o.weight.map(|w| w - sched.rs_weight),
                    ..o.clone()
                });
                kept += 1;
            }
            rs_weights.push(sched.rs_weight);
            meta.push(Meta {
                kind,
                log_all_failures,
            });
            specs.push(sched);
            probes.push(Arc::new(probe));
        }
        raise_fd_limit(specs.len());
        let mut sched = Scheduler::new(specs, now, opts.seed);
        for &vs in &opts.suspended {
            sched.suspend(vs, true, now);
        }
        let health: HashMap<(usize, usize), _> =
            sched.servers().map(|h| ((h.vs, h.rs), h)).collect();
        // Why a server starts down: its first checker that does.
        let mut down_reason: HashMap<(usize, usize), String> = HashMap::new();
        for k in (0..sched.len()).map(CheckId) {
            let s = sched.status(k);
            if !s.up {
                down_reason.entry((s.vs, s.rs)).or_insert_with(|| {
                    let label = &sched.spec(k).label;
                    match s.last {
                        Some(l) => format!("{label}: {}", l.reason),
                        None => format!("{label}: alpha, no success yet"),
                    }
                });
            }
        }
        let initial = plan
            .servers
            .iter()
            .map(|s| match health.get(&(s.vs, s.rs)) {
                None => HealthChange {
                    vs: s.vs,
                    rs: s.rs,
                    up: true,
                    weight: None,
                    failed: 0,
                    reason: "no checkers".into(),
                },
                Some(h) => HealthChange {
                    vs: s.vs,
                    rs: s.rs,
                    up: h.up,
                    weight: h.weight,
                    failed: h.failed,
                    reason: match down_reason.remove(&(s.vs, s.rs)) {
                        Some(r) if !h.up => r,
                        _ => "initially up".into(),
                    },
                },
            })
            .collect();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("checker runtime")?;
        let (nice, rt_priority) = (globals.nice, globals.rt_priority);
        let cpus = globals.cpu_affinity.clone();
        let thread = std::thread::Builder::new()
            .name("vipd-check".into())
            .spawn(move || {
                for e in vipd_exec::tuning::tune_thread("checker", nice, rt_priority, &cpus) {
                    tracing::warn!("{e}");
                }
                let mut r = Runner {
                    took: vec![Duration::ZERO; sched.len()],
                    sched,
                    probes,
                    meta,
                    tx,
                    file_cache: HashMap::new(),
                    bfd: opts.bfd,
                };
                runtime.block_on(r.run(ctl_rx));
                // Dropping the runtime drops whatever is left (killing MISC groups).
                drop(runtime);
            })
            .context("spawning the checker thread")?;
        Ok(Checkers {
            ctl,
            thread: Some(thread),
            initial,
            kept,
            keys,
            rs_weights,
        })
    }

    /// A `bfd_instance`'s event (keepalived's: Up on entering Up, down on leaving it):
    /// its BFD_CHECKs report at once.
    pub fn bfd(&self, name: &str, up: bool) {
        let _ = self.ctl.send(Ctl::Bfd(name.to_string(), up));
    }

    /// Every real server's health at start: up unless a checker starts down
    /// (`alpha`, or a FILE_CHECK whose file says so); servers without checkers are up.
    /// Taken (the caller keeps them; a second call returns nothing): 40,000 reasons
    /// at 2,000 × 20 need not be copied on every reload.
    pub fn take_initial_health(&mut self) -> Vec<HealthChange> {
        std::mem::take(&mut self.initial)
    }

    /// How many checkers there are, and how many of them started in a state carried
    /// over by [`StartOptions::carried`].
    pub fn counts(&self) -> (usize, usize) {
        (self.keys.len(), self.kept)
    }

    /// `ha_suspend`: stop (`true`) or resume (`false`) virtual server `vs`'s checkers.
    pub fn suspend(&self, vs: usize, suspended: bool) {
        let _ = self.ctl.send(Ctl::Suspend(vs, suspended));
    }

    /// Every checker's state, in config order, as the checker thread sees it now (it
    /// answers between two events; empty if that thread is gone).
    pub fn status(&self) -> Vec<CheckerStatus> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.ctl.send(Ctl::Status(tx)).is_err() {
            return Vec::new();
        }
        rx.recv().unwrap_or_default()
    }

    /// Each checker's current verdict, keyed for [`StartOptions::carried`]: what a
    /// reload hands to the new configuration's checkers. `weight` is the absolute
    /// weight the checker gives its server (configured + its delta), so a
    /// `misc_dynamic` weight survives a reload that changes the configured one.
    pub fn carry_over(&self) -> HashMap<CheckerKey, Outcome> {
        let status = self.status();
        self.keys
            .iter()
            .cloned()
            .zip(&status)
            .zip(&self.rs_weights)
            .map(|((k, s), configured)| {
                let reason = match &s.last {
                    Some(l) => format!("kept across reload; last: {}", l.reason),
                    None => "kept across reload".to_string(),
                };
                let verdict = Outcome {
                    ok: s.up,
                    reason: reason.into(),
                    weight: Some(configured + s.delta),
                };
                (k, verdict)
            })
            .collect()
    }

    /// Stops probing, kills running MISC_CHECK scripts (their process groups) and
    /// joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.ctl.send(Ctl::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Each checker may hold a socket (or a pipe-less child) at once: make sure the
/// process may open that many descriptors, raising the soft RLIMIT_NOFILE towards the
/// hard limit if needed (10,000 checkers do not fit the usual soft limit of 1024).
fn raise_fd_limit(checkers: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let soft = lim.rlim_cur;
    let want = (checkers as libc::rlim_t * 2 + 1024).min(lim.rlim_max);
    if want > soft {
        lim.rlim_cur = want;
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            tracing::info!("checkers: open-files limit raised from {soft} to {want}");
        } else {
            let e = std::io::Error::last_os_error();
            tracing::warn!("checkers: cannot raise the open-files limit from {soft}: {e}");
        }
    }
}

struct Runner {
    sched: Scheduler,
    probes: Vec<Arc<Probe>>,
    meta: Vec<Meta>,
    tx: Sender<HealthChange>,
    /// How long the probe of each checker's last result ran.
    took: Vec<Duration>,
    file_cache: HashMap<PathBuf, (Instant, i64)>,
    /// Each `bfd_instance`'s last event (Up or not).
    bfd: HashMap<String, bool>,
}

/// A finished probe: which, what, when it started.
type Done = (CheckId, Outcome, Instant);

impl Runner {
    async fn run(&mut self, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        // Only MISC_CHECK scripts watch for the stop, and only they are in a JoinSet.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut scripts = JoinSet::new();
        // One timer, moved when the scheduler's next deadline moves.
        let idle = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(idle());
        tokio::pin!(sleep);
        let mut armed = None;
        loop {
            self.act(&mut scripts, &done_tx, &stop_rx);
            let deadline = self.sched.poll_timeout();
            if deadline != armed {
                armed = deadline;
                sleep
                    .as_mut()
                    .reset(deadline.map_or_else(idle, tokio::time::Instant::from_std));
            }
            tokio::select! {
                biased;
                c = ctl.recv() => match c {
                    Some(Ctl::Suspend(vs, on)) => self.sched.suspend(vs, on, Instant::now()),
                    Some(Ctl::Bfd(name, up)) => self.bfd_event(name, up),
                    Some(Ctl::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(Ctl::Stop) | None => break,
                },
                Some(done) = done_rx.recv() => {
                    self.finish(done);
                    while let Ok(more) = done_rx.try_recv() {
                        self.finish(more);
                    }
                }
                _ = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.sched.handle_timeout(Instant::now() + START_TOGETHER);
                }
                Some(_) = scripts.join_next(), if !scripts.is_empty() => {}
            }
        }
        // Other probes end with the runtime, right after this returns.
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(STOP_WAIT, async {
            while scripts.join_next().await.is_some() {}
        })
        .await;
        scripts.abort_all();
    }

    /// Starts due probes and delivers health changes.
    fn act(
        &mut self,
        scripts: &mut JoinSet<()>,
        done_tx: &mpsc::UnboundedSender<Done>,
        stop: &watch::Receiver<bool>,
    ) {
        while let Some(a) = self.sched.poll_action() {
            match a {
                Action::Probe { check } => {
                    let probe = &self.probes[check.0];
                    match &probe.kind {
                        ProbeKind::File(f) => {
                            let now = Instant::now();
                            let value = match self.file_cache.get(&f.path) {
                                Some((at, v)) if now.duration_since(*at) < FILE_CACHE => *v,
                                _ => {
                                    let v = file::read_value(&f.path);
                                    self.file_cache.insert(f.path.clone(), (now, v));
                                    v
                                }
                            };
                            let out = f.evaluate(value);
                            self.finish((check, out, now));
                        }
                        ProbeKind::Bfd(b) => {
                            let out = b.evaluate(self.bfd.get(&b.name).copied());
                            self.finish((check, out, Instant::now()));
                        }
                        ProbeKind::Misc(_) => {
                            let (probe, tx, stop) = (probe.clone(), done_tx.clone(), stop.clone());
                            scripts.spawn(async move {
                                let started = Instant::now();
                                if let Some(out) = run_script(&probe, stop).await {
                                    let _ = tx.send((check, out, started));
                                }
                            });
                        }
                        _ => {
                            let (probe, tx) = (probe.clone(), done_tx.clone());
                            tokio::spawn(async move {
                                let started = Instant::now();
                                let out = run_probe(&probe).await;
                                let _ = tx.send((check, out, started));
                            });
                        }
                    }
                }
                Action::Health(h) => {
                    if h.up {
                        tracing::info!(vs = h.vs, rs = h.rs, weight = ?h.weight, "real server up: {}", h.reason);
                    } else {
                        tracing::warn!(
                            vs = h.vs,
                            rs = h.rs,
                            failed = h.failed,
                            "real server down: {}",
                            h.reason
                        );
                    }
                    let _ = self.tx.send(h);
                }
            }
        }
    }

    /// A BFD session's event: every BFD_CHECK of it reports at once.
    fn bfd_event(&mut self, name: String, up: bool) {
        self.bfd.insert(name.clone(), up);
        for k in 0..self.probes.len() {
            if let ProbeKind::Bfd(b) = &self.probes[k].kind {
                if b.name == name {
                    let out = b.evaluate(Some(up));
                    self.finish((CheckId(k), out, Instant::now()));
                }
            }
        }
    }

    fn finish(&mut self, (check, out, started): Done) {
        let now = Instant::now();
        if !out.ok {
            let label = &self.sched.spec(check).label;
            if self.meta[check.0].log_all_failures {
                tracing::warn!("{label}: {}", out.reason);
            } else {
                tracing::debug!("{label}: {}", out.reason);
            }
        }
        self.sched.handle_result(check, now, out);
        // Unless the scheduler discarded it (started before a suspension).
        if self.sched.last(check).is_some_and(|l| l.at == now) {
            self.took[check.0] = now.duration_since(started);
        }
    }

    /// Every checker's state for [`Checkers::status`].
    fn status(&self) -> Vec<CheckerStatus> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        (0..self.sched.len())
            .map(|k| {
                let s = self.sched.status(CheckId(k));
                CheckerStatus {
                    vs: s.vs,
                    rs: s.rs,
                    kind: self.meta[k].kind.clone(),
                    label: self.sched.spec(CheckId(k)).label.clone(),
                    up: s.up,
                    suspended: s.suspended,
                    in_flight: s.in_flight,
                    consecutive_failures: s.consecutive_failures,
                    delta: s.delta,
                    last: s.last.map(|l| LastProbe {
                        ok: l.ok,
                        reason: l.reason.into_owned(),
                        at: wall.checked_sub(now.duration_since(l.at)).unwrap_or(wall),
                        took: self.took[k],
                    }),
                }
            })
            .collect()
    }
}

/// Runs a network probe. Those whose every step is under their own deadline
/// (`connect_timeout`) run as they are; the others get the backstop timeout.
async fn run_probe(p: &Probe) -> Outcome {
    match &p.kind {
        ProbeKind::Http(_) | ProbeKind::Tcp | ProbeKind::Smtp(_) | ProbeKind::Ping => p.run().await,
        _ => {
            let budget = p.budget() + BACKSTOP_GRACE;
            tokio::time::timeout(budget, p.run())
                .await
                .unwrap_or_else(|_| Outcome::fail(format!("no result within {}", secs(budget))))
        }
    }
}

/// Runs a MISC_CHECK script with the backstop timeout; `None` if the checkers stopped
/// first (the script's process group was killed and the script reaped).
async fn run_script(p: &Probe, mut stop: watch::Receiver<bool>) -> Option<Outcome> {
    let ProbeKind::Misc(m) = &p.kind else {
        return Some(p.run().await);
    };
    let budget = p.budget() + BACKSTOP_GRACE;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::time::timeout(budget, m.run_until(stopped))
        .await
        .unwrap_or_else(|_| Some(Outcome::fail(format!("no result within {}", secs(budget)))))
}

#[cfg(test)]
mod task_size_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::probe::{Probe, ProbeKind};

    /// A probe task lives as long as its probe is in flight, and its future is as large
    /// as the largest state of any kind it may run: the rare kinds' states (TLS, DNS,
    /// SMTP, ...) are boxed so that an HTTP_GET/TCP_CHECK task stays small (it was
    /// 2.8 KB with them inline, in a release build).
    #[test]
    fn a_probe_task_stays_small() {
        let p = Arc::new(Probe {
            kind: ProbeKind::Tcp,
            target: "192.0.2.1:80".parse().unwrap(),
            bind_addr: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            timeout: Duration::from_secs(1),
        });
        let task = async move {
            let _ = super::run_probe(&p).await;
        };
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1536, "probe task future: {size} bytes");
    }
}
