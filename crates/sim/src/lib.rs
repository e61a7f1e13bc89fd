//! A deterministic simulator of whole VRRP clusters, built on the sans-IO engine of
//! [`vipd_vrrp`].
//!
//! A [`Sim`] holds N routers, each one [`Instance`] of the engine, attached to one
//! virtual broadcast domain. Time is virtual: an arbitrary [`Instant`] base plus
//! [`Duration`] offsets, advanced by a discrete-event queue ordered by (time, sequence
//! number), so a run depends on nothing but its inputs and its seed. Randomness (link
//! jitter and loss) comes from a small seeded generator owned by the simulator.
//!
//! # The wire
//!
//! * A multicast `Send` (dst = 224.0.0.18 / ff02::12) reaches every *other* router in
//!   the sender's partition group; a unicast `Send` reaches only the router whose
//!   primary address equals `dst` (if it is in the sender's group). Anything else is
//!   counted as undeliverable.
//! * Packets arrive with `RxMeta { src: sender's primary, dst, ttl: 255 }`.
//! * Each copy gets `delay + uniform(0..=jitter)` and is lost with probability `loss`
//!   (see [`Link`]). Link parameters come from, in this order: a directional per-link
//!   override ([`Sim::set_link`]), the sender's per-router override
//!   ([`Sim::set_router_link`]), the default ([`Sim::set_default_link`]). Copies on one
//!   directional link stay in order (FIFO), as on a real LAN.
//! * Partitions ([`Sim::partition`]) are checked when a packet is sent: a copy is only
//!   scheduled to routers in the sender's group. A packet already in flight when the
//!   partition changes is still delivered.
//!
//! # Routers
//!
//! [`Sim::add_router`] attaches a router (not yet started); [`Sim::start`] calls
//! `startup`. [`Sim::stop`] is a graceful stop (`shutdown`: a master sends priority 0
//! and removes its addresses). [`Sim::crash`] is a host failure: the router stops
//! processing at once, says nothing, and its addresses disappear with it (the timeline
//! records a [`EntryKind::Crashed`], which ends mastership and address holding).
//! [`Sim::restart`] brings a stopped or crashed router back as a fresh `Instance`
//! (a new process) from its config (possibly replaced by [`Sim::reconfigure`]).
//! [`Sim::set_fault`] raises or clears a fault on a running router.
//!
//! # BFD sessions
//!
//! [`Sim::add_bfd_session`] models a BFD session (RFC 5880) between two routers as an
//! abstract up/down signal fed to both engines as `peer_up` / `peer_down` with the other
//! router's primary address (what vipd's runtime does for `bfd_takeover`). The session
//! is *viable* while both routers run, they are in one partition group and its own
//! path is intact ([`Sim::set_bfd_path`]: the BFD path can break while adverts still
//! flow, or the reverse). It goes Down one detection time after it stops being viable
//! (a crash, a partition, a broken path), and Up one detection time after it becomes
//! viable again (the three-way handshake); a change undone within that time is not
//! seen, as with real BFD. A detection time of zero passes every flap through at once.
//!
//! # Timeline
//!
//! Every transition, address change, announcement, send, loss and operator action is
//! recorded in a [`Timeline`] with its time, so tests can ask who was master or held
//! the VIP at any moment ([`Timeline::masters_at`], [`Timeline::holders_at`]), get the
//! piecewise-constant history ([`Timeline::mastership`]) and the intervals with no or
//! several masters ([`Timeline::no_master_intervals`],
//! [`Timeline::dual_master_intervals`]). Two runs with the same inputs and seed produce
//! equal timelines.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use vipd_sim::{presets, Link, Sim};
//! use vipd_vrrp::Version;
//!
//! let interval = Duration::from_millis(100);
//! let mut sim = Sim::new(42);
//! sim.set_default_link(Link::delay(Duration::from_micros(200)).with_jitter(Duration::from_micros(50)));
//! let a = sim.add_router(presets::config_v4(Version::V3, 100, 1, interval));
//! let b = sim.add_router(presets::config_v4(Version::V3, 200, 2, interval));
//! sim.start_all();
//! sim.run_for(Duration::from_secs(2));
//! assert_eq!(sim.masters(), vec![b]);
//!
//! // Graceful stop of the master: the backup takes over after its Skew_Time.
//! let stop = sim.now();
//! sim.stop(b);
//! sim.run_for(Duration::from_secs(1));
//! assert_eq!(sim.masters(), vec![a]);
//! let gaps = sim.timeline().no_master_intervals(sim.now());
//! let gap = gaps.iter().find(|g| g.start == stop).unwrap();
//! assert!(gap.len() <= sim.router(a).skew_time() + Duration::from_micros(250));
//! ```

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use vipd_vrrp::engine::{Action, Instance, InstanceConfig, State, TransitionReason};
use vipd_vrrp::wire::{Family, RxMeta, VRRP_TTL};

/// Index of a router in a [`Sim`], in the order of [`Sim::add_router`].
pub type RouterId = usize;

/// Properties of a (directional) link: every copy of a packet is delayed by
/// `delay + uniform(0..=jitter)` and lost with probability `loss`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub delay: Duration,
    pub jitter: Duration,
    /// Loss probability in `0.0..=1.0`.
    pub loss: f64,
}

impl Default for Link {
    fn default() -> Self {
        Link::ideal()
    }
}

impl Link {
    /// No delay, no jitter, no loss.
    pub const fn ideal() -> Link {
        Link {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
    /// A fixed delay, no jitter, no loss.
    pub const fn delay(delay: Duration) -> Link {
        Link {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
    pub const fn with_jitter(mut self, jitter: Duration) -> Link {
        self.jitter = jitter;
        self
    }
    pub fn with_loss(mut self, loss: f64) -> Link {
        assert!((0.0..=1.0).contains(&loss), "loss must be a probability");
        self.loss = loss;
        self
    }
    /// The longest a delivered copy can take.
    pub fn max_delay(&self) -> Duration {
        self.delay + self.jitter
    }
}

/// Life-cycle of a simulated router (as opposed to its VRRP [`State`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Added, never started.
    Idle,
    Running,
    /// Gracefully stopped ([`Sim::stop`]).
    Stopped,
    /// Crashed ([`Sim::crash`]): frozen, silent, addresses gone.
    Crashed,
}

/// Per-router packet counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `Send` actions emitted.
    pub sent: u64,
    /// Copies handed to this router's engine.
    pub delivered: u64,
    /// Copies addressed to this router lost on the wire.
    pub lost: u64,
    /// Copies to this router not sent because of a partition.
    pub partitioned: u64,
    /// Copies that arrived while this router was not running.
    pub dropped_down: u64,
    /// Unicast sends from this router to an address no router has.
    pub undeliverable: u64,
}

/// What happened, in a [`Timeline`] entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Transition {
        from: State,
        to: State,
        reason: TransitionReason,
    },
    AddAddresses,
    RemoveAddresses,
    Announce {
        repeat: u32,
    },
    /// An advert left the router (`priority` read from the payload).
    Sent {
        dst: IpAddr,
        priority: u8,
    },
    /// A copy of a packet from this router to `to` was lost.
    Lost {
        to: RouterId,
    },
    Started,
    Stopped,
    Crashed,
    Restarted,
    Fault(bool),
    /// The BFD session to `peer` changed state, as seen by this router.
    Bfd {
        peer: RouterId,
        up: bool,
    },
}

/// One timeline entry: `router` did or suffered `kind` at `at` (offset from the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: Duration,
    pub router: RouterId,
    pub kind: EntryKind,
}

/// A change of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// Partition groups in force from now (each router in at most one group; routers
    /// in no group are isolated).
    Partition(Vec<Vec<RouterId>>),
    Healed,
}

/// `[start, end)` in virtual time, with the routers concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start: Duration,
    pub end: Duration,
    pub routers: Vec<RouterId>,
}

impl Segment {
    pub fn len(&self) -> Duration {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Everything that happened in a run, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub entries: Vec<Entry>,
    pub network: Vec<(Duration, NetEvent)>,
}

impl Timeline {
    /// Transitions as `(at, router, from, to, reason)`.
    pub fn transitions(
        &self,
    ) -> impl Iterator<Item = (Duration, RouterId, State, State, TransitionReason)> + '_ {
        self.entries.iter().filter_map(|e| match e.kind {
            EntryKind::Transition { from, to, reason } => Some((e.at, e.router, from, to, reason)),
            _ => None,
        })
    }

    /// Times at which `router` sent an advert (any priority).
    pub fn sends(&self, router: RouterId) -> impl Iterator<Item = Duration> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.router == router && matches!(e.kind, EntryKind::Sent { .. }))
            .map(|e| e.at)
    }

    /// The last advert `router` sent at or before `t`.
    pub fn last_send_at_or_before(&self, router: RouterId, t: Duration) -> Option<Duration> {
        self.sends(router).take_while(|s| *s <= t).last()
    }

    fn flags_at(&self, t: Duration, f: impl Fn(&EntryKind, bool) -> bool) -> Vec<RouterId> {
        let mut on: BTreeMap<RouterId, bool> = BTreeMap::new();
        for e in self.entries.iter().take_while(|e| e.at <= t) {
            let cur = on.get(&e.router).copied().unwrap_or(false);
            on.insert(e.router, f(&e.kind, cur));
        }
        on.into_iter().filter(|(_, v)| *v).map(|(r, _)| r).collect()
    }

    /// Routers in MASTER state at `t` (after every event at `t`).
    pub fn masters_at(&self, t: Duration) -> Vec<RouterId> {
        self.flags_at(t, master_flag)
    }

    /// Routers holding the virtual addresses at `t` (after every event at `t`).
    pub fn holders_at(&self, t: Duration) -> Vec<RouterId> {
        self.flags_at(t, holder_flag)
    }

    fn segments(&self, until: Duration, f: impl Fn(&EntryKind, bool) -> bool) -> Vec<Segment> {
        let mut on: BTreeMap<RouterId, bool> = BTreeMap::new();
        let current = |on: &BTreeMap<RouterId, bool>| -> Vec<RouterId> {
            on.iter().filter(|(_, v)| **v).map(|(r, _)| *r).collect()
        };
        let mut out: Vec<Segment> = Vec::new();
        let mut seg = Segment {
            start: Duration::ZERO,
            end: Duration::ZERO,
            routers: Vec::new(),
        };
        let mut i = 0;
        let entries = &self.entries;
        while i < entries.len() && entries[i].at <= until {
            let t = entries[i].at;
            while i < entries.len() && entries[i].at == t {
                let e = &entries[i];
                let cur = on.get(&e.router).copied().unwrap_or(false);
                on.insert(e.router, f(&e.kind, cur));
                i += 1;
            }
            let now = current(&on);
            if now != seg.routers {
                if t > seg.start {
                    seg.end = t;
                    out.push(seg);
                }
                seg = Segment {
                    start: t,
                    end: t,
                    routers: now,
                };
            }
        }
        seg.end = until.max(seg.start);
        out.push(seg);
        out
    }

    /// The history of mastership up to `until`: consecutive, non-empty (except possibly
    /// the last) segments, each with the routers that were MASTER throughout it.
    /// Changes that cancel out at one instant do not show.
    pub fn mastership(&self, until: Duration) -> Vec<Segment> {
        self.segments(until, master_flag)
    }

    /// Like [`Timeline::mastership`], for holding the virtual addresses.
    pub fn address_holding(&self, until: Duration) -> Vec<Segment> {
        self.segments(until, holder_flag)
    }

    /// Maximal intervals (up to `until`) in which the number of masters satisfies `pred`.
    pub fn master_count_intervals(
        &self,
        until: Duration,
        pred: impl Fn(usize) -> bool,
    ) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for s in self.mastership(until) {
            if !pred(s.routers.len()) || s.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.end == s.start => {
                    last.end = s.end;
                    for r in s.routers {
                        if !last.routers.contains(&r) {
                            last.routers.push(r);
                        }
                    }
                    last.routers.sort_unstable();
                }
                _ => out.push(s),
            }
        }
        out
    }

    /// Maximal intervals with no master (including the start-up period).
    pub fn no_master_intervals(&self, until: Duration) -> Vec<Segment> {
        self.master_count_intervals(until, |n| n == 0)
    }

    /// Maximal intervals with two or more masters; `routers` lists every router that was
    /// master at some point of the interval.
    pub fn dual_master_intervals(&self, until: Duration) -> Vec<Segment> {
        self.master_count_intervals(until, |n| n >= 2)
    }

    /// The first time at or after `from` at which `router` became MASTER.
    pub fn became_master_after(&self, router: RouterId, from: Duration) -> Option<Duration> {
        self.transitions()
            .find(|(at, r, _, to, _)| *at >= from && *r == router && *to == State::Master)
            .map(|(at, ..)| at)
    }

    /// The first time at or after `from` at which any router became MASTER, and which.
    pub fn first_master_after(&self, from: Duration) -> Option<(Duration, RouterId)> {
        self.transitions()
            .find(|(at, _, _, to, _)| *at >= from && *to == State::Master)
            .map(|(at, r, ..)| (at, r))
    }

    /// Number of transitions into MASTER at or after `from`.
    pub fn master_transitions_since(&self, from: Duration) -> usize {
        self.transitions()
            .filter(|(at, _, _, to, _)| *at >= from && *to == State::Master)
            .count()
    }
}

fn master_flag(kind: &EntryKind, cur: bool) -> bool {
    match kind {
        EntryKind::Transition { to, .. } => *to == State::Master,
        EntryKind::Crashed => false,
        _ => cur,
    }
}

fn holder_flag(kind: &EntryKind, cur: bool) -> bool {
    match kind {
        EntryKind::AddAddresses => true,
        EntryKind::RemoveAddresses | EntryKind::Crashed => false,
        _ => cur,
    }
}

/// SplitMix64: tiny, fast, good enough for jitter and loss, and fully determined by
/// its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in `[0, max]`.
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        let n = max.as_nanos() as u64;
        if n == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % (n + 1))
    }
}

/// An operation scheduled with [`Sim::schedule`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Start(RouterId),
    Stop(RouterId),
    Crash(RouterId),
    Restart(RouterId),
    Fault(RouterId, bool),
    Partition(Vec<Vec<RouterId>>),
    Heal,
    /// [`Sim::set_bfd_path`] of a session index.
    BfdPath(usize, bool),
}

/// A modelled BFD session between two routers; see the crate documentation.
#[derive(Debug, Clone)]
struct BfdSession {
    a: RouterId,
    b: RouterId,
    detect: Duration,
    path_ok: bool,
    /// The state both ends last saw.
    up: bool,
    /// Invalidates a queued state change when viability changes again.
    generation: u64,
    /// Viability the queued change is heading for.
    pending: Option<bool>,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        from: RouterId,
        to: RouterId,
        dst: IpAddr,
        payload: Vec<u8>,
    },
    Timer {
        router: RouterId,
        generation: u64,
    },
    Op(Op),
    Bfd {
        session: usize,
        generation: u64,
        up: bool,
    },
}

struct Queued {
    at: Duration,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Router {
    cfg: InstanceConfig,
    inst: Instance,
    status: Status,
    /// The timer currently queued for this router, and its generation.
    armed: Option<Duration>,
    generation: u64,
    counters: Counters,
}

/// The simulator. See the crate documentation.
pub struct Sim {
    t0: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    rng: Rng,
    routers: Vec<Router>,
    default_link: Link,
    router_links: BTreeMap<RouterId, Link>,
    links: BTreeMap<(RouterId, RouterId), Link>,
    /// Group index per router, when partitioned.
    partition: Option<Vec<Option<usize>>>,
    /// Last scheduled arrival per directional link, to keep links FIFO.
    last_arrival: BTreeMap<(RouterId, RouterId), Duration>,
    timeline: Timeline,
    bfd: Vec<BfdSession>,
}

impl Sim {
    /// An empty simulator: ideal links, no routers, time zero.
    pub fn new(seed: u64) -> Sim {
        Sim {
            t0: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            rng: Rng::new(seed),
            routers: Vec::new(),
            default_link: Link::ideal(),
            router_links: BTreeMap::new(),
            links: BTreeMap::new(),
            partition: None,
            last_arrival: BTreeMap::new(),
            timeline: Timeline::default(),
            bfd: Vec::new(),
        }
    }

    /// Model a BFD session between `a` and `b` with detection time `detect` (also used
    /// as the time to come up). Returns its index for [`Sim::set_bfd_path`].
    pub fn add_bfd_session(&mut self, a: RouterId, b: RouterId, detect: Duration) -> usize {
        self.bfd.push(BfdSession {
            a,
            b,
            detect,
            path_ok: true,
            up: false,
            generation: 0,
            pending: None,
        });
        let i = self.bfd.len() - 1;
        self.bfd_reevaluate();
        i
    }

    /// Break or repair the BFD path of a session (adverts are not affected).
    pub fn set_bfd_path(&mut self, session: usize, ok: bool) {
        self.bfd[session].path_ok = ok;
        self.bfd_reevaluate();
    }

    /// Whether a BFD session is Up now.
    pub fn bfd_up(&self, session: usize) -> bool {
        self.bfd[session].up
    }

    fn bfd_viable(&self, i: usize) -> bool {
        let s = &self.bfd[i];
        s.path_ok
            && self.routers[s.a].status == Status::Running
            && self.routers[s.b].status == Status::Running
            && self.connected(s.a, s.b)
            && self.connected(s.b, s.a)
    }

    /// After anything that may change a session's viability: queue its state change.
    fn bfd_reevaluate(&mut self) {
        for i in 0..self.bfd.len() {
            let viable = self.bfd_viable(i);
            let s = &mut self.bfd[i];
            let heading = s.pending.unwrap_or(s.up);
            if heading == viable {
                continue;
            }
            s.generation += 1;
            if viable == s.up {
                // Undone before detection: nothing is seen.
                s.pending = None;
                continue;
            }
            s.pending = Some(viable);
            let (generation, at) = (s.generation, self.now + s.detect);
            self.push(
                at,
                Ev::Bfd {
                    session: i,
                    generation,
                    up: viable,
                },
            );
        }
    }

    fn bfd_fire(&mut self, i: usize, generation: u64, up: bool) {
        let s = &mut self.bfd[i];
        if s.generation != generation || s.up == up {
            return;
        }
        s.up = up;
        s.pending = None;
        let (a, b) = (s.a, s.b);
        let now = self.instant(self.now);
        for (me, peer) in [(a, b), (b, a)] {
            if self.routers[me].status != Status::Running {
                continue;
            }
            self.record(me, EntryKind::Bfd { peer, up });
            let addr = self.routers[peer].cfg.primary;
            let inst = &mut self.routers[me].inst;
            if up {
                inst.peer_up(now, addr);
            } else {
                inst.peer_down(now, addr);
            }
            self.after_input(me);
        }
    }

    // ----- configuration -------------------------------------------------------

    /// Link properties for every packet without a more specific override.
    pub fn set_default_link(&mut self, link: Link) {
        self.default_link = link;
    }
    /// Link properties for every packet sent by `router`.
    pub fn set_router_link(&mut self, router: RouterId, link: Link) {
        self.router_links.insert(router, link);
    }
    /// Link properties for packets from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: RouterId, to: RouterId, link: Link) {
        self.links.insert((from, to), link);
    }
    /// The link properties used for a packet from `from` to `to`.
    pub fn link(&self, from: RouterId, to: RouterId) -> Link {
        self.links
            .get(&(from, to))
            .or_else(|| self.router_links.get(&from))
            .copied()
            .unwrap_or(self.default_link)
    }
    /// The largest `delay + jitter` over every configured link.
    pub fn max_link_delay(&self) -> Duration {
        std::iter::once(self.default_link)
            .chain(self.router_links.values().copied())
            .chain(self.links.values().copied())
            .map(|l| l.max_delay())
            .max()
            .unwrap_or_default()
    }

    /// Attach a router (not started).
    pub fn add_router(&mut self, cfg: InstanceConfig) -> RouterId {
        let id = self.routers.len();
        self.routers.push(Router {
            inst: Instance::new(cfg.clone()),
            cfg,
            status: Status::Idle,
            armed: None,
            generation: 0,
            counters: Counters::default(),
        });
        if let Some(p) = &mut self.partition {
            p.push(None);
        }
        id
    }

    /// Replace a router's config; takes effect at the next [`Sim::restart`] (or
    /// [`Sim::start`] of an idle router).
    pub fn reconfigure(&mut self, id: RouterId, cfg: InstanceConfig) {
        let r = &mut self.routers[id];
        r.cfg = cfg.clone();
        if r.status == Status::Idle {
            r.inst = Instance::new(cfg);
        }
    }

    // ----- accessors -----------------------------------------------------------

    /// Current virtual time, as an offset from the start.
    pub fn now(&self) -> Duration {
        self.now
    }
    /// The `Instant` the engine sees for offset zero.
    pub fn t0(&self) -> Instant {
        self.t0
    }
    /// The `Instant` of an offset.
    pub fn instant(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }
    pub fn len(&self) -> usize {
        self.routers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }
    pub fn router(&self, id: RouterId) -> &Instance {
        &self.routers[id].inst
    }
    pub fn config(&self, id: RouterId) -> &InstanceConfig {
        &self.routers[id].cfg
    }
    pub fn status(&self, id: RouterId) -> Status {
        self.routers[id].status
    }
    pub fn counters(&self, id: RouterId) -> Counters {
        self.routers[id].counters
    }
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }
    /// Running routers in MASTER state, now.
    pub fn masters(&self) -> Vec<RouterId> {
        (0..self.routers.len())
            .filter(|&i| {
                self.routers[i].status == Status::Running
                    && self.routers[i].inst.state() == State::Master
            })
            .collect()
    }
    /// The router that should win among `among` (by config): highest priority, then
    /// highest primary address.
    pub fn expected_master(&self, among: impl IntoIterator<Item = RouterId>) -> Option<RouterId> {
        among
            .into_iter()
            .max_by_key(|&i| rank(&self.routers[i].cfg))
    }
    /// Routers currently running (not idle, stopped or crashed).
    pub fn running(&self) -> Vec<RouterId> {
        (0..self.routers.len())
            .filter(|&i| self.routers[i].status == Status::Running)
            .collect()
    }

    // ----- operations (at the current time) ------------------------------------

    /// Start a router (`startup`). Idle or stopped routers only; see [`Sim::restart`].
    pub fn start(&mut self, id: RouterId) {
        let r = &mut self.routers[id];
        assert!(
            matches!(r.status, Status::Idle),
            "start: router {id} is {:?}; use restart",
            r.status
        );
        r.status = Status::Running;
        self.record(id, EntryKind::Started);
        let now = self.instant(self.now);
        self.routers[id].inst.startup(now);
        self.after_input(id);
        self.bfd_reevaluate();
    }

    /// Start every idle router, in id order.
    pub fn start_all(&mut self) {
        for id in 0..self.routers.len() {
            if self.routers[id].status == Status::Idle {
                self.start(id);
            }
        }
    }

    /// Graceful stop: `shutdown` (a master sends priority 0 and removes its addresses),
    /// then the router stops processing.
    pub fn stop(&mut self, id: RouterId) {
        if self.routers[id].status != Status::Running {
            return;
        }
        let now = self.instant(self.now);
        self.routers[id].inst.shutdown(now);
        self.after_input(id);
        // The daemon lives on while its engine still has timers (the make-before-break
        // address hold); it just takes no more packets.
        self.routers[id].status = Status::Stopped;
        self.record(id, EntryKind::Stopped);
        self.bfd_reevaluate();
    }

    /// Host failure: the router stops at once, silently; its addresses are gone.
    pub fn crash(&mut self, id: RouterId) {
        if self.routers[id].status != Status::Running {
            return;
        }
        let r = &mut self.routers[id];
        r.status = Status::Crashed;
        r.generation += 1;
        r.armed = None;
        self.record(id, EntryKind::Crashed);
        self.bfd_reevaluate();
    }

    /// Bring a stopped or crashed router back as a fresh instance of its config.
    pub fn restart(&mut self, id: RouterId) {
        let r = &mut self.routers[id];
        if r.status == Status::Running {
            return;
        }
        r.inst = Instance::new(r.cfg.clone());
        r.status = Status::Running;
        r.generation += 1;
        r.armed = None;
        self.record(id, EntryKind::Restarted);
        let now = self.instant(self.now);
        self.routers[id].inst.startup(now);
        self.after_input(id);
        self.bfd_reevaluate();
    }

    /// Raise or clear a fault on a running router.
    pub fn set_fault(&mut self, id: RouterId, fault: bool) {
        if self.routers[id].status != Status::Running {
            return;
        }
        self.record(id, EntryKind::Fault(fault));
        let now = self.instant(self.now);
        self.routers[id].inst.set_fault(now, fault);
        self.after_input(id);
    }

    /// Split the wire: packets only cross within a group. Routers in no group are
    /// isolated. Replaces any previous partition.
    pub fn partition(&mut self, groups: &[&[RouterId]]) {
        let mut map = vec![None; self.routers.len()];
        for (g, members) in groups.iter().enumerate() {
            for &m in members.iter() {
                assert!(map[m].is_none(), "router {m} in two partition groups");
                map[m] = Some(g);
            }
        }
        self.partition = Some(map);
        let groups = groups.iter().map(|g| g.to_vec()).collect();
        self.timeline
            .network
            .push((self.now, NetEvent::Partition(groups)));
        self.bfd_reevaluate();
    }

    /// Remove any partition.
    pub fn heal(&mut self) {
        self.partition = None;
        self.timeline.network.push((self.now, NetEvent::Healed));
        self.bfd_reevaluate();
    }

    /// Whether a packet from `a` can currently reach `b`.
    pub fn connected(&self, a: RouterId, b: RouterId) -> bool {
        match &self.partition {
            None => true,
            Some(p) => p[a].is_some() && p[a] == p[b],
        }
    }

    /// Schedule an operation at an absolute virtual time (not in the past). It runs
    /// after every event already queued for that time.
    pub fn schedule(&mut self, at: Duration, op: Op) {
        assert!(at >= self.now, "cannot schedule in the past");
        self.push(at, Ev::Op(op));
    }

    // ----- running -------------------------------------------------------------

    /// Process every event up to and including `until`; then `now() == until`.
    pub fn run_until(&mut self, until: Duration) {
        while self.queue.peek().is_some_and(|q| q.0.at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// [`Sim::run_until`] `now() + d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Time of the next queued event.
    pub fn next_event_at(&self) -> Option<Duration> {
        self.queue.peek().map(|q| q.0.at)
    }

    /// Process the next event; false if the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(q)) = self.queue.pop() else {
            return false;
        };
        debug_assert!(q.at >= self.now);
        self.now = q.at;
        match q.ev {
            Ev::Deliver {
                from,
                to,
                dst,
                payload,
            } => {
                if self.routers[to].status != Status::Running {
                    self.routers[to].counters.dropped_down += 1;
                } else {
                    self.routers[to].counters.delivered += 1;
                    let meta = RxMeta {
                        src: self.routers[from].cfg.primary,
                        dst,
                        ttl: VRRP_TTL,
                    };
                    let now = self.instant(self.now);
                    self.routers[to].inst.handle_packet(now, &meta, &payload);
                    self.after_input(to);
                }
            }
            Ev::Timer { router, generation } => {
                let now = self.instant(self.now);
                let r = &mut self.routers[router];
                if r.generation == generation
                    && matches!(r.status, Status::Running | Status::Stopped)
                {
                    r.armed = None;
                    r.inst.handle_timeout(now);
                    // Timer safety (issue 13): whatever was due has been handled or
                    // dropped, so the engine never asks for the same past deadline again
                    // (which would spin a real protocol loop).
                    let next = r.inst.poll_timeout();
                    assert!(
                        next.is_none_or(|t| t > now),
                        "engine bug: router {router}'s timer does not advance past {:?} \
                         (poll_timeout {:?} after handle_timeout)",
                        self.now,
                        next.map(|t| t - self.t0)
                    );
                    self.after_input(router);
                }
            }
            Ev::Op(op) => match op {
                Op::Start(id) => self.start(id),
                Op::Stop(id) => self.stop(id),
                Op::Crash(id) => self.crash(id),
                Op::Restart(id) => self.restart(id),
                Op::Fault(id, on) => self.set_fault(id, on),
                Op::Partition(groups) => {
                    let g: Vec<&[RouterId]> = groups.iter().map(|g| g.as_slice()).collect();
                    self.partition(&g)
                }
                Op::Heal => self.heal(),
                Op::BfdPath(i, ok) => self.set_bfd_path(i, ok),
            },
            Ev::Bfd {
                session,
                generation,
                up,
            } => self.bfd_fire(session, generation, up),
        }
        true
    }

    // ----- internals -----------------------------------------------------------

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn record(&mut self, router: RouterId, kind: EntryKind) {
        self.timeline.entries.push(Entry {
            at: self.now,
            router,
            kind,
        });
    }

    /// Drain the router's actions, carry them out, and re-arm its timer.
    fn after_input(&mut self, id: RouterId) {
        while let Some(action) = self.routers[id].inst.poll_action() {
            match action {
                Action::Send { dst, payload } => self.send(id, dst, payload),
                Action::AddAddresses => self.record(id, EntryKind::AddAddresses),
                Action::RemoveAddresses => self.record(id, EntryKind::RemoveAddresses),
                Action::Announce { repeat } => self.record(id, EntryKind::Announce { repeat }),
                // Only the notify runtime acts on it.
                Action::MasterRxLowerPriority { .. } => {}
                Action::Transition { from, to, reason } => {
                    self.record(id, EntryKind::Transition { from, to, reason })
                }
            }
        }
        let want = self.routers[id]
            .inst
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.t0).max(self.now));
        let r = &mut self.routers[id];
        if want != r.armed {
            r.armed = want;
            r.generation += 1;
            if let Some(at) = want {
                let generation = r.generation;
                self.push(
                    at,
                    Ev::Timer {
                        router: id,
                        generation,
                    },
                );
            }
        }
    }

    fn send(&mut self, from: RouterId, dst: IpAddr, payload: Vec<u8>) {
        self.routers[from].counters.sent += 1;
        let priority = payload.get(2).copied().unwrap_or(0);
        self.record(from, EntryKind::Sent { dst, priority });
        let family = Family::of(&self.routers[from].cfg.primary);
        let targets: Vec<RouterId> = if dst == family.multicast_group() {
            (0..self.routers.len()).filter(|&i| i != from).collect()
        } else {
            match (0..self.routers.len()).find(|&i| self.routers[i].cfg.primary == dst) {
                Some(i) => vec![i],
                None => {
                    self.routers[from].counters.undeliverable += 1;
                    return;
                }
            }
        };
        for to in targets {
            if !self.connected(from, to) {
                self.routers[to].counters.partitioned += 1;
                continue;
            }
            let link = self.link(from, to);
            if link.loss > 0.0 && self.rng.next_f64() < link.loss {
                self.routers[to].counters.lost += 1;
                self.record(from, EntryKind::Lost { to });
                continue;
            }
            let mut at = self.now + link.delay + self.rng.duration_up_to(link.jitter);
            let last = self.last_arrival.entry((from, to)).or_default();
            at = at.max(*last);
            *last = at;
            self.push(
                at,
                Ev::Deliver {
                    from,
                    to,
                    dst,
                    payload: payload.clone(),
                },
            );
        }
    }
}

/// Election rank: priority, then primary address as an unsigned integer.
pub fn rank(cfg: &InstanceConfig) -> (u8, u128) {
    let addr = match cfg.primary {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    (cfg.priority, addr)
}

/// Ready-made addresses and configs for tests and examples.
pub mod presets {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use vipd_vrrp::Version;

    /// VRID used by the presets.
    pub const VRID: u8 = 51;

    /// `10.0.0.host`.
    pub fn ipv4(host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, host))
    }
    /// `fe80::host`.
    pub fn ipv6_ll(host: u8) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(host)))
    }
    /// The IPv4 VIP of the presets, `10.0.0.100`.
    pub fn vip4() -> IpAddr {
        ipv4(100)
    }
    /// The IPv6 VIPs of the presets: `fe80::100` and `2001:db8::100`.
    pub fn vips6() -> Vec<IpAddr> {
        vec![
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100)),
        ]
    }
    /// An IPv4 router `10.0.0.host` for VIP `10.0.0.100`, VRID 51.
    pub fn config_v4(
        version: Version,
        priority: u8,
        host: u8,
        interval: Duration,
    ) -> InstanceConfig {
        let mut c = InstanceConfig::new(VRID, version, priority, ipv4(host), vec![vip4()]);
        c.advert_interval = interval;
        c
    }
    /// A VRRPv3 IPv6 router `fe80::host` for the [`vips6`], VRID 51.
    pub fn config_v6(priority: u8, host: u8, interval: Duration) -> InstanceConfig {
        let mut c = InstanceConfig::new(VRID, Version::V3, priority, ipv6_ll(host), vips6());
        c.advert_interval = interval;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(at: u64, router: RouterId, from: State, to: State) -> Entry {
        Entry {
            at: Duration::from_millis(at),
            router,
            kind: EntryKind::Transition {
                from,
                to,
                reason: TransitionReason::Startup,
            },
        }
    }

    #[test]
    fn segments_collapse_equal_times_and_merge_intervals() {
        use State::*;
        let ms = Duration::from_millis;
        let tl = Timeline {
            entries: vec![
                tr(10, 0, Backup, Master),
                tr(20, 1, Backup, Master),
                // Handover at one instant: never zero or two masters.
                tr(30, 1, Master, Backup),
                tr(30, 2, Backup, Master),
                tr(40, 0, Master, Backup),
                tr(40, 0, Backup, Master),
                tr(50, 3, Backup, Master),
                tr(60, 3, Master, Backup),
                tr(60, 0, Master, Backup),
                tr(60, 2, Master, Backup),
                Entry {
                    at: ms(70),
                    router: 1,
                    kind: EntryKind::Crashed,
                },
            ],
            network: vec![],
        };
        let seg = |a, b, r: &[RouterId]| Segment {
            start: ms(a),
            end: ms(b),
            routers: r.to_vec(),
        };
        assert_eq!(
            tl.mastership(ms(100)),
            vec![
                seg(0, 10, &[]),
                seg(10, 20, &[0]),
                seg(20, 30, &[0, 1]),
                seg(30, 50, &[0, 2]),
                seg(50, 60, &[0, 2, 3]),
                seg(60, 100, &[]),
            ]
        );
        assert_eq!(
            tl.dual_master_intervals(ms(100)),
            vec![seg(20, 60, &[0, 1, 2, 3])]
        );
        assert_eq!(
            tl.no_master_intervals(ms(100)),
            vec![seg(0, 10, &[]), seg(60, 100, &[])]
        );
        assert_eq!(tl.masters_at(ms(30)), vec![0, 2]);
        assert_eq!(tl.masters_at(ms(29)), vec![0, 1]);
        assert_eq!(tl.masters_at(ms(5)), Vec::<RouterId>::new());
        assert_eq!(tl.mastership(ms(25)).last(), Some(&seg(20, 25, &[0, 1])));
    }

    #[test]
    fn rng_is_seeded_and_bounded() {
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        let max = Duration::from_micros(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let f = a.next_f64();
            assert_eq!(f, b.next_f64());
            assert!((0.0..1.0).contains(&f));
            let d = a.duration_up_to(max);
            assert_eq!(d, b.duration_up_to(max));
            assert!(d <= max);
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
