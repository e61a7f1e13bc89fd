//! keepalived's SNMP support as an AgentX subagent (RFC 2741) of a master agent such as
//! net-snmp's `snmpd` (`master agentx`): `enable_snmp_vrrp` (KEEPALIVED-MIB's global
//! scalars and vrrpInstanceTable), `enable_snmp_rfcv2` (VRRP-MIB, RFC 2787, for VRRPv2
//! IPv4 instances), `enable_snmp_rfcv3` (VRRPv3-MIB, RFC 6527, for VRRPv3 instances),
//! `enable_snmp_rfc` (both), `enable_traps` (their notifications on transitions) and
//! `snmp_socket` (the master's address, default `unix:/var/agentx/master`).
//!
//! The values come from the same status snapshot `vipd status --json` shows. The
//! subagent runs on a thread of its own: a master that is not there, goes away or
//! refuses a registration is logged and retried (1 s, doubling up to 8 s); nothing here
//! stops vipd.

use crate::agentx::{self, Body, Header, Pdu, Value, VarBind};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use vipd_linux::netlink::AddressSpec;
use vipd_linux::routes::{RouteSpec, RuleSpec};
use vipd_linux::status::{
    InstanceStatus, RsSettings, Snapshot, TrackLine, TrafficStats, VsSettings,
};
use vipd_linux::track::TrackRef;
use vipd_vrrp::engine::{State, TransitionReason};

/// KEEPALIVED-MIB: `enterprises.9586.100.5`.
const KEEPALIVED: [u32; 9] = [1, 3, 6, 1, 4, 1, 9586, 100, 5];
/// VRRP-MIB (RFC 2787): `mib-2.68`.
const VRRP_MIB: [u32; 7] = [1, 3, 6, 1, 2, 1, 68];
/// VRRPv3-MIB (RFC 6527): `mib-2.207`.
const VRRPV3_MIB: [u32; 7] = [1, 3, 6, 1, 2, 1, 207];
/// `snmpTrapOID.0`.
const SNMP_TRAP_OID: [u32; 11] = [1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
/// keepalived's default `snmp_socket`.
pub const DEFAULT_SOCKET: &str = "unix:/var/agentx/master";
/// How long the master waits for our answers (the Open's timeout).
const TIMEOUT_SECS: u8 = 5;
const BACKOFF_MAX: Duration = Duration::from_secs(8);
const PING_EVERY: Duration = Duration::from_secs(5);

pub use vipd_config::AgentxAddress as Address;

/// The SNMP settings of global_defs (read at start; keepalived does not change them on
/// reload either).
#[derive(Debug, Clone)]
pub struct Settings {
    pub keepalived: bool,
    /// `enable_snmp_checker`: KEEPALIVED-MIB's virtual and real server tables.
    pub checker: bool,
    pub rfcv2: bool,
    pub rfcv3: bool,
    pub traps: bool,
    pub address: Address,
    pub router_id: String,
    /// KEEPALIVED-MIB's global scalars and emailTable besides `version` and
    /// `routerId` (OIDs relative to `global`, `.1`), from global_defs.
    pub globals: Vec<(Vec<u32>, Value)>,
    /// The checker part's scalars, `lvsSyncDaemon` and `lvsTimeouts` (relative to
    /// `check`, `.3`).
    pub lvs: Vec<(Vec<u32>, Value)>,
    /// `lvs_sync_daemon`'s instance and interface (vrrpInstanceLvsSyncDaemon /
    /// LvsSyncInterface).
    pub lvs_sync: Option<(String, String)>,
}

impl Settings {
    /// `None` without any `enable_snmp_*`; `Err` for a `snmp_socket` vipd cannot use.
    pub fn from_config(cfg: &vipd_config::model::Config) -> Option<Result<Settings, String>> {
        let g = &cfg.global;
        if !(g.enable_snmp_vrrp
            || g.enable_snmp_checker
            || g.enable_snmp_rfcv2
            || g.enable_snmp_rfcv3)
        {
            return None;
        }
        let socket = g.snmp_socket.as_deref().unwrap_or(DEFAULT_SOCKET);
        let address = match vipd_config::parse_agentx_address(socket) {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        // keepalived's default router_id: the host name.
        let router_id = g
            .router_id
            .clone()
            .unwrap_or_else(vipd_linux::mail::hostname);
        Some(Ok(Settings {
            keepalived: g.enable_snmp_vrrp,
            checker: g.enable_snmp_checker,
            rfcv2: g.enable_snmp_rfcv2,
            rfcv3: g.enable_snmp_rfcv3,
            traps: g.enable_traps,
            address,
            globals: global_scalars(g),
            lvs: lvs_scalars(cfg),
            lvs_sync: (g.lvs_sync_daemon.as_ref())
                .and_then(|d| Some((d.instance.clone()?, d.interface.clone()))),
            router_id,
        }))
    }

    /// The subtrees registered with the master.
    fn subtrees(&self) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        if self.keepalived || self.checker {
            out.push(oid(&KEEPALIVED, &[1]));
        }
        if self.keepalived {
            out.push(oid(&KEEPALIVED, &[2]));
        }
        if self.checker {
            out.push(oid(&KEEPALIVED, &[3]));
        }
        if self.rfcv2 {
            out.push(VRRP_MIB.to_vec());
        }
        if self.rfcv3 {
            out.push(VRRPV3_MIB.to_vec());
        }
        out
    }
}

fn oid(base: &[u32], rest: &[u32]) -> Vec<u32> {
    let mut v = Vec::with_capacity(base.len() + rest.len());
    v.extend_from_slice(base);
    v.extend_from_slice(rest);
    v
}

/// KEEPALIVED-MIB's `global` objects vipd has a value for (relative to `.1`): the
/// mail settings (`.3`: SMTP server address type, address, port and timeout, `From`,
/// `no_email_faults`, the `smtp_alert*` defaults and emailTable), `trapEnable`,
/// `linkBeat`, `lvsFlush`, `ipvs64BitStats`, `netNamespace`, `dbus`,
/// `dynamicInterfaces`, `lvsFlushOnStop` and `v3ChecksumAsV2`.
fn global_scalars(g: &vipd_config::model::GlobalDefs) -> Vec<(Vec<u32>, Value)> {
    let text = |t: &str| Value::OctetString(t.as_bytes().to_vec());
    // on(1), off(2), unset(3).
    let alert = |a: Option<bool>| Value::Integer(a.map_or(3, |on| if on { 1 } else { 2 }));
    let mut out = Vec::new();
    if let Some((host, port)) = g
        .smtp_server
        .as_deref()
        .and_then(|s| vipd_config::parse_smtp_server(s).ok())
    {
        // A host name is resolved when mailing, not here: no address then.
        if let Ok(a) = host.parse::<IpAddr>() {
            out.push((vec![3, 1, 0], Value::Integer(addr_type(a))));
            out.push((vec![3, 2, 0], Value::OctetString(ip_octets(a))));
        }
        out.push((vec![3, 6, 0], Value::Gauge32(port as u32)));
    }
    // vipd's default connect timeout, as keepalived's: 30 s.
    let timeout = g.smtp_connect_timeout.unwrap_or(30).max(1);
    out.push((vec![3, 3, 0], Value::Gauge32(timeout)));
    if let Some(from) = &g.notification_email_from {
        out.push((vec![3, 4, 0], text(from)));
    }
    for (k, to) in g.notification_email.iter().enumerate() {
        out.push((vec![3, 5, 1, 2, k as u32 + 1], text(to)));
    }
    out.push((vec![3, 7, 0], truth(!g.no_email_faults)));
    out.push((vec![3, 8, 0], alert(g.smtp_alert)));
    out.push((vec![3, 9, 0], alert(g.smtp_alert_vrrp)));
    out.push((vec![3, 10, 0], alert(g.smtp_alert_checker)));
    out.push((vec![4, 0], truth(g.enable_traps)));
    // linkBeat: netlink(1), the only way vipd learns of link changes.
    out.push((vec![5, 0], Value::Integer(1)));
    out.push((vec![6, 0], truth(g.lvs_flush)));
    // ipvs64BitStats: vipd's traffic counters are 64 bits on both data planes.
    out.push((vec![7, 0], truth(true)));
    out.push((
        vec![8, 0],
        text(g.dumps.net_namespace.as_deref().unwrap_or_default()),
    ));
    out.push((vec![9, 0], truth(g.enable_dbus)));
    out.push((vec![10, 0], truth(g.dynamic_interfaces)));
    let flush_on_stop = match g.lvs_flush_on_stop {
        Some(vipd_config::model::LvsFlushOnStop::Full) => 1,
        Some(vipd_config::model::LvsFlushOnStop::VirtualServers) => 3,
        None => 2,
    };
    out.push((vec![11, 0], Value::Integer(flush_on_stop)));
    out.push((vec![12, 0], truth(g.v3_checksum_as_v2)));
    out
}

/// KEEPALIVED-MIB's `lvsSyncDaemon` (`.3.6`) and `lvsTimeouts` (`.3.7`) scalars, as
/// keepalived serves them: the sync daemon's columns only with `lvs_sync_daemon` (0
/// for the kernel's default maxlen, port and TTL; the group only when given), a
/// timeout only when set.
fn lvs_scalars(cfg: &vipd_config::model::Config) -> Vec<(Vec<u32>, Value)> {
    let g = &cfg.global;
    let mut out = vec![(vec![6, 1, 0], truth(g.lvs_sync_daemon.is_some()))];
    if let Some(d) = &g.lvs_sync_daemon {
        out.push((
            vec![6, 2, 0],
            Value::OctetString(d.interface.clone().into_bytes()),
        ));
        if let Some(i) = &d.instance {
            out.push((vec![6, 3, 0], Value::OctetString(i.clone().into_bytes())));
        }
        // Without `id`: the instance's VRID (0 without an instance).
        let vrid = (d.instance.as_ref())
            .and_then(|n| cfg.instances.iter().find(|i| &i.name == n))
            .map_or(0, |i| i.virtual_router_id);
        let id = d.sync_id.unwrap_or(vrid);
        out.push((vec![6, 4, 0], Value::Integer(id as i32)));
        out.push((vec![6, 5, 0], Value::Integer(d.maxlen.unwrap_or(0) as i32)));
        out.push((vec![6, 6, 0], Value::Integer(d.port.unwrap_or(0) as i32)));
        out.push((vec![6, 7, 0], Value::Integer(d.ttl.unwrap_or(0) as i32)));
        if let Some(a) = d.group {
            out.push((vec![6, 8, 0], Value::Integer(addr_type(a))));
            out.push((vec![6, 9, 0], Value::OctetString(ip_octets(a))));
        }
    }
    if let Some(t) = &g.lvs_timeouts {
        for (c, v) in [(1, t.tcp), (2, t.tcpfin), (3, t.udp)] {
            if let Some(secs) = v.filter(|s| *s > 0) {
                out.push((vec![7, c, 0], Value::Integer(secs as i32)));
            }
        }
    }
    out
}

/// A transition, for the notifications.
#[derive(Debug, Clone)]
pub struct Event {
    pub instance: String,
    pub to: State,
    /// VRRPv3-MIB's `vrrpv3StatisticsNewMasterReason` for a new master.
    pub master_reason: i32,
    /// KEEPALIVED-MIB's VrrpState: 0 init, 1 backup, 2 master, 3 fault, 5 shutdown.
    pub keepalived_state: i32,
    /// A `vrrp_sync_group`'s transition (`instance` is the group's name).
    pub sync_group: bool,
}

impl Event {
    pub fn new(instance: &str, to: State, reason: &TransitionReason) -> Event {
        let master_reason = match to {
            State::Master => new_master_reason(reason),
            _ => 0,
        };
        let keepalived_state = match (to, reason) {
            (State::Initialize, TransitionReason::Shutdown) => 5,
            (State::Initialize, _) => 0,
            (State::Backup, _) => 1,
            (State::Master, _) => 2,
            (State::Fault, _) => 3,
        };
        Event {
            instance: instance.to_string(),
            to,
            master_reason,
            keepalived_state,
            sync_group: false,
        }
    }

    /// Sync group `name` moved `to` (keepalived's `vrrpSyncGroupStateChange`).
    pub fn group(name: &str, to: State) -> Event {
        Event {
            sync_group: true,
            ..Event::new(name, to, &TransitionReason::SyncGroup)
        }
    }
}

/// RFC 6527's `vrrpv3StatisticsNewMasterReason` for a transition to MASTER:
/// priority(1) for the address owner and after the master's priority-0 advert (as
/// keepalived), masterNoResponse(3) otherwise. keepalived's preempted(2) (a backup
/// that heard a lower priority master) is masterNoResponse here: vipd ignores such a
/// master's adverts and takes over when its master-down timer ends.
fn new_master_reason(reason: &TransitionReason) -> i32 {
    match reason {
        TransitionReason::AddressOwner | TransitionReason::MasterDown { released: true, .. } => 1,
        _ => 3,
    }
}

/// The master agent's `sysUpTime` (centiseconds) as its last Response gave it, and
/// when: RFC 2787's TimeStamp columns are values of that clock.
#[derive(Debug, Clone, Copy)]
pub struct MasterClock {
    pub uptime: u32,
    pub at: Instant,
}

impl MasterClock {
    /// The master's sysUpTime at `t`; 0 for a time before the master started (the
    /// TimeStamp convention for events before the management system's
    /// re-initialization).
    fn timestamp(&self, t: Instant) -> u32 {
        let cs = |d: Duration| (d.as_millis() / 10) as i64;
        let delta = if t >= self.at {
            cs(t - self.at)
        } else {
            -cs(self.at - t)
        };
        (self.uptime as i64 + delta).clamp(0, u32::MAX as i64) as u32
    }
}

/// Centiseconds since `t` (TimeTicks), 0 for `None`.
fn ticks_since(t: Option<Instant>) -> u32 {
    t.map_or(0, |t| {
        (t.elapsed().as_millis() / 10).min(u32::MAX as u128) as u32
    })
}

/// vipd's drop reasons behind RFC 2787's vrrpStatsAuthFailures: a PASS or AH
/// authentication that does not verify and replays (keepalived's `auth_failure`), and
/// `auth_hmac`'s refusals.
const AUTH_FAILURES: [&str; 6] = [
    "auth_mismatch",
    "replayed",
    "auth_missing",
    "auth_malformed",
    "auth_unknown_key",
    "auth_stale",
];

/// RFC 6527's `vrrpv3StatisticsProtoErrReason`: noError(0), ipTtlError(1),
/// versionError(2), checksumError(3), vrIdError(4).
fn protocol_error(i: &InstanceStatus) -> i32 {
    use vipd_vrrp::wire::DropReason as D;
    match i.detail.protocol_error {
        Some(D::BadTtl | D::PeerTtl) => 1,
        Some(D::VersionMismatch) => 2,
        Some(D::BadChecksum) => 3,
        Some(D::UnknownVrid) => 4,
        _ => 0,
    }
}

/// RFC 2787's / RFC 6527's router-wide error counters (checksum, version, VRID): the
/// drops of the instances `of` the MIB plus those of the sockets (packets that reached
/// no instance).
fn router_errors<'a>(snap: &'a Snapshot, of: impl Fn(&InstanceStatus) -> bool + 'a) -> [u64; 3] {
    ["bad_checksum", "version_mismatch", "unknown_vrid"].map(|r| {
        let socket: u64 = snap
            .socket_drops
            .iter()
            .filter(|(k, _)| k == r)
            .map(|(_, n)| n)
            .sum();
        snap.instances
            .iter()
            .filter(|i| of(i))
            .map(|i| crate::dumps::drop_count(i, &[r]))
            .sum::<u64>()
            + socket
    })
}

/// keepalived's VrrpState numbers (KEEPALIVED-MIB).
fn keepalived_state(s: &str) -> i32 {
    match s {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

/// RFC 2787 / RFC 6527 state: initialize(1), backup(2), master(3); FAULT is initialize.
fn rfc_state(s: &str) -> i32 {
    match s {
        "BACKUP" => 2,
        "MASTER" => 3,
        _ => 1,
    }
}

fn truth(b: bool) -> Value {
    Value::Integer(if b { 1 } else { 2 })
}

fn ip_octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The VIPs of an instance its adverts carry (not the eVIPs).
fn vips(i: &InstanceStatus) -> Vec<IpAddr> {
    (i.detail.addresses.iter())
        .take(i.detail.advertised)
        .map(|a| a.addr)
        .collect()
}

/// The master's address as the tables show it: ours when MASTER, else the last master
/// heard (all zeros when none).
fn master_ip(i: &InstanceStatus) -> IpAddr {
    let unspecified = if i.detail.ipv6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    if i.state == "MASTER" {
        return i.detail.primary.unwrap_or(unspecified);
    }
    i.master
        .as_deref()
        .and_then(|m| m.parse().ok())
        .unwrap_or(unspecified)
}

/// RFC 5798's virtual MAC: 00-00-5E-00-01-VRID (IPv4), 00-00-5E-00-02-VRID (IPv6).
fn virtual_mac(i: &InstanceStatus) -> Vec<u8> {
    vec![0, 0, 0x5e, 0, if i.detail.ipv6 { 2 } else { 1 }, i.vrid]
}

/// Is the instance in VRRP-MIB (RFC 2787)? keepalived: VRRPv2 over IPv4 only.
fn in_rfcv2(i: &InstanceStatus) -> bool {
    i.version == 2 && !i.detail.ipv6
}

/// The MIB objects served, in OID order.
#[derive(Debug, Default)]
pub struct Mib(BTreeMap<Vec<u32>, Value>);

impl agentx::View for Mib {
    fn get(&self, oid: &[u32]) -> Option<Value> {
        agentx::View::get(&self.0, oid)
    }

    fn next(&self, oid: &[u32], include: bool) -> Option<(Vec<u32>, Value)> {
        agentx::View::next(&self.0, oid, include)
    }
}

impl Mib {
    /// The objects of the enabled MIBs for the instances of `snap`.
    /// `clock`: the master's sysUpTime (RFC 2787's TimeStamp column is left out without).
    pub fn build(settings: &Settings, snap: &Snapshot, clock: Option<MasterClock>) -> Mib {
        let mut m = BTreeMap::new();
        if settings.keepalived || settings.checker {
            m.insert(
                oid(&KEEPALIVED, &[1, 1, 0]),
                Value::OctetString(
                    format!("vipd {} (keepalived compatible)", env!("CARGO_PKG_VERSION"))
                        .into_bytes(),
                ),
            );
            m.insert(
                oid(&KEEPALIVED, &[1, 2, 0]),
                Value::OctetString(settings.router_id.clone().into_bytes()),
            );
            for (rel, v) in &settings.globals {
                m.insert(oid(&oid(&KEEPALIVED, &[1]), rel), v.clone());
            }
        }
        if settings.checker {
            checker_tables(&mut m, snap);
            for (rel, v) in &settings.lvs {
                m.insert(oid(&oid(&KEEPALIVED, &[3]), rel), v.clone());
            }
        }
        if settings.keepalived {
            // vrrpSyncGroupTable (`.2.1`) and vrrpSyncGroupMemberTable (`.2.2`), indexed
            // by the group's place in the configuration and the member's in the group.
            for (g, sg) in snap.sync_groups.iter().enumerate() {
                let gi = g as u32 + 1;
                m.insert(
                    oid(&KEEPALIVED, &[2, 1, 1, 2, gi]),
                    Value::OctetString(sg.name.clone().into_bytes()),
                );
                m.insert(
                    oid(&KEEPALIVED, &[2, 1, 1, 3, gi]),
                    Value::Integer(keepalived_state(&sg.state)),
                );
                let mut col = |c: u32, v: Value| {
                    m.insert(oid(&KEEPALIVED, &[2, 1, 1, c, gi]), v);
                };
                col(4, truth(sg.notify.mail));
                col(5, truth(!sg.notify.is_empty()));
                let n = &sg.notify;
                // ScriptMaster, ScriptBackup, ScriptFault, Script (notify), ScriptStop.
                for (c, script) in [
                    (6, &n.master),
                    (7, &n.backup),
                    (8, &n.fault),
                    (9, &n.generic),
                    (11, &n.stop),
                ] {
                    if let Some(s) = script {
                        col(c, Value::OctetString(s.argv.join(" ").into_bytes()));
                    }
                }
                col(10, truth(sg.tracking_weight));
                for (k, name) in sg.members.iter().enumerate() {
                    m.insert(
                        oid(&KEEPALIVED, &[2, 2, 1, 2, gi, k as u32 + 1]),
                        Value::OctetString(name.clone().into_bytes()),
                    );
                }
                sync_tracked_tables(&mut m, gi, &sg.tracking);
            }
            // vrrpAddressTable, vrrpRouteTable, vrrpRuleTable: the static lines
            // (instance 0), always set.
            address_table(&mut m, 0, &snap.static_addresses, 0, true, "");
            route_table(&mut m, 0, &snap.static_routes, true);
            rule_table(&mut m, 0, &snap.static_rules, true);
            for (n, i) in snap.instances.iter().enumerate() {
                let idx = n as u32 + 1;
                // The VIPs and eVIPs, set while MASTER (when vipd has them installed).
                address_table(
                    &mut m,
                    idx,
                    &i.detail.addresses,
                    i.detail.advertised,
                    i.state == "MASTER",
                    &i.interface,
                );
                // virtual_routes / virtual_rules, set while MASTER.
                route_table(&mut m, idx, &i.detail.routes, i.state == "MASTER");
                rule_table(&mut m, idx, &i.detail.rules, i.state == "MASTER");
                let mut col = |c: u32, v: Value| {
                    m.insert(oid(&KEEPALIVED, &[2, 3, 1, c, idx]), v);
                };
                let state = keepalived_state(&i.state);
                col(1, Value::Integer(idx as i32));
                col(2, Value::OctetString(i.name.clone().into_bytes()));
                col(3, Value::Gauge32(i.vrid as u32));
                col(4, Value::Integer(state));
                col(
                    5,
                    Value::Integer(if i.detail.initial_master { 2 } else { 1 }),
                );
                col(6, Value::Integer(state));
                col(7, Value::Integer(i.priority as i32));
                col(8, Value::Integer(i.effective_priority as i32));
                col(9, truth(i.state == "MASTER"));
                col(10, Value::OctetString(i.interface.clone().into_bytes()));
                // vrrpInstanceTrackPrimaryIf: tracked(1) with a tracked interface, as
                // keepalived (it has a tracked interface list).
                let tracks_interface = (snap.tracking.get(&i.name).into_iter().flatten())
                    .any(|l| l.kind == "interface");
                col(11, truth(tracks_interface));
                let adv = if i.version == 2 {
                    (i.advert_interval_ms / 1000.0).round()
                } else {
                    (i.advert_interval_ms / 10.0).round()
                };
                col(12, Value::Gauge32(adv as u32));
                col(13, truth(!i.detail.nopreempt));
                col(14, Value::Gauge32(i.detail.preempt_delay as u32));
                col(15, Value::Integer(i.detail.auth_type as i32));
                // The instance lvs_sync_daemon follows.
                let syncd = (settings.lvs_sync.as_ref()).filter(|(inst, _)| *inst == i.name);
                col(16, truth(syncd.is_some()));
                if let Some((_, ifname)) = syncd {
                    col(17, Value::OctetString(ifname.clone().into_bytes()));
                }
                // vrrpInstanceSyncGroup.
                if let Some(g) = snap
                    .sync_groups
                    .iter()
                    .find(|g| g.members.contains(&i.name))
                {
                    col(18, Value::OctetString(g.name.clone().into_bytes()));
                }
                col(
                    19,
                    Value::Gauge32(i.detail.garp_master_delay.as_secs() as u32),
                );
                let n = &i.detail.notify;
                col(20, truth(n.mail));
                col(21, truth(!n.is_empty()));
                // ScriptMaster, ScriptBackup, ScriptFault, ScriptStop, Script (notify),
                // ScriptMstrRxLowerPri, ScriptDeleted.
                let scripts = [
                    (22, &n.master),
                    (23, &n.backup),
                    (24, &n.fault),
                    (25, &n.stop),
                    (26, &n.generic),
                    (31, &n.master_rx_lower_pri),
                    (32, &n.deleted),
                ];
                for (c, script) in scripts {
                    if let Some(s) = script {
                        col(c, Value::OctetString(s.argv.join(" ").into_bytes()));
                    }
                }
                col(27, truth(i.detail.accept));
                col(28, truth(i.detail.promote_secondaries));
                // vrrpInstanceUseLinkbeat: vipd never polls links.
                col(29, truth(false));
                col(30, Value::Integer(i.version as i32));
                if let Some(g) = i.detail.mcast_group {
                    col(34, Value::Integer(addr_type(g)));
                    col(35, Value::OctetString(ip_octets(g)));
                }
                col(33, truth(n.notify_deleted));
                col(36, truth(i.detail.v3_checksum_as_v2));
                tracked_tables(&mut m, idx, snap.tracking.get(&i.name));
            }
            definition_tables(&mut m, snap);
        }
        if settings.rfcv2 {
            // vrrpNodeVersion, vrrpNotificationCntl.
            m.insert(oid(&VRRP_MIB, &[1, 1, 0]), Value::Integer(2));
            m.insert(oid(&VRRP_MIB, &[1, 2, 0]), truth(settings.traps));
            for i in snap.instances.iter().filter(|i| in_rfcv2(i)) {
                let (ix, vr) = (i.detail.ifindex, i.vrid as u32);
                let mut col = |c: u32, v: Value| {
                    m.insert(oid(&VRRP_MIB, &[1, 3, 1, c, ix, vr]), v);
                };
                let v4 = |a: IpAddr| match a {
                    IpAddr::V4(a) => Value::IpAddress(a.octets()),
                    IpAddr::V6(_) => Value::IpAddress([0; 4]),
                };
                let vips = vips(i);
                col(2, Value::OctetString(virtual_mac(i)));
                col(3, Value::Integer(rfc_state(&i.state)));
                col(4, Value::Integer(1));
                col(5, Value::Integer(i.priority as i32));
                col(6, Value::Integer(vips.len() as i32));
                col(7, v4(master_ip(i)));
                col(
                    8,
                    v4(i.detail
                        .primary
                        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))),
                );
                col(9, Value::Integer(i.detail.auth_type as i32 + 1));
                col(
                    11,
                    Value::Integer((i.advert_interval_ms / 1000.0).round() as i32),
                );
                col(12, truth(!i.detail.nopreempt));
                // vrrpOperVirtualRouterUpTime: sysUpTime when it left initialize, 0
                // while it is initialize (FAULT included).
                if let Some(c) = clock {
                    let at = i.detail.up_since.map_or(0, |t| c.timestamp(t));
                    col(13, Value::TimeTicks(at));
                }
                col(14, Value::Integer(1));
                col(15, Value::Integer(1));
                for a in vips {
                    let mut o = oid(&VRRP_MIB, &[1, 4, 1, 2, ix, vr]);
                    o.extend(ip_octets(a).into_iter().map(u32::from));
                    m.insert(o, Value::Integer(1));
                }
                // vrrpRouterStatsTable (AUGMENTS vrrpOperEntry). vrrpStatsInvalidAuthType
                // (10) is left out: vipd counts an unknown auth type as a mismatch.
                let c32 = |n: u64| Value::Counter32(n as u32);
                let err = |k: &str| c32(crate::dumps::error_counter(i, k));
                let stats = [
                    (1, c32(i.became_master)),
                    (2, c32(i.adverts_received)),
                    (3, err("advert_interval_err")),
                    (4, c32(crate::dumps::drop_count(i, &AUTH_FAILURES))),
                    (5, err("ip_ttl_err")),
                    (6, c32(i.priority_zero_received)),
                    (7, c32(i.priority_zero_sent)),
                    (8, err("invalid_type_rcvd")),
                    (9, err("addr_list_err")),
                    (11, err("authtype_mismatch")),
                    (12, err("packet_len_err")),
                ];
                for (c, v) in stats {
                    m.insert(oid(&VRRP_MIB, &[2, 4, 1, c, ix, vr]), v);
                }
            }
            // vrrpRouterChecksumErrors, vrrpRouterVersionErrors, vrrpRouterVrIdErrors.
            for (k, n) in router_errors(snap, in_rfcv2).into_iter().enumerate() {
                m.insert(
                    oid(&VRRP_MIB, &[2, k as u32 + 1, 0]),
                    Value::Counter32(n as u32),
                );
            }
        }
        if settings.rfcv3 {
            for i in snap.instances.iter().filter(|i| i.version == 3) {
                let ty = if i.detail.ipv6 { 2 } else { 1 };
                let (ix, vr) = (i.detail.ifindex, i.vrid as u32);
                let mut col = |c: u32, v: Value| {
                    m.insert(oid(&VRRPV3_MIB, &[1, 1, 1, 1, c, ix, vr, ty]), v);
                };
                let vips = vips(i);
                col(3, Value::OctetString(ip_octets(master_ip(i))));
                if let Some(p) = i.detail.primary {
                    col(4, Value::OctetString(ip_octets(p)));
                }
                col(5, Value::OctetString(virtual_mac(i)));
                col(6, Value::Integer(rfc_state(&i.state)));
                col(7, Value::Gauge32(i.priority as u32));
                col(8, Value::Integer(vips.len() as i32));
                col(
                    9,
                    Value::Integer((i.advert_interval_ms / 10.0).round() as i32),
                );
                col(10, truth(!i.detail.nopreempt));
                col(11, truth(i.detail.accept));
                // vrrpv3OperationsUpTime: TimeTicks since it left initialize.
                col(12, Value::TimeTicks(ticks_since(i.detail.up_since)));
                col(13, Value::Integer(1));
                for a in vips {
                    // keepalived: the address's bytes without a length sub-identifier.
                    let mut o = oid(&VRRPV3_MIB, &[1, 1, 2, 1, 2, ix, vr, ty]);
                    o.extend(ip_octets(a).into_iter().map(u32::from));
                    m.insert(o, Value::Integer(1));
                }
                // vrrpv3StatisticsTable.
                let c64 = Value::Counter64;
                let err = |k: &str| c64(crate::dumps::error_counter(i, k));
                let reason = i.detail.master_reason.as_ref().map_or(0, new_master_reason);
                let stats = [
                    (1, Value::Counter32(i.became_master as u32)),
                    (2, Value::Integer(reason)),
                    (3, c64(i.adverts_received)),
                    (4, err("advert_interval_err")),
                    (5, err("ip_ttl_err")),
                    (6, Value::Integer(protocol_error(i))),
                    (7, c64(i.priority_zero_received)),
                    (8, c64(i.priority_zero_sent)),
                    (9, err("invalid_type_rcvd")),
                    (10, err("addr_list_err")),
                    (11, err("packet_len_err")),
                    // vipd never clears an instance's counters (one a reload replaces
                    // starts anew): no discontinuity is recorded.
                    (12, Value::TimeTicks(0)),
                    // The status snapshot's period (ms): counters move at most that often.
                    (13, Value::Gauge32(100)),
                ];
                for (c, v) in stats {
                    m.insert(oid(&VRRPV3_MIB, &[1, 2, 5, 1, c, ix, vr, ty]), v);
                }
            }
            let v3 = |i: &InstanceStatus| i.version == 3;
            for (k, n) in router_errors(snap, v3).into_iter().enumerate() {
                m.insert(
                    oid(&VRRPV3_MIB, &[1, 2, k as u32 + 1, 0]),
                    Value::Counter64(n),
                );
            }
            // vrrpv3GlobalStatisticsDiscontinuityTime.
            m.insert(oid(&VRRPV3_MIB, &[1, 2, 4, 0]), Value::TimeTicks(0));
        }
        Mib(m)
    }
}

/// KEEPALIVED-MIB's vrrpTracked{Interface,Script,File,Bfd,Process}Table rows of the
/// instance `idx`: indexed, as keepalived does, by the instance and the object's place
/// among the instance's tracked objects of that kind (not by ifIndex for interfaces).
fn tracked_tables(m: &mut BTreeMap<Vec<u32>, Value>, idx: u32, lines: Option<&Vec<TrackLine>>) {
    let rows = (lines.into_iter().flatten())
        .map(|l| (l.kind.as_str(), l.name.as_str(), l.weight, l.reverse));
    tracked_rows(m, [4, 5, 12, 17, 20], idx, rows);
}

/// KEEPALIVED-MIB's vrrpSyncTracked{Interface,Script,File,Bfd,Process}Table rows of
/// sync group `idx`: its own `track_*` lines, indexed as the instances' are.
fn sync_tracked_tables(m: &mut BTreeMap<Vec<u32>, Value>, idx: u32, refs: &[TrackRef]) {
    let rows = refs.iter().map(|r| {
        let kind = r.object.kind.as_str();
        (kind, r.object.name.as_str(), r.weight, r.reverse)
    });
    tracked_rows(m, [14, 15, 16, 19, 22], idx, rows);
}

/// Tracked object rows (kind, name, weight, reverse) of one instance or sync group, in
/// the interface, script, file, BFD and process `tables` (`.2.N`).
fn tracked_rows<'a>(
    m: &mut BTreeMap<Vec<u32>, Value>,
    tables: [u32; 5],
    idx: u32,
    rows: impl Iterator<Item = (&'a str, &'a str, i64, bool)> + Clone,
) {
    // (kind, first column: the interface tables have no index column)
    const KINDS: [(&str, u32); 5] = [
        ("interface", 1),
        ("script", 2),
        ("file", 2),
        ("bfd", 2),
        ("process", 2),
    ];
    for ((kind, first), table) in KINDS.into_iter().zip(tables) {
        let of_kind = rows.clone().filter(|(k, ..)| *k == kind);
        for (k, (_, name, weight, reverse)) in of_kind.enumerate() {
            let row = [2, table, 1, 0, idx, k as u32 + 1];
            let mut col = |c: u32, v: Value| {
                let mut o = oid(&KEEPALIVED, &row);
                o[KEEPALIVED.len() + 3] = c;
                m.insert(o, v);
            };
            col(first, Value::OctetString(name.as_bytes().to_vec()));
            let weight = weight.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            col(first + 1, Value::Integer(weight));
            col(first + 2, truth(reverse));
        }
    }
}

/// KEEPALIVED-MIB's vrrpAddressTable (`.2.6`) rows of instance `idx` (0: the static
/// addresses): the first `advertised` of `addresses` are advertised, all are `set` or
/// not; `ifname` names an interface whose index no longer resolves.
fn address_table(
    m: &mut BTreeMap<Vec<u32>, Value>,
    idx: u32,
    addresses: &[AddressSpec],
    advertised: usize,
    set: bool,
    ifname: &str,
) {
    for (k, a) in addresses.iter().enumerate() {
        let row = k as u32 + 1;
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[2, 6, 1, c, idx, row]), v);
        };
        col(2, Value::Integer(addr_type(a.addr)));
        col(3, Value::OctetString(ip_octets(a.addr)));
        if a.addr.is_ipv4() {
            let brd = a.brd.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            col(4, Value::OctetString(brd.octets().to_vec()));
        }
        col(5, Value::Gauge32(a.prefix_len as u32));
        col(6, Value::Integer(inet_scope(a.scope)));
        // A VMAC not created yet has no index (nor a name yet).
        if a.ifindex != 0 {
            col(7, Value::Integer(a.ifindex as i32));
            let name = crate::dumps::ifname(a.ifindex, ifname);
            col(8, Value::OctetString(name.into_bytes()));
        }
        if let Some(l) = &a.label {
            col(9, Value::OctetString(l.clone().into_bytes()));
        }
        col(10, truth(set));
        col(11, truth(k < advertised));
        if let Some(p) = a.opts.peer {
            col(12, Value::OctetString(ip_octets(p)));
        }
    }
}

/// KEEPALIVED-MIB's vrrpRouteTable (`.2.7`) rows of instance `idx` (0: the static
/// routes).
fn route_table(m: &mut BTreeMap<Vec<u32>, Value>, idx: u32, routes: &[RouteSpec], set: bool) {
    use vipd_linux::routes::RouteKind as K;
    for (k, r) in routes.iter().enumerate() {
        let row = k as u32 + 1;
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[2, 7, 1, c, idx, row]), v);
        };
        col(2, Value::Integer(addr_type(r.dst)));
        col(3, Value::OctetString(ip_octets(r.dst)));
        col(4, Value::Gauge32(r.dst_len as u32));
        if let Some(g) = r.gateway {
            col(5, Value::OctetString(ip_octets(g)));
        }
        if let Some(a) = r.pref_src {
            col(7, Value::OctetString(ip_octets(a)));
        }
        col(8, Value::Gauge32(r.metric.unwrap_or(0)));
        col(9, Value::Integer(inet_scope(r.effective_scope())));
        // RouteType: unicast(1) (`local` too, as keepalived), blackhole(3),
        // unreachable(7), prohibit(8), throw(9).
        let kind = match r.kind {
            K::Unicast | K::Local => 1,
            K::Blackhole => 3,
            K::Unreachable => 7,
            K::Prohibit => 8,
            K::Throw => 9,
        };
        col(10, Value::Integer(kind));
        // A VMAC not created yet has no index.
        if let Some(ix) = r.dev.filter(|ix| *ix != 0) {
            col(11, Value::Integer(ix as i32));
            let name = crate::dumps::ifname(ix, r.dev_name.as_deref().unwrap_or_default());
            col(12, Value::OctetString(name.into_bytes()));
        }
        col(13, Value::Gauge32(r.table));
        col(14, truth(set));
    }
}

/// KEEPALIVED-MIB's vrrpRuleTable (`.2.8`) rows of instance `idx` (0: the static
/// rules).
fn rule_table(m: &mut BTreeMap<Vec<u32>, Value>, idx: u32, rules: &[RuleSpec], set: bool) {
    use vipd_linux::routes::RouteKind as K;
    for (k, r) in rules.iter().enumerate() {
        let row = k as u32 + 1;
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[2, 8, 1, c, idx, row]), v);
        };
        // The obsolete direction and address columns: `to` before `from`.
        let direction: &[u8] = match (r.from.is_some(), r.to.is_some()) {
            (true, true) => b"both",
            (false, true) => b"to",
            (true, false) => b"from",
            (false, false) => b"",
        };
        col(2, Value::OctetString(direction.to_vec()));
        if let Some((a, len)) = r.to.or(r.from) {
            col(3, Value::Integer(addr_type(a)));
            col(4, Value::OctetString(ip_octets(a)));
            col(5, Value::Gauge32(len as u32));
        }
        // RuleAction: table(1), blackhole(6), unreachable(7), prohibit(8).
        let action = match r.action {
            None | Some(K::Unicast | K::Local | K::Throw) => 1,
            Some(K::Blackhole) => 6,
            Some(K::Unreachable) => 7,
            Some(K::Prohibit) => 8,
        };
        if let (1, Some(t)) = (action, r.table) {
            col(6, Value::Gauge32(t));
            col(24, Value::Gauge32(t));
        }
        col(7, truth(set));
        col(8, truth(r.invert));
        if let Some((a, len)) = r.to {
            col(9, Value::Integer(addr_type(a)));
            col(10, Value::OctetString(ip_octets(a)));
            col(11, Value::Gauge32(len as u32));
        }
        if let Some((a, len)) = r.from {
            col(12, Value::Integer(addr_type(a)));
            col(13, Value::OctetString(ip_octets(a)));
            col(14, Value::Gauge32(len as u32));
        }
        // vipd's rules match no TOS.
        col(15, Value::Gauge32(0));
        if let Some((mark, mask)) = r.fwmark {
            col(16, Value::Gauge32(mark));
            if let Some(mask) = mask {
                col(17, Value::Gauge32(mask));
            }
        }
        if let Some(i) = &r.iif {
            col(20, Value::OctetString(i.clone().into_bytes()));
        }
        if let Some(o) = &r.oif {
            col(21, Value::OctetString(o.clone().into_bytes()));
        }
        col(23, Value::Integer(action));
        if let Some(p) = r.priority.filter(|p| *p != 0) {
            col(25, Value::Gauge32(p));
        }
    }
}

/// INET-ADDRESS-MIB's InetScopeType for a kernel RT_SCOPE_*: global(14), host as
/// interfaceLocal(1), link as linkLocal(2), site as siteLocal(5); nowhere (and any
/// other) 0, as keepalived serves it.
fn inet_scope(scope: u8) -> i32 {
    match scope {
        0 => 14,
        254 => 1,
        253 => 2,
        200 => 5,
        _ => 0,
    }
}

/// KEEPALIVED-MIB's vrrpScriptTable (`.2.9`), vrrpFileTable (`.2.13`), vrrpBfdTable
/// (`.2.18`) and vrrpProcessTable (`.2.21`): the `vrrp_script`s, `track_file`s,
/// `bfd_instance`s and `track_process`es some instance tracks (as keepalived, which
/// runs no other), in configuration order, with their states as `vipd status` has
/// them.
fn definition_tables(m: &mut BTreeMap<Vec<u32>, Value>, snap: &Snapshot) {
    use vipd_linux::track::ParamMatch;
    let text = |t: &str| Value::OctetString(t.as_bytes().to_vec());
    let weight = |w: i64| Value::Integer(w.clamp(-254, 254) as i32);
    let usecs = |d: Duration| Value::Gauge32(d.as_micros().min(u32::MAX as u128) as u32);
    for (k, (s, state)) in snap.track_scripts.iter().enumerate() {
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[2, 9, 1, c, k as u32 + 1]), v);
        };
        col(2, text(&s.name));
        col(3, text(&s.argv.join(" ")));
        col(
            4,
            Value::Integer(s.interval.as_secs().min(i32::MAX as u64) as i32),
        );
        col(5, weight(s.weight));
        // init(1) before its first result (initfailed(5) with init_fail), bad(2),
        // good(3).
        let result = match state.as_str() {
            "good" => 3,
            "bad" => 2,
            _ if s.init_fail => 5,
            _ => 1,
        };
        col(6, Value::Integer(result));
        col(7, Value::Gauge32(s.rise));
        col(8, Value::Gauge32(s.fall));
        col(9, truth(s.reverse));
        let path = match &s.program {
            Some(p) => p.display().to_string(),
            None => s.argv.first().cloned().unwrap_or_default(),
        };
        col(10, text(&path));
        col(11, usecs(s.interval));
        col(12, usecs(s.timeout));
    }
    for (k, (f, state)) in snap.track_files.iter().enumerate() {
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[2, 13, 1, c, k as u32 + 1]), v);
        };
        col(2, text(&f.name));
        col(3, text(&f.path.display().to_string()));
        // The value last read (0 before the first read, as keepalived's).
        let value = state.parse::<i64>().unwrap_or(0);
        col(
            4,
            Value::Integer(value.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
        );
        col(5, weight(f.weight));
        col(6, truth(f.reverse));
    }
    for (k, (b, state)) in snap.track_bfds.iter().enumerate() {
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[2, 18, 1, c, k as u32 + 1]), v);
        };
        col(2, text(&b.name));
        // 1 while the session is Up, else 0.
        col(3, Value::Integer((state == "good") as i32));
        col(4, weight(b.weight));
        col(5, truth(b.reverse));
    }
    for (k, (p, state)) in snap.track_processes.iter().enumerate() {
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[2, 21, 1, c, k as u32 + 1]), v);
        };
        col(2, text(&p.name));
        col(3, text(p.process.first().map_or("", String::as_str)));
        let params = p.process.get(1..).unwrap_or_default();
        col(4, text(&params.join(" ")));
        // The MIB's none(0), exact(1), partial(2), initial(3).
        let matching = match (params.is_empty(), p.param_match) {
            (true, _) => 0,
            (false, ParamMatch::Exact) => 1,
            (false, ParamMatch::Partial) => 2,
            (false, ParamMatch::Initial) => 3,
        };
        col(5, Value::Integer(matching));
        col(6, weight(p.weight));
        col(7, truth(p.reverse));
        col(8, Value::Gauge32(p.quorum));
        if let Some(max) = p.quorum_max {
            col(9, Value::Integer(max.min(i32::MAX as u32) as i32));
        }
        col(10, usecs(p.fork_delay));
        col(11, usecs(p.terminate_delay));
        col(12, truth(p.full_command));
        // vrrpProcessResult: the quorum is met (true(1)) or not; nothing before the
        // first look at the process table.
        match state.as_str() {
            "good" => col(14, truth(true)),
            "bad" => col(14, truth(false)),
            _ => {}
        }
    }
}

/// InetAddressType: 1 ipv4, 2 ipv6.
fn addr_type(a: IpAddr) -> i32 {
    if a.is_ipv6() {
        2
    } else {
        1
    }
}

/// KEEPALIVED-MIB's virtualServerTable (`.3.3`) and realServerTable (`.3.4`), indexed
/// by the virtual server's place in `vipd status` and the real server's in it.
fn checker_tables(m: &mut BTreeMap<Vec<u32>, Value>, snap: &Snapshot) {
    group_tables(m, &snap.vs_groups);
    for (n, vs) in snap.virtual_servers.iter().enumerate() {
        let vi = n as u32 + 1;
        let mut col = |c: u32, v: Value| {
            m.insert(oid(&KEEPALIVED, &[3, 3, 1, c, vi]), v);
        };
        let s = &vs.service;
        col(1, Value::Integer(vi as i32));
        col(2, Value::Integer(s.kind as i32));
        if let Some(g) = &s.group {
            col(3, Value::OctetString(g.clone().into_bytes()));
        }
        if s.kind == 1 {
            col(4, Value::Gauge32(s.fwmark));
        }
        if let Some(a) = s.addr {
            col(5, Value::Integer(addr_type(a)));
            col(6, Value::OctetString(ip_octets(a)));
            col(7, Value::Gauge32(s.port as u32));
        }
        col(8, Value::Integer(s.protocol as i32));
        col(11, truth(vs.active));
        if let Some(n) = &s.snmp_name {
            col(71, Value::OctetString(n.clone().into_bytes()));
        }
        let up = vs.real_servers.iter().filter(|r| r.up).count();
        col(20, Value::Gauge32(vs.real_servers.len() as u32));
        col(21, Value::Gauge32(up as u32));
        col(23, Value::Integer(if vs.quorum_up { 1 } else { 2 }));
        vs_settings_columns(&mut col, &s.settings);
        // virtualServerStats* (27-31, 38-40) and virtualServerRate* (32-36, 41-50,
        // 74-78).
        stats_columns(&mut col, &vs.stats, &VS_STATS_COLUMNS);
        // The sorry server: a row of type sorry(2) after the real servers, alive while
        // it is forwarded to.
        if let Some(sorry) = &s.sorry {
            let ri = vs.real_servers.len() as u32 + 1;
            let mut col = |c: u32, v: Value| {
                m.insert(oid(&KEEPALIVED, &[3, 4, 1, c, vi, ri]), v);
            };
            col(1, Value::Integer(ri as i32));
            col(2, Value::Integer(2));
            col(3, Value::Integer(addr_type(sorry.addr)));
            col(4, Value::OctetString(ip_octets(sorry.addr)));
            col(5, Value::Gauge32(sorry.port as u32));
            col(6, truth(sorry.in_use));
            col(40, Value::Integer(sorry.forward as i32));
        }
        for (k, rs) in vs.real_servers.iter().enumerate() {
            let ri = k as u32 + 1;
            let mut col = |c: u32, v: Value| {
                m.insert(oid(&KEEPALIVED, &[3, 4, 1, c, vi, ri]), v);
            };
            col(1, Value::Integer(ri as i32));
            col(2, Value::Integer(1));
            col(3, Value::Integer(addr_type(rs.addr)));
            col(4, Value::OctetString(ip_octets(rs.addr)));
            col(5, Value::Gauge32(rs.port as u32));
            col(6, truth(rs.up));
            if let Some(n) = &rs.snmp_name {
                col(55, Value::OctetString(n.clone().into_bytes()));
            }
            col(
                7,
                Value::Integer(i32::try_from(rs.weight).unwrap_or(i32::MAX)),
            );
            col(13, Value::Gauge32(rs.failed_checks));
            rs_settings_columns(&mut col, &rs.settings);
            // realServerStats* (14, 18-21, 27-29) and realServerRate* (22-26, 30-39,
            // 58-62).
            stats_columns(&mut col, &rs.stats, &RS_STATS_COLUMNS);
            // realServerStatsActiveConns / InactiveConns / PersistentConns: IPVS counts
            // them; nftables keeps no connections, so they are not served there.
            if vs.backend == "ipvs" {
                let gauge = |n: u64| Value::Gauge32(u32::try_from(n).unwrap_or(u32::MAX));
                col(15, gauge(rs.stats.active_conns));
                col(16, gauge(rs.stats.inactive_conns));
                col(17, gauge(rs.stats.persistent_conns));
            }
        }
    }
}

/// enabled(1) / disabled(2).
fn enabled(b: bool) -> Value {
    Value::Integer(if b { 1 } else { 2 })
}

/// Whole seconds (the MIB's Unsigned32 "seconds" columns) and microseconds (its
/// "micro-seconds" ones), saturated.
fn secs(d: Duration) -> Value {
    Value::Gauge32(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}
fn usecs(d: Duration) -> Value {
    Value::Gauge32(u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
}

/// keepalived's default `delay_loop`.
const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);

/// A command's columns: the command line and its program.
fn script_columns(
    col: &mut impl FnMut(u32, Value),
    line: u32,
    path: u32,
    argv: &Option<Vec<String>>,
) {
    if let Some(argv) = argv {
        col(line, Value::OctetString(argv.join(" ").into_bytes()));
        if let Some(p) = argv.first() {
            col(path, Value::OctetString(p.clone().into_bytes()));
        }
    }
}

/// The timing columns of a virtual or real server: `delay_loop` (its default where
/// silent) and `retry`, `delay_before_retry`, `warmup`, `connect_timeout` where written
/// (their defaults depend on each checker's kind). `at`: DelayLoop, Retry,
/// DelayBeforeRetry, Warmup, DelayLoopUsec, DelayBeforeRetryUsec, WarmupUsec,
/// ConnTimeoutUsec.
fn timing_columns(
    col: &mut impl FnMut(u32, Value),
    t: &vipd_config::model::CheckTiming,
    at: [u32; 8],
) {
    let [dl, retry, dbr, warmup, dl_us, dbr_us, warmup_us, ct_us] = at;
    let delay_loop = t.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
    col(dl, secs(delay_loop));
    col(dl_us, usecs(delay_loop));
    if let Some(r) = t.retry {
        col(retry, Value::Gauge32(r));
    }
    if let Some(d) = t.delay_before_retry {
        col(dbr, secs(d));
        col(dbr_us, usecs(d));
    }
    if let Some(d) = t.warmup {
        col(warmup, secs(d));
        col(warmup_us, usecs(d));
    }
    if let Some(d) = t.connect_timeout {
        col(ct_us, usecs(d));
    }
}

/// virtualServerEntry's configuration columns.
fn vs_settings_columns(col: &mut impl FnMut(u32, Value), v: &VsSettings) {
    if v.sched != 0 {
        col(9, Value::Integer(v.sched as i32));
    }
    if v.forward != 0 {
        col(10, Value::Integer(v.forward as i32));
    }
    if let Some(h) = &v.virtualhost {
        col(12, Value::OctetString(h.clone().into_bytes()));
    }
    col(13, enabled(v.persistence.is_some()));
    if let Some((timeout, prefix)) = v.persistence {
        col(14, Value::Gauge32(timeout));
        if v.ipv6 {
            col(51, Value::Gauge32(prefix as u32));
        } else {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            col(15, Value::OctetString(mask.to_be_bytes().to_vec()));
        }
    }
    timing_columns(col, &v.timing, [16, 57, 58, 59, 64, 65, 66, 67]);
    col(17, truth(v.ha_suspend));
    col(18, enabled(v.alpha));
    col(19, enabled(v.omega));
    col(22, Value::Gauge32(v.quorum));
    script_columns(col, 24, 72, &v.quorum_up);
    script_columns(col, 25, 73, &v.quorum_down);
    col(26, Value::Gauge32(v.hysteresis));
    col(37, truth(v.ops));
    // virtualServerSHFallback / SHPort (sh, 8), MHFallback / MHPort (mh, 13), Sched3.
    col(53, truth(v.fallback && v.sched == 8));
    col(54, truth(v.port && v.sched == 8));
    col(62, truth(v.fallback && v.sched == 13));
    col(63, truth(v.port && v.sched == 13));
    col(55, truth(v.sched3));
    col(56, Value::Integer(if v.inhibit { 2 } else { 1 }));
    col(61, enabled(v.smtp_alert));
    // virtualServerTunnelType: vipd's tunnels are IP-in-IP.
    if v.forward == 3 {
        col(68, Value::Integer(1));
    }
}

/// realServerEntry's configuration columns.
fn rs_settings_columns(col: &mut impl FnMut(u32, Value), r: &RsSettings) {
    col(8, Value::Gauge32(r.upper_threshold));
    col(9, Value::Gauge32(r.lower_threshold));
    col(10, Value::Integer(if r.inhibit { 2 } else { 1 }));
    script_columns(col, 11, 56, &r.notify_up);
    script_columns(col, 12, 57, &r.notify_down);
    if r.forward != 0 {
        col(40, Value::Integer(r.forward as i32));
    }
    if let Some(h) = &r.virtualhost {
        col(41, Value::OctetString(h.clone().into_bytes()));
    }
    col(42, enabled(r.alpha));
    timing_columns(col, &r.timing, [46, 43, 44, 45, 50, 48, 49, 51]);
    col(47, enabled(r.smtp_alert));
    if r.forward == 3 {
        col(52, Value::Integer(1));
    }
}

/// KEEPALIVED-MIB's virtualServerGroupTable (`.3.1`) and virtualServerGroupMemberTable
/// (`.3.2`): each `virtual_server_group` and its entries as written.
fn group_tables(
    m: &mut BTreeMap<Vec<u32>, Value>,
    groups: &[vipd_config::model::VirtualServerGroup],
) {
    use vipd_config::model::VsgEntry;
    for (g, group) in groups.iter().enumerate() {
        let gi = g as u32 + 1;
        m.insert(
            oid(&KEEPALIVED, &[3, 1, 1, 1, gi]),
            Value::Integer(gi as i32),
        );
        m.insert(
            oid(&KEEPALIVED, &[3, 1, 1, 2, gi]),
            Value::OctetString(group.name.clone().into_bytes()),
        );
        for (k, e) in group.entries.iter().enumerate() {
            let mi = k as u32 + 1;
            let mut col = |c: u32, v: Value| {
                m.insert(oid(&KEEPALIVED, &[3, 2, 1, c, gi, mi]), v);
            };
            col(1, Value::Integer(mi as i32));
            match e {
                VsgEntry::Fwmark { mark, .. } => {
                    col(2, Value::Integer(1));
                    col(3, Value::Gauge32(*mark));
                }
                VsgEntry::Range { first, last, port } => {
                    col(4, Value::Integer(addr_type(*first)));
                    match last.map(|l| range_end(*first, l)) {
                        Some(end) if end != *first => {
                            col(2, Value::Integer(3));
                            col(6, Value::OctetString(ip_octets(*first)));
                            col(7, Value::OctetString(ip_octets(end)));
                        }
                        _ => {
                            col(2, Value::Integer(2));
                            col(5, Value::OctetString(ip_octets(*first)));
                        }
                    }
                    col(8, Value::Gauge32(port.unwrap_or(0) as u32));
                }
            }
        }
    }
}

/// The last address of a `virtual_server_group` range: `first` with its last octet
/// (IPv4) or hextet (IPv6) replaced by `last`.
fn range_end(first: IpAddr, last: u16) -> IpAddr {
    match first {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            o[3] = last as u8;
            IpAddr::from(o)
        }
        IpAddr::V6(a) => {
            let mut s = a.segments();
            s[7] = last;
            IpAddr::from(s)
        }
    }
}

/// Where the statistics go in virtualServerEntry / realServerEntry.
struct StatsColumns {
    /// StatsConns (Gauge32), StatsInPkts, StatsOutPkts (Counter32), StatsInBytes,
    /// StatsOutBytes (Counter64).
    totals32: [u32; 5],
    /// RateCps, RateInPPS, RateOutPPS, RateInBPS, RateOutBPS (Gauge32).
    rates32: u32,
    /// StatsConns64, StatsInPkts64, StatsOutPkts64 (Counter64).
    totals64: u32,
    /// Rate*Low / Rate*High pairs (Unsigned32), in the order of `rates32`.
    rates_low_high: u32,
    /// Rate*64 (Counter64).
    rates64: u32,
}

const VS_STATS_COLUMNS: StatsColumns = StatsColumns {
    totals32: [27, 28, 29, 30, 31],
    rates32: 32,
    totals64: 38,
    rates_low_high: 41,
    rates64: 74,
};

const RS_STATS_COLUMNS: StatsColumns = StatsColumns {
    totals32: [14, 18, 19, 20, 21],
    rates32: 22,
    totals64: 27,
    rates_low_high: 30,
    rates64: 58,
};

/// KEEPALIVED-MIB's statistics columns of a virtual or real server: 32-bit ones wrap (the
/// counters) or saturate (the gauges), as keepalived's do.
fn stats_columns(col: &mut impl FnMut(u32, Value), s: &TrafficStats, at: &StatsColumns) {
    let gauge = |n: u64| Value::Gauge32(u32::try_from(n).unwrap_or(u32::MAX));
    let [conns, inpkts, outpkts, inbytes, outbytes] = at.totals32;
    col(conns, gauge(s.conns));
    col(inpkts, Value::Counter32(s.in_packets as u32));
    col(outpkts, Value::Counter32(s.out_packets as u32));
    col(inbytes, Value::Counter64(s.in_bytes));
    col(outbytes, Value::Counter64(s.out_bytes));
    let rates = [s.cps, s.in_pps, s.out_pps, s.in_bps, s.out_bps];
    for (k, r) in rates.iter().enumerate() {
        let k = k as u32;
        col(at.rates32 + k, gauge(*r));
        col(at.rates_low_high + 2 * k, Value::Gauge32(*r as u32));
        col(
            at.rates_low_high + 2 * k + 1,
            Value::Gauge32((*r >> 32) as u32),
        );
        col(at.rates64 + k, Value::Counter64(*r));
    }
    col(at.totals64, Value::Counter64(s.conns));
    col(at.totals64 + 1, Value::Counter64(s.in_packets));
    col(at.totals64 + 2, Value::Counter64(s.out_packets));
}

/// The real servers' health and the virtual servers' quorum, to notice changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckerStates {
    /// (virtual server, address, port) → up.
    rs: BTreeMap<(String, IpAddr, u16), bool>,
    /// virtual server → quorum met.
    quorum: BTreeMap<String, bool>,
}

pub fn checker_states(snap: &Snapshot) -> CheckerStates {
    CheckerStates {
        rs: snap
            .virtual_servers
            .iter()
            .flat_map(|vs| {
                vs.real_servers
                    .iter()
                    .map(move |r| ((vs.name.clone(), r.addr, r.port), r.up))
            })
            .collect(),
        quorum: snap
            .virtual_servers
            .iter()
            .map(|vs| (vs.name.clone(), vs.quorum_up))
            .collect(),
    }
}

/// The varbinds keepalived adds to its checker notifications by virtualServerType:
/// virtualServerNameOfGroup, virtualServerFwMark, or virtualServerAddrType / Address /
/// Port.
fn vs_identity(s: &vipd_linux::status::VsService) -> Vec<VarBind> {
    let vb = |r: &[u32], value: Value| VarBind {
        name: oid(&KEEPALIVED, r),
        value,
    };
    match (s.kind, &s.group, s.addr) {
        (3, Some(g), _) => vec![vb(
            &[3, 3, 1, 3],
            Value::OctetString(g.clone().into_bytes()),
        )],
        (1, _, _) => vec![vb(&[3, 3, 1, 4], Value::Gauge32(s.fwmark))],
        (2, _, Some(a)) => vec![
            vb(&[3, 3, 1, 5], Value::Integer(addr_type(a))),
            vb(&[3, 3, 1, 6], Value::OctetString(ip_octets(a))),
            vb(&[3, 3, 1, 7], Value::Gauge32(s.port as u32)),
        ],
        _ => Vec::new(),
    }
}

/// keepalived's `realServerStateChange` for each real server whose health differs from
/// `before`, and `virtualServerQuorumStateChange` for each virtual server whose quorum
/// does (none for servers new or gone).
pub fn checker_notifications(
    settings: &Settings,
    before: &CheckerStates,
    snap: &Snapshot,
) -> Vec<Vec<VarBind>> {
    let mut out = Vec::new();
    if !(settings.traps && settings.checker) {
        return out;
    }
    for vs in &snap.virtual_servers {
        let up = vs.real_servers.iter().filter(|r| r.up).count() as u32;
        let kind = Value::Integer(vs.service.kind as i32);
        let protocol = Value::Integer(vs.service.protocol as i32);
        let (up, total) = (
            Value::Gauge32(up),
            Value::Gauge32(vs.real_servers.len() as u32),
        );
        // keepalived names the objects without their indexes; routerId ends the MIB's
        // list, the virtual server's identity follows.
        let notify = |trap: u32, objects: Vec<(&[u32], Value)>| {
            let mut vbs = vec![VarBind {
                name: SNMP_TRAP_OID.to_vec(),
                value: Value::Oid(oid(&KEEPALIVED, &[3, 5, 0, trap])),
            }];
            vbs.extend(objects.into_iter().map(|(r, value)| VarBind {
                name: oid(&KEEPALIVED, r),
                value,
            }));
            vbs.push(VarBind {
                name: oid(&KEEPALIVED, &[1, 2, 0]),
                value: Value::OctetString(settings.router_id.clone().into_bytes()),
            });
            vbs.extend(vs_identity(&vs.service));
            vbs
        };
        for rs in &vs.real_servers {
            let key = (vs.name.clone(), rs.addr, rs.port);
            if before.rs.get(&key).is_none_or(|b| *b == rs.up) {
                continue;
            }
            let a = rs.addr;
            out.push(notify(
                1,
                vec![
                    (&[3, 4, 1, 3], Value::Integer(addr_type(a))),
                    (&[3, 4, 1, 4], Value::OctetString(ip_octets(a))),
                    (&[3, 4, 1, 5], Value::Gauge32(rs.port as u32)),
                    (&[3, 4, 1, 6], truth(rs.up)),
                    (&[3, 3, 1, 2], kind.clone()),
                    (&[3, 3, 1, 8], protocol.clone()),
                    (&[3, 3, 1, 21], up.clone()),
                    (&[3, 3, 1, 20], total.clone()),
                ],
            ));
        }
        if before
            .quorum
            .get(&vs.name)
            .is_some_and(|b| *b != vs.quorum_up)
        {
            out.push(notify(
                2,
                vec![
                    (&[3, 3, 1, 2], kind.clone()),
                    (&[3, 3, 1, 8], protocol.clone()),
                    (
                        &[3, 3, 1, 23],
                        Value::Integer(if vs.quorum_up { 1 } else { 2 }),
                    ),
                    (&[3, 3, 1, 22], Value::Gauge32(vs.service.settings.quorum)),
                    (&[3, 3, 1, 21], up.clone()),
                    (&[3, 3, 1, 20], total.clone()),
                ],
            ));
        }
    }
    out
}

/// The notifications keepalived sends for a transition (each a Notify's VarBinds after
/// `snmpTrapOID.0`), for the MIBs enabled.
pub fn notifications(settings: &Settings, snap: &Snapshot, ev: &Event) -> Vec<Vec<VarBind>> {
    let mut out = Vec::new();
    if !settings.traps {
        return out;
    }
    if ev.sync_group {
        // vrrpSyncGroupStateChange, its objects named without an index as keepalived does.
        if settings.keepalived {
            out.push(vec![
                VarBind {
                    name: SNMP_TRAP_OID.to_vec(),
                    value: Value::Oid(oid(&KEEPALIVED, &[2, 10, 0, 1])),
                },
                VarBind {
                    name: oid(&KEEPALIVED, &[2, 1, 1, 2]),
                    value: Value::OctetString(ev.instance.clone().into_bytes()),
                },
                VarBind {
                    name: oid(&KEEPALIVED, &[2, 1, 1, 3]),
                    value: Value::Integer(ev.keepalived_state),
                },
                VarBind {
                    name: oid(&KEEPALIVED, &[1, 2, 0]),
                    value: Value::OctetString(settings.router_id.clone().into_bytes()),
                },
            ]);
        }
        return out;
    }
    // An instance a reload has just added may not be in the snapshot yet (published
    // every 100 ms): no notification for it then.
    let Some(i) = snap.instances.iter().find(|i| i.name == ev.instance) else {
        debug!(
            "SNMP: {} not in the status yet: no notification",
            ev.instance
        );
        return out;
    };
    let trap = |id: Vec<u32>| VarBind {
        name: SNMP_TRAP_OID.to_vec(),
        value: Value::Oid(id),
    };
    if settings.keepalived {
        let state = ev.keepalived_state;
        // vrrpInstanceStateChange; keepalived names the objects without an index.
        out.push(vec![
            trap(oid(&KEEPALIVED, &[2, 10, 0, 2])),
            VarBind {
                name: oid(&KEEPALIVED, &[2, 3, 1, 2]),
                value: Value::OctetString(i.name.clone().into_bytes()),
            },
            VarBind {
                name: oid(&KEEPALIVED, &[2, 3, 1, 4]),
                value: Value::Integer(state),
            },
            VarBind {
                name: oid(&KEEPALIVED, &[2, 3, 1, 5]),
                value: Value::Integer(if i.detail.initial_master { 2 } else { 1 }),
            },
            VarBind {
                name: oid(&KEEPALIVED, &[1, 2, 0]),
                value: Value::OctetString(settings.router_id.clone().into_bytes()),
            },
        ]);
    }
    if ev.to != State::Master {
        return out;
    }
    let primary = i.detail.primary;
    if settings.rfcv2 && in_rfcv2(i) {
        if let Some(IpAddr::V4(a)) = primary {
            out.push(vec![
                trap(oid(&VRRP_MIB, &[0, 1])),
                VarBind {
                    name: oid(&VRRP_MIB, &[1, 3, 1, 7, i.detail.ifindex, i.vrid as u32]),
                    value: Value::IpAddress(a.octets()),
                },
            ]);
        }
    }
    if settings.rfcv3 && i.version == 3 {
        let idx = [
            i.detail.ifindex,
            i.vrid as u32,
            if i.detail.ipv6 { 2 } else { 1 },
        ];
        let mut master = oid(&VRRPV3_MIB, &[1, 1, 1, 1, 3]);
        master.extend(idx);
        let mut reason = oid(&VRRPV3_MIB, &[1, 2, 5, 1, 2]);
        reason.extend(idx);
        if let Some(p) = primary {
            out.push(vec![
                trap(oid(&VRRPV3_MIB, &[0, 1])),
                VarBind {
                    name: master,
                    value: Value::OctetString(ip_octets(p)),
                },
                VarBind {
                    name: reason,
                    value: Value::Integer(ev.master_reason),
                },
            ]);
        }
    }
    out
}

/// Sends transitions to the SNMP thread (nothing once it has ended).
#[derive(Clone)]
pub struct Sender(mpsc::Sender<Option<Event>>);

impl Sender {
    pub fn send(&self, ev: Event) {
        let _ = self.0.send(Some(ev));
    }
}

/// Made before the runtime starts so that no transition is missed.
pub fn channel() -> (Sender, mpsc::Receiver<Option<Event>>) {
    let (tx, rx) = mpsc::channel();
    (Sender(tx), rx)
}

/// The subagent's thread, from [`start`].
pub struct Snmp {
    tx: mpsc::Sender<Option<Event>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Snmp {
    /// Closes the session (reason shutdown) and ends the thread (waits at most a second).
    pub fn stop(mut self) {
        let _ = self.tx.send(None);
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

pub fn start(
    settings: Settings,
    status: Arc<Mutex<Snapshot>>,
    sender: &Sender,
    rx: mpsc::Receiver<Option<Event>>,
) -> std::io::Result<Snmp> {
    let thread = std::thread::Builder::new()
        .name("vipd-snmp".into())
        .spawn(move || run(settings, status, rx))?;
    Ok(Snmp {
        tx: sender.0.clone(),
        thread: Some(thread),
    })
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connect(a: &Address) -> std::io::Result<Box<dyn Stream>> {
    let timeout = Some(Duration::from_millis(100));
    Ok(match a {
        Address::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(Some(Duration::from_secs(2)))?;
            Box::new(s)
        }
        Address::Tcp(hp) => {
            let s = std::net::TcpStream::connect(hp.as_str())?;
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(Some(Duration::from_secs(2)))?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
    })
}

fn lock(status: &Mutex<Snapshot>) -> std::sync::MutexGuard<'_, Snapshot> {
    match status.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    }
}

/// Why a session ended.
enum End {
    Stop,
    Lost(String),
}

fn run(settings: Settings, status: Arc<Mutex<Snapshot>>, rx: mpsc::Receiver<Option<Event>>) {
    let mut backoff = Duration::from_secs(1);
    let mut warned = false;
    loop {
        match connect(&settings.address) {
            Ok(stream) => {
                let mut s = Session {
                    stream,
                    buf: Vec::new(),
                    session: 0,
                    packet: 0,
                    clock: None,
                };
                match s.serve(&settings, &status, &rx) {
                    End::Stop => return,
                    End::Lost(why) => {
                        warn!(
                            "SNMP: AgentX session with {:?} ended: {why}; reconnecting",
                            settings.address
                        );
                        backoff = Duration::from_secs(1);
                        warned = false;
                    }
                }
            }
            Err(e) => {
                if !warned {
                    warn!(
                        "SNMP: cannot reach the AgentX master at {:?} (snmp_socket): {e}; retrying",
                        settings.address
                    );
                    warned = true;
                } else {
                    debug!("SNMP: AgentX master at {:?}: {e}", settings.address);
                }
            }
        }
        // Wait, dropping the transitions meanwhile (no master to send them to).
        let until = Instant::now() + backoff;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(Some(ev)) => debug!(
                    "SNMP: no AgentX master: no notification for {}",
                    ev.instance
                ),
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

struct Session {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    session: u32,
    packet: u32,
    /// The master's sysUpTime from its last Response.
    clock: Option<MasterClock>,
}

impl Session {
    fn send(&mut self, body: Body) -> std::io::Result<u32> {
        self.packet = self.packet.wrapping_add(1);
        let pdu = Pdu {
            header: Header {
                session: self.session,
                packet: self.packet,
                ..Default::default()
            },
            context: None,
            body,
        };
        self.stream.write_all(&pdu.encode())?;
        Ok(self.packet)
    }

    /// The next whole PDU, or `None` after a read timeout.
    fn read(&mut self) -> Result<Option<Pdu>, String> {
        loop {
            if self.buf.len() >= agentx::HEADER {
                let len = agentx::header_len(&self.buf).map_err(|e| e.to_string())?;
                if len > 1 << 20 {
                    return Err(format!("PDU of {len} bytes"));
                }
                if self.buf.len() >= len {
                    let rest = self.buf.split_off(len);
                    let pdu = std::mem::replace(&mut self.buf, rest);
                    let pdu = Pdu::decode(&pdu).map_err(|e| e.to_string())?;
                    if let Body::Response { uptime, .. } = pdu.body {
                        self.clock = Some(MasterClock {
                            uptime,
                            at: Instant::now(),
                        });
                    }
                    return Ok(Some(pdu));
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the master closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Waits (at most 5 s) for the Response to our packet `id`, answering requests meanwhile.
    fn response(&mut self, id: u32) -> Result<(u32, u16), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(p) = self.read()? {
                if let Body::Response { error, .. } = p.body {
                    if p.header.packet == id {
                        return Ok((p.header.session, error));
                    }
                }
            }
        }
        Err("no Response from the master within 5 s".into())
    }

    fn serve(
        &mut self,
        settings: &Settings,
        status: &Mutex<Snapshot>,
        rx: &mpsc::Receiver<Option<Event>>,
    ) -> End {
        match self.open(settings) {
            Ok(()) => {}
            Err(e) => return End::Lost(e),
        }
        let mut cache: Option<(Instant, Mib)> = None;
        // A Ping every PING_EVERY: a master that hangs (or, over TCP, a host gone
        // without a reset) ends the session too.
        let mut last_ping = Instant::now();
        let mut ping: Option<(u32, Instant)> = None;
        // Real server health as last seen (changes found on each turn, every 100 ms).
        let watch_rs = settings.traps && settings.checker;
        let mut rs_before = if watch_rs {
            checker_states(&lock(status))
        } else {
            CheckerStates::default()
        };
        loop {
            if watch_rs {
                let (traps, now) = {
                    let snap = lock(status);
                    (
                        checker_notifications(settings, &rs_before, &snap),
                        checker_states(&snap),
                    )
                };
                rs_before = now;
                for vbs in traps {
                    if let Err(e) = self.send(Body::Notify(vbs)) {
                        return End::Lost(e.to_string());
                    }
                }
            }
            if let Some((_, sent)) = ping {
                if sent.elapsed() > Duration::from_secs(TIMEOUT_SECS as u64) {
                    return End::Lost("no answer to a Ping".into());
                }
            } else if last_ping.elapsed() >= PING_EVERY {
                last_ping = Instant::now();
                match self.send(Body::Ping) {
                    Ok(id) => ping = Some((id, Instant::now())),
                    Err(e) => return End::Lost(e.to_string()),
                }
            }
            // Transitions first: their notifications carry the state they report.
            loop {
                match rx.try_recv() {
                    Ok(Some(ev)) => {
                        let traps = notifications(settings, &lock(status), &ev);
                        for vbs in traps {
                            debug!("SNMP: notification for {}", ev.instance);
                            if let Err(e) = self.send(Body::Notify(vbs)) {
                                return End::Lost(e.to_string());
                            }
                        }
                    }
                    Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                        let _ = self.send(Body::Close {
                            reason: agentx::reason::SHUTDOWN,
                        });
                        return End::Stop;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            let pdu = match self.read() {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => return End::Lost(e),
            };
            let (error, varbinds) = match &pdu.body {
                Body::Get(_) | Body::GetNext(_) | Body::GetBulk { .. } => {
                    // One view for a walk's burst of requests: rebuilt after 100 ms (the
                    // status snapshot's own period).
                    let fresh = cache
                        .as_ref()
                        .is_some_and(|(at, _)| at.elapsed() < Duration::from_millis(100));
                    if !fresh {
                        cache = Some((
                            Instant::now(),
                            Mib::build(settings, &lock(status), self.clock),
                        ));
                    }
                    let mib = &cache.as_ref().map(|(_, m)| m);
                    match (pdu.context.is_some(), mib) {
                        (false, Some(m)) => (
                            agentx::error::NONE,
                            agentx::answer(*m, &pdu.body).unwrap_or_default(),
                        ),
                        _ => (agentx::error::GEN_ERR, Vec::new()),
                    }
                }
                Body::Close { reason } => {
                    return End::Lost(format!("the master closed the session (reason {reason})"))
                }
                Body::Response { error, .. } => {
                    if ping.is_some_and(|(id, _)| id == pdu.header.packet) {
                        if *error != agentx::error::NONE {
                            return End::Lost(format!(
                                "the master answered a Ping with error {error}"
                            ));
                        }
                        ping = None;
                    }
                    continue;
                }
                // CleanupSet has no Response.
                Body::Other if pdu.header.ty == agentx::ty::CLEANUP_SET => continue,
                Body::Other
                    if matches!(
                        pdu.header.ty,
                        agentx::ty::TEST_SET | agentx::ty::COMMIT_SET | agentx::ty::UNDO_SET
                    ) =>
                {
                    (agentx::error::NOT_WRITABLE, Vec::new())
                }
                _ => (agentx::error::PROCESSING_ERROR, Vec::new()),
            };
            let reply = Pdu {
                header: Header {
                    ty: agentx::ty::RESPONSE,
                    flags: 0,
                    ..pdu.header
                },
                context: None,
                body: Body::Response {
                    uptime: 0,
                    error,
                    index: 0,
                    varbinds,
                },
            };
            if let Err(e) = self.stream.write_all(&reply.encode()) {
                return End::Lost(e.to_string());
            }
        }
    }

    /// Open, then a Register for each enabled MIB's subtree.
    fn open(&mut self, settings: &Settings) -> Result<(), String> {
        let id = self
            .send(Body::Open {
                timeout: TIMEOUT_SECS,
                id: KEEPALIVED.to_vec(),
                descr: b"vipd (keepalived compatible VRRP)".to_vec(),
            })
            .map_err(|e| e.to_string())?;
        let (session, error) = self.response(id)?;
        if error != agentx::error::NONE {
            return Err(format!("the master refused the Open (error {error})"));
        }
        self.session = session;
        for subtree in settings.subtrees() {
            let id = self
                .send(Body::Register {
                    timeout: 0,
                    priority: 127,
                    subtree: subtree.clone(),
                })
                .map_err(|e| e.to_string())?;
            let (_, error) = self.response(id)?;
            let name = subtree
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(".");
            if error == agentx::error::NONE {
                info!("SNMP: registered {name} with the AgentX master");
            } else {
                warn!("SNMP: the AgentX master refused {name} (error {error}); not served");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agentx::View;

    fn instance(name: &str, version: u8, state: &str) -> InstanceStatus {
        let mut i = InstanceStatus {
            name: name.into(),
            interface: "eth0".into(),
            vrid: 51,
            version,
            state: state.into(),
            priority: 150,
            effective_priority: 140,
            advert_interval_ms: 1000.0,
            master: Some("192.0.2.2".into()),
            vips: vec!["192.0.2.10/24".into(), "192.0.2.11/24".into()],
            last_transition: None,
            adverts_sent: 0,
            adverts_received: 0,
            priority_zero_sent: 0,
            priority_zero_received: 0,
            became_master: 0,
            transitions: 0,
            announcements_sent: 0,
            drops: vec![],
            io_fault: None,
            peer_takeovers: 0,
            peer_downs_ignored: 0,
            send_faults: 0,
            detail: Default::default(),
        };
        i.detail.ifindex = 7;
        i.detail.addresses = ["192.0.2.10", "192.0.2.11"]
            .map(|a| AddressSpec {
                ifindex: 1_000_007,
                addr: a.parse().unwrap(),
                prefix_len: 24,
                brd: None,
                scope: 0,
                label: None,
                opts: Default::default(),
            })
            .to_vec();
        i.detail.advertised = 2;
        i.detail.primary = Some("192.0.2.1".parse().unwrap());
        i.detail.accept = true;
        i
    }

    fn settings() -> Settings {
        Settings {
            keepalived: true,
            checker: true,
            rfcv2: true,
            rfcv3: true,
            traps: true,
            address: Address::Unix("/x".into()),
            router_id: "r1".into(),
            globals: Vec::new(),
            lvs: Vec::new(),
            lvs_sync: Some(("VI_3".into(), "eth9".into())),
        }
    }

    #[test]
    fn tables_as_the_mibs_define_them() {
        let mut snap = Snapshot::default();
        snap.instances.push(instance("VI_2", 2, "BACKUP"));
        let mut v3 = instance("VI_3", 3, "MASTER");
        v3.vrid = 52;
        v3.detail.mcast_group = Some("224.0.0.18".parse().unwrap());
        v3.detail.garp_master_delay = Duration::from_secs(5);
        v3.detail.promote_secondaries = true;
        v3.detail.notify = std::sync::Arc::new(vipd_linux::plan::NotifyPlan {
            backup: Some(vipd_exec::scripts::Script::new(
                "/usr/local/bin/to-backup VI_3",
            )),
            ..Default::default()
        });
        snap.instances.push(v3);
        let mib = Mib::build(&settings(), &snap, None);
        let k = |r: &[u32]| mib.get(&oid(&KEEPALIVED, r));
        let octets = |t: &str| Some(Value::OctetString(ip_octets(t.parse().unwrap())));
        assert_eq!(k(&[1, 2, 0]), Some(Value::OctetString(b"r1".to_vec())));
        assert_eq!(
            k(&[2, 3, 1, 2, 2]),
            Some(Value::OctetString(b"VI_3".to_vec()))
        );
        assert_eq!(k(&[2, 3, 1, 4, 1]), Some(Value::Integer(1)));
        assert_eq!(k(&[2, 3, 1, 4, 2]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 3, 1, 8, 1]), Some(Value::Integer(140)));
        // Multicast (the helper's default: no group known) and the flags.
        assert_eq!(k(&[2, 3, 1, 34, 1]), None);
        assert_eq!(k(&[2, 3, 1, 35, 2]), octets("224.0.0.18"));
        assert_eq!(k(&[2, 3, 1, 34, 2]), Some(Value::Integer(1)));
        assert_eq!(k(&[2, 3, 1, 19, 2]), Some(Value::Gauge32(5)));
        assert_eq!(k(&[2, 3, 1, 28, 2]), Some(Value::Integer(1)));
        assert_eq!(k(&[2, 3, 1, 29, 2]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 3, 1, 21, 2]), Some(Value::Integer(1)));
        assert_eq!(
            k(&[2, 3, 1, 23, 2]),
            Some(Value::OctetString(
                b"/usr/local/bin/to-backup VI_3".to_vec()
            ))
        );
        assert_eq!(k(&[2, 3, 1, 22, 2]), None, "no notify_master");
        assert_eq!(k(&[2, 3, 1, 21, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 3, 1, 20, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 3, 1, 33, 1]), Some(Value::Integer(2)));
        // lvs_sync_daemon eth9 VI_3; no tracked interface in this snapshot.
        assert_eq!(k(&[2, 3, 1, 16, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 3, 1, 17, 1]), None);
        assert_eq!(k(&[2, 3, 1, 16, 2]), Some(Value::Integer(1)));
        assert_eq!(
            k(&[2, 3, 1, 17, 2]),
            Some(Value::OctetString(b"eth9".to_vec()))
        );
        assert_eq!(k(&[2, 3, 1, 11, 2]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 3, 1, 36, 2]), Some(Value::Integer(2)));
        // v2: seconds; v3: centiseconds.
        assert_eq!(k(&[2, 3, 1, 12, 1]), Some(Value::Gauge32(1)));
        assert_eq!(k(&[2, 3, 1, 12, 2]), Some(Value::Gauge32(100)));
        // RFC 2787: the v2 instance only, indexed by ifIndex and VRID.
        let v2 = |r: &[u32]| mib.get(&oid(&VRRP_MIB, r));
        assert_eq!(v2(&[1, 3, 1, 3, 7, 51]), Some(Value::Integer(2)));
        assert_eq!(
            v2(&[1, 3, 1, 7, 7, 51]),
            Some(Value::IpAddress([192, 0, 2, 2]))
        );
        assert_eq!(v2(&[1, 3, 1, 6, 7, 51]), Some(Value::Integer(2)));
        assert_eq!(v2(&[1, 3, 1, 3, 7, 52]), None);
        assert_eq!(
            v2(&[1, 4, 1, 2, 7, 51, 192, 0, 2, 11]),
            Some(Value::Integer(1))
        );
        // RFC 6527: the v3 instance, MASTER: its own address is the master's.
        let v3 = |r: &[u32]| mib.get(&oid(&VRRPV3_MIB, r));
        assert_eq!(v3(&[1, 1, 1, 1, 6, 7, 52, 1]), Some(Value::Integer(3)));
        assert_eq!(
            v3(&[1, 1, 1, 1, 3, 7, 52, 1]),
            Some(Value::OctetString(vec![192, 0, 2, 1]))
        );
        assert_eq!(
            v3(&[1, 1, 1, 1, 5, 7, 52, 1]),
            Some(Value::OctetString(vec![0, 0, 0x5e, 0, 1, 52]))
        );
        assert_eq!(v3(&[1, 1, 1, 1, 6, 7, 51, 1]), None);
        // A walk of RFC 6527 starts at its first column.
        let (first, _) = mib.next(&VRRPV3_MIB, false).unwrap();
        assert_eq!(first, oid(&VRRPV3_MIB, &[1, 1, 1, 1, 3, 7, 52, 1]));
    }

    #[test]
    fn statistics_from_the_instance_counters() {
        let mut snap = Snapshot::default();
        let mut v2 = instance("VI_2", 2, "MASTER");
        v2.became_master = 3;
        v2.adverts_received = 40;
        v2.priority_zero_sent = 2;
        v2.drops = vec![
            ("bad_checksum".into(), 5),
            ("bad_ttl".into(), 1),
            ("peer_ttl".into(), 2),
            ("auth_mismatch".into(), 4),
            ("auth_missing".into(), 1),
            ("truncated".into(), 6),
        ];
        let up = Instant::now() - Duration::from_secs(30);
        v2.detail.up_since = Some(up);
        let mut v3 = instance("VI_3", 3, "BACKUP");
        v3.vrid = 52;
        v3.adverts_received = 7;
        v3.became_master = 1;
        v3.drops = vec![("bad_checksum".into(), 2), ("version_mismatch".into(), 1)];
        v3.detail.protocol_error = Some(vipd_vrrp::wire::DropReason::BadChecksum);
        v3.detail.master_reason = Some(TransitionReason::MasterDown {
            last_master: None,
            released: true,
        });
        v3.detail.up_since = Some(Instant::now() - Duration::from_secs(12));
        snap.instances = vec![v2, v3];
        snap.socket_drops = vec![("unknown_vrid".into(), 9), ("bad_checksum".into(), 1)];
        // The master said sysUpTime 100 s, 10 s ago: VI_2 left initialize at 80 s.
        let clock = MasterClock {
            uptime: 10_000,
            at: Instant::now() - Duration::from_secs(10),
        };
        let mib = Mib::build(&settings(), &snap, Some(clock));
        let v2 = |r: &[u32]| mib.get(&oid(&VRRP_MIB, r));
        let stat = |c: u32| v2(&[2, 4, 1, c, 7, 51]);
        assert_eq!(stat(1), Some(Value::Counter32(3)));
        assert_eq!(stat(2), Some(Value::Counter32(40)));
        assert_eq!(stat(4), Some(Value::Counter32(5)), "auth failures");
        assert_eq!(stat(5), Some(Value::Counter32(3)), "TTL errors");
        assert_eq!(stat(7), Some(Value::Counter32(2)));
        assert_eq!(stat(12), Some(Value::Counter32(6)));
        assert_eq!(stat(10), None, "no invalid auth type counter");
        // Router-wide: the v2 instance's and the sockets' drops.
        assert_eq!(v2(&[2, 1, 0]), Some(Value::Counter32(6)));
        assert_eq!(v2(&[2, 2, 0]), Some(Value::Counter32(0)));
        assert_eq!(v2(&[2, 3, 0]), Some(Value::Counter32(9)));
        let Some(Value::TimeTicks(at)) = v2(&[1, 3, 1, 13, 7, 51]) else {
            panic!("no vrrpOperVirtualRouterUpTime");
        };
        assert!((7_990..=8_010).contains(&at), "{at}");
        // RFC 6527.
        let v3 = |r: &[u32]| mib.get(&oid(&VRRPV3_MIB, r));
        let stat = |c: u32| v3(&[1, 2, 5, 1, c, 7, 52, 1]);
        assert_eq!(stat(1), Some(Value::Counter32(1)));
        assert_eq!(
            stat(2),
            Some(Value::Integer(1)),
            "priority: master released"
        );
        assert_eq!(stat(3), Some(Value::Counter64(7)));
        assert_eq!(stat(6), Some(Value::Integer(3)), "checksumError");
        assert_eq!(v3(&[1, 2, 1, 0]), Some(Value::Counter64(3)));
        assert_eq!(v3(&[1, 2, 2, 0]), Some(Value::Counter64(1)));
        assert_eq!(v3(&[1, 2, 3, 0]), Some(Value::Counter64(9)));
        let Some(Value::TimeTicks(up)) = v3(&[1, 1, 1, 1, 12, 7, 52, 1]) else {
            panic!("no vrrpv3OperationsUpTime");
        };
        assert!((1_200..=1_210).contains(&up), "{up}");
        // Before the master started, and without a clock.
        assert_eq!(clock.timestamp(clock.at - Duration::from_secs(200)), 0);
        let mib = Mib::build(&settings(), &snap, None);
        assert_eq!(mib.get(&oid(&VRRP_MIB, &[1, 3, 1, 13, 7, 51])), None);
    }

    #[test]
    fn notifications_as_keepalived_sends_them() {
        let mut snap = Snapshot::default();
        snap.instances.push(instance("VI_2", 2, "MASTER"));
        let ev = Event::new("VI_2", State::Master, &TransitionReason::Startup);
        let n = notifications(&settings(), &snap, &ev);
        // vrrpInstanceStateChange and vrrpTrapNewMaster (no v3 one for a v2 instance).
        assert_eq!(n.len(), 2);
        assert_eq!(n[0][0].value, Value::Oid(oid(&KEEPALIVED, &[2, 10, 0, 2])));
        assert_eq!(n[0][2].value, Value::Integer(2));
        assert_eq!(n[1][0].value, Value::Oid(oid(&VRRP_MIB, &[0, 1])));
        assert_eq!(n[1][1].value, Value::IpAddress([192, 0, 2, 1]));
        // BACKUP: the state change only; without enable_traps nothing.
        let ev = Event::new("VI_2", State::Backup, &TransitionReason::Startup);
        assert_eq!(notifications(&settings(), &snap, &ev).len(), 1);
        // Leaving at shutdown: keepalived's shutdown(5).
        let ev = Event::new("VI_2", State::Initialize, &TransitionReason::Shutdown);
        let n = notifications(&settings(), &snap, &ev);
        assert_eq!(n[0][2].value, Value::Integer(5));
        let s = Settings {
            traps: false,
            ..settings()
        };
        assert!(notifications(&s, &snap, &ev).is_empty());
        // A sync group's transition: vrrpSyncGroupStateChange only.
        let ev = Event::group("G1", State::Master);
        let n = notifications(&settings(), &snap, &ev);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0][0].value, Value::Oid(oid(&KEEPALIVED, &[2, 10, 0, 1])));
        assert_eq!(n[0][1].value, Value::OctetString(b"G1".to_vec()));
        assert_eq!(n[0][2].value, Value::Integer(2));
    }

    #[test]
    fn address_table_vips_evips_and_static_addresses() {
        let mut snap = Snapshot::default();
        let mut backup = instance("VI_1", 2, "BACKUP");
        // An eVIP: IPv6, link scope, with a label and a peer, on ifindex 1 ("lo").
        backup.detail.addresses.push(AddressSpec {
            ifindex: 1,
            addr: "2001:db8::5".parse().unwrap(),
            prefix_len: 64,
            brd: None,
            scope: 253,
            label: Some("lo:x".into()),
            opts: vipd_linux::netlink::AddressOptions {
                peer: Some("2001:db8::6".parse().unwrap()),
                ..Default::default()
            },
        });
        backup.detail.addresses[1].brd = Some("192.0.2.255".parse().unwrap());
        snap.instances.push(backup);
        snap.instances.push(instance("VI_2", 3, "MASTER"));
        snap.static_addresses.push(AddressSpec {
            ifindex: 1,
            addr: "198.51.100.7".parse().unwrap(),
            prefix_len: 32,
            brd: None,
            scope: 254,
            label: None,
            opts: Default::default(),
        });
        let mib = Mib::build(&settings(), &snap, None);
        let a = |c: u32, inst: u32, row: u32| mib.get(&oid(&KEEPALIVED, &[2, 6, 1, c, inst, row]));
        let octets = |t: &str| Some(Value::OctetString(ip_octets(t.parse().unwrap())));
        // VI_1 (BACKUP): two VIPs, unset, advertised; broadcast 0.0.0.0 unless given.
        assert_eq!(a(2, 1, 1), Some(Value::Integer(1)));
        assert_eq!(a(3, 1, 1), octets("192.0.2.10"));
        assert_eq!(a(4, 1, 1), octets("0.0.0.0"));
        assert_eq!(a(4, 1, 2), octets("192.0.2.255"));
        assert_eq!(a(5, 1, 1), Some(Value::Gauge32(24)));
        assert_eq!(a(6, 1, 1), Some(Value::Integer(14)), "global");
        assert_eq!(a(7, 1, 1), Some(Value::Integer(1_000_007)));
        // An index that names no interface: the instance's interface.
        assert_eq!(a(8, 1, 1), Some(Value::OctetString(b"eth0".to_vec())));
        assert_eq!(a(9, 1, 1), None, "no label");
        assert_eq!(a(10, 1, 1), Some(Value::Integer(2)), "unset while BACKUP");
        assert_eq!(a(11, 1, 2), Some(Value::Integer(1)), "advertised");
        assert_eq!(a(12, 1, 1), None, "no peer");
        // The eVIP: not advertised, IPv6 without a broadcast, its label and peer.
        assert_eq!(a(2, 1, 3), Some(Value::Integer(2)));
        assert_eq!(a(3, 1, 3), octets("2001:db8::5"));
        assert_eq!(a(4, 1, 3), None);
        assert_eq!(a(6, 1, 3), Some(Value::Integer(2)), "linkLocal");
        assert_eq!(a(8, 1, 3), Some(Value::OctetString(b"lo".to_vec())));
        assert_eq!(a(9, 1, 3), Some(Value::OctetString(b"lo:x".to_vec())));
        assert_eq!(a(11, 1, 3), Some(Value::Integer(2)), "not advertised");
        assert_eq!(a(12, 1, 3), octets("2001:db8::6"));
        assert_eq!(a(3, 1, 4), None);
        // VI_2 (MASTER): set.
        assert_eq!(a(10, 2, 1), Some(Value::Integer(1)));
        assert_eq!(a(10, 2, 2), Some(Value::Integer(1)));
        // The static address: instance 0, set, not advertised, host scope.
        assert_eq!(a(3, 0, 1), octets("198.51.100.7"));
        assert_eq!(a(6, 0, 1), Some(Value::Integer(1)));
        assert_eq!(a(10, 0, 1), Some(Value::Integer(1)));
        assert_eq!(a(11, 0, 1), Some(Value::Integer(2)));
        // RFC 2787 lists the VIPs the adverts carry, not the eVIP.
        let v2 = |r: &[u32]| mib.get(&oid(&VRRP_MIB, r));
        assert_eq!(v2(&[1, 3, 1, 6, 7, 51]), Some(Value::Integer(2)));
    }

    #[test]
    fn route_and_rule_tables() {
        use vipd_linux::routes::RouteKind;
        let route = |dst: &str, gw: Option<&str>, kind| RouteSpec {
            dst: dst.parse().unwrap(),
            dst_len: 24,
            kind,
            gateway: gw.map(|g| g.parse().unwrap()),
            dev: Some(1),
            dev_name: Some("lo".into()),
            pref_src: None,
            table: 254,
            metric: None,
            scope: None,
            onlink: false,
        };
        let mut snap = Snapshot::default();
        let mut backup = instance("VI_1", 3, "BACKUP");
        backup.detail.routes = vec![
            route("198.51.100.0", Some("192.0.2.1"), RouteKind::Unicast),
            RouteSpec {
                dev: None,
                metric: Some(7),
                table: 100,
                ..route("203.0.113.0", None, RouteKind::Blackhole)
            },
        ];
        backup.detail.rules = vec![RuleSpec {
            v6: false,
            from: Some(("192.0.2.0".parse().unwrap(), 24)),
            to: None,
            iif: Some("eth0".into()),
            oif: None,
            fwmark: Some((3, Some(0xff))),
            table: Some(100),
            priority: Some(1000),
            action: None,
            invert: true,
        }];
        snap.instances.push(backup);
        let mut master = instance("VI_2", 3, "MASTER");
        master.detail.routes = vec![route("198.51.100.0", None, RouteKind::Unicast)];
        snap.instances.push(master);
        snap.static_rules.push(RuleSpec {
            v6: true,
            from: None,
            to: Some(("2001:db8::".parse().unwrap(), 32)),
            iif: None,
            oif: None,
            fwmark: None,
            table: None,
            priority: None,
            action: Some(RouteKind::Unreachable),
            invert: false,
        });
        let mib = Mib::build(&settings(), &snap, None);
        let r = |c: u32, i: u32, k: u32| mib.get(&oid(&KEEPALIVED, &[2, 7, 1, c, i, k]));
        let octets = |t: &str| Some(Value::OctetString(ip_octets(t.parse().unwrap())));
        assert_eq!(r(2, 1, 1), Some(Value::Integer(1)));
        assert_eq!(r(3, 1, 1), octets("198.51.100.0"));
        assert_eq!(r(4, 1, 1), Some(Value::Gauge32(24)));
        assert_eq!(r(5, 1, 1), octets("192.0.2.1"));
        assert_eq!(r(8, 1, 1), Some(Value::Gauge32(0)));
        assert_eq!(
            r(9, 1, 1),
            Some(Value::Integer(14)),
            "via a gateway: global"
        );
        assert_eq!(r(10, 1, 1), Some(Value::Integer(1)));
        assert_eq!(r(11, 1, 1), Some(Value::Integer(1)));
        assert_eq!(r(12, 1, 1), Some(Value::OctetString(b"lo".to_vec())));
        assert_eq!(r(13, 1, 1), Some(Value::Gauge32(254)));
        assert_eq!(r(14, 1, 1), Some(Value::Integer(2)), "unset while BACKUP");
        // The blackhole route: no gateway, no interface, its metric and table.
        assert_eq!(r(5, 1, 2), None);
        assert_eq!(r(8, 1, 2), Some(Value::Gauge32(7)));
        assert_eq!(r(10, 1, 2), Some(Value::Integer(3)));
        assert_eq!(r(11, 1, 2), None);
        assert_eq!(r(13, 1, 2), Some(Value::Gauge32(100)));
        // VI_2 (MASTER): set; a direct route is link scope.
        assert_eq!(r(14, 2, 1), Some(Value::Integer(1)));
        assert_eq!(r(9, 2, 1), Some(Value::Integer(2)));
        // The rule of VI_1.
        let u = |c: u32, i: u32, k: u32| mib.get(&oid(&KEEPALIVED, &[2, 8, 1, c, i, k]));
        assert_eq!(u(2, 1, 1), Some(Value::OctetString(b"from".to_vec())));
        assert_eq!(u(4, 1, 1), octets("192.0.2.0"));
        assert_eq!(u(6, 1, 1), Some(Value::Gauge32(100)));
        assert_eq!(u(7, 1, 1), Some(Value::Integer(2)));
        assert_eq!(u(8, 1, 1), Some(Value::Integer(1)), "invert");
        assert_eq!(u(10, 1, 1), None, "no destination");
        assert_eq!(u(13, 1, 1), octets("192.0.2.0"));
        assert_eq!(u(14, 1, 1), Some(Value::Gauge32(24)));
        assert_eq!(u(16, 1, 1), Some(Value::Gauge32(3)));
        assert_eq!(u(17, 1, 1), Some(Value::Gauge32(0xff)));
        assert_eq!(u(20, 1, 1), Some(Value::OctetString(b"eth0".to_vec())));
        assert_eq!(u(23, 1, 1), Some(Value::Integer(1)), "table");
        assert_eq!(u(25, 1, 1), Some(Value::Gauge32(1000)));
        // The static rule: instance 0, set, unreachable(7) without a table.
        assert_eq!(u(2, 0, 1), Some(Value::OctetString(b"to".to_vec())));
        assert_eq!(u(9, 0, 1), Some(Value::Integer(2)));
        assert_eq!(u(10, 0, 1), octets("2001:db8::"));
        assert_eq!(u(7, 0, 1), Some(Value::Integer(1)));
        assert_eq!(u(23, 0, 1), Some(Value::Integer(7)));
        assert_eq!(u(6, 0, 1), None);
        assert_eq!(u(25, 0, 1), None);
    }

    #[test]
    fn script_file_and_process_definitions() {
        use vipd_linux::track::{FilePlan, ParamMatch, ProcessPlan, ScriptPlan};
        let mut snap = Snapshot::default();
        let script = ScriptPlan {
            name: "chk".into(),
            argv: vec!["/usr/bin/check".into(), "-q".into()],
            program: None,
            interval: Duration::from_millis(2500),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            init_fail: false,
            run_as: None,
            weight: -300,
            reverse: true,
        };
        snap.track_scripts = vec![
            (script.clone(), "good".into()),
            (
                ScriptPlan {
                    init_fail: true,
                    ..script.clone()
                },
                "unknown".into(),
            ),
            (script, "unknown".into()),
        ];
        snap.track_files = vec![(
            FilePlan {
                name: "f".into(),
                path: "/run/f".into(),
                init: None,
                weight: 2,
                reverse: false,
            },
            "-7".into(),
        )];
        let process = ProcessPlan {
            name: "web".into(),
            process: vec!["nginx".into()],
            full_command: false,
            quorum: 2,
            quorum_max: None,
            param_match: ParamMatch::Exact,
            fork_delay: Duration::from_millis(1500),
            terminate_delay: Duration::ZERO,
            weight: 1,
            reverse: false,
        };
        snap.track_processes = vec![
            (process.clone(), "bad".into()),
            (
                ProcessPlan {
                    process: vec!["python3".into(), "app.py".into(), "-v".into()],
                    param_match: ParamMatch::Initial,
                    quorum_max: Some(4),
                    ..process
                },
                "unknown".into(),
            ),
        ];
        snap.track_bfds = vec![
            (
                vipd_linux::track::BfdTrackPlan {
                    name: "b1".into(),
                    weight: 20,
                    reverse: false,
                },
                "good".into(),
            ),
            (
                vipd_linux::track::BfdTrackPlan {
                    name: "b2".into(),
                    weight: 0,
                    reverse: true,
                },
                "bad".into(),
            ),
        ];
        let mib = Mib::build(&settings(), &snap, None);
        let k = |r: &[u32]| mib.get(&oid(&KEEPALIVED, r));
        let text = |t: &str| Some(Value::OctetString(t.as_bytes().to_vec()));
        // vrrpBfdTable.
        assert_eq!(k(&[2, 18, 1, 2, 1]), text("b1"));
        assert_eq!(k(&[2, 18, 1, 3, 1]), Some(Value::Integer(1)), "up");
        assert_eq!(k(&[2, 18, 1, 4, 1]), Some(Value::Integer(20)));
        assert_eq!(k(&[2, 18, 1, 5, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 18, 1, 3, 2]), Some(Value::Integer(0)), "down");
        assert_eq!(k(&[2, 18, 1, 5, 2]), Some(Value::Integer(1)));
        // vrrpScriptTable.
        assert_eq!(k(&[2, 9, 1, 2, 1]), text("chk"));
        assert_eq!(k(&[2, 9, 1, 3, 1]), text("/usr/bin/check -q"));
        assert_eq!(k(&[2, 9, 1, 4, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 9, 1, 5, 1]), Some(Value::Integer(-254)), "clamped");
        assert_eq!(k(&[2, 9, 1, 6, 1]), Some(Value::Integer(3)), "good");
        assert_eq!(k(&[2, 9, 1, 6, 2]), Some(Value::Integer(5)), "initfailed");
        assert_eq!(k(&[2, 9, 1, 6, 3]), Some(Value::Integer(1)), "init");
        assert_eq!(k(&[2, 9, 1, 7, 1]), Some(Value::Gauge32(2)));
        assert_eq!(k(&[2, 9, 1, 8, 1]), Some(Value::Gauge32(3)));
        assert_eq!(k(&[2, 9, 1, 9, 1]), Some(Value::Integer(1)), "reverse");
        assert_eq!(k(&[2, 9, 1, 10, 1]), text("/usr/bin/check"));
        assert_eq!(k(&[2, 9, 1, 11, 1]), Some(Value::Gauge32(2_500_000)));
        assert_eq!(k(&[2, 9, 1, 12, 1]), Some(Value::Gauge32(1_000_000)));
        // vrrpFileTable.
        assert_eq!(k(&[2, 13, 1, 2, 1]), text("f"));
        assert_eq!(k(&[2, 13, 1, 3, 1]), text("/run/f"));
        assert_eq!(k(&[2, 13, 1, 4, 1]), Some(Value::Integer(-7)));
        assert_eq!(k(&[2, 13, 1, 5, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 13, 1, 6, 1]), Some(Value::Integer(2)));
        // vrrpProcessTable.
        assert_eq!(k(&[2, 21, 1, 3, 1]), text("nginx"));
        assert_eq!(k(&[2, 21, 1, 4, 1]), text(""));
        assert_eq!(
            k(&[2, 21, 1, 5, 1]),
            Some(Value::Integer(0)),
            "no parameters"
        );
        assert_eq!(k(&[2, 21, 1, 8, 1]), Some(Value::Gauge32(2)));
        assert_eq!(k(&[2, 21, 1, 9, 1]), None, "no quorum_max");
        assert_eq!(k(&[2, 21, 1, 10, 1]), Some(Value::Gauge32(1_500_000)));
        assert_eq!(
            k(&[2, 21, 1, 14, 1]),
            Some(Value::Integer(2)),
            "quorum not met"
        );
        assert_eq!(k(&[2, 21, 1, 4, 2]), text("app.py -v"));
        assert_eq!(k(&[2, 21, 1, 5, 2]), Some(Value::Integer(3)), "initial");
        assert_eq!(k(&[2, 21, 1, 9, 2]), Some(Value::Integer(4)));
        assert_eq!(k(&[2, 21, 1, 14, 2]), None, "not looked at yet");
    }

    #[test]
    fn global_scalars_from_global_defs() {
        let text = "global_defs {\n    enable_snmp_vrrp\n    enable_traps\n    \
                    notification_email {\n        ops@example.com\n        noc@example.com\n    }\n    \
                    notification_email_from vipd@example.com\n    smtp_server 192.0.2.25 2525\n    \
                    smtp_connect_timeout 12\n    smtp_alert_vrrp false\n    no_email_faults\n    \
                    lvs_flush_on_stop VS\n    dynamic_interfaces\n    \
                    lvs_sync_daemon eth0 VI_1 maxlen 1400 group 239.0.0.9\n    \
                    lvs_timeouts tcp 900 udp 60\n}\n\
                    vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 42\n    \
                    virtual_ipaddress {\n        192.0.2.9\n    }\n}\n";
        let opts = vipd_config::LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        let l = vipd_config::load_str(text, std::path::Path::new("/k.conf"), &opts).unwrap();
        let s = Settings::from_config(&l.config).unwrap().unwrap();
        let mib = Mib::build(&s, &Snapshot::default(), None);
        let g = |r: &[u32]| mib.get(&oid(&KEEPALIVED, &oid(&[1], r)));
        let text = |t: &str| Some(Value::OctetString(t.as_bytes().to_vec()));
        assert_eq!(g(&[3, 1, 0]), Some(Value::Integer(1)));
        assert_eq!(g(&[3, 2, 0]), Some(Value::OctetString(vec![192, 0, 2, 25])));
        assert_eq!(g(&[3, 3, 0]), Some(Value::Gauge32(12)));
        assert_eq!(g(&[3, 4, 0]), text("vipd@example.com"));
        assert_eq!(g(&[3, 5, 1, 2, 1]), text("ops@example.com"));
        assert_eq!(g(&[3, 5, 1, 2, 2]), text("noc@example.com"));
        assert_eq!(g(&[3, 6, 0]), Some(Value::Gauge32(2525)));
        assert_eq!(g(&[3, 7, 0]), Some(Value::Integer(2)), "no_email_faults");
        assert_eq!(g(&[3, 8, 0]), Some(Value::Integer(3)), "smtp_alert unset");
        assert_eq!(
            g(&[3, 9, 0]),
            Some(Value::Integer(2)),
            "smtp_alert_vrrp off"
        );
        assert_eq!(g(&[4, 0]), Some(Value::Integer(1)));
        assert_eq!(g(&[6, 0]), Some(Value::Integer(2)));
        assert_eq!(g(&[8, 0]), text(""));
        assert_eq!(g(&[9, 0]), Some(Value::Integer(2)));
        assert_eq!(g(&[10, 0]), Some(Value::Integer(1)));
        assert_eq!(g(&[11, 0]), Some(Value::Integer(3)), "flushVS");
        assert_eq!(g(&[12, 0]), Some(Value::Integer(2)));
        // lvsSyncDaemon and lvsTimeouts: with enable_snmp_checker only.
        assert_eq!(mib.get(&oid(&KEEPALIVED, &[3, 6, 1, 0])), None);
        let s = Settings { checker: true, ..s };
        let mib = Mib::build(&s, &Snapshot::default(), None);
        let c = |r: &[u32]| mib.get(&oid(&KEEPALIVED, &oid(&[3], r)));
        assert_eq!(c(&[6, 1, 0]), Some(Value::Integer(1)));
        assert_eq!(c(&[6, 2, 0]), text("eth0"));
        assert_eq!(c(&[6, 3, 0]), text("VI_1"));
        assert_eq!(
            c(&[6, 4, 0]),
            Some(Value::Integer(42)),
            "the instance's VRID"
        );
        assert_eq!(c(&[6, 5, 0]), Some(Value::Integer(1400)));
        assert_eq!(c(&[6, 6, 0]), Some(Value::Integer(0)), "default port");
        assert_eq!(c(&[6, 8, 0]), Some(Value::Integer(1)));
        assert_eq!(c(&[6, 9, 0]), Some(Value::OctetString(vec![239, 0, 0, 9])));
        assert_eq!(c(&[7, 1, 0]), Some(Value::Integer(900)));
        assert_eq!(c(&[7, 2, 0]), None, "tcpfin not set");
        assert_eq!(c(&[7, 3, 0]), Some(Value::Integer(60)));
        // Without smtp_server: no address, type or port; the default timeout.
        let bare = "global_defs {\n    enable_snmp_checker\n}\n";
        let l = vipd_config::load_str(bare, std::path::Path::new("/k.conf"), &opts).unwrap();
        let s = Settings::from_config(&l.config).unwrap().unwrap();
        let mib = Mib::build(&s, &Snapshot::default(), None);
        let g = |r: &[u32]| mib.get(&oid(&KEEPALIVED, &oid(&[1], r)));
        assert_eq!(g(&[3, 1, 0]), None);
        assert_eq!(g(&[3, 6, 0]), None);
        assert_eq!(g(&[3, 3, 0]), Some(Value::Gauge32(30)));
        assert_eq!(g(&[4, 0]), Some(Value::Integer(2)));
        let c = |r: &[u32]| mib.get(&oid(&KEEPALIVED, &oid(&[3], r)));
        assert_eq!(c(&[6, 1, 0]), Some(Value::Integer(2)), "no lvs_sync_daemon");
        assert_eq!(c(&[6, 2, 0]), None);
        assert_eq!(c(&[7, 1, 0]), None);
    }

    #[test]
    fn sync_group_tables() {
        let mut snap = Snapshot::default();
        snap.instances.push(instance("VI_1", 3, "MASTER"));
        snap.instances.push(instance("VI_2", 3, "MASTER"));
        snap.sync_groups.push(vipd_linux::status::SyncGroupStatus {
            name: "G1".into(),
            members: vec!["VI_2".into(), "VI_1".into()],
            state: "MASTER".into(),
            tracking: vec![
                ("interface", "eth3", -4, false),
                ("script", "chk", 0, true),
                ("process", "web", 6, false),
            ]
            .into_iter()
            .map(|(kind, name, weight, reverse)| TrackRef {
                object: vipd_linux::track::ObjectId {
                    kind: match kind {
                        "interface" => vipd_linux::track::Kind::Interface,
                        "script" => vipd_linux::track::Kind::Script,
                        _ => vipd_linux::track::Kind::Process,
                    },
                    name: name.into(),
                },
                weight,
                reverse,
            })
            .collect(),
            ..Default::default()
        });
        snap.sync_groups[0].notify.master =
            Some(vipd_exec::scripts::Script::new("/etc/vipd/master.sh G1"));
        let mib = Mib::build(&settings(), &snap, None);
        let k = |r: &[u32]| mib.get(&oid(&KEEPALIVED, r));
        assert_eq!(
            k(&[2, 1, 1, 2, 1]),
            Some(Value::OctetString(b"G1".to_vec()))
        );
        // SmtpAlert off, NotifyExec on, ScriptMaster, no ScriptBackup,
        // TrackingWeight off.
        assert_eq!(k(&[2, 1, 1, 4, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 1, 1, 5, 1]), Some(Value::Integer(1)));
        assert_eq!(
            k(&[2, 1, 1, 6, 1]),
            Some(Value::OctetString(b"/etc/vipd/master.sh G1".to_vec()))
        );
        assert_eq!(k(&[2, 1, 1, 7, 1]), None);
        assert_eq!(k(&[2, 1, 1, 10, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 1, 1, 3, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 1, 1, 1, 1]), None, "the index is not-accessible");
        assert_eq!(
            k(&[2, 2, 1, 2, 1, 1]),
            Some(Value::OctetString(b"VI_2".to_vec()))
        );
        assert_eq!(
            k(&[2, 2, 1, 2, 1, 2]),
            Some(Value::OctetString(b"VI_1".to_vec()))
        );
        assert_eq!(
            k(&[2, 3, 1, 18, 1]),
            Some(Value::OctetString(b"G1".to_vec()))
        );
        // The group's own tracked objects: vrrpSyncTrackedInterfaceTable (.14),
        // ScriptTable (.15), ProcessTable (.22).
        let s = |t: &str| Some(Value::OctetString(t.as_bytes().to_vec()));
        assert_eq!(k(&[2, 14, 1, 1, 1, 1]), s("eth3"));
        assert_eq!(k(&[2, 14, 1, 2, 1, 1]), Some(Value::Integer(-4)));
        assert_eq!(k(&[2, 14, 1, 3, 1, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[2, 15, 1, 2, 1, 1]), s("chk"));
        assert_eq!(k(&[2, 15, 1, 4, 1, 1]), Some(Value::Integer(1)));
        assert_eq!(k(&[2, 22, 1, 2, 1, 1]), s("web"));
        assert_eq!(k(&[2, 22, 1, 3, 1, 1]), Some(Value::Integer(6)));
        assert_eq!(k(&[2, 16, 1, 2, 1, 1]), None, "no file");
    }

    #[test]
    fn tracked_object_tables() {
        let mut snap = Snapshot::default();
        snap.instances.push(instance("VI_1", 3, "MASTER"));
        snap.instances.push(instance("VI_2", 3, "MASTER"));
        let line = |kind: &str, name: &str, weight: i64, reverse: bool| TrackLine {
            kind: kind.into(),
            name: name.into(),
            state: "good".into(),
            weight,
            reverse,
            effect: "0".into(),
        };
        snap.tracking.insert(
            "VI_2".into(),
            vec![
                line("interface", "eth1", 0, false),
                line("script", "chk_a", 10, false),
                line("interface", "eth2", -5, true),
                line("script", "chk_b", 0, true),
                line("file", "f", 3, false),
                line("address", "192.0.2.9", 0, false),
            ],
        );
        let mib = Mib::build(&settings(), &snap, None);
        let k = |r: &[u32]| mib.get(&oid(&KEEPALIVED, r));
        let s = |t: &str| Some(Value::OctetString(t.as_bytes().to_vec()));
        // Interfaces of instance 2: name, weight, reverse.
        assert_eq!(k(&[2, 4, 1, 1, 2, 1]), s("eth1"));
        assert_eq!(k(&[2, 4, 1, 1, 2, 2]), s("eth2"));
        assert_eq!(k(&[2, 4, 1, 2, 2, 2]), Some(Value::Integer(-5)));
        assert_eq!(k(&[2, 4, 1, 3, 2, 2]), Some(Value::Integer(1)));
        assert_eq!(k(&[2, 4, 1, 3, 2, 1]), Some(Value::Integer(2)));
        // vrrpInstanceTrackPrimaryIf: instance 2 tracks interfaces, 1 does not.
        assert_eq!(k(&[2, 3, 1, 11, 2]), Some(Value::Integer(1)));
        assert_eq!(k(&[2, 3, 1, 11, 1]), Some(Value::Integer(2)));
        // Scripts and files: columns 2 to 4.
        assert_eq!(k(&[2, 5, 1, 2, 2, 1]), s("chk_a"));
        assert_eq!(k(&[2, 5, 1, 3, 2, 1]), Some(Value::Integer(10)));
        assert_eq!(k(&[2, 5, 1, 4, 2, 2]), Some(Value::Integer(1)));
        assert_eq!(k(&[2, 5, 1, 1, 2, 1]), None);
        assert_eq!(k(&[2, 12, 1, 2, 2, 1]), s("f"));
        // Nothing for instance 1, which tracks nothing.
        assert_eq!(
            mib.next(&oid(&KEEPALIVED, &[2, 4, 1, 1, 1]), false)
                .unwrap()
                .0,
            oid(&KEEPALIVED, &[2, 4, 1, 1, 2, 1])
        );
    }

    fn virtual_server(up: [bool; 2]) -> vipd_linux::status::VirtualServerStatus {
        vipd_linux::status::VirtualServerStatus {
            name: "virtual_server 192.0.2.100 80".into(),
            active: true,
            quorum_up: true,
            backend: "nftables".into(),
            real_servers: up
                .iter()
                .enumerate()
                .map(|(k, up)| vipd_linux::status::RealServerStatus {
                    addr: IpAddr::from([192, 0, 2, 13 + k as u8]),
                    port: 80,
                    up: *up,
                    reason: String::new(),
                    snmp_name: (k == 1).then(|| "web-2".into()),
                    stats: vipd_linux::status::TrafficStats {
                        conns: 3 + k as u64,
                        in_packets: 40,
                        in_bytes: (1 << 32) + 5,
                        in_pps: 7,
                        in_bps: (1 << 33) + 9,
                        ..Default::default()
                    },
                    weight: 3 + k as u32,
                    failed_checks: u32::from(!*up),
                    settings: Arc::new(vipd_linux::status::RsSettings {
                        forward: 2,
                        upper_threshold: 100,
                        notify_down: Some(vec!["/bin/echo".into(), "down".into()]),
                        timing: vipd_config::model::CheckTiming {
                            retry: Some(2),
                            delay_before_retry: Some(Duration::from_millis(1500)),
                            ..Default::default()
                        },
                        smtp_alert: true,
                        ..Default::default()
                    }),
                })
                .collect(),
            stats: vipd_linux::status::TrafficStats {
                conns: 7,
                in_packets: 80,
                in_bytes: 1000,
                out_packets: 60,
                out_bytes: 900,
                cps: 1,
                in_pps: 14,
                in_bps: 100,
                out_pps: 10,
                out_bps: 90,
                ..Default::default()
            },
            service: vipd_linux::status::VsService {
                kind: 2,
                addr: Some("192.0.2.100".parse().unwrap()),
                port: 80,
                protocol: 1,
                snmp_name: Some("web".into()),
                settings: Arc::new(vipd_linux::status::VsSettings {
                    sched: 8,
                    forward: 2,
                    port: true,
                    persistence: Some((300, 24)),
                    timing: vipd_config::model::CheckTiming {
                        delay_loop: Some(Duration::from_secs(3)),
                        ..Default::default()
                    },
                    ha_suspend: true,
                    quorum: 2,
                    hysteresis: 1,
                    quorum_up: Some(vec!["/bin/echo".into(), "met".into()]),
                    ..Default::default()
                }),
                sorry: Some(vipd_linux::status::SorryServer {
                    addr: "192.0.2.15".parse().unwrap(),
                    port: 8080,
                    forward: 1,
                    in_use: false,
                }),
                ..Default::default()
            },
        }
    }

    #[test]
    fn checker_tables_and_real_server_notifications() {
        let mut snap = Snapshot::default();
        snap.virtual_servers.push(virtual_server([true, true]));
        let mib = Mib::build(&settings(), &snap, None);
        let k = |r: &[u32]| mib.get(&oid(&KEEPALIVED, r));
        assert_eq!(k(&[3, 3, 1, 2, 1]), Some(Value::Integer(2)));
        assert_eq!(
            k(&[3, 3, 1, 6, 1]),
            Some(Value::OctetString(vec![192, 0, 2, 100]))
        );
        assert_eq!(k(&[3, 3, 1, 7, 1]), Some(Value::Gauge32(80)));
        assert_eq!(k(&[3, 3, 1, 20, 1]), Some(Value::Gauge32(2)));
        assert_eq!(k(&[3, 3, 1, 21, 1]), Some(Value::Gauge32(2)));
        assert_eq!(
            k(&[3, 4, 1, 4, 1, 2]),
            Some(Value::OctetString(vec![192, 0, 2, 14]))
        );
        assert_eq!(k(&[3, 4, 1, 6, 1, 2]), Some(Value::Integer(1)));
        // snmp_name: virtualServerName and realServerName, only where it is set.
        assert_eq!(
            k(&[3, 3, 1, 71, 1]),
            Some(Value::OctetString(b"web".to_vec()))
        );
        assert_eq!(k(&[3, 4, 1, 55, 1, 1]), None);
        // Statistics: virtualServerStatsConns, InPkts, InBytes, RateInPPS, OutBPS64,
        // StatsInPkts64; realServerStatsConns, InBytes (64 bits), RateInBPS saturated,
        // its Low / High halves and RateInBPS64.
        assert_eq!(k(&[3, 3, 1, 27, 1]), Some(Value::Gauge32(7)));
        assert_eq!(k(&[3, 3, 1, 28, 1]), Some(Value::Counter32(80)));
        assert_eq!(k(&[3, 3, 1, 30, 1]), Some(Value::Counter64(1000)));
        assert_eq!(k(&[3, 3, 1, 31, 1]), Some(Value::Counter64(900)));
        assert_eq!(k(&[3, 3, 1, 33, 1]), Some(Value::Gauge32(14)));
        assert_eq!(k(&[3, 3, 1, 36, 1]), Some(Value::Gauge32(90)));
        assert_eq!(k(&[3, 3, 1, 39, 1]), Some(Value::Counter64(80)));
        assert_eq!(k(&[3, 3, 1, 41, 1]), Some(Value::Gauge32(1)));
        assert_eq!(k(&[3, 3, 1, 78, 1]), Some(Value::Counter64(90)));
        assert_eq!(k(&[3, 4, 1, 14, 1, 2]), Some(Value::Gauge32(4)));
        assert_eq!(k(&[3, 4, 1, 18, 1, 2]), Some(Value::Counter32(40)));
        assert_eq!(
            k(&[3, 4, 1, 20, 1, 2]),
            Some(Value::Counter64((1 << 32) + 5))
        );
        assert_eq!(k(&[3, 4, 1, 23, 1, 2]), Some(Value::Gauge32(7)));
        assert_eq!(k(&[3, 4, 1, 25, 1, 2]), Some(Value::Gauge32(u32::MAX)));
        assert_eq!(k(&[3, 4, 1, 36, 1, 2]), Some(Value::Gauge32(9)));
        assert_eq!(k(&[3, 4, 1, 37, 1, 2]), Some(Value::Gauge32(2)));
        assert_eq!(
            k(&[3, 4, 1, 61, 1, 2]),
            Some(Value::Counter64((1 << 33) + 9))
        );
        assert_eq!(k(&[3, 4, 1, 15, 1, 2]), None, "no active conns on nftables");
        // Configuration: virtualServerLoadBalancingAlgo sh, Kind dr, Persist,
        // PersistTimeout, PersistGranularity (a netmask), DelayLoop (and in µs),
        // HaSuspend, Alpha disabled, Quorum, QuorumStatus met, QuorumUp and its path,
        // no QuorumDown, Hysteresis, SHPort but not MHPort, Retry only where written.
        assert_eq!(k(&[3, 3, 1, 9, 1]), Some(Value::Integer(8)));
        assert_eq!(k(&[3, 3, 1, 10, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[3, 3, 1, 13, 1]), Some(Value::Integer(1)));
        assert_eq!(k(&[3, 3, 1, 14, 1]), Some(Value::Gauge32(300)));
        assert_eq!(
            k(&[3, 3, 1, 15, 1]),
            Some(Value::OctetString(vec![255, 255, 255, 0]))
        );
        assert_eq!(k(&[3, 3, 1, 51, 1]), None);
        assert_eq!(k(&[3, 3, 1, 16, 1]), Some(Value::Gauge32(3)));
        assert_eq!(k(&[3, 3, 1, 64, 1]), Some(Value::Gauge32(3_000_000)));
        assert_eq!(k(&[3, 3, 1, 17, 1]), Some(Value::Integer(1)));
        assert_eq!(k(&[3, 3, 1, 18, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[3, 3, 1, 22, 1]), Some(Value::Gauge32(2)));
        assert_eq!(k(&[3, 3, 1, 23, 1]), Some(Value::Integer(1)));
        assert_eq!(
            k(&[3, 3, 1, 24, 1]),
            Some(Value::OctetString(b"/bin/echo met".to_vec()))
        );
        assert_eq!(
            k(&[3, 3, 1, 72, 1]),
            Some(Value::OctetString(b"/bin/echo".to_vec()))
        );
        assert_eq!(k(&[3, 3, 1, 25, 1]), None);
        assert_eq!(k(&[3, 3, 1, 26, 1]), Some(Value::Gauge32(1)));
        assert_eq!(k(&[3, 3, 1, 54, 1]), Some(Value::Integer(1)));
        assert_eq!(k(&[3, 3, 1, 63, 1]), Some(Value::Integer(2)));
        assert_eq!(k(&[3, 3, 1, 57, 1]), None);
        assert_eq!(k(&[3, 3, 1, 68, 1]), None, "no tunnel");
        // realServerWeight, UpperConnectionLimit, ActionWhenDown remove, NotifyDown,
        // FailedChecks, ForwardingMethod, Retry, DelayBeforeRetry (s, µs), DelayLoop
        // (the default), SmtpAlert.
        assert_eq!(k(&[3, 4, 1, 7, 1, 2]), Some(Value::Integer(4)));
        assert_eq!(k(&[3, 4, 1, 8, 1, 2]), Some(Value::Gauge32(100)));
        assert_eq!(k(&[3, 4, 1, 10, 1, 2]), Some(Value::Integer(1)));
        assert_eq!(k(&[3, 4, 1, 11, 1, 2]), None);
        assert_eq!(
            k(&[3, 4, 1, 12, 1, 2]),
            Some(Value::OctetString(b"/bin/echo down".to_vec()))
        );
        assert_eq!(k(&[3, 4, 1, 13, 1, 2]), Some(Value::Gauge32(0)));
        assert_eq!(k(&[3, 4, 1, 40, 1, 2]), Some(Value::Integer(2)));
        assert_eq!(k(&[3, 4, 1, 43, 1, 2]), Some(Value::Gauge32(2)));
        assert_eq!(k(&[3, 4, 1, 44, 1, 2]), Some(Value::Gauge32(1)));
        assert_eq!(k(&[3, 4, 1, 48, 1, 2]), Some(Value::Gauge32(1_500_000)));
        assert_eq!(k(&[3, 4, 1, 46, 1, 2]), Some(Value::Gauge32(60)));
        assert_eq!(k(&[3, 4, 1, 45, 1, 2]), None);
        assert_eq!(k(&[3, 4, 1, 47, 1, 2]), Some(Value::Integer(1)));
        // The sorry server: row 3, type sorry(2), dead(2) while the quorum holds, NAT;
        // virtualServerRealServersTotal counts only the real servers.
        assert_eq!(k(&[3, 4, 1, 2, 1, 3]), Some(Value::Integer(2)));
        assert_eq!(
            k(&[3, 4, 1, 4, 1, 3]),
            Some(Value::OctetString(vec![192, 0, 2, 15]))
        );
        assert_eq!(k(&[3, 4, 1, 5, 1, 3]), Some(Value::Gauge32(8080)));
        assert_eq!(k(&[3, 4, 1, 6, 1, 3]), Some(Value::Integer(2)));
        assert_eq!(k(&[3, 4, 1, 40, 1, 3]), Some(Value::Integer(1)));
        assert_eq!(k(&[3, 4, 1, 1, 1, 4]), None);
        assert_eq!(
            k(&[3, 4, 1, 55, 1, 2]),
            Some(Value::OctetString(b"web-2".to_vec()))
        );
        let before = checker_states(&snap);
        assert!(checker_notifications(&settings(), &before, &snap).is_empty());
        snap.virtual_servers[0] = virtual_server([true, false]);
        let n = checker_notifications(&settings(), &before, &snap);
        assert_eq!(n.len(), 1);
        // After the varbinds the MIB names, the virtual server's address and port.
        assert_eq!(n[0][10].name, oid(&KEEPALIVED, &[3, 3, 1, 5]));
        assert_eq!(n[0][12].value, Value::Gauge32(80));
        assert_eq!(n[0][0].value, Value::Oid(oid(&KEEPALIVED, &[3, 5, 0, 1])));
        assert_eq!(n[0][2].value, Value::OctetString(vec![192, 0, 2, 14]));
        assert_eq!(n[0][4].value, Value::Integer(2));
        assert_eq!(n[0][7].value, Value::Gauge32(1));
        let s = Settings {
            checker: false,
            ..settings()
        };
        assert!(checker_notifications(&s, &before, &snap).is_empty());
        // The quorum lost: virtualServerQuorumStateChange after the real server's trap.
        snap.virtual_servers[0].quorum_up = false;
        let n = checker_notifications(&settings(), &before, &snap);
        assert_eq!(n.len(), 2);
        assert_eq!(n[1][0].value, Value::Oid(oid(&KEEPALIVED, &[3, 5, 0, 2])));
        assert_eq!(
            n[1][3].value,
            Value::Integer(2),
            "virtualServerQuorumStatus"
        );
        assert_eq!(n[1][4].value, Value::Gauge32(2), "virtualServerQuorum");
        assert_eq!(
            n[1][5].value,
            Value::Gauge32(1),
            "virtualServerRealServersUp"
        );
        assert_eq!(n[1][9].value, Value::OctetString(vec![192, 0, 2, 100]));
        // IPVS: realServerStatsActiveConns / InactiveConns / PersistentConns.
        let mut ipvs = snap.clone();
        ipvs.virtual_servers[0].backend = "ipvs".into();
        let st = &mut ipvs.virtual_servers[0].real_servers[1].stats;
        (st.active_conns, st.inactive_conns, st.persistent_conns) = (4, 1 << 40, 2);
        let mib = Mib::build(&settings(), &ipvs, None);
        let k = |r: &[u32]| mib.get(&oid(&KEEPALIVED, r));
        assert_eq!(k(&[3, 4, 1, 15, 1, 2]), Some(Value::Gauge32(4)));
        assert_eq!(k(&[3, 4, 1, 16, 1, 2]), Some(Value::Gauge32(u32::MAX)));
        assert_eq!(k(&[3, 4, 1, 17, 1, 2]), Some(Value::Gauge32(2)));
        // virtual_server_group tables: a range, an address, a firewall mark.
        snap.vs_groups = Arc::new(vec![vipd_config::model::VirtualServerGroup {
            name: "front".into(),
            span: vipd_config::model::Span {
                file: std::path::Path::new("keepalived.conf").into(),
                line: 1,
                col: 1,
            },
            entries: vec![
                vipd_config::model::VsgEntry::Range {
                    first: "192.0.2.20".parse().unwrap(),
                    last: Some(29),
                    port: Some(443),
                },
                vipd_config::model::VsgEntry::Range {
                    first: "2001:db8::1".parse().unwrap(),
                    last: None,
                    port: Some(80),
                },
                vipd_config::model::VsgEntry::Fwmark {
                    mark: 7,
                    family: None,
                },
            ],
        }]);
        let mib = Mib::build(&settings(), &snap, None);
        let k = |r: &[u32]| mib.get(&oid(&KEEPALIVED, r));
        assert_eq!(
            k(&[3, 1, 1, 2, 1]),
            Some(Value::OctetString(b"front".to_vec()))
        );
        assert_eq!(k(&[3, 2, 1, 2, 1, 1]), Some(Value::Integer(3)));
        assert_eq!(
            k(&[3, 2, 1, 7, 1, 1]),
            Some(Value::OctetString(vec![192, 0, 2, 29]))
        );
        assert_eq!(k(&[3, 2, 1, 8, 1, 1]), Some(Value::Gauge32(443)));
        assert_eq!(k(&[3, 2, 1, 5, 1, 1]), None);
        assert_eq!(k(&[3, 2, 1, 2, 1, 2]), Some(Value::Integer(2)));
        assert_eq!(k(&[3, 2, 1, 4, 1, 2]), Some(Value::Integer(2)));
        assert_eq!(k(&[3, 2, 1, 2, 1, 3]), Some(Value::Integer(1)));
        assert_eq!(k(&[3, 2, 1, 3, 1, 3]), Some(Value::Gauge32(7)));
        assert_eq!(k(&[3, 2, 1, 8, 1, 3]), None);
        assert_eq!(
            Mib::build(&s, &snap, None).get(&oid(&KEEPALIVED, &[3, 3, 1, 2, 1])),
            None
        );
    }
}
