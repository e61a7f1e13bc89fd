//! Timer safety of the engine (issue 13), as a property: drive one virtual router
//! through random event sequences — start, shutdown (with and without the address
//! hold), faults raised and cleared at any moment (also during the shutdown hold),
//! adverts of every priority including 0 and 255, tracking adjustments, sync-group
//! pushes and reconfigurations (GARP refresh switched on and off) — and check after
//! every `handle_timeout(now)` that `poll_timeout()` is later than `now` or `None`:
//! the engine never returns the same past deadline twice, so a protocol loop that
//! sleeps until `poll_timeout` cannot spin. Every cluster property of the simulator
//! checks the same after each timer (`Sim::step`).

use proptest::prelude::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use vipd_sim::presets;
use vipd_vrrp::engine::{Action, Instance, InstanceConfig, State};
use vipd_vrrp::wire::{Advert, Auth, ChecksumVariant, RxMeta};
use vipd_vrrp::Version;

#[derive(Debug, Clone)]
enum Ev {
    Wait(u32),
    Startup,
    Shutdown,
    Fault(bool),
    Advert {
        peer: u8,
        priority: u8,
    },
    Adjust(i32),
    SyncMaster,
    SyncBackup,
    /// Reconfigure: GARP refresh period (ms, 0 = off) and preemption.
    Reconfigure {
        refresh_ms: u32,
        preempt: bool,
    },
}

fn arb_ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => (0u32..2500).prop_map(Ev::Wait),
        1 => Just(Ev::Startup),
        1 => Just(Ev::Shutdown),
        2 => any::<bool>().prop_map(Ev::Fault),
        3 => (0u8..3, prop_oneof![Just(0u8), Just(255u8), 1u8..=254]).prop_map(|(peer, priority)| Ev::Advert { peer, priority }),
        1 => (-300i32..300).prop_map(Ev::Adjust),
        1 => Just(Ev::SyncMaster),
        1 => Just(Ev::SyncBackup),
        1 => (prop_oneof![Just(0u32), 1u32..3000], any::<bool>())
            .prop_map(|(refresh_ms, preempt)| Ev::Reconfigure { refresh_ms, preempt }),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    version: Version,
    priority: u8,
    interval_ms: u64,
    hold: bool,
    preempt: bool,
    preempt_delay_ms: u64,
    refresh_ms: u64,
    timer_expired_backup: bool,
}

fn arb_setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        prop_oneof![Just(255u8), 1u8..=254],
        prop_oneof![Just(10u64), Just(100), Just(1000)],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u64), 1u64..2000],
        prop_oneof![Just(0u64), 1u64..2000],
        any::<bool>(),
    )
        .prop_map(
            |(v3, priority, interval_ms, hold, preempt, pd, refresh, teb)| Setup {
                version: if v3 { Version::V3 } else { Version::V2 },
                priority,
                // v2 intervals are whole seconds.
                interval_ms: if v3 { interval_ms } else { 1000 },
                hold,
                preempt,
                preempt_delay_ms: pd,
                refresh_ms: refresh,
                timer_expired_backup: teb,
            },
        )
}

impl Setup {
    fn cfg(&self) -> InstanceConfig {
        let mut c = presets::config_v4(
            self.version,
            self.priority,
            10,
            Duration::from_millis(self.interval_ms),
        );
        c.hold_addresses_on_shutdown = self.hold;
        c.preempt = self.preempt;
        c.preempt_delay = Duration::from_millis(self.preempt_delay_ms);
        c.garp.refresh = Duration::from_millis(self.refresh_ms);
        c.timer_expired_backup = self.timer_expired_backup.then_some(254);
        c
    }
}

struct Driver {
    t0: Instant,
    now: Instant,
    inst: Instance,
    /// Addresses installed, as the runtime would track them from the actions.
    holding: bool,
}

impl Driver {
    fn drain(&mut self) {
        while let Some(a) = self.inst.poll_action() {
            match a {
                Action::AddAddresses => self.holding = true,
                Action::RemoveAddresses => self.holding = false,
                _ => {}
            }
        }
    }

    /// Fire every timer due at or before `to`, each at its deadline, checking that the
    /// engine moves past every deadline it handled.
    fn advance(&mut self, to: Instant) -> Result<(), TestCaseError> {
        while let Some(t) = self.inst.poll_timeout() {
            if t > to {
                break;
            }
            let at = t.max(self.now);
            self.now = at;
            self.inst.handle_timeout(at);
            self.drain();
            let next = self.inst.poll_timeout();
            prop_assert!(
                next.is_none_or(|n| n > at),
                "poll_timeout {:?} not after handle_timeout({:?}) in {}",
                next.map(|n| n - self.t0),
                at - self.t0,
                self.inst.state()
            );
        }
        self.now = to;
        Ok(())
    }

    fn input(&mut self, ev: &Ev) {
        let now = self.now;
        let cfg = self.inst.config().clone();
        match *ev {
            Ev::Wait(_) => {}
            Ev::Startup => self.inst.startup(now),
            Ev::Shutdown => self.inst.shutdown(now),
            Ev::Fault(on) => self.inst.set_fault(now, on),
            Ev::Advert { peer, priority } => {
                let src: IpAddr = presets::ipv4(20 + peer);
                let dst = cfg.advert_group();
                let adv = Advert {
                    version: cfg.version,
                    vrid: cfg.vrid,
                    priority,
                    interval_cs: (cfg.advert_interval.as_millis() / 10) as u16,
                    addresses: cfg.addresses.clone(),
                    auth: Auth::None,
                };
                let payload = adv.encode(src, dst, ChecksumVariant::PseudoHeader);
                let meta = RxMeta { src, dst, ttl: 255 };
                self.inst.handle_packet(now, &meta, &payload);
            }
            Ev::Adjust(a) => self.inst.set_priority_adjustment(now, a),
            Ev::SyncMaster => self.inst.sync_to_master(now),
            Ev::SyncBackup => self.inst.sync_to_backup(now),
            Ev::Reconfigure {
                refresh_ms,
                preempt,
            } => {
                let mut c = cfg;
                c.garp.refresh = Duration::from_millis(u64::from(refresh_ms));
                c.preempt = preempt;
                self.inst.reconfigure(c).expect("same identity");
            }
        }
        self.drain();
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// After `handle_timeout(now)`, `poll_timeout()` is later than `now` or `None`, in
    /// every state and after any sequence of inputs; and once the engine has no timers
    /// left outside MASTER, it holds no addresses (the shutdown hold always ends).
    #[test]
    fn poll_timeout_never_repeats_a_past_deadline(
        setup in arb_setup(),
        evs in proptest::collection::vec(arb_ev(), 1..60),
    ) {
        let t0 = Instant::now();
        let mut d = Driver { t0, now: t0, inst: Instance::new(setup.cfg()), holding: false };
        for ev in &evs {
            let to = d.now + match ev {
                Ev::Wait(ms) => Duration::from_millis(u64::from(*ms)),
                _ => Duration::from_micros(300),
            };
            d.advance(to)?;
            d.input(ev);
            // A runtime calls handle_timeout whenever poll_timeout is not in the future.
            d.advance(d.now)?;
        }
        // Run out every remaining timer of a router that has left the protocol.
        if matches!(d.inst.state(), State::Initialize | State::Fault) {
            d.advance(d.now + Duration::from_secs(10))?;
            prop_assert_eq!(d.inst.poll_timeout(), None);
            prop_assert!(!d.holding, "addresses still held in {}", d.inst.state());
        }
    }
}
