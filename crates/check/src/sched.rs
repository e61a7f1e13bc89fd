//! The sans-IO health-check scheduler: one state machine per checker, no clock, no
//! sockets, no async. Time is passed in (`now`), probes are requested as
//! [`Action::Probe`] and their outcomes fed back with [`Scheduler::handle_result`];
//! real-server health changes come out as [`Action::Health`].
//!
//! Semantics (keepalived's, see `keepalived.conf(5)`):
//!
//! * A checker that is **up** and fails is retried `retry` times, `delay_before_retry`
//!   apart; only when all those retries fail too is it declared down. So with
//!   `retry N` a server goes down `N × delay_before_retry` (plus probe durations)
//!   after its first failed probe, on the `N + 1`-th consecutive failure.
//! * A checker that is **down** is probed every `delay_loop` and comes up after `rise`
//!   consecutive successes (1, except HTTP_GET/SSL_GET without `fast_recovery`, where
//!   it is the number of URLs, as keepalived checks them one per `delay_loop` when
//!   recovering).
//! * After any result the next probe is `delay_loop` later (or `delay_before_retry`
//!   during retries), counted from when the result arrived.
//! * With `alpha` a checker starts down and needs a success; without it it starts up.
//! * The first probe of checker `k` of `n` is at `start + warmup × (k + u_k) / n`, with
//!   `u_k ∈ [0, 1)` derived from the seed: one probe in each of `n` equal slices of the
//!   warmup window (keepalived's default warmup is `delay_loop`), so 10,000 servers are
//!   spread evenly instead of hit at once, and the order within a slice is
//!   deterministic for a given seed. `warmup 0` starts at once.
//! * A real server is up iff all its checkers are up. Dynamic checkers (`misc_dynamic`,
//!   FILE_CHECK `dynamic`) contribute a weight delta; the server's weight is its
//!   configured weight plus the sum of the deltas, clamped at 0.
//! * A checker never has two probes in flight: a probe that has not answered keeps the
//!   checker busy (the runner enforces the timeout and reports a failure).
//! * [`Scheduler::suspend`] (keepalived's `ha_suspend`) stops a virtual server's
//!   checkers; results of probes started before are discarded; on resume they start
//!   again with the spread. Health is kept as it was.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// Index of a checker in the spec list given to [`Scheduler::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckId(pub usize);

/// Resolved timing of one checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub delay_loop: Duration,
    /// Retries after a failure of an up checker before it is declared down.
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// Window over which first probes are spread (0: start at once).
    pub warmup: Duration,
    /// Consecutive successes a down checker needs to come up (at least 1).
    pub rise: u32,
}

/// What the scheduler needs to know about a checker.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// Index into the config's `virtual_servers`.
    pub vs: usize,
    /// Index into that virtual server's `real_servers`.
    pub rs: usize,
    /// The real server's configured weight.
    pub rs_weight: i64,
    /// For reasons and status, e.g. `HTTP_GET 192.0.2.1:80`.
    pub label: String,
    pub timing: Timing,
    /// Start down (needs a success to come up).
    pub alpha: bool,
    /// Outcomes carry a weight delta for the server.
    pub dynamic: bool,
    /// A result known before the first probe (FILE_CHECK reads its file at start);
    /// it sets the initial state instead of `alpha`.
    pub initial: Option<Outcome>,
}

/// A probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// Short reason: why it failed, or what succeeded (static for the common cases,
    /// so that a plain success allocates nothing).
    pub reason: Cow<'static, str>,
    /// Dynamic checkers: the delta this checker adds to the server's configured weight.
    pub weight: Option<i64>,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome {
            ok: true,
            reason: Cow::Borrowed("ok"),
            weight: None,
        }
    }

    pub fn fail(reason: impl Into<Cow<'static, str>>) -> Outcome {
        Outcome {
            ok: false,
            reason: reason.into(),
            weight: None,
        }
    }

    /// A success that sets this checker's weight delta.
    pub fn weighted(delta: i64, reason: impl Into<Cow<'static, str>>) -> Outcome {
        Outcome {
            ok: true,
            reason: reason.into(),
            weight: Some(delta),
        }
    }
}

/// A real server's health changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub vs: usize,
    pub rs: usize,
    pub up: bool,
    /// `None`: the configured weight. `Some(w)`: the weight set by dynamic checkers
    /// (every event of a server with a dynamic checker carries it).
    pub weight: Option<u32>,
    /// How many of its checkers fail now (KEEPALIVED-MIB's realServerFailedChecks); a
    /// change of it alone is reported too.
    pub failed: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run this checker's probe now and report with [`Scheduler::handle_result`].
    Probe {
        check: CheckId,
    },
    Health(HealthChange),
}

/// The last result a checker got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResult {
    pub at: Instant,
    pub ok: bool,
    pub reason: Cow<'static, str>,
}

/// A checker's state, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStatus {
    pub vs: usize,
    pub rs: usize,
    pub up: bool,
    pub in_flight: bool,
    pub suspended: bool,
    pub consecutive_failures: u32,
    pub last: Option<LastResult>,
    pub next_probe: Option<Instant>,
    /// The weight delta this checker adds to its server (dynamic checkers; else 0).
    pub delta: i64,
}

/// A real server's current health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    pub vs: usize,
    pub rs: usize,
    pub up: bool,
    pub weight: Option<u32>,
    /// How many of its checkers fail now.
    pub failed: u32,
}

#[derive(Debug)]
struct Check {
    spec: CheckSpec,
    server: usize,
    up: bool,
    delta: i64,
    consecutive_failures: u32,
    successes: u32,
    in_flight: bool,
    /// `epoch` when the in-flight probe started.
    inflight_epoch: u32,
    /// Bumped by every suspension: results of older probes are stale.
    epoch: u32,
    /// Timer generation; heap entries with another generation are stale.
    generation: u64,
    due: Option<Instant>,
    /// The timer fired while a (stale) probe was still running: probe when it ends.
    due_while_busy: bool,
    suspended: bool,
    last: Option<LastResult>,
}

#[derive(Debug)]
struct Server {
    vs: usize,
    rs: usize,
    weight: i64,
    checks: Vec<usize>,
    dynamic: bool,
    up: bool,
    eff_weight: Option<u32>,
    /// Checkers failing now.
    failed: u32,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    checks: Vec<Check>,
    servers: Vec<Server>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    actions: VecDeque<Action>,
    seed: u64,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A deterministic number in [0, 1) for checker `k`.
fn unit(seed: u64, k: usize) -> f64 {
    let x = splitmix64(seed ^ splitmix64(k as u64));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn clamp_weight(w: i64) -> u32 {
    w.clamp(0, u32::MAX as i64) as u32
}

impl Scheduler {
    /// Builds the state machines and schedules every checker's first probe.
    pub fn new(specs: Vec<CheckSpec>, now: Instant, seed: u64) -> Scheduler {
        let mut index: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        let mut servers: Vec<Server> = Vec::new();
        let mut checks = Vec::with_capacity(specs.len());
        for (k, spec) in specs.into_iter().enumerate() {
            let server = *index.entry((spec.vs, spec.rs)).or_insert_with(|| {
                servers.push(Server {
                    vs: spec.vs,
                    rs: spec.rs,
                    weight: spec.rs_weight,
                    checks: Vec::new(),
                    dynamic: false,
                    up: true,
                    eff_weight: None,
                    failed: 0,
                });
                servers.len() - 1
            });
            servers[server].checks.push(k);
            servers[server].dynamic |= spec.dynamic;
            let (up, delta, last) = match &spec.initial {
                Some(o) => (
                    o.ok,
                    if spec.dynamic {
                        o.weight.unwrap_or(0)
                    } else {
                        0
                    },
                    Some(LastResult {
                        at: now,
                        ok: o.ok,
                        reason: o.reason.clone(),
                    }),
                ),
                None => (!spec.alpha, 0, None),
            };
            checks.push(Check {
                spec,
                server,
                up,
                delta,
                consecutive_failures: 0,
                successes: 0,
                in_flight: false,
                inflight_epoch: 0,
                epoch: 0,
                generation: 0,
                due: None,
                due_while_busy: false,
                suspended: false,
                last,
            });
        }
        let mut s = Scheduler {
            checks,
            servers,
            timers: BinaryHeap::new(),
            actions: VecDeque::new(),
            seed,
        };
        for i in 0..s.servers.len() {
            let (up, w, failed) = s.aggregate(i);
            s.servers[i].up = up;
            s.servers[i].eff_weight = w;
            s.servers[i].failed = failed;
        }
        for k in 0..s.checks.len() {
            let at = now + s.first_offset(k);
            s.schedule(k, at);
        }
        s
    }

    /// Number of checkers.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Delay of checker `k`'s first probe after a start or resume.
    pub fn first_offset(&self, k: usize) -> Duration {
        let w = self.checks[k].spec.timing.warmup;
        if w.is_zero() {
            return Duration::ZERO;
        }
        let n = self.checks.len() as f64;
        w.mul_f64((k as f64 + unit(self.seed, k)) / n)
    }

    fn schedule(&mut self, k: usize, at: Instant) {
        let c = &mut self.checks[k];
        c.generation += 1;
        c.due = Some(at);
        self.timers.push(Reverse((at, k, c.generation)));
    }

    fn cancel(&mut self, k: usize) {
        let c = &mut self.checks[k];
        c.generation += 1;
        c.due = None;
    }

    fn start_probe(&mut self, k: usize) {
        let c = &mut self.checks[k];
        debug_assert!(!c.in_flight);
        c.in_flight = true;
        c.inflight_epoch = c.epoch;
        c.due = None;
        self.actions.push_back(Action::Probe { check: CheckId(k) });
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, k, generation))) = self.timers.peek().copied() {
            if self.checks[k].generation == generation {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Starts the probes that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, k, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let c = &mut self.checks[k];
            if c.generation != generation || c.suspended {
                continue;
            }
            c.due = None;
            if c.in_flight {
                c.due_while_busy = true;
            } else {
                self.start_probe(k);
            }
        }
    }

    /// The next probe to start or health change to deliver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A probe started by [`Action::Probe`] finished (the runner reports a timeout as
    /// a failure). Results for a checker without a probe in flight are ignored.
    pub fn handle_result(&mut self, check: CheckId, now: Instant, outcome: Outcome) {
        let k = check.0;
        let Some(c) = self.checks.get_mut(k) else {
            return;
        };
        if !c.in_flight {
            return;
        }
        c.in_flight = false;
        if c.inflight_epoch != c.epoch {
            // Started before a suspension: not counted.
            if c.due_while_busy && !c.suspended {
                c.due_while_busy = false;
                self.start_probe(k);
            }
            return;
        }
        let t = &c.spec.timing;
        let next = if outcome.ok {
            c.consecutive_failures = 0;
            if c.spec.dynamic {
                if let Some(d) = outcome.weight {
                    c.delta = d;
                }
            }
            if !c.up {
                c.successes += 1;
                if c.successes >= t.rise.max(1) {
                    c.up = true;
                    c.successes = 0;
                }
            }
            t.delay_loop
        } else {
            c.successes = 0;
            c.consecutive_failures = c.consecutive_failures.saturating_add(1);
            if c.up {
                if c.consecutive_failures > t.retry {
                    c.up = false;
                    t.delay_loop
                } else {
                    t.delay_before_retry
                }
            } else {
                t.delay_loop
            }
        };
        c.last = Some(LastResult {
            at: now,
            ok: outcome.ok,
            reason: outcome.reason,
        });
        let server = c.server;
        if !c.suspended {
            self.schedule(k, now + next);
        }
        self.update_server(server, k);
    }

    fn aggregate(&self, i: usize) -> (bool, Option<u32>, u32) {
        let s = &self.servers[i];
        let failed = s.checks.iter().filter(|&&k| !self.checks[k].up).count() as u32;
        let up = failed == 0;
        let weight = s.dynamic.then(|| {
            clamp_weight(
                s.checks
                    .iter()
                    .map(|&k| self.checks[k].delta)
                    .fold(s.weight, i64::saturating_add),
            )
        });
        (up, weight, failed)
    }

    /// Re-evaluates server `i` after a result of checker `k`; the reason of a change
    /// is that checker's label and last result (of a server still down after `k`
    /// passed: the first checker still failing).
    fn update_server(&mut self, i: usize, k: usize) {
        let (up, weight, failed) = self.aggregate(i);
        let k = if !up && self.checks[k].up {
            let s = &self.servers[i];
            s.checks
                .iter()
                .copied()
                .find(|&j| !self.checks[j].up)
                .unwrap_or(k)
        } else {
            k
        };
        let c = &self.checks[k];
        let reason = || match &c.last {
            Some(l) => format!("{}: {}", c.spec.label, l.reason),
            None => c.spec.label.clone(),
        };
        let s = &mut self.servers[i];
        let changed = up != s.up || (up && weight != s.eff_weight) || failed != s.failed;
        s.up = up;
        s.eff_weight = weight;
        s.failed = failed;
        if changed {
            self.actions.push_back(Action::Health(HealthChange {
                vs: s.vs,
                rs: s.rs,
                up,
                weight,
                failed,
                reason: reason(),
            }));
        }
    }

    /// keepalived's `ha_suspend`: stop (`true`) or resume (`false`) the checkers of
    /// virtual server `vs`. Resumed checkers start again with the warmup spread.
    pub fn suspend(&mut self, vs: usize, suspended: bool, now: Instant) {
        for k in 0..self.checks.len() {
            if self.checks[k].spec.vs != vs || self.checks[k].suspended == suspended {
                continue;
            }
            if suspended {
                self.cancel(k);
                let c = &mut self.checks[k];
                c.suspended = true;
                c.epoch = c.epoch.wrapping_add(1);
                c.due_while_busy = false;
            } else {
                self.checks[k].suspended = false;
                let at = now + self.first_offset(k);
                self.schedule(k, at);
            }
        }
    }

    /// Whether virtual server `vs`'s checkers are suspended (false if it has none).
    pub fn is_suspended(&self, vs: usize) -> bool {
        self.checks.iter().any(|c| c.spec.vs == vs && c.suspended)
    }

    pub fn spec(&self, check: CheckId) -> &CheckSpec {
        &self.checks[check.0].spec
    }

    /// The last result `check` got (as [`status`](Self::status), without a copy).
    pub fn last(&self, check: CheckId) -> Option<&LastResult> {
        self.checks[check.0].last.as_ref()
    }

    pub fn status(&self, check: CheckId) -> CheckStatus {
        let c = &self.checks[check.0];
        CheckStatus {
            vs: c.spec.vs,
            rs: c.spec.rs,
            up: c.up,
            in_flight: c.in_flight,
            suspended: c.suspended,
            consecutive_failures: c.consecutive_failures,
            last: c.last.clone(),
            next_probe: c.due,
            delta: c.delta,
        }
    }

    /// Every real server that has checkers, with its current health.
    pub fn servers(&self) -> impl Iterator<Item = ServerHealth> + '_ {
        self.servers.iter().map(|s| ServerHealth {
            vs: s.vs,
            rs: s.rs,
            up: s.up,
            weight: s.eff_weight,
            failed: s.failed,
        })
    }
}

#[cfg(test)]
mod tests;
