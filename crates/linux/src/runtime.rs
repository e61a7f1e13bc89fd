//! The protocol thread: owns every engine instance, the VRRP sockets and the AF_PACKET
//! socket, and nothing else. It waits in `ppoll` with microsecond timeouts (tokio's
//! timer wheel has millisecond granularity, too coarse for 10 ms adverts), optionally
//! at real-time priority, and hands everything slow — netlink, logging, status readers —
//! to other threads through channels it never blocks on.

use crate::addresses::{AddrCommand, AddrNotice, AddressWorker};
use crate::packet::PacketSocket;
use crate::plan::{InstancePlan, Plan};
use crate::routes::RouteSpec;
use crate::socket::VrrpSocket;
use crate::sockhealth::{self, RxHealth, RxVerdict, SendHealth};
use crate::status::{InstanceStatus, IoErrors, Snapshot};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use vipd_vrrp::engine::{Action, Instance, State, TransitionReason};
use vipd_vrrp::wire::{self, DropCounters, DropReason, Family};

/// Requests to the protocol thread.
#[derive(Debug)]
pub enum Command {
    /// Apply a new plan: keep unchanged instances as they are, update changed ones in
    /// place where the protocol allows, restart the others, add and remove.
    Reload {
        plan: Box<Plan>,
        reply: Sender<Result<ReloadReport, String>>,
    },
    /// Leave gracefully: masters send priority 0 and release their VIPs.
    Shutdown,
    /// Tracking's verdict for the instance of that name: priority adjustment and fault.
    Track {
        instance: String,
        adjustment: i32,
        fault: bool,
    },
    /// Someone else deleted this VIP (one without `no_track`) of a MASTER: its
    /// instance goes to BACKUP, as in keepalived.
    VipDeleted(crate::netlink::AddressSpec),
    /// The address worker has installed the instance's VIPs (for take-over `epoch`).
    AddressesReady { instance: usize, epoch: u64 },
    /// A `bfd_instance` went Up or Down: the instances with `bfd_takeover` on it get
    /// `peer_up` / `peer_down` (straight from the BFD thread, not via the tracker).
    /// `transition: false`: a report of the session's state after a configuration; a
    /// Down then is `peer_not_up`, no failure (and no ignored Down counted).
    BfdSession {
        name: String,
        up: bool,
        transition: bool,
    },
    /// One round of gratuitous ARP / unsolicited NA for the named instance's VIPs, as
    /// keepalived's DBus `SendGarp`: sent only while it holds them (MASTER). Answers
    /// `Ok(true)` when sent, `Ok(false)` when not MASTER, `Err` for no such instance.
    SendGarp {
        instance: String,
        reply: Sender<Result<bool, String>>,
    },
}

/// How long a take-over's announcements wait for the VIPs to be installed before
/// going out anyway: announcing an address the host does not have yet would send the
/// neighbours' traffic into a hole, waiting longer would delay the take-over.
const ADDRESS_WAIT_MAX: Duration = Duration::from_millis(1);

/// When the VIPs are not installed after [`ADDRESS_WAIT_MAX`], the first round of
/// announcements goes and the repeats (`garp_master_repeat`, and the follow-up and
/// second bursts falling due meanwhile) wait for the addresses: a set of thousands
/// takes a while to install (10,000 IPv6 addresses: over 30 s of kernel time on this
/// lab's kernel), and repeats sent meanwhile take the CPU from the installing (and
/// announce addresses the host does not have yet once more). Not longer than this,
/// though (the address thread always confirms; this only guards against it dying).
const ADDRESS_WAIT_REPEATS: Duration = Duration::from_secs(120);

/// Announcements sent per turn of the protocol thread's loop (a few milliseconds of
/// sending at most; see `flush_announcements`).
const ANNOUNCE_SLICE: usize = 256;

/// What the protocol thread reports, for logging and notification.
#[derive(Debug, Clone)]
pub enum Notice {
    Transition {
        instance: String,
        from: State,
        to: State,
        reason: TransitionReason,
        at: SystemTime,
        vips: Vec<String>,
        /// The priority in force (for `notify`'s fourth argument).
        priority: u8,
        notify: crate::plan::NotifyPlan,
        /// Leaving because a reload removed the instance (`notify_deleted`).
        deleted: bool,
    },
    /// First announcement of a take-over left the host this long after the decision.
    TakeoverLatency {
        instance: String,
        first_announce: Duration,
    },
    SendFailed {
        instance: String,
        error: String,
    },
    Address(AddrNotice),
    Track(crate::tracker::TrackNotice),
    /// From the BFD thread.
    Bfd(crate::bfd::BfdEvent),
    /// A MASTER heard a lower-priority advert (`notify_master_rx_lower_pri`).
    MasterRxLowerPriority {
        instance: String,
        from: std::net::IpAddr,
        /// The other router's priority.
        their_priority: u8,
        /// Ours (the FIFO line's priority).
        priority: u8,
        notify: crate::plan::NotifyPlan,
    },
    /// Tracking moved an instance's effective priority and its
    /// `notify_priority_changes` is on: a `MASTER_PRIORITY` / `BACKUP_PRIORITY` line.
    PriorityChanged {
        instance: String,
        master: bool,
        priority: u8,
    },
    /// A sync group changed state (for its notify scripts).
    GroupTransition {
        group: String,
        to: State,
        notify: crate::plan::NotifyPlan,
    },
    /// `vrrp_startup_delay` / `vrrp_delay_after_boot`: instances start this much later.
    StartupDelay {
        delay: Duration,
    },
    /// The runtime has shut down: nothing more will come that matters.
    Stopped,
}

/// What a reload did, by instance name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    pub unchanged: Vec<String>,
    pub updated: Vec<String>,
    pub restarted: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

pub struct Runtime {
    cmd_tx: Sender<Command>,
    wake: Arc<OwnedFd>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub status: Arc<Mutex<Snapshot>>,
    addresses: Mutex<Option<AddressWorker>>,
    /// Milliseconds since `started` at the protocol thread's last loop turn.
    heartbeat: Arc<std::sync::atomic::AtomicU64>,
    tracker: crate::tracker::TrackerHandle,
    bfd: crate::bfd::BfdHandle,
    notices: Sender<Notice>,
    /// `static_ipaddress` in force (added at start, removed at stop).
    static_addresses: Mutex<Vec<crate::netlink::AddressSpec>>,
    /// `static_routes` / `static_rules` in force.
    static_routing: Mutex<(Vec<crate::routes::RouteSpec>, Vec<crate::routes::RuleSpec>)>,
    /// VMAC interfaces vipd created, deleted at stop.
    vmacs: Mutex<Vec<u32>>,
    /// Interfaces whose `promote_secondaries` vipd set (reset at stop).
    promoted: Mutex<Vec<String>>,
}

/// How soon a status publication that found the snapshot locked is tried again.
const STATUS_RETRY: Duration = Duration::from_millis(2);

/// A plan whose links exist (see [`Runtime::prepare`]).
#[must_use = "reload() it, or abandon() it to remove its links"]
pub struct Prepared {
    plan: Plan,
    links: crate::links::Links,
}

impl Prepared {
    /// The reload goes no further: remove the links its preparation created.
    pub fn abandon(self) {
        self.links.undo();
    }
}

/// Forward one notice stream into another on a small thread of its own.
fn forward<T: Send + 'static>(rx: mpsc::Receiver<T>, to: Sender<Notice>, wrap: fn(T) -> Notice) {
    let _ = std::thread::Builder::new()
        .name("vipd-notes".into())
        .spawn(move || {
            for n in rx {
                if to.send(wrap(n)).is_err() {
                    break;
                }
            }
        });
}

impl Runtime {
    /// Create the plan's links, open every socket and start the protocol thread.
    /// Errors (no permission, a link that cannot be made) surface here, before anything
    /// runs; the links this start created are removed again then.
    pub fn start(mut plan: Plan, notices: Sender<Notice>) -> Result<Runtime> {
        let links = crate::links::bind(&mut plan)?;
        let vmacs = links.created.clone();
        Self::start_bound(plan, notices, vmacs).inspect_err(|_| links.undo())
    }

    fn start_bound(plan: Plan, notices: Sender<Notice>, vmacs: Vec<u32>) -> Result<Runtime> {
        let notices_for_stop = notices.clone();
        let all_specs: Vec<_> = plan
            .instances
            .iter()
            .flat_map(|i| i.addresses.clone())
            .chain(plan.static_addresses.iter().cloned())
            .collect();
        let (addr_tx, addr_rx) = mpsc::channel::<AddrNotice>();
        let virtual_routes: Vec<_> = plan
            .instances
            .iter()
            .flat_map(|i| {
                // Standby routes at any metric: tracking may have moved it.
                let standby = i.standby_routes.iter().map(|r| RouteSpec {
                    metric: None,
                    ..r.clone()
                });
                i.routes.iter().cloned().chain(standby)
            })
            .collect();
        // SAFETY: eventfd(2) returns a new fd we own.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error()).context("eventfd");
        }
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let on_deleted = {
            let commander = Commander {
                tx: cmd_tx.clone(),
                wake: wake.clone(),
            };
            Box::new(move |spec| commander.send(Command::VipDeleted(spec)))
        };
        let addresses = AddressWorker::start(&all_specs, &virtual_routes, addr_tx, on_deleted)?;
        if !plan.static_addresses.is_empty() {
            let _ = addresses
                .tx
                .send(AddrCommand::Add(plan.static_addresses.clone(), None));
        }
        if !plan.static_routes.is_empty() || !plan.static_rules.is_empty() {
            let _ = addresses.tx.send(AddrCommand::AddRoutes(
                plan.static_routes.clone(),
                plan.static_rules.clone(),
            ));
        }
        let r = plan.static_restore.clone();
        let _ = addresses
            .tx
            .send(AddrCommand::Restore(r.addresses, r.routes, r.rules));
        // Forward address notices into the main notice stream.
        {
            let notices = notices.clone();
            std::thread::Builder::new()
                .name("vipd-addr-notes".into())
                .spawn(move || {
                    for n in addr_rx {
                        if notices.send(Notice::Address(n)).is_err() {
                            break;
                        }
                    }
                })?;
        }

        let packet = PacketSocket::open().context("opening AF_PACKET socket for GARP/NA")?;
        let status = Arc::new(Mutex::new(Snapshot::default()));
        let heartbeat = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut engine = EngineLoop {
            slots: Vec::new(),
            sockets: Vec::new(),
            closed_socket_drops: HashMap::new(),
            packet,
            pacer: crate::pacing::Pacer::default(),
            pacing: plan.garp_groups.clone(),
            addr_tx: addresses.tx.clone(),
            notices,
            cmd_rx,
            wake: wake.clone(),
            commander: Commander {
                tx: cmd_tx.clone(),
                wake: wake.clone(),
            },
            status: status.clone(),
            started: Instant::now(),
            heartbeat: heartbeat.clone(),
            groups: Vec::new(),
            syncing: false,
            status_dirty: true,
            next_publish: Instant::now(),
            start_at: Instant::now(),
            io_errors: IoErrors::default(),
            link_errors: Arc::default(),
            auto_priority: vipd_exec::tuning::AutoPriority::new(
                plan.max_auto_priority,
                plan.min_auto_priority_delay,
                plan.rt_priority,
            ),
            next_audit: Instant::now() + sockhealth::MEMBERSHIP_AUDIT,
        };
        for p in &plan.instances {
            engine.ensure_socket(p)?;
        }
        for p in &plan.instances {
            engine.add_instance(p.clone())?;
        }
        engine.set_groups(&plan.sync_groups);
        engine.start_at =
            engine.started + startup_delay(plan.startup_delay, plan.delay_after_boot, uptime());
        // Tracking verdicts (a tracked interface already down, a script with init_fail)
        // are queued before the protocol thread starts, so instances start right.
        let (track_tx, track_rx) = mpsc::channel();
        let tracker = crate::tracker::start(engine.commander.clone(), track_tx, status.clone())?;
        forward(track_rx, engine.notices.clone(), Notice::Track);
        tracker.configure(plan.track_plan());
        let bfd = {
            let (tracker, notices) = (tracker.clone(), engine.notices.clone());
            let commander = engine.commander.clone();
            crate::bfd::start(
                plan.bfd.clone(),
                move |e| {
                    if let crate::bfd::BfdEvent::PeerAdminDown {
                        name,
                        to_vrrp: true,
                    } = &e
                    {
                        commander.send(Command::BfdSession {
                            name: name.clone(),
                            up: false,
                            transition: false,
                        });
                    }
                    if let crate::bfd::BfdEvent::Tracked {
                        name,
                        up,
                        to_vrrp: true,
                        transition,
                        ..
                    } = &e
                    {
                        // bfd_takeover first: the take-over must not wait for the tracker.
                        commander.send(Command::BfdSession {
                            name: name.clone(),
                            up: *up,
                            transition: *transition,
                        });
                        tracker.send(crate::tracker::Msg::Bfd {
                            name: name.clone(),
                            up: *up,
                        });
                    }
                    let _ = notices.send(Notice::Bfd(e));
                },
                status.clone(),
            )?
        };
        let link_events = tracker.clone();
        crate::linkwatch::start(
            move |e| link_events.send(e.into()),
            engine.link_errors.clone(),
        )?;
        let (rt_priority, nice, cpus) = (plan.rt_priority, plan.nice, plan.cpu_affinity.clone());
        let thread = std::thread::Builder::new()
            .name("vipd-vrrp".into())
            .spawn(move || {
                engine.tune_thread(rt_priority, nice, &cpus);
                engine.run();
            })?;
        if let Ok(mut snap) = status.lock() {
            snap.static_addresses = plan.static_addresses.clone();
            snap.static_routes = plan.static_routes.clone();
            snap.static_rules = plan.static_rules.clone();
        }
        let rt = Runtime {
            cmd_tx,
            wake,
            thread: Mutex::new(Some(thread)),
            status,
            addresses: Mutex::new(Some(addresses)),
            heartbeat,
            tracker,
            bfd,
            notices: notices_for_stop,
            static_addresses: Mutex::new(plan.static_addresses.clone()),
            static_routing: Mutex::new((plan.static_routes.clone(), plan.static_rules.clone())),
            vmacs: Mutex::new(vmacs),
            promoted: Mutex::default(),
        };
        rt.promote_secondaries(&plan.instances);
        Ok(rt)
    }

    pub fn command(&self, cmd: Command) {
        self.commander().send(cmd);
    }

    /// A handle other threads use to send commands to the protocol thread.
    pub fn commander(&self) -> Commander {
        Commander {
            tx: self.cmd_tx.clone(),
            wake: self.wake.clone(),
        }
    }

    /// `promote_secondaries`: set on the instances' interfaces where it is off; they
    /// are reset when vipd stops (as keepalived does).
    fn promote_secondaries(&self, instances: &[InstancePlan]) {
        let Ok(mut promoted) = self.promoted.lock() else {
            return;
        };
        // An interface that does not exist yet (dynamic_interfaces) gets it at the
        // reload that follows its appearance.
        let present = |p: &&InstancePlan| !p.waiting && !p.iface.name.is_empty();
        for p in instances
            .iter()
            .filter(|p| p.promote_secondaries)
            .filter(present)
        {
            let name = &p.iface.name;
            if promoted.contains(name) {
                continue;
            }
            match crate::iface::set_promote_secondaries(name) {
                Ok(true) => {
                    tracing::info!("{}: promote_secondaries set on {name}", p.name);
                    promoted.push(name.clone());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("{}: promote_secondaries on {name}: {e}", p.name),
            }
        }
    }

    /// Graceful stop: priority 0 from masters, VIPs removed, threads joined.
    pub fn shutdown(&self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            self.command(Command::Shutdown);
            let _ = t.join();
        }
        self.bfd.stop();
        let addresses = self.addresses.lock().ok().and_then(|mut a| a.take());
        if let Some(a) = addresses {
            let (routes, rules) = self
                .static_routing
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            if !routes.is_empty() || !rules.is_empty() {
                let _ = a.tx.send(AddrCommand::RemoveRoutes(routes, rules));
            }
            let statics = self
                .static_addresses
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            if !statics.is_empty() {
                let _ = a.tx.send(AddrCommand::Remove(statics));
            }
            a.sync();
            // After the last address is gone.
            let promoted = self.promoted.lock().map(|p| p.clone()).unwrap_or_default();
            for name in promoted {
                if let Err(e) = crate::iface::reset_promote_secondaries(&name) {
                    tracing::warn!("promote_secondaries on {name}: reset: {e}");
                }
            }
            let vmacs = self.vmacs.lock().map(|v| v.clone()).unwrap_or_default();
            crate::links::delete(&vmacs);
            let _ = self.notices.send(Notice::Stopped);
        }
    }

    /// First step of a reload: create the links `plan` needs (see [`crate::links`]).
    /// The other owners reload between this and [`Runtime::reload`]; if one of them
    /// fails, [`Prepared::abandon`] removes the links this step created.
    pub fn prepare(&self, mut plan: Plan) -> Result<Prepared, String> {
        let links = crate::links::bind(&mut plan).map_err(|e| format!("{e:#}"))?;
        Ok(Prepared { plan, links })
    }

    /// Apply a prepared plan (see [`Command::Reload`]); waits for the protocol thread's
    /// answer. If the protocol thread refuses the plan (it checks everything that can
    /// fail before it changes anything), the links the plan's preparation created are
    /// removed again.
    pub fn reload(&self, prepared: Prepared) -> Result<ReloadReport, String> {
        let Prepared { plan, links } = prepared;
        let track = plan.track_plan();
        let bfd = plan.bfd.clone();
        let instances = plan.instances.clone();
        let statics = plan.static_addresses.clone();
        let static_routing = (plan.static_routes.clone(), plan.static_rules.clone());
        let restore = plan.static_restore.clone();
        let (reply, answer) = mpsc::channel();
        self.command(Command::Reload {
            plan: Box::new(plan),
            reply,
        });
        let report = match answer.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                links.undo();
                return Err(e);
            }
            // The protocol thread may still apply the plan: its links stay (and go at stop).
            Err(_) => {
                if let Ok(mut v) = self.vmacs.lock() {
                    v.extend(links.created);
                }
                return Err("the protocol thread did not answer".to_string());
            }
        };
        self.tracker.configure(track);
        self.bfd.configure(bfd);
        self.promote_secondaries(&instances);
        self.reload_static_addresses(statics);
        if let Ok(mut v) = self.vmacs.lock() {
            v.extend(links.created);
        }
        self.reload_static_routing(static_routing);
        if let Ok(a) = self.addresses.lock() {
            if let Some(a) = a.as_ref() {
                let _ = a.tx.send(AddrCommand::Restore(
                    restore.addresses,
                    restore.routes,
                    restore.rules,
                ));
            }
        }
        Ok(report)
    }

    /// Add the `static_ipaddress`es that are new, remove those no longer configured.
    fn reload_static_addresses(&self, new: Vec<crate::netlink::AddressSpec>) {
        if let Ok(mut snap) = self.status.lock() {
            snap.static_addresses = new.clone();
        }
        let Ok(mut cur) = self.static_addresses.lock() else {
            return;
        };
        let Ok(addresses) = self.addresses.lock() else {
            return;
        };
        if let Some(a) = addresses.as_ref() {
            let gone: Vec<_> = cur.iter().filter(|s| !new.contains(s)).cloned().collect();
            let added: Vec<_> = new.iter().filter(|s| !cur.contains(s)).cloned().collect();
            if !gone.is_empty() {
                let _ = a.tx.send(AddrCommand::Remove(gone));
            }
            if !added.is_empty() {
                let _ = a.tx.send(AddrCommand::Add(added, None));
            }
        }
        *cur = new;
    }

    /// Like `reload_static_addresses`, for `static_routes` / `static_rules`.
    fn reload_static_routing(
        &self,
        new: (Vec<crate::routes::RouteSpec>, Vec<crate::routes::RuleSpec>),
    ) {
        if let Ok(mut snap) = self.status.lock() {
            snap.static_routes = new.0.clone();
            snap.static_rules = new.1.clone();
        }
        let Ok(mut cur) = self.static_routing.lock() else {
            return;
        };
        let Ok(addresses) = self.addresses.lock() else {
            return;
        };
        if let Some(a) = addresses.as_ref() {
            let gone_routes: Vec<_> = cur
                .0
                .iter()
                .filter(|r| !new.0.contains(r))
                .cloned()
                .collect();
            let gone_rules: Vec<_> = cur
                .1
                .iter()
                .filter(|r| !new.1.contains(r))
                .cloned()
                .collect();
            let _ =
                a.tx.send(AddrCommand::RemoveRoutes(gone_routes, gone_rules));
            let new_routes: Vec<_> = new
                .0
                .iter()
                .filter(|r| !cur.0.contains(r))
                .cloned()
                .collect();
            let new_rules: Vec<_> = new
                .1
                .iter()
                .filter(|r| !cur.1.contains(r))
                .cloned()
                .collect();
            let _ = a.tx.send(AddrCommand::AddRoutes(new_routes, new_rules));
        }
        *cur = new;
    }

    /// How long ago the protocol thread last went round its loop (it does so at least
    /// once a second), for the systemd watchdog.
    pub fn protocol_thread_age(&self, started: Instant) -> Duration {
        let beat = self.heartbeat.load(std::sync::atomic::Ordering::Relaxed);
        started
            .elapsed()
            .saturating_sub(Duration::from_millis(beat))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sends [`Command`]s to the protocol thread and wakes it up.
#[derive(Clone)]
pub struct Commander {
    tx: Sender<Command>,
    wake: Arc<OwnedFd>,
}

impl Commander {
    pub fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to our eventfd.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

impl crate::track::VerdictSink for Commander {
    fn verdict(&self, instance: String, adjustment: i32, fault: bool) {
        self.send(Command::Track {
            instance,
            adjustment,
            fault,
        });
    }
}

/// A `vrrp_sync_group` over live instance indices.
struct GroupState {
    name: String,
    members: Vec<usize>,
    notify: crate::plan::NotifyPlan,
    /// Last state announced for the group.
    state: State,
    /// The group's own `track_*` lines.
    tracking: Vec<crate::track::TrackRef>,
    tracking_weight: bool,
}

struct RxSocket {
    ifindex: u32,
    sock: VrrpSocket,
    instances: Vec<usize>,
    /// Drops before a packet could be given to an instance.
    drops: DropCounters,
    /// Receive errors in a row, reopens, and whether it is broken (see `sockhealth`).
    health: RxHealth,
}

struct Slot {
    plan: InstancePlan,
    inst: Instance,
    socket: usize,
    /// Removed or replaced by a reload: still running its shutdown timers (the address
    /// hold), no longer receiving packets or shown in status.
    retired: bool,

    announcements_sent: u64,
    /// Tracking's fault for this instance alone (a sync group may add others').
    own_fault: bool,
    /// A reload removed it: its last transition is a deletion (`notify_deleted`).
    deleted: bool,
    /// `garp_extra_if`: when the next announcements on the other interfaces are due.
    extra_garp_at: Option<Instant>,
    /// When the engine decided to take over, until the first announcement is out.
    pending_takeover: Option<Instant>,
    /// Counts `AddAddresses`, so a late confirmation of an earlier one is ignored.
    addr_epoch: u64,
    /// Announcements wait for the VIPs (epoch, deadline): see ADDRESS_WAIT_MAX.
    awaiting_addresses: Option<(u64, Instant)>,
    /// Announcement rounds held back meanwhile.
    pending_announce: u32,
    /// Failed advert rounds and the send fault (see `sockhealth`).
    send_health: SendHealth,
    /// `@vipd standby_metric`: the standby routes installed now (while BACKUP), with
    /// the metric of the effective priority they were installed at.
    standby_installed: Vec<RouteSpec>,
}

struct EngineLoop {
    slots: Vec<Slot>,
    sockets: Vec<RxSocket>,
    /// Drop counts of the sockets closed after a reload, so the totals never go back.
    closed_socket_drops: HashMap<String, u64>,
    packet: PacketSocket,
    /// Announcements waiting for their turn (garp_group / garp_interval pacing).
    pacer: crate::pacing::Pacer,
    /// The `garp_group`s of the running plan.
    pacing: crate::pacing::PacingPlan,
    addr_tx: Sender<AddrCommand>,
    notices: Sender<Notice>,
    cmd_rx: Receiver<Command>,
    wake: Arc<OwnedFd>,
    commander: Commander,
    status: Arc<Mutex<Snapshot>>,
    started: Instant,
    /// ifindex → (name, live instances on it), shared with the link watcher.
    heartbeat: Arc<std::sync::atomic::AtomicU64>,
    groups: Vec<GroupState>,
    /// Inside `sync_group_follow`: the transitions it causes do not propagate again.
    syncing: bool,
    /// Status to publish now (a transition happened), else at `next_publish`.
    status_dirty: bool,
    next_publish: Instant,
    /// `vrrp_startup_delay` / `vrrp_delay_after_boot`: instances leave Initialize then.
    start_at: Instant,
    /// Receive and send errors, by operation and errno.
    io_errors: IoErrors,
    /// The link watcher's receive errors (its own thread).
    link_errors: Arc<Mutex<IoErrors>>,
    /// `max_auto_priority`: SCHED_RR for this thread when its timers run late.
    auto_priority: vipd_exec::tuning::AutoPriority,
    /// When the sockets' multicast memberships are checked next.
    next_audit: Instant,
}

/// How long after start-up the instances start: the longer of `vrrp_startup_delay`
/// and what is left of `vrrp_delay_after_boot` (keepalived's rule).
fn startup_delay(startup: Duration, after_boot: Duration, uptime: Option<Duration>) -> Duration {
    let after_boot = match uptime {
        Some(up) => after_boot.saturating_sub(up),
        None => Duration::ZERO,
    };
    startup.max(after_boot)
}

/// Time since boot (CLOCK_BOOTTIME, which counts suspend as /proc/uptime does).
fn uptime() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

impl EngineLoop {
    /// Open the VRRP socket an instance needs (and join the group), if not open yet.
    /// A `use_vmac` instance sends and receives on its VMAC: the macvlan driver hands
    /// frames whose source is a local VMAC (the peers' adverts) to that VMAC only.
    /// An instance whose interface does not exist yet (`dynamic_interfaces`) has none:
    /// `usize::MAX`.
    fn ensure_socket(&mut self, p: &InstancePlan) -> Result<usize> {
        let family = p.family();
        let (name, index) = p.vrrp_interface();
        if p.waiting {
            return Ok(usize::MAX);
        }
        // `auth_type AH` speaks IP protocol 51: a socket of its own.
        let ah = p.engine.auth == vipd_vrrp::wire::Auth::Ah;
        if let Some(i) = self
            .sockets
            .iter()
            .position(|s| s.ifindex == index && s.sock.family() == family && s.sock.is_ah() == ah)
        {
            if let Some(g) = p.multicast_group() {
                self.sockets[i]
                    .sock
                    .join_group(g)
                    .with_context(|| format!("joining {g} on {name}"))?;
            }
            return Ok(i);
        }
        let sock = VrrpSocket::open(family, name, index, p.multicast_group(), ah)
            .with_context(|| format!("opening VRRP socket on {name}"))?;
        self.sockets.push(RxSocket {
            ifindex: index,
            sock,
            instances: Vec::new(),
            drops: DropCounters::default(),
            health: RxHealth::default(),
        });
        Ok(self.sockets.len() - 1)
    }

    /// Add an instance (not started yet: `run` or `reload` starts it).
    fn add_instance(&mut self, plan: InstancePlan) -> Result<usize> {
        let socket = self.ensure_socket(&plan)?;
        // A retired slot whose shutdown is over (no timer left, nothing awaited, in no
        // sync group) is reused, so instances restarted by reloads (every interface
        // re-creation) do not grow the list for good. Its address epoch carries on,
        // so a late confirmation for the old instance matches nothing.
        let reuse = self.slots.iter().enumerate().position(|(i, s)| {
            s.retired
                && s.inst.poll_timeout().is_none()
                && s.awaiting_addresses.is_none()
                && s.pending_takeover.is_none()
                && !self.groups.iter().any(|g| g.members.contains(&i))
        });
        let slot = Slot {
            inst: Instance::new(plan.engine.clone()),
            plan,
            socket,
            retired: false,
            announcements_sent: 0,
            own_fault: false,
            deleted: false,
            extra_garp_at: None,
            pending_takeover: None,
            addr_epoch: reuse.map_or(0, |i| self.slots[i].addr_epoch),
            awaiting_addresses: None,
            pending_announce: 0,
            send_health: SendHealth::default(),
            standby_installed: Vec::new(),
        };
        let i = match reuse {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        if let Some(s) = self.sockets.get_mut(socket) {
            s.instances.push(i);
        }
        Ok(i)
    }

    /// Start an instance (tracking may already have put it in FAULT).
    fn start_instance(&mut self, i: usize, now: Instant) {
        if let Some(why) = &self.slots[i].plan.config_fault {
            tracing::warn!("{}: {why}: FAULT", self.slots[i].plan.name);
            self.apply_faults(i, now);
        }
        self.slots[i].inst.startup(now);
        self.drain_actions(i, now);
    }

    /// Retire instance `i`: leave the protocol (priority 0 if master) and stop
    /// receiving. `hold`: keep the make-before-break address hold (not when the
    /// same addresses are about to be taken over by its replacement).
    fn retire(&mut self, i: usize, hold: bool, now: Instant) {
        if !hold {
            let mut cfg = self.slots[i].inst.config().clone();
            cfg.hold_addresses_on_shutdown = false;
            let _ = self.slots[i].inst.reconfigure(cfg);
        }
        self.slots[i].inst.shutdown(now);
        self.drain_actions(i, now);
        self.slots[i].retired = true;
        let sock = self.slots[i].socket;
        if let Some(s) = self.sockets.get_mut(sock) {
            s.instances.retain(|&x| x != i);
        }
    }

    fn reload(&mut self, plan: Plan, now: Instant) -> Result<ReloadReport, String> {
        // Everything that can fail comes first, so a failed reload changes nothing.
        for p in &plan.instances {
            self.ensure_socket(p).map_err(|e| format!("{e:#}"))?;
        }
        let mut report = ReloadReport::default();
        let plan_groups = plan.sync_groups.clone();
        self.pacing = plan.garp_groups.clone();
        let live: HashMap<String, usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.retired)
            .map(|(i, s)| (s.plan.name.clone(), i))
            .collect();
        for (name, &i) in &live {
            if !plan.instances.iter().any(|p| &p.name == name) {
                self.slots[i].deleted = true;
                self.retire(i, true, now);
                report.removed.push(name.clone());
            }
        }
        for p in plan.instances {
            let name = p.name.clone();
            match live.get(&name).copied() {
                Some(i) if self.slots[i].plan == p => report.unchanged.push(name),
                // An instance that waited for its interface or VRF device
                // (dynamic_interfaces) has no socket yet: it restarts.
                Some(i)
                    if self.slots[i].plan.iface == p.iface
                        && self.slots[i].plan.vrrp_interface() == p.vrrp_interface()
                        && self.slots[i].plan.waiting == p.waiting
                        && self.slots[i].plan.addresses == p.addresses
                        && self.slots[i].inst.reconfigure(p.engine.clone()).is_ok() =>
                {
                    self.slots[i].plan = p;
                    self.refresh_standby(i);
                    report.updated.push(name);
                }
                Some(i) => {
                    self.retire(i, false, now);
                    let n = self.add_instance(p).map_err(|e| format!("{e:#}"))?;
                    self.start_instance(n, now);
                    report.restarted.push(name);
                }
                None => {
                    let n = self.add_instance(p).map_err(|e| format!("{e:#}"))?;
                    self.start_instance(n, now);
                    report.added.push(name);
                }
            }
        }
        self.set_groups(&plan_groups);
        self.close_unused_sockets();
        self.publish_status();
        Ok(report)
    }

    /// Closes the VRRP sockets no live instance uses any more (its instances moved to
    /// another interface, were removed, or their interface was re-created under a new
    /// index): each such reload used to keep one raw socket open for good. Retired
    /// instances on a closed socket send nothing more (their priority-0 advert went
    /// out when they retired); their drop counts are kept.
    fn close_unused_sockets(&mut self) {
        let mut map = Vec::with_capacity(self.sockets.len());
        let mut kept = Vec::with_capacity(self.sockets.len());
        for s in std::mem::take(&mut self.sockets) {
            if s.instances.is_empty() {
                for (r, n) in s.drops.iter() {
                    *self
                        .closed_socket_drops
                        .entry(r.as_str().to_string())
                        .or_default() += n;
                }
                map.push(None);
            } else {
                map.push(Some(kept.len()));
                kept.push(s);
            }
        }
        self.sockets = kept;
        for slot in &mut self.slots {
            slot.socket = map
                .get(slot.socket)
                .copied()
                .flatten()
                .unwrap_or(usize::MAX);
        }
    }

    /// `max_auto_priority`: when the earliest due timer runs more than
    /// `min_auto_priority_delay` late, switch to (or raise) SCHED_RR, as keepalived does.
    fn check_lateness(&mut self, now: Instant) {
        if !self.auto_priority.enabled() {
            return;
        }
        let Some(due) = self
            .slots
            .iter()
            .filter_map(|s| s.inst.poll_timeout())
            .min()
        else {
            return;
        };
        let Some(p) = self.auto_priority.late(now.saturating_duration_since(due)) else {
            return;
        };
        let late = now.saturating_duration_since(due);
        match vipd_exec::tuning::set_thread_rt(p) {
            Ok(()) => tracing::warn!(
                "a VRRP timer ran {late:?} late: protocol thread now SCHED_RR priority {p} (max_auto_priority)"
            ),
            Err(e) => tracing::warn!(
                "a VRRP timer ran {late:?} late: max_auto_priority: SCHED_RR priority {p}: {e}"
            ),
        }
    }

    fn tune_thread(&self, rt_priority: Option<u8>, nice: Option<i32>, cpus: &[u16]) {
        // SAFETY: prctl on the calling thread with valid arguments.
        unsafe {
            // Wake up when asked, not up to 50 µs later.
            libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        }
        for error in vipd_exec::tuning::tune_thread("vrrp", nice, rt_priority, cpus) {
            let _ = self.notices.send(Notice::SendFailed {
                instance: "*".into(),
                error,
            });
        }
    }

    fn run(&mut self) {
        // Tracking verdicts queued before start (a tracked interface already down, a
        // script with init_fail) apply first, so such an instance starts in FAULT.
        if !self.handle_commands() {
            return;
        }
        if !self.wait_for_start() {
            return;
        }
        let now = Instant::now();
        for i in 0..self.slots.len() {
            self.start_instance(i, now);
        }
        self.publish_status();
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            self.heartbeat.store(
                now.duration_since(self.started).as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            self.check_lateness(now);
            for i in 0..self.slots.len() {
                if self.slots[i].inst.poll_timeout().is_some_and(|t| t <= now) {
                    self.slots[i].inst.handle_timeout(now);
                    self.drain_actions(i, now);
                }
            }
            for i in 0..self.slots.len() {
                if let Some((epoch, t)) = self.slots[i].awaiting_addresses {
                    if t <= now {
                        self.addresses_late(i, epoch, now);
                    }
                }
            }
            self.extra_garps(now);
            self.flush_announcements(now);
            self.probe_sends(now);
            self.check_sockets(now, None);
            self.maybe_publish_status(now);

            let deadline = self
                .slots
                .iter()
                .filter_map(|s| s.inst.poll_timeout())
                .chain(self.pacer.next_due())
                .chain(
                    self.slots
                        .iter()
                        .filter_map(|s| s.awaiting_addresses.map(|a| a.1)),
                )
                // A status reader held the lock when a transition was to be published:
                // try again soon, not at the next packet or timer (up to a second away).
                .chain(self.status_dirty.then(|| now + STATUS_RETRY))
                .chain(self.slots.iter().filter_map(|s| s.extra_garp_at))
                .chain(
                    self.slots
                        .iter()
                        .filter(|s| !s.retired)
                        .filter_map(|s| s.send_health.next_probe()),
                )
                .chain(
                    self.sockets
                        .iter()
                        .filter_map(|s| s.health.broken().map(|b| b.retry.next())),
                )
                .chain(std::iter::once(self.next_audit))
                .min()
                // Go round at least once a second: the watchdog watches the heartbeat.
                .map_or(now + Duration::from_secs(1), |d| {
                    d.min(now + Duration::from_secs(1))
                });
            self.wait(Some(deadline));

            for s in 0..self.sockets.len() {
                self.receive_all(s, &mut buf);
            }
            let mut drain_buf = [0u8; 8];
            // SAFETY: reading the eventfd counter into an 8-byte buffer.
            unsafe { libc::read(self.wake.as_raw_fd(), drain_buf.as_mut_ptr().cast(), 8) };
            if !self.handle_commands() {
                return;
            }
        }
    }

    /// Hold the instances in Initialize until `start_at`: no adverts are sent, and
    /// the ones received are read and discarded (Initialize ignores them). `false`
    /// when a shutdown came first.
    fn wait_for_start(&mut self) -> bool {
        if self.start_at > Instant::now() {
            let _ = self.notices.send(Notice::StartupDelay {
                delay: self.start_at.saturating_duration_since(Instant::now()),
            });
        }
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= self.start_at {
                return true;
            }
            self.heartbeat.store(
                now.duration_since(self.started).as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            self.wait(Some(self.start_at.min(now + Duration::from_secs(1))));
            for s in 0..self.sockets.len() {
                self.receive_all(s, &mut buf);
            }
            let mut drain_buf = [0u8; 8];
            // SAFETY: reading the eventfd counter into an 8-byte buffer.
            unsafe { libc::read(self.wake.as_raw_fd(), drain_buf.as_mut_ptr().cast(), 8) };
            if !self.handle_commands() {
                return false;
            }
        }
    }

    /// Apply queued commands; `false` once a shutdown is done.
    fn handle_commands(&mut self) -> bool {
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            match cmd {
                Command::Shutdown => {
                    let now = Instant::now();
                    for i in 0..self.slots.len() {
                        self.slots[i].inst.shutdown(now);
                        self.drain_actions(i, now);
                    }
                    self.publish_status();
                    self.finish_shutdown();
                    return false;
                }
                Command::Track {
                    instance,
                    adjustment,
                    fault,
                } => {
                    let now = Instant::now();
                    let live = self
                        .slots
                        .iter()
                        .position(|s| !s.retired && s.plan.name == instance);
                    if let Some(i) = live {
                        let before = self.slots[i].inst.priority();
                        self.slots[i].inst.set_priority_adjustment(now, adjustment);
                        let slot = &self.slots[i];
                        if slot.inst.priority() != before && slot.plan.notify.priority_changes {
                            let _ = self.notices.send(Notice::PriorityChanged {
                                instance: slot.plan.name.clone(),
                                master: slot.inst.state() == State::Master,
                                priority: slot.inst.priority(),
                            });
                        }
                        let cleared = self.slots[i].own_fault && !fault;
                        self.slots[i].own_fault = fault;
                        if cleared {
                            // Its interface may have come back: a socket that lost its
                            // groups (or could not be reopened) is fixed before the
                            // instance listens again.
                            let s = self.slots[i].socket;
                            if s < self.sockets.len() {
                                self.sockets[s].health.hurry(now);
                                self.check_sockets(now, Some(s));
                            }
                        }
                        self.apply_faults(i, now);
                        self.refresh_standby(i);
                    }
                }
                Command::Reload { plan, reply } => {
                    let _ = reply.send(self.reload(*plan, Instant::now()));
                }
                Command::VipDeleted(spec) => {
                    let now = Instant::now();
                    let owner = self.slots.iter().position(|s| {
                        !s.retired
                            && s.inst.state() == State::Master
                            && s.plan.addresses.contains(&spec)
                    });
                    if let Some(i) = owner {
                        self.slots[i].inst.vip_deleted(now, spec.addr);
                        self.drain_actions(i, now);
                    }
                }
                Command::SendGarp { instance, reply } => {
                    let live = self
                        .slots
                        .iter()
                        .position(|s| !s.retired && s.plan.name == instance);
                    let answer = match live {
                        Some(i) if self.slots[i].inst.state() == State::Master => {
                            self.announce(i, 1, Instant::now());
                            Ok(true)
                        }
                        Some(_) => Ok(false),
                        None => Err(format!("no VRRP instance `{instance}`")),
                    };
                    let _ = reply.send(answer);
                }
                Command::AddressesReady { instance, epoch } => {
                    if instance < self.slots.len() {
                        self.addresses_ready(instance, epoch, Instant::now());
                    }
                }
                Command::BfdSession {
                    name,
                    up,
                    transition,
                } => {
                    let now = Instant::now();
                    for i in 0..self.slots.len() {
                        let slot = &mut self.slots[i];
                        let Some((_, peer)) = slot
                            .plan
                            .bfd_takeover
                            .as_ref()
                            .filter(|(n, _)| !slot.retired && *n == name)
                        else {
                            continue;
                        };
                        let peer = *peer;
                        if up {
                            slot.inst.peer_up(now, peer);
                        } else if !transition {
                            slot.inst.peer_not_up(peer);
                        } else if slot.inst.peer_down(now, peer) {
                            self.drain_actions(i, now);
                        }
                    }
                }
            }
        }
        true
    }

    /// Run the engines' remaining timers (the make-before-break address hold, at most
    /// one advert interval) so masters release their addresses after the backups had
    /// time to take over.
    fn finish_shutdown(&mut self) {
        let give_up = Instant::now() + Duration::from_secs(5);
        while let Some(next) = self
            .slots
            .iter()
            .filter_map(|s| s.inst.poll_timeout())
            .min()
        {
            let now = Instant::now();
            if now >= give_up {
                break;
            }
            if next > now {
                std::thread::sleep(next.min(give_up) - now);
                continue;
            }
            for i in 0..self.slots.len() {
                if self.slots[i].inst.poll_timeout().is_some_and(|t| t <= now) {
                    self.slots[i].inst.handle_timeout(now);
                    self.drain_actions(i, now);
                }
            }
        }
        self.flush_announcements(Instant::now());
    }

    fn wait(&self, deadline: Option<Instant>) {
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .filter(|s| s.health.broken().is_none())
            .map(|s| libc::pollfd {
                fd: s.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        fds.push(libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: fds and ts live across the call.
        unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                tsp,
                std::ptr::null(),
            )
        };
    }

    fn receive_all(&mut self, s: usize, buf: &mut [u8]) {
        if self.sockets[s].health.broken().is_some() {
            return;
        }
        loop {
            let got = match self.sockets[s].sock.recv(buf) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.sockets[s].health.ok();
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let ifindex = self.sockets[s].ifindex;
                    self.io_error("receive", &e, || {
                        format!("VRRP socket on ifindex {ifindex}")
                    });
                    match self.sockets[s].health.error(e.raw_os_error()) {
                        // An ICMP report is consumed: read on.
                        RxVerdict::Continue
                            if e.raw_os_error().is_some_and(sockhealth::is_icmp_report) =>
                        {
                            continue
                        }
                        RxVerdict::Continue => return,
                        RxVerdict::Reopen => {
                            let why = IoErrors::reason(&e);
                            self.reopen_socket(s, &why, Instant::now());
                            return;
                        }
                    }
                }
            };
            self.sockets[s].health.ok();
            let now = Instant::now();
            let rx = match got {
                Ok(rx) => rx,
                Err(reason) => {
                    self.sockets[s].drops.count(reason);
                    continue;
                }
            };
            let Some((_, vrid)) = wire::vrrp::peek(rx.payload) else {
                self.sockets[s].drops.count(DropReason::Truncated);
                continue;
            };
            let target = self.sockets[s]
                .instances
                .iter()
                .copied()
                .find(|&i| self.slots[i].plan.engine.vrid == vrid);
            match target {
                Some(i) => {
                    let meta = old_checksum_meta(self.slots[i].plan.engine.checksum, rx.meta);
                    match rx.ah_packet {
                        Some(packet) => self.slots[i].inst.handle_ah_packet(now, &rx.meta, packet),
                        None => self.slots[i].inst.handle_packet(now, &meta, rx.payload),
                    }
                    self.drain_actions(i, now);
                }
                None => self.sockets[s].drops.count(DropReason::UnknownVrid),
            }
        }
    }

    fn drain_actions(&mut self, i: usize, now: Instant) {
        // This step's adverts: `Ok` once one left the host (see `sockhealth`).
        let mut round: Option<Result<(), String>> = None;
        while let Some(action) = self.slots[i].inst.poll_action() {
            match action {
                Action::Send { dst, payload } => {
                    let sent = self.send_on_socket(i, dst, |sock, src, ttl| {
                        sock.send(src, dst, &payload, ttl)
                    });
                    if let Some(sent) = sent {
                        round = match (round, sent) {
                            (Some(Ok(())), _) | (_, Ok(())) => Some(Ok(())),
                            (_, Err(e)) => Some(Err(IoErrors::reason(&e))),
                        };
                    }
                }
                Action::AddAddresses => {
                    let slot = &mut self.slots[i];
                    slot.pending_takeover = Some(now);
                    slot.addr_epoch += 1;
                    let epoch = slot.addr_epoch;
                    slot.awaiting_addresses = Some((epoch, now + ADDRESS_WAIT_MAX));
                    let commander = self.commander.clone();
                    let done: crate::addresses::Done = Box::new(move || {
                        commander.send(Command::AddressesReady { instance: i, epoch })
                    });
                    let _ = self
                        .addr_tx
                        .send(AddrCommand::Add(slot.plan.addresses.clone(), Some(done)));
                    // `@vipd standby_metric`: the standby routes go first. zebra keeps one
                    // kernel route per prefix and table (the last one it heard of), so
                    // removing the standby route after adding the master's would
                    // withdraw both; the other way round bgpd's update hold (50 ms)
                    // merges the withdrawal and the new announcement.
                    let standby = std::mem::take(&mut self.slots[i].standby_installed);
                    if !standby.is_empty() {
                        let _ = self
                            .addr_tx
                            .send(AddrCommand::RemoveRoutes(standby, Vec::new()));
                    }
                    let slot = &self.slots[i];
                    if !slot.plan.routes.is_empty() || !slot.plan.rules.is_empty() {
                        let _ = self.addr_tx.send(AddrCommand::AddRoutes(
                            slot.plan.routes.clone(),
                            slot.plan.rules.clone(),
                        ));
                    }
                }
                Action::RemoveAddresses => {
                    let slot = &mut self.slots[i];
                    slot.pending_takeover = None;
                    slot.awaiting_addresses = None;
                    slot.pending_announce = 0;
                    let plan = &self.slots[i].plan;
                    // With `release_drain`, the worker withdraws and drains instead
                    // (a) at the end of the make-before-break hold after priority 0
                    // (only then is an instance in Initialize with the hold on), and
                    // (b) when a master yields to a higher priority (or its sync group
                    // does), in BACKUP — not with standby routes, whose metric change
                    // must not wait. FAULT removes at once.
                    let inst = &self.slots[i].inst;
                    let graceful = inst.state() == State::Initialize
                        && inst.config().hold_addresses_on_shutdown;
                    let yielded = inst.state() == State::Backup && plan.standby_routes.is_empty();
                    if let Some(drain) = plan.release_drain.filter(|_| graceful || yielded) {
                        let released_at = match graceful {
                            true => now.checked_sub(inst.config().shutdown_hold()),
                            false => None,
                        }
                        .unwrap_or(now);
                        let _ = self.addr_tx.send(AddrCommand::Release {
                            addresses: plan.addresses.clone(),
                            routes: plan.routes.clone(),
                            rules: plan.rules.clone(),
                            withdraw_at: (released_at + drain).max(now),
                            drain,
                        });
                        continue;
                    }
                    if !plan.routes.is_empty() || !plan.rules.is_empty() {
                        let _ = self.addr_tx.send(AddrCommand::RemoveRoutes(
                            plan.routes.clone(),
                            plan.rules.clone(),
                        ));
                    }
                    let _ = self
                        .addr_tx
                        .send(AddrCommand::Remove(plan.addresses.clone()));
                }
                Action::Announce { repeat } => {
                    if self.slots[i].awaiting_addresses.is_some() {
                        self.slots[i].pending_announce += repeat;
                    } else {
                        self.announce(i, repeat, now);
                    }
                }
                Action::MasterRxLowerPriority { from, priority } => {
                    let slot = &self.slots[i];
                    let _ = self.notices.send(Notice::MasterRxLowerPriority {
                        instance: slot.plan.name.clone(),
                        from,
                        their_priority: priority,
                        priority: slot.inst.priority(),
                        notify: crate::plan::NotifyPlan::clone(&slot.plan.notify),
                    });
                }
                Action::Transition { from, to, reason } => {
                    self.status_dirty = true;
                    // `@vipd standby_metric`: the standby routes exist exactly while
                    // BACKUP (on BACKUP → MASTER already removed with `AddAddresses`),
                    // with the metric of the effective priority.
                    if from != to {
                        let slot = &mut self.slots[i];
                        if to == State::Backup {
                            slot.standby_installed =
                                slot.plan.standby_routes_at(slot.inst.priority());
                            if !slot.standby_installed.is_empty() {
                                let _ = self.addr_tx.send(AddrCommand::AddRoutes(
                                    slot.standby_installed.clone(),
                                    Vec::new(),
                                ));
                            }
                        } else if from == State::Backup {
                            let standby = std::mem::take(&mut slot.standby_installed);
                            if !standby.is_empty() {
                                let _ = self
                                    .addr_tx
                                    .send(AddrCommand::RemoveRoutes(standby, Vec::new()));
                            }
                        }
                    }
                    // keepalived: first after garp_master_delay plus the interval.
                    let slot = &mut self.slots[i];
                    slot.extra_garp_at = match (&slot.plan.extra_garp, to) {
                        (Some((every, _)), State::Master) => {
                            Some(now + slot.plan.engine.garp.master_delay + *every)
                        }
                        _ => None,
                    };
                    self.sync_group_follow(i, from, to, now);
                    let slot = &self.slots[i];
                    let _ = self.notices.send(Notice::Transition {
                        instance: slot.plan.name.clone(),
                        from,
                        to,
                        reason,
                        at: SystemTime::now(),
                        priority: slot.inst.priority(),
                        notify: crate::plan::NotifyPlan::clone(&slot.plan.notify),
                        deleted: slot.deleted && to == State::Initialize,
                        vips: slot
                            .plan
                            .addresses
                            .iter()
                            .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                            .collect(),
                    });
                }
            }
        }
        if let Some(outcome) = round {
            let master = self.slots[i].inst.state() == State::Master;
            if self.slots[i].send_health.round(now, master, outcome) {
                let slot = &self.slots[i];
                let reason = slot.send_health.fault().map_or("", |f| f.reason.as_str());
                tracing::error!(
                    "{}: {} adverts in a row could not be sent ({reason}): FAULT, releasing the VIPs it cannot defend; sends are probed and it comes back when one gets out",
                    slot.plan.name,
                    sockhealth::FAILED_ROUNDS_FOR_FAULT,
                );
                self.status_dirty = true;
                self.apply_faults(i, now);
            }
        }
    }

    /// Send with instance `i`'s socket, source and TTL, counting a failure (and telling
    /// the notice stream). `EINTR` and an error that only reports an earlier ICMP
    /// message are tried once more. `None`: the socket is gone (a retired instance).
    fn send_on_socket(
        &mut self,
        i: usize,
        dst: std::net::IpAddr,
        send: impl Fn(&VrrpSocket, std::net::IpAddr, u8) -> std::io::Result<()>,
    ) -> Option<std::io::Result<()>> {
        let slot = &self.slots[i];
        let src = slot.plan.engine.primary;
        let ttl = slot.plan.unicast_ttl;
        let rx = self.sockets.get(slot.socket)?;
        let mut sent = send(&rx.sock, src, ttl);
        if let Err(e) = &sent {
            let retry = e.kind() == std::io::ErrorKind::Interrupted
                || e.raw_os_error().is_some_and(sockhealth::is_icmp_report);
            if retry {
                self.io_errors.count("advert_send", e);
                sent = send(&rx.sock, src, ttl);
            }
        }
        if let Err(e) = &sent {
            let _ = self.notices.send(Notice::SendFailed {
                instance: slot.plan.name.clone(),
                error: format!("advert to {dst}: {e}"),
            });
            self.io_errors.count("advert_send", e);
            self.status_dirty = true;
        }
        Some(sent)
    }

    /// Probe the sends of the instances in a send fault whose probe is due: one probe
    /// per advert destination; the first that gets out clears the fault.
    fn probe_sends(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.retired || slot.send_health.next_probe().is_none_or(|t| t > now) {
                continue;
            }
            let cfg = slot.inst.config();
            let version = cfg.version.number();
            let dsts: Vec<std::net::IpAddr> = if cfg.is_unicast() {
                cfg.peers.iter().map(|p| p.addr).collect()
            } else {
                vec![cfg.advert_group()]
            };
            let mut outcome = Err("no destination".to_string());
            for dst in dsts {
                match self.send_on_socket(i, dst, |sock, src, ttl| {
                    sock.send_probe(src, dst, version, ttl)
                }) {
                    Some(Ok(())) => {
                        outcome = Ok(());
                        break;
                    }
                    Some(Err(e)) => outcome = Err(IoErrors::reason(&e)),
                    None => {}
                }
            }
            if self.slots[i].send_health.probed(now, outcome) {
                tracing::warn!(
                    "{}: sends work again: fault cleared",
                    self.slots[i].plan.name
                );
                self.status_dirty = true;
                self.apply_faults(i, now);
            }
        }
    }

    /// Reopen socket `s` (`why`: the errno or `multicast_membership_lost`), counted as
    /// `vrrp_socket_reopen` in `io_errors`. While a reopen fails the socket is broken:
    /// its instances are FAULT and it is retried with backoff.
    fn reopen_socket(&mut self, s: usize, why: &str, now: Instant) {
        let rx = &mut self.sockets[s];
        let name = rx.sock.ifname().to_string();
        match rx.sock.reopen() {
            Ok(()) => {
                let was_broken = rx.health.reopened();
                // Every reopen is counted; the log says it once per reason.
                if self.io_errors.count_reason("vrrp_socket_reopen", why) || was_broken {
                    tracing::warn!(
                        "VRRP socket on {name}: {why}: reopened (groups joined again; counted as vrrp_socket_reopen/{why} in io_errors)"
                    );
                }
                self.status_dirty = true;
                if was_broken {
                    for i in self.sockets[s].instances.clone() {
                        self.apply_faults(i, now);
                    }
                }
            }
            Err(e) => {
                let reason = IoErrors::reason(&e);
                let newly = rx.health.reopen_failed(now, reason.clone());
                self.io_errors.count("vrrp_socket_reopen_failed", &e);
                self.status_dirty = true;
                if newly {
                    tracing::error!(
                        "VRRP socket on {name}: {why}: cannot reopen it ({e}): its instances are FAULT until it can be (retried with backoff)"
                    );
                    for i in self.sockets[s].instances.clone() {
                        self.apply_faults(i, now);
                    }
                }
            }
        }
    }

    /// Retry the broken sockets whose backoff is over, and check the multicast
    /// memberships of the others when due (or at once for `only`, a socket whose
    /// interface just came back).
    fn check_sockets(&mut self, now: Instant, only: Option<usize>) {
        for s in 0..self.sockets.len() {
            if only.is_none_or(|o| o == s) {
                if let Some(b) = self.sockets[s].health.broken() {
                    if only.is_some() || b.retry.due(now) {
                        let why = b.reason.clone();
                        self.reopen_socket(s, &why, now);
                    }
                }
            }
        }
        if only.is_none() && now < self.next_audit {
            return;
        }
        if only.is_none() {
            self.next_audit = now + sockhealth::MEMBERSHIP_AUDIT;
        }
        let audited: Vec<usize> = (0..self.sockets.len())
            .filter(|&s| only.is_none_or(|o| o == s))
            .filter(|&s| {
                let rx = &self.sockets[s];
                rx.health.broken().is_none() && !rx.sock.groups().is_empty()
            })
            .collect();
        if audited.is_empty() {
            return;
        }
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let joined = sockhealth::memberships(&read("/proc/net/igmp"), &read("/proc/net/igmp6"));
        for s in audited {
            let rx = &self.sockets[s];
            if !sockhealth::missing_groups(rx.ifindex, rx.sock.groups(), &joined).is_empty() {
                self.reopen_socket(s, "multicast_membership_lost", now);
            }
        }
    }

    /// A fault of one member of a sync group is the whole group's fault; otherwise an
    /// instance's fault is its own.
    fn apply_faults(&mut self, i: usize, now: Instant) {
        let members: Vec<usize> = match self.group_of(i) {
            Some(g) => self.groups[g].members.clone(),
            None => vec![i],
        };
        let fault = members.iter().any(|&m| {
            let slot = &self.slots[m];
            slot.own_fault
                || slot.plan.config_fault.is_some()
                || slot.send_health.fault().is_some()
                || self
                    .sockets
                    .get(slot.socket)
                    .is_some_and(|s| s.health.broken().is_some())
        });
        for m in members {
            self.slots[m].inst.set_fault(now, fault);
            self.drain_actions(m, now);
        }
    }

    /// `@vipd standby_metric`: while BACKUP, the installed standby routes follow the
    /// effective priority (tracking weights, a reload): on a change they are replaced,
    /// the old metric's removed first (zebra keeps one kernel route per prefix and
    /// table: see `AddAddresses`), so the upstream's order of standbys follows health.
    fn refresh_standby(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.standby_installed.is_empty() || slot.inst.state() != State::Backup {
            return;
        }
        let want = slot.plan.standby_routes_at(slot.inst.priority());
        if want == slot.standby_installed {
            return;
        }
        let old = std::mem::replace(&mut slot.standby_installed, want.clone());
        let _ = self
            .addr_tx
            .send(AddrCommand::RemoveRoutes(old, Vec::new()));
        if !want.is_empty() {
            let _ = self.addr_tx.send(AddrCommand::AddRoutes(want, Vec::new()));
        }
    }

    fn group_of(&self, i: usize) -> Option<usize> {
        self.groups.iter().position(|g| g.members.contains(&i))
    }

    /// keepalived's `vrrp_sync_group`: when a member becomes MASTER the others follow
    /// at once; when a master member yields, the others yield too. (Faults are shared
    /// by `apply_faults`.)
    fn sync_group_follow(&mut self, i: usize, from: State, to: State, now: Instant) {
        if self.syncing || self.slots[i].retired {
            return;
        }
        let Some(g) = self.group_of(i) else { return };
        self.syncing = true;
        let others: Vec<usize> = self.groups[g]
            .members
            .iter()
            .copied()
            .filter(|&m| m != i)
            .collect();
        for m in others {
            match (from, to) {
                (_, State::Master) => self.slots[m].inst.sync_to_master(now),
                (State::Master, State::Backup) => self.slots[m].inst.sync_to_backup(now),
                _ => {}
            }
            self.drain_actions(m, now);
        }
        self.syncing = false;
        let group = &self.groups[g];
        if group.state != to && matches!(to, State::Master | State::Backup | State::Fault) {
            self.groups[g].state = to;
            let group = &self.groups[g];
            let _ = self.notices.send(Notice::GroupTransition {
                group: group.name.clone(),
                to,
                notify: group.notify.clone(),
            });
        }
    }

    /// Rebuild the sync groups from the plan, over the live instances.
    fn set_groups(&mut self, plan_groups: &[crate::plan::SyncGroupPlan]) {
        let live = |slots: &[Slot], name: &str| {
            slots.iter().position(|s| !s.retired && s.plan.name == name)
        };
        self.groups = plan_groups
            .iter()
            .map(|g| GroupState {
                name: g.name.clone(),
                members: g
                    .members
                    .iter()
                    .filter_map(|m| live(&self.slots, m))
                    .collect(),
                notify: g.notify.clone(),
                state: State::Initialize,
                tracking: g.tracking.clone(),
                tracking_weight: g.tracking_weight,
            })
            .collect();
    }

    /// The VIPs of take-over `epoch` are installed (or the wait is over): let the
    /// held-back announcements go.
    fn addresses_ready(&mut self, i: usize, epoch: u64, now: Instant) {
        let slot = &mut self.slots[i];
        if slot.awaiting_addresses.map(|a| a.0) != Some(epoch) {
            return;
        }
        slot.awaiting_addresses = None;
        // Rounds held back while a large set was installing (repeats, follow-up,
        // second burst) come to one take-over burst, not all of them back to back.
        let burst = slot.inst.config().garp.master_repeat.max(1);
        let repeat = std::mem::take(&mut slot.pending_announce).min(burst);
        if repeat > 0 {
            self.announce(i, repeat, now);
        }
    }

    /// The VIPs of take-over `epoch` are not installed in time: the first round of
    /// announcements goes now, the repeats wait for the addresses (or
    /// [`ADDRESS_WAIT_REPEATS`]); after that wait everything held back goes.
    fn addresses_late(&mut self, i: usize, epoch: u64, now: Instant) {
        let slot = &mut self.slots[i];
        // `pending_takeover` is taken by the first announcement.
        if slot.pending_announce == 0 || slot.pending_takeover.is_none() {
            return self.addresses_ready(i, epoch, now);
        }
        slot.pending_announce -= 1;
        slot.awaiting_addresses = Some((epoch, now + ADDRESS_WAIT_REPEATS));
        self.announce(i, 1, now);
    }

    /// Queue `repeat` rounds of announcements; with no pacing interval the first round
    /// leaves right now, before the engine does anything else.
    fn announce(&mut self, i: usize, repeat: u32, now: Instant) {
        for _ in 0..repeat {
            for f in 0..self.slots[i].plan.announce_frames.len() {
                let (ifindex, frame) = self.slots[i].plan.announce_frames[f].clone();
                self.pace(i, ifindex, frame, now);
            }
        }
        self.slots[i].announcements_sent +=
            u64::from(repeat) * self.slots[i].plan.announce_frames.len() as u64;
        self.flush_announcements(now);
        if let Some(decided) = self.slots[i].pending_takeover.take() {
            let _ = self.notices.send(Notice::TakeoverLatency {
                instance: self.slots[i].plan.name.clone(),
                first_announce: Instant::now().duration_since(decided),
            });
        }
    }

    /// Queue one announcement of instance `i` in its lane: its interface's garp_group,
    /// else the interface (a VMAC's: its base interface) with the instance's interval.
    fn pace(&mut self, i: usize, ifindex: u32, frame: Vec<u8>, now: Instant) {
        let plan = &self.slots[i].plan;
        let base = match &plan.vmac {
            Some(v) if v.index == ifindex => v.base.index,
            _ => ifindex,
        };
        let own = match crate::pacing::frame_family(&frame) {
            Family::V4 => plan.garp_interval,
            Family::V6 => plan.gna_interval,
        };
        let (lane, interval) = self
            .pacing
            .lane(base, crate::pacing::frame_family(&frame), own);
        self.pacer.push(lane, interval, ifindex, frame, now);
    }

    /// `garp_extra_if`: one announcement on each of a master's other VIP interfaces,
    /// every interval (paced like the others).
    fn extra_garps(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let (Some(at), Some((every, frames))) = (slot.extra_garp_at, &slot.plan.extra_garp)
            else {
                continue;
            };
            if at > now || slot.retired {
                continue;
            }
            slot.extra_garp_at = Some(now + *every);
            slot.announcements_sent += frames.len() as u64;
            for (ifindex, frame) in frames.clone() {
                self.pace(i, ifindex, frame, now);
            }
        }
    }

    fn flush_announcements(&mut self, now: Instant) {
        // A slice at a time (the loop comes straight back for the rest, after the
        // timers and received adverts): sending 50,000 frames in one go would hold
        // this thread long past an advert interval.
        let due = self.pacer.due_at_most(now, ANNOUNCE_SLICE);
        if due.is_empty() {
            return;
        }
        let failed: Vec<(u32, std::io::Error)> = self
            .packet
            .send_many(&due)
            .into_iter()
            .map(|(k, e)| (due[k].0, e))
            .collect();
        for (ifindex, e) in failed {
            self.io_error("announce_send", &e, || {
                format!("gratuitous ARP / NA on ifindex {ifindex}")
            });
        }
    }

    /// Count a socket error by operation and errno (status, metrics) and log the first
    /// of each kind; the next ones only count, so a persistent error cannot flood the log.
    fn io_error(&mut self, op: &'static str, e: &std::io::Error, what: impl FnOnce() -> String) {
        if self.io_errors.count(op, e) {
            tracing::warn!(
                "{}: {e} (counted as {op}/{} in `vipd status --json` io_errors and vipd_io_errors_total; further ones are counted, not logged)",
                what(),
                IoErrors::reason(e)
            );
        }
        self.status_dirty = true;
    }

    /// Publish after a transition at once, otherwise at most every 100 ms: building
    /// the snapshot is not work for every packet on the protocol thread.
    fn maybe_publish_status(&mut self, now: Instant) {
        if (self.status_dirty || now >= self.next_publish) && self.publish_status() {
            self.status_dirty = false;
            self.next_publish = now + Duration::from_millis(100);
        }
    }

    /// `false` if a reader held the lock (the next loop turn tries again).
    fn publish_status(&self) -> bool {
        // Never wait for a reader.
        let Ok(mut snap) = self.status.try_lock() else {
            return false;
        };
        // Refilled in place: the vector's capacity is kept from one publication (every
        // 100 ms) to the next instead of growing a new one each time (issue 16: less heap
        // churn and fragmentation at hundreds of instances).
        snap.instances.clear();
        let instances = self.slots.iter().filter(|s| !s.retired).map(|s| {
            let mut st = InstanceStatus::from_engine(
                &s.plan.name,
                &s.plan.iface.name,
                &s.plan.addresses,
                &s.inst,
                self.started,
                s.announcements_sent,
            );
            st.send_faults = s.send_health.faults;
            st.detail.ifindex = s.plan.iface.index;
            st.detail.advertised = s.plan.advertised;
            st.detail.promote_secondaries = s.plan.promote_secondaries;
            st.detail.notify = s.plan.notify.clone();
            st.detail.routes.clone_from(&s.plan.routes);
            st.detail.rules.clone_from(&s.plan.rules);
            st.detail.initial_master = s.plan.initial_master;
            st.detail.accept = !s.plan.no_accept;
            st.io_fault = match (s.send_health.fault(), self.sockets.get(s.socket)) {
                (_, Some(rx)) if rx.health.broken().is_some() => Some(format!(
                    "VRRP socket on {} cannot be reopened: {}",
                    rx.sock.ifname(),
                    rx.health.broken().map_or("", |b| b.reason.as_str())
                )),
                (Some(f), _) => Some(format!("advert sends failing: {}", f.reason)),
                _ => None,
            };
            st
        });
        snap.instances.extend(instances);
        let mut socket_drops: HashMap<String, u64> = self.closed_socket_drops.clone();
        for s in &self.sockets {
            for (r, n) in s.drops.iter() {
                *socket_drops.entry(r.as_str().to_string()).or_default() += n;
            }
        }
        snap.socket_drops = socket_drops.into_iter().collect();
        snap.socket_drops.sort();
        snap.sync_groups = self
            .groups
            .iter()
            .map(|g| crate::status::SyncGroupStatus {
                name: g.name.clone(),
                members: g
                    .members
                    .iter()
                    .map(|&m| self.slots[m].plan.name.clone())
                    .collect(),
                state: g.state.as_str().to_string(),
                tracking: g.tracking.clone(),
                // Groups are few: their scripts are copied with the status.
                notify: g.notify.clone(),
                tracking_weight: g.tracking_weight,
            })
            .collect();
        // The BFD thread's own counts (`bfd_*`) are its to publish.
        let bfd: Vec<_> = snap
            .io_errors
            .drain(..)
            .filter(|e| e.op.starts_with("bfd_"))
            .collect();
        snap.io_errors = self.io_errors.lines();
        snap.io_errors.extend(bfd);
        if let Ok(link) = self.link_errors.lock() {
            snap.io_errors.extend(link.lines());
        }
        true
    }
}

/// `old_unicast_checksum`: the instance's peers checksum its adverts with the multicast
/// group in the pseudo-header, so they are checked as if sent to the group (and only so,
/// as keepalived does). Nothing else in the engine looks at the destination.
fn old_checksum_meta(checksum: wire::ChecksumVariant, meta: wire::RxMeta) -> wire::RxMeta {
    match (checksum, meta.dst) {
        (wire::ChecksumVariant::OldUnicast(group), std::net::IpAddr::V4(_)) => wire::RxMeta {
            dst: std::net::IpAddr::V4(group),
            ..meta
        },
        _ => meta,
    }
}

#[cfg(test)]
mod startup_tests {
    use super::*;

    #[test]
    fn the_longer_delay_wins_and_boot_delay_counts_from_boot() {
        let s = Duration::from_secs;
        // Booted 10 s ago, delay_after_boot 15 s: 5 s left, longer than 2 s.
        assert_eq!(startup_delay(s(2), s(15), Some(s(10))), s(5));
        // Long after boot: only vrrp_startup_delay.
        assert_eq!(startup_delay(s(2), s(15), Some(s(3600))), s(2));
        assert_eq!(startup_delay(s(0), s(0), Some(s(1))), s(0));
        assert!(uptime().is_some_and(|u| u > Duration::ZERO));
    }
}
