//! The VRRP state machine of one virtual router (RFC 3768 §6.4, RFC 5798 §6.4 with the
//! RFC 9568 updates), written sans-IO in the style of `quinn-proto`: the runtime feeds
//! events with the current time and drains [`Action`]s; [`Instance::poll_timeout`] says
//! when it wants [`Instance::handle_timeout`] next.

use crate::timing;
use crate::wire::{
    self, ah, hmac, Advert, Auth, ChecksumVariant, DropCounters, DropReason, Family, RxMeta,
    Version,
};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use timer::{Timer, TimerTable};

/// Priority of the address owner: master at once, never preempted.
pub const PRIORITY_OWNER: u8 = 255;
/// Priority advertised by a master that is leaving.
pub const PRIORITY_LEAVING: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// Not taking part (interface down, tracked resource failed).
    Fault,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened; carried to logs, notify scripts and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    /// Started up, waiting for Master_Down_Interval.
    Startup,
    /// Priority 255: the address owner becomes master at once.
    AddressOwner,
    /// No advert within Master_Down_Interval (or Skew_Time after a priority-0 advert).
    MasterDown {
        /// The last master heard, if any.
        last_master: Option<IpAddr>,
        /// The last master said it was leaving (priority 0).
        released: bool,
    },
    /// Heard a master with higher priority (or equal priority and higher address).
    Preempted {
        by: IpAddr,
        priority: u8,
    },
    Shutdown,
    FaultRaised,
    FaultCleared,
    /// Another member of the instance's `vrrp_sync_group` changed state.
    SyncGroup,
    /// `timer_expired_backup`: a non-preempting master ran so late that a backup of
    /// the given priority has had its master-down interval since our last advert.
    TimerExpired {
        other_priority: u8,
    },
    /// vipd's BFD-driven take-over ([`PeerTakeover`]): the BFD session to the master
    /// went down, so this backup took over without waiting Master_Down_Interval.
    PeerDown {
        master: IpAddr,
    },
    /// keepalived: someone else deleted one of this master's VIPs (one without
    /// `no_track`); it left MASTER, to take over again after Skew_Time.
    VipDeleted {
        addr: IpAddr,
    },
}

impl std::fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransitionReason::Startup => write!(f, "startup"),
            TransitionReason::AddressOwner => write!(f, "address owner (priority 255)"),
            TransitionReason::MasterDown {
                last_master: Some(m),
                released: true,
            } => write!(f, "master {m} released the address (priority 0)"),
            TransitionReason::MasterDown {
                last_master: Some(m),
                released: false,
            } => write!(f, "no advert from master {m} within master-down interval"),
            TransitionReason::MasterDown {
                last_master: None, ..
            } => {
                write!(f, "no master heard within master-down interval")
            }
            TransitionReason::Preempted { by, priority } => {
                write!(f, "higher-priority master {by} (priority {priority})")
            }
            TransitionReason::Shutdown => write!(f, "shutdown"),
            TransitionReason::FaultRaised => write!(f, "fault"),
            TransitionReason::FaultCleared => write!(f, "fault cleared"),
            TransitionReason::SyncGroup => write!(f, "sync group"),
            TransitionReason::TimerExpired { other_priority } => write!(
                f,
                "advert timer ran late: a backup of priority {other_priority} may have taken over"
            ),
            TransitionReason::VipDeleted { addr } => {
                write!(f, "VIP {addr} deleted by someone else")
            }
            TransitionReason::PeerDown { master } => {
                write!(f, "BFD session to master {master} went down")
            }
        }
    }
}

/// What the runtime must do. Drained in order with [`Instance::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this VRRP message (IP payload; the socket adds the header with TTL 255).
    /// With `Auth::Ah` (VRRPv2 over IPv4) the payload is the whole IPv4 packet —
    /// header, AH, VRRP — for a raw protocol-51 socket with IP_HDRINCL: the ICV covers
    /// the header. Only the TTL of a unicast packet may still be changed.
    Send { dst: IpAddr, payload: Vec<u8> },
    /// Install the virtual addresses.
    AddAddresses,
    /// Remove the virtual addresses.
    RemoveAddresses,
    /// Announce every virtual address `repeat` times (gratuitous ARP / unsolicited NA),
    /// paced by the interface's `garp_interval` / `gna_interval`.
    Announce { repeat: u32 },
    /// As MASTER, heard an advert with a lower priority than ours (or the same priority
    /// from a lower address): another router believes it is master, typically after a
    /// split brain. keepalived's `notify_master_rx_lower_pri` event, reported for every
    /// such advert (as keepalived does; the other router yields on our answer).
    MasterRxLowerPriority { from: IpAddr, priority: u8 },
    /// State changed; for logs, notify scripts and status.
    Transition {
        from: State,
        to: State,
        reason: TransitionReason,
    },
}

/// A `unicast_peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: IpAddr,
    pub min_ttl: u8,
    pub max_ttl: u8,
}

impl Peer {
    pub fn new(addr: IpAddr) -> Peer {
        Peer {
            addr,
            min_ttl: 0,
            max_ttl: 255,
        }
    }
}

/// Gratuitous ARP / NA schedule, keepalived's `garp_*` knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpTiming {
    /// Delay of the second burst after becoming master (zero: no second burst).
    pub master_delay: Duration,
    /// Announcements per burst after becoming master.
    pub master_repeat: u32,
    /// Delay of the second burst after a lower-priority advert (zero: none).
    pub lower_prio_delay: Duration,
    /// Announcements per burst after a lower-priority advert (zero: none).
    pub lower_prio_repeat: u32,
    /// Periodic refresh while master (zero: never).
    pub refresh: Duration,
    pub refresh_repeat: u32,
    /// One more round this long after each take-over or lower-priority burst (zero: none).
    /// Linux neighbours ignore an ARP/NA update within `locktime` (1 s) of the previous
    /// one, so after a quick ping-pong of masters the first burst can be ignored; keepalived
    /// leaves such clients stale until its second burst 5 s later. vipd extension.
    pub followup: Duration,
}

impl Default for GarpTiming {
    /// keepalived's defaults.
    fn default() -> Self {
        GarpTiming {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            lower_prio_delay: Duration::from_secs(5),
            lower_prio_repeat: 5,
            refresh: Duration::ZERO,
            refresh_repeat: 1,
            followup: Duration::from_millis(1100),
        }
    }
}

/// Everything the engine needs to know about one virtual router.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceConfig {
    pub vrid: u8,
    pub version: Version,
    pub priority: u8,
    /// Our Advertisement_Interval (v2: whole seconds; v3: centisecond resolution).
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// The virtual addresses, as advertised. All of one family.
    pub addresses: Vec<IpAddr>,
    /// Our source address: primary IPv4 or IPv6 link-local (or `unicast_src_ip`).
    pub primary: IpAddr,
    /// Multicast group of our adverts (`mcast_dst_ip` / `vrrp_mcast_group4|6`); `None`:
    /// the RFC's 224.0.0.18 / ff02::12.
    pub mcast_group: Option<IpAddr>,
    /// Unicast peers; empty means multicast.
    pub peers: Vec<Peer>,
    /// v2 authentication.
    pub auth: Auth,
    /// The HMAC key of `Auth::Ah` (IPv4 only), from `auth_pass`; unused otherwise.
    pub ah_key: ah::AhKey,
    /// keepalived's `auth_hmac` extension (v2 and v3; excludes `auth`).
    pub hmac: Option<hmac::HmacConfig>,
    /// Wall-clock time since the Unix epoch, for `auth_hmac`'s time-based sequence
    /// numbers (a function, so tests and the simulator can set the clock).
    pub wall_clock: WallClock,
    /// v3/IPv4 checksum variant we send (both are accepted).
    pub checksum: ChecksumVariant,
    pub garp: GarpTiming,
    /// Do not answer a lower-priority advert with an immediate advert (RFC 3768/5798
    /// behaviour; the default follows RFC 9568 §6.4.3 and keepalived).
    pub lower_prio_no_advert: bool,
    /// Send one advert before yielding to a higher-priority master. When two masters
    /// meet (a healed partition, a cable back in), this lets the winner hear a
    /// lower-priority advert and re-announce its addresses at once; without it the
    /// neighbours keep the loser's MAC until the winner's next scheduled GARP.
    /// On by default in vipd (keepalived: `higher_prio_send_advert`, default off).
    pub higher_prio_send_advert: bool,
    /// Advert intervals in Master_Down_Interval (3 per the RFCs).
    pub down_timer_adverts: u8,
    /// Drop adverts whose address list differs from ours (unless from the owner).
    pub check_addresses: bool,
    /// `skip_check_adv_addr`: do not compare the address list of an advert from the
    /// router whose advert was accepted last (keepalived's saving for a steady master);
    /// a new sender is still checked.
    pub skip_check_same_sender: bool,
    /// Make-before-break on graceful shutdown: after the priority-0 advert, keep the
    /// addresses for one advert interval (plus a margin, see `shutdown_hold`), by which time the best backup has
    /// waited its Skew_Time, taken over and announced itself. Clients then move from
    /// one live master to the next instead of into a Skew_Time-long hole. RFC 5798
    /// only says to send priority 0 and go to Initialize; keepalived drops the
    /// addresses at once. vipd extension, on by default.
    pub hold_addresses_on_shutdown: bool,
    /// keepalived's `owner_ignore_adverts`: an address owner (priority 255) discards
    /// every advert, as RFC 3768 has it, also in v3 (where RFC 9568 lets it listen).
    pub owner_ignore_adverts: bool,
    /// keepalived's `timer_expired_backup [PRIO]` (only with `nopreempt`): when the
    /// master's advert timer fires so late that a backup of priority PRIO (254 by
    /// default) would have passed its Master_Down_Interval since our last advert, the
    /// master assumes it was replaced and goes back to BACKUP instead of advertising.
    pub timer_expired_backup: Option<u8>,
    /// vipd extension (`bfd_takeover`): a BACKUP treats the failure of a liveness
    /// session (BFD) to the current master as Master_Down and takes over at once.
    /// `None`: session events are ignored (keepalived's behaviour).
    pub peer_takeover: Option<PeerTakeover>,
}

/// The guards of the BFD-driven take-over ([`Instance::peer_down`]). A BACKUP takes
/// over on a session Down only when all hold:
/// * the session's peer is the master whose advert we accepted last;
/// * the session had been Up for at least `min_up` (a flapping session never qualifies);
/// * no peer take-over happened within the last `hold_down`.
///
/// A take-over is an ordinary entry into MASTER: if the master is in fact alive (only
/// the BFD path broke), its next advert — sent at once by an RFC 9568 / keepalived
/// master on hearing our lower-priority advert — sends us back to BACKUP as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTakeover {
    pub min_up: Duration,
    pub hold_down: Duration,
}

impl Default for PeerTakeover {
    fn default() -> Self {
        PeerTakeover {
            min_up: Duration::from_secs(1),
            hold_down: Duration::from_secs(10),
        }
    }
}

impl InstanceConfig {
    /// A config with the RFC/keepalived defaults for everything but the essentials.
    pub fn new(
        vrid: u8,
        version: Version,
        priority: u8,
        primary: IpAddr,
        addresses: Vec<IpAddr>,
    ) -> Self {
        InstanceConfig {
            vrid,
            version,
            priority,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            addresses,
            primary,
            peers: Vec::new(),
            mcast_group: None,
            auth: Auth::None,
            ah_key: ah::AhKey::from_pass(""),
            hmac: None,
            wall_clock: WallClock(unix_time),
            checksum: ChecksumVariant::PseudoHeader,
            garp: GarpTiming::default(),
            lower_prio_no_advert: false,
            // keepalived's default is off; see InstanceConfig::higher_prio_send_advert.
            higher_prio_send_advert: true,
            down_timer_adverts: 3,
            check_addresses: true,
            skip_check_same_sender: false,
            hold_addresses_on_shutdown: true,
            owner_ignore_adverts: false,
            timer_expired_backup: None,
            peer_takeover: None,
        }
    }

    pub fn family(&self) -> Family {
        Family::of(&self.primary)
    }

    /// Where multicast adverts go: `mcast_group`, else the RFC's group.
    pub fn advert_group(&self) -> IpAddr {
        self.mcast_group
            .unwrap_or_else(|| self.family().multicast_group())
    }

    /// How long a master keeps its addresses after its priority-0 advert: one advert
    /// interval (the longest Skew_Time any backup can have) plus a margin of 2 ms or
    /// 2 % of the interval for the backup's processing and the wire.
    pub fn shutdown_hold(&self) -> Duration {
        self.advert_interval + (self.advert_interval / 50).max(Duration::from_millis(2))
    }

    pub fn is_unicast(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The advertised addresses in wire order: for IPv6 the link-local VIP goes first
    /// (RFC 5798 §5.2.9).
    fn wire_addresses(&self) -> Vec<IpAddr> {
        let mut v = self.addresses.clone();
        v.sort_by_key(|a| match a {
            IpAddr::V6(a) => !a.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        });
        v
    }
}

/// Counters kept by the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub became_master: u64,
    pub released_master: u64,
    /// Every state change.
    pub transitions: u64,
    pub announce_bursts: u64,
    /// Adverts checksummed without the IPv4 pseudo-header (v3), i.e. an RFC 9568-style peer.
    pub vrrp_only_checksums: u64,
    /// BFD-driven take-overs ([`PeerTakeover`]).
    pub peer_takeovers: u64,
    /// Session Downs that did not lead to a take-over (not master's peer, not up
    /// long enough, within the hold-down, or not BACKUP).
    pub peer_downs_ignored: u64,
    pub drops: DropCounters,
    /// The last drop that RFC 6527's `vrrpv3StatisticsProtoErrReason` names (TTL,
    /// version, checksum or VRID error).
    pub last_protocol_error: Option<DropReason>,
    /// Since when the instance is out of Initialize and FAULT (BACKUP or MASTER): RFC
    /// 2787's `vrrpOperVirtualRouterUpTime`, RFC 6527's `vrrpv3OperationsUpTime`.
    pub up_since: Option<Instant>,
    /// Why it last became MASTER (RFC 6527's `vrrpv3StatisticsNewMasterReason`).
    pub last_master_reason: Option<TransitionReason>,
}

/// [`Instance::reconfigure`] refused: the change needs a fresh instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsRestart;

/// Input events, for callers (the simulator, conformance tests) that prefer one entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    Fault(bool),
    Packet {
        meta: RxMeta,
        payload: Vec<u8>,
    },
    Timeout,
    /// The liveness (BFD) session to `peer` came up.
    PeerUp(IpAddr),
    /// The liveness (BFD) session to `peer` went down.
    PeerDown(IpAddr),
}

/// One virtual router.
#[derive(Debug)]
pub struct Instance {
    cfg: InstanceConfig,
    wire_addresses: Vec<IpAddr>,
    state: State,
    /// Effective priority: the configured one moved by tracking (`adjustment`),
    /// clamped to 1..=254; an owner's 255 is never moved.
    priority: u8,
    adjustment: i32,
    /// Master_Adver_Interval: learnt from the master in v3, our own in v2.
    master_adver_interval: Duration,
    /// The master we last accepted an advert from, and its priority.
    master: Option<(IpAddr, u8)>,
    master_released: bool,
    /// Every deadline, one slot per [`Timer`].
    timers: TimerTable,
    /// Earliest time another lower-priority-triggered GARP burst is allowed.
    lower_prio_garp_after: Option<Instant>,
    /// preempt_delay is running against a lower-priority master.
    preempt_pending: bool,
    last_transition: Option<(Instant, TransitionReason)>,
    actions: VecDeque<Action>,
    stats: Stats,
    /// `Auth::Ah`: the sequence number counter, shared by sending and receiving as in
    /// keepalived (see [`ah::SeqCounter`]).
    ah_seq: ah::SeqCounter,
    /// `Auth::Ah`: the IPv4 identification of our last advert (the ICV covers it).
    ip_id: u16,
    /// `auth_hmac`: our send sequence and each sender's replay mark.
    hmac_state: hmac::HmacState,
    /// Liveness sessions up, and since when (for [`PeerTakeover::min_up`]).
    peers_up: Vec<(IpAddr, Instant)>,
    /// The last BFD-driven take-over (for [`PeerTakeover::hold_down`]).
    last_peer_takeover: Option<Instant>,
}

impl Instance {
    pub fn new(cfg: InstanceConfig) -> Instance {
        Instance {
            wire_addresses: cfg.wire_addresses(),
            master_adver_interval: cfg.advert_interval,
            priority: cfg.priority,
            adjustment: 0,
            cfg,
            state: State::Initialize,
            master: None,
            master_released: false,
            timers: TimerTable::default(),
            lower_prio_garp_after: None,
            preempt_pending: false,
            last_transition: None,
            actions: VecDeque::new(),
            stats: Stats::default(),
            ah_seq: ah::SeqCounter::default(),
            ip_id: 0,
            hmac_state: hmac::HmacState::default(),
            peers_up: Vec::new(),
            last_peer_takeover: None,
        }
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }
    /// The current master as far as we know: ourselves, or the last accepted sender.
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.cfg.primary),
            State::Backup => self.master.map(|(a, _)| a),
            _ => None,
        }
    }
    pub fn last_transition(&self) -> Option<(Instant, TransitionReason)> {
        self.last_transition
    }

    /// Skew_Time for our priority and the current Master_Adver_Interval.
    pub fn skew_time(&self) -> Duration {
        timing::skew(self.cfg.version, self.priority, self.master_adver_interval)
    }

    /// Master_Down_Interval for our priority and the current Master_Adver_Interval.
    pub fn master_down_interval(&self) -> Duration {
        timing::master_down_interval(
            self.cfg.version,
            self.priority,
            self.master_adver_interval,
            self.cfg.down_timer_adverts,
        )
    }

    /// Apply a changed configuration without leaving the current state, where the
    /// protocol allows it: priority (short of owner), advert interval, preemption,
    /// authentication, checksum variant, GARP timing and the other knobs. A change of
    /// identity (VRID, version, source address, addresses, peers), to/from address
    /// owner or to/from AH (another IP protocol, another socket) needs a restart: `Err(NeedsRestart)`, and nothing is changed.
    pub fn reconfigure(&mut self, cfg: InstanceConfig) -> Result<(), NeedsRestart> {
        let old = &self.cfg;
        let owner = |p: u8| p == PRIORITY_OWNER;
        if cfg.vrid != old.vrid
            || cfg.version != old.version
            || cfg.primary != old.primary
            || cfg.addresses != old.addresses
            || cfg.peers != old.peers
            || owner(cfg.priority) != owner(old.priority)
            || (cfg.auth == Auth::Ah) != (old.auth == Auth::Ah)
        {
            return Err(NeedsRestart);
        }
        if self.cfg.version == Version::V2 || self.state != State::Backup {
            // Our own interval is what we use (v2) or send (master).
            self.master_adver_interval = cfg.advert_interval;
        }
        self.cfg = cfg;
        self.priority = effective_priority(self.cfg.priority, self.adjustment);
        Ok(())
    }

    /// The priority advertised now.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Tracking moved the priority by `adjustment` (the sum of the weights in force).
    /// The result is clamped to 1..=254; an address owner keeps 255. A master
    /// advertises a change at once, so backups compare against the new value without
    /// waiting an interval; preemption itself still follows the RFC timers.
    pub fn set_priority_adjustment(&mut self, now: Instant, adjustment: i32) {
        self.adjustment = adjustment;
        let new = effective_priority(self.cfg.priority, adjustment);
        if new == self.priority {
            return;
        }
        self.priority = new;
        if self.state == State::Master {
            self.send_advert(new);
            self.timers
                .set(Timer::Advert, now + self.cfg.advert_interval);
        }
    }

    /// Count a drop the runtime detected before the packet reached the engine.
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.drops.count(reason);
        if matches!(
            reason,
            DropReason::BadTtl
                | DropReason::PeerTtl
                | DropReason::VersionMismatch
                | DropReason::BadChecksum
                | DropReason::UnknownVrid
        ) {
            self.stats.last_protocol_error = Some(reason);
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next instant at which [`Instance::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::Startup => self.startup(now),
            Event::Shutdown => self.shutdown(now),
            Event::Fault(on) => self.set_fault(now, on),
            Event::Packet { meta, payload } => self.handle_packet(now, &meta, &payload),
            Event::Timeout => self.handle_timeout(now),
            Event::PeerUp(peer) => self.peer_up(now, peer),
            Event::PeerDown(peer) => {
                self.peer_down(now, peer);
            }
        }
    }

    /// The liveness (BFD) session to `peer` is Up. Repeated calls keep the first time.
    pub fn peer_up(&mut self, now: Instant, peer: IpAddr) {
        if !self.peers_up.iter().any(|(a, _)| *a == peer) {
            self.peers_up.push((peer, now));
        }
    }

    /// The liveness (BFD) session to `peer` is not Up, as a report of its state rather
    /// than a failure (a session just configured, which starts Down): forget since when
    /// it was Up, without counting an ignored Down or taking over.
    pub fn peer_not_up(&mut self, peer: IpAddr) {
        self.peers_up.retain(|(a, _)| *a != peer);
    }

    /// The liveness (BFD) session to `peer` went Down. With [`PeerTakeover`]
    /// configured, a BACKUP whose master is `peer` takes over at once, as on expiry
    /// of Master_Down_Timer, if the guards of [`PeerTakeover`] allow it. Returns
    /// whether it took over.
    pub fn peer_down(&mut self, now: Instant, peer: IpAddr) -> bool {
        let up_since = self
            .peers_up
            .iter()
            .position(|(a, _)| *a == peer)
            .map(|i| self.peers_up.swap_remove(i).1);
        let Some(guard) = self.cfg.peer_takeover else {
            return false;
        };
        let allowed = self.state == State::Backup
            && self.master.is_some_and(|(m, _)| m == peer)
            && !self.master_released
            && up_since.is_some_and(|t| now.saturating_duration_since(t) >= guard.min_up)
            && self
                .last_peer_takeover
                .is_none_or(|t| now.saturating_duration_since(t) >= guard.hold_down);
        if !allowed {
            self.stats.peer_downs_ignored += 1;
            return false;
        }
        self.last_peer_takeover = Some(now);
        self.stats.peer_takeovers += 1;
        self.become_master(now, TransitionReason::PeerDown { master: peer });
        true
    }

    /// RFC 5798 §6.4.1: leave Initialize.
    pub fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        // Restarted within the shutdown hold: start from a clean slate.
        self.end_shutdown_hold();
        self.enter_from_init(now, TransitionReason::Startup);
    }

    fn enter_from_init(&mut self, now: Instant, reason: TransitionReason) {
        if self.cfg.priority == PRIORITY_OWNER {
            self.become_master(now, TransitionReason::AddressOwner);
        } else {
            self.master_adver_interval = self.cfg.advert_interval;
            self.master = None;
            let mut down = now + self.master_down_interval();
            if self.cfg.preempt {
                // keepalived: preempt_delay also applies to the first take-over after start-up.
                down += self.cfg.preempt_delay;
            }
            self.timers.set(Timer::MasterDown, down);
            self.transition(now, State::Backup, reason);
        }
    }

    /// Leave the protocol: a master sends priority 0 so backups take over after Skew_Time.
    pub fn shutdown(&mut self, now: Instant) {
        if self.state == State::Master {
            if self.cfg.hold_addresses_on_shutdown {
                self.send_advert(PRIORITY_LEAVING);
                self.stats.released_master += 1;
                self.timers
                    .set(Timer::Release, now + self.cfg.shutdown_hold());
            } else {
                self.release_master();
            }
        }
        if self.state != State::Initialize {
            self.clear_timers();
            self.transition(now, State::Initialize, TransitionReason::Shutdown);
        }
    }

    /// Sync group: another member became master, so this one follows at once (as if
    /// its master-down timer had fired). Only from BACKUP.
    pub fn sync_to_master(&mut self, now: Instant) {
        if self.state == State::Backup {
            self.become_master(now, TransitionReason::SyncGroup);
        }
    }

    /// Sync group: another member yielded to a higher-priority master, so this one
    /// yields too: addresses released, back to BACKUP waiting a master-down interval.
    pub fn sync_to_backup(&mut self, now: Instant) {
        if self.state == State::Master {
            self.leave_master_timers();
            self.actions.push_back(Action::RemoveAddresses);
            self.stats.released_master += 1;
            self.timers
                .set(Timer::MasterDown, now + self.master_down_interval());
            self.transition(now, State::Backup, TransitionReason::SyncGroup);
        }
    }

    /// keepalived: a VIP of this MASTER (one without `no_track`) was deleted by someone
    /// else: release the addresses and go to BACKUP, with the master-down timer at
    /// Skew_Time so that, unless another master speaks up, it takes over again at once
    /// and so puts the address back. No priority-0 advert (keepalived sends none).
    pub fn vip_deleted(&mut self, now: Instant, addr: IpAddr) {
        if self.state != State::Master {
            return;
        }
        self.leave_master_timers();
        self.actions.push_back(Action::RemoveAddresses);
        self.stats.released_master += 1;
        self.timers.set(Timer::MasterDown, now + self.skew_time());
        self.transition(now, State::Backup, TransitionReason::VipDeleted { addr });
    }

    /// Raise or clear a fault (interface down, tracked resource failed).
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        match (fault, self.state) {
            (true, State::Fault) | (false, State::Backup | State::Master | State::Initialize) => {}
            (true, _) => {
                if self.state == State::Master {
                    self.release_master();
                }
                // A fault during the shutdown hold (Initialize) ends it: the addresses
                // go now, not when a timer nobody would run fires.
                self.end_shutdown_hold();
                self.clear_timers();
                self.transition(now, State::Fault, TransitionReason::FaultRaised);
            }
            (false, State::Fault) => {
                self.enter_from_init(now, TransitionReason::FaultCleared);
            }
        }
    }

    /// Handle every expired timer. Each is stopped before it is dispatched, and
    /// [`Instance::on_timer`] handles or drops it in every state, so after this call
    /// [`Instance::poll_timeout`] is later than `now` (or `None`).
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if let Some(due) = self.timers.take_expired(timer, now) {
                self.on_timer(now, timer, due);
            }
        }
    }

    /// One expired (and already stopped) timer. Exhaustive over (timer, state): a new
    /// timer or state does not compile until it says what happens everywhere.
    fn on_timer(&mut self, now: Instant, timer: Timer, due: Instant) {
        use State::*;
        match (timer, self.state) {
            (Timer::Advert, Master) => {
                if self.replaced_while_late(now, due) {
                    return;
                }
                self.send_advert(self.priority);
                // Keep a steady cadence; if we were late by a whole interval, restart it.
                let next = cadence(due, self.cfg.advert_interval, now);
                self.timers.set_opt(Timer::Advert, next);
            }
            (Timer::GarpSecond, Master) => self.announce(self.cfg.garp.master_repeat),
            (Timer::GarpFollowup, Master) => self.announce(1),
            (Timer::GarpRefresh, Master) => {
                let next = cadence(due, self.cfg.garp.refresh, now);
                self.timers.set_opt(Timer::GarpRefresh, next);
                self.announce(self.cfg.garp.refresh_repeat);
            }
            (Timer::MasterDown, Backup) => {
                let reason = TransitionReason::MasterDown {
                    last_master: self.master.map(|(a, _)| a),
                    released: self.master_released,
                };
                self.become_master(now, reason);
            }
            // The addresses held since a graceful shutdown go, whatever happened since
            // (only a master owns them; leaving Initialize ends the hold first).
            (Timer::Release, Initialize | Fault | Backup) => {
                self.actions.push_back(Action::RemoveAddresses)
            }
            (Timer::Release, Master) => {}
            // The master's timers outside MASTER, Master_Down outside BACKUP: stale,
            // dropped (already stopped).
            (Timer::Advert | Timer::GarpSecond | Timer::GarpFollowup | Timer::GarpRefresh, _) => {}
            (Timer::MasterDown, Initialize | Master | Fault) => {}
        }
    }

    /// `timer_expired_backup`: the advert due at `due` fires at `now`. If a backup of
    /// the configured priority has waited its whole Master_Down_Interval since our
    /// last advert (sent one interval before `due`), it is master by now: yield.
    fn replaced_while_late(&mut self, now: Instant, due: Instant) -> bool {
        let Some(other) = self.cfg.timer_expired_backup else {
            return false;
        };
        if self.cfg.preempt || self.cfg.priority == PRIORITY_OWNER {
            return false;
        }
        let last_sent = due.checked_sub(self.cfg.advert_interval).unwrap_or(due);
        let their_down = timing::master_down_interval(
            self.cfg.version,
            other,
            self.cfg.advert_interval,
            self.cfg.down_timer_adverts,
        );
        if now.saturating_duration_since(last_sent) < their_down {
            return false;
        }
        self.leave_master_timers();
        self.actions.push_back(Action::RemoveAddresses);
        self.stats.released_master += 1;
        self.master = None;
        self.timers
            .set(Timer::MasterDown, now + self.master_down_interval());
        self.transition(
            now,
            State::Backup,
            TransitionReason::TimerExpired {
                other_priority: other,
            },
        );
        true
    }

    /// A VRRP message (IP payload) received on our interface, with its IP metadata.
    pub fn handle_packet(&mut self, now: Instant, meta: &RxMeta, payload: &[u8]) {
        let checked = self.validate(meta, payload, false);
        self.accept_or_count(now, meta.src, checked);
    }

    /// An IPv4 packet carrying AH (IP protocol 51), whole: IP header, AH, VRRP. The ICV
    /// is verified with our key before anything in the packet is believed; the
    /// sequence number must be newer than any seen or sent (replay protection).
    pub fn handle_ah_packet(&mut self, now: Instant, meta: &RxMeta, packet: &[u8]) {
        let checked = self.validate_ah(meta, packet);
        self.accept_or_count(now, meta.src, checked);
    }

    fn accept_or_count(&mut self, now: Instant, src: IpAddr, checked: Result<Advert, DropReason>) {
        match checked {
            Ok(adv) => {
                self.stats.adverts_received += 1;
                self.on_advert(now, src, &adv);
            }
            Err(reason) => self.count_drop(reason),
        }
    }

    fn validate_ah(&mut self, meta: &RxMeta, packet: &[u8]) -> Result<Advert, DropReason> {
        if self.cfg.auth != Auth::Ah || self.cfg.version != Version::V2 {
            // keepalived: "Received AH header but auth type not AH".
            return Err(DropReason::AuthTypeMismatch);
        }
        let opened = ah::open(packet, &self.cfg.ah_key, self.cfg.is_unicast())?;
        let adv = self.validate(meta, opened.vrrp, true)?;
        if !self.ah_seq.accept(opened.seq) {
            return Err(DropReason::Replayed);
        }
        Ok(adv)
    }

    /// RFC 5798 §7.1 receive checks, in the RFC's order where it gives one. `via_ah`:
    /// the message came inside an AH packet whose ICV verified.
    fn validate(
        &mut self,
        meta: &RxMeta,
        payload: &[u8],
        via_ah: bool,
    ) -> Result<Advert, DropReason> {
        if meta.src == self.cfg.primary {
            return Err(DropReason::OwnAdvert);
        }
        if self.cfg.is_unicast() {
            // TTL is meaningless across routed unicast paths; the peer list is the check.
            let peer = self.cfg.peers.iter().find(|p| p.addr == meta.src);
            let peer = peer.ok_or(DropReason::UnknownPeer)?;
            if meta.ttl < peer.min_ttl || meta.ttl > peer.max_ttl {
                return Err(DropReason::PeerTtl);
            }
        } else if meta.ttl != wire::VRRP_TTL {
            return Err(DropReason::BadTtl);
        }
        // keepalived's `auth_hmac` trailer: present when the payload is exactly one
        // trailer longer than the message (padding never reaches that size).
        let family = self.cfg.family();
        let msg_len = wire::vrrp::message_len(payload, family);
        let trailer = match (&self.cfg.hmac, msg_len) {
            (Some(_), Some(n)) if payload.len() == n + hmac::TRAILER_LEN => Some(n),
            // IP payloads carry no link padding: anything else after the message is
            // a cut-off trailer.
            (Some(_), Some(n)) if payload.len() > n => return Err(DropReason::Truncated),
            _ => None,
        };
        let covered = trailer.map_or(0, |_| hmac::TRAILER_LEN);
        let (adv, variant) = Advert::decode_trailed(payload, family, meta, covered)?;
        if adv.version != self.cfg.version {
            return Err(DropReason::VersionMismatch);
        }
        if adv.vrid != self.cfg.vrid {
            return Err(DropReason::UnknownVrid);
        }
        self.check_hmac(meta, payload, trailer)?;
        // RFC 5798 §5.2.5: at least one address; a router that runs without any
        // (keepalived's `no_virtual_ipaddress`) talks to peers that send none.
        if adv.version == Version::V3 && adv.addresses.is_empty() && !self.cfg.addresses.is_empty()
        {
            return Err(DropReason::BadAddressCount);
        }
        if self.cfg.version == Version::V3 && adv.interval_cs == 0 {
            // A zero interval would make backups time out in 3 × 0 + skew.
            return Err(DropReason::ZeroInterval);
        }
        if variant == ChecksumVariant::VrrpOnly {
            self.stats.vrrp_only_checksums += 1;
        }
        if self.cfg.priority == PRIORITY_OWNER
            && (self.cfg.version == Version::V2 || self.cfg.owner_ignore_adverts)
        {
            // RFC 3768 §7.1; RFC 9568 (erratum 8298) lets a v3 owner process them.
            return Err(DropReason::AddressOwner);
        }
        if self.cfg.version == Version::V2 {
            let (ours, theirs) = (&self.cfg.auth, &adv.auth);
            // AH is a property of the IP packet, not of the VRRP header's type field:
            // a plain protocol-112 advert claiming type 2 is as unauthenticated as any.
            if (*ours == Auth::Ah) != via_ah {
                return Err(DropReason::AuthTypeMismatch);
            }
            if std::mem::discriminant(ours) != std::mem::discriminant(theirs) {
                return Err(DropReason::AuthTypeMismatch);
            }
            if ours != theirs {
                return Err(DropReason::AuthMismatch);
            }
            if adv.interval_cs != timing::to_centis(self.cfg.advert_interval) {
                return Err(DropReason::IntervalMismatch);
            }
        }
        let known_sender = self.master.is_some_and(|(addr, _)| addr == meta.src);
        if self.cfg.check_addresses
            && adv.priority != PRIORITY_OWNER
            && !(self.cfg.skip_check_same_sender && known_sender)
            && !self.same_addresses(&adv.addresses)
        {
            return Err(DropReason::AddressMismatch);
        }
        Ok(adv)
    }

    /// `auth_hmac`: authenticate the advert before any of its fields is acted on.
    /// `msg_len`: where the trailer starts, if there is one.
    fn check_hmac(
        &mut self,
        meta: &RxMeta,
        payload: &[u8],
        msg_len: Option<usize>,
    ) -> Result<(), DropReason> {
        let Some(cfg) = &self.cfg.hmac else {
            return Ok(());
        };
        let Some(n) = msg_len else {
            return match cfg.mode {
                hmac::Mode::Enforce => Err(DropReason::AuthMissing),
                // The migration modes accept unsigned adverts.
                hmac::Mode::Permissive | hmac::Mode::ReceiveOnly => Ok(()),
            };
        };
        let binding = hmac::Binding {
            version: self.cfg.version.number(),
            vrid: self.cfg.vrid,
            src: meta.src,
        };
        let now = self.cfg.wall_clock.now();
        self.hmac_state
            .check(
                cfg,
                now,
                &binding,
                &payload[..n],
                &payload[n..],
                self.cfg.peers.len(),
            )
            .map_err(|r| match r {
                hmac::Refusal::Malformed => DropReason::AuthMalformed,
                hmac::Refusal::UnknownKey => DropReason::AuthUnknownKey,
                hmac::Refusal::BadHmac => DropReason::AuthMismatch,
                hmac::Refusal::Stale => DropReason::AuthStale,
                hmac::Refusal::Replayed => DropReason::Replayed,
            })
    }

    fn same_addresses(&self, theirs: &[IpAddr]) -> bool {
        theirs.len() == self.wire_addresses.len()
            && theirs.iter().all(|a| self.wire_addresses.contains(a))
    }

    fn on_advert(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        match self.state {
            State::Backup => self.backup_on_advert(now, src, adv),
            State::Master => self.master_on_advert(now, src, adv),
            State::Initialize | State::Fault => {}
        }
    }

    /// RFC 5798 §6.4.2.
    fn backup_on_advert(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        if adv.priority == PRIORITY_LEAVING {
            self.stats.priority_zero_received += 1;
            self.master_released = true;
            self.timers.set(Timer::MasterDown, now + self.skew_time());
            return;
        }
        if !self.cfg.preempt || adv.priority >= self.priority {
            if self.cfg.version == Version::V3 {
                self.master_adver_interval = timing::from_centis(adv.interval_cs);
            }
            self.master = Some((src, adv.priority));
            self.master_released = false;
            self.preempt_pending = false;
            self.timers
                .set(Timer::MasterDown, now + self.master_down_interval());
        } else if !self.cfg.preempt_delay.is_zero() && !self.preempt_pending {
            // A lower-priority master: we will preempt it, but only preempt_delay after
            // the usual master-down interval (keepalived semantics).
            self.preempt_pending = true;
            self.master = Some((src, adv.priority));
            self.timers.set(
                Timer::MasterDown,
                now + self.master_down_interval() + self.cfg.preempt_delay,
            );
        }
        // Otherwise: lower priority and preempting: discard, let the down timer run out.
    }

    /// RFC 5798 §6.4.3, with RFC 9568's immediate answer to a lower-priority master.
    fn master_on_advert(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        let ours = self.priority;
        if adv.priority == PRIORITY_LEAVING {
            self.stats.priority_zero_received += 1;
            self.send_advert(ours);
            self.timers
                .set(Timer::Advert, now + self.cfg.advert_interval);
            return;
        }
        let higher =
            adv.priority > ours || (adv.priority == ours && addr_gt(src, self.cfg.primary));
        if higher {
            if self.cfg.higher_prio_send_advert {
                self.send_advert(ours);
            }
            if self.cfg.version == Version::V3 {
                self.master_adver_interval = timing::from_centis(adv.interval_cs);
            }
            self.master = Some((src, adv.priority));
            self.master_released = false;
            self.leave_master_timers();
            self.timers
                .set(Timer::MasterDown, now + self.master_down_interval());
            self.actions.push_back(Action::RemoveAddresses);
            self.stats.released_master += 1;
            self.transition(
                now,
                State::Backup,
                TransitionReason::Preempted {
                    by: src,
                    priority: adv.priority,
                },
            );
        } else {
            // Another router thinks it is master with a lower priority: make ourselves
            // heard now rather than after up to one interval, and refresh neighbours'
            // caches in case they followed the other router's GARPs.
            if !self.cfg.lower_prio_no_advert {
                self.send_advert(ours);
                self.timers
                    .set(Timer::Advert, now + self.cfg.advert_interval);
            }
            let g = self.cfg.garp;
            if g.lower_prio_repeat > 0 && self.lower_prio_garp_after.is_none_or(|t| t <= now) {
                self.announce(g.lower_prio_repeat);
                let followup = (!g.followup.is_zero()).then(|| now + g.followup);
                self.timers.set_opt(Timer::GarpFollowup, followup);
                // At most one burst per lower_prio_delay (or per second), never a storm.
                let hold = g.lower_prio_delay.max(Duration::from_secs(1));
                self.lower_prio_garp_after = Some(now + hold);
            }
            self.actions.push_back(Action::MasterRxLowerPriority {
                from: src,
                priority: adv.priority,
            });
        }
    }

    fn become_master(&mut self, now: Instant, reason: TransitionReason) {
        // Order matters for take-over speed: addresses and announcements first, so the
        // runtime can put the first GARP/NA on the wire before anything else.
        self.actions.push_back(Action::AddAddresses);
        self.announce(self.cfg.garp.master_repeat);
        self.send_advert(self.priority);
        self.timers.stop(Timer::MasterDown);
        self.preempt_pending = false;
        self.master_released = false;
        self.timers
            .set(Timer::Advert, now + self.cfg.advert_interval);
        let g = self.cfg.garp;
        let second =
            (!g.master_delay.is_zero() && g.master_repeat > 0).then(|| now + g.master_delay);
        self.timers.set_opt(Timer::GarpSecond, second);
        let refresh = (!g.refresh.is_zero() && g.refresh_repeat > 0).then(|| now + g.refresh);
        self.timers.set_opt(Timer::GarpRefresh, refresh);
        let followup = (!g.followup.is_zero() && g.master_repeat > 0).then(|| now + g.followup);
        self.timers.set_opt(Timer::GarpFollowup, followup);
        self.lower_prio_garp_after = None;
        self.stats.became_master += 1;
        self.transition(now, State::Master, reason);
    }

    /// Master leaving (shutdown or fault): priority 0, then drop the addresses.
    fn release_master(&mut self) {
        self.send_advert(PRIORITY_LEAVING);
        self.actions.push_back(Action::RemoveAddresses);
        self.stats.released_master += 1;
    }

    fn leave_master_timers(&mut self) {
        self.timers.stop(Timer::Advert);
        self.timers.stop(Timer::GarpSecond);
        self.timers.stop(Timer::GarpRefresh);
        self.timers.stop(Timer::GarpFollowup);
        self.lower_prio_garp_after = None;
    }

    /// Stop every protocol timer. The shutdown hold is not one: it ends with
    /// [`Instance::end_shutdown_hold`] (which removes the addresses) or by firing.
    fn clear_timers(&mut self) {
        self.leave_master_timers();
        self.timers.stop(Timer::MasterDown);
        self.preempt_pending = false;
    }

    /// Cut a running shutdown hold short: the addresses still held go now.
    fn end_shutdown_hold(&mut self) {
        if self.timers.take(Timer::Release).is_some() {
            self.actions.push_back(Action::RemoveAddresses);
        }
    }

    fn announce(&mut self, repeat: u32) {
        if repeat > 0 {
            self.stats.announce_bursts += 1;
            self.actions.push_back(Action::Announce { repeat });
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let adv = Advert {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval_cs: timing::to_centis(self.cfg.advert_interval),
            addresses: self.wire_addresses.clone(),
            auth: self.cfg.auth,
        };
        let src = self.cfg.primary;
        let dsts: Vec<IpAddr> = if self.cfg.peers.is_empty() {
            vec![self.cfg.advert_group()]
        } else {
            self.cfg.peers.iter().map(|p| p.addr).collect()
        };
        // AH: one sequence number per advert, the same to every peer (keepalived).
        let seq = self.ah_active().then(|| self.ah_seq.next_seq());
        // auth_hmac: one trailer per advert; the HMAC leaves out the checksum, the
        // only field that differs between the copies to several peers.
        let trailer = self.hmac_trailer(&adv, src);
        for dst in dsts {
            let mut payload = adv.encode(src, dst, self.cfg.checksum);
            if let Some(t) = &trailer {
                payload.extend_from_slice(t);
                if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
                    // The IPv6 checksum covers the whole payload, as the kernel's.
                    wire::vrrp::refresh_checksum_v6(&mut payload, s, d);
                }
            }
            if let (Some(seq), IpAddr::V4(s), IpAddr::V4(d)) = (seq, src, dst) {
                self.ip_id = self.ip_id.wrapping_add(1).max(1);
                let params = ah::SealParams {
                    src: s,
                    dst: d,
                    ttl: wire::VRRP_TTL,
                    id: self.ip_id,
                    seq,
                    unicast: self.cfg.is_unicast(),
                };
                payload = ah::seal(&self.cfg.ah_key, &params, &payload);
            }
            self.actions.push_back(Action::Send { dst, payload });
        }
        self.stats.adverts_sent += 1;
        if priority == PRIORITY_LEAVING {
            self.stats.priority_zero_sent += 1;
        }
    }

    /// The `auth_hmac` trailer for `adv`, if we sign.
    fn hmac_trailer(&mut self, adv: &Advert, src: IpAddr) -> Option<[u8; hmac::TRAILER_LEN]> {
        let cfg = self.cfg.hmac.as_ref().filter(|c| c.signs())?;
        let key = cfg.key(cfg.active_key)?;
        let seq = self.hmac_state.next_seq(cfg, self.cfg.wall_clock.now());
        let binding = hmac::Binding {
            version: self.cfg.version.number(),
            vrid: self.cfg.vrid,
            src,
        };
        // The message as sent (its checksum does not matter to the HMAC).
        let msg = adv.encode(src, src, ChecksumVariant::VrrpOnly);
        Some(hmac::sign(key, &binding, &msg, seq))
    }

    /// Adverts go out inside AH (VRRPv2 over IPv4 only, as in keepalived).
    fn ah_active(&self) -> bool {
        self.cfg.auth == Auth::Ah
            && self.cfg.version == Version::V2
            && self.cfg.family() == Family::V4
    }

    fn transition(&mut self, now: Instant, to: State, reason: TransitionReason) {
        let from = self.state;
        self.state = to;
        self.stats.transitions += 1;
        let up = |s: State| matches!(s, State::Backup | State::Master);
        if !up(to) {
            self.stats.up_since = None;
        } else if !up(from) {
            self.stats.up_since = Some(now);
        }
        if to == State::Master {
            self.stats.last_master_reason = Some(reason);
        }
        self.last_transition = Some((now, reason));
        self.actions
            .push_back(Action::Transition { from, to, reason });
    }
}

/// The next deadline of a periodic timer that fired at `now` and was due at `due`:
/// one `period` after `due`, or after `now` when that is already past; `None` for a
/// zero period (a reconfigure can switch a refresh off while it runs), never `now`.
fn cadence(due: Instant, period: Duration, now: Instant) -> Option<Instant> {
    if period.is_zero() {
        return None;
    }
    let next = due + period;
    Some(if next <= now { now + period } else { next })
}

/// Where the engine reads the wall clock (time since the Unix epoch). Not part of
/// the configuration proper: any two compare equal.
#[derive(Clone, Copy)]
pub struct WallClock(pub fn() -> Duration);

impl WallClock {
    pub fn now(&self) -> Duration {
        (self.0)()
    }
}

impl PartialEq for WallClock {
    fn eq(&self, _: &WallClock) -> bool {
        true
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

/// The real wall clock: time since the Unix epoch.
pub fn unix_time() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn effective_priority(base: u8, adjustment: i32) -> u8 {
    if base == PRIORITY_OWNER {
        return base;
    }
    (i32::from(base) + adjustment).clamp(1, 254) as u8
}

/// RFC 5798 §6.4.3: addresses compare as unsigned integers in network byte order.
fn addr_gt(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
mod timer;
