//! A read-only picture of the running instances, published by the protocol thread
//! and read by the control socket.

use crate::netlink::AddressSpec;
use crate::routes::{RouteSpec, RuleSpec};
use crate::track::{BfdTrackPlan, FilePlan, ProcessPlan, ScriptPlan};
use serde::Serialize;
use std::time::Instant;
use vipd_vrrp::engine::Instance;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub instances: Vec<InstanceStatus>,
    /// Packets dropped before reaching an instance, by reason.
    pub socket_drops: Vec<(String, u64)>,
    /// Instance name → its tracked objects, as the tracker last saw them.
    pub tracking: std::collections::BTreeMap<String, Vec<TrackLine>>,
    /// Virtual servers and their real servers, as the load-balancer thread last saw them.
    pub virtual_servers: Vec<VirtualServerStatus>,
    /// Socket errors of the protocol thread (receive, advert and GARP/NA sends), by
    /// operation and errno; never silently dropped.
    pub io_errors: Vec<IoErrorCount>,
    /// The `bfd_instance` sessions, as the BFD thread last saw them.
    pub bfd: Vec<BfdSessionStatus>,
    /// BFD packets that matched no session (by discriminator, else by addresses).
    pub bfd_unmatched: u64,
    /// The `vrrp_sync_group`s (for SNMP; not in `vipd status`).
    #[serde(skip)]
    pub sync_groups: Vec<SyncGroupStatus>,
    /// The `static_ipaddress`es in force (for SNMP's vrrpAddressTable; not in `vipd
    /// status`).
    #[serde(skip)]
    pub static_addresses: Vec<AddressSpec>,
    /// The `static_routes` / `static_rules` in force (for SNMP; not in `vipd status`).
    #[serde(skip)]
    pub static_routes: Vec<RouteSpec>,
    #[serde(skip)]
    pub static_rules: Vec<RuleSpec>,
    /// The `vrrp_script`s, `track_file`s and `track_process`es some instance tracks,
    /// each with its state as in `tracking` (for SNMP; not in `vipd status`).
    #[serde(skip)]
    pub track_scripts: Vec<(ScriptPlan, String)>,
    #[serde(skip)]
    pub track_files: Vec<(FilePlan, String)>,
    #[serde(skip)]
    pub track_processes: Vec<(ProcessPlan, String)>,
    #[serde(skip)]
    pub track_bfds: Vec<(BfdTrackPlan, String)>,
    /// The `virtual_server_group`s (for SNMP's virtualServerGroupTable; not in `vipd
    /// status`).
    #[serde(skip)]
    pub vs_groups: std::sync::Arc<Vec<vipd_config::model::VirtualServerGroup>>,
}

/// A `vrrp_sync_group`: its members and the state its notify scripts last saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncGroupStatus {
    pub name: String,
    /// Member instance names, in configuration order (those running).
    pub members: Vec<String>,
    /// `INIT` until a member's first transition, then `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
    /// The group's own `track_*` lines.
    pub tracking: Vec<crate::track::TrackRef>,
    /// Its notify scripts and `smtp_alert`.
    pub notify: crate::plan::NotifyPlan,
    /// `sync_group_tracking_weight`.
    pub tracking_weight: bool,
}

/// One BFD session in [`Snapshot::bfd`]. Intervals in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BfdSessionStatus {
    pub name: String,
    pub neighbor: String,
    pub source: Option<String>,
    pub multihop: bool,
    /// `Down`, `Init`, `Up`, `AdminDown` (RFC 5880 names).
    pub state: String,
    pub remote_state: String,
    /// bfd.LocalDiag / the peer's last diagnostic, as RFC 5880 §4.1 words.
    pub diagnostic: String,
    pub remote_diagnostic: String,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub source_port: Option<u16>,
    /// Negotiated transmit and receive intervals (before jitter).
    pub tx_interval_us: u64,
    pub rx_interval_us: u64,
    /// Detection time (`None` before the peer is heard).
    pub detection_time_us: Option<u64>,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Transitions into Up / out of Up.
    pub ups: u64,
    pub downs: u64,
    /// Received packets dropped, by reason (`bad_ttl`, `discriminator_mismatch`, …).
    pub drops: Vec<(String, u64)>,
    /// Sends that failed (logged once per errno).
    pub send_errors: u64,
    /// `true` while the session is being taken down after it left the configuration.
    pub leaving: bool,
}

/// One line of [`Snapshot::io_errors`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoErrorCount {
    /// `receive` (VRRP socket), `advert_send`, `announce_send` (gratuitous ARP / NA),
    /// `vrrp_socket_reopen` (a VRRP socket reopened, by the errno that made it
    /// necessary or `multicast_membership_lost`), `vrrp_socket_reopen_failed` (by the
    /// reopen's errno),
    /// `link_events_receive` (the link watcher's netlink socket).
    pub op: String,
    /// The errno name (`ENOBUFS`, `ENETDOWN`, …), or the error kind when there is none.
    pub reason: String,
    pub count: u64,
}

/// Counts socket errors by operation and reason; the protocol thread owns one.
#[derive(Debug, Default, Clone)]
pub struct IoErrors {
    counts: std::collections::BTreeMap<(&'static str, String), u64>,
}

impl IoErrors {
    /// Count `err` for `op`; `true` the first time this (op, reason) is seen, so the
    /// caller logs it once rather than on every packet. `EAGAIN` is not an error here
    /// (non-blocking sockets report "nothing more") and is never counted.
    pub fn count(&mut self, op: &'static str, err: &std::io::Error) -> bool {
        if err.kind() == std::io::ErrorKind::WouldBlock {
            return false;
        }
        let reason = Self::reason(err);
        let n = self.counts.entry((op, reason)).or_default();
        *n += 1;
        *n == 1
    }

    /// Count an event under `op` with a `reason` that is no errno (e.g.
    /// `vrrp_socket_reopen` / `multicast_membership_lost`); `true` the first time.
    pub fn count_reason(&mut self, op: &'static str, reason: &str) -> bool {
        let n = self.counts.entry((op, reason.to_string())).or_default();
        *n += 1;
        *n == 1
    }

    pub fn reason(err: &std::io::Error) -> String {
        match err.raw_os_error() {
            Some(raw) => format!("{:?}", nix::errno::Errno::from_raw(raw)),
            None => format!("{:?}", err.kind()),
        }
    }

    pub fn get(&self, op: &'static str, reason: &str) -> u64 {
        self.counts
            .get(&(op, reason.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn lines(&self) -> Vec<IoErrorCount> {
        self.counts
            .iter()
            .map(|((op, reason), n)| IoErrorCount {
                op: op.to_string(),
                reason: reason.clone(),
                count: *n,
            })
            .collect()
    }
}

/// One tracked object of an instance and what it does to it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackLine {
    /// interface, script, file, process
    pub kind: String,
    pub name: String,
    /// good, bad, unknown, or a tracked file's value
    pub state: String,
    pub weight: i64,
    pub reverse: bool,
    /// What it does now: `+10`, `-2`, `0`, or `FAULT`.
    pub effect: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub state: String,
    pub priority: u8,
    /// The priority advertised now (tracking may move it away from `priority`).
    pub effective_priority: u8,
    pub advert_interval_ms: f64,
    pub master: Option<String>,
    pub vips: Vec<String>,
    /// Seconds since the daemon started, and why.
    pub last_transition: Option<(f64, String)>,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub became_master: u64,
    pub transitions: u64,
    /// Gratuitous ARP / unsolicited NA frames sent.
    pub announcements_sent: u64,
    pub drops: Vec<(String, u64)>,
    /// Why the instance is FAULT on account of its VRRP socket, if it is: its adverts
    /// cannot be sent (`advert sends failing: EPERM`) or its socket cannot be reopened
    /// (`VRRP socket on eth0 cannot be reopened: ENODEV`). Tracking faults are in
    /// `tracking`.
    pub io_fault: Option<String>,
    /// `@vipd bfd_takeover`: take-overs on a BFD session Down, and session Downs that
    /// did not lead to one (not BACKUP, not the master's session, not Up for `min_up`,
    /// within `hold_down`).
    pub peer_takeovers: u64,
    pub peer_downs_ignored: u64,
    /// Times its adverts could not be sent for `FAILED_ROUNDS_FOR_FAULT` rounds in a
    /// row as MASTER (each made it FAULT until a probe got out).
    pub send_faults: u64,
    /// What keepalived-style dumps (SIGUSR1, JSON) show besides; not in `vipd status`.
    #[serde(skip)]
    pub detail: InstanceDetail,
}

/// Settings and times of an instance that only the signal dumps show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceDetail {
    /// The VIPs as the kernel gets them (interface index, scope, label).
    pub addresses: Vec<AddressSpec>,
    /// How many of `addresses`, from the first, are `virtual_ipaddress` (advertised);
    /// the rest are `virtual_ipaddress_excluded`.
    pub advertised: usize,
    /// `virtual_routes` / `virtual_rules` (installed while MASTER).
    pub routes: Vec<RouteSpec>,
    pub rules: Vec<RuleSpec>,
    /// `last_transition` in seconds since the Unix epoch.
    pub last_transition_unix: Option<f64>,
    pub nopreempt: bool,
    pub preempt_delay: f64,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    /// `skip_check_adv_addr`.
    pub skip_check_adv_addr: bool,
    /// An IPv6 instance (keepalived's DBus object path ends in `IPv6`, else `IPv4`).
    pub ipv6: bool,
    /// The interface's index (the base interface of a VMAC): the SNMP tables' `ifIndex`.
    pub ifindex: u32,
    /// The adverts' source address (primary address or `unicast_src_ip`).
    pub primary: Option<std::net::IpAddr>,
    /// `state MASTER` in the configuration (else BACKUP).
    pub initial_master: bool,
    /// Accept mode (not `no_accept`).
    pub accept: bool,
    /// VRRPv2 `auth_type`: 0 none, 1 PASS, 2 AH.
    pub auth_type: u8,
    /// Since when it is BACKUP or MASTER (out of Initialize and FAULT).
    pub up_since: Option<Instant>,
    /// Why it last became MASTER.
    pub master_reason: Option<vipd_vrrp::engine::TransitionReason>,
    /// The last TTL, version, checksum or VRID error among its drops.
    pub protocol_error: Option<vipd_vrrp::wire::DropReason>,
    /// The adverts' multicast group (`None`: unicast).
    pub mcast_group: Option<std::net::IpAddr>,
    /// `v3_checksum_as_v2`.
    pub v3_checksum_as_v2: bool,
    /// `garp_master_delay`.
    pub garp_master_delay: std::time::Duration,
    /// `promote_secondaries` (set on its interface).
    pub promote_secondaries: bool,
    /// Its notify scripts, `smtp_alert` and `notify_deleted` (the plan's, shared).
    pub notify: std::sync::Arc<crate::plan::NotifyPlan>,
}

impl InstanceStatus {
    /// The instance `name` on `interface` with its VIPs `addresses` (from its plan), as
    /// its engine `inst` stands now.
    pub fn from_engine(
        name: &str,
        interface: &str,
        addresses: &[AddressSpec],
        inst: &Instance,
        started: Instant,
        announcements_sent: u64,
    ) -> InstanceStatus {
        let cfg = inst.config();
        let st = inst.stats();
        InstanceStatus {
            name: name.to_string(),
            interface: interface.to_string(),
            vrid: cfg.vrid,
            version: cfg.version.number(),
            state: inst.state().as_str().to_string(),
            priority: cfg.priority,
            effective_priority: inst.priority(),
            advert_interval_ms: cfg.advert_interval.as_secs_f64() * 1000.0,
            master: inst.master().map(|m| m.to_string()),
            vips: addresses
                .iter()
                .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                .collect(),
            last_transition: inst.last_transition().map(|(t, r)| {
                (
                    t.saturating_duration_since(started).as_secs_f64(),
                    r.to_string(),
                )
            }),
            adverts_sent: st.adverts_sent,
            adverts_received: st.adverts_received,
            priority_zero_sent: st.priority_zero_sent,
            priority_zero_received: st.priority_zero_received,
            became_master: st.became_master,
            transitions: st.transitions,
            announcements_sent,
            drops: st
                .drops
                .iter()
                .map(|(r, n)| (r.as_str().to_string(), n))
                .collect(),
            io_fault: None,
            send_faults: 0,
            peer_takeovers: st.peer_takeovers,
            peer_downs_ignored: st.peer_downs_ignored,
            detail: InstanceDetail {
                addresses: addresses.to_vec(),
                // The runtime's plan knows which are eVIPs.
                advertised: 0,
                routes: Vec::new(),
                rules: Vec::new(),
                last_transition_unix: inst.last_transition().map(|(t, _)| {
                    let ago = Instant::now().saturating_duration_since(t);
                    std::time::SystemTime::now()
                        .checked_sub(ago)
                        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0.0, |d| d.as_secs_f64())
                }),
                nopreempt: !cfg.preempt,
                preempt_delay: cfg.preempt_delay.as_secs_f64(),
                lower_prio_no_advert: cfg.lower_prio_no_advert,
                higher_prio_send_advert: cfg.higher_prio_send_advert,
                skip_check_adv_addr: cfg.skip_check_same_sender,
                ipv6: cfg.family() == vipd_vrrp::wire::Family::V6,
                ifindex: 0,
                primary: Some(cfg.primary),
                initial_master: false,
                accept: true,
                auth_type: match cfg.auth {
                    vipd_vrrp::wire::Auth::None => 0,
                    vipd_vrrp::wire::Auth::Pass(_) => 1,
                    _ => 2,
                },
                up_since: st.up_since,
                master_reason: st.last_master_reason,
                protocol_error: st.last_protocol_error,
                mcast_group: (!cfg.is_unicast()).then(|| cfg.advert_group()),
                v3_checksum_as_v2: cfg.checksum == vipd_vrrp::wire::ChecksumVariant::VrrpOnly,
                garp_master_delay: cfg.garp.master_delay,
                // The runtime's plan knows these.
                promote_secondaries: false,
                notify: Default::default(),
            },
        }
    }
}

/// One real server in `vipd status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealServerStatus {
    /// (Written as text in JSON; kept as an address: 40,000 strings fewer at 2,000 × 20,
    /// and each publish compares them without formatting.)
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub up: bool,
    pub reason: String,
    /// `snmp_name` (KEEPALIVED-MIB's `realServerName`); not in `vipd status`.
    #[serde(skip)]
    pub snmp_name: Option<String>,
    /// Traffic to this real server (read every `snmp_rs_stats_update_interval`).
    pub stats: TrafficStats,
    /// Its weight now: a dynamic checker's, else the configured one (for SNMP; not in
    /// `vipd status`).
    #[serde(skip)]
    pub weight: u32,
    /// How many of its checkers fail now (for SNMP; not in `vipd status`).
    #[serde(skip)]
    pub failed_checks: u32,
    /// Its configuration as KEEPALIVED-MIB's realServerTable shows it.
    #[serde(skip)]
    pub settings: std::sync::Arc<RsSettings>,
}

/// A real server's configuration as KEEPALIVED-MIB's realServerTable shows it (its
/// own settings, else its virtual server's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RsSettings {
    /// realServerForwardingMethod: 1 nat, 2 dr, 3 tun.
    pub forward: u8,
    /// `uthreshold` / `lthreshold` (0 = none).
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    /// `inhibit_on_failure`.
    pub inhibit: bool,
    /// `notify_up` / `notify_down`, as words.
    pub notify_up: Option<Vec<String>>,
    pub notify_down: Option<Vec<String>>,
    pub virtualhost: Option<String>,
    pub alpha: bool,
    /// The timing keywords written in the real server, else in its virtual server.
    pub timing: vipd_config::model::CheckTiming,
    /// Whether its going down or up is mailed (`smtp_alert`, else
    /// `smtp_alert_checker` / `smtp_alert`, else yes).
    pub smtp_alert: bool,
}

/// A virtual or real server's traffic as the kernel counted it, read every
/// `snmp_vs_stats_update_interval` / `snmp_rs_stats_update_interval`: totals since the
/// destination was installed, and rates per second over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TrafficStats {
    /// Connections scheduled (IPVS; always 0 on nftables, which does not count them).
    pub conns: u64,
    /// Client → server.
    pub in_packets: u64,
    pub in_bytes: u64,
    /// Server → client (IPVS; 0 on nftables).
    pub out_packets: u64,
    pub out_bytes: u64,
    /// Connections now, active / inactive / persistent (IPVS' counts as last read; 0 on
    /// nftables).
    pub active_conns: u64,
    pub inactive_conns: u64,
    pub persistent_conns: u64,
    pub cps: u64,
    pub in_pps: u64,
    pub in_bps: u64,
    pub out_pps: u64,
    pub out_bps: u64,
}

/// One virtual server in `vipd status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualServerStatus {
    pub name: String,
    /// Forwarding now (its VIP is here).
    pub active: bool,
    pub quorum_up: bool,
    pub backend: String,
    pub real_servers: Vec<RealServerStatus>,
    /// The traffic of all its services (read every `snmp_vs_stats_update_interval`).
    pub stats: TrafficStats,
    /// What the service is, for KEEPALIVED-MIB's virtualServerTable; not in `vipd status`.
    #[serde(skip)]
    pub service: VsService,
}

/// A virtual server's service as KEEPALIVED-MIB describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VsService {
    /// virtualServerType: 1 fwmark, 2 ip, 3 group (0 not known).
    pub kind: u8,
    pub fwmark: u32,
    /// The group's name (`virtual_server group NAME`).
    pub group: Option<String>,
    pub addr: Option<std::net::IpAddr>,
    pub port: u16,
    /// virtualServerProtocol: 1 tcp, 2 udp, 3 sctp, 4 none (a firewall mark).
    pub protocol: u8,
    /// `snmp_name` (KEEPALIVED-MIB's `virtualServerName`).
    pub snmp_name: Option<String>,
    /// The rest of its configuration as KEEPALIVED-MIB's virtualServerTable shows it.
    pub settings: std::sync::Arc<VsSettings>,
    /// Its `sorry_server` (a realServerTable row of type sorry).
    pub sorry: Option<SorryServer>,
}

/// A virtual server's `sorry_server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SorryServer {
    pub addr: std::net::IpAddr,
    pub port: u16,
    /// 1 nat, 2 dr, 3 tun.
    pub forward: u8,
    /// Forwarded to now (the quorum is lost).
    pub in_use: bool,
}

/// A virtual server's configuration as KEEPALIVED-MIB's virtualServerTable shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VsSettings {
    /// virtualServerLoadBalancingAlgo: 1 rr, 2 wrr, ... 14 twos (the MIB's order).
    pub sched: u8,
    /// virtualServerLoadBalancingKind: 1 nat, 2 dr, 3 tun.
    pub forward: u8,
    /// Scheduler flags: `sh-fallback` / `mh-fallback`, `sh-port` / `mh-port`,
    /// `flag-3`, `ops`.
    pub fallback: bool,
    pub port: bool,
    pub sched3: bool,
    pub ops: bool,
    pub virtualhost: Option<String>,
    /// `persistence_timeout` in seconds and `persistence_granularity` as a prefix
    /// length.
    pub persistence: Option<(u32, u8)>,
    /// An IPv6 service (its granularity is virtualServerPersistGranularity6).
    pub ipv6: bool,
    /// The timing keywords written in the virtual server.
    pub timing: vipd_config::model::CheckTiming,
    pub ha_suspend: bool,
    pub alpha: bool,
    pub omega: bool,
    /// `inhibit_on_failure`.
    pub inhibit: bool,
    pub quorum: u32,
    pub hysteresis: u32,
    /// `quorum_up` / `quorum_down`, as words.
    pub quorum_up: Option<Vec<String>>,
    pub quorum_down: Option<Vec<String>>,
    /// Whether losing or regaining the quorum is mailed (`smtp_alert`, else
    /// `smtp_alert_checker` / `smtp_alert`, else no).
    pub smtp_alert: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn a_real_servers_address_is_text_in_json() {
        for (addr, text) in [
            (std::net::IpAddr::from([192, 0, 2, 11]), "192.0.2.11"),
            ("2001:db8::b".parse().unwrap(), "2001:db8::b"),
        ] {
            let rs = RealServerStatus {
                addr,
                port: 80,
                up: true,
                reason: String::new(),
                snmp_name: None,
                stats: TrafficStats::default(),
                weight: 1,
                failed_checks: 0,
                settings: Default::default(),
            };
            let json = serde_json::to_value(&rs).unwrap();
            assert_eq!(json["addr"], text);
        }
    }

    #[test]
    fn io_errors_count_by_op_and_errno_but_never_eagain() {
        let mut e = IoErrors::default();
        let nobufs = io::Error::from_raw_os_error(libc::ENOBUFS);
        assert!(e.count("receive", &nobufs), "first of a kind is reported");
        assert!(!e.count("receive", &nobufs), "the next ones only count");
        assert!(e.count(
            "announce_send",
            &io::Error::from_raw_os_error(libc::ENETDOWN)
        ));
        assert!(!e.count("receive", &io::Error::from_raw_os_error(libc::EAGAIN)));
        assert!(!e.count("receive", &io::Error::from(io::ErrorKind::WouldBlock)));
        assert_eq!(e.get("receive", "ENOBUFS"), 2);
        assert_eq!(e.get("announce_send", "ENETDOWN"), 1);
        assert_eq!(e.get("receive", "EAGAIN"), 0);
        // In `vipd status --json`.
        let snap = Snapshot {
            io_errors: e.lines(),
            ..Default::default()
        };
        let v = serde_json::to_value(&snap).unwrap();
        assert_eq!(
            v["io_errors"],
            serde_json::json!([
                {"op": "announce_send", "reason": "ENETDOWN", "count": 1},
                {"op": "receive", "reason": "ENOBUFS", "count": 2},
            ])
        );
    }

    /// A real GARP send error, as the protocol thread meets it: an AF_PACKET send to an
    /// interface that is gone, counted under its errno.
    #[test]
    fn a_failed_announcement_send_is_counted_by_errno() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let sock = crate::packet::PacketSocket::open().unwrap();
        let frame = [0xffu8; 60];
        let err = sock
            .send(0x7fff_fff0, &frame)
            .expect_err("no such interface");
        let mut e = IoErrors::default();
        assert!(e.count("announce_send", &err));
        let reason = IoErrors::reason(&err);
        assert!(reason.starts_with('E'), "errno name, got {reason}");
        assert_eq!(e.get("announce_send", &reason), 1);
    }
}
