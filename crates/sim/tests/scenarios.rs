//! Hand-written cluster scenarios with exact expectations.

use std::time::Duration;
use vipd_sim::{presets, EntryKind, Link, Op, Sim, Status};
use vipd_vrrp::engine::{Peer, State, TransitionReason};
use vipd_vrrp::timing;
use vipd_vrrp::Version;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}
const SEC: Duration = Duration::from_secs(1);

/// Three routers, priorities 100/150/200, all started at once.
fn three(version: Version, interval: Duration, delay: Duration) -> Sim {
    let mut sim = Sim::new(1);
    sim.set_default_link(Link::delay(delay));
    for (prio, host) in [(100, 1), (150, 2), (200, 3)] {
        sim.add_router(presets::config_v4(version, prio, host, interval));
    }
    sim.start_all();
    sim
}

#[test]
fn v2_three_routers_highest_priority_wins_after_its_master_down_interval() {
    let mut sim = three(Version::V2, SEC, us(100));
    sim.run_until(Duration::from_secs(30));
    let mdi = timing::master_down_interval(Version::V2, 200, SEC, 3);
    assert_eq!(mdi, us(3_218_750));
    let tl = sim.timeline();
    // Exactly one take-over in the whole run: router 2, at its Master_Down_Interval.
    let to_master: Vec<_> = tl
        .transitions()
        .filter(|t| t.3 == State::Master)
        .map(|t| (t.0, t.1))
        .collect();
    assert_eq!(to_master, vec![(mdi, 2)]);
    assert_eq!(tl.masters_at(mdi), vec![2]);
    assert_eq!(tl.holders_at(Duration::from_secs(29)), vec![2]);
    assert!(tl.dual_master_intervals(sim.now()).is_empty());
    // No master only during start-up.
    let gaps = tl.no_master_intervals(sim.now());
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].start, gaps[0].end), (Duration::ZERO, mdi));
    // The master adverts once a second; backups never send.
    let c = sim.counters(2);
    assert_eq!(c.sent, 1 + (30_000_000 - 3_218_750) / 1_000_000);
    assert_eq!(sim.counters(0).sent, 0);
    assert_eq!(sim.counters(1).sent, 0);
    assert_eq!(sim.counters(0).delivered, c.sent);
    assert_eq!(sim.router(0).master(), Some(presets::ipv4(3)));
}

#[test]
fn v3_three_routers_hand_over_down_the_priority_list() {
    let interval = ms(100);
    let delay = us(300);
    let mut sim = three(Version::V3, interval, delay);
    sim.run_until(SEC);
    assert_eq!(sim.masters(), vec![2]);

    // Graceful stop of 200: 150 takes over after its skew (plus the wire delay).
    let t = sim.now();
    sim.stop(2);
    sim.run_for(SEC);
    let skew150 = timing::skew(Version::V3, 150, interval);
    assert_eq!(
        sim.timeline().became_master_after(1, t),
        Some(t + delay + skew150)
    );
    assert_eq!(sim.masters(), vec![1]);

    // Crash of 150: 100 takes over Master_Down_Interval after the last advert it heard.
    let t = sim.now();
    sim.crash(1);
    let last = sim.timeline().last_send_at_or_before(1, t).unwrap();
    sim.run_for(SEC);
    let mdi100 = timing::master_down_interval(Version::V3, 100, interval, 3);
    assert_eq!(
        sim.timeline().became_master_after(0, t),
        Some(last + delay + mdi100)
    );
    assert_eq!(sim.status(1), Status::Crashed);
    assert_eq!(sim.masters(), vec![0]);

    // 200 comes back and preempts.
    let t = sim.now();
    sim.restart(2);
    sim.run_for(SEC);
    let mdi200 = timing::master_down_interval(Version::V3, 200, interval, 3);
    assert_eq!(sim.timeline().became_master_after(2, t), Some(t + mdi200));
    assert_eq!(sim.masters(), vec![2]);
    assert_eq!(sim.timeline().holders_at(sim.now()), vec![2]);
    // 100 yielded one wire delay later: dual mastership lasted exactly that.
    let duals = sim.timeline().dual_master_intervals(sim.now());
    assert_eq!(duals.len(), 1);
    assert_eq!(duals[0].len(), delay);
    assert_eq!(duals[0].routers, vec![0, 2]);
}

#[test]
fn address_owner_takes_over_at_once() {
    let interval = ms(100);
    let delay = us(500);
    let mut sim = Sim::new(2);
    sim.set_default_link(Link::delay(delay));
    let a = sim.add_router(presets::config_v4(Version::V3, 100, 1, interval));
    let b = sim.add_router(presets::config_v4(Version::V3, 200, 2, interval));
    let owner = sim.add_router(presets::config_v4(Version::V3, 255, 3, interval));
    sim.start(a);
    sim.start(b);
    sim.run_until(SEC);
    assert_eq!(sim.masters(), vec![b]);
    sim.start(owner);
    assert_eq!(sim.masters(), vec![b, owner]);
    sim.run_for(SEC);
    let tl = sim.timeline();
    let t = tl
        .transitions()
        .find(|t| t.1 == owner && t.3 == State::Master)
        .unwrap();
    assert_eq!((t.0, t.4), (SEC, TransitionReason::AddressOwner));
    assert_eq!(sim.masters(), vec![owner]);
    let duals = tl.dual_master_intervals(sim.now());
    assert_eq!(duals.len(), 1);
    assert_eq!((duals[0].start, duals[0].end), (SEC, SEC + delay));
    // The owner is never preempted, not even by a restart of the others.
    sim.restart(b);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.masters(), vec![owner]);
}

#[test]
fn equal_priorities_elect_the_highest_address() {
    for version in [Version::V2, Version::V3] {
        let interval = if version == Version::V2 { SEC } else { ms(50) };
        let delay = us(200);
        let mut sim = Sim::new(3);
        sim.set_default_link(Link::delay(delay));
        for host in [7, 3, 9, 1] {
            sim.add_router(presets::config_v4(version, 100, host, interval));
        }
        sim.start_all();
        sim.run_for(interval * 20);
        assert_eq!(sim.masters(), vec![2], "{version:?}");
        assert_eq!(sim.expected_master(0..4), Some(2));
        // All four time out together and claim mastership; the adverts they exchange
        // settle it within one wire delay.
        let mdi = timing::master_down_interval(version, 100, interval, 3);
        let duals = sim.timeline().dual_master_intervals(sim.now());
        assert_eq!(duals.len(), 1, "{version:?}");
        assert_eq!((duals[0].start, duals[0].end), (mdi, mdi + delay));
        assert_eq!(duals[0].routers, vec![0, 1, 2, 3]);
        assert!(sim.timeline().masters_at(mdi + delay) == vec![2]);
    }
}

#[test]
fn ipv6_cluster_converges_and_hands_over() {
    let interval = ms(20);
    let mut sim = Sim::new(4);
    sim.set_default_link(Link::delay(us(50)));
    for (prio, host) in [(100, 1), (120, 2), (110, 3)] {
        sim.add_router(presets::config_v6(prio, host, interval));
    }
    sim.start_all();
    sim.run_for(ms(500));
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.router(0).master(), Some(presets::ipv6_ll(2)));
    assert_eq!(sim.router(0).stats().drops.total(), 0);
    sim.stop(1);
    sim.run_for(ms(100));
    assert_eq!(sim.masters(), vec![2]);
}

#[test]
fn fault_on_the_master_releases_and_clearing_it_preempts_back() {
    let interval = ms(100);
    let delay = us(100);
    let mut sim = three(Version::V3, interval, delay);
    sim.run_until(SEC);
    let t = sim.now();
    sim.set_fault(2, true);
    assert_eq!(sim.router(2).state(), State::Fault);
    sim.run_for(SEC);
    let skew150 = timing::skew(Version::V3, 150, interval);
    assert_eq!(
        sim.timeline().became_master_after(1, t),
        Some(t + delay + skew150)
    );
    let t = sim.now();
    sim.set_fault(2, false);
    sim.run_for(SEC);
    let mdi200 = timing::master_down_interval(Version::V3, 200, interval, 3);
    assert_eq!(sim.timeline().became_master_after(2, t), Some(t + mdi200));
    assert_eq!(sim.masters(), vec![2]);
}

#[test]
fn unicast_peers() {
    let interval = ms(100);
    let mut sim = Sim::new(5);
    sim.set_default_link(Link::delay(us(100)));
    let hosts = [1u8, 2, 3];
    for (i, prio) in [100u8, 200, 150].into_iter().enumerate() {
        let mut c = presets::config_v4(Version::V3, prio, hosts[i], interval);
        c.peers = hosts
            .iter()
            .filter(|h| **h != hosts[i])
            .map(|h| Peer::new(presets::ipv4(*h)))
            .collect();
        sim.add_router(c);
    }
    sim.start_all();
    sim.run_for(SEC);
    assert_eq!(sim.masters(), vec![1]);
    // One send action per peer per advert.
    let sends = sim.counters(1).sent;
    assert_eq!(sim.counters(0).delivered + sim.counters(2).delivered, sends);
    assert_eq!(sim.counters(0).delivered, sim.counters(2).delivered);
}

#[test]
fn partition_gives_each_side_a_master_and_healing_resolves_it() {
    let interval = ms(100);
    let delay = us(100);
    let mut sim = three(Version::V3, interval, delay);
    sim.run_until(SEC);
    sim.partition(&[&[0, 1], &[2]]);
    sim.run_for(SEC);
    assert_eq!(sim.masters(), vec![1, 2]);
    let heal = sim.now();
    sim.heal();
    sim.run_for(SEC);
    assert_eq!(sim.masters(), vec![2]);
    let duals = sim.timeline().dual_master_intervals(sim.now());
    assert_eq!(duals.len(), 1);
    assert!(duals[0].end <= heal + interval + delay, "{duals:?}");
}

#[test]
fn scheduled_operations_and_loss_accounting() {
    let interval = ms(100);
    let mut sim = Sim::new(6);
    sim.set_default_link(Link::delay(us(100)));
    let a = sim.add_router(presets::config_v4(Version::V3, 100, 1, interval));
    let b = sim.add_router(presets::config_v4(Version::V3, 200, 2, interval));
    // b's adverts never reach a: a becomes master too.
    sim.set_link(b, a, Link::ideal().with_loss(1.0));
    sim.schedule(Duration::ZERO, Op::Start(a));
    sim.schedule(ms(10), Op::Start(b));
    sim.schedule(Duration::from_secs(2), Op::Crash(b));
    sim.run_until(Duration::from_secs(3));
    let tl = sim.timeline();
    assert!(sim.counters(a).lost > 0);
    assert_eq!(sim.counters(a).delivered, 0);
    assert_eq!(
        sim.counters(a).lost,
        tl.entries
            .iter()
            .filter(|e| e.router == b && matches!(e.kind, EntryKind::Lost { to } if to == a))
            .count() as u64
    );
    // a, not hearing b, keeps on being master, and b (hearing a's lower priority)
    // keeps on answering: both masters until the crash.
    assert_eq!(tl.masters_at(Duration::from_millis(1999)), vec![a, b]);
    assert_eq!(sim.masters(), vec![a]);
    assert_eq!(tl.holders_at(Duration::from_secs(2)), vec![a]);
}

/// RFC 5798 §6.4.2: a backup accepts an advert of *equal* priority whatever the sender's
/// address, so the address tie-break only settles simultaneous claims: an incumbent
/// with a lower address keeps the role when an equal-priority router joins.
#[test]
fn equal_priority_incumbent_keeps_mastership() {
    let interval = ms(100);
    let mut sim = Sim::new(7);
    sim.set_default_link(Link::delay(us(100)));
    let low = sim.add_router(presets::config_v4(Version::V3, 100, 1, interval));
    let high = sim.add_router(presets::config_v4(Version::V3, 100, 2, interval));
    sim.start(low);
    sim.run_for(SEC);
    sim.start(high);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.masters(), vec![low]);
    assert_eq!(sim.timeline().master_transitions_since(SEC), 0);
}
