//! Typed model of the parts of keepalived.conf that vipd understands.
//!
//! Values here are as written in the file (with keepalived's defaults applied where the
//! file is silent); turning them into protocol-engine settings is the runtime's job.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a config item came from, for diagnostics raised after parsing.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Config {
    pub global: GlobalDefs,
    pub instances: Vec<VrrpInstance>,
}

/// GARP/NA timing knobs; every field is `None` when the file does not set it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct GarpSettings {
    /// `garp_master_delay` / `vrrp_garp_master_delay` (seconds, 0 = no second burst). keepalived default 5.
    pub master_delay: Option<Duration>,
    /// `garp_master_repeat` / `vrrp_garp_master_repeat`. keepalived default 5.
    pub master_repeat: Option<u32>,
    /// `garp_lower_prio_delay` / `vrrp_garp_lower_prio_delay`. default: master_delay.
    pub lower_prio_delay: Option<Duration>,
    /// `garp_lower_prio_repeat` / `vrrp_garp_lower_prio_repeat`. default: master_repeat.
    pub lower_prio_repeat: Option<u32>,
    /// `garp_master_refresh` / `vrrp_garp_master_refresh` (seconds, 0 = never). default 0.
    pub master_refresh: Option<Duration>,
    /// `garp_master_refresh_repeat` / `vrrp_garp_master_refresh_repeat`. default 1.
    pub master_refresh_repeat: Option<u32>,
    /// `garp_interval` / `vrrp_garp_interval`: gap between GARPs on an interface (decimal seconds).
    pub garp_interval: Option<Duration>,
    /// `gna_interval` / `vrrp_gna_interval`: gap between unsolicited NAs on an interface.
    pub gna_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct GlobalDefs {
    pub router_id: Option<String>,
    /// `vrrp_version 2|3`; `None` = keepalived's default (2 for IPv4, 3 for IPv6).
    pub vrrp_version: Option<u8>,
    pub garp: GarpSettings,
    /// `vrrp_min_garp [bool]`: one GARP, no second burst.
    pub vrrp_min_garp: bool,
    /// `vrrp_rt_priority 1..99`: SCHED_RR priority for the protocol thread.
    pub vrrp_rt_priority: Option<u8>,
    /// `vrrp_lower_prio_no_advert [bool]`.
    pub lower_prio_no_advert: bool,
    /// `vrrp_higher_prio_send_advert [bool]`.
    pub higher_prio_send_advert: bool,
    /// `vrrp_check_unicast_src`.
    pub check_unicast_src: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum InitialState {
    Master,
    Backup,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Auth {
    /// `auth_type PASS` with `auth_pass` (only the first 8 bytes go on the wire).
    Pass(String),
    /// `auth_type AH`: parsed, rejected later as unsupported.
    Ah(String),
}

/// One `virtual_ipaddress` line: `<IPADDR>[/<MASK>] [brd <IPADDR>] [dev <STRING>] [scope <SCOPE>] [label <LABEL>]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VirtualAddress {
    pub addr: IpAddr,
    /// Defaults to 32 (IPv4) / 128 (IPv6) when no mask is written, as keepalived does.
    pub prefix_len: u8,
    pub brd: Option<IpAddr>,
    pub dev: Option<String>,
    /// `host|link|site|global|nowhere` or a number; `None` = global.
    pub scope: Option<String>,
    pub label: Option<String>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnicastPeer {
    pub addr: IpAddr,
    pub min_ttl: Option<u8>,
    pub max_ttl: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VrrpInstance {
    pub name: String,
    pub span: Span,
    pub state: InitialState,
    pub interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    /// `advert_int`, decimal seconds; default 1 s.
    pub advert_int: Duration,
    /// `version 2|3` on the instance; `None` = use global / family default.
    pub version: Option<u8>,
    pub virtual_ipaddress: Vec<VirtualAddress>,
    pub nopreempt: bool,
    pub preempt_delay: Duration,
    /// `accept` / `no_accept`; `None` = keepalived default (accept unless strict).
    pub accept: Option<bool>,
    pub auth: Option<Auth>,
    pub mcast_src_ip: Option<IpAddr>,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peers: Vec<UnicastPeer>,
    pub unicast_ttl: Option<u8>,
    pub check_unicast_src: bool,
    /// keepalived's RFC-9568 style v3 IPv4 checksum without pseudo-header.
    pub v3_checksum_as_v2: bool,
    pub garp: GarpSettings,
    pub lower_prio_no_advert: Option<bool>,
    pub higher_prio_send_advert: Option<bool>,
    /// `down_timer_adverts 1..100`, default 3.
    pub down_timer_adverts: Option<u8>,
}
