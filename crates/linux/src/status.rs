//! A read-only picture of the running instances, published by the protocol thread
//! and read by the control socket.

use crate::netlink::AddressSpec;
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
    /// What keepalived-style dumps (SIGUSR1, JSON) show besides; not in `vipd status`.
    #[serde(skip)]
    pub detail: InstanceDetail,
}

/// Settings and times of an instance that only the signal dumps show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceDetail {
    /// The VIPs as the kernel gets them (interface index, scope, label).
    pub addresses: Vec<AddressSpec>,
    /// `last_transition` in seconds since the Unix epoch.
    pub last_transition_unix: Option<f64>,
    pub nopreempt: bool,
    pub preempt_delay: f64,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    /// `skip_check_adv_addr`.
    pub skip_check_adv_addr: bool,
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
            detail: InstanceDetail {
                addresses: addresses.to_vec(),
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
            },
        }
    }
}

/// One real server in `vipd status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealServerStatus {
    pub addr: String,
    pub port: u16,
    pub up: bool,
    pub reason: String,
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
}
