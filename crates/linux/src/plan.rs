//! Turns a parsed keepalived.conf into what the runtime runs: engine configs with every
//! default resolved, kernel address specs and pre-built announcement frames.
//!
//! Planning is pure: it reads the host (interfaces, their addresses and MACs, users)
//! but changes nothing — no link, address, sysctl or file is created here. `vipd
//! check-config`, `vipd run` and a reload all build the plan with [`build`], so what
//! check-config accepts, run starts, and a reload whose plan fails changes nothing.
//! The kernel objects a plan asks for are created by their owners: VMAC links by
//! [`crate::links`], addresses and routes by [`crate::addresses`].

use crate::iface::Interface;
use crate::netlink::AddressSpec;
use crate::pacing::{GroupPacing, PacingPlan};
use crate::routes::{route_spec, rule_spec, RouteSpec, RuleSpec};
use crate::track::{
    BfdTrackPlan, FilePlan, Kind, ObjectId, ParamMatch, ProcessPlan, ScriptPlan, TrackPlan,
    TrackRef,
};
use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;
use vipd_config::model::{self, Config, GarpSettings, Span, VrrpInstance};
use vipd_exec::scripts::{check_security, run_as, split_words, Script};
use vipd_vrrp::engine::{GarpTiming, InstanceConfig, Peer};
use vipd_vrrp::wire::ah::AhKey;
use vipd_vrrp::wire::hmac;
use vipd_vrrp::wire::{arp, ndisc, Auth, ChecksumVariant, Family, Version};

/// An Ethernet frame to send and the ifindex it leaves from.
pub type Frame = (u32, Vec<u8>);

/// One instance, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePlan {
    pub name: String,
    pub iface: Interface,
    pub engine: InstanceConfig,
    /// The VIPs as the kernel gets them: the `virtual_ipaddress` ones first.
    pub addresses: Vec<AddressSpec>,
    /// How many of `addresses` are `virtual_ipaddress` (advertised; the rest are
    /// `virtual_ipaddress_excluded`).
    pub advertised: usize,
    /// One announcement round: (ifindex, Ethernet frame), one per VIP.
    pub announce_frames: Vec<(u32, Vec<u8>)>,
    pub garp_interval: Duration,
    pub gna_interval: Duration,
    /// What this instance tracks, weights resolved.
    pub tracking: Vec<TrackRef>,
    /// Shared: the status snapshot refers to it every 100 ms (SNMP's script columns).
    pub notify: std::sync::Arc<NotifyPlan>,
    /// `use_vmac` / `use_ipvlan`: the link the VIPs live on (and adverts leave from).
    pub vmac: Option<Vmac>,
    /// `vrf VRF_IF` (a unicast instance without `interface`): the VRF device its VRRP
    /// socket is bound to.
    pub vrf: Option<Interface>,
    /// `dynamic_interfaces`: its interface (or VRF device) does not exist yet, so it has
    /// no socket, no link and no addresses, and is in FAULT until the interface appears.
    pub waiting: bool,
    /// `use_vmac_addr`: the VMACs of the VIPs / eVIPs on other interfaces or of the
    /// other address family, each with the indexes (into `addresses` and
    /// `announce_frames`) of the addresses it carries.
    pub address_vmacs: Vec<(Vmac, Vec<usize>)>,
    /// `virtual_routes` / `virtual_rules`: installed while MASTER.
    pub routes: Vec<RouteSpec>,
    pub rules: Vec<RuleSpec>,
    /// `unicast_ttl`: TTL / hop limit of adverts to unicast peers (default 255).
    pub unicast_ttl: u8,
    /// `no_accept` (explicit, or `vrrp_strict` for a non-owner): the host drops packets
    /// addressed to this instance's VIPs (see `vipd_lb::nft::no_accept`).
    pub no_accept: bool,
    /// `state MASTER` (what the SNMP tables call the initial state).
    pub initial_master: bool,
    /// `promote_secondaries` on the interface (not with `use_vmac` / `use_ipvlan`,
    /// which keepalived refuses with a message: `check-config` warns).
    pub promote_secondaries: bool,
    /// `garp_extra_if`: while MASTER, every `.0`, one announcement on each of the VIPs'
    /// other interfaces (`.1`: ifindex and frame, one per interface).
    pub extra_garp: Option<(Duration, Vec<Frame>)>,
    /// Why the configuration itself keeps the instance in FAULT (keepalived's config
    /// faults): `unicast_fault_no_peer` without unicast peers.
    pub config_fault: Option<String>,
    /// `@vipd bfd_takeover NAME`: the `bfd_instance` whose Up/Down the engine gets as
    /// `peer_up` / `peer_down` of its `neighbor_ip` (the master's advert source).
    pub bfd_takeover: Option<(String, IpAddr)>,
    /// `@vipd release_drain MS`: after a graceful release the VIPs stay this long after
    /// priority 0, then are withdrawn but still answered this long more.
    pub release_drain: Option<Duration>,
    /// `@vipd standby_metric BASE`: the `virtual_routes` with metric BASE + 255 -
    /// priority (the configured one), installed while BACKUP (empty without the line).
    /// Tracking moves the effective priority, and the installed metric with it: see
    /// [`InstancePlan::standby_routes_at`].
    pub standby_routes: Vec<RouteSpec>,
    /// BASE of `@vipd standby_metric`.
    pub standby_metric: Option<u32>,
}

impl InstancePlan {
    /// The standby routes at effective priority `priority` (empty without
    /// `@vipd standby_metric`): metric BASE + 255 - priority.
    pub fn standby_routes_at(&self, priority: u8) -> Vec<RouteSpec> {
        let Some(base) = self.standby_metric else {
            return Vec::new();
        };
        let metric = base.saturating_add(255 - u32::from(priority));
        self.routes
            .iter()
            .map(|r| RouteSpec {
                metric: Some(metric),
                ..r.clone()
            })
            .collect()
    }

    pub fn family(&self) -> Family {
        self.engine.family()
    }
    /// The interface VRRP packets use: the VMAC (unless `vmac_xmit_base`), else the
    /// instance's interface.
    /// An instance without `interface` has none (`""`, 0: its socket is bound to no
    /// device) or its `vrf` device.
    pub fn vrrp_interface(&self) -> (&str, u32) {
        match (&self.vmac, &self.vrf) {
            (Some(v), _) if !v.xmit_base => (&v.name, v.index),
            (_, Some(vrf)) => (&vrf.name, vrf.index),
            _ => (&self.iface.name, self.iface.index),
        }
    }

    pub fn multicast(&self) -> bool {
        !self.engine.is_unicast()
    }

    /// The group this instance's adverts go to and come from; `None` in unicast mode.
    pub fn multicast_group(&self) -> Option<IpAddr> {
        self.multicast().then(|| self.engine.advert_group())
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub router_id: Option<String>,
    pub rt_priority: Option<u8>,
    /// `vrrp_priority`: nice value of the protocol thread.
    pub nice: Option<i32>,
    /// `vrrp_cpu_affinity`: the CPUs the protocol thread runs on (empty: any).
    pub cpu_affinity: Vec<u16>,
    /// `max_auto_priority` (0: off) and `min_auto_priority_delay` (µs).
    pub max_auto_priority: u8,
    pub min_auto_priority_delay: Option<u32>,
    pub instances: Vec<InstancePlan>,
    /// The `vrrp_script`s some instance tracks.
    pub scripts: Vec<ScriptPlan>,
    pub files: Vec<FilePlan>,
    pub processes: Vec<ProcessPlan>,
    /// The `bfd_instance`s some instance tracks.
    pub bfd_tracks: Vec<BfdTrackPlan>,
    /// `notify_fifo`, `vrrp_notify_fifo`, `lvs_notify_fifo` with their scripts.
    pub fifos: FifoPlan,
    pub sync_groups: Vec<SyncGroupPlan>,
    /// `static_ipaddress`: added at start whatever the VRRP state, removed at stop.
    pub static_addresses: Vec<AddressSpec>,
    /// `static_routes` / `static_rules`: likewise.
    pub static_routes: Vec<RouteSpec>,
    pub static_rules: Vec<RuleSpec>,
    /// `vrrp_startup_delay`: instances start this long after the protocol thread.
    pub startup_delay: Duration,
    /// `vrrp_delay_after_boot`: instances start no earlier than this after boot.
    pub delay_after_boot: Duration,
    /// The `bfd_instance`s, run by [`crate::bfd`].
    pub bfd: BfdPlan,
    /// `dynamic_interfaces`: the interfaces the configuration names that do not exist
    /// yet. What needs them is left out of this plan (an instance on one is in FAULT);
    /// when one appears the daemon reloads, and the new plan has it.
    pub missing_interfaces: Vec<String>,
    /// `garp_group`s: GARP / NA pacing shared by their interfaces.
    pub garp_groups: PacingPlan,
    /// The static lines re-added when something deletes them (all but `no_track`).
    pub static_restore: Restore,
}

/// Static addresses, routes and rules to restore when deleted, as keepalived does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restore {
    pub addresses: Vec<AddressSpec>,
    pub routes: Vec<RouteSpec>,
    pub rules: Vec<RuleSpec>,
}

impl Plan {
    /// Fill [`Plan::static_restore`]: the static lines without `no_track` (the specs
    /// are in the configuration's order, less the lines `build` left out).
    fn with_restore(mut self, cfg: &Config) -> Plan {
        fn kept<T: Clone>(specs: &[T], no_track: impl Iterator<Item = bool>) -> Vec<T> {
            specs
                .iter()
                .zip(no_track)
                .filter(|(_, n)| !n)
                .map(|(s, _)| s.clone())
                .collect()
        }
        self.static_restore = Restore {
            // The same lines `build` planned: those on an interface still awaited
            // (`dynamic_interfaces`) are left out of both.
            addresses: kept(
                &self.static_addresses,
                cfg.static_ipaddress
                    .iter()
                    .filter(|v| !awaited(cfg, static_dev(cfg, v)))
                    .map(|a| a.no_track),
            ),
            routes: kept(
                &self.static_routes,
                cfg.static_routes
                    .iter()
                    .filter(|r| !r.dev.as_deref().is_some_and(|d| awaited(cfg, d)))
                    .map(|r| r.no_track),
            ),
            rules: kept(
                &self.static_rules,
                cfg.static_rules.iter().map(|r| r.no_track),
            ),
        };
        self
    }
}

/// What the BFD thread runs: one session per `bfd_instance`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BfdPlan {
    pub sessions: Vec<BfdSessionPlan>,
    /// `bfd_priority`: nice value of the BFD thread.
    pub nice: Option<i32>,
    /// `bfd_rt_priority`: its SCHED_RR priority.
    pub rt_priority: Option<u8>,
    /// `bfd_cpu_affinity`: the CPUs the BFD thread runs on (empty: any).
    pub cpu_affinity: Vec<u16>,
}

/// One `bfd_instance`, keepalived's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdSessionPlan {
    pub name: String,
    pub neighbor: IpAddr,
    /// `source_ip`; `None`: the kernel's choice of source, and packets from the
    /// neighbour to any of our addresses match.
    pub source: Option<IpAddr>,
    pub multihop: bool,
    pub min_rx_us: u32,
    pub min_tx_us: u32,
    pub idle_tx_us: u32,
    pub multiplier: u8,
    pub passive: bool,
    /// TTL / hop limit sent.
    pub ttl: u8,
    /// Lowest TTL / hop limit accepted (`None`: no check).
    pub min_rx_ttl: Option<u8>,
    /// `vrrp` / `checker`: who hears the session's events.
    pub to_vrrp: bool,
    pub to_checker: bool,
}

/// What identifies a session across reloads: neighbour, source, hop mode.
pub type BfdKey = (IpAddr, Option<IpAddr>, bool);

impl BfdSessionPlan {
    pub fn key(&self) -> BfdKey {
        (self.neighbor, self.source, self.multihop)
    }

    /// The engine's configuration for this session (the discriminator and the jitter
    /// seed are the owner's).
    pub fn session_config(&self, discriminator: u32, seed: u64) -> vipd_bfd::SessionConfig {
        let hop = if self.multihop {
            vipd_bfd::Hop::Multi
        } else {
            vipd_bfd::Hop::Single
        };
        vipd_bfd::SessionConfig {
            local_discriminator: discriminator,
            desired_min_tx: self.min_tx_us,
            required_min_rx: self.min_rx_us,
            idle_tx: self.idle_tx_us,
            detect_mult: self.multiplier,
            passive: self.passive,
            hop,
            tx_ttl: self.ttl,
            min_rx_ttl: self.min_rx_ttl,
            seed,
        }
    }
}

fn bfd_plan(cfg: &Config) -> Result<BfdPlan, PlanError> {
    let sessions = cfg
        .bfd_instances
        .iter()
        .map(|b| {
            let neighbor = b
                .neighbor_ip
                .ok_or_else(|| anyhow!("bfd_instance `{}` has no neighbor_ip", b.name))
                .map_err(at(&b.span))?;
            Ok(BfdSessionPlan {
                name: b.name.clone(),
                neighbor,
                source: b.source_ip,
                multihop: b.multihop,
                min_rx_us: b.min_rx_us,
                min_tx_us: b.min_tx_us,
                idle_tx_us: b.idle_tx_us,
                multiplier: b.multiplier,
                passive: b.passive,
                ttl: b.ttl,
                min_rx_ttl: b.min_rx_ttl(),
                to_vrrp: b.to_vrrp,
                to_checker: b.to_checker,
            })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    Ok(BfdPlan {
        sessions,
        nice: cfg.global.bfd_priority,
        rt_priority: cfg.global.bfd_rt_priority,
        cpu_affinity: cfg.global.bfd_cpu_affinity.clone(),
    })
}

/// The interface index of a link the plan asks for but that does not exist yet (a
/// VMAC): [`crate::links`] replaces it with the real index once it has created the link.
/// No Linux interface has index 0.
pub const UNBOUND: u32 = 0;

/// The index of an instance's interface that does not exist yet (`dynamic_interfaces`,
/// see [`InstancePlan::waiting`]), and of the none of an instance without `interface`.
pub const MISSING: u32 = 0;

/// The link a `use_vmac` or `use_ipvlan` instance's VIPs live on. `use_vmac`: a
/// private-mode macvlan on the instance's interface with the virtual router MAC
/// (00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6, or the configured one).
/// `use_ipvlan`: an L2 ipvlan (the interface's own MAC) with an address of its own.
/// Planned here, created by [`crate::links`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmac {
    pub name: String,
    pub kind: LinkKind,
    /// [`UNBOUND`] until [`crate::links`] has created or found the link.
    pub index: u32,
    /// vipd created it (and deletes it at stop); `false`: it already existed.
    pub created: bool,
    /// `vmac_xmit_base`: adverts leave from the base interface.
    pub xmit_base: bool,
    /// The link's MAC (an ipvlan's is its base interface's).
    pub mac: [u8; 6],
    /// `group N`: the link group (`None`: the base interface's).
    pub group: Option<u32>,
    /// The interface the macvlan sits on.
    pub base: Interface,
    pub family: Family,
    /// IPv6: the base interface's link-local address, added to the link so adverts
    /// leave from the router's own address (a VMAC's own link-local is the same on
    /// every router).
    pub base_link_local: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Macvlan,
    Ipvlan {
        mode: model::IpvlanMode,
        /// The ipvlan's own address (the adverts' source).
        addr: Option<(IpAddr, u8)>,
    },
}

fn vmac(inst: &VrrpInstance, base: &Interface, name: String, family: Family) -> Result<Vmac> {
    let vrid = inst.virtual_router_id;
    let (kind, mac, group) = match (&*inst.use_vmac, &*inst.use_ipvlan) {
        (_, Some(ipvlan)) => (
            LinkKind::Ipvlan {
                mode: ipvlan.mode,
                addr: ipvlan.addr,
            },
            base.mac,
            ipvlan.group,
        ),
        (opts, None) => {
            let opts = opts.clone().unwrap_or_default();
            let kind = if family == Family::V6 { 0x02 } else { 0x01 };
            let mac = match opts.mac {
                None => [0x00, 0x00, 0x5e, 0x00, kind, vrid],
                Some(model::VmacAddress::Full(mac)) => mac,
                Some(model::VmacAddress::UseVrid([a, b, c, d, e])) => [a, b, c, d, e, vrid],
            };
            (LinkKind::Macvlan, mac, opts.group)
        }
    };
    Ok(Vmac {
        name,
        kind,
        index: UNBOUND,
        created: false,
        // An ipvlan has no MAC of its own to hide: adverts always use it.
        xmit_base: inst.vmac_xmit_base && kind == LinkKind::Macvlan,
        mac,
        group,
        base: base.clone(),
        family,
        base_link_local: match family {
            Family::V6 => Some(base.link_local_v6()?),
            Family::V4 => None,
        },
    })
}

/// Why a configuration cannot run, at the line that says so.
#[derive(Debug)]
pub struct PlanError {
    /// The line: the instance, address, route or block the error is about; `None` for
    /// a global setting without a line of its own.
    pub span: Option<Span>,
    pub error: anyhow::Error,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.span {
            write!(f, "{}:{}:{}: ", s.file.display(), s.line, s.col)?;
        }
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for PlanError {}

/// `map_err` that places an error at `span`.
fn at(span: &Span) -> impl FnOnce(anyhow::Error) -> PlanError + '_ {
    move |error| PlanError {
        span: Some(span.clone()),
        error,
    }
}

/// `map_err` for errors without a line of their own.
fn global(error: anyhow::Error) -> PlanError {
    PlanError { span: None, error }
}

/// A `vrrp_sync_group`: its members (instance names) and its notify scripts.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncGroupPlan {
    pub name: String,
    pub members: Vec<String>,
    pub notify: NotifyPlan,
    /// The group's own `track_*` lines (each member tracks them too).
    pub tracking: Vec<TrackRef>,
    /// `sync_group_tracking_weight`.
    pub tracking_weight: bool,
}

impl Plan {
    /// The addresses the host must not accept packets for (`no_accept` instances' VIPs
    /// and excluded VIPs).
    pub fn no_accept_addresses(&self) -> Vec<IpAddr> {
        self.instances
            .iter()
            .filter(|i| i.no_accept)
            .flat_map(|i| i.addresses.iter().map(|a| a.addr))
            .collect()
    }

    /// What the tracker must watch for this plan.
    pub fn track_plan(&self) -> TrackPlan {
        TrackPlan {
            instances: self
                .instances
                .iter()
                .map(|i| (i.name.clone(), i.tracking.clone()))
                .collect(),
            scripts: self.scripts.clone(),
            files: self.files.clone(),
            processes: self.processes.clone(),
            bfds: self.bfd_tracks.clone(),
            awaited: self.missing_interfaces.clone(),
        }
    }
}

/// The plan for `cfg`, or the first reason it cannot run (see the module doc: nothing
/// on the host is changed).
pub fn build(cfg: &Config) -> Result<Plan, PlanError> {
    let instances = cfg
        .instances
        .iter()
        .map(|i| {
            build_instance(cfg, i).map_err(|mut e| {
                e.error = e.error.context(format!("vrrp_instance {}", i.name));
                e
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let instances = share_notify_plans(instances);
    let scripts = script_plans(cfg, &instances)?;
    let tracked = |kind: Kind, name: &str| {
        instances.iter().any(|i| {
            i.tracking
                .iter()
                .any(|r| r.object.kind == kind && r.object.name == name)
        })
    };
    let files = cfg
        .track_files
        .iter()
        .filter(|f| tracked(Kind::File, &f.name))
        .map(|f| FilePlan {
            name: f.name.clone(),
            path: f.file.clone().into(),
            init: f.init_file.as_deref().map(|spec| {
                let mut w = spec.split_whitespace();
                let value = w.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                (value, spec.split_whitespace().any(|x| x == "overwrite"))
            }),
            weight: f.weight,
            reverse: f.reverse,
        })
        .collect();
    let processes = cfg
        .track_processes
        .iter()
        .filter(|p| tracked(Kind::Process, &p.name))
        .map(|p| {
            let mut process = p.process.clone();
            if process.is_empty() {
                process.push(p.name.clone());
            }
            ProcessPlan {
                name: p.name.clone(),
                process,
                full_command: p.full_command,
                quorum: p.quorum.max(1),
                quorum_max: p.quorum_max,
                param_match: match p.param_match.as_deref() {
                    Some("initial") => ParamMatch::Initial,
                    Some("partial") => ParamMatch::Partial,
                    _ => ParamMatch::Exact,
                },
                fork_delay: p.fork_delay.unwrap_or_default(),
                terminate_delay: p.terminate_delay.unwrap_or_default(),
                weight: p.weight,
                reverse: p.reverse,
            }
        })
        .collect();
    let bfd_tracks = cfg
        .bfd_instances
        .iter()
        .filter(|b| tracked(Kind::Bfd, &b.name))
        .map(|b| BfdTrackPlan {
            name: b.name.clone(),
            weight: b.weight,
            reverse: b.reverse,
        })
        .collect();
    Ok(Plan {
        missing_interfaces: missing_interfaces(cfg),
        bfd: bfd_plan(cfg)?,
        garp_groups: garp_groups(cfg)?,
        startup_delay: cfg.global.vrrp_startup_delay.unwrap_or_default(),
        delay_after_boot: cfg.global.vrrp_delay_after_boot.unwrap_or_default(),
        router_id: cfg.global.router_id.clone(),
        rt_priority: cfg.global.vrrp_rt_priority,
        nice: cfg.global.vrrp_priority,
        cpu_affinity: cfg.global.vrrp_cpu_affinity.clone(),
        max_auto_priority: cfg.global.max_auto_priority,
        min_auto_priority_delay: cfg.global.min_auto_priority_delay,
        instances,
        scripts,
        files,
        processes,
        bfd_tracks,
        fifos: fifo_plan(cfg).map_err(global)?,
        static_routes: route_specs(cfg, &cfg.static_routes)?,
        static_rules: cfg.static_rules.iter().map(rule_spec).collect(),
        static_addresses: cfg
            .static_ipaddress
            .iter()
            .filter(|v| !awaited(cfg, static_dev(cfg, v)))
            .map(|v| {
                let dev = static_dev(cfg, v);
                let spec = || -> Result<AddressSpec> {
                    let dev = Interface::lookup(dev)
                        .with_context(|| format!("static_ipaddress {}", v.addr))?;
                    Ok(AddressSpec {
                        ifindex: dev.index,
                        addr: v.addr,
                        prefix_len: v.prefix_len,
                        brd: match v.brd {
                            Some(IpAddr::V4(b)) => Some(b),
                            _ => None,
                        },
                        scope: v.scope.unwrap_or(0),
                        label: v.label.clone(),
                        opts: address_options(v),
                    })
                };
                spec().map_err(at(&v.span))
            })
            .collect::<Result<Vec<_>, _>>()?,
        sync_groups: cfg
            .sync_groups
            .iter()
            .map(|g| {
                Ok(SyncGroupPlan {
                    name: g.name.clone(),
                    members: g.group.clone(),
                    notify: notify_plan(
                        cfg,
                        &format!("vrrp_sync_group {}", g.name),
                        &g.notify,
                        g.smtp_alert,
                    )
                    .map_err(at(&g.span))?,
                    tracking: resolve(cfg, &g.track).map_err(at(&g.span))?,
                    tracking_weight: g.sync_group_tracking_weight,
                })
            })
            .collect::<Result<Vec<_>, PlanError>>()?,
        static_restore: Restore::default(),
    }
    .with_restore(cfg))
}

/// Each instance's tracked objects, with weights resolved: a `track_*` line's weight,
/// else the object's own (`vrrp_script`'s `weight`), else 0; plus the instance's own
/// interface (weight 0: down means FAULT) unless `dont_track_primary`. In a
/// `vrrp_sync_group` the group's tracking applies to every member, and — as in
/// keepalived, unless `sync_group_tracking_weight` — the members' own weights become 0
/// (a failure means FAULT), so members never end up with diverging priorities.
fn tracking(cfg: &Config, inst: &VrrpInstance) -> Result<Vec<TrackRef>> {
    let mut refs = Vec::new();
    if !inst.dont_track_primary && !inst.interface.is_empty() {
        refs.push(TrackRef {
            object: ObjectId {
                kind: Kind::Interface,
                name: inst.interface.clone(),
            },
            weight: 0,
            reverse: false,
        });
    }
    // `track_src_ip`: the configured source address (none configured: nothing to track,
    // the interface's own address is taken as it is).
    if let Some(src) = inst
        .unicast_src_ip
        .or(inst.mcast_src_ip)
        .filter(|_| inst.track_src_ip)
    {
        refs.push(TrackRef {
            object: ObjectId {
                kind: Kind::Address,
                name: src.to_string(),
            },
            weight: 0,
            reverse: false,
        });
    }
    let mut own = resolve(cfg, &inst.track)?;
    // keepalived ignores a track_interface naming the instance's own interface.
    own.retain(|r| !(r.object.kind == Kind::Interface && r.object.name == inst.interface));
    if let Some(group) = cfg
        .sync_groups
        .iter()
        .find(|g| g.group.contains(&inst.name))
    {
        if !group.sync_group_tracking_weight {
            for r in &mut own {
                r.weight = 0;
            }
        }
        own.extend(resolve(cfg, &group.track)?);
    }
    refs.extend(own);
    // `track_group`: the interfaces of the static addresses / routes / rules naming a
    // track group that lists this instance (keepalived: a weight-0 tracked interface,
    // so FAULT while it is down or gone, when the line cannot be restored).
    // keepalived tracks the interface of a VIP / eVIP written with another `dev` than
    // the instance's (a weight-0 tracked interface: FAULT while it is down or gone),
    // unless the address has `no_track`.
    let vip_devs = (inst.virtual_ipaddress.iter())
        .chain(&inst.virtual_ipaddress_excluded)
        .filter(|v| !v.no_track)
        .filter_map(|v| v.dev.clone())
        .filter(|d| *d != inst.interface);
    for dev in static_track_group_interfaces(cfg, &inst.name)
        .into_iter()
        .chain(vip_devs)
    {
        let object = ObjectId {
            kind: Kind::Interface,
            name: dev,
        };
        if !refs.iter().any(|r| r.object == object && r.weight == 0) {
            refs.push(TrackRef {
                object,
                weight: 0,
                reverse: false,
            });
        }
    }
    Ok(refs)
}

/// The interfaces of the static lines (not `no_track`) whose `track_group` lists
/// `instance`: an address's `dev` (else `default_interface`, else eth0), a route's
/// `dev`, a rule's `iif`.
fn static_track_group_interfaces(cfg: &Config, instance: &str) -> Vec<String> {
    let tracks = |group: &Option<String>| {
        group.as_ref().is_some_and(|g| {
            cfg.track_groups
                .iter()
                .any(|t| &t.name == g && t.instances.iter().any(|i| i == instance))
        })
    };
    let default_dev = cfg.global.default_interface.as_deref().unwrap_or("eth0");
    let addresses = (cfg.static_ipaddress.iter())
        .filter(|a| !a.no_track && tracks(&a.track_group))
        .map(|a| a.dev.as_deref().unwrap_or(default_dev));
    let routes = (cfg.static_routes.iter())
        .filter(|r| !r.no_track && tracks(&r.track_group))
        .filter_map(|r| r.dev.as_deref());
    let rules = (cfg.static_rules.iter())
        .filter(|r| !r.no_track && tracks(&r.track_group))
        .filter_map(|r| r.iif.as_deref());
    let mut out: Vec<String> = Vec::new();
    for dev in addresses.chain(routes).chain(rules) {
        if !out.iter().any(|d| d == dev) {
            out.push(dev.to_string());
        }
    }
    out
}

/// The `track_*` lists of an instance or sync group, weights resolved.
fn resolve(cfg: &Config, track: &model::Tracking) -> Result<Vec<TrackRef>> {
    let mut refs = Vec::new();
    for t in &track.interfaces {
        refs.push(TrackRef {
            object: ObjectId {
                kind: Kind::Interface,
                name: t.name.clone(),
            },
            weight: t.weight.unwrap_or(0),
            reverse: t.reverse,
        });
    }
    for t in &track.files {
        let f = cfg
            .track_files
            .iter()
            .find(|f| f.name == t.name)
            .ok_or_else(|| anyhow!("track_file `{}`: no track_file block of that name", t.name))?;
        refs.push(TrackRef {
            object: ObjectId {
                kind: Kind::File,
                name: t.name.clone(),
            },
            weight: t.weight.unwrap_or(f.weight),
            reverse: t.reverse != f.reverse,
        });
    }
    for t in &track.processes {
        let p = cfg
            .track_processes
            .iter()
            .find(|p| p.name == t.name)
            .ok_or_else(|| {
                anyhow!(
                    "track_process `{}`: no track_process block of that name",
                    t.name
                )
            })?;
        refs.push(TrackRef {
            object: ObjectId {
                kind: Kind::Process,
                name: t.name.clone(),
            },
            weight: t.weight.unwrap_or(p.weight),
            reverse: t.reverse != p.reverse,
        });
    }
    for t in &track.bfds {
        let b = cfg
            .bfd_instances
            .iter()
            .find(|b| b.name == t.name)
            .ok_or_else(|| anyhow!("track_bfd `{}`: no bfd_instance of that name", t.name))?;
        // A `checker`-only session sends VRRP nothing: keepalived ignores the line.
        if !b.to_vrrp {
            continue;
        }
        refs.push(TrackRef {
            object: ObjectId {
                kind: Kind::Bfd,
                name: t.name.clone(),
            },
            weight: t.weight.unwrap_or(b.weight),
            // keepalived: the line's `reverse` / `noreverse`, else the bfd_instance's.
            reverse: t.reverse || (b.reverse && !t.noreverse),
        });
    }
    for t in &track.scripts {
        let script = cfg
            .scripts
            .iter()
            .find(|s| s.name == t.name)
            .ok_or_else(|| anyhow!("track_script `{}`: no vrrp_script of that name", t.name))?;
        refs.push(TrackRef {
            object: ObjectId {
                kind: Kind::Script,
                name: t.name.clone(),
            },
            weight: t.weight.unwrap_or(script.weight),
            reverse: t.reverse != script.reverse,
        });
    }
    Ok(refs)
}

/// The `vrrp_script`s that some instance tracks, ready to run. With
/// `enable_script_security`, a script a non-root user could change is refused here,
/// before anything starts.
fn script_plans(cfg: &Config, instances: &[InstancePlan]) -> Result<Vec<ScriptPlan>, PlanError> {
    let mut out: Vec<ScriptPlan> = Vec::new();
    for s in &cfg.scripts {
        let used = instances.iter().any(|i| {
            i.tracking
                .iter()
                .any(|r| r.object.kind == Kind::Script && r.object.name == s.name)
        });
        if !used {
            continue;
        }
        out.push(script_plan(cfg, s).map_err(at(&s.span))?);
    }
    Ok(out)
}

fn script_plan(cfg: &Config, s: &model::VrrpScript) -> Result<ScriptPlan> {
    {
        let argv = split_words(&s.script);
        let program = argv
            .first()
            .ok_or_else(|| anyhow!("vrrp_script {}: empty `script`", s.name))?;
        // The path checked is the path run (no second lookup of the name).
        let program = if cfg.global.enable_script_security {
            Some(
                check_security(program, cfg.global.use_symlink_paths).map_err(|e| {
                    anyhow!(
                        "vrrp_script {}: refused by enable_script_security: {e}",
                        s.name
                    )
                })?,
            )
        } else {
            None
        };
        let user = s.user.as_deref().or(cfg.global.script_user.as_deref());
        Ok(ScriptPlan {
            name: s.name.clone(),
            argv,
            program,
            interval: s.interval,
            timeout: s
                .timeout
                .unwrap_or(s.interval)
                .max(Duration::from_millis(100)),
            rise: s.rise.unwrap_or(1),
            fall: s.fall.unwrap_or(1),
            init_fail: s.init_fail,
            weight: s.weight,
            reverse: s.reverse,
            run_as: user
                .map(run_as)
                .transpose()
                .with_context(|| format!("vrrp_script {}", s.name))?,
        })
    }
}

/// `dev NAME` in a route line: a VMAC this configuration creates is [`UNBOUND`] until
/// [`crate::links`] creates it; any other interface must exist.
fn ifindex(cfg: &Config, name: &str) -> Result<u32> {
    if cfg
        .instances
        .iter()
        .any(|i| vmac_name(cfg, i).as_deref() == Some(name))
    {
        return Ok(UNBOUND);
    }
    nix::net::if_::if_nametoindex(name)
        .map_err(|_| anyhow!("route: no interface `{name}` on this host"))
}

/// `dynamic_interfaces`: `name` is an interface that does not exist (yet) and the
/// configuration may name it; what needs it waits until it appears (see
/// [`Plan::missing_interfaces`]). Without `dynamic_interfaces` a missing interface is an
/// error where it is used, as keepalived refuses such a configuration.
fn awaited(cfg: &Config, name: &str) -> bool {
    cfg.global.dynamic_interfaces && ifindex(cfg, name).is_err()
}

/// The interface of a `static_ipaddress` (keepalived: `default_interface`, else eth0).
fn static_dev<'a>(cfg: &'a Config, v: &'a model::VirtualAddress) -> &'a str {
    v.dev
        .as_deref()
        .or(cfg.global.default_interface.as_deref())
        .unwrap_or("eth0")
}

/// Routes as the kernel gets them; with `dynamic_interfaces`, those through an
/// interface that does not exist yet are left out.
fn route_specs(cfg: &Config, routes: &[model::Route]) -> Result<Vec<RouteSpec>, PlanError> {
    routes
        .iter()
        .filter(|r| !r.dev.as_deref().is_some_and(|d| awaited(cfg, d)))
        .map(|r| route_spec(r, &|dev| ifindex(cfg, dev)).map_err(at(&r.span)))
        .collect()
}

/// Every interface the configuration names that [`awaited`] says is missing.
fn missing_interfaces(cfg: &Config) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for i in &cfg.instances {
        names.push(&i.interface);
        names.extend(i.vrf.as_deref());
        let vips = i
            .virtual_ipaddress
            .iter()
            .chain(&i.virtual_ipaddress_excluded);
        names.extend(vips.filter_map(|v| v.dev.as_deref()));
        names.extend(i.virtual_routes.iter().filter_map(|r| r.dev.as_deref()));
    }
    names.extend(cfg.static_ipaddress.iter().map(|v| static_dev(cfg, v)));
    names.extend(cfg.static_routes.iter().filter_map(|r| r.dev.as_deref()));
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !n.is_empty() && awaited(cfg, n) && !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// The name of the link a `use_vmac` / `use_ipvlan` instance runs on (keepalived's
/// default: `PREFIX.VRID`, PREFIX `vmac_prefix` or `vrrp`).
fn vmac_name(cfg: &Config, inst: &VrrpInstance) -> Option<String> {
    let name = match (&*inst.use_vmac, &*inst.use_ipvlan) {
        (_, Some(ipvlan)) => &ipvlan.name,
        (Some(vmac), None) => &vmac.name,
        (None, None) => return None,
    };
    let prefix = cfg.global.vmac_prefix.as_deref().unwrap_or("vrrp");
    Some(
        name.clone()
            .unwrap_or_else(|| default_link_name(prefix, inst.virtual_router_id)),
    )
}

/// `PREFIX.VRID`, the prefix shortened as keepalived does so the name fits in
/// IFNAMSIZ (15 bytes).
fn default_link_name(prefix: &str, vrid: u8) -> String {
    numbered_link_name(prefix, None, vrid)
}

/// `PREFIXN.VRID` (`PREFIX.VRID` without N), the prefix shortened to fit in 15 bytes.
fn numbered_link_name(prefix: &str, num: Option<u16>, vrid: u8) -> String {
    let suffix = match num {
        Some(n) => format!("{n}.{vrid}"),
        None => format!(".{vrid}"),
    };
    let room = 15 - suffix.len();
    let mut end = prefix.len().min(room);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &prefix[..end])
}

/// How long a notify script may run before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// A script keyword's command, checked by `enable_script_security` and run as its own
/// `username [groupname]`, else as `script_user`. `what` names it in errors.
pub fn script_command(
    cfg: &Config,
    what: &str,
    script: &Option<model::ScriptCommand>,
) -> Result<Option<Script>> {
    let Some(script) = script else {
        return Ok(None);
    };
    let argv = split_words(&script.command);
    let program = argv
        .first()
        .ok_or_else(|| anyhow!("{what}: empty command"))?;
    // The path checked is the path run (no second lookup of the name).
    let program = if cfg.global.enable_script_security {
        Some(
            check_security(program, cfg.global.use_symlink_paths)
                .map_err(|e| anyhow!("{what}: refused by enable_script_security: {e}"))?,
        )
    } else {
        None
    };
    let run_as = match (&script.user, &cfg.global.script_user) {
        (Some(user), _) => Some(run_as(user).with_context(|| format!("{what}: user `{user}`"))?),
        (None, Some(user)) => Some(run_as(user).with_context(|| format!("script_user `{user}`"))?),
        (None, None) => None,
    };
    Ok(Some(Script {
        argv,
        run_as,
        program,
    }))
}

/// The notify scripts of one instance, split into words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyPlan {
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
    /// `notify`: gets `INSTANCE <name> <STATE> <priority>` appended.
    pub generic: Option<Script>,
    /// `notify_master_rx_lower_pri`: a MASTER heard a lower-priority advert (run
    /// without arguments, as keepalived does; the generic `notify` is not called).
    pub master_rx_lower_pri: Option<Script>,
    /// `notify_deleted [SCRIPT]`: an instance a reload removes notifies `DELETED` (and
    /// runs the script, if any) instead of keepalived's default `FAULT`.
    pub notify_deleted: bool,
    pub deleted: Option<Script>,
    pub timeout: Duration,
    /// `smtp_alert` (resolved with the global defaults): mail the transitions.
    pub mail: bool,
    /// `notify_priority_changes` (resolved: the instance's, its sync group's, then
    /// `vrrp_notify_priority_changes`): a FIFO line when the effective priority moves.
    pub priority_changes: bool,
}

impl NotifyPlan {
    pub fn is_empty(&self) -> bool {
        self.master.is_none()
            && self.backup.is_none()
            && self.fault.is_none()
            && self.stop.is_none()
            && self.generic.is_none()
            && self.master_rx_lower_pri.is_none()
            && self.deleted.is_none()
    }
}

/// One notify FIFO and its reader script (`*_notify_fifo_script`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoSpec {
    pub path: std::path::PathBuf,
    /// Started with the FIFO's name as its last argument.
    pub script: Option<Script>,
}

/// `notify_fifo`, `vrrp_notify_fifo` and `lvs_notify_fifo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FifoPlan {
    pub general: Option<FifoSpec>,
    pub vrrp: Option<FifoSpec>,
    pub lvs: Option<FifoSpec>,
}

/// The three notify FIFOs; a script without its FIFO is left out (`check-config` warns).
fn fifo_plan(cfg: &Config) -> Result<FifoPlan> {
    let g = &cfg.global;
    let one = |kw: &str, path: &Option<String>, script: &Option<model::ScriptCommand>| {
        Ok::<_, anyhow::Error>(match path {
            Some(p) => Some(FifoSpec {
                path: p.into(),
                script: script_command(cfg, &format!("{kw}_script"), script)?,
            }),
            None => None,
        })
    };
    Ok(FifoPlan {
        general: one("notify_fifo", &g.notify_fifo, &g.notify_fifo_script)?,
        vrrp: one(
            "vrrp_notify_fifo",
            &g.vrrp_notify_fifo,
            &g.vrrp_notify_fifo_script,
        )?,
        lvs: one(
            "lvs_notify_fifo",
            &g.lvs_notify_fifo,
            &g.lvs_notify_fifo_script,
        )?,
    })
}

fn notify_plan(
    cfg: &Config,
    owner: &str,
    n: &model::Notify,
    smtp_alert: Option<bool>,
) -> Result<NotifyPlan> {
    let prepare = |kw: &str, script: &Option<model::ScriptCommand>| {
        script_command(cfg, &format!("{owner}: {kw}"), script)
    };
    Ok(NotifyPlan {
        master: prepare("notify_master", &n.master)?,
        backup: prepare("notify_backup", &n.backup)?,
        fault: prepare("notify_fault", &n.fault)?,
        stop: prepare("notify_stop", &n.stop)?,
        generic: prepare("notify", &n.notify)?,
        master_rx_lower_pri: prepare("notify_master_rx_lower_pri", &n.master_rx_lower_pri)?,
        // A bare `notify_deleted` switches DELETED on without a script of its own.
        notify_deleted: n.deleted.is_some(),
        deleted: prepare(
            "notify_deleted",
            &n.deleted.clone().filter(|s| !s.command.is_empty()),
        )?,
        timeout: NOTIFY_TIMEOUT,
        mail: vrrp_alerts(&cfg.global, smtp_alert),
        priority_changes: n
            .priority_changes
            .unwrap_or(cfg.global.vrrp_notify_priority_changes),
    })
}

/// Whether a `vrrp_instance` / `vrrp_sync_group` mails its transitions: its own
/// `smtp_alert`, else `smtp_alert_vrrp`, else `smtp_alert`, else no.
fn vrrp_alerts(g: &model::GlobalDefs, own: Option<bool>) -> bool {
    own.or(g.smtp_alert_vrrp).or(g.smtp_alert).unwrap_or(false)
}

/// One instance: errors about an address or a route are placed at its line, the rest
/// at the instance.
fn build_instance(cfg: &Config, inst: &VrrpInstance) -> Result<InstancePlan, PlanError> {
    let mut plan = instance_plan(cfg, inst).map_err(at(&inst.span))?;
    let home = match &plan.vmac {
        // VIPs live on the VMAC, when there is one, so ARP answers carry the virtual MAC.
        Some(v) => Interface {
            name: v.name.clone(),
            index: UNBOUND,
            mac: v.mac,
        },
        None => plan.iface.clone(),
    };
    let link_local = plan.vmac.as_ref().and_then(|v| v.base_link_local);
    // The names `use_vmac_addr` must not take: every instance's own link.
    let mut taken: Vec<String> = cfg
        .instances
        .iter()
        .filter_map(|i| vmac_name(cfg, i))
        .collect();
    // Excluded VIPs (eVIPs) come and go with the instance but are not advertised.
    // An instance whose interface does not exist yet (dynamic_interfaces) has none
    // until it appears: it is in FAULT.
    let present = !plan.waiting;
    // Without `interface`, a VIP that names no `dev` goes on `default_interface`
    // (keepalived: else eth0).
    let default_dev = (plan.iface.name.is_empty())
        .then(|| cfg.global.default_interface.as_deref().unwrap_or("eth0"));
    let vips = inst.virtual_ipaddress.len();
    for (n, v) in inst
        .virtual_ipaddress
        .iter()
        .chain(&inst.virtual_ipaddress_excluded)
        .enumerate()
        .filter(|_| present)
    {
        let on_other_dev = (v.dev.as_deref())
            .or(default_dev)
            .filter(|d| *d != plan.iface.name && *d != home.name);
        // dynamic_interfaces: an address on a missing interface waits for it.
        if on_other_dev.is_some_and(|d| awaited(cfg, d)) {
            continue;
        }
        let other_family = v.addr.is_ipv6() != (plan.family() == Family::V6);
        // keepalived: `use_vmac_addr` for addresses away from the instance's interface or
        // family; an address's own `use_vmac` also on the instance's interface when the
        // instance has no VMAC of its own.
        let away = on_other_dev.is_some() || other_family;
        let own_vmac = plan
            .vmac
            .as_ref()
            .is_some_and(|l| l.kind == LinkKind::Macvlan);
        let needs_vmac = (inst.use_vmac_addr && away) || (v.use_vmac && (away || !own_vmac));
        let k = plan.addresses.len();
        let (spec, frame) = if needs_vmac {
            let base = match on_other_dev {
                Some(d) => Interface::lookup(d).map_err(at(&v.span))?,
                None => plan.iface.clone(),
            };
            let family = if v.addr.is_ipv6() {
                Family::V6
            } else {
                Family::V4
            };
            let j = address_vmac(cfg, inst, &mut plan.address_vmacs, &mut taken, base, family);
            let link = &plan.address_vmacs[j].0;
            let dev = Interface {
                name: link.name.clone(),
                index: UNBOUND,
                mac: link.mac,
            };
            let ll = link.base_link_local;
            plan.address_vmacs[j].1.push(k);
            vip(v, &dev, ll)
        } else {
            let dev = match on_other_dev {
                Some(d) => Interface::lookup(d).map_err(at(&v.span))?,
                None => home.clone(),
            };
            vip(v, &dev, link_local)
        }
        .map_err(at(&v.span))?;
        plan.addresses.push(spec);
        plan.announce_frames.push(frame);
        if n < vips {
            plan.advertised += 1;
        }
    }
    plan.routes = route_specs(cfg, &inst.virtual_routes)?;
    plan.standby_metric = inst.standby_metric;
    plan.standby_routes = plan.standby_routes_at(plan.engine.priority);
    plan.tracking = tracking(cfg, inst).map_err(at(&inst.span))?;
    // garp_extra_if: while MASTER, announcements on the VIPs' VMACs from
    // `use_vmac_addr` and, with `all`, also on their other interfaces (keepalived
    // switches it off when there are none).
    if let Some(x) = inst.garp_extra_if.or(cfg.global.garp_extra_if) {
        let on_address_vmac = |k: usize| plan.address_vmacs.iter().any(|(_, ks)| ks.contains(&k));
        let mut frames: Vec<(u32, Vec<u8>)> = Vec::new();
        for (k, (ifindex, frame)) in plan.announce_frames.iter().enumerate() {
            let wanted =
                on_address_vmac(k) || (x.all && *ifindex != home.index && *ifindex != UNBOUND);
            if wanted && !frames.iter().any(|f| f.0 == *ifindex && f.0 != UNBOUND) {
                frames.push((*ifindex, frame.clone()));
            }
        }
        if x.interval > 0 && !frames.is_empty() {
            plan.extra_garp = Some((Duration::from_secs(u64::from(x.interval)), frames));
        }
    }
    Ok(plan)
}

/// The options of an address line as the kernel gets them (keepalived's
/// `netlink_ipaddress`: flags, peer, and a preferred lifetime for IPv6 only).
fn address_options(v: &model::VirtualAddress) -> crate::netlink::AddressOptions {
    crate::netlink::AddressOptions {
        peer: v.peer,
        flags: v.flags,
        dad: v.dad,
        preferred_lft: v.effective_preferred_lft(),
        track: false,
    }
}

/// The index of the `use_vmac_addr` VMAC for addresses of `family` on `base`, planned
/// on first use. Its MAC is `use_vmac`'s when one is configured, else the virtual router
/// MAC of the family. Its name, as keepalived 2.4.3 picks it: an existing macvlan on
/// `base` with that MAC (one left by an earlier start, or this daemon's before a
/// reload), else the first free of `PREFIX.VRID`, `PREFIX1.VRID`, `PREFIX2.VRID`, ...
/// (IPv6: `PREFIX6.VRID` before `PREFIX1.VRID`), PREFIX `vmac_addr_prefix`, else
/// `vmac_prefix`, else `vrrp`; a name is free when no interface and no instance's link
/// has it.
fn address_vmac(
    cfg: &Config,
    inst: &VrrpInstance,
    vmacs: &mut Vec<(Vmac, Vec<usize>)>,
    taken: &mut Vec<String>,
    base: Interface,
    family: Family,
) -> usize {
    let vrid = inst.virtual_router_id;
    let mac = match inst.use_vmac.as_ref().and_then(|o| o.mac) {
        Some(model::VmacAddress::Full(mac)) => mac,
        Some(model::VmacAddress::UseVrid([a, b, c, d, e])) => [a, b, c, d, e, vrid],
        None => [
            0,
            0,
            0x5e,
            0,
            if family == Family::V6 { 2 } else { 1 },
            vrid,
        ],
    };
    if let Some(j) = vmacs
        .iter()
        .position(|(v, _)| v.base.index == base.index && v.mac == mac)
    {
        return j;
    }
    let name = existing_macvlan(&base.name, mac, taken).unwrap_or_else(|| {
        let prefix = (cfg.global.vmac_addr_prefix.as_deref())
            .or(cfg.global.vmac_prefix.as_deref())
            .unwrap_or("vrrp");
        address_vmac_name(prefix, vrid, family, |n| {
            !taken.iter().any(|t| t == n) && nix::net::if_::if_nametoindex(n).is_err()
        })
    });
    taken.push(name.clone());
    vmacs.push((
        Vmac {
            name,
            kind: LinkKind::Macvlan,
            index: UNBOUND,
            created: false,
            // Adverts never use these links.
            xmit_base: false,
            mac,
            group: inst.use_vmac.as_ref().and_then(|o| o.group),
            base_link_local: match family {
                Family::V6 => base.link_local_v6().ok(),
                Family::V4 => None,
            },
            base,
            family,
        },
        Vec::new(),
    ));
    vmacs.len() - 1
}

/// The first `free` name of `PREFIX.VRID`, `PREFIX1.VRID`, `PREFIX2.VRID`, ... (IPv6:
/// `PREFIX6.VRID` comes before `PREFIX1.VRID`), as keepalived 2.4.3 names the VMACs of
/// `use_vmac_addr`.
fn address_vmac_name(
    prefix: &str,
    vrid: u8,
    family: Family,
    free: impl Fn(&str) -> bool,
) -> String {
    let nums: Box<dyn Iterator<Item = u16>> = match family {
        Family::V6 => Box::new([6].into_iter().chain((1..).filter(|n| *n != 6))),
        Family::V4 => Box::new(1..),
    };
    std::iter::once(None)
        .chain(nums.map(Some))
        .map(|n| numbered_link_name(prefix, n, vrid))
        .find(|n| free(n))
        .expect("some PREFIXN.VRID is free")
}

/// An interface stacked on `base` with MAC `mac` whose name is not `taken`.
fn existing_macvlan(base: &str, mac: [u8; 6], taken: &[String]) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find(|n| {
        !taken.contains(n)
            && Path::new(&format!("/sys/class/net/{n}/lower_{base}")).exists()
            && std::fs::read_to_string(format!("/sys/class/net/{n}/address"))
                .ok()
                .and_then(|t| crate::iface::parse_mac(t.trim()))
                == Some(mac)
    })
}

/// One VIP on `dev` as the kernel gets it, and its announcement frame. `link_local`:
/// the source of an IPv6 announcement from a link not created yet ([`UNBOUND`]).
fn vip(
    v: &model::VirtualAddress,
    dev: &Interface,
    link_local: Option<Ipv6Addr>,
) -> Result<(AddressSpec, (u32, Vec<u8>))> {
    let brd = match v.brd {
        None => None,
        Some(IpAddr::V4(b)) => Some(b),
        Some(IpAddr::V6(_)) => bail!("{}: `brd` must be an IPv4 address", v.addr),
    };
    let spec = AddressSpec {
        ifindex: dev.index,
        addr: v.addr,
        prefix_len: v.prefix_len,
        brd,
        scope: v.scope.unwrap_or(0),
        label: v.label.clone(),
        opts: crate::netlink::AddressOptions {
            track: !v.no_track,
            ..address_options(v)
        },
    };
    let ll = match link_local {
        Some(ll) if dev.index == UNBOUND => Some(ll),
        _ => dev.link_local_v6().ok(),
    };
    Ok((spec, (dev.index, announce_frame(dev, v.addr, ll))))
}

/// The instance without its addresses, routes and tracking (see [`build_instance`]).
/// Instances with equal notify plans (commonly: none at all, or the same scripts) share
/// one: a `NotifyPlan` is ~470 bytes, kept per instance for the daemon's life. Compared
/// with the last few distinct ones only: instances whose scripts all differ (their own
/// name as an argument) cost a bounded amount each, not a search of all before them.
fn share_notify_plans(mut instances: Vec<InstancePlan>) -> Vec<InstancePlan> {
    let mut distinct: Vec<std::sync::Arc<NotifyPlan>> = Vec::new();
    for p in &mut instances {
        match distinct.iter().rev().take(8).find(|d| **d == p.notify) {
            Some(d) => p.notify = d.clone(),
            None => distinct.push(p.notify.clone()),
        }
    }
    instances
}

fn instance_plan(cfg: &Config, inst: &VrrpInstance) -> Result<InstancePlan> {
    // Without VIPs (`no_virtual_ipaddress`) the family comes from the peers, source
    // addresses or `native_ipv6`, as in keepalived.
    let family = if inst.is_ipv6() {
        Family::V6
    } else {
        Family::V4
    };
    let version = match inst.effective_version(&cfg.global) {
        3 => Version::V3,
        _ => Version::V2,
    };
    let mcast_group = inst.mcast_dst_ip.or(match family {
        Family::V4 => cfg.global.vrrp_mcast_group4,
        Family::V6 => cfg.global.vrrp_mcast_group6,
    });
    if let Some(g) = mcast_group {
        if !g.is_multicast() || g.is_ipv6() != (family == Family::V6) {
            bail!(
                "`mcast_dst_ip` / `vrrp_mcast_group`: {g} is not an {} multicast address",
                if family == Family::V6 { "IPv6" } else { "IPv4" }
            );
        }
    }
    if inst.unicast_ttl == Some(0) {
        bail!("`unicast_ttl` must be 1..=255 (a TTL of 0 cannot be sent)");
    }
    // dynamic_interfaces: an instance on an interface that does not exist yet is
    // planned without it (no socket, no addresses, no VMAC) and in FAULT.
    // keepalived: a unicast instance may have no `interface` (and then a `vrf`).
    let interfaceless = inst.interface.is_empty();
    let vrf_missing = inst.vrf.as_deref().is_some_and(|v| awaited(cfg, v));
    let missing = (!interfaceless && awaited(cfg, &inst.interface)) || vrf_missing;
    let vrf = match &inst.vrf {
        Some(name) if !vrf_missing => {
            Some(Interface::lookup(name).with_context(|| format!("`vrf {name}`"))?)
        }
        _ => None,
    };
    let iface = if missing || interfaceless {
        Interface {
            name: inst.interface.clone(),
            index: MISSING,
            mac: [0; 6],
        }
    } else {
        Interface::lookup(&inst.interface)?
    };
    let vip_addrs: Vec<IpAddr> = inst.virtual_ipaddress.iter().map(|v| v.addr).collect();
    // keepalived: an ipvlan's address is the adverts' source unless one is configured.
    let ipvlan_addr = inst
        .use_ipvlan
        .as_ref()
        .and_then(|v| v.addr.map(|(a, _)| a));
    let primary = match family {
        Family::V4 => match inst.unicast_src_ip.or(inst.mcast_src_ip).or(ipvlan_addr) {
            Some(a) => a,
            None if missing => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            None => IpAddr::V4(iface.primary_v4(&vip_addrs)?),
        },
        Family::V6 => match inst.unicast_src_ip.or(inst.mcast_src_ip).or(ipvlan_addr) {
            Some(a) => a,
            None if missing => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            None => IpAddr::V6(iface.link_local_v6()?),
        },
    };

    let mut engine = InstanceConfig::new(
        inst.virtual_router_id,
        version,
        inst.priority,
        primary,
        vip_addrs,
    );
    engine.advert_interval = inst.advert_int;
    engine.mcast_group = mcast_group;
    engine.preempt = !inst.nopreempt;
    engine.preempt_delay = inst.preempt_delay;
    engine.peers = inst
        .unicast_peers
        .iter()
        .map(|p| Peer {
            addr: p.addr,
            min_ttl: p.min_ttl.unwrap_or(0),
            max_ttl: p.max_ttl.unwrap_or(255),
        })
        .collect();
    engine.auth = match &inst.auth {
        None => Auth::None,
        Some(model::Auth::Pass(p)) => Auth::pass(p),
        // keepalived: "Cannot use AH authentication with IPv6. ignoring" (and
        // `vipd check-config` warns); with VRRPv3 authentication is ignored altogether.
        Some(model::Auth::Ah(_)) if family == Family::V6 || version == Version::V3 => Auth::None,
        Some(model::Auth::Ah(p)) => {
            engine.ah_key = AhKey::from_pass(p);
            Auth::Ah
        }
    };
    engine.hmac = inst.auth_hmac.as_ref().map(|h| hmac::HmacConfig {
        keys: h
            .keys
            .iter()
            .map(|(id, k)| hmac::HmacKey::new(*id, k.0.clone()))
            .collect(),
        active_key: h.active_key.unwrap_or(0),
        mode: match h.mode {
            model::HmacMode::Enforce => hmac::Mode::Enforce,
            model::HmacMode::Permissive => hmac::Mode::Permissive,
            model::HmacMode::ReceiveOnly => hmac::Mode::ReceiveOnly,
        },
        anti_replay_time: h.anti_replay_time,
        // keepalived: max(3 × advert_int, 5) seconds when not set.
        time_window: h
            .time_window
            .unwrap_or_else(|| hmac::default_window(inst.advert_int)),
    });
    engine.checksum = if inst.v3_checksum_as_v2 || cfg.global.v3_checksum_as_v2 {
        ChecksumVariant::VrrpOnly
    } else if inst.old_unicast_checksum {
        // keepalived takes the global IPv4 group (`vrrp_mcast_group4`), not the
        // instance's `mcast_dst_ip`.
        ChecksumVariant::OldUnicast(match cfg.global.vrrp_mcast_group4 {
            Some(IpAddr::V4(g)) => g,
            _ => std::net::Ipv4Addr::new(224, 0, 0, 18),
        })
    } else {
        ChecksumVariant::PseudoHeader
    };
    engine.garp = garp_timing(&inst.garp, &cfg.global.garp, cfg.global.vrrp_min_garp);
    engine.lower_prio_no_advert = inst
        .lower_prio_no_advert
        .unwrap_or(cfg.global.lower_prio_no_advert);
    // vipd default on (see the engine's doc); `higher_prio_send_advert off` turns it off.
    engine.higher_prio_send_advert = inst.higher_prio_send_advert.unwrap_or(true);
    engine.skip_check_same_sender = inst
        .skip_check_adv_addr
        .unwrap_or(cfg.global.skip_check_adv_addr);
    engine.down_timer_adverts = inst
        .down_timer_adverts
        .or(cfg.global.vrrp_down_timer_adverts)
        .unwrap_or(3);
    engine.owner_ignore_adverts = inst
        .owner_ignore_adverts
        .unwrap_or(cfg.global.owner_ignore_adverts);
    // keepalived: "timer_expired_backup requires nopreempt - resetting".
    engine.timer_expired_backup = inst.timer_expired_backup.filter(|_| inst.nopreempt);
    let bfd_takeover = match &*inst.bfd_takeover {
        None => None,
        Some(t) => {
            let b = cfg
                .bfd_instances
                .iter()
                .find(|b| b.name == t.bfd)
                .ok_or_else(|| anyhow!("bfd_takeover `{}`: no bfd_instance of that name", t.bfd))?;
            let neighbor = b
                .neighbor_ip
                .ok_or_else(|| anyhow!("bfd_instance `{}` has no neighbor_ip", b.name))?;
            engine.peer_takeover = Some(vipd_vrrp::PeerTakeover {
                min_up: Duration::from_millis(t.min_up_ms.into()),
                hold_down: Duration::from_millis(t.hold_down_ms.into()),
            });
            Some((b.name.clone(), neighbor))
        }
    };

    // vrrp_strict / strict_mode: keepalived's RFC-conformance rules (`man 5
    // keepalived.conf`, vrrp_strict); `vipd check-config` warns about each one it bends.
    let strict = inst.strict_mode.unwrap_or(cfg.global.vrrp_strict);
    if strict {
        if !inst.unicast_peers.is_empty() {
            bail!("`vrrp_strict` does not allow unicast peers: remove `unicast_peer` or `vrrp_strict`/`strict_mode`");
        }
        engine.auth = Auth::None;
        // keepalived: "strict mode requires auth_hmac mode enforce".
        if let Some(h) = engine.hmac.as_mut() {
            h.mode = hmac::Mode::Enforce;
        }
        engine.preempt_delay = Duration::ZERO;
        // No repeated gratuitous ARPs / NAs: one per address and burst.
        engine.garp.master_repeat = engine.garp.master_repeat.min(1);
        engine.garp.lower_prio_repeat = engine.garp.lower_prio_repeat.min(1);
        engine.garp.refresh_repeat = engine.garp.refresh_repeat.min(1);
        engine.garp.followup = Duration::ZERO;
        engine.lower_prio_no_advert = true;
        engine.higher_prio_send_advert = false;
        // keepalived: "down_timer_adverts is incompatible with strict mode - resetting".
        engine.down_timer_adverts = 3;
    }
    // Accept mode: an owner always accepts; otherwise `accept`/`no_accept`, else strict
    // mode means no_accept (VRRPv2 has no accept mode: strict v2 never accepts).
    let accept = match (strict, version, inst.accept) {
        _ if inst.priority == 255 => true,
        (true, Version::V2, _) => false,
        (_, _, Some(a)) => a,
        (strict, _, None) => !strict,
    };

    let vmac = match vmac_name(cfg, inst) {
        None => None,
        // Made when the interface appears.
        Some(_) if missing || interfaceless => None,
        Some(name) => {
            let mut v = vmac(inst, &iface, name, family)?;
            if strict {
                v.xmit_base = false;
            }
            Some(v)
        }
    };
    let promote_secondaries = inst.promote_secondaries && vmac.is_none();
    Ok(InstancePlan {
        vmac,
        vrf,
        waiting: missing,
        address_vmacs: Vec::new(),
        routes: Vec::new(),
        rules: inst.virtual_rules.iter().map(rule_spec).collect(),
        tracking: Vec::new(),
        notify: std::sync::Arc::new(NotifyPlan {
            // keepalived: the instance's, else its sync group's, else the global.
            priority_changes: inst
                .notify
                .priority_changes
                .or_else(|| {
                    cfg.sync_groups
                        .iter()
                        .find(|g| g.group.contains(&inst.name))
                        .and_then(|g| g.notify.priority_changes)
                })
                .unwrap_or(cfg.global.vrrp_notify_priority_changes),
            ..notify_plan(cfg, &inst.name, &inst.notify, inst.smtp_alert)?
        }),
        no_accept: !accept,
        initial_master: inst.state == vipd_config::model::InitialState::Master,
        promote_secondaries,
        extra_garp: None,
        config_fault: if missing {
            Some(format!(
                "interface `{}` does not exist (yet): waiting for it (dynamic_interfaces)",
                match (vrf_missing, &inst.vrf) {
                    (true, Some(v)) => v,
                    _ => &inst.interface,
                }
            ))
        } else {
            (inst.unicast_fault_no_peer && inst.unicast_peers.is_empty())
                .then(|| "unicast_fault_no_peer: no unicast_peer to send to".to_string())
        },
        bfd_takeover,
        standby_routes: Vec::new(),
        standby_metric: None,
        release_drain: inst
            .release_drain_ms
            .map(|ms| Duration::from_millis(ms.into())),
        unicast_ttl: inst.unicast_ttl.unwrap_or(255),
        name: inst.name.clone(),
        iface,
        engine,
        addresses: Vec::new(),
        advertised: 0,
        announce_frames: Vec::new(),
        garp_interval: inst
            .garp
            .garp_interval
            .or(cfg.global.garp.garp_interval)
            .unwrap_or(Duration::ZERO),
        gna_interval: inst
            .garp
            .gna_interval
            .or(cfg.global.garp.gna_interval)
            .unwrap_or(Duration::ZERO),
    })
}

/// The `garp_group`s with their interfaces' indexes; an interface that does not exist
/// is an error at its group (keepalived refuses it too, without `dynamic_interfaces`).
fn garp_groups(cfg: &Config) -> Result<PacingPlan, PlanError> {
    let groups = cfg
        .garp_groups
        .iter()
        .map(|g| {
            let ifindexes = g
                .interfaces
                .iter()
                .map(|name| {
                    Interface::lookup(name)
                        .map(|i| i.index)
                        .with_context(|| format!("garp_group interface {name}"))
                })
                .collect::<Result<_>>()
                .map_err(at(&g.span))?;
            Ok(GroupPacing {
                ifindexes,
                garp_interval: g.garp_interval.unwrap_or_default(),
                gna_interval: g.gna_interval.unwrap_or_default(),
            })
        })
        .collect::<Result<_, PlanError>>()?;
    Ok(PacingPlan { groups })
}

/// `link_local`: the source of an IPv6 announcement (the interface's link-local).
fn announce_frame(dev: &Interface, addr: IpAddr, link_local: Option<Ipv6Addr>) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => arp::gratuitous_request(dev.mac, a),
        IpAddr::V6(a) => {
            ndisc::unsolicited_na(dev.mac, link_local.unwrap_or(link_local_fallback(a)), a)
        }
    }
}

/// If the interface has no link-local address yet, announce from the VIP itself.
fn link_local_fallback(a: Ipv6Addr) -> Ipv6Addr {
    a
}

/// keepalived's precedence: instance setting, then global, then keepalived's default;
/// `vrrp_min_garp` changes the defaults to one announcement and no second burst.
fn garp_timing(inst: &GarpSettings, global: &GarpSettings, min_garp: bool) -> GarpTiming {
    let d = GarpTiming::default();
    let (def_repeat, def_delay) = if min_garp {
        (1, Duration::ZERO)
    } else {
        (d.master_repeat, d.master_delay)
    };
    let master_delay = inst
        .master_delay
        .or(global.master_delay)
        .unwrap_or(def_delay);
    let master_repeat = inst
        .master_repeat
        .or(global.master_repeat)
        .unwrap_or(def_repeat);
    GarpTiming {
        master_delay,
        master_repeat,
        lower_prio_delay: inst
            .lower_prio_delay
            .or(global.lower_prio_delay)
            .unwrap_or(master_delay),
        lower_prio_repeat: inst
            .lower_prio_repeat
            .or(global.lower_prio_repeat)
            .unwrap_or(master_repeat),
        refresh: inst
            .master_refresh
            .or(global.master_refresh)
            .unwrap_or(Duration::ZERO),
        refresh_repeat: inst
            .master_refresh_repeat
            .or(global.master_refresh_repeat)
            .unwrap_or(1),
        // vrrp_min_garp asks for exactly one announcement: no follow-up either.
        followup: if min_garp { Duration::ZERO } else { d.followup },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vipd_exec::scripts::RunAs;

    const OPTS: vipd_config::LoadOptions = vipd_config::LoadOptions {
        config_id: None,
        check_interfaces: false,
        keep_tree: false,
    };

    /// Equal notify plans are one shared plan; a different one stays its own.
    #[test]
    fn instances_share_equal_notify_plans() {
        let text = [
            instance("A", 1, ""),
            instance("B", 2, ""),
            instance("C", 3, " notify_master /bin/true"),
            instance("D", 4, ""),
            instance("E", 5, " notify_master /bin/true"),
        ]
        .concat();
        let cfg = vipd_config::load_str(&text, std::path::Path::new("/k.conf"), &OPTS)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        let plan = build(&cfg).unwrap_or_else(|e| panic!("{}", e.error));
        let n = |i: usize| &plan.instances[i].notify;
        use std::sync::Arc;
        assert!(Arc::ptr_eq(n(0), n(1)) && Arc::ptr_eq(n(0), n(3)));
        assert!(Arc::ptr_eq(n(2), n(4)));
        assert!(!Arc::ptr_eq(n(0), n(2)));
        assert!(n(0).master.is_none() && n(2).master.is_some());
    }

    #[test]
    fn garp_groups_resolve_their_interfaces_and_refuse_a_missing_one() {
        let load = |text: &str| {
            vipd_config::load_str(text, std::path::Path::new("/k.conf"), &OPTS)
                .unwrap_or_else(|d| panic!("{d:#?}"))
                .config
        };
        let lo = Interface::lookup("lo").unwrap().index;
        let cfg = load(&format!(
            "garp_group {{\n garp_interval 0.5\n interface lo\n}}\n{}",
            instance("A", 1, "")
        ));
        let plan = build(&cfg).unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(
            plan.garp_groups.groups,
            [GroupPacing {
                ifindexes: vec![lo],
                garp_interval: Duration::from_millis(500),
                gna_interval: Duration::ZERO,
            }]
        );
        let cfg =
            load("garp_group {\n gna_interval 1\n interfaces {\n  lo\n  nosuch-grp0\n }\n}\n");
        let e = build(&cfg).unwrap_err();
        assert_eq!(e.span.map(|s| (s.line, s.col)), Some((1, 1)));
        assert!(
            format!("{:#}", e.error).contains("garp_group interface nosuch-grp0"),
            "{:#}",
            e.error
        );
    }

    #[test]
    fn track_group_tracks_the_static_lines_interfaces_and_no_track_is_not_restored() {
        let text = format!(
            "track_group TG {{\n group {{\n  A\n }}\n}}\n\
             static_ipaddress {{\n 192.0.2.50/32 dev lo track_group TG\n 192.0.2.51/32 dev lo no_track\n}}\n{}{}",
            instance("A", 1, " dont_track_primary"),
            instance("B", 2, " dont_track_primary"),
        );
        let cfg = vipd_config::load_str(&text, std::path::Path::new("/k.conf"), &OPTS)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        let plan = build(&cfg).unwrap_or_else(|e| panic!("{}", e.error));
        let lo = TrackRef {
            object: ObjectId {
                kind: Kind::Interface,
                name: "lo".into(),
            },
            weight: 0,
            reverse: false,
        };
        assert_eq!(plan.instances[0].tracking, [lo]);
        assert_eq!(plan.instances[1].tracking, []);
        let restored: Vec<_> = plan
            .static_restore
            .addresses
            .iter()
            .map(|a| a.addr)
            .collect();
        assert_eq!(restored, ["192.0.2.50".parse::<IpAddr>().unwrap()]);
        assert_eq!(plan.static_addresses.len(), 2);
    }

    fn plan_of(text: &str) -> Result<Plan, PlanError> {
        let cfg = vipd_config::load_str(text, std::path::Path::new("/k.conf"), &OPTS)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        build(&cfg)
    }

    #[test]
    fn missing_interfaces_refuse_the_plan_unless_dynamic() {
        let body = "vrrp_instance A {\n interface vipd-nope0\n virtual_router_id 1\n priority 100\n use_vmac\n\
             virtual_ipaddress {\n  192.0.2.1/24\n }\n}\n\
             vrrp_instance B {\n interface lo\n virtual_router_id 2\n priority 100\n dont_track_primary\n use_vmac_addr\n\
             virtual_ipaddress {\n  192.0.2.2/24\n  192.0.2.3/24 dev vipd-nope1\n }\n\
             virtual_routes {\n  198.51.100.0/24 dev vipd-nope1\n  203.0.113.0/24 dev lo\n }\n}\n\
             static_routes {\n 198.51.100.0/25 dev vipd-nope2\n}\n";
        // keepalived 2.4.3: "Non-existent interface specified in configuration".
        let e = plan_of(body).unwrap_err();
        assert!(
            format!("{e}").contains("interface `vipd-nope0` not found"),
            "{e}"
        );
        let plan = plan_of(&format!("global_defs {{\n dynamic_interfaces\n}}\n{body}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan.missing_interfaces,
            ["vipd-nope0", "vipd-nope1", "vipd-nope2"]
        );
        assert_eq!(plan.track_plan().awaited, plan.missing_interfaces);
        let a = &plan.instances[0];
        assert_eq!(a.iface.index, MISSING);
        assert!(
            a.config_fault
                .as_deref()
                .is_some_and(|f| f.contains("vipd-nope0") && f.contains("dynamic_interfaces")),
            "{:?}",
            a.config_fault
        );
        assert!(a.addresses.is_empty() && a.announce_frames.is_empty());
        // Its VMAC is made once the interface is there (the reload's plan has it).
        assert_eq!(a.vmac, None);
        // Its VIPs are still what it advertises.
        assert_eq!(
            a.engine.addresses,
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(a.vrrp_interface(), ("vipd-nope0", MISSING));
        let b = &plan.instances[1];
        assert_eq!(b.config_fault, None);
        let addrs: Vec<String> = b.addresses.iter().map(|a| a.addr.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.2"], "the VIP on vipd-nope1 waits for it");
        assert_eq!(b.announce_frames.len(), 1);
        assert!(b.address_vmacs.is_empty(), "no VMAC on a missing interface");
        let routes: Vec<Option<&str>> = b.routes.iter().map(|r| r.dev_name.as_deref()).collect();
        assert_eq!(routes, [Some("lo")]);
        assert!(plan.static_routes.is_empty());
    }

    #[test]
    fn unicast_instance_without_interface_binds_to_its_vrf() {
        let text = "global_defs {\n default_interface lo\n}\n\
             vrrp_instance U {\n virtual_router_id 5\n priority 100\n\
             unicast_src_ip 192.0.2.1\n unicast_peer {\n  192.0.2.2\n }\n\
             virtual_ipaddress {\n  192.0.2.10/24\n }\n}\n";
        let plan = plan_of(text).unwrap_or_else(|e| panic!("{e}"));
        let u = &plan.instances[0];
        // No device: the socket is bound to none; the VIP goes on default_interface.
        assert_eq!(u.vrrp_interface(), ("", 0));
        assert_eq!(u.engine.primary, "192.0.2.1".parse::<IpAddr>().unwrap());
        let lo = Interface::lookup("lo").unwrap();
        assert_eq!(u.addresses[0].ifindex, lo.index);
        assert!(u.tracking.is_empty(), "no interface to track");
        assert!(!u.waiting && u.config_fault.is_none());
        // `vrf`: the socket's device; missing, it refuses the plan unless
        // dynamic_interfaces, which keeps the instance waiting in FAULT.
        let vrf = text.replace("unicast_src_ip", "vrf lo\n unicast_src_ip");
        let plan = plan_of(&vrf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.instances[0].vrrp_interface(), ("lo", lo.index));
        let missing = vrf.replace("vrf lo", "vrf vipd-nope9");
        let e = plan_of(&missing).unwrap_err();
        assert!(format!("{e}").contains("`vrf vipd-nope9`"), "{e}");
        let plan = plan_of(&missing.replace(
            " default_interface lo\n",
            " default_interface lo\n dynamic_interfaces\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let u = &plan.instances[0];
        assert!(u.waiting && u.addresses.is_empty());
        assert!(u
            .config_fault
            .as_deref()
            .is_some_and(|f| f.contains("vipd-nope9")));
        assert_eq!(plan.missing_interfaces, ["vipd-nope9"]);
    }

    #[test]
    fn address_vmac_names_follow_keepalived() {
        let taken = |names: &'static [&'static str]| move |n: &str| !names.contains(&n);
        assert_eq!(address_vmac_name("vx", 51, Family::V4, taken(&[])), "vx.51");
        assert_eq!(address_vmac_name("vx", 51, Family::V6, taken(&[])), "vx.51");
        // What `ip -d link` showed with keepalived 2.4.3: IPv4 VIPs on e1 (vx.51), an
        // IPv6 eVIP on the instance's interface (vx6.51), one on e1 (vx1.51).
        assert_eq!(
            address_vmac_name("vx", 51, Family::V6, taken(&["vx.51"])),
            "vx6.51"
        );
        assert_eq!(
            address_vmac_name("vx", 51, Family::V6, taken(&["vx.51", "vx6.51"])),
            "vx1.51"
        );
        assert_eq!(
            address_vmac_name("vx", 51, Family::V4, taken(&["vx.51", "vx1.51"])),
            "vx2.51"
        );
        assert_eq!(
            address_vmac_name(
                "vx",
                7,
                Family::V6,
                taken(&["vx.7", "vx6.7", "vx1.7", "vx2.7", "vx3.7", "vx4.7", "vx5.7"])
            ),
            "vx7.7"
        );
        // Shortened to 15 bytes, as keepalived does.
        assert_eq!(
            address_vmac_name(
                "averyverylongprefix",
                251,
                Family::V4,
                taken(&["averyverylo.251"])
            ),
            "averyveryl1.251"
        );
    }

    #[test]
    fn use_vmac_addr_plans_a_vmac_per_interface_and_family() {
        let text = "global_defs {\n vmac_addr_prefix vx\n}\n\
             vrrp_instance A {\n interface lo\n virtual_router_id 51\n priority 100\n use_vmac\n use_vmac_addr\n\
             virtual_ipaddress {\n  192.0.2.1/24\n  192.0.2.2/24 dev lo\n }\n\
             virtual_ipaddress_excluded {\n  2001:db8::1/64\n  2001:db8::2/64\n }\n}\n";
        let plan = plan_of(text).unwrap_or_else(|e| panic!("{e}"));
        let a = &plan.instances[0];
        assert_eq!(a.vmac.as_ref().map(|v| v.name.as_str()), Some("vrrp.51"));
        // The IPv6 eVIPs share one VMAC on lo with the IPv6 virtual router MAC; the
        // IPv4 VIPs (the second names the instance's interface) stay on vrrp.51.
        assert_eq!(a.address_vmacs.len(), 1);
        let (v, ks) = &a.address_vmacs[0];
        assert_eq!(
            (v.name.as_str(), v.base.name.as_str(), v.mac, v.family),
            ("vx.51", "lo", [0, 0, 0x5e, 0, 2, 51], Family::V6)
        );
        assert_eq!(ks, &[2, 3]);
        assert_eq!(v.kind, LinkKind::Macvlan);
        // The two VIPs come first (advertised), then the eVIPs.
        assert_eq!((a.addresses.len(), a.advertised), (4, 2));
        // Without use_vmac_addr, the eVIPs would live on vrrp.51 (keepalived's note).
        let plain =
            plan_of(&text.replace(" use_vmac_addr\n", "")).unwrap_or_else(|e| panic!("{e}"));
        assert!(plain.instances[0].address_vmacs.is_empty());
        // A configured MAC is every VMAC's; the default prefix is vmac_prefix's, and the
        // instance's own VMAC name is not free.
        let text = text
            .replace("vmac_addr_prefix vx", "vmac_prefix vp")
            .replace(" use_vmac\n", " use_vmac 02:00:5e:10:00:\n");
        let plan = plan_of(&text).unwrap_or_else(|e| panic!("{e}"));
        let a = &plan.instances[0];
        assert_eq!(a.vmac.as_ref().map(|v| v.name.as_str()), Some("vp.51"));
        let (v, _) = &a.address_vmacs[0];
        assert_eq!(
            (v.name.as_str(), v.mac),
            ("vp6.51", [2, 0, 0x5e, 0x10, 0, 51])
        );
    }

    #[test]
    fn address_use_vmac_gets_a_vmac_where_the_instance_has_none() {
        let text = "vrrp_instance A {\n interface lo\n virtual_router_id 51\n priority 100\n\
             virtual_ipaddress {\n  192.0.2.1/24 use_vmac\n  192.0.2.2/24\n }\n}\n";
        let plan = plan_of(text).unwrap_or_else(|e| panic!("{e}"));
        let a = &plan.instances[0];
        assert_eq!(a.vmac, None);
        let (v, ks) = &a.address_vmacs[0];
        assert_eq!(
            (v.name.as_str(), v.base.name.as_str(), v.mac, ks.as_slice()),
            ("vrrp.51", "lo", [0, 0, 0x5e, 0, 1, 51], [0].as_slice())
        );
        assert_eq!(a.address_vmacs.len(), 1, "192.0.2.2 stays on lo");
        assert_eq!(
            a.addresses[1].ifindex,
            Interface::lookup("lo").unwrap().index
        );
    }

    /// A minimal instance on `lo` with `extra` lines.
    fn instance(name: &str, vrid: u8, extra: &str) -> String {
        format!(
            "vrrp_instance {name} {{\n interface lo\n virtual_router_id {vrid}\n priority 100\n\
             {extra}\n virtual_ipaddress {{\n  192.0.2.{vrid}/24\n }}\n}}\n"
        )
    }

    #[test]
    fn bfd_takeover_plan() {
        let opts = vipd_config::LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        let text = "bfd_instance master {\n neighbor_ip 192.0.2.1\n}\n\
            vrrp_instance A {\n interface lo\n virtual_router_id 1\n priority 100\n\
             track_bfd {\n  master\n }\n\
            @vipd bfd_takeover master min_up 500 hold_down 3000\n\
             virtual_ipaddress {\n  192.0.2.100/24\n }\n}\n\
            vrrp_instance B {\n interface lo\n virtual_router_id 2\n priority 100\n\
             virtual_ipaddress {\n  192.0.2.101/24\n }\n}\n";
        let cfg = vipd_config::load_str(text, std::path::Path::new("/k.conf"), &opts)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        let plan = build(&cfg).unwrap_or_else(|e| panic!("{}", e.error));
        let a = &plan.instances[0];
        assert_eq!(
            a.bfd_takeover,
            Some(("master".to_string(), "192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            a.engine.peer_takeover,
            Some(vipd_vrrp::PeerTakeover {
                min_up: Duration::from_millis(500),
                hold_down: Duration::from_secs(3),
            })
        );
        assert_eq!(plan.instances[1].bfd_takeover, None);
        assert_eq!(plan.instances[1].engine.peer_takeover, None);
    }

    /// `@vipd standby_metric` and `@vipd release_drain` reach the plan: the standby
    /// routes are the `virtual_routes` with metric BASE + 255 - priority.
    #[test]
    fn bgp_mode_extensions_plan() {
        let opts = vipd_config::LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        let text = "vrrp_instance A {\n interface lo\n virtual_router_id 1\n priority 100\n\
             no_virtual_ipaddress\n\
             virtual_routes {\n  192.0.2.100/32 dev lo table 100 metric 100\n }\n\
             @vipd standby_metric 1000\n\
             @vipd release_drain 250\n}\n\
            vrrp_instance B {\n interface lo\n virtual_router_id 2\n\
             virtual_ipaddress {\n  192.0.2.101/32 dev lo\n }\n}\n";
        let cfg = vipd_config::load_str(text, std::path::Path::new("/k.conf"), &opts)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        let plan = build(&cfg).unwrap_or_else(|e| panic!("{}", e.error));
        let a = &plan.instances[0];
        assert_eq!(a.routes.len(), 1);
        assert_eq!(a.routes[0].metric, Some(100));
        assert_eq!(
            a.standby_routes,
            vec![RouteSpec {
                metric: Some(1155),
                ..a.routes[0].clone()
            }]
        );
        // Tracking moved the priority to 50: 1000 + 255 - 50.
        assert_eq!(a.standby_routes_at(50)[0].metric, Some(1205));
        assert_eq!(a.standby_routes_at(50)[0].dst, a.routes[0].dst);
        assert_eq!(a.release_drain, Some(Duration::from_millis(250)));
        let b = &plan.instances[1];
        assert!(b.standby_routes_at(50).is_empty());
        assert!(b.standby_routes.is_empty());
        assert_eq!(b.release_drain, None);
    }

    #[test]
    fn bfd_sessions_and_track_bfd_weights() {
        let opts = vipd_config::LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        let text = "global_defs {\n bfd_priority -3\n bfd_rt_priority 40\n}\n\
            bfd_instance core {\n neighbor_ip 192.0.2.1\n source_ip 192.0.2.2\n min_rx 20\n\
             min_tx 30\n multiplier 4\n weight -20 reverse\n}\n\
            bfd_instance lb {\n neighbor_ip 2001:db8::1\n multihop\n checker\n}\n\
            vrrp_instance A {\n interface lo\n virtual_router_id 1\n priority 100\n\
             track_bfd {\n  core weight 10\n  lb\n }\n virtual_ipaddress {\n  192.0.2.100/24\n }\n}\n\
            vrrp_instance B {\n interface lo\n virtual_router_id 2\n priority 100\n\
             virtual_ipaddress {\n  192.0.2.101/24\n }\n}\n\
            vrrp_sync_group G {\n group {\n  B\n }\n track_bfd {\n  core\n }\n}\n";
        let cfg = vipd_config::load_str(text, std::path::Path::new("/k.conf"), &opts)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        let plan = build(&cfg).unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(
            (plan.bfd.nice, plan.bfd.rt_priority, plan.bfd.sessions.len()),
            (Some(-3), Some(40), 2)
        );
        let core = &plan.bfd.sessions[0];
        assert_eq!(
            (core.min_rx_us, core.min_tx_us, core.multiplier, core.ttl),
            (20_000, 30_000, 4, 255)
        );
        assert_eq!(
            core.key(),
            (
                "192.0.2.1".parse().unwrap(),
                Some("192.0.2.2".parse().unwrap()),
                false
            )
        );
        let lb = &plan.bfd.sessions[1];
        assert!(lb.multihop && lb.to_checker && !lb.to_vrrp);
        assert_eq!(lb.session_config(7, 0).hop.dst_port(), 4784);
        let bfd_refs = |name: &str| -> Vec<(String, i64, bool)> {
            let i = plan.instances.iter().find(|i| i.name == name).unwrap();
            i.tracking
                .iter()
                .filter(|r| r.object.kind == Kind::Bfd)
                .map(|r| (r.object.name.clone(), r.weight, r.reverse))
                .collect()
        };
        // The line's weight wins, the instance's `reverse` stays; `lb` is checker-only.
        assert_eq!(bfd_refs("A"), vec![("core".into(), 10, true)]);
        let text2 = text.replace("core weight 10", "core weight 10 noreverse");
        let cfg2 = vipd_config::load_str(&text2, std::path::Path::new("/k.conf"), &opts)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        let plan2 = build(&cfg2).unwrap_or_else(|e| panic!("{}", e.error));
        let a = &plan2.instances[0].tracking;
        assert!(
            a.iter()
                .any(|r| r.object.kind == Kind::Bfd && r.weight == 10 && !r.reverse),
            "noreverse overrides the bfd_instance's reverse: {a:?}"
        );
        // Through the sync group: the bfd_instance's own weight and reverse.
        assert_eq!(bfd_refs("B"), vec![("core".into(), -20, true)]);
    }

    #[test]
    fn skip_check_adv_addr_global_and_per_instance() {
        let opts = OPTS;
        let text = format!(
            "global_defs {{\n vrrp_skip_check_adv_addr\n}}\n{}{}",
            instance("A", 1, ""),
            instance("B", 2, "skip_check_adv_addr off")
        );
        let cfg = vipd_config::load_str(&text, std::path::Path::new("/k.conf"), &opts)
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
        let skip = |i: usize| {
            build_instance(&cfg, &cfg.instances[i])
                .unwrap()
                .engine
                .skip_check_same_sender
        };
        assert!(skip(0));
        assert!(!skip(1));
        let plain = vipd_config::load_str(
            &instance("A", 1, ""),
            std::path::Path::new("/k.conf"),
            &opts,
        )
        .unwrap()
        .config;
        assert!(
            !build_instance(&plain, &plain.instances[0])
                .unwrap()
                .engine
                .skip_check_same_sender
        );
    }

    #[test]
    fn notify_priority_changes_instance_then_sync_group_then_global() {
        let opts = OPTS;
        let changes = |global: &str, group: &str| {
            let text = format!(
                "global_defs {{\n{global}\n}}\nvrrp_sync_group G {{\n group {{\n  A\n  B\n }}\n{group}\n}}\n{}{}{}",
                instance("A", 1, ""),
                instance("B", 2, "notify_priority_changes off"),
                instance("C", 3, "")
            );
            let cfg = vipd_config::load_str(&text, std::path::Path::new("/k.conf"), &opts)
                .unwrap_or_else(|d| panic!("{d:#?}"))
                .config;
            (0..3)
                .map(|i| {
                    build_instance(&cfg, &cfg.instances[i])
                        .unwrap()
                        .notify
                        .priority_changes
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(changes("", ""), [false, false, false]);
        assert_eq!(
            changes(" vrrp_notify_priority_changes", ""),
            [true, false, true]
        );
        assert_eq!(
            changes(
                " vrrp_notify_priority_changes",
                " notify_priority_changes false"
            ),
            [false, false, true]
        );
        assert_eq!(
            changes("", " notify_priority_changes"),
            [true, false, false]
        );
    }

    #[test]
    fn unicast_fault_no_peer_is_a_config_fault_only_without_peers() {
        let fault = |extra: &str| {
            let cfg = vipd_config::load_str(
                &instance("A", 1, extra),
                std::path::Path::new("/k.conf"),
                &OPTS,
            )
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config;
            build_instance(&cfg, &cfg.instances[0])
                .unwrap()
                .config_fault
        };
        assert_eq!(fault(""), None);
        assert!(fault("unicast_fault_no_peer").is_some());
        assert_eq!(
            fault("unicast_fault_no_peer\n unicast_peer {\n  192.0.2.2\n }"),
            None
        );
    }

    #[test]
    fn vmac_prefix_names_the_default_links() {
        let name = |global: &str, extra: &str| {
            let text = format!("global_defs {{\n{global}\n}}\n{}", instance("A", 51, extra));
            let cfg = vipd_config::load_str(&text, std::path::Path::new("/k.conf"), &OPTS)
                .unwrap_or_else(|d| panic!("{d:#?}"))
                .config;
            vmac_name(&cfg, &cfg.instances[0])
        };
        assert_eq!(name("", "use_vmac").as_deref(), Some("vrrp.51"));
        assert_eq!(
            name(" vmac_prefix vip", "use_vmac").as_deref(),
            Some("vip.51")
        );
        assert_eq!(
            name(" vmac_prefix vip", "use_vmac vm1").as_deref(),
            Some("vm1")
        );
        assert_eq!(name(" vmac_prefix vip", "").as_deref(), None);
        // The first one counts, as keepalived.
        assert_eq!(
            name(" vmac_prefix vip\n vmac_prefix other", "use_vmac").as_deref(),
            Some("vip.51")
        );
        assert_eq!(
            default_link_name("averyveryverylongprefix", 51),
            "averyveryver.51"
        );
        assert_eq!(
            default_link_name("averyveryverylongprefix", 5),
            "averyveryvery.5"
        );
    }

    #[test]
    fn garp_precedence() {
        let mut inst = GarpSettings::default();
        let mut global = GarpSettings::default();
        assert_eq!(garp_timing(&inst, &global, false), GarpTiming::default());
        let min = garp_timing(&inst, &global, true);
        assert_eq!(
            (min.master_repeat, min.master_delay, min.lower_prio_repeat),
            (1, Duration::ZERO, 1)
        );
        global.master_repeat = Some(3);
        global.master_refresh = Some(Duration::from_secs(60));
        inst.master_repeat = Some(2);
        let t = garp_timing(&inst, &global, false);
        assert_eq!(t.master_repeat, 2);
        assert_eq!(
            t.lower_prio_repeat, 2,
            "lower-prio repeat defaults to master repeat"
        );
        assert_eq!(t.refresh, Duration::from_secs(60));
        assert_eq!(t.refresh_repeat, 1);
    }

    #[test]
    fn a_script_runs_as_its_own_user_else_as_script_user() {
        let mut cfg = Config::default();
        let cmd = |user: Option<&str>| {
            Some(model::ScriptCommand {
                command: "/bin/true".into(),
                user: user.map(Into::into),
            })
        };
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let run_as = |s: Option<Script>| s.unwrap().run_as;
        assert_eq!(run_as(script_command(&cfg, "n", &cmd(None)).unwrap()), None);
        cfg.global.script_user = Some("root".into());
        assert_eq!(
            run_as(script_command(&cfg, "n", &cmd(None)).unwrap()),
            Some(RunAs { uid: 0, gid: 0 })
        );
        assert_eq!(
            run_as(script_command(&cfg, "n", &cmd(Some("nobody"))).unwrap()),
            Some(RunAs {
                uid: nobody.uid.as_raw(),
                gid: nobody.gid.as_raw()
            })
        );
        assert_eq!(
            run_as(script_command(&cfg, "n", &cmd(Some("nobody root"))).unwrap()),
            Some(RunAs {
                uid: nobody.uid.as_raw(),
                gid: 0
            })
        );
        let err =
            script_command(&cfg, "VI_1: notify_master", &cmd(Some("no-such-user-x"))).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "VI_1: notify_master: user `no-such-user-x`: no user `no-such-user-x` on this host"
        );
        assert_eq!(script_command(&cfg, "n", &None).unwrap(), None);
    }

    #[test]
    fn vrrp_smtp_alert_defaults() {
        let globals = |text: &str| {
            let opts = vipd_config::LoadOptions {
                config_id: None,
                check_interfaces: false,
                ..Default::default()
            };
            vipd_config::load_str(
                &format!("global_defs {{\n{text}\n}}\n"),
                std::path::Path::new("/k.conf"),
                &opts,
            )
            .unwrap_or_else(|d| panic!("{d:#?}"))
            .config
            .global
        };
        let none = globals("");
        assert!(!vrrp_alerts(&none, None));
        assert!(vrrp_alerts(&none, Some(true)));
        let all = globals("smtp_alert");
        assert!(vrrp_alerts(&all, None));
        assert!(!vrrp_alerts(&all, Some(false)));
        assert!(vrrp_alerts(
            &globals(
                "smtp_alert
smtp_alert_checker false"
            ),
            None
        ));
        assert!(vrrp_alerts(&globals("smtp_alert_vrrp"), None));
        assert!(!vrrp_alerts(&globals("smtp_alert_checker"), None));
    }
}
