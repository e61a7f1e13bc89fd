//! Deterministic scheduler tests with virtual time.

use super::*;

const S: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn timing(delay_loop: Duration, retry: u32, dbr: Duration) -> Timing {
    Timing {
        delay_loop,
        retry,
        delay_before_retry: dbr,
        warmup: Duration::ZERO,
        rise: 1,
    }
}

fn spec(vs: usize, rs: usize, t: Timing) -> CheckSpec {
    CheckSpec {
        vs,
        rs,
        rs_weight: 1,
        label: format!("TCP_CHECK vs{vs} rs{rs}"),
        timing: t,
        alpha: false,
        dynamic: false,
        initial: None,
    }
}

/// What a probe of `check` started at `at` (since t0) returns and how long it takes;
/// `None` = it never returns.
type World = dyn FnMut(CheckId, Duration) -> Option<(Duration, Outcome)>;

struct Sim {
    s: Scheduler,
    t0: Instant,
    now: Instant,
    /// (start since t0, check)
    probes: Vec<(Duration, CheckId)>,
    health: Vec<(Duration, HealthChange)>,
    pending: Vec<(Instant, CheckId, Outcome)>,
    in_flight: std::collections::HashSet<CheckId>,
}

impl Sim {
    fn new(specs: Vec<CheckSpec>, seed: u64) -> Sim {
        let t0 = Instant::now();
        Sim {
            s: Scheduler::new(specs, t0, seed),
            t0,
            now: t0,
            probes: Vec::new(),
            health: Vec::new(),
            pending: Vec::new(),
            in_flight: Default::default(),
        }
    }

    fn at(&self) -> Duration {
        self.now - self.t0
    }

    fn drain(&mut self, world: &mut World) {
        while let Some(a) = self.s.poll_action() {
            match a {
                Action::Probe { check } => {
                    assert!(
                        self.in_flight.insert(check),
                        "two probes of {check:?} at once (t={:?})",
                        self.at()
                    );
                    self.probes.push((self.at(), check));
                    if let Some((d, o)) = world(check, self.at()) {
                        self.pending.push((self.now + d, check, o));
                    }
                }
                Action::Health(h) => self.health.push((self.at(), h)),
            }
        }
    }

    /// Runs the event loop until `until` (since t0), inclusive.
    fn run(&mut self, until: Duration, world: &mut World) {
        let end = self.t0 + until;
        loop {
            self.drain(world);
            let next_result = self.pending.iter().map(|p| p.0).min();
            let next_timer = self.s.poll_timeout();
            let next = match (next_result, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            assert!(next >= self.now, "time went backwards");
            self.now = next;
            // Results first, then timers (either order is valid; this one is fixed).
            let mut i = 0;
            while i < self.pending.len() {
                if self.pending[i].0 <= self.now {
                    let (_, c, o) = self.pending.remove(i);
                    self.in_flight.remove(&c);
                    self.s.handle_result(c, self.now, o);
                } else {
                    i += 1;
                }
            }
            self.s.handle_timeout(self.now);
        }
        self.now = self.now.max(end);
    }

    fn probe_times(&self, check: usize) -> Vec<Duration> {
        self.probes
            .iter()
            .filter(|p| p.1 .0 == check)
            .map(|p| p.0)
            .collect()
    }
}

fn healthy_until(t: Duration) -> impl FnMut(CheckId, Duration) -> Option<(Duration, Outcome)> {
    move |_, at| {
        Some((
            Duration::ZERO,
            if at < t {
                Outcome::ok()
            } else {
                Outcome::fail("connect: connection refused")
            },
        ))
    }
}

#[test]
fn up_to_down_takes_exactly_the_retry_schedule() {
    // delay_loop 10 s, retry 2, delay_before_retry 3 s; the server dies at t=25 s.
    let mut sim = Sim::new(vec![spec(0, 0, timing(10 * S, 2, 3 * S))], 1);
    let mut world = healthy_until(25 * S);
    sim.run(60 * S, &mut world);
    assert_eq!(
        sim.probe_times(0),
        [0, 10, 20, 30, 33, 36, 46, 56].map(|s| s * S)
    );
    // Down on the third consecutive failure: first failure + 2 × delay_before_retry.
    assert_eq!(sim.health.len(), 1, "{:?}", sim.health);
    let (t, h) = &sim.health[0];
    assert_eq!(*t, 36 * S);
    assert!(!h.up);
    assert_eq!((h.vs, h.rs, h.weight), (0, 0, None));
    assert!(h.reason.contains("connection refused"), "{}", h.reason);
    assert!(h.reason.starts_with("TCP_CHECK"), "{}", h.reason);
    let st = sim.s.status(CheckId(0));
    assert!(!st.up);
    assert_eq!(st.consecutive_failures, 5);
    assert_eq!(st.next_probe, Some(sim.t0 + 66 * S));
}

#[test]
fn probe_duration_counts_before_the_next_delay() {
    // Each probe takes 400 ms; the next one is delay_loop after the result.
    let mut sim = Sim::new(vec![spec(0, 0, timing(2 * S, 1, S))], 1);
    let mut world = |_: CheckId, at: Duration| {
        Some((
            ms(400),
            if at < 3 * S {
                Outcome::ok()
            } else {
                Outcome::fail("x")
            },
        ))
    };
    sim.run(10 * S, &mut world);
    // 0 ok (ends 0.4) → 2.4 ok (ends 2.8) → 4.8 fail (ends 5.2) → retry at 6.2 fail
    // (ends 6.6: down) → 8.6.
    assert_eq!(sim.probe_times(0), [0, 2400, 4800, 6200, 8600].map(ms));
    assert_eq!(sim.health.len(), 1);
    assert_eq!(sim.health[0].0, ms(6600));
}

#[test]
fn retry_zero_is_down_on_the_first_failure() {
    let mut sim = Sim::new(vec![spec(0, 0, timing(5 * S, 0, S))], 1);
    let mut world = healthy_until(7 * S);
    sim.run(12 * S, &mut world);
    assert_eq!(sim.health.len(), 1);
    assert_eq!(sim.health[0].0, 10 * S);
    assert!(!sim.health[0].1.up);
}

#[test]
fn a_success_during_retries_keeps_it_up() {
    let mut sim = Sim::new(vec![spec(0, 0, timing(10 * S, 3, 2 * S))], 1);
    // Fails at 10 and 12, succeeds at 14, fails at 24, 26, 28, 30 → down at 30.
    let mut world = |_: CheckId, at: Duration| {
        let ok = at < 10 * S || at == 14 * S;
        Some((
            Duration::ZERO,
            if ok {
                Outcome::ok()
            } else {
                Outcome::fail("x")
            },
        ))
    };
    sim.run(31 * S, &mut world);
    assert_eq!(
        sim.probe_times(0),
        [0, 10, 12, 14, 24, 26, 28, 30].map(|s| s * S)
    );
    assert_eq!(sim.health.len(), 1);
    assert_eq!(sim.health[0].0, 30 * S);
}

#[test]
fn down_to_up_on_the_first_success() {
    let mut sim = Sim::new(vec![spec(0, 0, timing(10 * S, 1, 3 * S))], 1);
    // Down from 5 s to 40 s.
    let mut world = |_: CheckId, at: Duration| {
        let ok = !(5 * S..40 * S).contains(&at);
        Some((
            Duration::ZERO,
            if ok {
                Outcome::ok()
            } else {
                Outcome::fail("HTTP status 503 not in 200-299")
            },
        ))
    };
    sim.run(60 * S, &mut world);
    // 0 ok, 10 fail, 13 fail → down, 23 fail, 33 fail, 43 ok → up.
    assert_eq!(
        sim.probe_times(0),
        [0, 10, 13, 23, 33, 43, 53].map(|s| s * S)
    );
    let events: Vec<(Duration, bool)> = sim.health.iter().map(|(t, h)| (*t, h.up)).collect();
    assert_eq!(events, [(13 * S, false), (43 * S, true)]);
    assert!(sim.health[1].1.reason.ends_with(": ok"));
}

#[test]
fn rise_needs_consecutive_successes_a_delay_loop_apart() {
    let mut t = timing(10 * S, 0, S);
    t.rise = 3;
    let mut sp = spec(0, 0, t);
    sp.alpha = true;
    let mut sim = Sim::new(vec![sp], 1);
    // ok, ok, fail, ok, ok, ok
    let mut world = |_: CheckId, at: Duration| {
        Some((
            Duration::ZERO,
            if at == 20 * S {
                Outcome::fail("x")
            } else {
                Outcome::ok()
            },
        ))
    };
    sim.run(60 * S, &mut world);
    let events: Vec<(Duration, bool)> = sim.health.iter().map(|(t, h)| (*t, h.up)).collect();
    assert_eq!(events, [(50 * S, true)]);
}

#[test]
fn alpha_starts_down_and_needs_a_success() {
    let mut a = spec(0, 0, timing(10 * S, 1, S));
    a.alpha = true;
    let b = spec(0, 1, timing(10 * S, 1, S));
    let mut sim = Sim::new(vec![a, b], 1);
    let initial: Vec<(usize, bool)> = sim.s.servers().map(|h| (h.rs, h.up)).collect();
    assert_eq!(initial, [(0, false), (1, true)]);
    // The alpha server fails its first two probes: no event (it already is down).
    let mut world = |c: CheckId, at: Duration| {
        let ok = c.0 == 1 || at >= 15 * S;
        Some((
            Duration::ZERO,
            if ok {
                Outcome::ok()
            } else {
                Outcome::fail("x")
            },
        ))
    };
    sim.run(25 * S, &mut world);
    // No retries while down: probes every delay_loop.
    assert_eq!(sim.probe_times(0), [0, 10, 20].map(|s| s * S));
    let events: Vec<(Duration, usize, bool)> =
        sim.health.iter().map(|(t, h)| (*t, h.rs, h.up)).collect();
    assert_eq!(events, [(20 * S, 0, true)]);
}

#[test]
fn first_checks_of_10000_servers_are_spread_evenly_over_the_loop() {
    let n = 10_000;
    let specs: Vec<CheckSpec> = (0..n)
        .map(|i| {
            let mut t = timing(60 * S, 1, 3 * S);
            t.warmup = 60 * S;
            spec(i / 100, i % 100, t)
        })
        .collect();
    let mut sim = Sim::new(specs.clone(), 42);
    let mut world = |_: CheckId, _: Duration| Some((Duration::ZERO, Outcome::ok()));
    // Nothing is probed at once in a burst: at t=0 at most one probe.
    sim.run(Duration::ZERO, &mut world);
    assert!(sim.probes.len() <= 1, "{}", sim.probes.len());
    sim.run(60 * S - ms(1), &mut world);
    assert_eq!(
        sim.probes.len(),
        n,
        "every server probed once in the first loop"
    );
    // Every second of the loop gets n/60 ≈ 166.7 first probes.
    let mut buckets = [0usize; 60];
    for (t, _) in &sim.probes {
        buckets[t.as_secs() as usize] += 1;
    }
    for (i, b) in buckets.iter().enumerate() {
        assert!((166..=168).contains(b), "second {i}: {b} probes");
    }
    // And every 100 ms slice gets 16 or 17.
    let mut slices = vec![0usize; 600];
    for (t, _) in &sim.probes {
        slices[(t.as_millis() / 100) as usize] += 1;
    }
    assert!(slices.iter().all(|&c| (16..=18).contains(&c)), "{slices:?}");
    // Deterministic for a seed; another seed moves servers within their slice.
    let again = Sim::new(specs.clone(), 42);
    let other = Sim::new(specs, 43);
    let offsets = |s: &Sim| (0..n).map(|k| s.s.first_offset(k)).collect::<Vec<_>>();
    assert_eq!(offsets(&sim), offsets(&again));
    let (a, b) = (offsets(&sim), offsets(&other));
    assert_ne!(a, b);
    let slice = (60 * S).as_secs_f64() / n as f64;
    for k in 0..n {
        assert_eq!(
            (a[k].as_secs_f64() / slice) as usize,
            k,
            "checker {k} outside its slice"
        );
        assert_eq!((b[k].as_secs_f64() / slice) as usize, k);
    }
}

#[test]
fn warmup_zero_starts_at_once() {
    let mut sim = Sim::new(
        (0..50).map(|i| spec(0, i, timing(10 * S, 1, S))).collect(),
        7,
    );
    let mut world = |_: CheckId, _: Duration| Some((Duration::ZERO, Outcome::ok()));
    sim.run(Duration::ZERO, &mut world);
    assert_eq!(sim.probes.len(), 50);
}

#[test]
fn a_server_is_up_iff_all_its_checkers_are_up() {
    // rs 0 has checkers 0 and 1; rs 1 has checker 2.
    let t = timing(10 * S, 0, S);
    let mut sim = Sim::new(
        vec![spec(0, 0, t.clone()), spec(0, 0, t.clone()), spec(0, 1, t)],
        1,
    );
    // Checker 0 fails in [10, 30), checker 1 fails in [20, 40).
    let mut world = |c: CheckId, at: Duration| {
        let bad = match c.0 {
            0 => (10 * S..30 * S).contains(&at),
            1 => (20 * S..40 * S).contains(&at),
            _ => false,
        };
        Some((
            Duration::ZERO,
            if bad {
                Outcome::fail(format!("checker {} failed", c.0))
            } else {
                Outcome::ok()
            },
        ))
    };
    sim.run(55 * S, &mut world);
    let events: Vec<(Duration, usize, bool, u32)> = sim
        .health
        .iter()
        .map(|(t, h)| (*t, h.rs, h.up, h.failed))
        .collect();
    // Down when the first one fails, up only when the second recovers; each change of
    // the number failing is reported.
    assert_eq!(
        events,
        [
            (10 * S, 0, false, 1),
            (20 * S, 0, false, 2),
            (30 * S, 0, false, 1),
            (40 * S, 0, true, 0)
        ]
    );
    assert!(sim.health[0].1.reason.contains("checker 0 failed"));
    // Checker 0 passes again at 30 s: still down, for checker 1.
    assert!(sim.health[2].1.reason.contains("checker 1 failed"));
    let st: Vec<bool> = (0..3).map(|k| sim.s.status(CheckId(k)).up).collect();
    assert_eq!(st, [true, true, true]);
}

#[test]
fn misc_dynamic_sets_the_weight() {
    let mut sp = spec(0, 0, timing(10 * S, 0, S));
    sp.dynamic = true;
    sp.rs_weight = 5;
    let mut sim = Sim::new(vec![sp, spec(0, 0, timing(10 * S, 0, S))], 1);
    assert_eq!(
        sim.s.servers().next().unwrap(),
        ServerHealth {
            vs: 0,
            rs: 0,
            up: true,
            weight: Some(5),
            failed: 0,
        }
    );
    // Exit codes over time: 12 (weight 10), 12 (no change), 1 (down), 0 (configured),
    // 2 (weight 0).
    let codes = [12, 12, 1, 0, 2];
    let mut world = move |c: CheckId, at: Duration| {
        if c.0 == 1 {
            return Some((Duration::ZERO, Outcome::ok()));
        }
        let code = codes[(at.as_secs() / 10) as usize];
        Some((
            Duration::ZERO,
            match code {
                0 => Outcome::weighted(0, "exit 0"),
                1 => Outcome::fail("exit 1"),
                c => Outcome::weighted(c - 2 - 5, format!("exit {c}")),
            },
        ))
    };
    sim.run(45 * S, &mut world);
    let events: Vec<(Duration, bool, Option<u32>)> = sim
        .health
        .iter()
        .map(|(t, h)| (*t, h.up, h.weight))
        .collect();
    assert_eq!(
        events,
        [
            (Duration::ZERO, true, Some(10)),
            (20 * S, false, Some(10)),
            (30 * S, true, Some(5)),
            (40 * S, true, Some(0)),
        ]
    );
}

#[test]
fn dynamic_deltas_add_up_and_clamp_at_zero() {
    let mut a = spec(0, 0, timing(10 * S, 0, S));
    a.dynamic = true;
    a.rs_weight = 3;
    let b = a.clone();
    let mut sim = Sim::new(vec![a, b], 1);
    let mut world = |c: CheckId, _: Duration| {
        Some((
            Duration::ZERO,
            Outcome::weighted(if c.0 == 0 { 4 } else { -2 }, "x"),
        ))
    };
    sim.run(Duration::ZERO, &mut world);
    assert_eq!(sim.health.last().unwrap().1.weight, Some(5));
    let mut world = |c: CheckId, _: Duration| {
        Some((
            Duration::ZERO,
            Outcome::weighted(if c.0 == 0 { -4 } else { -2 }, "x"),
        ))
    };
    sim.run(15 * S, &mut world);
    assert_eq!(sim.health.last().unwrap().1.weight, Some(0));
}

#[test]
fn initial_outcome_sets_the_starting_state() {
    let mut down = spec(0, 0, timing(S, 0, S));
    down.initial = Some(Outcome::fail("file value 3"));
    let mut up = spec(0, 1, timing(S, 0, S));
    up.alpha = true; // the known result wins
    up.dynamic = true;
    up.initial = Some(Outcome::weighted(7, "file value 7"));
    let sim = Sim::new(vec![down, up], 1);
    let h: Vec<ServerHealth> = sim.s.servers().collect();
    assert!(!h[0].up);
    assert!(h[1].up);
    assert_eq!(h[1].weight, Some(8));
    assert_eq!(
        sim.s.status(CheckId(0)).last.unwrap().reason,
        "file value 3"
    );
}

#[test]
fn a_hung_probe_is_never_doubled_and_its_failure_counts() {
    let mut sim = Sim::new(vec![spec(0, 0, timing(2 * S, 1, S))], 1);
    // First probe hangs forever.
    let mut hang = |_: CheckId, _: Duration| None;
    sim.run(60 * S, &mut hang);
    assert_eq!(sim.probe_times(0), [Duration::ZERO]);
    assert!(sim.s.status(CheckId(0)).in_flight);
    assert_eq!(sim.s.poll_timeout(), None);
    // The runner's timeout reports it as a failure: a retry follows.
    sim.now = sim.t0 + 60 * S;
    sim.in_flight.clear();
    sim.s
        .handle_result(CheckId(0), sim.now, Outcome::fail("timed out after 5s"));
    assert_eq!(sim.s.poll_timeout(), Some(sim.t0 + 61 * S));
    let mut fail = |_: CheckId, _: Duration| Some((Duration::ZERO, Outcome::fail("refused")));
    sim.run(62 * S, &mut fail);
    assert_eq!(sim.health.len(), 1);
    assert_eq!(sim.health[0].0, 61 * S);
    // A result for a checker without a probe in flight is ignored.
    sim.s.handle_result(CheckId(0), sim.now, Outcome::ok());
    assert!(sim.s.poll_action().is_none());
    assert!(!sim.s.status(CheckId(0)).up);
}

#[test]
fn suspend_stops_probes_and_resume_spreads_them_again() {
    let specs: Vec<CheckSpec> = (0..4)
        .map(|i| {
            let mut t = timing(10 * S, 1, S);
            t.warmup = 10 * S;
            spec(i / 2, i % 2, t)
        })
        .collect();
    let mut sim = Sim::new(specs, 5);
    let mut world = |_: CheckId, _: Duration| Some((Duration::ZERO, Outcome::ok()));
    sim.run(20 * S, &mut world);
    let before = sim.probes.len();
    assert_eq!(before, 8);
    sim.s.suspend(0, true, sim.now);
    assert!(sim.s.is_suspended(0));
    assert!(!sim.s.is_suspended(1));
    // Even failures would not matter: vs 0 is not probed.
    let mut world = |c: CheckId, _: Duration| {
        Some((
            Duration::ZERO,
            if c.0 < 2 {
                Outcome::fail("x")
            } else {
                Outcome::ok()
            },
        ))
    };
    sim.run(100 * S, &mut world);
    assert!(sim.probes[before..].iter().all(|p| p.1 .0 >= 2));
    assert!(sim.s.status(CheckId(0)).suspended);
    assert_eq!(sim.s.status(CheckId(0)).next_probe, None);
    // Resume at 100 s: first probes at 100 + warmup spread, like at start.
    sim.s.suspend(0, false, sim.now);
    let n = sim.probes.len();
    let mut world = |_: CheckId, _: Duration| Some((Duration::ZERO, Outcome::ok()));
    sim.run(110 * S - ms(1), &mut world);
    let resumed: Vec<(Duration, usize)> = sim.probes[n..]
        .iter()
        .filter(|p| p.1 .0 < 2)
        .map(|p| (p.0, p.1 .0))
        .collect();
    assert_eq!(resumed.len(), 2);
    for (t, k) in resumed {
        assert_eq!(t, 100 * S + sim.s.first_offset(k));
    }
    assert!(sim.health.is_empty(), "{:?}", sim.health);
}

#[test]
fn a_probe_in_flight_across_a_suspension_is_discarded_and_not_doubled() {
    let mut sim = Sim::new(vec![spec(0, 0, timing(10 * S, 0, S))], 1);
    // The first probe takes 30 s and fails.
    let mut slow = |_: CheckId, at: Duration| {
        Some(if at == Duration::ZERO {
            (30 * S, Outcome::fail("slow failure"))
        } else {
            (Duration::ZERO, Outcome::ok())
        })
    };
    sim.run(S, &mut slow);
    sim.s.suspend(0, true, sim.now);
    sim.run(2 * S, &mut slow);
    // Resume at 2 s: the first probe (warmup 0) is due at once but the old one is
    // still running; it starts when the stale result arrives at 30 s.
    sim.s.suspend(0, false, sim.now);
    sim.run(40 * S, &mut slow);
    assert_eq!(sim.probe_times(0), [0, 30, 40].map(|s| s * S));
    // The stale failure did not bring the server down.
    assert!(sim.health.is_empty(), "{:?}", sim.health);
    let st = sim.s.status(CheckId(0));
    assert!(st.up);
    assert_eq!(st.consecutive_failures, 0);
}

#[test]
fn suspending_an_unknown_or_already_suspended_vs_is_harmless() {
    let mut sim = Sim::new(vec![spec(0, 0, timing(10 * S, 0, S))], 1);
    sim.s.suspend(9, true, sim.now);
    sim.s.suspend(0, false, sim.now);
    sim.s.suspend(0, true, sim.now);
    sim.s.suspend(0, true, sim.now);
    assert!(sim.s.is_suspended(0));
    let mut world = |_: CheckId, _: Duration| Some((Duration::ZERO, Outcome::ok()));
    sim.run(30 * S, &mut world);
    assert!(sim.probes.is_empty());
}

#[test]
fn failed_checks_are_counted_and_each_change_reported() {
    // Two checkers of one server: the first fails from 10 s, the second from 20 s; both
    // pass again from 30 s.
    let mut sim = Sim::new(
        vec![
            spec(0, 0, timing(10 * S, 0, S)),
            spec(0, 0, timing(10 * S, 0, S)),
        ],
        1,
    );
    let mut world = move |c: CheckId, at: Duration| {
        let fails = match c.0 {
            0 => (10..30).contains(&at.as_secs()),
            _ => (20..30).contains(&at.as_secs()),
        };
        Some((
            Duration::ZERO,
            if fails {
                Outcome::fail("refused")
            } else {
                Outcome::ok()
            },
        ))
    };
    sim.run(35 * S, &mut world);
    let events: Vec<(Duration, bool, u32)> = sim
        .health
        .iter()
        .map(|(t, h)| (*t, h.up, h.failed))
        .collect();
    assert_eq!(
        events,
        [
            (10 * S, false, 1),
            (20 * S, false, 2),
            (30 * S, false, 1),
            (30 * S, true, 0)
        ]
    );
    assert_eq!(sim.s.servers().next().unwrap().failed, 0);
}
