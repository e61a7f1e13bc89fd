//! Engine unit tests in virtual time: every instant is `t0 + offset`.

use super::*;
use crate::wire::MCAST_V4;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

struct Rig {
    t0: Instant,
    inst: Instance,
}

impl Rig {
    fn new(cfg: InstanceConfig) -> Rig {
        Rig {
            t0: Instant::now(),
            inst: Instance::new(cfg),
        }
    }
    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }
    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.inst.poll_action()).collect()
    }
    fn start(&mut self) -> Vec<Action> {
        self.inst.startup(self.t0);
        self.drain()
    }
    /// Deliver an advert from `src` as if it came over multicast with TTL 255.
    fn hear(&mut self, at: Duration, src: &str, priority: u8) -> Vec<Action> {
        let adv = advert_like(self.inst.config(), priority);
        self.hear_advert(at, src, &adv, 255)
    }
    fn hear_advert(&mut self, at: Duration, src: &str, adv: &Advert, ttl: u8) -> Vec<Action> {
        let dst = self.inst.config().family().multicast_group();
        let payload = adv.encode(ip(src), dst, ChecksumVariant::PseudoHeader);
        let meta = RxMeta {
            src: ip(src),
            dst,
            ttl,
        };
        self.inst.handle_packet(self.at(at), &meta, &payload);
        self.drain()
    }
    /// Run timers up to `until`, returning each action with its time.
    fn run_until(&mut self, until: Duration) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        while let Some(t) = self.inst.poll_timeout() {
            if t > self.at(until) {
                break;
            }
            self.inst.handle_timeout(t);
            for a in self.drain() {
                out.push((t - self.t0, a));
            }
        }
        out
    }
}

fn advert_like(cfg: &InstanceConfig, priority: u8) -> Advert {
    Advert {
        version: cfg.version,
        vrid: cfg.vrid,
        priority,
        interval_cs: timing::to_centis(cfg.advert_interval),
        addresses: cfg.addresses.clone(),
        auth: cfg.auth,
    }
}

fn v3(priority: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new(
        51,
        Version::V3,
        priority,
        ip("192.0.2.11"),
        vec![ip("192.0.2.100")],
    );
    c.advert_interval = ms(10);
    c
}

fn v2(priority: u8) -> InstanceConfig {
    InstanceConfig::new(
        51,
        Version::V2,
        priority,
        ip("192.0.2.11"),
        vec![ip("192.0.2.100")],
    )
}

fn transitions(actions: &[(Duration, Action)]) -> Vec<(Duration, State)> {
    actions
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Transition { to, .. } => Some((*t, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn backup_takes_over_after_exactly_master_down_interval() {
    let mut r = Rig::new(v3(100));
    let a = r.start();
    assert!(matches!(
        a.as_slice(),
        [Action::Transition {
            from: State::Initialize,
            to: State::Backup,
            ..
        }]
    ));
    assert_eq!(
        r.inst.poll_timeout(),
        Some(r.at(Duration::from_micros(36_093)))
    );
    let acts = r.run_until(ms(100));
    assert_eq!(
        transitions(&acts)[0],
        (Duration::from_micros(36_093), State::Master)
    );
}

#[test]
fn takeover_announces_before_anything_else() {
    let mut r = Rig::new(v3(255));
    let a = r.start();
    assert_eq!(a[0], Action::AddAddresses);
    assert_eq!(a[1], Action::Announce { repeat: 5 });
    assert!(matches!(&a[2], Action::Send { dst, .. } if *dst == IpAddr::V4(MCAST_V4)));
    assert!(matches!(
        a[3],
        Action::Transition {
            to: State::Master,
            reason: TransitionReason::AddressOwner,
            ..
        }
    ));
}

#[test]
fn master_adverts_keep_a_steady_cadence() {
    let mut r = Rig::new(v3(255));
    r.start();
    let sends: Vec<Duration> = r
        .run_until(ms(55))
        .into_iter()
        .filter(|(_, a)| matches!(a, Action::Send { .. }))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(sends, vec![ms(10), ms(20), ms(30), ms(40), ms(50)]);
    assert_eq!(r.inst.stats().adverts_sent, 6);
}

#[test]
fn backup_resets_down_timer_on_higher_priority_advert() {
    let mut r = Rig::new(v3(100));
    r.start();
    r.hear(ms(20), "192.0.2.12", 200);
    assert_eq!(
        r.inst.poll_timeout(),
        Some(r.at(ms(20) + Duration::from_micros(36_093)))
    );
    assert_eq!(r.inst.master(), Some(ip("192.0.2.12")));
    assert_eq!(r.inst.stats().adverts_received, 1);
}

#[test]
fn v3_backup_learns_master_adver_interval() {
    let mut r = Rig::new(v3(100));
    r.start();
    let mut adv = advert_like(r.inst.config(), 200);
    adv.interval_cs = 100; // master advertises every second
    r.hear_advert(ms(5), "192.0.2.12", &adv, 255);
    assert_eq!(r.inst.master_adver_interval(), ms(1000));
    assert_eq!(
        r.inst.master_down_interval(),
        Duration::from_micros(3_609_375)
    );
}

#[test]
fn priority_zero_hands_over_after_skew_time() {
    let mut r = Rig::new(v3(100));
    r.start();
    r.hear(ms(5), "192.0.2.12", 200);
    r.hear(ms(8), "192.0.2.12", 0);
    let skew = r.inst.skew_time();
    assert_eq!(skew, Duration::from_micros(6_093));
    let acts = r.run_until(ms(100));
    assert_eq!(transitions(&acts)[0], (ms(8) + skew, State::Master));
    assert!(acts.iter().any(|(_, a)| matches!(
        a,
        Action::Transition {
            reason: TransitionReason::MasterDown { released: true, .. },
            ..
        }
    )));
}

#[test]
fn master_yields_to_higher_priority_and_removes_addresses() {
    let mut r = Rig::new(v3(255));
    r.start();
    // Even an owner yields to... nobody higher exists; use a 150 master instead.
    let mut r2 = Rig::new(v3(150));
    r2.start();
    r2.run_until(ms(50));
    assert_eq!(r2.inst.state(), State::Master);
    let a = r2.hear(ms(60), "192.0.2.12", 200);
    // vipd default: one last advert first, so the winner learns there were two masters.
    assert!(
        matches!(&a[0], Action::Send { payload, .. } if payload[2] == 150),
        "{a:?}"
    );
    assert_eq!(a[1], Action::RemoveAddresses);
    let mut quiet = v3(150);
    quiet.higher_prio_send_advert = false;
    let mut q = Rig::new(quiet);
    q.start();
    q.run_until(ms(50));
    assert_eq!(
        q.hear(ms(60), "192.0.2.12", 200)[0],
        Action::RemoveAddresses
    );
    assert!(matches!(
        a[2],
        Action::Transition {
            to: State::Backup,
            reason: TransitionReason::Preempted { priority: 200, .. },
            ..
        }
    ));
    assert_eq!(r.inst.state(), State::Master);
}

#[test]
fn equal_priority_tie_breaks_on_higher_address() {
    let mut r = Rig::new(v3(100));
    r.start();
    r.run_until(ms(40));
    assert_eq!(r.inst.state(), State::Master);
    // Lower address with equal priority: we stay master and answer at once.
    let a = r.hear(ms(41), "192.0.2.5", 100);
    assert_eq!(r.inst.state(), State::Master);
    assert!(matches!(a[0], Action::Send { .. }));
    // Higher address with equal priority wins.
    r.hear(ms(42), "192.0.2.200", 100);
    assert_eq!(r.inst.state(), State::Backup);
}

#[test]
fn master_answers_lower_priority_at_once_and_reannounces_once() {
    let mut r = Rig::new(v3(200));
    r.start();
    r.run_until(ms(40));
    let a = r.hear(ms(41), "192.0.2.12", 100);
    assert!(matches!(a[0], Action::Send { .. }), "{a:?}");
    assert_eq!(a[1], Action::Announce { repeat: 5 });
    assert_eq!(
        r.inst.poll_timeout(),
        Some(r.at(ms(51))),
        "advert timer restarted"
    );
    // keepalived's notify_master_rx_lower_pri event, after the answer.
    let event = Action::MasterRxLowerPriority {
        from: "192.0.2.12".parse().unwrap(),
        priority: 100,
    };
    assert_eq!(a[2], event);
    let b = r.hear(ms(45), "192.0.2.12", 100);
    assert!(matches!(b[0], Action::Send { .. }), "{b:?}");
    assert_eq!(
        &b[1..],
        std::slice::from_ref(&event),
        "no second GARP burst within the hold time, the event every time: {b:?}"
    );
    let mut quiet = v3(200);
    quiet.lower_prio_no_advert = true;
    quiet.garp.lower_prio_repeat = 0;
    let mut q = Rig::new(quiet);
    q.start();
    q.run_until(ms(40));
    assert_eq!(q.hear(ms(41), "192.0.2.12", 100), [event]);
}

#[test]
fn backup_with_preempt_ignores_lower_priority_master() {
    let mut r = Rig::new(v3(200));
    r.start();
    r.hear(ms(1), "192.0.2.12", 100);
    r.hear(ms(11), "192.0.2.12", 100);
    let acts = r.run_until(ms(100));
    // Down timer was never reset by the lower-priority adverts.
    let d = r.inst.master_down_interval();
    assert_eq!(transitions(&acts)[0], (d, State::Master));
}

#[test]
fn nopreempt_backup_stays_behind_lower_priority_master() {
    let mut c = v3(200);
    c.preempt = false;
    let mut r = Rig::new(c);
    r.start();
    for i in 0..20 {
        r.hear(ms(1 + 10 * i), "192.0.2.12", 100);
        r.run_until(ms(1 + 10 * i));
    }
    assert_eq!(r.inst.state(), State::Backup);
    // ...but takes over when that master goes silent.
    let acts = r.run_until(ms(400));
    assert_eq!(transitions(&acts).last().unwrap().1, State::Master);
}

#[test]
fn preempt_delay_postpones_preemption() {
    let mut c = v3(200);
    c.preempt_delay = ms(500);
    let mut r = Rig::new(c);
    r.start();
    assert_eq!(
        r.inst.poll_timeout(),
        Some(r.at(r.inst.master_down_interval() + ms(500)))
    );
    for i in 0..50 {
        r.hear(ms(1 + 10 * i), "192.0.2.12", 100);
        r.run_until(ms(1 + 10 * i));
    }
    // First lower-priority advert at 1 ms: preempt at 1 ms + MDI + 500 ms, not before.
    let due = ms(1) + r.inst.master_down_interval() + ms(500);
    assert_eq!(r.inst.state(), State::Backup);
    let acts = r.run_until(ms(700));
    assert_eq!(transitions(&acts)[0], (due, State::Master));
}

#[test]
fn shutdown_sends_priority_zero_then_removes_addresses() {
    let mut c = v3(255);
    c.hold_addresses_on_shutdown = false;
    let mut r = Rig::new(c);
    r.start();
    r.inst.shutdown(r.at(ms(3)));
    let a = r.drain();
    let Action::Send { payload, .. } = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(payload[2], 0, "priority 0 on the wire");
    assert_eq!(a[1], Action::RemoveAddresses);
    assert!(matches!(
        a[2],
        Action::Transition {
            to: State::Initialize,
            ..
        }
    ));
    assert_eq!(r.inst.poll_timeout(), None);
    assert_eq!(r.inst.stats().priority_zero_sent, 1);
}

#[test]
fn shutdown_holds_addresses_for_one_interval_by_default() {
    let mut r = Rig::new(v3(255));
    r.start();
    r.inst.shutdown(r.at(ms(3)));
    let a = r.drain();
    assert!(matches!(&a[0], Action::Send { payload, .. } if payload[2] == 0));
    assert!(
        matches!(
            a[1],
            Action::Transition {
                to: State::Initialize,
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(a.len(), 2, "addresses kept for now: {a:?}");
    // Released one advert interval (10 ms) + 2 ms later, and nothing else happens.
    let acts = r.run_until(ms(1000));
    assert_eq!(acts, vec![(ms(15), Action::RemoveAddresses)]);
    assert_eq!(r.inst.poll_timeout(), None);
    assert_eq!(
        r.inst.stats().adverts_sent,
        2,
        "startup advert + priority 0 only"
    );
}

#[test]
fn master_hearing_priority_zero_readvertises() {
    let mut r = Rig::new(v3(255));
    r.start();
    let a = r.hear(ms(3), "192.0.2.12", 0);
    assert!(matches!(&a[0], Action::Send { payload, .. } if payload[2] == 255));
    assert_eq!(r.inst.state(), State::Master);
}

#[test]
fn fault_releases_and_recovery_restarts_as_backup() {
    let mut r = Rig::new(v3(150));
    r.start();
    r.run_until(ms(50));
    r.inst.set_fault(r.at(ms(51)), true);
    let a = r.drain();
    assert!(matches!(&a[0], Action::Send { payload, .. } if payload[2] == 0));
    assert_eq!(a[1], Action::RemoveAddresses);
    assert_eq!(r.inst.state(), State::Fault);
    assert_eq!(r.inst.poll_timeout(), None);
    // Adverts are ignored while in fault.
    r.hear(ms(52), "192.0.2.12", 200);
    assert_eq!(r.inst.state(), State::Fault);
    r.inst.set_fault(r.at(ms(60)), false);
    let a = r.drain();
    assert!(matches!(
        a[0],
        Action::Transition {
            from: State::Fault,
            to: State::Backup,
            ..
        }
    ));
}

/// What the SNMP statistics read: since when the instance is out of Initialize/FAULT,
/// why it last became MASTER and its last TTL/version/checksum/VRID error.
#[test]
fn up_time_master_reason_and_last_protocol_error() {
    let mut r = Rig::new(v3(150));
    assert_eq!(r.inst.stats().up_since, None);
    r.start();
    assert_eq!(r.inst.state(), State::Backup);
    assert_eq!(r.inst.stats().up_since, Some(r.t0));
    assert_eq!(r.inst.stats().last_master_reason, None);
    r.run_until(ms(5000));
    assert_eq!(r.inst.state(), State::Master);
    // Still up since startup: BACKUP to MASTER does not restart it.
    assert_eq!(r.inst.stats().up_since, Some(r.t0));
    assert!(matches!(
        r.inst.stats().last_master_reason,
        Some(TransitionReason::MasterDown {
            released: false,
            ..
        })
    ));
    r.inst.set_fault(r.at(ms(6000)), true);
    assert_eq!(r.inst.stats().up_since, None);
    r.inst.set_fault(r.at(ms(6100)), false);
    assert_eq!(r.inst.stats().up_since, Some(r.at(ms(6100))));
    assert_eq!(r.inst.stats().last_protocol_error, None);
    // An address mismatch is no protocol error; a TTL error is.
    let mut adv = advert_like(r.inst.config(), 200);
    adv.addresses = vec![ip("192.0.2.99")];
    r.hear_advert(ms(6200), "192.0.2.12", &adv, 255);
    assert_eq!(r.inst.stats().last_protocol_error, None);
    r.hear_advert(
        ms(6300),
        "192.0.2.12",
        &advert_like(r.inst.config(), 200),
        254,
    );
    assert_eq!(r.inst.stats().last_protocol_error, Some(DropReason::BadTtl));
}

#[test]
fn garp_second_burst_and_refresh() {
    let mut c = v3(255);
    c.garp.master_delay = ms(5000);
    c.garp.refresh = ms(60_000);
    c.garp.refresh_repeat = 2;
    let mut r = Rig::new(c);
    r.start();
    let acts = r.run_until(ms(130_000));
    let ann: Vec<(Duration, u32)> = acts
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Announce { repeat } => Some((*t, *repeat)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ann,
        vec![
            (ms(1100), 1),
            (ms(5000), 5),
            (ms(60_000), 2),
            (ms(120_000), 2)
        ]
    );
}

#[test]
fn receive_validation_counts_every_drop() {
    let mut r = Rig::new(v3(100));
    r.start();
    r.hear_advert(ms(1), "192.0.2.12", &advert_like(r.inst.config(), 200), 254);
    assert_eq!(r.inst.stats().drops.get(DropReason::BadTtl), 1);
    r.hear(ms(1), "192.0.2.11", 200);
    assert_eq!(r.inst.stats().drops.get(DropReason::OwnAdvert), 1);
    let mut adv = advert_like(r.inst.config(), 200);
    adv.addresses = vec![ip("192.0.2.99")];
    r.hear_advert(ms(1), "192.0.2.12", &adv, 255);
    assert_eq!(r.inst.stats().drops.get(DropReason::AddressMismatch), 1);
    adv.priority = 255; // the owner may advertise what it owns
    r.hear_advert(ms(1), "192.0.2.12", &adv, 255);
    assert_eq!(r.inst.stats().drops.get(DropReason::AddressMismatch), 1);
    let mut adv = advert_like(r.inst.config(), 200);
    adv.vrid = 52;
    r.hear_advert(ms(1), "192.0.2.12", &adv, 255);
    assert_eq!(r.inst.stats().drops.get(DropReason::UnknownVrid), 1);
    let mut adv = advert_like(r.inst.config(), 200);
    adv.version = Version::V2;
    adv.interval_cs = 100;
    r.hear_advert(ms(1), "192.0.2.12", &adv, 255);
    assert_eq!(r.inst.stats().drops.get(DropReason::VersionMismatch), 1);
    r.inst.handle_packet(
        r.at(ms(1)),
        &RxMeta {
            src: ip("192.0.2.12"),
            dst: ip("224.0.0.18"),
            ttl: 255,
        },
        &[0x31, 51, 200],
    );
    assert_eq!(r.inst.stats().drops.get(DropReason::Truncated), 1);
    assert_eq!(r.inst.stats().adverts_received, 1);
    assert_eq!(r.inst.stats().drops.total(), 6);
}

#[test]
fn v2_interval_and_auth_checks() {
    let mut c = v2(100);
    c.auth = Auth::pass("secret12345");
    let mut r = Rig::new(c);
    r.start();
    let good = advert_like(r.inst.config(), 200);
    r.hear_advert(ms(1), "192.0.2.12", &good, 255);
    assert_eq!(r.inst.stats().adverts_received, 1);
    let mut bad = good.clone();
    bad.interval_cs = 200;
    r.hear_advert(ms(2), "192.0.2.12", &bad, 255);
    assert_eq!(r.inst.stats().drops.get(DropReason::IntervalMismatch), 1);
    let mut bad = good.clone();
    bad.auth = Auth::pass("secret");
    r.hear_advert(ms(3), "192.0.2.12", &bad, 255);
    assert_eq!(r.inst.stats().drops.get(DropReason::AuthMismatch), 1);
    let mut bad = good.clone();
    bad.auth = Auth::None;
    r.hear_advert(ms(4), "192.0.2.12", &bad, 255);
    assert_eq!(r.inst.stats().drops.get(DropReason::AuthTypeMismatch), 1);
    // v2 skew is in seconds: 3 s + 0.609375 s after the last accepted advert.
    assert_eq!(
        r.inst.poll_timeout(),
        Some(r.at(ms(1) + Duration::from_micros(3_609_375)))
    );
}

#[test]
fn unicast_accepts_only_listed_peers_and_sends_to_each() {
    let mut c = v3(255);
    c.peers = vec![
        Peer::new(ip("192.0.2.12")),
        Peer {
            addr: ip("192.0.2.13"),
            min_ttl: 250,
            max_ttl: 255,
        },
    ];
    let mut r = Rig::new(c);
    let a = r.start();
    let dsts: Vec<IpAddr> = a
        .iter()
        .filter_map(|a| match a {
            Action::Send { dst, .. } => Some(*dst),
            _ => None,
        })
        .collect();
    assert_eq!(dsts, vec![ip("192.0.2.12"), ip("192.0.2.13")]);
    r.hear(ms(1), "192.0.2.99", 0);
    assert_eq!(r.inst.stats().drops.get(DropReason::UnknownPeer), 1);
    let adv = advert_like(r.inst.config(), 0);
    r.hear_advert(ms(1), "192.0.2.13", &adv, 64);
    assert_eq!(r.inst.stats().drops.get(DropReason::PeerTtl), 1);
    r.hear_advert(ms(1), "192.0.2.12", &adv, 64); // any TTL from an unrestricted peer
    assert_eq!(r.inst.stats().priority_zero_received, 1);
}

#[test]
fn ipv6_link_local_vip_goes_first_on_the_wire() {
    let c = InstanceConfig::new(
        1,
        Version::V3,
        255,
        ip("fe80::11"),
        vec![ip("2001:db8::100"), ip("fe80::100")],
    );
    let mut r = Rig::new(c);
    let a = r.start();
    let Action::Send { dst, payload } = &a[2] else {
        panic!("{a:?}")
    };
    assert_eq!(*dst, ip("ff02::12"));
    assert_eq!(
        &payload[8..24],
        &"fe80::100".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
}

#[test]
fn reconfigure_in_place_keeps_state_and_refuses_identity_changes() {
    let mut r = Rig::new(v3(150));
    r.start();
    r.run_until(ms(50));
    assert_eq!(r.inst.state(), State::Master);
    let mut c = r.inst.config().clone();
    c.priority = 120;
    c.advert_interval = ms(20);
    assert_eq!(r.inst.reconfigure(c.clone()), Ok(()));
    assert_eq!(
        r.inst.state(),
        State::Master,
        "no transition on an in-place change"
    );
    let sends: Vec<u8> = r
        .run_until(ms(120))
        .into_iter()
        .filter_map(|(_, a)| match a {
            Action::Send { payload, .. } => Some(payload[2]),
            _ => None,
        })
        .collect();
    assert!(
        !sends.is_empty() && sends.iter().all(|p| *p == 120),
        "{sends:?}"
    );
    for change in [
        |c: &mut InstanceConfig| c.vrid = 52,
        |c: &mut InstanceConfig| c.addresses.push("192.0.2.101".parse().unwrap()),
        |c: &mut InstanceConfig| c.priority = 255,
        |c: &mut InstanceConfig| c.version = Version::V2,
    ] {
        let mut bad = c.clone();
        change(&mut bad);
        assert_eq!(r.inst.reconfigure(bad), Err(NeedsRestart));
    }
    assert_eq!(r.inst.config().priority, 120);
    assert_eq!(
        r.inst.stats().transitions,
        2,
        "INIT->BACKUP, BACKUP->MASTER"
    );
}

#[test]
fn tracking_moves_the_effective_priority_and_the_vip() {
    // Master at 100 drops to 98 (down-file check, weight -2): a backup at 99 takes over
    // after its master-down interval because it now discards the master's adverts.
    let mut r = Rig::new(v3(100));
    r.start();
    r.run_until(ms(40));
    assert_eq!(r.inst.state(), State::Master);
    r.inst.set_priority_adjustment(r.at(ms(41)), -2);
    let a = r.drain();
    assert!(
        matches!(&a[0], Action::Send { payload, .. } if payload[2] == 98),
        "advertised at once: {a:?}"
    );
    assert_eq!(r.inst.priority(), 98);
    assert_eq!(
        r.inst.config().priority,
        100,
        "configured priority unchanged"
    );
    // The same adjustment again changes nothing and sends nothing.
    r.inst.set_priority_adjustment(r.at(ms(42)), -2);
    assert!(r.drain().is_empty());
    // Clamping: never below 1 or above 254; the owner is never adjusted.
    r.inst.set_priority_adjustment(r.at(ms(43)), -500);
    assert_eq!(r.inst.priority(), 1);
    r.inst.set_priority_adjustment(r.at(ms(44)), 500);
    assert_eq!(r.inst.priority(), 254);
    let mut owner = Rig::new(v3(255));
    owner.start();
    owner.inst.set_priority_adjustment(owner.at(ms(1)), -50);
    assert_eq!(owner.inst.priority(), 255);

    // The backup side: 99 with a higher-than-master effective priority preempts.
    let mut b = Rig::new(v3(99));
    b.start();
    b.hear(ms(5), "192.0.2.12", 100);
    b.inst.set_priority_adjustment(b.at(ms(6)), 2); // 101 > 100
    b.hear(ms(15), "192.0.2.12", 100); // discarded now: lower than ours
    let acts = b.run_until(ms(200));
    // The down timer still runs from the last accepted advert (5 ms), with the
    // master-down interval of priority 99: 30 ms + 157/256 × 10 ms = 36.132 ms.
    assert_eq!(
        transitions(&acts)[0],
        (ms(5) + Duration::from_micros(36_132), State::Master)
    );
}

#[test]
fn sync_group_moves_follow_the_other_member() {
    let mut r = Rig::new(v3(100));
    r.start();
    r.hear(ms(5), "192.0.2.12", 200);
    r.inst.sync_to_master(r.at(ms(6)));
    let a = r.drain();
    assert_eq!(a[0], Action::AddAddresses);
    assert!(matches!(
        a.last(),
        Some(Action::Transition {
            to: State::Master,
            reason: TransitionReason::SyncGroup,
            ..
        })
    ));
    // Forcing master again is a no-op; forcing backup releases and waits a full MDI.
    r.inst.sync_to_master(r.at(ms(7)));
    assert!(r.drain().is_empty());
    r.inst.sync_to_backup(r.at(ms(8)));
    let a = r.drain();
    assert_eq!(a[0], Action::RemoveAddresses);
    assert!(matches!(
        a[1],
        Action::Transition {
            to: State::Backup,
            reason: TransitionReason::SyncGroup,
            ..
        }
    ));
    assert_eq!(
        r.inst.poll_timeout(),
        Some(r.at(ms(8)) + r.inst.master_down_interval())
    );
    r.inst.sync_to_backup(r.at(ms(9)));
    assert!(r.drain().is_empty(), "already backup");
}

#[test]
fn timer_expired_backup_yields_when_a_backup_may_have_taken_over() {
    // 10 ms adverts; a backup of priority 254 waits 3 × 10 + 2 × 10 / 256 ms =
    // 30.078 ms after the last advert it heard.
    let late_master = |preempt: bool| {
        let mut cfg = v3(100);
        cfg.preempt = preempt;
        cfg.timer_expired_backup = Some(254);
        let mut r = Rig::new(cfg);
        r.start();
        r.run_until(ms(37));
        assert_eq!(r.inst.state(), State::Master);
        let due = r.inst.poll_timeout().unwrap();
        (r, due)
    };
    // 15 ms late: 25 ms since the last advert, within the backup's wait: advertise.
    let (mut r, due) = late_master(false);
    r.inst.handle_timeout(due + ms(15));
    let a = r.drain();
    assert!(matches!(a.as_slice(), [Action::Send { .. }]), "{a:?}");
    assert_eq!(r.inst.state(), State::Master);
    // 25 ms late: 35 ms since the last advert: the backup is master by now.
    let (mut r, due) = late_master(false);
    r.inst.handle_timeout(due + ms(25));
    let a = r.drain();
    assert!(
        matches!(
            a.as_slice(),
            [
                Action::RemoveAddresses,
                Action::Transition {
                    from: State::Master,
                    to: State::Backup,
                    reason: TransitionReason::TimerExpired {
                        other_priority: 254
                    },
                }
            ]
        ),
        "{a:?}"
    );
    // Back in BACKUP with a fresh master-down timer, no master timers left.
    assert_eq!(
        r.inst.poll_timeout(),
        Some(due + ms(25) + r.inst.master_down_interval())
    );
    // keepalived: only with nopreempt; a preempting master advertises as usual.
    let (mut r, due) = late_master(true);
    r.inst.handle_timeout(due + ms(25));
    assert!(matches!(r.drain().as_slice(), [Action::Send { .. }]));
}

#[test]
fn owner_ignore_adverts_makes_a_v3_owner_deaf() {
    let mut cfg = v3(255);
    let mut r = Rig::new(cfg.clone());
    r.start();
    // RFC 9568: a v3 owner processes a lower-priority advert (and answers it).
    assert!(!r.hear(ms(5), "192.0.2.12", 100).is_empty());
    cfg.owner_ignore_adverts = true;
    let mut r = Rig::new(cfg);
    r.start();
    assert!(r.hear(ms(5), "192.0.2.12", 100).is_empty());
    assert_eq!(r.inst.stats().drops.get(DropReason::AddressOwner), 1);
}

/// Issue 13: a GARP refresh switched off by a reconfigure while its timer runs. The
/// expired timer must stop, not be rescheduled at `now + 0` (a past deadline forever).
#[test]
fn refresh_switched_off_while_running_stops_instead_of_spinning() {
    let mut cfg = v3(255);
    cfg.garp.refresh = ms(100);
    let mut r = Rig::new(cfg.clone());
    r.start();
    cfg.garp.refresh = Duration::ZERO;
    r.inst.reconfigure(cfg).unwrap();
    let now = r.at(ms(100));
    r.inst.handle_timeout(now);
    assert!(
        r.inst.poll_timeout().is_none_or(|t| t > now),
        "poll_timeout {:?} after handle_timeout",
        r.inst.poll_timeout().map(|t| t - r.t0)
    );
}

/// Issue 13: FAULT during the shutdown hold removes the held addresses at once and
/// leaves no timer behind.
#[test]
fn fault_during_the_shutdown_hold_removes_the_addresses() {
    let mut r = Rig::new(v3(255));
    r.start();
    r.inst.shutdown(r.at(ms(3)));
    r.drain();
    r.inst.set_fault(r.at(ms(5)), true);
    let a = r.drain();
    assert_eq!(a[0], Action::RemoveAddresses, "{a:?}");
    assert!(matches!(
        a[1],
        Action::Transition {
            from: State::Initialize,
            to: State::Fault,
            ..
        }
    ));
    assert_eq!(r.inst.poll_timeout(), None);
    assert!(r.run_until(ms(1000)).is_empty());
}

fn v2_ah(priority: u8, primary: &str, pass: &str) -> InstanceConfig {
    let mut c = InstanceConfig::new(
        51,
        Version::V2,
        priority,
        ip(primary),
        vec![ip("192.0.2.100")],
    );
    c.auth = Auth::Ah;
    c.ah_key = wire::ah::AhKey::from_pass(pass);
    c
}

fn sent(actions: &[Action]) -> Vec<(IpAddr, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { dst, payload } => Some((*dst, payload.clone())),
            _ => None,
        })
        .collect()
}

fn meta_of(packet: &[u8]) -> RxMeta {
    let (h, _) = wire::ipv4::parse(packet).unwrap();
    RxMeta {
        src: IpAddr::V4(h.src),
        dst: IpAddr::V4(h.dst),
        ttl: h.ttl,
    }
}

/// A master's AH adverts: whole IPv4 packets (protocol 51), sequence numbers 1, 2, …
fn ah_master_packets(pass: &str, n: usize) -> Vec<Vec<u8>> {
    let mut m = Rig::new(v2_ah(255, "192.0.2.12", pass));
    let mut out: Vec<Vec<u8>> = sent(&m.start()).into_iter().map(|(_, p)| p).collect();
    while out.len() < n {
        let t = m.inst.poll_timeout().unwrap();
        m.inst.handle_timeout(t);
        out.extend(sent(&m.drain()).into_iter().map(|(_, p)| p));
    }
    out
}

#[test]
fn ah_adverts_are_whole_ipv4_packets_with_rising_sequence_numbers() {
    let pkts = ah_master_packets("pw", 3);
    for (i, p) in pkts.iter().enumerate() {
        assert_eq!(p[9], wire::ah::IPPROTO_AH);
        assert_eq!(&p[16..20], &[224, 0, 0, 18]);
        let o = wire::ah::open(p, &wire::ah::AhKey::from_pass("pw"), false).unwrap();
        assert_eq!(o.seq, i as u32 + 1);
        // Inside: a VRRPv2 advert with auth type 2 and zero auth data.
        assert_eq!(o.vrrp[0], 0x21);
        assert_eq!(o.vrrp[4], 2);
        assert_eq!(&o.vrrp[o.vrrp.len() - 8..], &[0; 8]);
    }
    assert_ne!(pkts[0][4..6], pkts[1][4..6], "a fresh IP id per packet");
}

#[test]
fn ah_backup_accepts_the_right_key_and_drops_replays() {
    let pkts = ah_master_packets("pw", 2);
    let mut b = Rig::new(v2_ah(100, "192.0.2.11", "pw"));
    b.start();
    b.inst
        .handle_ah_packet(b.at(ms(1)), &meta_of(&pkts[0]), &pkts[0]);
    b.inst
        .handle_ah_packet(b.at(ms(2)), &meta_of(&pkts[1]), &pkts[1]);
    assert_eq!(b.inst.stats().adverts_received, 2);
    assert_eq!(b.inst.master(), Some(ip("192.0.2.12")));
    // The same packet again, or an older one: replayed.
    b.inst
        .handle_ah_packet(b.at(ms(3)), &meta_of(&pkts[1]), &pkts[1]);
    b.inst
        .handle_ah_packet(b.at(ms(4)), &meta_of(&pkts[0]), &pkts[0]);
    assert_eq!(b.inst.stats().drops.get(DropReason::Replayed), 2);
    assert_eq!(b.inst.stats().adverts_received, 2);
    // Taking over, it continues above the master's numbers (keepalived's shared
    // counter), so the other routers accept it.
    let a = b.run_until(Duration::from_secs(5));
    assert_eq!(b.inst.state(), State::Master);
    let first = a
        .iter()
        .find_map(|(_, a)| match a {
            Action::Send { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .unwrap();
    let o = wire::ah::open(&first, &wire::ah::AhKey::from_pass("pw"), false).unwrap();
    assert_eq!(o.seq, 3);
}

#[test]
fn ah_wrong_key_never_forms_an_adjacency() {
    let pkts = ah_master_packets("right", 5);
    let mut b = Rig::new(v2_ah(100, "192.0.2.11", "wrong"));
    b.start();
    for (i, p) in pkts.iter().enumerate() {
        b.inst
            .handle_ah_packet(b.at(Duration::from_millis(900) * i as u32), &meta_of(p), p);
    }
    assert_eq!(b.inst.stats().adverts_received, 0);
    assert_eq!(b.inst.stats().drops.get(DropReason::AuthMismatch), 5);
    assert_eq!(b.inst.master(), None);
    // The down timer was never reset: it takes over as if nobody were there.
    let a = b.run_until(Duration::from_secs(4));
    assert_eq!(
        transitions(&a),
        vec![(Duration::from_micros(3_609_375), State::Master)]
    );
}

#[test]
fn ah_and_plain_adverts_do_not_mix() {
    // A plain protocol-112 advert claiming auth type 2 is not authenticated.
    let mut b = Rig::new(v2_ah(100, "192.0.2.11", "pw"));
    b.start();
    let adv = advert_like(b.inst.config(), 200);
    assert_eq!(adv.auth, Auth::Ah);
    b.hear_advert(ms(1), "192.0.2.12", &adv, 255);
    assert_eq!(b.inst.stats().drops.get(DropReason::AuthTypeMismatch), 1);
    // An AH packet reaching an instance without AH.
    let pkts = ah_master_packets("pw", 1);
    let mut plain = Rig::new(v2(100));
    plain.start();
    plain
        .inst
        .handle_ah_packet(plain.at(ms(1)), &meta_of(&pkts[0]), &pkts[0]);
    assert_eq!(
        plain.inst.stats().drops.get(DropReason::AuthTypeMismatch),
        1
    );
    // Truncated AH.
    b.inst
        .handle_ah_packet(b.at(ms(2)), &meta_of(&pkts[0]), &pkts[0][..30]);
    assert_eq!(b.inst.stats().drops.get(DropReason::Truncated), 1);
    // A switch to or from AH changes the IP protocol: it needs a restart.
    let mut c = b.inst.config().clone();
    c.auth = Auth::None;
    assert_eq!(b.inst.reconfigure(c), Err(NeedsRestart));
}

#[test]
fn ah_unicast_leaves_the_ttl_out_and_sends_one_sequence_number_to_all_peers() {
    let mut c = v2_ah(255, "192.0.2.12", "pw");
    c.peers = vec![Peer::new(ip("192.0.2.11")), Peer::new(ip("192.0.2.13"))];
    let mut m = Rig::new(c);
    let out = sent(&m.start());
    assert_eq!(out.len(), 2);
    let key = wire::ah::AhKey::from_pass("pw");
    let seqs: Vec<u32> = out
        .iter()
        .map(|(_, p)| wire::ah::open(p, &key, true).unwrap().seq)
        .collect();
    assert_eq!(seqs, vec![1, 1]);
    let mut b_cfg = v2_ah(100, "192.0.2.11", "pw");
    b_cfg.peers = vec![Peer::new(ip("192.0.2.12"))];
    let mut b = Rig::new(b_cfg);
    b.start();
    let mut p = out[0].1.clone();
    p[8] = 64; // the socket's unicast_ttl, outside the ICV
    b.inst.handle_ah_packet(b.at(ms(1)), &meta_of(&p), &p);
    assert_eq!(b.inst.stats().adverts_received, 1);
}

fn hmac_cfg(active: u8, mode: hmac::Mode) -> hmac::HmacConfig {
    hmac::HmacConfig {
        keys: vec![
            hmac::HmacKey::new(1, vec![0x42; 32]),
            hmac::HmacKey::new(2, b"the second key, for the rollover".to_vec()),
        ],
        active_key: active,
        mode,
        anti_replay_time: true,
        time_window: 5,
    }
}

fn with_hmac(mut c: InstanceConfig, active: u8, mode: hmac::Mode) -> InstanceConfig {
    c.hmac = Some(hmac_cfg(active, mode));
    c
}

/// Adverts `n` from a master signing with `cfg`, at 1 s intervals.
fn signed_adverts(cfg: InstanceConfig, n: usize) -> Vec<(IpAddr, Vec<u8>)> {
    let mut m = Rig::new(cfg);
    let mut out = sent(&m.start());
    while out.len() < n {
        let t = m.inst.poll_timeout().unwrap();
        m.inst.handle_timeout(t);
        out.extend(sent(&m.drain()));
    }
    out
}

fn deliver(r: &mut Rig, at: Duration, src: &str, dst: IpAddr, payload: &[u8]) {
    let meta = RxMeta {
        src: ip(src),
        dst,
        ttl: 255,
    };
    r.inst.handle_packet(r.at(at), &meta, payload);
    r.drain();
}

fn owner_at(src: &str, mut c: InstanceConfig) -> InstanceConfig {
    c.priority = 255;
    c.primary = ip(src);
    c
}

#[test]
fn hmac_signed_adverts_verify_and_replays_forgeries_and_cuts_are_dropped() {
    for base in [v2(100), v3(100)] {
        let master = with_hmac(owner_at("192.0.2.12", base.clone()), 1, hmac::Mode::Enforce);
        let pkts = signed_adverts(master, 2);
        assert_eq!(
            pkts[0].1.len(),
            20 - 8 * usize::from(base.version == Version::V3) + 28
        );
        let mut b = Rig::new(with_hmac(base.clone(), 1, hmac::Mode::Enforce));
        b.start();
        deliver(&mut b, ms(1), "192.0.2.12", pkts[0].0, &pkts[0].1);
        assert_eq!(b.inst.stats().adverts_received, 1, "{:?}", b.inst.stats());
        deliver(&mut b, ms(2), "192.0.2.12", pkts[0].0, &pkts[0].1);
        assert_eq!(b.inst.stats().drops.get(DropReason::Replayed), 1);
        // Cut trailer, no trailer, forged (another key under the same id).
        let p = &pkts[1].1;
        deliver(&mut b, ms(3), "192.0.2.12", pkts[1].0, &p[..p.len() - 1]);
        assert_eq!(b.inst.stats().drops.get(DropReason::Truncated), 1);
        deliver(&mut b, ms(4), "192.0.2.12", pkts[1].0, &p[..p.len() - 28]);
        assert_eq!(b.inst.stats().drops.get(DropReason::AuthMissing), 1);
        let mut forger = with_hmac(owner_at("192.0.2.12", base.clone()), 1, hmac::Mode::Enforce);
        forger.hmac.as_mut().unwrap().keys[0] = hmac::HmacKey::new(1, vec![0x43; 32]);
        let forged = signed_adverts(forger, 1);
        deliver(&mut b, ms(5), "192.0.2.12", forged[0].0, &forged[0].1);
        assert_eq!(b.inst.stats().drops.get(DropReason::AuthMismatch), 1);
        // From another sender address than the signer: the pseudo-header differs.
        let mut b2 = Rig::new(with_hmac(base.clone(), 1, hmac::Mode::Enforce));
        b2.start();
        deliver(&mut b2, ms(1), "192.0.2.13", pkts[1].0, &pkts[1].1);
        assert_eq!(b2.inst.stats().adverts_received, 0);
        // (v3/IPv4's checksum covers the source too and fails first.)
        let why = if base.version == Version::V2 {
            DropReason::AuthMismatch
        } else {
            DropReason::BadChecksum
        };
        assert_eq!(b2.inst.stats().drops.get(why), 1);
        // The next genuine one is accepted.
        deliver(&mut b, ms(6), "192.0.2.12", pkts[1].0, &pkts[1].1);
        assert_eq!(b.inst.stats().adverts_received, 2);
    }
}

#[test]
fn hmac_ipv6_checksum_covers_the_trailer() {
    let c = InstanceConfig::new(
        1,
        Version::V3,
        255,
        ip("fe80::2"),
        vec![ip("2001:db8::100")],
    );
    let pkts = signed_adverts(with_hmac(c.clone(), 2, hmac::Mode::Enforce), 1);
    let (dst, p) = &pkts[0];
    // A plain sum over everything with the pseudo-header is zero.
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip("fe80::2"), *dst) else {
        panic!()
    };
    let mut sum = wire::checksum::pseudo_v6(s, d, wire::IPPROTO_VRRP, p.len() as u32);
    assert_eq!(sum.add(p).finish(), 0);
    let mut b_cfg = c;
    b_cfg.priority = 100;
    b_cfg.primary = ip("fe80::1");
    let mut b = Rig::new(with_hmac(b_cfg, 1, hmac::Mode::Enforce));
    b.start();
    deliver(&mut b, ms(1), "fe80::2", *dst, p);
    assert_eq!(b.inst.stats().adverts_received, 1, "{:?}", b.inst.stats());
}

#[test]
fn hmac_modes_and_key_rollover() {
    let unsigned = signed_adverts(owner_at("192.0.2.12", v2(100)), 1);
    // receive-only sends no trailer.
    let ro = signed_adverts(
        with_hmac(owner_at("192.0.2.12", v2(100)), 1, hmac::Mode::ReceiveOnly),
        1,
    );
    assert_eq!(ro[0].1, unsigned[0].1);
    for (mode, accepted) in [
        (hmac::Mode::Enforce, 0),
        (hmac::Mode::Permissive, 1),
        (hmac::Mode::ReceiveOnly, 1),
    ] {
        let mut b = Rig::new(with_hmac(v2(100), 1, mode));
        b.start();
        deliver(&mut b, ms(1), "192.0.2.12", unsigned[0].0, &unsigned[0].1);
        assert_eq!(b.inst.stats().adverts_received, accepted, "{mode:?}");
    }
    // Rollover: the master moves to key 2 by reconfiguring; the backup, still
    // sending with key 1, verifies both and never misses an advert.
    let mut m = Rig::new(with_hmac(
        owner_at("192.0.2.12", v2(100)),
        1,
        hmac::Mode::Enforce,
    ));
    let mut b = Rig::new(with_hmac(v2(100), 1, hmac::Mode::Enforce));
    b.start();
    let first = sent(&m.start());
    deliver(&mut b, ms(1), "192.0.2.12", first[0].0, &first[0].1);
    let mut c = m.inst.config().clone();
    c.hmac.as_mut().unwrap().active_key = 2;
    m.inst.reconfigure(c).unwrap();
    let t = m.inst.poll_timeout().unwrap();
    m.inst.handle_timeout(t);
    let second = sent(&m.drain());
    assert_eq!(
        second[0].1[second[0].1.len() - 27],
        2,
        "key id 2 on the wire"
    );
    deliver(&mut b, ms(2), "192.0.2.12", second[0].0, &second[0].1);
    assert_eq!(b.inst.stats().adverts_received, 2);
    assert_eq!(b.inst.stats().drops.total(), 0);
    assert_eq!(b.inst.state(), State::Backup);
}

#[test]
fn a_peer_state_report_is_no_down() {
    let mut cfg = v3(100);
    cfg.peer_takeover = Some(PeerTakeover {
        min_up: ms(0),
        hold_down: ms(0),
    });
    let mut r = Rig::new(cfg);
    r.start();
    r.hear(ms(1), "192.0.2.12", 200);
    let peer = ip("192.0.2.12");
    // A session configured while the peer is unreachable reports Down: not a failure.
    r.inst.peer_not_up(peer);
    assert_eq!(r.inst.stats().peer_downs_ignored, 0);
    assert_eq!(r.inst.state(), State::Backup);
    // A real Down of a session that never came up is ignored, and counted.
    assert!(!r.inst.peer_down(r.at(ms(2)), peer));
    assert_eq!(r.inst.stats().peer_downs_ignored, 1);
    // Up, then a state report: it no longer counts as Up, so a Down takes nothing over.
    r.inst.peer_up(r.at(ms(3)), peer);
    r.inst.peer_not_up(peer);
    assert!(!r.inst.peer_down(r.at(ms(4)), peer));
    assert_eq!(r.inst.stats().peer_downs_ignored, 2);
    // Up and a Down: the take-over.
    r.inst.peer_up(r.at(ms(5)), peer);
    assert!(r.inst.peer_down(r.at(ms(6)), peer));
    assert_eq!(r.inst.stats().peer_takeovers, 1);
    assert_eq!(r.inst.state(), State::Master);
}

/// keepalived: a MASTER whose VIP someone else deleted releases its addresses, goes to
/// BACKUP without a priority-0 advert, and takes over again after Skew_Time unless a
/// master speaks up meanwhile.
#[test]
fn a_deleted_vip_takes_the_master_to_backup_and_back_after_skew_time() {
    let mut r = Rig::new(v3(100));
    r.start();
    let acts = r.run_until(ms(40));
    assert_eq!(
        transitions(&acts),
        [(Duration::from_micros(36_093), State::Master)]
    );
    r.inst.vip_deleted(r.at(ms(45)), ip("192.0.2.100"));
    let a = r.drain();
    assert_eq!(a[0], Action::RemoveAddresses);
    assert!(matches!(
        a[1],
        Action::Transition {
            from: State::Master,
            to: State::Backup,
            reason: TransitionReason::VipDeleted { .. },
            ..
        }
    ));
    assert!(
        !a.iter().any(|x| matches!(x, Action::Send { .. })),
        "no priority-0 advert: {a:?}"
    );
    let skew = r.inst.skew_time();
    assert_eq!(r.inst.poll_timeout(), Some(r.at(ms(45)) + skew));
    let acts = r.run_until(ms(45) + skew);
    assert_eq!(transitions(&acts), [(ms(45) + skew, State::Master)]);
    assert!(acts.iter().any(|(_, a)| *a == Action::AddAddresses));
    // Not a master: nothing happens.
    let mut b = Rig::new(v3(100));
    b.start();
    b.inst.vip_deleted(b.at(ms(1)), ip("192.0.2.100"));
    assert!(b.drain().is_empty());
    assert_eq!(b.inst.state(), State::Backup);
}
