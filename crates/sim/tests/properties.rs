//! Property tests of whole clusters in the simulator: election, hand-over, partitions,
//! loss and determinism, for VRRPv2 (1 s adverts) and VRRPv3 (10 ms .. 1 s adverts,
//! IPv4 and IPv6).
//!
//! Wire delays are kept below a third of the smallest Skew_Time difference between
//! distinct priorities ("small delay"), which is what makes the RFC's election free
//! of races; see `Cluster::link`.

use proptest::prelude::*;
use std::time::Duration;
use vipd_sim::{presets, Link, Op, RouterId, Sim, Timeline};
use vipd_vrrp::engine::{InstanceConfig, State};
use vipd_vrrp::timing;
use vipd_vrrp::Version;

#[derive(Debug, Clone)]
struct Cluster {
    version: Version,
    v6: bool,
    interval: Duration,
    /// Per router.
    priorities: Vec<u8>,
    /// Last byte / group of the primary address, per router (distinct).
    hosts: Vec<u8>,
    /// Permille of the delay budget used for the fixed delay, then for the jitter.
    delay_pm: u32,
    jitter_pm: u32,
    seed: u64,
}

impl Cluster {
    fn n(&self) -> usize {
        self.priorities.len()
    }

    fn cfg(&self, i: RouterId) -> InstanceConfig {
        let mut c = if self.v6 {
            presets::config_v6(self.priorities[i], self.hosts[i], self.interval)
        } else {
            presets::config_v4(
                self.version,
                self.priorities[i],
                self.hosts[i],
                self.interval,
            )
        };
        // No GARP second burst: it is irrelevant here and only adds events.
        c.garp.master_delay = Duration::ZERO;
        c
    }

    fn skew(&self, p: u8) -> Duration {
        timing::skew(self.version, p, self.interval)
    }

    fn mdi(&self, p: u8) -> Duration {
        timing::master_down_interval(self.version, p, self.interval, 3)
    }

    /// Smallest Skew_Time difference between two distinct priorities of the cluster
    /// (the interval if all priorities are equal).
    fn min_skew_diff(&self) -> Duration {
        let mut skews: Vec<Duration> = self.priorities.iter().map(|p| self.skew(*p)).collect();
        skews.sort();
        skews.dedup();
        skews
            .windows(2)
            .map(|w| w[1] - w[0])
            .min()
            .unwrap_or(self.interval)
    }

    /// delay + jitter < min_skew_diff / 3.
    fn link(&self) -> Link {
        let budget = self.min_skew_diff() / 3;
        let delay = budget * self.delay_pm / 1000;
        let jitter = (budget - delay) * self.jitter_pm / 1000;
        Link::delay(delay).with_jitter(jitter)
    }

    fn d_max(&self) -> Duration {
        self.link().max_delay()
    }

    fn sim(&self) -> Sim {
        let mut sim = Sim::new(self.seed);
        sim.set_default_link(self.link());
        for i in 0..self.n() {
            sim.add_router(self.cfg(i));
        }
        sim
    }

    /// The router that must win among `among`.
    fn best(&self, among: impl IntoIterator<Item = RouterId>) -> RouterId {
        among
            .into_iter()
            .max_by_key(|&i| (self.priorities[i], self.hosts[i]))
            .unwrap()
    }

    /// Start every router at once and run until the cluster has settled; returns the
    /// time the best router became master.
    fn converge(&self, sim: &mut Sim) -> Duration {
        sim.start_all();
        let best = self.best(0..self.n());
        sim.run_for(self.mdi(1) + self.interval * 3);
        assert_eq!(sim.masters(), vec![best]);
        sim.timeline()
            .became_master_after(best, Duration::ZERO)
            .unwrap()
    }
}

fn arb_version_interval() -> impl Strategy<Value = (Version, bool, Duration)> {
    prop_oneof![
        Just((Version::V2, false, Duration::from_secs(1))),
        (1u64..=100, any::<bool>()).prop_map(|(cs, v6)| (
            Version::V3,
            v6,
            Duration::from_millis(cs * 10)
        )),
    ]
}

/// 2..=max routers with distinct priorities (1..=255, so sometimes an owner).
fn arb_cluster(max: usize) -> impl Strategy<Value = Cluster> {
    (2..=max)
        .prop_flat_map(|n| {
            (
                arb_version_interval(),
                prop::collection::btree_set(1u8..=255, n)
                    .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                    .prop_shuffle(),
                Just((1..=n as u8).collect::<Vec<_>>()).prop_shuffle(),
                0u32..=1000,
                0u32..=1000,
                any::<u64>(),
            )
        })
        .prop_map(
            |((version, v6, interval), priorities, hosts, delay_pm, jitter_pm, seed)| Cluster {
                version,
                v6,
                interval,
                priorities,
                hosts,
                delay_pm,
                jitter_pm,
                seed,
            },
        )
}

/// Mastership and address holding from `from` to the end are exactly `[who]`.
fn assert_sole_master_from(tl: &Timeline, from: Duration, until: Duration, who: RouterId) {
    for s in tl.mastership(until).iter().filter(|s| s.end > from) {
        assert_eq!(s.routers, vec![who], "mastership from {from:?}: {s:?}");
    }
    for s in tl.address_holding(until).iter().filter(|s| s.end > from) {
        assert_eq!(s.routers, vec![who], "VIP holders from {from:?}: {s:?}");
    }
}

/// `cases`, unless `PROPTEST_CASES` says otherwise (for long soak runs).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Started together, the best router takes over at exactly its Master_Down_Interval
    /// and nobody else is ever master.
    #[test]
    fn simultaneous_start_elects_the_best_without_races(c in arb_cluster(5)) {
        let mut sim = c.sim();
        sim.start_all();
        let end = c.mdi(1) + c.interval * 20;
        sim.run_until(end);
        let best = c.best(0..c.n());
        let takeover = if c.priorities[best] == 255 { Duration::ZERO } else { c.mdi(c.priorities[best]) };
        let tl = sim.timeline();
        let to_master: Vec<_> = tl.transitions().filter(|t| t.3 == State::Master).map(|t| (t.0, t.1)).collect();
        prop_assert_eq!(to_master, vec![(takeover, best)]);
        assert_sole_master_from(tl, takeover, end, best);
        prop_assert!(tl.dual_master_intervals(end).is_empty());
        // Every backup follows the master.
        for i in (0..c.n()).filter(|i| *i != best) {
            prop_assert_eq!(sim.router(i).state(), State::Backup);
            prop_assert_eq!(sim.router(i).master(), Some(sim.config(best).primary));
        }
    }

    /// Staggered starts (within two intervals): the best router still takes over at
    /// its start + Master_Down_Interval, everyone has yielded one wire delay later,
    /// and it stays so.
    #[test]
    fn staggered_start_converges_to_the_best(
        c in arb_cluster(5),
        starts in prop::collection::vec(0u32..=1000, 5),
    ) {
        let mut sim = c.sim();
        let start: Vec<Duration> = (0..c.n()).map(|i| c.interval * 2 * starts[i] / 1000).collect();
        for (i, s) in start.iter().enumerate() {
            sim.schedule(*s, Op::Start(i));
        }
        let best = c.best(0..c.n());
        let p = c.priorities[best];
        let takeover = start[best] + if p == 255 { Duration::ZERO } else { c.mdi(p) };
        let settled = takeover.max(*start.iter().max().unwrap()) + c.d_max();
        let end = settled + c.interval * 20;
        sim.run_until(end);
        let tl = sim.timeline();
        prop_assert_eq!(tl.became_master_after(best, Duration::ZERO), Some(takeover));
        assert_sole_master_from(tl, settled, end, best);
        // (Staggered starts can bring a lower router's time-out within a wire delay of
        // the best one's take-over, so it may briefly be master too; not after that.)
        prop_assert_eq!(tl.master_transitions_since(settled), 0);
        // Someone is master from the first take-over on.
        let first = tl.first_master_after(Duration::ZERO).unwrap().0;
        prop_assert!(tl.no_master_intervals(end).iter().all(|g| g.end <= first));
    }

    /// Equal priorities, started together: the highest primary address wins within one
    /// wire delay of the common time-out.
    #[test]
    fn ties_go_to_the_highest_address(
        c in arb_cluster(5),
        levels in prop::collection::vec(prop::sample::select(vec![50u8, 100, 200]), 5),
    ) {
        let mut c = c;
        for (i, p) in c.priorities.iter_mut().enumerate() {
            *p = levels[i];
        }
        let mut sim = c.sim();
        sim.start_all();
        let end = c.mdi(1) + c.interval * 20;
        sim.run_until(end);
        let best = c.best(0..c.n());
        let takeover = c.mdi(c.priorities[best]);
        let tl = sim.timeline();
        prop_assert_eq!(tl.became_master_after(best, Duration::ZERO), Some(takeover));
        assert_sole_master_from(tl, takeover + c.d_max(), end, best);
        for d in tl.dual_master_intervals(end) {
            prop_assert!(d.start == takeover && d.len() <= c.d_max(), "{:?}", d);
        }
    }

    /// A healed partition has two (or more) masters for at most one advert interval
    /// plus the wire delay; then the best router is the only master.
    #[test]
    fn healed_partition_resolves_within_one_interval(
        c in arb_cluster(5),
        sides in prop::collection::vec(any::<bool>(), 5),
        heal_pm in 0u32..=1000,
    ) {
        let mut sim = c.sim();
        c.converge(&mut sim);
        let n = c.n();
        let mut a: Vec<RouterId> = (0..n).filter(|i| sides[*i]).collect();
        let mut b: Vec<RouterId> = (0..n).filter(|i| !sides[*i]).collect();
        if a.is_empty() { a.push(b.pop().unwrap()); }
        if b.is_empty() { b.push(a.pop().unwrap()); }
        sim.partition(&[&a, &b]);
        sim.run_for(c.mdi(1) + c.interval * 3 + c.interval * heal_pm / 1000);
        // Each side has elected its own best.
        let mut expect = vec![c.best(a.iter().copied()), c.best(b.iter().copied())];
        expect.sort();
        prop_assert_eq!(sim.masters(), expect);
        let heal = sim.now();
        sim.heal();
        let end = heal + c.interval * 10;
        sim.run_until(end);
        let best = c.best(0..n);
        let deadline = heal + c.interval + c.d_max();
        let tl = sim.timeline();
        let duals: Vec<_> = tl.dual_master_intervals(end).into_iter().filter(|d| d.end > heal).collect();
        prop_assert_eq!(duals.len(), 1);
        prop_assert!(duals[0].end <= deadline, "{:?} heal {:?} deadline {:?}", duals, heal, deadline);
        assert_sole_master_from(tl, deadline, end, best);
    }

    /// Graceful shutdown of the master: the best remaining router takes over after its
    /// Skew_Time plus the wire delay, and it is the only one to do so.
    #[test]
    fn graceful_shutdown_hands_over_within_skew(c in arb_cluster(5), at_pm in 0u32..=1000) {
        let mut sim = c.sim();
        c.converge(&mut sim);
        sim.run_for(c.interval * at_pm / 1000);
        let old = sim.masters()[0];
        let stop = sim.now();
        sim.stop(old);
        let end = stop + c.interval * 10;
        sim.run_until(end);
        let next = c.best((0..c.n()).filter(|i| *i != old));
        let skew = c.skew(c.priorities[next]);
        let tl = sim.timeline();
        let gaps: Vec<_> = tl.no_master_intervals(end).into_iter().filter(|g| g.end > stop).collect();
        prop_assert_eq!(gaps.len(), 1);
        let gap = &gaps[0];
        prop_assert_eq!(gap.start, stop);
        let link = c.link();
        prop_assert!(gap.len() >= skew + link.delay && gap.len() <= skew + c.d_max(),
            "gap {:?} skew {:?} link {:?}", gap, skew, link);
        prop_assert_eq!(tl.first_master_after(stop), Some((gap.end, next)));
        prop_assert_eq!(tl.master_transitions_since(stop), 1);
        for seg in tl.mastership(end).iter().filter(|s| s.end > gap.end) {
            prop_assert_eq!(&seg.routers, &vec![next], "mastership after the handover");
        }
        // Make-before-break: the old master keeps the VIP one advert interval (+ margin)
        // after its priority-0 advert, by when the new master holds it too; then only
        // the new master holds it.
        let release = stop + c.interval + (c.interval / 50).max(Duration::from_millis(2));
        prop_assert!(tl.holders_at(stop).contains(&old));
        for seg in tl.address_holding(end).iter().filter(|s| s.end > stop) {
            // Unheld only if the wire is slower than the hold's margin (the simulator
            // allows delays of many ms; real LANs are µs): never before the release,
            // never past the handover bound.
            if seg.routers.is_empty() {
                prop_assert!(seg.start >= release && seg.end <= stop + skew + c.d_max(),
                    "VIP unheld during {:?} (release {:?})", seg, release);
            }
            if seg.start >= release && !seg.routers.is_empty() {
                prop_assert_eq!(&seg.routers, &vec![next], "VIP holders after release");
            }
        }
        prop_assert!(!tl.holders_at(release).contains(&old));
    }

    /// Crash of the master: the best remaining router takes over Master_Down_Interval
    /// after the last advert it heard, and nobody else does.
    #[test]
    fn crash_hands_over_within_master_down_interval(c in arb_cluster(5), at_pm in 0u32..=3000) {
        let mut sim = c.sim();
        c.converge(&mut sim);
        sim.run_for(c.interval * at_pm / 1000);
        let old = sim.masters()[0];
        let crash = sim.now();
        sim.crash(old);
        let last = sim.timeline().last_send_at_or_before(old, crash).unwrap();
        let end = crash + c.mdi(1) + c.interval * 5;
        sim.run_until(end);
        let next = c.best((0..c.n()).filter(|i| *i != old));
        let mdi = c.mdi(c.priorities[next]);
        let tl = sim.timeline();
        let (t, who) = tl.first_master_after(crash).unwrap();
        prop_assert_eq!(who, next);
        prop_assert!(t >= last + c.link().delay + mdi && t <= last + mdi + c.d_max(),
            "took over at {:?}, last advert {:?}, mdi {:?}", t, last, mdi);
        prop_assert_eq!(tl.master_transitions_since(crash), 1);
        assert_sole_master_from(tl, t, end, next);
    }

    /// nopreempt: routers joining later, whatever their priority (short of 255), never
    /// take over from the current master.
    #[test]
    fn nopreempt_keeps_the_current_master(
        c in arb_cluster(5),
        early in prop::collection::vec(any::<bool>(), 5),
        late_starts in prop::collection::vec(0u32..=5000, 5),
    ) {
        let mut c = c;
        for p in c.priorities.iter_mut() {
            *p = (*p).min(254);
        }
        c.priorities.sort();
        c.priorities.dedup();
        prop_assume!(c.priorities.len() >= 2);
        c.hosts.truncate(c.priorities.len());
        let n = c.n();
        let mut sim = Sim::new(c.seed);
        sim.set_default_link(c.link());
        for i in 0..n {
            let mut cfg = c.cfg(i);
            cfg.preempt = false;
            sim.add_router(cfg);
        }
        // The overall best always joins late; at least one router starts early.
        let best = c.best(0..n);
        let mut first: Vec<RouterId> = (0..n).filter(|i| early[*i] && *i != best).collect();
        if first.is_empty() {
            first.push((0..n).find(|i| *i != best).unwrap());
        }
        for &i in &first {
            sim.start(i);
        }
        sim.run_for(c.mdi(1) + c.interval * 3);
        let master = c.best(first.iter().copied());
        prop_assert_eq!(sim.masters(), vec![master]);
        let joined = sim.now();
        let mut last_start = joined;
        for i in (0..n).filter(|i| !first.contains(i)) {
            let at = joined + c.interval * late_starts[i] / 1000;
            last_start = last_start.max(at);
            sim.schedule(at, Op::Start(i));
        }
        let end = last_start + c.mdi(1) + c.interval * 10;
        sim.run_until(end);
        let tl = sim.timeline();
        prop_assert_eq!(tl.master_transitions_since(joined), 0);
        assert_sole_master_from(tl, joined, end, master);
        prop_assert_eq!(sim.running().len(), n);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Random loss up to 20%, routers started together. What holds whatever the loss:
    /// the best router takes over at exactly its Master_Down_Interval (lower-priority
    /// adverts never reset its timer) and, being the highest-ranked, never yields;
    /// once there is a master there always is one. What holds with overwhelming
    /// probability: the best router is the only master > 90% of the time.
    #[test]
    fn random_loss_keeps_the_best_router_master(c in arb_cluster(4), loss_pm in 1u32..=200) {
        let mut sim = c.sim();
        sim.set_default_link(c.link().with_loss(f64::from(loss_pm) / 1000.0));
        sim.start_all();
        let end = c.mdi(1) + c.interval * 200;
        sim.run_until(end);
        let best = c.best(0..c.n());
        let p = c.priorities[best];
        let takeover = if p == 255 { Duration::ZERO } else { c.mdi(p) };
        let tl = sim.timeline();
        prop_assert_eq!(tl.became_master_after(best, Duration::ZERO), Some(takeover));
        prop_assert_eq!(tl.became_master_after(best, takeover + Duration::from_nanos(1)), None);
        prop_assert!(tl.mastership(end).iter().filter(|s| s.end > takeover).all(|s| s.routers.contains(&best)));
        let first = tl.first_master_after(Duration::ZERO).unwrap().0;
        prop_assert!(tl.no_master_intervals(end).iter().all(|g| g.end <= first));
        let alone: Duration = tl.mastership(end).iter().filter(|s| s.routers == vec![best]).map(|s| s.len()).sum();
        prop_assert!(alone.as_secs_f64() >= 0.9 * (end - takeover).as_secs_f64(), "alone {:?}", alone);
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// Same seed and inputs, same timeline, with jitter, loss, partitions and crashes.
    #[test]
    fn same_seed_same_timeline(c in arb_cluster(4), loss_pm in 0u32..=200) {
        let run = || {
            let mut sim = c.sim();
            let mut link = c.link();
            link.jitter = c.interval / 4; // plenty of reordering between senders
            sim.set_default_link(link.with_loss(f64::from(loss_pm) / 1000.0));
            sim.start_all();
            sim.run_for(c.mdi(1) + c.interval * 5);
            sim.partition(&[&[0], &(1..c.n()).collect::<Vec<_>>()]);
            sim.run_for(c.interval * 7);
            sim.heal();
            sim.crash(c.n() - 1);
            sim.run_for(c.interval * 9);
            sim.restart(c.n() - 1);
            sim.stop(0);
            sim.run_for(c.interval * 11);
            sim.timeline().clone()
        };
        let a = run();
        prop_assert!(a.entries.len() > 10);
        prop_assert_eq!(&a, &run());
    }
}

/// Moderate loss (5%), 3 routers, a fixed set of seeds: once there is a master there
/// always is one (a master only yields to an advert from a higher-ranked one, which
/// is or was master itself), a backup that took over after three lost adverts is
/// put back within one interval plus the wire delay, and the best router is the
/// only master nearly all the time.
#[test]
fn moderate_loss_never_leaves_two_masters_for_long() {
    let mut episodes = 0;
    for (version, interval, runtime) in [
        (
            Version::V2,
            Duration::from_secs(1),
            Duration::from_secs(600),
        ),
        (
            Version::V3,
            Duration::from_millis(100),
            Duration::from_secs(120),
        ),
        (
            Version::V3,
            Duration::from_millis(10),
            Duration::from_secs(12),
        ),
    ] {
        for seed in 0..12u64 {
            let c = Cluster {
                version,
                v6: false,
                interval,
                priorities: vec![100, 200, 150],
                hosts: vec![1, 2, 3],
                delay_pm: 500,
                jitter_pm: 500,
                seed,
            };
            let mut sim = c.sim();
            let link = c.link().with_loss(0.05);
            sim.set_default_link(link);
            sim.start_all();
            sim.run_until(runtime);
            let tl = sim.timeline();
            let first = tl.first_master_after(Duration::ZERO).unwrap().0;
            let gaps = tl.no_master_intervals(runtime);
            assert!(
                gaps.iter().all(|g| g.end <= first),
                "{version:?} seed {seed}: {gaps:?}"
            );
            let duals = tl.dual_master_intervals(runtime);
            for d in &duals {
                assert!(
                    d.len() <= interval + c.d_max(),
                    "{version:?} {interval:?} seed {seed}: {d:?}"
                );
            }
            episodes += duals.len();
            let best_alone: Duration = tl
                .mastership(runtime)
                .iter()
                .filter(|s| s.routers == vec![1])
                .map(|s| s.len())
                .sum();
            assert!(
                best_alone.as_secs_f64() >= 0.98 * (runtime - first).as_secs_f64(),
                "{version:?} seed {seed}: best alone {best_alone:?}"
            );
            let lost: u64 = (0..3).map(|i| sim.counters(i).lost).sum();
            assert!(lost > 0);
        }
    }
    // The loss does bite: some backups did time out.
    println!("{episodes} dual-master episodes");
    assert!(episodes > 0, "no dual-master episode at all");
}
