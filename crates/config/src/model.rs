//! Typed model of the parts of keepalived.conf that vipd understands.
//!
//! Values here are as written in the file (with keepalived's defaults applied where the
//! file is silent); turning them into protocol-engine settings is the runtime's job.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where a config item came from, for diagnostics raised after parsing.
///
/// `file` is shared: every token of a file points at one allocation of its path (a
/// large config has hundreds of thousands of tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub file: Arc<Path>,
    pub line: u32,
    pub col: u32,
}

thread_local! {
    /// Set while [`crate::fingerprint_without_spans`] serializes: spans become a unit value.
    pub(crate) static SPANS_HIDDEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        if SPANS_HIDDEN.with(|h| h.get()) {
            return s.serialize_unit();
        }
        let mut st = s.serialize_struct("Span", 3)?;
        st.serialize_field("file", &*self.file)?;
        st.serialize_field("line", &self.line)?;
        st.serialize_field("col", &self.col)?;
        st.end()
    }
}

impl Default for Span {
    fn default() -> Self {
        Span {
            file: Arc::from(Path::new("")),
            line: 0,
            col: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Config {
    pub global: GlobalDefs,
    pub instances: Vec<VrrpInstance>,
    /// `vrrp_script NAME { ... }`.
    pub scripts: Vec<VrrpScript>,
    /// `track_file` / `vrrp_track_file NAME { ... }`.
    pub track_files: Vec<TrackFile>,
    /// `track_process` / `vrrp_track_process NAME { ... }`.
    pub track_processes: Vec<TrackProcess>,
    pub bfd_instances: Vec<BfdInstance>,
    pub sync_groups: Vec<SyncGroup>,
    /// `garp_group { ... }`: GARP / NA pacing shared by a set of interfaces.
    pub garp_groups: Vec<GarpGroup>,
    /// `track_group NAME { group { INSTANCE ... } }`.
    pub track_groups: Vec<TrackGroup>,
    /// `linkbeat_interfaces { IF [MII|ETHTOOL|IOCTL] }`: the interface names.
    pub linkbeat_interfaces: Vec<String>,
    pub static_ipaddress: Vec<VirtualAddress>,
    /// `static_routes`: installed at start, kept while vipd runs.
    pub static_routes: Vec<Route>,
    /// `static_rules`: likewise.
    pub static_rules: Vec<Rule>,
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    pub virtual_servers: Vec<VirtualServer>,
    /// The top-level `SSL { }` block: SSL_GET's TLS client settings.
    pub ssl: Option<SslContext>,
}

/// `garp_group { garp_interval D gna_interval D interface IF | interfaces { IF ... } }`:
/// the gap between consecutive gratuitous ARPs (unsolicited NAs) sent on any of
/// `interfaces`, whichever instance sends them. An interval the block does not set
/// means no pacing of that family on these interfaces (keepalived: the global
/// `vrrp_garp_interval` applies only to interfaces in no group).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GarpGroup {
    pub garp_interval: Option<Duration>,
    pub gna_interval: Option<Duration>,
    /// The interfaces this group paces (an interface already in an earlier group is
    /// left out, as keepalived ignores it).
    pub interfaces: Vec<String>,
    /// The `garp_group` keyword.
    pub span: Span,
}

/// `track_group NAME { group { VI_1 VI_2 } }`: the instances that go to FAULT while
/// a static address, route or rule naming this group cannot be restored (its
/// interface is down or gone).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackGroup {
    pub name: String,
    pub instances: Vec<String>,
    /// The group's name.
    pub span: Span,
}

/// `SSL { password ca certificate key }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SslContext {
    /// Of an encrypted `key`.
    pub password: Option<String>,
    /// CA file (PEM).
    pub ca: Option<SslFile>,
    /// Client certificate chain (PEM), presented to real servers that ask for one.
    pub certificate: Option<SslFile>,
    /// The certificate's private key (PEM).
    pub key: Option<SslFile>,
    /// The `SSL` keyword.
    pub span: Span,
}

/// A file named in the `SSL` block, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SslFile {
    pub path: String,
    /// The file name's token.
    pub span: Span,
}

/// One line of `track_interface`, `track_script`, `track_file`, `track_process` or
/// `track_bfd`: `NAME [weight N [reverse|noreverse]]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tracked {
    pub name: String,
    /// `None`: the tracked object's own (default) weight applies.
    pub weight: Option<i64>,
    pub reverse: bool,
    /// `noreverse` was written (for `track_bfd`, where keepalived lets it override the
    /// bfd_instance's `reverse`).
    pub noreverse: bool,
    pub span: Span,
}

/// A script keyword's value (`notify_master`, `notify_up`, `quorum_down`, ...):
/// keepalived's `<STRING>|<QUOTED-STRING> [username [groupname]]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScriptCommand {
    /// The command line (first word: the program).
    pub command: String,
    /// `username [groupname]` to run it as (over `script_user`).
    pub user: Option<String>,
}

impl ScriptCommand {
    /// A command run as the default script user.
    pub fn new(command: impl Into<String>) -> ScriptCommand {
        ScriptCommand {
            command: command.into(),
            user: None,
        }
    }
}

/// `garp_extra_if [all] SECS`: while MASTER, one gratuitous ARP / NA every `interval`
/// seconds on each interface of the VIPs other than the instance's (keepalived: on
/// per-address VMACs, or with `all` on every such interface). 0: off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GarpExtraIf {
    pub interval: u32,
    pub all: bool,
}

/// A part of a model struct that most configurations leave at its default, kept out of
/// line: unset it costs one pointer instead of its whole size (issue 16: a
/// 5,000-instance configuration's `VrrpInstance`s were 1,152 bytes each, 600 of them
/// notify scripts, GARP knobs and VMAC/ipvlan/HMAC options hardly anyone writes).
/// Reads see `T::default()` while unset; the first mutable access stores one. Compares,
/// prints and serializes as the `T` it stands for, so dumps and fingerprints are
/// unchanged.
#[derive(Clone, Default)]
pub struct Rare<T>(Option<Box<T>>);

/// Types that can live in a [`Rare`]: a shared default to show while unset.
pub trait RareDefault: Default + Send + Sync + 'static {
    fn default_ref() -> &'static Self;
}

macro_rules! rare_default {
    ($($t:ty),*) => {$(
        impl RareDefault for $t {
            fn default_ref() -> &'static Self {
                static DEFAULT: std::sync::OnceLock<$t> = std::sync::OnceLock::new();
                DEFAULT.get_or_init(Default::default)
            }
        }
    )*};
}
rare_default!(
    Notify,
    GarpSettings,
    Option<AuthHmac>,
    Option<UseVmac>,
    Option<UseIpvlan>,
    Option<BfdTakeover>
);

impl<T: RareDefault + PartialEq> From<T> for Rare<T> {
    /// A default value is stored as unset (no allocation).
    fn from(v: T) -> Self {
        Rare((v != *T::default_ref()).then(|| Box::new(v)))
    }
}

impl<T: RareDefault> std::ops::Deref for Rare<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.0 {
            Some(v) => v,
            None => T::default_ref(),
        }
    }
}

impl<T: RareDefault> std::ops::DerefMut for Rare<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Default::default)
    }
}

impl<T: RareDefault + PartialEq> PartialEq for Rare<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: RareDefault + Eq> Eq for Rare<T> {}

impl<T: RareDefault + std::fmt::Debug> std::fmt::Debug for Rare<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: RareDefault + serde::Serialize> serde::Serialize for Rare<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

/// Notification scripts (`notify_*`), as written (script and optional user/group).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Notify {
    pub master: Option<ScriptCommand>,
    pub backup: Option<ScriptCommand>,
    pub fault: Option<ScriptCommand>,
    pub stop: Option<ScriptCommand>,
    pub deleted: Option<ScriptCommand>,
    pub notify: Option<ScriptCommand>,
    pub master_rx_lower_pri: Option<ScriptCommand>,
    /// `notify_priority_changes [BOOL]`: `MASTER_PRIORITY` / `BACKUP_PRIORITY` lines on
    /// the notify FIFOs (unset: the sync group's, then `vrrp_notify_priority_changes`).
    pub priority_changes: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VrrpScript {
    pub name: String,
    pub span: Span,
    /// The command line (first word: the program).
    pub script: String,
    /// Default 1 s.
    pub interval: Duration,
    pub timeout: Option<Duration>,
    /// Default 0: a failing script puts the instance in FAULT.
    pub weight: i64,
    pub reverse: bool,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub user: Option<String>,
    pub init_fail: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackFile {
    pub name: String,
    pub span: Span,
    pub file: String,
    /// Default 1.
    pub weight: i64,
    pub reverse: bool,
    /// `init_file [VALUE] [overwrite]` as written.
    pub init_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrackProcess {
    pub name: String,
    pub span: Span,
    pub process: Vec<String>,
    pub param_match: Option<String>,
    /// Default 1.
    pub weight: i64,
    pub reverse: bool,
    /// Default 1.
    pub quorum: u32,
    pub quorum_max: Option<u32>,
    pub fork_delay: Option<Duration>,
    pub terminate_delay: Option<Duration>,
    pub full_command: bool,
}

/// `bfd_instance NAME { ... }` with keepalived 2.4.3's defaults filled in. Intervals in
/// microseconds (keepalived reads milliseconds with 3 decimals).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BfdInstance {
    pub name: String,
    pub span: Span,
    /// `neighbor_ip` / `neighbour_ip`; a block without one is an error.
    pub neighbor_ip: Option<IpAddr>,
    pub source_ip: Option<IpAddr>,
    /// `min_rx`: Required Min RX Interval (default 10 ms).
    pub min_rx_us: u32,
    /// `min_tx`: Desired Min TX Interval while Up (default 10 ms).
    pub min_tx_us: u32,
    /// `idle_tx`: Desired Min TX Interval while not Up (default 1 s, at least 1 s).
    pub idle_tx_us: u32,
    /// `multiplier`: Detect Mult (default 5).
    pub multiplier: u8,
    pub passive: bool,
    /// `ttl` / `hoplimit` sent: keepalived's defaults are 255 for IPv4 and 64 for IPv6.
    pub ttl: u8,
    /// `max_hops`: how far below `ttl` a received TTL / hop limit may be (default 0;
    /// `-1` or 255: no check); never above `ttl`, as keepalived caps it.
    pub max_hops: u8,
    /// `multihop` (keepalived 2.4): RFC 5883, port 4784.
    pub multihop: bool,
    /// `weight N [reverse]`: the default weight of `track_bfd` entries naming it.
    pub weight: i64,
    pub reverse: bool,
    /// `vrrp` / `checker`: where events go; both when neither is given.
    pub to_vrrp: bool,
    pub to_checker: bool,
}

impl BfdInstance {
    /// keepalived: 255 for IPv4 neighbours, 64 for IPv6.
    pub const DEFAULT_TTL_V4: u8 = 255;
    pub const DEFAULT_HOPLIMIT_V6: u8 = 64;

    /// The lowest TTL / hop limit accepted on receipt (`ttl - max_hops`); `None` when
    /// `max_hops` is 255 (no check), as keepalived.
    pub fn min_rx_ttl(&self) -> Option<u8> {
        (self.max_hops != u8::MAX).then(|| self.ttl.saturating_sub(self.max_hops))
    }

    /// UDP destination port: 3784, or 4784 with `multihop`.
    pub fn port(&self) -> u16 {
        if self.multihop {
            4784
        } else {
            3784
        }
    }
}

/// `use_vmac [[name] NAME] [MAC] [netlink_notify_msg] [group GROUP]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UseVmac {
    /// The macvlan's name; `None`: `vrrp.VRID`.
    pub name: Option<String>,
    /// A MAC of the operator's instead of the virtual router MAC: six octets, or five
    /// followed by the VRID (`VmacAddress::UseVrid`).
    pub mac: Option<VmacAddress>,
    /// `netlink_notify_msg`: keepalived forces a netlink message for the base interface
    /// (a kernel gap it works around); vipd reads link state without it.
    pub netlink_notify_msg: bool,
    /// `group`: the link group of the macvlan; `None`: the base interface's group.
    pub group: Option<u32>,
}

/// `use_ipvlan [[name] NAME] [ADDRESS[/LEN]] [bridge|private|vepa] [group GROUP]`: an L2
/// ipvlan on the instance's interface (the interface's own MAC) that the VIPs live on
/// and adverts use.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UseIpvlan {
    /// `None`: `vrrp.VRID`.
    pub name: Option<String>,
    /// The ipvlan's own address, also the adverts' source (required for IPv4).
    pub addr: Option<(IpAddr, u8)>,
    pub mode: IpvlanMode,
    /// The link group; `None`: the base interface's.
    pub group: Option<u32>,
}

/// How the ipvlan's slaves on one interface reach each other (IPVLAN_F_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum IpvlanMode {
    #[default]
    Bridge,
    Private,
    Vepa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum VmacAddress {
    Full([u8; 6]),
    /// Five octets; the VRID is the sixth.
    UseVrid([u8; 5]),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Tracking {
    pub interfaces: Vec<Tracked>,
    pub scripts: Vec<Tracked>,
    pub files: Vec<Tracked>,
    pub processes: Vec<Tracked>,
    pub bfds: Vec<Tracked>,
}

impl Tracking {
    /// Every tracked object with its kind (`track_script`, ...).
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &Tracked)> {
        let kinds: [(&'static str, &Vec<Tracked>); 5] = [
            ("track_interface", &self.interfaces),
            ("track_script", &self.scripts),
            ("track_file", &self.files),
            ("track_process", &self.processes),
            ("track_bfd", &self.bfds),
        ];
        kinds
            .into_iter()
            .flat_map(|(k, v)| v.iter().map(move |t| (k, t)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncGroup {
    pub name: String,
    pub span: Span,
    pub group: Vec<String>,
    pub track: Tracking,
    pub notify: Notify,
    pub smtp_alert: Option<bool>,
    pub global_tracking: bool,
    pub sync_group_tracking_weight: bool,
}

/// One `virtual_server_group` line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum VsgEntry {
    /// `ADDR[-LAST] [PORT]`: `last` is the last value of the final octet (IPv4) or
    /// hextet (IPv6) of the range.
    Range {
        first: IpAddr,
        last: Option<u16>,
        port: Option<u16>,
    },
    Fwmark {
        mark: u32,
        family: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VirtualServerGroup {
    pub name: String,
    pub span: Span,
    pub entries: Vec<VsgEntry>,
}

/// What a `virtual_server` line names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum VsKey {
    Addr { addr: IpAddr, port: Option<u16> },
    Fwmark { mark: u32, family: Option<String> },
    Group(String),
}

/// Health-check timing shared by virtual servers, real servers and checkers (each
/// level inherits from the one above when silent).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CheckTiming {
    pub connect_timeout: Option<Duration>,
    /// `retry` (old spelling `nb_get_retry`).
    pub retry: Option<u32>,
    pub delay_before_retry: Option<Duration>,
    pub warmup: Option<Duration>,
    pub delay_loop: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Url {
    pub path: Option<String>,
    pub digest: Option<String>,
    /// As written, e.g. `200-299 301`.
    pub status_code: Option<String>,
    pub virtualhost: Option<String>,
    pub regex: Option<String>,
    /// `regex_no_match`: a match fails the check.
    pub regex_no_match: bool,
    /// `regex_options`: PCRE2 option names, as written.
    pub regex_options: Option<String>,
    /// `regex_min_offset`: where in the body the search starts.
    pub regex_min_offset: Option<u64>,
    /// `regex_max_offset`: the last body offset a match may start at.
    pub regex_max_offset: Option<u64>,
    /// `tls_compliant` (SSL_GET): this URL's TLS session ends with close_notify.
    pub tls_compliant: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checker {
    /// `HTTP_GET`, `SSL_GET`, `TCP_CHECK`, `UDP_CHECK`, `DNS_CHECK`, `SMTP_CHECK`,
    /// `MISC_CHECK`, `PING_CHECK` (`ICMP_CHECK`), `FILE_CHECK` or `BFD_CHECK`.
    pub kind: String,
    pub span: Span,
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub timing: CheckTiming,
    /// HTTP_GET / SSL_GET.
    pub urls: Vec<Url>,
    /// Kind-specific settings (`misc_path`, `helo_name`, `type`, `name`, `payload`,
    /// `track_file`, `http_protocol`, ...), values as written.
    pub options: std::collections::BTreeMap<String, String>,
    /// SMTP_CHECK's `host { }` blocks: each is checked, all must pass.
    pub hosts: Vec<CheckHost>,
}

/// One `host { }` block of an SMTP_CHECK: where to connect instead of the checker's
/// own target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckHost {
    pub span: Span,
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub connect_timeout: Option<Duration>,
    /// Other keywords written in the block (not honoured there), with where.
    pub other: Vec<(String, Span)>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RealServer {
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub span: Span,
    /// Default 1.
    pub weight: i64,
    /// `lvs_method` (old spelling `lb_kind`).
    pub lb_kind: Option<String>,
    pub inhibit_on_failure: Option<bool>,
    pub notify_up: Option<ScriptCommand>,
    pub notify_down: Option<ScriptCommand>,
    pub uthreshold: Option<u32>,
    pub lthreshold: Option<u32>,
    /// Default Host header of this server's HTTP_GET/SSL_GET checkers.
    pub virtualhost: Option<String>,
    /// `alpha` for this server's checkers (over the virtual server's).
    pub alpha: Option<bool>,
    /// `smtp_alert`: mail when this server goes down or up.
    pub smtp_alert: Option<bool>,
    /// `snmp_name`: KEEPALIVED-MIB's `realServerName`.
    pub snmp_name: Option<String>,
    pub timing: CheckTiming,
    pub checkers: Vec<Checker>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VirtualServer {
    pub key: VsKey,
    pub span: Span,
    /// `lvs_sched` (old spelling `lb_algo`).
    pub lb_algo: Option<String>,
    /// `lvs_method` (old spelling `lb_kind`).
    pub lb_kind: Option<String>,
    pub protocol: Option<String>,
    pub persistence_timeout: Option<u32>,
    pub persistence_granularity: Option<String>,
    /// `persistence_engine NAME`, with where the keyword was written.
    pub persistence_engine: Option<(String, Span)>,
    pub quorum: Option<u32>,
    pub hysteresis: Option<u32>,
    pub quorum_up: Option<ScriptCommand>,
    pub quorum_down: Option<ScriptCommand>,
    pub sorry_server: Option<(IpAddr, Option<u16>)>,
    pub sorry_server_inhibit: Option<bool>,
    /// `sorry_server_lvs_method` (old spelling `sorry_server_lb_kind`).
    pub sorry_server_lb_kind: Option<String>,
    /// Scheduler flags as written: `flag-1`, `flag-2`, `flag-3`, `sh-port`,
    /// `sh-fallback`, `mh-port`, `mh-fallback`, each with where it was written.
    pub sched_flags: Vec<(String, Span)>,
    /// `ops`: one-packet scheduling.
    pub ops: bool,
    pub ip_family: Option<String>,
    pub ha_suspend: bool,
    pub alpha: bool,
    pub omega: bool,
    pub inhibit_on_failure: Option<bool>,
    pub virtualhost: Option<String>,
    /// `smtp_alert`: mail when the quorum is lost or gained.
    pub smtp_alert: Option<bool>,
    /// `snmp_name`: KEEPALIVED-MIB's `virtualServerName`.
    pub snmp_name: Option<String>,
    pub timing: CheckTiming,
    pub real_servers: Vec<RealServer>,
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
    /// `vrrp_skip_check_adv_addr`: default of the instances' `skip_check_adv_addr`.
    pub skip_check_adv_addr: bool,
    /// `vrrp_strict`: keepalived's strict RFC mode (default of `strict_mode`).
    pub vrrp_strict: bool,
    /// `nftables [TABLENAME]`: the name of the `no_accept` drop tables (`None`, or the
    /// keyword without a name: vipd's `vipd_vrrp`).
    pub nftables_table: Option<String>,
    /// `nftables_priority`: the drop chain's hook priority (default -1).
    pub nftables_priority: Option<i32>,
    /// `nftables_counters`: a counter on each drop-table rule.
    pub nftables_counters: bool,
    pub script_user: Option<String>,
    pub enable_script_security: bool,
    /// `notify_fifo PATH`: VRRP state lines and load-balancer (`VS` / `RS`) lines.
    pub notify_fifo: Option<String>,
    /// `vrrp_notify_fifo PATH`: VRRP state lines only.
    pub vrrp_notify_fifo: Option<String>,
    /// `lvs_notify_fifo PATH`: load-balancer lines only.
    pub lvs_notify_fifo: Option<String>,
    pub notification_email: Vec<String>,
    pub notification_email_from: Option<String>,
    /// `smtp_server HOST [PORT]` as written.
    pub smtp_server: Option<String>,
    pub smtp_helo_name: Option<String>,
    /// `smtp_connect_timeout` in seconds.
    pub smtp_connect_timeout: Option<u32>,
    /// `smtp_alert`: default of every alert switch below.
    pub smtp_alert: Option<bool>,
    /// `smtp_alert_vrrp`: default of `vrrp_instance` / `vrrp_sync_group` `smtp_alert`.
    pub smtp_alert_vrrp: Option<bool>,
    /// `smtp_alert_checker`: default of `virtual_server` / `real_server` `smtp_alert`.
    pub smtp_alert_checker: Option<bool>,
    /// `no_email_faults`: no mail for FAULT transitions.
    pub no_email_faults: bool,
    /// `vrrp_priority` / `checker_priority`: nice value of the protocol / checker thread.
    pub vrrp_priority: Option<i32>,
    pub checker_priority: Option<i32>,
    /// `checker_rt_priority`: SCHED_RR priority of the checker thread.
    pub checker_rt_priority: Option<u8>,
    /// `vrrp_cpu_affinity` / `checker_cpu_affinity`: the CPUs the protocol / checker
    /// thread may run on (empty: any).
    pub vrrp_cpu_affinity: Vec<u16>,
    pub checker_cpu_affinity: Vec<u16>,
    /// `bfd_cpu_affinity`: the CPUs the BFD thread runs on (empty: any).
    pub bfd_cpu_affinity: Vec<u16>,
    /// `vrrp_rlimit_rttime` / `checker_rlimit_rttime` / `bfd_rlimit_rttime` in µs: vipd's
    /// RLIMIT_RTTIME (one process: see `vipd_exec::tuning::rttime_limit`).
    pub vrrp_rlimit_rttime: Option<u32>,
    pub checker_rlimit_rttime: Option<u32>,
    pub bfd_rlimit_rttime: Option<u32>,
    /// `max_auto_priority [N]`: the highest SCHED_RR priority the protocol thread raises
    /// itself to when it runs late (0: never; `-1` is 0 too, a bare keyword is 99).
    pub max_auto_priority: u8,
    /// `min_auto_priority_delay` in µs: how late a timer must run before that.
    pub min_auto_priority_delay: Option<u32>,
    /// `startup_script SCRIPT [user [group]]`: run (and waited for, at most
    /// `startup_script_timeout` seconds, default 10) before anything starts.
    pub startup_script: Option<ScriptCommand>,
    pub startup_script_timeout: Option<u32>,
    /// `shutdown_script`: run after everything stopped (`shutdown_script_timeout`).
    pub shutdown_script: Option<ScriptCommand>,
    pub shutdown_script_timeout: Option<u32>,
    /// `reload_file [PATH]`: created (or truncated) before a reload reads the files and
    /// removed once they are read. `Some("")`: the default, `keepalived.reload` next to
    /// the pid file.
    pub reload_file: Option<String>,
    /// `reload_time_file PATH` / `reload_repeat`: a reload at the time the file names.
    pub reload_time_file: Option<String>,
    pub reload_repeat: bool,
    /// `rs_init_notifies`: real servers up at start-up run their UP notifies.
    pub rs_init_notifies: bool,
    /// `vrrp_garp_extra_if [all] SECS`: the instances' default `garp_extra_if`.
    pub garp_extra_if: Option<GarpExtraIf>,
    /// `disable_local_igmp`: `net.ipv4.igmp_link_local_mcast_reports = 0` while vipd runs.
    pub disable_local_igmp: bool,
    /// `enable_dbus`: serve keepalived's `org.keepalived.Vrrp1` DBus interface on the
    /// system bus.
    pub enable_dbus: bool,
    /// `dbus_service_name NAME`: the bus name owned (default `org.keepalived.Vrrp1`).
    pub dbus_service_name: Option<String>,
    /// `dbus_no_interface_name NAME`: the interface part of the DBus object path of an
    /// instance without `interface` (default `none`).
    pub dbus_no_interface_name: Option<String>,
    /// `enable_snmp_vrrp` (and its old name `enable_snmp_keepalived`): KEEPALIVED-MIB's
    /// global scalars and VRRP part over AgentX.
    pub enable_snmp_vrrp: bool,
    /// `enable_snmp_checker`: KEEPALIVED-MIB's virtual and real server tables.
    pub enable_snmp_checker: bool,
    /// `enable_snmp_rfcv2` (or `enable_snmp_rfc`): VRRP-MIB (RFC 2787) for VRRPv2 instances.
    pub enable_snmp_rfcv2: bool,
    /// `enable_snmp_rfcv3` (or `enable_snmp_rfc`): VRRPv3-MIB (RFC 6527).
    pub enable_snmp_rfcv3: bool,
    /// `enable_traps`: SNMP notifications of the MIBs enabled.
    pub enable_traps: bool,
    /// `snmp_socket`: the AgentX master's address (default `unix:/var/agentx/master`).
    pub snmp_socket: Option<String>,
    /// `snmp_vs_stats_update_interval`: how old the virtual servers' traffic counters
    /// (SNMP, `vipd status`) may get before they are read again (default 30 s).
    pub snmp_vs_stats_update_interval: Option<Duration>,
    /// `snmp_rs_stats_update_interval`: the same for the real servers' counters.
    pub snmp_rs_stats_update_interval: Option<Duration>,
    /// `vmac_prefix`: the prefix of VMAC / ipvlan names vipd makes up (`PREFIX.VRID`).
    pub vmac_prefix: Option<String>,
    /// `vmac_addr_prefix`: the prefix of `use_vmac_addr`'s VMAC names (default
    /// `vmac_prefix`).
    pub vmac_addr_prefix: Option<String>,
    /// `dynamic_interfaces`: interfaces may be missing at start-up (their instances are
    /// in FAULT, their addresses and routes wait until they appear).
    pub dynamic_interfaces: bool,
    /// `dynamic_interfaces allow_if_changes` (vipd re-reads a re-created interface
    /// whatever its type, with or without it).
    pub allow_if_changes: bool,
    /// `fifo_write_vrrp_states_on_reload`: the unchanged states on the FIFOs after a reload.
    pub fifo_write_vrrp_states_on_reload: bool,
    /// `vrrp_notify_priority_changes`: the instances' default `notify_priority_changes`.
    pub vrrp_notify_priority_changes: bool,
    /// `vrrp_no_swap` / `checker_no_swap`: lock vipd's memory (one process for both).
    pub vrrp_no_swap: bool,
    pub checker_no_swap: bool,
    /// `bfd_priority` / `bfd_rt_priority` / `bfd_no_swap`: the BFD thread's nice value,
    /// SCHED_RR priority, and memory locking (vipd is one process: it locks it all).
    pub bfd_priority: Option<i32>,
    pub bfd_rt_priority: Option<u8>,
    pub bfd_no_swap: bool,
    /// `umask NUMBER|BITS` as written.
    pub umask: Option<String>,
    pub vrrp_mcast_group4: Option<IpAddr>,
    pub vrrp_mcast_group6: Option<IpAddr>,
    /// `vrrp_owner_ignore_adverts`: default of the instances' `owner_ignore_adverts`.
    pub owner_ignore_adverts: bool,
    /// `v3_checksum_as_v2`: default of the instances' `v3_checksum_as_v2`.
    pub v3_checksum_as_v2: bool,
    /// `default_interface`: the `dev` of static addresses that name none.
    pub default_interface: Option<String>,
    /// `vrrp_startup_delay`: VRRP instances start this long after vipd.
    pub vrrp_startup_delay: Option<Duration>,
    /// `vrrp_delay_after_boot`: VRRP instances start no earlier than this long after
    /// the host booted (the longer of the two delays wins).
    pub vrrp_delay_after_boot: Option<Duration>,
    /// `vrrp_down_timer_adverts 1..100`: the instances' `down_timer_adverts` unless they
    /// set their own.
    pub vrrp_down_timer_adverts: Option<u8>,
    /// `checker_log_all_failures [BOOL]`: every checker logs each failed check, not only
    /// state changes (a checker's own `log_all_failures` wins).
    pub checker_log_all_failures: bool,
    /// `notify_fifo_script` / `vrrp_notify_fifo_script` / `lvs_notify_fifo_script`:
    /// started with its FIFO's name as its last argument, to read it.
    pub notify_fifo_script: Option<ScriptCommand>,
    pub vrrp_notify_fifo_script: Option<ScriptCommand>,
    pub lvs_notify_fifo_script: Option<ScriptCommand>,
    /// `use_symlink_paths`: `enable_script_security` checks a script's path as
    /// written instead of the file its symbolic links lead to.
    pub use_symlink_paths: bool,
    /// Where SIGUSR1 / SIGUSR2 / the JSON signal write their files.
    pub dumps: DumpSettings,
    /// `config_save_dir DIR`: copies of the configuration read and state dumps around
    /// each reload are kept there.
    pub config_save_dir: Option<String>,
    /// `lvs_sync_daemon` (or an instance's old `lvs_sync_daemon_interface`): the
    /// connection sync between directors.
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    /// `lvs_flush`: remove every IPVS service (vipd's or not) when the load balancer
    /// starts.
    pub lvs_flush: bool,
    /// `lvs_flush_on_stop [VS]`: how the IPVS table is removed when vipd stops.
    pub lvs_flush_on_stop: Option<LvsFlushOnStop>,
    /// `lvs_timeouts [tcp SECS] [tcpfin SECS] [udp SECS]`.
    pub lvs_timeouts: Option<LvsTimeouts>,
    /// `net_namespace_ipvs [NAME]`: the network namespace the load balancer's kernel
    /// table lives in. `Some("")`: the keyword without a name, the init process's
    /// namespace (keepalived's "default namespace").
    pub net_namespace_ipvs: Option<String>,
}

/// `lvs_flush_on_stop [VS]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LvsFlushOnStop {
    /// No argument: flush the whole IPVS table (every service, vipd's or not).
    Full,
    /// `VS`: delete each service vipd manages, leaving its real servers to the kernel.
    VirtualServers,
}

/// `lvs_timeouts`: IPVS connection timeouts in seconds; `None` (or 0) leaves the
/// kernel's value unchanged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LvsTimeouts {
    pub tcp: Option<u32>,
    pub tcpfin: Option<u32>,
    pub udp: Option<u32>,
    pub span: Span,
}

/// keepalived's `LVS_MAX_TIMEOUT`: 31 days, in seconds.
pub const LVS_MAX_TIMEOUT: u32 = 31 * 86400;

/// `lvs_sync_daemon IFACE [[inst] INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group IP]`:
/// the kernel's IPVS sync daemon (nftables backend: conntrackd), switched between
/// master and backup with `instance`'s VRRP state; with no instance, both run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LvsSyncDaemon {
    /// The interface the sync messages go out of and come in on.
    pub interface: String,
    /// The VRRP instance whose state it follows.
    pub instance: Option<String>,
    /// `id 0..255`; `None`: the instance's virtual_router_id (0 without an instance).
    pub sync_id: Option<u8>,
    /// `maxlen 1..65507`: largest sync packet payload.
    pub maxlen: Option<u16>,
    /// `port 1..65535`: UDP port (kernel default 8848).
    pub port: Option<u16>,
    /// `ttl 1..255`: multicast TTL (kernel default 1).
    pub ttl: Option<u8>,
    /// `group IP`: multicast group (kernel default 224.0.0.81).
    pub group: Option<IpAddr>,
    /// Where it was written.
    pub span: Span,
}

/// `state_dump_file` / `stats_dump_file` / `json_dump_file` (or the man page's
/// `*_file_location`), `json_version` and `data_use_instance`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DumpSettings {
    pub state_file: Option<String>,
    pub stats_file: Option<String>,
    pub json_file: Option<String>,
    /// `json_version 1|2`; `None` = 1.
    pub json_version: Option<u8>,
    pub data_use_instance: bool,
    /// `instance NAME` and `net_namespace NAME` (top level or in `global_defs`): only
    /// recorded here, for the file names `data_use_instance` makes.
    pub instance: Option<String>,
    pub net_namespace: Option<String>,
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
    /// `auth_type AH` with `auth_pass`: VRRPv2 over IPv4 in an IP Authentication
    /// Header, HMAC-MD5-96 keyed with the first 8 bytes of the password.
    Ah(String),
}

/// Secret bytes (an `auth_hmac` key): never printed by `Debug` or serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secret bytes>", self.0.len())
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// `auth_hmac { mode }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HmacMode {
    Enforce,
    Permissive,
    ReceiveOnly,
}

/// `auth_hmac { key N VALUE; active_key N; anti_replay time|monotonic;
/// time_window N; mode M }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthHmac {
    /// (id 1..=255, 32..=64 bytes), from `hex:`, `file:` or the literal text.
    pub keys: Vec<(u8, Secret)>,
    /// `None`: not set (keepalived then disables the extension).
    pub active_key: Option<u8>,
    /// `anti_replay time` (default) or `monotonic` (false).
    pub anti_replay_time: bool,
    /// Seconds, 1..=300; `None`: max(3 × advert_int, 5).
    pub time_window: Option<u32>,
    pub mode: HmacMode,
    pub span: Span,
}

/// One address of a `virtual_ipaddress` / `virtual_ipaddress_excluded` / `static_ipaddress`
/// line: `<IPADDR>[/<MASK>] [brd <IPADDR>] [dev <STRING>] [scope <SCOPE>] [label <LABEL>]
/// [peer <IPADDR>] [home] [-nodad] [mngtmpaddr] [noprefixroute] [autojoin] [no_track]
/// [preferred_lft N|forever] [track_group GROUP]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VirtualAddress {
    pub addr: IpAddr,
    /// Defaults to 32 (IPv4) / 128 (IPv6) when no mask is written, as keepalived does.
    pub prefix_len: u8,
    pub brd: Option<IpAddr>,
    pub dev: Option<String>,
    /// RT_SCOPE_* number (names resolved from iproute2's `rt_scopes` at load time);
    /// `None` = global.
    pub scope: Option<u8>,
    pub label: Option<String>,
    /// `static_ipaddress` only: `track_group NAME`.
    pub track_group: Option<String>,
    /// `no_track`: a static address is not restored when deleted, nor tracked; a VIP
    /// deleted by someone else does not take its instance out of MASTER, nor does its
    /// `dev` interface going down.
    pub no_track: bool,
    /// `peer ADDR`: the kernel's IFA_ADDRESS (point-to-point); the address is then a
    /// /32 (/128), as in keepalived.
    pub peer: Option<IpAddr>,
    /// IFA_F_* flags written on the line: `home`, `mngtmpaddr`, `noprefixroute`,
    /// `autojoin` ([`VirtualAddress::HOME`] ...).
    pub flags: u32,
    /// `-nodad`: IPv6 duplicate address detection runs (vipd, like keepalived, adds
    /// IPv6 addresses `nodad` otherwise).
    pub dad: bool,
    /// `preferred_lft N|forever` (IPv6; [`VirtualAddress::FOREVER`] for `forever`);
    /// `None`: keepalived's default, 0 (deprecated) for a /128, else forever.
    pub preferred_lft: Option<u32>,
    /// The address's own `use_vmac` option: a VMAC for it (see `use_vmac_addr`).
    pub use_vmac: bool,
    pub span: Span,
}

impl VirtualAddress {
    /// IFA_F_HOMEADDRESS (`home`).
    pub const HOME: u32 = 0x10;
    /// IFA_F_MANAGETEMPADDR (`mngtmpaddr`).
    pub const MNGTMPADDR: u32 = 0x100;
    /// IFA_F_NOPREFIXROUTE (`noprefixroute`).
    pub const NOPREFIXROUTE: u32 = 0x200;
    /// IFA_F_MCAUTOJOIN (`autojoin`).
    pub const AUTOJOIN: u32 = 0x400;
    /// The kernel's infinite lifetime (`preferred_lft forever`).
    pub const FOREVER: u32 = u32::MAX;

    /// An address with nothing but its prefix written.
    pub fn new(addr: IpAddr, prefix_len: u8, span: Span) -> VirtualAddress {
        VirtualAddress {
            addr,
            prefix_len,
            brd: None,
            dev: None,
            scope: None,
            label: None,
            track_group: None,
            no_track: false,
            peer: None,
            flags: 0,
            dad: false,
            preferred_lft: None,
            use_vmac: false,
            span,
        }
    }

    /// The preferred lifetime the kernel gets (IPv6 only, as in keepalived, which sends
    /// IFA_CACHEINFO for IPv6 addresses only): `None` = forever (no IFA_CACHEINFO).
    pub fn effective_preferred_lft(&self) -> Option<u32> {
        if self.addr.is_ipv4() {
            return None;
        }
        let full = self.peer.is_none() && self.prefix_len == 128;
        match self.preferred_lft {
            Some(Self::FOREVER) => None,
            Some(n) => Some(n),
            None if full => Some(0),
            None => None,
        }
    }
}

/// What a route does with the packets it matches, or a rule's action other than a
/// table lookup (`blackhole`, `unreachable`, `prohibit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RouteType {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    /// `local`: the host accepts packets to the destination as its own (host scope).
    /// Routes only (BGP anycast: a VIP answered without being an address).
    Local,
}

/// One `static_routes` / `virtual_routes` line: `[src IP] [to] DEST[/LEN] [via|gw IP]
/// [dev IF] [scope S] [table T] [metric|priority|preference N] [onlink] [no_track]`,
/// optionally with a type (`unicast`, `blackhole`, `unreachable`, `prohibit`, `throw`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// Destination; `default` is 0.0.0.0/0.
    pub dst: IpAddr,
    pub dst_len: u8,
    pub kind: RouteType,
    /// `via` / `gw`: of the destination's family.
    pub via: Option<IpAddr>,
    /// `dev`: an interface name (resolved on the host at run time).
    pub dev: Option<String>,
    /// `src`: preferred source address, of the destination's family.
    pub src: Option<IpAddr>,
    /// `table`: 254 (`main`) when not written.
    pub table: u32,
    /// `metric` / `priority` / `preference`.
    pub metric: Option<u32>,
    /// RT_SCOPE_* number; `None`: link for a direct unicast route, universe otherwise.
    pub scope: Option<u8>,
    pub onlink: bool,
    pub no_track: bool,
    /// `track_group NAME` (static routes only).
    pub track_group: Option<String>,
    /// The line's first word.
    pub span: Span,
}

/// One `static_rules` / `virtual_rules` line: `[not] [from P] [to P] [iif IF] [oif IF]
/// [fwmark N[/MASK]] [table|lookup T] [priority|preference|pref N] [inet|inet6]
/// [blackhole|unreachable|prohibit] [no_track]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// `from`; `None`: all (also for `from all`, `any` or `default`).
    pub from: Option<(IpAddr, u8)>,
    pub to: Option<(IpAddr, u8)>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// `fwmark MARK[/MASK]`.
    pub fwmark: Option<(u32, Option<u32>)>,
    /// `table` / `lookup`: 1..; `None` only when `action` is set.
    pub table: Option<u32>,
    /// `priority` / `preference` / `pref`.
    pub priority: Option<u32>,
    /// `None`: look up `table`; else `Blackhole`, `Unreachable` or `Prohibit`.
    pub action: Option<RouteType>,
    /// `not`: the selector is inverted.
    pub not: bool,
    /// IPv6 rule: `inet6`, or an IPv6 `from`/`to`.
    pub v6: bool,
    pub no_track: bool,
    /// `track_group NAME` (static rules only).
    pub track_group: Option<String>,
    /// The line's first word.
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
    /// keepalived 2.4's `auth_hmac { }` authentication extension.
    pub auth_hmac: Rare<Option<AuthHmac>>,
    pub mcast_src_ip: Option<IpAddr>,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peers: Vec<UnicastPeer>,
    pub unicast_ttl: Option<u8>,
    pub check_unicast_src: bool,
    /// keepalived's RFC-9568 style v3 IPv4 checksum without pseudo-header.
    pub v3_checksum_as_v2: bool,
    pub garp: Rare<GarpSettings>,
    pub lower_prio_no_advert: Option<bool>,
    pub higher_prio_send_advert: Option<bool>,
    /// `skip_check_adv_addr` (default: global `vrrp_skip_check_adv_addr`).
    pub skip_check_adv_addr: Option<bool>,
    /// `down_timer_adverts 1..100`, default 3.
    pub down_timer_adverts: Option<u8>,
    /// `track_interface`, `track_script`, `track_file`, `track_process`, `track_bfd`.
    pub track: Tracking,
    pub notify: Rare<Notify>,
    /// `use_vmac [[name] NAME] [MAC] [netlink_notify_msg] [group GROUP]`.
    pub use_vmac: Rare<Option<UseVmac>>,
    /// `use_ipvlan [[name] NAME] [ADDRESS[/LEN]] [bridge|private|vepa] [group GROUP]`.
    pub use_ipvlan: Rare<Option<UseIpvlan>>,
    /// `vmac_xmit_base`: send adverts from the base interface, not the VMAC.
    pub vmac_xmit_base: bool,
    /// `vrf VRF_IF` (unicast instances without `interface`): the VRRP socket is bound to
    /// that VRF device, so adverts are routed and received in the VRF.
    pub vrf: Option<String>,
    /// `use_vmac_addr`: a VMAC also on each other interface a VIP / eVIP names (`dev`),
    /// and for eVIPs of the other address family (named with `vmac_addr_prefix`).
    pub use_vmac_addr: bool,
    pub virtual_ipaddress_excluded: Vec<VirtualAddress>,
    /// `virtual_routes`: installed while MASTER.
    pub virtual_routes: Vec<Route>,
    /// `virtual_rules`: installed while MASTER.
    pub virtual_rules: Vec<Rule>,
    pub smtp_alert: Option<bool>,
    pub strict_mode: Option<bool>,
    pub dont_track_primary: bool,
    pub promote_secondaries: bool,
    /// `garp_extra_if [all] SECS` (default: global `vrrp_garp_extra_if`).
    pub garp_extra_if: Option<GarpExtraIf>,
    /// `unicast_fault_no_peer`: without unicast peers, FAULT instead of multicast.
    pub unicast_fault_no_peer: bool,
    /// `old_unicast_checksum` (without `never`): the VRRPv3/IPv4 checksum's
    /// pseudo-header carries the IPv4 multicast group, not the packet's destination
    /// (keepalived before 1.3.6 in unicast), sent and expected.
    pub old_unicast_checksum: bool,
    /// `track_src_ip`: FAULT while the configured `unicast_src_ip` / `mcast_src_ip` is
    /// on no interface.
    pub track_src_ip: bool,
    pub mcast_dst_ip: Option<IpAddr>,
    /// `no_virtual_ipaddress`: running without VIPs is meant (notify scripts move the
    /// address, e.g. a cloud ENI/EIP); no warning, and allowed with VRRPv3.
    pub no_virtual_ipaddress: bool,
    /// `native_ipv6`: an IPv6 instance even without IPv6 addresses to tell.
    pub native_ipv6: bool,
    /// `owner_ignore_adverts` (default: global `vrrp_owner_ignore_adverts`).
    pub owner_ignore_adverts: Option<bool>,
    /// `timer_expired_backup [PRIO]` / `thread_timer_expired`: the highest priority of
    /// the other routers (254 when not given).
    pub timer_expired_backup: Option<u8>,
    /// vipd extension `bfd_takeover NAME [min_up MS] [hold_down MS]` (written
    /// `@vipd bfd_takeover ...` so keepalived skips it): as BACKUP, take over at once
    /// when the `bfd_instance` NAME to the master goes down.
    pub bfd_takeover: Rare<Option<BfdTakeover>>,
    /// vipd extension `release_drain MS` (written `@vipd release_drain MS`): after a
    /// graceful release (priority 0 on stop or reload) the VIPs and `virtual_routes`
    /// stay MS ms (instead of one advert interval), then the VIPs are withdrawn as
    /// addresses but still answered through local routes for MS ms more; likewise
    /// (from the moment it yields) for a master preempted by a higher priority. For VIPs
    /// announced by a routing daemon (BGP mode): the upstream moves to the new master
    /// before the old one stops answering.
    pub release_drain_ms: Option<u32>,
    /// vipd extension `standby_metric BASE` (written `@vipd standby_metric BASE`):
    /// while BACKUP (not FAULT, not stopped) the `virtual_routes` are installed as well,
    /// with metric BASE + (255 - priority); while MASTER with their own metric. A
    /// routing daemon redistributing them with the metric as MED (BGP anycast) makes
    /// the upstream prefer the master and keep the backups as standby paths.
    pub standby_metric: Option<u32>,
}

/// `bfd_takeover`; see [`VrrpInstance::bfd_takeover`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BfdTakeover {
    /// The `bfd_instance` whose `neighbor_ip` is the master's advert source.
    pub bfd: String,
    /// The session must have been Up this long (ms) for its Down to count [1000].
    pub min_up_ms: u32,
    /// At most one BFD take-over per this many ms [10000].
    pub hold_down_ms: u32,
}

impl VrrpInstance {
    /// The instance's address family, as keepalived decides it: the VIPs, else
    /// `native_ipv6`, else the unicast peers, the source addresses or `mcast_dst_ip`;
    /// IPv4 when nothing tells.
    pub fn is_ipv6(&self) -> bool {
        if let Some(v) = self.virtual_ipaddress.first() {
            return v.addr.is_ipv6();
        }
        if self.native_ipv6 {
            return true;
        }
        self.unicast_peers
            .iter()
            .map(|p| p.addr)
            .chain(self.unicast_src_ip)
            .chain(self.mcast_src_ip)
            .chain(self.mcast_dst_ip)
            .chain(
                self.use_ipvlan
                    .as_ref()
                    .and_then(|v| v.addr.map(|(a, _)| a)),
            )
            .next()
            .is_some_and(|a| a.is_ipv6())
    }

    /// The VRRP version this instance runs: IPv6 always 3, else `version`, else the
    /// global `vrrp_version`, else 2.
    pub fn effective_version(&self, global: &GlobalDefs) -> u8 {
        if self.is_ipv6() {
            3
        } else {
            self.version.or(global.vrrp_version).unwrap_or(2)
        }
    }
}

#[cfg(test)]
mod rare_tests {
    use super::*;

    #[test]
    fn unset_reads_the_default_and_the_first_write_stores_one() {
        let mut n: Rare<Notify> = Rare::default();
        assert!(n.0.is_none());
        assert_eq!(*n, Notify::default());
        assert_eq!(n.master, None);
        n.master = Some(ScriptCommand::new("/bin/x"));
        assert!(n.0.is_some());
        assert_eq!(n.master, Some(ScriptCommand::new("/bin/x")));
    }

    #[test]
    fn a_default_value_is_stored_as_unset_and_compares_equal() {
        let unset: Rare<GarpSettings> = Rare::default();
        let from_default: Rare<GarpSettings> = GarpSettings::default().into();
        assert!(from_default.0.is_none());
        assert_eq!(unset, from_default);
        let written: Rare<Option<UseVmac>> = Some(UseVmac::default()).into();
        assert!(written.0.is_some());
        assert_ne!(written, Rare::default());
        // Same text as the value it stands for: dumps and reload fingerprints are
        // unchanged by the indirection.
        assert_eq!(
            serde_json::to_string(&written).unwrap(),
            serde_json::to_string(&Some(UseVmac::default())).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&unset).unwrap(),
            serde_json::to_string(&GarpSettings::default()).unwrap()
        );
    }

    /// A large configuration holds thousands of instances at once (5,000 in the
    /// check-config benchmark); the rarely written parts stay out of line.
    #[test]
    fn an_instance_stays_small() {
        let size = std::mem::size_of::<VrrpInstance>();
        assert!(size <= 600, "VrrpInstance is {size} bytes");
    }
}
