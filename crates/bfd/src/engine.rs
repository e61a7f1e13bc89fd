//! One BFD session in asynchronous mode (RFC 5880 §6), sans-IO: the runtime passes the
//! current time (microseconds on any monotonic clock, [`Micros`]) with every call,
//! carries out the [`Action`]s drained with [`Session::poll_action`] and calls
//! [`Session::handle_timeout`] at [`Session::poll_timeout`].
//!
//! Timers: two deadline slots, each dispatched on its own — `tx` (periodic transmission,
//! §6.8.7) and `detect` (Detection Time, §6.8.4). [`Session::handle_timeout`] handles
//! every due slot and either clears it or moves it strictly past `now`, so a deadline in
//! the past is never returned twice.

use crate::wire::{self, ControlPacket, Diagnostic, DropCounters, DropReason, State};
use std::collections::VecDeque;

/// Microseconds on the caller's monotonic clock.
pub type Micros = u64;

/// RFC 5880 §6.8.3: while the session is not Up, Desired Min TX is at least one second.
pub const SLOW_TX: u32 = 1_000_000;

/// Single hop (RFC 5881) or multihop (RFC 5883).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    Single,
    Multi,
}

impl Hop {
    /// UDP destination port: 3784 single hop, 4784 multihop.
    pub fn dst_port(self) -> u16 {
        match self {
            Hop::Single => crate::PORT_SINGLE_HOP,
            Hop::Multi => crate::PORT_MULTI_HOP,
        }
    }
}

/// Everything the engine needs to know about one session. Intervals in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr, chosen by the caller: non-zero and unique among its sessions.
    pub local_discriminator: u32,
    /// bfd.DesiredMinTxInterval while Up (keepalived `min_tx`).
    pub desired_min_tx: u32,
    /// bfd.RequiredMinRxInterval (keepalived `min_rx`); 0: the peer must not send.
    pub required_min_rx: u32,
    /// Desired Min TX while not Up (keepalived `idle_tx`); raised to 1 s if below
    /// (RFC 5880 §6.8.3).
    pub idle_tx: u32,
    /// bfd.DetectMult (keepalived `multiplier`).
    pub detect_mult: u8,
    /// Passive role (§6.1): send nothing until the peer has been heard.
    pub passive: bool,
    pub hop: Hop,
    /// TTL / hop limit to send with (for the IO layer).
    pub tx_ttl: u8,
    /// Received packets with a lower TTL / hop limit are dropped ([`DropReason::BadTtl`]);
    /// `None`: no check. RFC 5881 §5: 255 for single hop.
    pub min_rx_ttl: Option<u8>,
    /// Seed of the transmit jitter generator.
    pub seed: u64,
}

impl SessionConfig {
    /// A single-hop session with keepalived 2.4.3's defaults: `min_tx`/`min_rx` 10 ms,
    /// `idle_tx` 1 s, `multiplier` 5, TTL 255 sent and required.
    pub fn single_hop(local_discriminator: u32) -> SessionConfig {
        SessionConfig {
            local_discriminator,
            desired_min_tx: 10_000,
            required_min_rx: 10_000,
            idle_tx: SLOW_TX,
            detect_mult: 5,
            passive: false,
            hop: Hop::Single,
            tx_ttl: crate::SINGLE_HOP_TTL,
            min_rx_ttl: Some(crate::SINGLE_HOP_TTL),
            seed: u64::from(local_discriminator),
        }
    }

    /// A multihop session (RFC 5883): the same defaults, port 4784, no TTL check.
    pub fn multi_hop(local_discriminator: u32) -> SessionConfig {
        SessionConfig {
            hop: Hop::Multi,
            min_rx_ttl: None,
            ..SessionConfig::single_hop(local_discriminator)
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.local_discriminator == 0 {
            return Err(ConfigError::ZeroDiscriminator);
        }
        if self.detect_mult == 0 {
            return Err(ConfigError::ZeroDetectMult);
        }
        if self.desired_min_tx == 0 {
            return Err(ConfigError::ZeroDesiredMinTx);
        }
        Ok(())
    }

    fn idle_tx(&self) -> u32 {
        self.idle_tx.max(SLOW_TX)
    }
}

/// A configuration the engine refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// bfd.LocalDiscr must be non-zero (§6.8.1).
    ZeroDiscriminator,
    /// Detect Mult 0 is invalid on the wire (§6.8.6).
    ZeroDetectMult,
    /// bfd.DesiredMinTxInterval must be non-zero (§6.8.1 "MUST NOT be zero").
    ZeroDesiredMinTx,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfigError::ZeroDiscriminator => "local discriminator must not be zero",
            ConfigError::ZeroDetectMult => "detection multiplier must not be zero",
            ConfigError::ZeroDesiredMinTx => "desired minimum TX interval must not be zero",
        })
    }
}

impl std::error::Error for ConfigError {}

/// What the IP layer told us about a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxMeta {
    /// Received TTL / hop limit; `None` if the socket did not report it.
    pub ttl: Option<u8>,
}

/// What the runtime must do. Drained in order with [`Session::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this Control packet (UDP payload) to the neighbour, from the session's
    /// source port to [`Hop::dst_port`], with TTL [`SessionConfig::tx_ttl`].
    Send { packet: Vec<u8> },
    /// bfd.SessionState changed; `diag` is bfd.LocalDiag after the change.
    StateChange {
        from: State,
        to: State,
        diag: Diagnostic,
    },
}

/// Input events, for callers (simulators) that prefer one entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start,
    Packet { meta: RxMeta, payload: Vec<u8> },
    Timeout,
    AdminDown(bool),
}

/// Counters kept by the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_sent: u64,
    /// Packets accepted (not dropped).
    pub packets_received: u64,
    /// Times the session came Up.
    pub ups: u64,
    /// Times it left Up (flaps).
    pub downs: u64,
    pub polls_started: u64,
    pub polls_completed: u64,
    pub drops: DropCounters,
}

/// One BFD session.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    started: bool,
    state: State,
    remote_state: State,
    remote_discr: u32,
    local_diag: Diagnostic,
    remote_diag: Diagnostic,
    remote_min_rx: u32,
    remote_desired_min_tx: u32,
    remote_detect_mult: u8,
    remote_demand: bool,
    /// Desired Min TX / Required Min RX as sent in our packets now.
    adv_tx: u32,
    adv_rx: u32,
    /// The values in force for our transmit interval and for the detection time: they
    /// lag `adv_*` while a Poll Sequence for an increase of TX / decrease of RX runs
    /// (§6.8.3).
    tx_used: u32,
    rx_used: u32,
    poll: bool,
    final_pending: bool,
    tx_at: Option<Micros>,
    /// Interval the pending `tx_at` was scheduled with.
    tx_sched_interval: u64,
    detect_at: Option<Micros>,
    /// In AdminDown: keep telling the peer until then (§6.8.16).
    admin_tx_until: Option<Micros>,
    last_tx: Option<Micros>,
    last_rx: Option<Micros>,
    rng: u64,
    actions: VecDeque<Action>,
    stats: Stats,
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Result<Session, ConfigError> {
        cfg.check()?;
        let idle = cfg.idle_tx();
        Ok(Session {
            started: false,
            state: State::Down,
            remote_state: State::Down,
            remote_discr: 0,
            local_diag: Diagnostic::None,
            remote_diag: Diagnostic::None,
            // §6.8.1: bfd.RemoteMinRxInterval is initialised to 1.
            remote_min_rx: 1,
            remote_desired_min_tx: 0,
            remote_detect_mult: 0,
            remote_demand: false,
            adv_tx: idle,
            adv_rx: cfg.required_min_rx,
            tx_used: idle,
            rx_used: cfg.required_min_rx,
            poll: false,
            final_pending: false,
            tx_at: None,
            tx_sched_interval: 0,
            detect_at: None,
            admin_tx_until: None,
            last_tx: None,
            last_rx: None,
            rng: cfg.seed ^ 0x9e37_79b9_7f4a_7c15,
            actions: VecDeque::new(),
            stats: Stats::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn remote_state(&self) -> State {
        self.remote_state
    }
    pub fn local_diag(&self) -> Diagnostic {
        self.local_diag
    }
    pub fn remote_diag(&self) -> Diagnostic {
        self.remote_diag
    }
    pub fn local_discriminator(&self) -> u32 {
        self.cfg.local_discriminator
    }
    /// bfd.RemoteDiscr; 0 until the peer is heard and after a Detection Time of silence.
    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }
    pub fn remote_detect_mult(&self) -> u8 {
        self.remote_detect_mult
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// A Poll Sequence is in progress (§6.5).
    pub fn poll_pending(&self) -> bool {
        self.poll
    }
    pub fn last_received(&self) -> Option<Micros> {
        self.last_rx
    }

    /// The UDP source ports for this session, in the order to try binding them
    /// (RFC 5881 §4 / RFC 5883 §5: from 49152–65535, one for the life of the session);
    /// the first is drawn from the seed and discriminator, so sessions spread out.
    pub fn source_ports(&self) -> impl Iterator<Item = u16> {
        let mut z = self.cfg.seed ^ u64::from(self.cfg.local_discriminator).rotate_left(32);
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^= z >> 33;
        crate::source_ports(z as u32)
    }

    /// The agreed transmit interval before jitter (§6.8.2): the larger of our Desired
    /// Min TX in force and the peer's Required Min RX.
    pub fn tx_interval(&self) -> u64 {
        u64::from(self.tx_used.max(self.remote_min_rx))
    }

    /// The agreed receive interval: the larger of our Required Min RX in force and the
    /// peer's last Desired Min TX.
    pub fn rx_interval(&self) -> u64 {
        u64::from(self.rx_used.max(self.remote_desired_min_tx))
    }

    /// Detection Time in asynchronous mode (§6.8.4): the peer's Detect Mult times the
    /// agreed receive interval; `None` before the peer is heard.
    pub fn detection_time(&self) -> Option<u64> {
        (self.remote_detect_mult != 0)
            .then(|| u64::from(self.remote_detect_mult) * self.rx_interval())
    }

    /// Count a drop the runtime detected before the packet reached a session.
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.drops.count(reason);
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next instant at which [`Session::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Micros> {
        [self.tx_at, self.detect_at].into_iter().flatten().min()
    }

    pub fn handle(&mut self, now: Micros, event: Event) {
        match event {
            Event::Start => self.start(now),
            Event::Packet { meta, payload } => self.handle_packet(now, meta, &payload),
            Event::Timeout => self.handle_timeout(now),
            Event::AdminDown(on) => self.set_admin_down(now, on),
        }
    }

    /// Begin: an active session sends its first packet at once (then at the slow
    /// `idle_tx` rate until Up), a passive one waits for the peer.
    pub fn start(&mut self, now: Micros) {
        if self.started {
            return;
        }
        self.started = true;
        self.update_tx(now);
    }

    /// Dispatch every due timer.
    pub fn handle_timeout(&mut self, now: Micros) {
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            self.detection_time_expired(now);
        }
        if self.tx_at.is_some_and(|t| t <= now) {
            self.tx_at = None;
            if self.may_transmit(now) {
                self.send(now);
                let interval = self.tx_interval();
                self.tx_at = Some(now + self.jittered(interval));
                self.tx_sched_interval = interval;
            } else if self.state == State::AdminDown {
                self.admin_tx_until = None;
            }
        }
    }

    /// A UDP payload arrived for this session (the IO layer demultiplexed it). Packets
    /// are processed also before [`Session::start`]: the session then listens only.
    pub fn handle_packet(&mut self, now: Micros, meta: RxMeta, payload: &[u8]) {
        let p = match wire::decode(payload) {
            Ok(p) => p,
            Err(reason) => return self.stats.drops.count(reason),
        };
        if let (Some(min), Some(ttl)) = (self.cfg.min_rx_ttl, meta.ttl) {
            if ttl < min {
                return self.stats.drops.count(DropReason::BadTtl);
            }
        }
        if p.your_discriminator != 0 && p.your_discriminator != self.cfg.local_discriminator {
            return self.stats.drops.count(DropReason::DiscriminatorMismatch);
        }
        if p.auth.is_some() {
            return self.stats.drops.count(DropReason::Authenticated);
        }
        if self.state == State::AdminDown {
            return self.stats.drops.count(DropReason::AdminDown);
        }
        self.accept(now, &p);
    }

    fn accept(&mut self, now: Micros, p: &ControlPacket) {
        self.stats.packets_received += 1;
        self.last_rx = Some(now);
        self.remote_discr = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_diag = p.diag;
        self.remote_demand = p.demand;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_min_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;

        if p.final_ && self.poll {
            self.finish_poll();
        }

        // §6.8.6 state machine.
        if p.state == State::AdminDown {
            if self.state != State::Down {
                self.set_state(State::Down, Diagnostic::NeighborSignaledDown);
            }
        } else {
            match (self.state, p.state) {
                (State::Down, State::Down) => self.set_state(State::Init, Diagnostic::None),
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    self.set_state(State::Up, Diagnostic::None)
                }
                (State::Up, State::Down) => {
                    self.set_state(State::Down, Diagnostic::NeighborSignaledDown)
                }
                _ => {}
            }
        }

        // §6.8.4: received for the purpose of detection.
        self.detect_at = self.detection_time().map(|d| now + d);

        // §6.8.7: answer a Poll at once, whatever the timers and demand mode say.
        if p.poll {
            self.final_pending = true;
            self.send(now);
        }
        self.update_tx(now);
    }

    /// Take the session administratively down (`true`, §6.8.16) or bring it back.
    pub fn set_admin_down(&mut self, now: Micros, down: bool) {
        if down && self.state != State::AdminDown {
            // Keep telling the peer for one of its Detection Times.
            let remote_detect = u64::from(self.cfg.detect_mult) * self.tx_interval();
            self.set_state(State::AdminDown, Diagnostic::AdministrativelyDown);
            self.detect_at = None;
            self.final_pending = false;
            self.admin_tx_until = self
                .started
                .then_some(now + remote_detect)
                .filter(|_| !(self.cfg.passive && self.remote_discr == 0));
            if self.admin_tx_until.is_some() && self.tx_at.is_none() {
                self.tx_at = Some(now);
            }
        } else if !down && self.state == State::AdminDown {
            self.admin_tx_until = None;
            self.reset_remote();
            self.set_state(State::Down, Diagnostic::None);
            self.tx_at = None;
            self.update_tx(now);
        }
    }

    /// Change the timers at run time (§6.8.3): a Poll Sequence tells the peer; while it
    /// runs, a slower TX or faster RX of ours does not take effect yet.
    pub fn set_intervals(
        &mut self,
        now: Micros,
        desired_min_tx: u32,
        required_min_rx: u32,
        detect_mult: u8,
    ) -> Result<(), ConfigError> {
        let mut cfg = self.cfg.clone();
        cfg.desired_min_tx = desired_min_tx;
        cfg.required_min_rx = required_min_rx;
        cfg.detect_mult = detect_mult;
        cfg.check()?;
        let mult_changed = cfg.detect_mult != self.cfg.detect_mult;
        self.cfg = cfg;
        self.apply_params(self.desired_tx(), required_min_rx, mult_changed);
        self.update_tx(now);
        Ok(())
    }

    /// Desired Min TX for the current state.
    fn desired_tx(&self) -> u32 {
        if self.state == State::Up {
            self.cfg.desired_min_tx
        } else {
            self.cfg.idle_tx()
        }
    }

    fn apply_params(&mut self, tx: u32, rx: u32, force_poll: bool) {
        let changed = tx != self.adv_tx || rx != self.adv_rx;
        self.adv_tx = tx;
        self.adv_rx = rx;
        if !changed && !force_poll {
            return;
        }
        if self.state == State::Up {
            // §6.8.3: an increase of TX or decrease of RX waits for the Final.
            self.tx_used = self.tx_used.min(tx);
            self.rx_used = self.rx_used.max(rx);
        } else {
            self.tx_used = tx;
            self.rx_used = rx;
        }
        if matches!(self.state, State::Up | State::Init) {
            if !self.poll {
                self.stats.polls_started += 1;
            }
            self.poll = true;
        }
    }

    fn finish_poll(&mut self) {
        self.poll = false;
        self.stats.polls_completed += 1;
        self.tx_used = self.adv_tx;
        self.rx_used = self.adv_rx;
    }

    fn set_state(&mut self, to: State, diag: Diagnostic) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.local_diag = diag;
        if to == State::Up {
            self.stats.ups += 1;
        }
        if from == State::Up {
            self.stats.downs += 1;
        }
        if matches!(to, State::Down | State::AdminDown) {
            // A running Poll Sequence is moot; back to the slow rate at once.
            self.poll = false;
        }
        self.apply_params(self.desired_tx(), self.cfg.required_min_rx, false);
        self.actions
            .push_back(Action::StateChange { from, to, diag });
    }

    fn detection_time_expired(&mut self, now: Micros) {
        if matches!(self.state, State::Init | State::Up) {
            self.set_state(State::Down, Diagnostic::ControlDetectionTimeExpired);
        }
        // §6.8.1: bfd.RemoteDiscr is zeroed after a Detection Time without packets.
        self.reset_remote();
        self.update_tx(now);
    }

    fn reset_remote(&mut self) {
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.remote_demand = false;
        self.remote_min_rx = 1;
        self.remote_desired_min_tx = 0;
        self.remote_detect_mult = 0;
    }

    /// §6.8.7's conditions for periodic transmission.
    fn may_transmit(&self, now: Micros) -> bool {
        if !self.started {
            return false;
        }
        if self.state == State::AdminDown {
            return self.admin_tx_until.is_some_and(|u| now < u);
        }
        if self.cfg.passive && self.remote_discr == 0 {
            return false;
        }
        if self.remote_min_rx == 0 {
            return false;
        }
        let remote_demand_active =
            self.remote_demand && self.state == State::Up && self.remote_state == State::Up;
        // A running Poll Sequence is sent even to a peer in demand mode.
        !remote_demand_active || self.poll
    }

    /// Arm, re-arm or clear the transmit timer. A shorter agreed interval brings the
    /// next packet forward. A longer one of our own (the slow rate after going Down)
    /// leaves a packet already due soon in place, so the peer hears the news at the old
    /// rate (as keepalived). A peer that raised its Required Min RX gets no packet
    /// sooner than 75 % of it after the last one (the most jitter allows).
    fn update_tx(&mut self, now: Micros) {
        if self.state == State::AdminDown {
            return;
        }
        if !self.may_transmit(now) {
            self.tx_at = None;
            return;
        }
        let interval = self.tx_interval();
        match (self.tx_at, self.last_tx) {
            (None, None) => self.tx_at = Some(now),
            (None, Some(last)) => self.tx_at = Some((last + self.jittered(interval)).max(now)),
            // Nothing sent yet: the first packet stays due.
            (Some(_), None) => {}
            (Some(at), Some(last)) => {
                if interval < self.tx_sched_interval {
                    let sooner = (last + self.jittered(interval)).max(now);
                    self.tx_at = Some(at.min(sooner));
                } else if at < last + u64::from(self.remote_min_rx) * 3 / 4 {
                    self.tx_at = Some((last + self.jittered(interval)).max(now));
                }
            }
        }
        self.tx_sched_interval = interval;
    }

    fn send(&mut self, now: Micros) {
        let final_ = std::mem::take(&mut self.final_pending);
        let p = ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // §4.1: never both; the Poll goes out again with the next packet.
            poll: self.poll && !final_,
            final_,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_discriminator: self.cfg.local_discriminator,
            your_discriminator: self.remote_discr,
            desired_min_tx: self.adv_tx,
            required_min_rx: self.adv_rx,
            required_min_echo_rx: 0,
            auth: None,
        };
        self.stats.packets_sent += 1;
        self.last_tx = Some(now);
        self.actions.push_back(Action::Send { packet: p.encode() });
    }

    /// §6.8.7: the interval reduced by 0–25 % at random, by 10–25 % with Detect Mult 1;
    /// never zero.
    fn jittered(&mut self, interval: u64) -> u64 {
        let span = if self.cfg.detect_mult == 1 {
            1501
        } else {
            2501
        };
        let bp = 7500 + self.next_random() % span;
        (interval * bp / 10_000).max(1)
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
