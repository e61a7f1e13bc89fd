//! The forwarding table vipd wants, computed from configuration and live state.
//!
//! Pure code: [`Lb`] is built once from the `virtual_server` blocks; the runtime feeds it
//! real-server health ([`Lb::set_health`]), which virtual servers may forward now
//! ([`Lb::set_active`], keepalived's "only where the VIP is": the VRRP MASTER), and
//! link-layer facts for direct routing ([`Lb::set_device`], [`Lb::set_mac`]); it answers
//! with [`Lb::table`] and with the events those changes caused (real server up/down,
//! quorum gained/lost) so the runtime can run `notify_up`/`notify_down`/`quorum_up`/
//! `quorum_down`.
//!
//! keepalived semantics kept here:
//! - a real server that fails leaves the table, or stays with weight 0 under
//!   `inhibit_on_failure` (real server's setting over the virtual server's);
//! - quorum: the sum of the weights of live real servers against `quorum` (default 1)
//!   with `hysteresis` (default 0) on both edges; when it is lost and a `sorry_server` is
//!   configured, every real server is taken out and the sorry server put in (with
//!   `sorry_server_inhibit` it stays in with weight 0 while quorum holds);
//! - `alpha`: servers start down until their first successful check (the checker decides
//!   the initial health; this module only receives it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use vipd_config::model::{Span, VirtualServer, VirtualServerGroup, VsKey, VsgEntry};

use crate::model::{
    Dest, Family, Forward, Persistence, Proto, Sched, SchedFlags, Service, ServiceKey, Table,
};

/// A virtual-server setting vipd cannot honour, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConfigError {
    pub span: Span,
    pub message: String,
}

impl std::fmt::Display for LbConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.span.file.display(),
            self.span.line,
            self.span.col,
            self.message
        )
    }
}

/// Something the runtime should act on (scripts, logs, events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbEvent {
    RealServerUp { vs: usize, rs: usize },
    RealServerDown { vs: usize, rs: usize },
    QuorumUp { vs: usize },
    QuorumDown { vs: usize },
}

#[derive(Debug, Clone)]
struct RsState {
    addr: IpAddr,
    port: u16,
    weight: u32,
    dynamic_weight: Option<u32>,
    up: bool,
    inhibit: bool,
    forward: Forward,
    upper: u32,
    lower: u32,
}

impl RsState {
    fn effective_weight(&self) -> u32 {
        self.dynamic_weight.unwrap_or(self.weight)
    }
}

#[derive(Debug, Clone)]
struct VsState {
    /// Display name, e.g. `virtual_server 192.0.2.100 80`.
    name: String,
    /// keepalived's name in FIFO lines: `[192.0.2.15]:tcp:80`, `FWM 5`, `[GROUP]:0`.
    fifo_name: String,
    /// The protocol word of its real servers in FIFO lines: `tcp`, `udp`, `sctp`, or
    /// `none` for a firewall mark.
    fifo_proto: &'static str,
    keys: Vec<ServiceKey>,
    sched: Sched,
    flags: SchedFlags,
    forward: Forward,
    persistence: Option<Persistence>,
    pe_name: Option<String>,
    quorum: u32,
    hysteresis: u32,
    quorum_up: bool,
    sorry: Option<(IpAddr, u16, Forward, bool)>,
    real: Vec<RsState>,
    active: bool,
    device: Option<String>,
}

/// A virtual server's resolved scheduling settings ([`Lb::vs_settings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsSettings {
    pub sched: Sched,
    pub flags: SchedFlags,
    /// The default forwarding method (`lvs_method`).
    pub forward: Forward,
    pub persistence: Option<Persistence>,
    /// `quorum` (default 1) and `hysteresis` (default 0).
    pub quorum: u32,
    pub hysteresis: u32,
}

/// A real server's resolved settings ([`Lb::rs_settings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsSettings {
    /// The weight now: a dynamic checker's, else the configured one.
    pub weight: u32,
    pub forward: Forward,
    /// `uthreshold` / `lthreshold` (0 = none).
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    /// `inhibit_on_failure` (the real server's, else its virtual server's).
    pub inhibit: bool,
}

/// Live load-balancer state: configuration plus health, gating and link-layer facts.
#[derive(Debug, Clone)]
pub struct Lb {
    vss: Vec<VsState>,
    macs: HashMap<IpAddr, [u8; 6]>,
    /// [`Lb::dr_addresses`]: fixed by the configuration (no setter changes a
    /// destination's address or forwarding method), read every second.
    dr_addrs: Vec<IpAddr>,
}

fn err(span: &Span, message: impl Into<String>) -> LbConfigError {
    LbConfigError {
        span: span.clone(),
        message: message.into(),
    }
}

/// The direct-routing destinations' addresses of `vss`, sorted, once each.
fn dr_addresses(vss: &[VsState]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for v in vss {
        out.extend(
            v.real
                .iter()
                .filter(|r| r.forward == Forward::Dr)
                .map(|r| r.addr),
        );
        out.extend(v.sorry.iter().filter(|s| s.2 == Forward::Dr).map(|s| s.0));
    }
    out.sort();
    out.dedup();
    out
}

fn parse_forward(s: Option<&str>, default: Forward) -> Option<Forward> {
    match s.map(|x| x.to_ascii_uppercase()) {
        None => Some(default),
        Some(x) if x == "NAT" => Some(Forward::Nat),
        Some(x) if x == "DR" => Some(Forward::Dr),
        Some(x) if x == "TUN" => Some(Forward::Tun),
        Some(_) => None,
    }
}

/// `persistence_granularity`: a dotted IPv4 netmask, or a prefix length (`24`, `/64`).
fn parse_granularity(s: &str, family: Family) -> Option<u8> {
    let t = s.trim_start_matches('/');
    if let Ok(n) = t.parse::<u8>() {
        let max = if family == Family::V4 { 32 } else { 128 };
        return (n <= max).then_some(n);
    }
    let mask: std::net::Ipv4Addr = t.parse().ok()?;
    let m = u32::from(mask);
    let len = m.leading_ones();
    (family == Family::V4 && m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

impl Lb {
    /// Builds the state from configuration. `default_sched` is used where `lb_algo` is
    /// not written (IPVS' default is `wlc`; a backend that cannot do `wlc` passes `rr`).
    /// `initial_up(vs, rs)` gives each real server's starting health.
    pub fn new(
        vss: &[VirtualServer],
        groups: &[VirtualServerGroup],
        default_sched: Sched,
        initial_up: impl Fn(usize, usize) -> bool,
    ) -> Result<Lb, Vec<LbConfigError>> {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        for (vi, vs) in vss.iter().enumerate() {
            match build_vs(vi, vs, groups, default_sched, &initial_up) {
                Ok(v) => out.push(v),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Lb {
                dr_addrs: dr_addresses(&out),
                vss: out,
                macs: HashMap::new(),
            })
        } else {
            Err(errors)
        }
    }

    pub fn len(&self) -> usize {
        self.vss.len()
    }
    pub fn is_empty(&self) -> bool {
        self.vss.is_empty()
    }

    /// `virtual_server ADDR PORT` as written, for logs.
    pub fn name(&self, vs: usize) -> &str {
        &self.vss[vs].name
    }

    /// Service keys of one virtual server (several for a `virtual_server group`).
    pub fn keys(&self, vs: usize) -> &[ServiceKey] {
        &self.vss[vs].keys
    }

    /// Real server address and port.
    pub fn real_server(&self, vs: usize, rs: usize) -> (IpAddr, u16) {
        let r = &self.vss[vs].real[rs];
        (r.addr, r.port)
    }

    pub fn real_server_count(&self, vs: usize) -> usize {
        self.vss[vs].real.len()
    }

    pub fn is_up(&self, vs: usize, rs: usize) -> bool {
        self.vss[vs].real[rs].up
    }

    pub fn quorum_up(&self, vs: usize) -> bool {
        self.vss[vs].quorum_up
    }

    /// How virtual server `vs` schedules and forwards, as resolved from its
    /// configuration (for KEEPALIVED-MIB's virtualServerTable).
    pub fn vs_settings(&self, vs: usize) -> VsSettings {
        let v = &self.vss[vs];
        VsSettings {
            sched: v.sched,
            flags: v.flags,
            forward: v.forward,
            persistence: v.persistence,
            quorum: v.quorum,
            hysteresis: v.hysteresis,
        }
    }

    /// The `sorry_server` of `vs`: address, port, forwarding method, and whether it is
    /// forwarded to now (the quorum is lost).
    pub fn sorry_server(&self, vs: usize) -> Option<(IpAddr, u16, Forward, bool)> {
        let v = &self.vss[vs];
        v.sorry
            .map(|(addr, port, forward, _)| (addr, port, forward, !v.quorum_up))
    }

    /// Real server `rs` of `vs` as resolved from its configuration, with the weight it
    /// has now (a dynamic checker's, else the configured one).
    pub fn rs_settings(&self, vs: usize, rs: usize) -> RsSettings {
        let r = &self.vss[vs].real[rs];
        RsSettings {
            weight: r.effective_weight(),
            forward: r.forward,
            upper_threshold: r.upper,
            lower_threshold: r.lower,
            inhibit: r.inhibit,
        }
    }

    /// The `notify_fifo` / `lvs_notify_fifo` line of an event, as keepalived writes it
    /// (without the newline): `VS [192.0.2.15]:tcp:80 UP`,
    /// `RS [198.51.100.1]:tcp:80 [192.0.2.15]:tcp:80 DOWN`. IPv6 addresses stand in the
    /// brackets as they are (`[2001:db8::1]:tcp:80`), a firewall-mark service is
    /// `FWM 5` (its real servers' protocol `none`), a `virtual_server group NAME` is
    /// `[NAME]:0`.
    pub fn fifo_line(&self, e: &LbEvent) -> String {
        let word = |up: bool| if up { "UP" } else { "DOWN" };
        match *e {
            LbEvent::QuorumUp { vs } | LbEvent::QuorumDown { vs } => format!(
                "VS {} {}",
                self.vss[vs].fifo_name,
                word(matches!(e, LbEvent::QuorumUp { .. }))
            ),
            LbEvent::RealServerUp { vs, rs } | LbEvent::RealServerDown { vs, rs } => {
                let v = &self.vss[vs];
                let r = &v.real[rs];
                format!(
                    "RS [{}]:{}:{} {} {}",
                    r.addr,
                    v.fifo_proto,
                    r.port,
                    v.fifo_name,
                    word(matches!(e, LbEvent::RealServerUp { .. }))
                )
            }
        }
    }

    pub fn is_active(&self, vs: usize) -> bool {
        self.vss[vs].active
    }

    /// Whether any destination of this virtual server forwards by direct routing (it then
    /// needs a device and MACs).
    pub fn uses_dr(&self, vs: usize) -> bool {
        let v = &self.vss[vs];
        v.real.iter().any(|r| r.forward == Forward::Dr)
            || v.sorry.is_some_and(|s| s.2 == Forward::Dr)
    }

    /// Every destination address that may need its MAC resolved (sorted, once each).
    pub fn dr_addresses(&self) -> &[IpAddr] {
        &self.dr_addrs
    }

    /// Health of one real server; `weight` is a dynamic weight (MISC_CHECK
    /// `misc_dynamic`), `None` = the configured one.
    pub fn set_health(
        &mut self,
        vs: usize,
        rs: usize,
        up: bool,
        weight: Option<u32>,
    ) -> Vec<LbEvent> {
        let v = &mut self.vss[vs];
        let r = &mut v.real[rs];
        let mut events = Vec::new();
        r.dynamic_weight = weight;
        if r.up != up {
            r.up = up;
            events.push(if up {
                LbEvent::RealServerUp { vs, rs }
            } else {
                LbEvent::RealServerDown { vs, rs }
            });
        }
        let live: u64 = v
            .real
            .iter()
            .filter(|r| r.up)
            .map(|r| r.effective_weight() as u64)
            .sum();
        let q = v.quorum as u64;
        let h = v.hysteresis as u64;
        if v.quorum_up && live < q.saturating_sub(h) {
            v.quorum_up = false;
            events.push(LbEvent::QuorumDown { vs });
        } else if !v.quorum_up && live >= q + h {
            v.quorum_up = true;
            events.push(LbEvent::QuorumUp { vs });
        }
        events
    }

    /// Whether this virtual server forwards now (its VIP's VRRP instance is MASTER).
    pub fn set_active(&mut self, vs: usize, active: bool) {
        self.vss[vs].active = active;
    }

    /// Interface for direct routing.
    pub fn set_device(&mut self, vs: usize, device: Option<String>) {
        self.vss[vs].device = device;
    }

    /// A resolved (or forgotten) link-layer address. Returns whether it changed.
    pub fn set_mac(&mut self, addr: IpAddr, mac: Option<[u8; 6]>) -> bool {
        match mac {
            Some(m) => self.macs.insert(addr, m) != Some(m),
            None => self.macs.remove(&addr).is_some(),
        }
    }

    /// The forwarding table for the current state: one service per key of every active
    /// virtual server.
    pub fn table(&self) -> Table {
        self.build(true)
    }

    /// The table as if every virtual server were active: what a backend must be able to
    /// express (checked once at start, before any VIP arrives).
    pub fn table_unfiltered(&self) -> Table {
        self.build(false)
    }

    fn build(&self, only_active: bool) -> Table {
        let mut services = Vec::new();
        for v in self.vss.iter().filter(|v| v.active || !only_active) {
            let mut dests = Vec::new();
            let sorry_only = !v.quorum_up && v.sorry.is_some();
            if !sorry_only {
                for r in &v.real {
                    let weight = if r.up {
                        r.effective_weight()
                    } else if r.inhibit {
                        0
                    } else {
                        continue;
                    };
                    dests.push(Dest {
                        addr: r.addr,
                        port: r.port,
                        weight,
                        forward: r.forward,
                        upper_threshold: r.upper,
                        lower_threshold: r.lower,
                        mac: self.macs.get(&r.addr).copied(),
                    });
                }
            }
            if let Some((addr, port, forward, inhibit)) = v.sorry {
                if sorry_only || inhibit {
                    dests.push(Dest {
                        addr,
                        port,
                        weight: if sorry_only { 1 } else { 0 },
                        forward,
                        upper_threshold: 0,
                        lower_threshold: 0,
                        mac: self.macs.get(&addr).copied(),
                    });
                }
            }
            for key in &v.keys {
                services.push(Service {
                    key: *key,
                    sched: v.sched,
                    flags: v.flags,
                    forward: v.forward,
                    persistence: v.persistence,
                    pe_name: v.pe_name.clone(),
                    device: v.device.clone(),
                    dests: dests.clone(),
                });
            }
        }
        Table { services }
    }
}

fn vs_name(vs: &VirtualServer) -> String {
    match &vs.key {
        VsKey::Addr {
            addr,
            port: Some(p),
        } => format!("virtual_server {addr} {p}"),
        VsKey::Addr { addr, port: None } => format!("virtual_server {addr}"),
        VsKey::Fwmark { mark, .. } => format!("virtual_server fwmark {mark}"),
        VsKey::Group(g) => format!("virtual_server group {g}"),
    }
}

fn build_vs(
    vi: usize,
    vs: &VirtualServer,
    groups: &[VirtualServerGroup],
    default_sched: Sched,
    initial_up: &impl Fn(usize, usize) -> bool,
) -> Result<VsState, Vec<LbConfigError>> {
    let mut errors = Vec::new();
    let name = vs_name(vs);
    let proto = match vs.protocol.as_deref() {
        None | Some("TCP") => Proto::Tcp,
        Some("UDP") => Proto::Udp,
        Some("SCTP") => Proto::Sctp,
        Some(p) => {
            errors.push(err(&vs.span, format!("{name}: unknown protocol `{p}`")));
            Proto::Tcp
        }
    };
    let first_rs_family = vs.real_servers.first().map(|r| Family::of(&r.addr));
    let fw_family = |fam: &Option<String>| match fam.as_deref().or(vs.ip_family.as_deref()) {
        Some("inet6") => Family::V6,
        Some(_) => Family::V4,
        None => first_rs_family.unwrap_or(Family::V4),
    };
    let mut keys = Vec::new();
    match &vs.key {
        VsKey::Addr { addr, port } => keys.push(ServiceKey::Addr {
            addr: *addr,
            port: port.unwrap_or(0),
            proto,
        }),
        VsKey::Fwmark { mark, family } => keys.push(ServiceKey::Fwmark {
            mark: *mark,
            family: fw_family(family),
        }),
        VsKey::Group(g) => match groups.iter().find(|x| &x.name == g) {
            None => errors.push(err(
                &vs.span,
                format!("{name}: no `virtual_server_group {g}` is defined"),
            )),
            Some(group) => {
                for e in &group.entries {
                    match e {
                        VsgEntry::Range { first, last, port } => {
                            for addr in expand_range(*first, *last) {
                                keys.push(ServiceKey::Addr {
                                    addr,
                                    port: port.unwrap_or(0),
                                    proto,
                                });
                            }
                        }
                        VsgEntry::Fwmark { mark, family } => keys.push(ServiceKey::Fwmark {
                            mark: *mark,
                            family: fw_family(family),
                        }),
                    }
                }
            }
        },
    }
    let family = keys.first().map(|k| k.family()).unwrap_or(Family::V4);
    let sched = match vs.lb_algo.as_deref() {
        None => default_sched,
        Some(s) => Sched::parse(s).unwrap_or_else(|| {
            errors.push(err(&vs.span, format!("{name}: unknown lb_algo `{s}`")));
            default_sched
        }),
    };
    let mut flags = SchedFlags {
        one_packet: vs.ops,
        ..Default::default()
    };
    for (f, span) in &vs.sched_flags {
        match f.as_str() {
            "flag-1" | "sh-fallback" | "mh-fallback" => flags.fallback = true,
            "flag-2" | "sh-port" | "mh-port" => flags.port = true,
            "flag-3" => flags.sched3 = true,
            other => errors.push(err(
                span,
                format!("{name}: `{other}` is not a flag of any IPVS scheduler vipd supports"),
            )),
        }
    }
    let pe_name = match &vs.persistence_engine {
        None => None,
        // IP_VS_PENAME_MAXLEN counts the NUL (keepalived truncates with a warning).
        Some((pe, span)) if pe.is_empty() || pe.len() > 15 => {
            errors.push(err(
                span,
                format!("{name}: persistence_engine `{pe}`: IPVS persistence engine names are 1 to 15 bytes (the kernel has `sip`)"),
            ));
            None
        }
        Some((pe, _)) => Some(pe.clone()),
    };
    let forward = parse_forward(vs.lb_kind.as_deref(), Forward::Nat).unwrap_or_else(|| {
        errors.push(err(
            &vs.span,
            format!(
                "{name}: unknown lb_kind `{}`",
                vs.lb_kind.as_deref().unwrap_or("")
            ),
        ));
        Forward::Nat
    });
    let persistence = match vs.persistence_timeout {
        None => None,
        Some(t) => {
            let full = if family == Family::V4 { 32 } else { 128 };
            let prefix_len = match vs.persistence_granularity.as_deref() {
                None => full,
                Some(g) => parse_granularity(g, family).unwrap_or_else(|| {
                    errors.push(err(
                        &vs.span,
                        format!("{name}: persistence_granularity `{g}` is not a netmask or prefix length"),
                    ));
                    full
                }),
            };
            Some(Persistence {
                timeout: Duration::from_secs(t as u64),
                prefix_len,
            })
        }
    };
    if persistence.is_none()
        && keys
            .iter()
            .any(|k| matches!(k, ServiceKey::Addr { port: 0, .. }))
    {
        errors.push(err(
            &vs.span,
            format!("{name}: a virtual server without a port (all ports) needs `persistence_timeout`, as in IPVS"),
        ));
    }
    let vs_port = match &vs.key {
        VsKey::Addr { port, .. } => port.unwrap_or(0),
        _ => 0,
    };
    let mut real = Vec::new();
    for (ri, rs) in vs.real_servers.iter().enumerate() {
        let fwd = parse_forward(rs.lb_kind.as_deref(), forward).unwrap_or_else(|| {
            errors.push(err(
                &rs.span,
                format!("unknown lb_kind `{}`", rs.lb_kind.as_deref().unwrap_or("")),
            ));
            forward
        });
        if Family::of(&rs.addr) != family && fwd != Forward::Tun {
            errors.push(err(
                &rs.span,
                format!("real_server {}: address family differs from {name} (only tunnelling can cross families)", rs.addr),
            ));
        }
        if !(0..=65535).contains(&rs.weight) {
            errors.push(err(
                &rs.span,
                format!(
                    "real_server {}: weight {} is outside 0..65535",
                    rs.addr, rs.weight
                ),
            ));
        }
        real.push(RsState {
            addr: rs.addr,
            port: rs.port.unwrap_or(vs_port),
            weight: rs.weight.clamp(0, 65535) as u32,
            dynamic_weight: None,
            up: initial_up(vi, ri),
            inhibit: rs
                .inhibit_on_failure
                .or(vs.inhibit_on_failure)
                .unwrap_or(false),
            forward: fwd,
            upper: rs.uthreshold.unwrap_or(0),
            lower: rs.lthreshold.unwrap_or(0),
        });
    }
    let sorry = vs.sorry_server.map(|(addr, port)| {
        let fwd = parse_forward(vs.sorry_server_lb_kind.as_deref(), forward).unwrap_or(forward);
        (
            addr,
            port.unwrap_or(vs_port),
            fwd,
            vs.sorry_server_inhibit.unwrap_or(false),
        )
    });
    let quorum = vs.quorum.unwrap_or(1);
    let hysteresis = vs.hysteresis.unwrap_or(0);
    let live: u64 = real
        .iter()
        .filter(|r| r.up)
        .map(|r| r.effective_weight() as u64)
        .sum();
    if !errors.is_empty() {
        return Err(errors);
    }
    let proto_word = match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Sctp => "sctp",
    };
    // keepalived ignores the protocol of a firewall-mark service (or of a group of
    // firewall marks only): its real servers show `none`.
    let fifo_proto = if keys.iter().all(|k| matches!(k, ServiceKey::Fwmark { .. })) {
        "none"
    } else {
        proto_word
    };
    let fifo_name = match &vs.key {
        VsKey::Addr { addr, port } => format!("[{addr}]:{proto_word}:{}", port.unwrap_or(0)),
        VsKey::Fwmark { mark, .. } => format!("FWM {mark}"),
        VsKey::Group(g) => format!("[{g}]:0"),
    };
    Ok(VsState {
        name,
        fifo_name,
        fifo_proto,
        keys,
        sched,
        flags,
        forward,
        persistence,
        pe_name,
        quorum,
        hysteresis,
        quorum_up: live >= quorum as u64,
        sorry,
        real,
        active: true,
        device: None,
    })
}

/// `ADDR-LAST`: the last octet (IPv4) or hextet (IPv6) runs from ADDR's to LAST.
fn expand_range(first: IpAddr, last: Option<u16>) -> Vec<IpAddr> {
    let Some(last) = last else { return vec![first] };
    match first {
        IpAddr::V4(a) => {
            let o = a.octets();
            (o[3] as u16..=last.min(255))
                .map(|x| IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], x as u8)))
                .collect()
        }
        IpAddr::V6(a) => {
            let mut s = a.segments();
            (s[7]..=last)
                .map(|x| {
                    s[7] = x;
                    IpAddr::V6(std::net::Ipv6Addr::from(s))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests;
