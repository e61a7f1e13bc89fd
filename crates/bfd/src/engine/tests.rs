//! Unit tests of the session engine, by RFC 5880 section.

use super::*;
use crate::wire::{decode, AuthSection};

const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;
const LOCAL: u32 = 0x1111;
const REMOTE: u32 = 0x2222;

fn meta255() -> RxMeta {
    RxMeta { ttl: Some(255) }
}

/// A packet from the peer.
fn peer(state: State, your: u32) -> ControlPacket {
    ControlPacket {
        diag: Diagnostic::None,
        state,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: REMOTE,
        your_discriminator: your,
        desired_min_tx: 20_000,
        required_min_rx: 30_000,
        required_min_echo_rx: 0,
        auth: None,
    }
}

fn rx(s: &mut Session, now: Micros, p: &ControlPacket) {
    s.handle_packet(now, meta255(), &p.encode());
}

/// Drain: (packets sent, state changes).
fn drain(s: &mut Session) -> (Vec<ControlPacket>, Vec<Change>) {
    let mut sent = Vec::new();
    let mut changes = Vec::new();
    while let Some(a) = s.poll_action() {
        match a {
            Action::Send { packet } => sent.push(decode(&packet).expect("we send valid packets")),
            Action::StateChange { from, to, diag } => changes.push((from, to, diag)),
        }
    }
    (sent, changes)
}

fn session(cfg: SessionConfig) -> Session {
    Session::new(cfg).unwrap()
}

/// Run timers up to `until`; returns the packets sent with their times.
fn run_until(s: &mut Session, until: Micros) -> Vec<(Micros, ControlPacket)> {
    run(s, until).0
}

type Change = (State, State, Diagnostic);

/// Run timers up to `until`; returns the packets sent and the state changes.
fn run(s: &mut Session, until: Micros) -> (Vec<(Micros, ControlPacket)>, Vec<Change>) {
    let mut out = Vec::new();
    let mut changes = Vec::new();
    while let Some(t) = s.poll_timeout() {
        if t > until {
            break;
        }
        s.handle_timeout(t);
        assert!(
            s.poll_timeout().is_none_or(|n| n > t),
            "deadline {t} returned again"
        );
        let (sent, ch) = drain(s);
        out.extend(sent.into_iter().map(|p| (t, p)));
        changes.extend(ch);
    }
    (out, changes)
}

/// Bring a session Up through Down → Init → Up against a scripted peer.
fn up_session(cfg: SessionConfig) -> Session {
    let mut s = session(cfg);
    s.start(0);
    rx(&mut s, 10, &peer(State::Down, 0));
    rx(&mut s, 20, &peer(State::Up, LOCAL));
    assert_eq!(s.state(), State::Up);
    drain(&mut s);
    s
}

#[test]
fn config_errors() {
    let mut c = SessionConfig::single_hop(0);
    assert_eq!(
        Session::new(c.clone()).err(),
        Some(ConfigError::ZeroDiscriminator)
    );
    c.local_discriminator = 1;
    c.detect_mult = 0;
    assert_eq!(
        Session::new(c.clone()).err(),
        Some(ConfigError::ZeroDetectMult)
    );
    c.detect_mult = 3;
    c.desired_min_tx = 0;
    assert_eq!(Session::new(c).err(), Some(ConfigError::ZeroDesiredMinTx));
}

/// §6.8.1 initial values; §6.8.3 slow Desired Min TX while not Up; §4.1 fields.
#[test]
fn rfc5880_6_8_1_initial_packet() {
    let mut s = session(SessionConfig::single_hop(LOCAL));
    assert_eq!(s.poll_timeout(), None, "nothing before start");
    s.start(5);
    assert_eq!(s.poll_timeout(), Some(5), "an active session sends at once");
    let sent = run_until(&mut s, 5);
    assert_eq!(sent.len(), 1);
    let p = &sent[0].1;
    assert_eq!(p.state, State::Down);
    assert_eq!(p.diag, Diagnostic::None);
    assert_eq!(p.my_discriminator, LOCAL);
    assert_eq!(p.your_discriminator, 0);
    assert_eq!(p.desired_min_tx, 1_000_000);
    assert_eq!(p.required_min_rx, 10_000);
    assert_eq!(p.required_min_echo_rx, 0);
    assert_eq!(p.detect_mult, 5);
    assert!(!p.poll && !p.final_ && !p.demand && p.auth.is_none());
    assert_eq!(s.remote_discriminator(), 0);
    assert_eq!(s.detection_time(), None);
}

/// §6.2 / §6.8.6: Down → Init on Down, Init → Up on Init/Up, Down → Up on Init.
#[test]
fn rfc5880_6_2_three_way_handshake() {
    let mut s = session(SessionConfig::single_hop(LOCAL));
    s.start(0);
    drain(&mut s);
    rx(&mut s, 10, &peer(State::Down, 0));
    assert_eq!(s.state(), State::Init);
    assert_eq!(s.remote_discriminator(), REMOTE);
    rx(&mut s, 20, &peer(State::Up, LOCAL));
    assert_eq!(s.state(), State::Up);
    let (_, changes) = drain(&mut s);
    assert_eq!(
        changes,
        vec![
            (State::Down, State::Init, Diagnostic::None),
            (State::Init, State::Up, Diagnostic::None)
        ]
    );
    assert_eq!(s.stats().ups, 1);

    let mut s = session(SessionConfig::single_hop(LOCAL));
    s.start(0);
    rx(&mut s, 10, &peer(State::Init, LOCAL));
    assert_eq!(s.state(), State::Up, "Down → Up on a peer in Init");
    // Up stays Up on Init/Up.
    rx(&mut s, 20, &peer(State::Init, LOCAL));
    rx(&mut s, 30, &peer(State::Up, LOCAL));
    assert_eq!(s.state(), State::Up);
    // Down ignores a peer in Up (it must go through Init).
    let mut s = session(SessionConfig::single_hop(LOCAL));
    s.start(0);
    rx(&mut s, 10, &peer(State::Up, LOCAL));
    assert_eq!(s.state(), State::Down);
}

/// §6.8.6: Up and the peer says Down or AdminDown → Down with diagnostic 3.
#[test]
fn rfc5880_6_8_6_neighbor_signaled_down() {
    for st in [State::Down, State::AdminDown] {
        let mut s = up_session(SessionConfig::single_hop(LOCAL));
        rx(&mut s, 100, &peer(st, LOCAL));
        assert_eq!(s.state(), State::Down, "peer {st}");
        assert_eq!(s.local_diag(), Diagnostic::NeighborSignaledDown);
        let (_, changes) = drain(&mut s);
        assert_eq!(
            changes,
            vec![(State::Up, State::Down, Diagnostic::NeighborSignaledDown)]
        );
        assert_eq!(s.stats().downs, 1);
    }
    // Init and the peer says AdminDown → Down too.
    let mut s = session(SessionConfig::single_hop(LOCAL));
    s.start(0);
    rx(&mut s, 10, &peer(State::Down, 0));
    rx(&mut s, 20, &peer(State::AdminDown, LOCAL));
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diagnostic::NeighborSignaledDown);
}

/// §6.8.6 receive checks, each counted under its reason.
#[test]
fn rfc5880_6_8_6_receive_checks_counted() {
    let mut s = session(SessionConfig::single_hop(LOCAL));
    s.start(0);
    // Codec-level checks.
    s.handle_packet(1, meta255(), &[0x20; 10]);
    let mut bad = peer(State::Down, 0).encode();
    bad[0] = 0x40;
    s.handle_packet(1, meta255(), &bad);
    let mut bad = peer(State::Down, 0).encode();
    bad[2] = 0;
    s.handle_packet(1, meta255(), &bad);
    let mut bad = peer(State::Down, 0).encode();
    bad[1] |= 0x01;
    s.handle_packet(1, meta255(), &bad);
    s.handle_packet(1, meta255(), &peer(State::Up, 0).encode());
    // Session checks.
    rx(&mut s, 1, &peer(State::Down, 0xdead));
    let mut auth = peer(State::Down, 0);
    auth.auth = Some(AuthSection {
        auth_type: 1,
        data: vec![1, b'x'],
    });
    rx(&mut s, 1, &auth);
    s.handle_packet(1, RxMeta { ttl: Some(254) }, &peer(State::Down, 0).encode());
    let d = &s.stats().drops;
    for (r, n) in [
        (DropReason::Truncated, 1),
        (DropReason::BadVersion, 1),
        (DropReason::ZeroDetectMult, 1),
        (DropReason::Multipoint, 1),
        (DropReason::ZeroYourDiscriminator, 1),
        (DropReason::DiscriminatorMismatch, 1),
        (DropReason::Authenticated, 1),
        (DropReason::BadTtl, 1),
    ] {
        assert_eq!(d.get(r), n, "{r}");
    }
    assert_eq!(d.total(), 8);
    assert_eq!(s.stats().packets_received, 0);
    assert_eq!(s.state(), State::Down);
    assert_eq!(
        s.remote_discriminator(),
        0,
        "dropped packets change nothing"
    );
    // An unknown TTL is not held against the packet; 255 passes.
    s.handle_packet(2, RxMeta { ttl: None }, &peer(State::Down, 0).encode());
    assert_eq!(s.state(), State::Init);
}

/// RFC 5881 §5 vs RFC 5883: multihop has no TTL 255 rule; ports differ.
#[test]
fn rfc5881_5883_ttl_and_ports() {
    let mut s = session(SessionConfig::multi_hop(LOCAL));
    s.start(0);
    s.handle_packet(1, RxMeta { ttl: Some(250) }, &peer(State::Down, 0).encode());
    assert_eq!(s.state(), State::Init);
    assert_eq!(s.config().hop.dst_port(), 4784);
    assert_eq!(Hop::Single.dst_port(), 3784);
    // keepalived-style max_hops: the caller sets the minimum.
    let mut c = SessionConfig::multi_hop(LOCAL);
    c.min_rx_ttl = Some(253);
    let mut s = session(c);
    s.handle_packet(1, RxMeta { ttl: Some(252) }, &peer(State::Down, 0).encode());
    assert_eq!(s.stats().drops.get(DropReason::BadTtl), 1);
    for r in [0u32, 1, 16383, 16384, u32::MAX] {
        assert!(crate::SOURCE_PORTS.contains(&crate::source_port(r)));
    }
    assert_eq!(crate::source_port(0), 49152);
    assert_eq!(crate::source_port(16383), 65535);
    // Every port of the range once, starting at the session's own.
    let ports: Vec<u16> = s.source_ports().collect();
    assert_eq!(ports.len(), 16384);
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 16384);
    assert_eq!((sorted[0], sorted[16383]), (49152, 65535));
    let other = session(SessionConfig::multi_hop(LOCAL + 1));
    assert_ne!(other.source_ports().next(), s.source_ports().next());
}

/// §6.8.4: Detection Time = the peer's Detect Mult × max(our Required Min RX, its
/// Desired Min TX); expiry in Up → Down with diagnostic 1 and RemoteDiscr zeroed.
#[test]
fn rfc5880_6_8_4_detection_time() {
    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    // Peer: mult 3, desired tx 20 ms; ours rx 10 ms → 60 ms.
    assert_eq!(s.detection_time(), Some(60 * MS));
    let mut p = peer(State::Up, LOCAL);
    p.desired_min_tx = 5_000;
    p.detect_mult = 4;
    rx(&mut s, 1000, &p);
    assert_eq!(s.detection_time(), Some(40 * MS), "4 × max(10 ms, 5 ms)");
    let last = 1000;
    run_until(&mut s, last + 40 * MS - 1);
    assert_eq!(s.state(), State::Up, "not a microsecond early");
    let (_, changes) = run(&mut s, last + 40 * MS);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(s.remote_discriminator(), 0);
    assert_eq!(
        changes,
        vec![(
            State::Up,
            State::Down,
            Diagnostic::ControlDetectionTimeExpired
        )]
    );
    // The next packet carries the diagnostic and the slow rate.
    let sent = run_until(&mut s, last + 2 * SEC);
    let p = &sent[0].1;
    assert_eq!(p.state, State::Down);
    assert_eq!(p.diag, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(p.your_discriminator, 0);
    assert_eq!(p.desired_min_tx, 1_000_000);
}

/// §6.8.1: a Detection Time of silence in Down (or Init) also clears RemoteDiscr; Init
/// falls back to Down with diagnostic 1.
#[test]
fn rfc5880_6_8_1_remote_discr_cleared_in_init() {
    let mut s = session(SessionConfig::single_hop(LOCAL));
    s.start(0);
    rx(&mut s, 10, &peer(State::Down, 0));
    assert_eq!(s.state(), State::Init);
    // While not Up the peer advertises its slow rate; here 20 ms × 3.
    let dt = s.detection_time().unwrap();
    run_until(&mut s, 10 + dt);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(s.remote_discriminator(), 0);
}

/// §6.8.3 / §6.8.7: the slow rate while not Up, whatever `min_tx` says; `idle_tx`
/// below 1 s is raised to 1 s; jitter 75–100 %.
#[test]
fn rfc5880_6_8_3_slow_rate_while_down() {
    for (idle, expect) in [(100_000u32, SEC), (2 * SEC as u32, 2 * SEC)] {
        let mut c = SessionConfig::single_hop(LOCAL);
        c.idle_tx = idle;
        let mut s = session(c);
        s.start(0);
        let sent = run_until(&mut s, 60 * SEC);
        let gaps: Vec<u64> = sent.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.len() > 20);
        for g in &gaps {
            assert!(
                *g >= expect * 3 / 4 && *g <= expect,
                "gap {g} for idle {idle}"
            );
        }
        assert!(sent.iter().all(|(_, p)| p.desired_min_tx == expect as u32));
    }
}

/// §6.8.7: jitter 75–100 %, 75–90 % with Detect Mult 1; reproducible by seed.
#[test]
fn rfc5880_6_8_7_jitter() {
    let gaps = |mult: u8, seed: u64| {
        let mut c = SessionConfig::single_hop(LOCAL);
        c.detect_mult = mult;
        c.seed = seed;
        let mut s = up_session(c);
        // Answer the Poll so the fast rate is in force.
        let mut f = peer(State::Up, LOCAL);
        f.final_ = true;
        f.required_min_rx = 10_000;
        rx(&mut s, 30, &f);
        drain(&mut s);
        let sent = run_until(&mut s, 30 + 50 * MS);
        // Keep the session alive: no expiry within 50 ms (peer detect 60 ms).
        sent.windows(2).map(|w| w[1].0 - w[0].0).collect::<Vec<_>>()
    };
    let g = gaps(3, 7);
    assert!(g.len() >= 4);
    assert!(g.iter().all(|g| (7_500..=10_000).contains(g)), "{g:?}");
    let mut all = Vec::new();
    for seed in 0..40 {
        all.extend(gaps(3, seed));
    }
    assert!(all.iter().any(|g| *g > 9_500), "reaches near 100 %");
    assert!(all.iter().any(|g| *g < 8_000), "reaches near 75 %");
    let mut one = Vec::new();
    for seed in 0..40 {
        one.extend(gaps(1, seed));
    }
    assert!(one.iter().all(|g| (7_500..=9_000).contains(g)), "{one:?}");
    assert_eq!(gaps(3, 7), gaps(3, 7), "same seed, same schedule");
    assert_ne!(gaps(3, 7), gaps(3, 8));
}

/// §6.5 / §6.8.3: coming Up changes Desired Min TX from the slow rate → Poll until a
/// Final; the faster rate (a decrease) applies at once.
#[test]
fn rfc5880_6_5_poll_sequence_on_up() {
    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    assert!(s.poll_pending());
    assert_eq!(s.stats().polls_started, 1);
    // Peer's Required Min RX is 30 ms: the agreed TX interval.
    assert_eq!(s.tx_interval(), 30 * MS);
    // The peer's Detection Time of us is 60 ms: stay within it.
    let sent = run_until(&mut s, 50 * MS);
    assert!(!sent.is_empty());
    for (_, p) in &sent {
        assert!(p.poll && !p.final_);
        assert_eq!(p.state, State::Up);
        assert_eq!(p.desired_min_tx, 10_000);
    }
    let mut f = peer(State::Up, LOCAL);
    f.final_ = true;
    rx(&mut s, 50 * MS, &f);
    assert!(!s.poll_pending());
    assert_eq!(s.stats().polls_completed, 1);
    let sent = run_until(&mut s, 100 * MS);
    assert!(sent.iter().all(|(_, p)| !p.poll));
}

/// §6.8.7: a Poll is answered at once with F (and never P|F together).
#[test]
fn rfc5880_6_8_7_final_at_once() {
    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    assert!(s.poll_pending());
    let mut p = peer(State::Up, LOCAL);
    p.poll = true;
    rx(&mut s, 500, &p);
    let (sent, _) = drain(&mut s);
    assert_eq!(sent.len(), 1, "answered without waiting for the timer");
    assert!(sent[0].final_ && !sent[0].poll);
    // Our own Poll goes out again with the next periodic packet.
    let sent = run_until(&mut s, 500 + 40 * MS);
    assert!(sent[0].1.poll && !sent[0].1.final_);
}

/// §6.8.3: a slower TX and a faster RX wait for the Final; the peer learns them at
/// once.
#[test]
fn rfc5880_6_8_3_changes_wait_for_final() {
    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    let mut f = peer(State::Up, LOCAL);
    f.final_ = true;
    f.required_min_rx = 1_000;
    f.desired_min_tx = 1_000;
    rx(&mut s, 30, &f);
    assert!(!s.poll_pending());
    assert_eq!(s.tx_interval(), 10 * MS);
    assert_eq!(s.detection_time(), Some(30 * MS), "3 × max(10 ms, 1 ms)");
    drain(&mut s);

    s.set_intervals(40, 50_000, 2_000, 5).unwrap();
    assert!(s.poll_pending());
    assert_eq!(s.tx_interval(), 10 * MS, "slower TX waits");
    assert_eq!(s.detection_time(), Some(30 * MS), "faster RX waits");
    let sent = run_until(&mut s, 40 + 20 * MS);
    assert!(sent
        .iter()
        .all(|(_, p)| p.poll && p.desired_min_tx == 50_000 && p.required_min_rx == 2_000));
    let mut f2 = f.clone();
    rx(&mut s, 40 + 20 * MS, &{
        f2.final_ = true;
        f2
    });
    assert!(!s.poll_pending());
    assert_eq!(s.tx_interval(), 50 * MS);
    assert_eq!(s.detection_time(), Some(6 * MS), "3 × max(2 ms, 1 ms)");
    // A faster TX applies at once.
    s.set_intervals(30 * MS, 5_000, 2_000, 5).unwrap();
    assert_eq!(s.tx_interval(), 5 * MS);
    assert!(s.set_intervals(0, 0, 1, 5).is_err());
}

/// §6.1 / §6.8.7: a passive session sends nothing until the peer is heard, then
/// answers at once; silent again after RemoteDiscr is cleared.
#[test]
fn rfc5880_6_1_passive() {
    let mut c = SessionConfig::single_hop(LOCAL);
    c.passive = true;
    let mut s = session(c);
    s.start(0);
    assert_eq!(s.poll_timeout(), None);
    assert!(run_until(&mut s, 10 * SEC).is_empty());
    rx(&mut s, 10 * SEC, &peer(State::Down, 0));
    let sent = run_until(&mut s, 10 * SEC);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.state, State::Init);
    assert_eq!(sent[0].1.your_discriminator, REMOTE);
    // Silence: Init → Down, RemoteDiscr 0, and no more packets.
    let sent = run_until(&mut s, 30 * SEC);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.remote_discriminator(), 0);
    let last = sent.last().map(|(t, _)| *t).unwrap_or(10 * SEC);
    assert!(last <= 10 * SEC + s.config().idle_tx as u64 * 4);
    assert_eq!(s.poll_timeout(), None);
}

/// §6.8.7: no periodic packets while the peer's Required Min RX is 0, or while its
/// demand mode is active (both Up, no Poll running).
#[test]
fn rfc5880_6_8_7_no_tx_rules() {
    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    let mut p = peer(State::Up, LOCAL);
    p.final_ = true;
    p.required_min_rx = 0;
    rx(&mut s, 100, &p);
    assert!(run_until(&mut s, 50 * MS).is_empty());
    assert_eq!(s.state(), State::Up, "the peer still sends");

    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    let mut p = peer(State::Up, LOCAL);
    p.demand = true;
    rx(&mut s, 100, &p);
    // Our Poll is still running: we keep sending.
    assert!(!run_until(&mut s, 40 * MS).is_empty());
    p.final_ = true;
    rx(&mut s, 40 * MS, &p);
    drain(&mut s);
    assert!(run_until(&mut s, 50 * MS).is_empty());
    // A Poll from the peer is answered even so.
    p.final_ = false;
    p.poll = true;
    rx(&mut s, 50 * MS, &p);
    let (sent, _) = drain(&mut s);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].final_);
}

/// §6.8.16: AdminDown with diagnostic 7, told to the peer for a Detection Time, then
/// silence; received packets dropped; back to Down on release.
#[test]
fn rfc5880_6_8_16_admin_down() {
    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    s.set_admin_down(1_000, true);
    assert_eq!(s.state(), State::AdminDown);
    assert_eq!(s.local_diag(), Diagnostic::AdministrativelyDown);
    assert!(s.poll_timeout().is_some(), "still telling the peer");
    let (_, changes) = drain(&mut s);
    assert_eq!(
        changes,
        vec![(
            State::Up,
            State::AdminDown,
            Diagnostic::AdministrativelyDown
        )]
    );
    let sent = run_until(&mut s, 10 * SEC);
    assert!(!sent.is_empty());
    assert!(sent
        .iter()
        .all(|(_, p)| p.state == State::AdminDown && p.diag == Diagnostic::AdministrativelyDown));
    // Until one of the peer's Detection Times (5 × 30 ms) has passed.
    let last = sent.last().unwrap().0;
    assert!(last < 1_000 + 5 * 30 * MS, "{last}");
    assert_eq!(s.poll_timeout(), None);
    rx(&mut s, 11 * SEC, &peer(State::Up, LOCAL));
    assert_eq!(s.stats().drops.get(DropReason::AdminDown), 1);
    assert_eq!(s.state(), State::AdminDown);

    s.set_admin_down(12 * SEC, false);
    assert_eq!(s.state(), State::Down);
    let sent = run_until(&mut s, 12 * SEC);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.state, State::Down);
    assert_eq!(sent[0].1.your_discriminator, 0);
}

#[derive(Debug, Clone)]
enum Ev {
    Rx(u8, bool, bool, bool, u32, u32, u8),
    Timeout,
    Admin(bool),
    Intervals(u32, u32, u8),
    Wait(u32),
}

fn arb_ev() -> impl proptest::strategy::Strategy<Value = Ev> {
    use proptest::prelude::*;
    prop_oneof![
        (
            0u8..4,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u32..3_000_000,
            0u32..3_000_000,
            1u8..6
        )
            .prop_map(|(st, ours, poll, fin, tx, rx, m)| Ev::Rx(st, ours, poll, fin, tx, rx, m)),
        Just(Ev::Timeout),
        Just(Ev::Timeout),
        Just(Ev::Timeout),
        any::<bool>().prop_map(Ev::Admin),
        (1u32..2_000_000, 0u32..2_000_000, 1u8..6).prop_map(|(a, b, c)| Ev::Intervals(a, b, c)),
        (0u32..3_000_000).prop_map(Ev::Wait),
    ]
}

proptest::proptest! {
    /// Whatever happens: no panic, a handled deadline never comes back, only the RFC's
    /// transitions, and every packet sent decodes with P and F never both set.
    #[test]
    fn timers_and_transitions(evs in proptest::collection::vec(arb_ev(), 1..80), passive: bool, seed: u64) {
        let mut c = SessionConfig::single_hop(LOCAL);
        c.passive = passive;
        c.seed = seed;
        let mut s = session(c);
        let mut now = 0u64;
        s.start(now);
        for ev in evs {
            match ev {
                Ev::Rx(st, ours, poll, fin, tx, rxi, m) => {
                    let mut p = peer(State::from_bits(st), if ours { LOCAL } else { 0 });
                    p.poll = poll;
                    p.final_ = fin && !poll;
                    p.desired_min_tx = tx;
                    p.required_min_rx = rxi;
                    p.detect_mult = m;
                    rx(&mut s, now, &p);
                }
                Ev::Timeout => {
                    if let Some(t) = s.poll_timeout() {
                        now = now.max(t);
                        s.handle_timeout(now);
                        proptest::prop_assert!(s.poll_timeout().is_none_or(|n| n > now));
                    }
                }
                Ev::Admin(on) => s.set_admin_down(now, on),
                Ev::Intervals(tx, rxi, m) => { let _ = s.set_intervals(now, tx, rxi, m); }
                Ev::Wait(d) => {
                    now += u64::from(d);
                    s.handle_timeout(now);
                    proptest::prop_assert!(s.poll_timeout().is_none_or(|n| n > now));
                }
            }
            while let Some(a) = s.poll_action() {
                match a {
                    Action::Send { packet } => {
                        let p = decode(&packet).unwrap();
                        proptest::prop_assert!(!(p.poll && p.final_));
                        proptest::prop_assert_eq!(p.state, s.state());
                    }
                    Action::StateChange { from, to, .. } => {
                        let ok = matches!(
                            (from, to),
                            (State::Down, State::Init | State::Up | State::AdminDown)
                                | (State::Init, State::Up | State::Down | State::AdminDown)
                                | (State::Up, State::Down | State::AdminDown)
                                | (State::AdminDown, State::Down)
                        );
                        proptest::prop_assert!(ok, "{from} -> {to}");
                    }
                }
            }
        }
    }
}

/// The single entry point dispatches like the methods.
#[test]
fn events_dispatch() {
    let mut s = session(SessionConfig::single_hop(LOCAL));
    s.handle(0, Event::Start);
    assert_eq!(s.poll_timeout(), Some(0));
    s.handle(0, Event::Timeout);
    assert_eq!(drain(&mut s).0.len(), 1);
    s.handle(
        5,
        Event::Packet {
            meta: meta255(),
            payload: peer(State::Down, 0).encode(),
        },
    );
    assert_eq!(s.state(), State::Init);
    s.handle(6, Event::AdminDown(true));
    assert_eq!(s.state(), State::AdminDown);
    s.handle(7, Event::AdminDown(false));
    assert_eq!(s.state(), State::Down);
}

/// §6.8.7: never faster than the peer's Required Min RX, also right after it raised it;
/// going Down keeps the packet already due at the fast rate (the peer hears it soon).
#[test]
fn rfc5880_6_8_7_respects_remote_min_rx() {
    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    let sent = run_until(&mut s, 25 * MS);
    let last = sent.last().unwrap().0;
    let mut p = peer(State::Up, LOCAL);
    p.final_ = true;
    p.required_min_rx = 500_000;
    rx(&mut s, last + 1, &p);
    let sent = run_until(&mut s, last + 2 * SEC);
    assert!(sent[0].0 >= last + 375 * MS, "{} after {last}", sent[0].0);
    for w in sent.windows(2) {
        assert!(w[1].0 - w[0].0 >= 375 * MS);
    }

    let mut s = up_session(SessionConfig::single_hop(LOCAL));
    let mut f = peer(State::Up, LOCAL);
    f.final_ = true;
    rx(&mut s, 30, &f);
    let sent = run_until(&mut s, 20 * MS);
    let last = sent.last().unwrap().0;
    let due = s.poll_timeout().unwrap();
    assert!(due <= last + 30 * MS);
    rx(&mut s, last + 1, &peer(State::Down, LOCAL));
    assert_eq!(s.state(), State::Down);
    assert_eq!(
        s.poll_timeout(),
        Some(due),
        "the Down goes out when already due"
    );
    let sent = run_until(&mut s, due);
    assert_eq!(sent[0].1.state, State::Down);
    assert_eq!(sent[0].1.diag, Diagnostic::NeighborSignaledDown);
}
