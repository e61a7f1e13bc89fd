//! Property tests of vipd's BFD-driven take-over (`bfd_takeover`, issue 11): a BACKUP
//! that sees the BFD session to its master go Down takes over at once. The safety
//! claims, proved over random clusters, timings and BFD behaviour in the simulator's
//! BFD model (`Sim::add_bfd_session`):
//!
//! (a) with only the BFD path broken (adverts still flow), the cluster always ends with
//!     exactly one master, the highest priority, which never leaves MASTER; every
//!     dual-master moment lasts at most an advert round trip;
//! (b) however fast BFD flaps, a router makes at most one BFD take-over per hold-down,
//!     and only after the session had been Up for `min_up`;
//! (c) when the master really crashes, a backup is master one BFD detection time later.

use proptest::prelude::*;
use std::time::Duration;
use vipd_sim::{presets, EntryKind, Link, Op, RouterId, Sim};
use vipd_vrrp::engine::{InstanceConfig, PeerTakeover, TransitionReason};
use vipd_vrrp::timing;
use vipd_vrrp::Version;

#[derive(Debug, Clone)]
struct Cluster {
    interval: Duration,
    /// Distinct, 1..=254.
    priorities: Vec<u8>,
    detect: Duration,
    guard: PeerTakeover,
    seed: u64,
}

impl Cluster {
    fn n(&self) -> usize {
        self.priorities.len()
    }

    fn cfg(&self, i: RouterId) -> InstanceConfig {
        let mut c = presets::config_v4(Version::V3, self.priorities[i], i as u8 + 1, self.interval);
        c.garp.master_delay = Duration::ZERO;
        c.peer_takeover = Some(self.guard);
        c
    }

    /// 50 µs + up to 50 µs jitter: below a third of the smallest Skew_Time difference
    /// (10 ms / 256 = 39 µs per priority step is the worst case at 10 ms adverts, so
    /// intervals start at 100 ms: 390 µs).
    fn link(&self) -> Link {
        Link::delay(Duration::from_micros(50)).with_jitter(Duration::from_micros(50))
    }

    fn mdi(&self) -> Duration {
        timing::master_down_interval(Version::V3, 1, self.interval, 3)
    }

    fn best(&self, among: impl IntoIterator<Item = RouterId>) -> RouterId {
        among
            .into_iter()
            .max_by_key(|&i| self.priorities[i])
            .unwrap()
    }

    /// Routers, a BFD session between every pair (indices returned), all started and
    /// settled with every session Up for longer than `min_up`.
    fn converge(&self) -> (Sim, Vec<usize>) {
        let mut sim = Sim::new(self.seed);
        sim.set_default_link(self.link());
        for i in 0..self.n() {
            sim.add_router(self.cfg(i));
        }
        let mut sessions = Vec::new();
        for a in 0..self.n() {
            for b in a + 1..self.n() {
                sessions.push(sim.add_bfd_session(a, b, self.detect));
            }
        }
        sim.start_all();
        sim.run_for(self.mdi() + self.interval * 3 + self.detect + self.guard.min_up);
        assert_eq!(sim.masters(), vec![self.best(0..self.n())]);
        assert!(sessions.iter().all(|&s| sim.bfd_up(s)));
        (sim, sessions)
    }
}

fn arb_cluster() -> impl Strategy<Value = Cluster> {
    (2usize..=3)
        .prop_flat_map(|n| {
            (
                10u64..=100,
                prop::collection::btree_set(1u8..=254, n)
                    .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                    .prop_shuffle(),
                0u64..=50_000,
                0u64..=2_000,
                1u64..=20,
                any::<u64>(),
            )
        })
        .prop_map(
            |(cs, priorities, detect_us, min_up_ms, hold_s, seed)| Cluster {
                interval: Duration::from_millis(cs * 10),
                priorities,
                detect: Duration::from_micros(detect_us),
                guard: PeerTakeover {
                    min_up: Duration::from_millis(min_up_ms),
                    hold_down: Duration::from_secs(hold_s),
                },
                seed,
            },
        )
}

/// BFD path changes: (gap before it, session pick, path ok). Gaps from microseconds
/// (flapping faster than any detection time) to seconds.
fn arb_flaps(max: usize) -> impl Strategy<Value = Vec<(Duration, usize, bool)>> {
    prop::collection::vec(
        (
            prop_oneof![0u64..=1_000, 0u64..=100_000, 0u64..=3_000_000],
            any::<usize>(),
            any::<bool>(),
        )
            .prop_map(|(gap_us, s, ok)| (Duration::from_micros(gap_us), s, ok)),
        1..=max,
    )
}

/// Schedule the path changes from now; returns when the last one happens.
fn schedule_flaps(
    sim: &mut Sim,
    sessions: &[usize],
    flaps: &[(Duration, usize, bool)],
) -> Duration {
    let mut at = sim.now();
    for &(gap, s, ok) in flaps {
        at += gap;
        sim.schedule(at, Op::BfdPath(sessions[s % sessions.len()], ok));
    }
    at
}

/// `router`'s BFD take-overs: (time, the master it replaced).
fn takeovers(sim: &Sim, router: RouterId) -> Vec<(Duration, RouterId)> {
    sim.timeline()
        .transitions()
        .filter(|t| t.1 == router)
        .filter_map(|t| match t.4 {
            TransitionReason::PeerDown { master } => Some((
                t.0,
                (0..sim.len()).find(|&r| sim.config(r).primary == master)?,
            )),
            _ => None,
        })
        .collect()
}

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// (a) Only the BFD path breaks (and maybe heals, repeatedly); adverts flow.
    #[test]
    fn bfd_path_broken_vrrp_intact_one_master(c in arb_cluster(), flaps in arb_flaps(20)) {
        let (mut sim, sessions) = c.converge();
        let best = c.best(0..c.n());
        let from = sim.now();
        let last = schedule_flaps(&mut sim, &sessions, &flaps);
        sim.run_until(last + c.guard.hold_down + c.mdi() * 2);
        prop_assert_eq!(sim.masters(), vec![best]);
        // The best router never left MASTER.
        let left: Vec<_> = sim.timeline().transitions()
            .filter(|t| t.1 == best && t.0 >= from).collect();
        prop_assert!(left.is_empty(), "best router {} transitions: {:?}", best, left);
        // A take-over by a backup lasts until the master's answer: one round trip.
        let d = c.link().max_delay();
        let bound = d * 2 * c.n() as u32 + Duration::from_micros(1);
        for s in sim.timeline().dual_master_intervals(sim.now()) {
            prop_assert!(s.len() <= bound, "dual master {:?} longer than {:?}", s, bound);
        }
    }

    /// (b) BFD flapping at any rate: at most one take-over per hold-down per router,
    /// each after the session had been Up for min_up without a Down.
    #[test]
    fn bfd_flapping_one_takeover_per_hold_down(c in arb_cluster(), flaps in arb_flaps(200)) {
        let (mut sim, sessions) = c.converge();
        let last = schedule_flaps(&mut sim, &sessions, &flaps);
        sim.run_until(last + c.guard.hold_down + c.mdi() * 2);
        for r in 0..c.n() {
            let t = takeovers(&sim, r);
            for w in t.windows(2) {
                prop_assert!(w[1].0 - w[0].0 >= c.guard.hold_down,
                    "router {} took over at {:?} and {:?} (hold-down {:?})", r, w[0], w[1], c.guard.hold_down);
            }
            for (at, master) in t {
                // The last event of the session to that master before the take-over's Down.
                let up_at = sim.timeline().entries.iter()
                    .filter(|e| e.router == r && e.at < at)
                    .rev()
                    .find_map(|e| match e.kind {
                        EntryKind::Bfd { peer, up } if peer == master => Some((e.at, up)),
                        _ => None,
                    });
                prop_assert!(matches!(up_at, Some((u, true)) if at - u >= c.guard.min_up),
                    "router {} took over at {:?} after {:?}", r, at, up_at);
            }
        }
        prop_assert_eq!(sim.masters(), vec![c.best(0..c.n())]);
    }

    /// (c) The master crashes: a backup is master one detection time later.
    #[test]
    fn master_crash_takeover_within_detection_time(c in arb_cluster(), offset_pm in 0u32..1000) {
        let (mut sim, _) = c.converge();
        let best = c.best(0..c.n());
        sim.run_for(c.interval * offset_pm / 1000);
        let crash = sim.now();
        sim.crash(best);
        sim.run_for(c.mdi() * 2);
        let (at, _) = sim.timeline().first_master_after(crash + Duration::from_nanos(1)).unwrap();
        prop_assert!(at <= crash + c.detect, "first master at {:?}, crash {:?}, detect {:?}", at, crash, c.detect);
        let rest: Vec<RouterId> = (0..c.n()).filter(|&r| r != best).collect();
        prop_assert_eq!(sim.masters(), vec![c.best(rest)]);
    }
}

/// Without `bfd_takeover` the same crash costs Master_Down_Interval: the BFD model and
/// the guard really are what makes (c) fast.
#[test]
fn without_takeover_crash_waits_master_down_interval() {
    let c = Cluster {
        interval: Duration::from_secs(1),
        priorities: vec![200, 100],
        detect: Duration::from_millis(30),
        guard: PeerTakeover::default(),
        seed: 1,
    };
    let mut sim = Sim::new(c.seed);
    sim.set_default_link(c.link());
    let mut cfgs: Vec<InstanceConfig> = (0..2).map(|i| c.cfg(i)).collect();
    cfgs[1].peer_takeover = None;
    for cfg in cfgs {
        sim.add_router(cfg);
    }
    let s = sim.add_bfd_session(0, 1, c.detect);
    sim.start_all();
    sim.run_for(Duration::from_secs(10));
    assert!(sim.bfd_up(s));
    let crash = sim.now();
    sim.crash(0);
    sim.run_for(Duration::from_secs(5));
    let at = sim.timeline().became_master_after(1, crash).unwrap();
    // Master_Down_Interval (3.6 s) from the last advert, sent at most 1 s before the crash.
    let mdi = timing::master_down_interval(Version::V3, 100, c.interval, 3);
    assert!(
        at - crash >= mdi - c.interval,
        "took over after {:?}",
        at - crash
    );
    assert!(!sim.bfd_up(s));
}

/// The case (a) is about, spelled out: the BFD path breaks while adverts flow. The
/// backup takes over once, the live master answers at once, the backup yields; the
/// session stays Down, so nothing more happens.
#[test]
fn broken_bfd_path_one_takeover_then_master_wins() {
    let c = Cluster {
        interval: Duration::from_secs(1),
        priorities: vec![200, 100],
        detect: Duration::from_millis(30),
        guard: PeerTakeover::default(),
        seed: 2,
    };
    let (mut sim, sessions) = c.converge();
    let broken = sim.now();
    sim.set_bfd_path(sessions[0], false);
    sim.run_for(Duration::from_secs(30));
    let t = takeovers(&sim, 1);
    assert_eq!(t, vec![(broken + c.detect, 0)]);
    assert_eq!(sim.masters(), vec![0]);
    let dual = sim.timeline().dual_master_intervals(sim.now());
    assert_eq!(dual.len(), 1, "{dual:?}");
    assert!(dual[0].len() <= c.link().max_delay() * 2);
    assert_eq!(sim.router(1).stats().peer_takeovers, 1);
}
