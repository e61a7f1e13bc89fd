//! Two BFD engines on a virtual wire, in virtual time (microseconds).

use proptest::prelude::*;
use vipd_bfd::engine::Micros;
use vipd_bfd::wire::decode;
use vipd_bfd::{Action, Diagnostic, RxMeta, Session, SessionConfig, State};

const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;
const DELAY: u64 = 100;

type Change = (Micros, State, State, Diagnostic);

struct Wire {
    s: [Session; 2],
    now: Micros,
    in_flight: Vec<(Micros, usize, Vec<u8>)>,
    /// Drop what this side sends (a dead sender or a cut link in one direction).
    mute: [bool; 2],
    /// Decides per packet (side, index of that side's packet) whether it is lost.
    loss: Box<dyn FnMut(usize, u64) -> bool>,
    sent_count: [u64; 2],
    /// Delivery times of each side's packets at the other side.
    delivered: [Vec<Micros>; 2],
    /// Per receiving side: delivery time and the receiver's Detection Time just after.
    rx_log: [Vec<(Micros, Option<u64>)>; 2],
    /// Packets sent by each side, decoded, with their times.
    sent: [Vec<(Micros, vipd_bfd::ControlPacket)>; 2],
    changes: [Vec<Change>; 2],
}

impl Wire {
    fn new(a: SessionConfig, b: SessionConfig) -> Wire {
        Wire {
            s: [Session::new(a).unwrap(), Session::new(b).unwrap()],
            now: 0,
            in_flight: Vec::new(),
            mute: [false; 2],
            loss: Box::new(|_, _| false),
            sent_count: [0; 2],
            delivered: [Vec::new(), Vec::new()],
            rx_log: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
            changes: [Vec::new(), Vec::new()],
        }
    }

    fn pair() -> Wire {
        Wire::pair_with(1, 2, 5)
    }

    fn pair_with(seed_a: u64, seed_b: u64, mult: u8) -> Wire {
        let mut a = SessionConfig::single_hop(0xa);
        a.seed = seed_a;
        a.detect_mult = mult;
        let mut b = SessionConfig::single_hop(0xb);
        b.seed = seed_b;
        b.detect_mult = mult;
        Wire::new(a, b)
    }

    fn drain(&mut self, i: usize) {
        while let Some(a) = self.s[i].poll_action() {
            match a {
                Action::Send { packet } => {
                    self.sent[i].push((self.now, decode(&packet).unwrap()));
                    let n = self.sent_count[i];
                    self.sent_count[i] += 1;
                    if !self.mute[i] && !(self.loss)(i, n) {
                        self.in_flight.push((self.now + DELAY, 1 - i, packet));
                    }
                }
                Action::StateChange { from, to, diag } => {
                    self.changes[i].push((self.now, from, to, diag))
                }
            }
        }
    }

    fn run_until(&mut self, until: Micros) {
        loop {
            let next = [
                self.s[0].poll_timeout(),
                self.s[1].poll_timeout(),
                self.in_flight.iter().map(|p| p.0).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(t) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            assert!(t >= self.now, "time runs forward");
            self.now = t;
            let mut due: Vec<_> = Vec::new();
            self.in_flight.retain(|p| {
                if p.0 <= t {
                    due.push(p.clone());
                    false
                } else {
                    true
                }
            });
            for (_, to, bytes) in due {
                self.delivered[1 - to].push(t);
                self.s[to].handle_packet(t, RxMeta { ttl: Some(255) }, &bytes);
                self.rx_log[to].push((t, self.s[to].detection_time()));
                self.drain(to);
            }
            for i in 0..2 {
                if self.s[i].poll_timeout().is_some_and(|d| d <= t) {
                    self.s[i].handle_timeout(t);
                    assert!(self.s[i].poll_timeout().is_none_or(|d| d > t));
                    self.drain(i);
                }
            }
        }
    }

    fn start(&mut self, i: usize) {
        self.s[i].start(self.now);
        self.drain(i);
    }

    /// Both start together, each sends Down, so each goes Down → Init → Up.
    fn both_up(&mut self) {
        self.start(0);
        self.start(1);
        self.run_until(3 * SEC);
        assert_eq!(self.s[0].state(), State::Up);
        assert_eq!(self.s[1].state(), State::Up);
    }
}

fn states(c: &[Change]) -> Vec<(State, State, Diagnostic)> {
    c.iter().map(|c| (c.1, c.2, c.3)).collect()
}

#[test]
fn both_come_up_through_init() {
    let mut w = Wire::pair();
    w.both_up();
    for i in 0..2 {
        assert_eq!(
            states(&w.changes[i]),
            vec![
                (State::Down, State::Init, Diagnostic::None),
                (State::Init, State::Up, Diagnostic::None)
            ],
            "side {i}"
        );
        // Up within about one slow-rate interval after the first packets.
        assert!(w.changes[i][1].0 < 2 * SEC);
        // The Poll for the fast rate completed; keepalived's defaults apply.
        assert!(!w.s[i].poll_pending());
        assert_eq!(w.s[i].tx_interval(), 10 * MS);
        assert_eq!(w.s[i].detection_time(), Some(50 * MS));
    }
    // At the fast rate now: 75–100 % of 10 ms between packets.
    let gaps: Vec<u64> = w.sent[0]
        .windows(2)
        .filter(|p| p[0].0 > 2 * SEC)
        .map(|p| p[1].0 - p[0].0)
        .collect();
    assert!(gaps.len() > 50);
    assert!(
        gaps.iter().all(|g| (7_500..=10_000).contains(g)),
        "{gaps:?}"
    );
}

/// One side starts a while after the other: the first hears Init and goes straight Up
/// (§6.8.6 Down + Init → Up), the second passes through Init.
#[test]
fn staggered_start() {
    let mut w = Wire::pair();
    w.start(0);
    w.run_until(300 * MS);
    w.start(1);
    w.run_until(3 * SEC);
    assert_eq!(
        states(&w.changes[0]),
        vec![(State::Down, State::Up, Diagnostic::None)]
    );
    assert_eq!(
        states(&w.changes[1]),
        vec![
            (State::Down, State::Init, Diagnostic::None),
            (State::Init, State::Up, Diagnostic::None)
        ]
    );
}

#[test]
fn silent_peer_detected_within_detection_time() {
    let mut w = Wire::pair();
    w.both_up();
    let cut = w.now;
    w.mute[0] = true;
    w.run_until(cut + SEC);
    let last_heard = *w.delivered[0]
        .iter()
        .filter(|t| **t <= cut + DELAY)
        .max()
        .unwrap();
    let down = w.changes[1]
        .iter()
        .find(|c| c.2 == State::Down)
        .expect("B goes Down");
    assert_eq!(
        (down.1, down.3),
        (State::Up, Diagnostic::ControlDetectionTimeExpired)
    );
    assert_eq!(down.0 - last_heard, 50 * MS, "exactly one Detection Time");
    assert_eq!(w.s[1].remote_discriminator(), 0);
    // A hears B's Down and follows with diagnostic 3.
    let a_down = w.changes[0].iter().find(|c| c.2 == State::Down).unwrap();
    assert_eq!(a_down.3, Diagnostic::NeighborSignaledDown);
    assert!(a_down.0 - down.0 <= 10 * MS + DELAY);

    // Link back: both recover through Init.
    w.mute[0] = false;
    w.run_until(cut + 5 * SEC);
    assert_eq!(w.s[0].state(), State::Up);
    assert_eq!(w.s[1].state(), State::Up);
    assert_eq!(w.s[1].stats().ups, 2);
}

#[test]
fn poll_sequence_on_interval_change() {
    let mut w = Wire::pair();
    w.both_up();
    let t0 = w.now;
    let polls_before = w.s[1].stats().packets_sent;
    w.s[0].set_intervals(t0, 50_000, 10_000, 5).unwrap();
    w.drain(0);
    assert!(w.s[0].poll_pending());
    w.run_until(t0 + 200 * MS);
    assert!(!w.s[0].poll_pending());
    assert_eq!(w.s[0].stats().polls_completed, 2);
    // A's packets carried P until B's F, which came at once.
    let a_polls: Vec<_> = w.sent[0].iter().filter(|p| p.0 >= t0 && p.1.poll).collect();
    assert!(!a_polls.is_empty());
    let b_finals: Vec<_> = w.sent[1]
        .iter()
        .filter(|p| p.0 >= t0 && p.1.final_)
        .collect();
    assert_eq!(b_finals[0].0, a_polls[0].0 + DELAY);
    assert!(w.s[1].stats().packets_sent > polls_before);
    // B's Detection Time of A follows A's new rate; A sends at it.
    assert_eq!(w.s[1].detection_time(), Some(250 * MS));
    assert_eq!(w.s[0].tx_interval(), 50 * MS);
    w.run_until(t0 + 2 * SEC);
    let gaps: Vec<u64> = w.sent[0]
        .windows(2)
        .filter(|p| p[0].0 > t0 + 300 * MS)
        .map(|p| p[1].0 - p[0].0)
        .collect();
    assert!(gaps.len() > 20);
    assert!(
        gaps.iter().all(|g| (37_500..=50_000).contains(g)),
        "{gaps:?}"
    );
    for i in 0..2 {
        assert_eq!(
            w.changes[i].len(),
            2,
            "side {i}: no flap: {:?}",
            w.changes[i]
        );
    }
}

#[test]
fn loss_below_multiplier_does_not_flap() {
    let mut w = Wire::pair();
    // Three of every four packets lost, both ways: never multiplier (5) in a row.
    w.loss = Box::new(|_, n| n % 4 != 0);
    w.both_up_lossy();
    let up_at = w.now;
    w.run_until(up_at + 20 * SEC);
    for i in 0..2 {
        assert_eq!(w.s[i].state(), State::Up);
        assert_eq!(w.s[i].stats().downs, 0, "side {i} flapped");
    }

    // Control: six in a row lost does bring it down.
    let mut w = Wire::pair();
    w.both_up();
    let from = w.sent_count[0];
    w.loss = Box::new(move |side, n| side == 0 && n >= from && n < from + 6);
    let t = w.now;
    w.run_until(t + SEC);
    assert_eq!(w.s[1].stats().downs, 1);
}

impl Wire {
    /// Bring up under loss: the slow-rate handshake may take a few rounds.
    fn both_up_lossy(&mut self) {
        self.start(0);
        self.start(1);
        for _ in 0..60 {
            let t = self.now + SEC;
            self.run_until(t);
            if self.s[0].state() == State::Up && self.s[1].state() == State::Up {
                return;
            }
        }
        panic!("did not come up under loss");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Once Up, losing fewer packets in a row than the multiplier never flaps the
    /// session, whatever the jitter draws (both directions lossy).
    #[test]
    fn short_loss_runs_never_flap(
        seed_a: u64,
        seed_b: u64,
        mult in 1u8..6,
        runs in proptest::collection::vec(0u8..16, 400),
    ) {
        let mut w = Wire::pair_with(seed_a, seed_b, mult);
        w.both_up();
        let from = w.sent_count;
        // Per side, packet n (counted from `from`) is lost iff it falls inside one of
        // the loss runs: `r % mult` lost, then one delivered.
        let mut lost = [Vec::new(), Vec::new()];
        for (i, l) in lost.iter_mut().enumerate() {
            for (k, r) in runs.iter().enumerate() {
                let r = if (k + i) % 2 == 0 { *r } else { r / 2 };
                l.extend(std::iter::repeat_n(true, usize::from(r % mult)));
                l.push(false);
            }
        }
        w.loss = Box::new(move |side, n| {
            n >= from[side] && lost[side].get((n - from[side]) as usize).copied().unwrap_or(false)
        });
        let t = w.now;
        w.run_until(t + 2 * SEC);
        prop_assert_eq!(w.s[0].stats().downs, 0);
        prop_assert_eq!(w.s[1].stats().downs, 0);
    }

    /// Under any loss, a detection-time expiry happens exactly one Detection Time after
    /// the last packet received, never earlier (no false detection).
    #[test]
    fn expiry_is_exactly_one_detection_time_after_silence(
        seed_a: u64,
        seed_b: u64,
        mult in 1u8..6,
        loss_pct in 0u64..95,
        loss_seed: u64,
    ) {
        let mut w = Wire::pair_with(seed_a, seed_b, mult);
        let mut x = loss_seed | 1;
        w.loss = Box::new(move |_, _| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 100 < loss_pct
        });
        w.start(0);
        w.start(1);
        w.run_until(20 * SEC);
        for i in 0..2 {
            for c in w.changes[i].iter().filter(|c| c.3 == Diagnostic::ControlDetectionTimeExpired) {
                let (last, dt) = *w.rx_log[i].iter().rev().find(|r| r.0 < c.0).expect("heard before");
                prop_assert_eq!(Some(c.0 - last), dt, "side {} at {}", i, c.0);
            }
        }
    }
}
