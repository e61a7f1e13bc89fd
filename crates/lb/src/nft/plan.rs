//! Pure translation of a [`Table`] into the nf_tables objects vipd wants: per family
//! table, its base chains with their rules, and per service one regular chain plus its
//! sets and maps with their elements. [`super::diff`] turns two plans into a batch.
//!
//! Register plan (32-bit registers, `expr::reg(n)`):
//!
//! | regs    | use                                                                  |
//! |---------|----------------------------------------------------------------------|
//! | 0..=8   | match scratch, hash input (IPv6 saddr.daddr.ports = 36 B), persistence key (0..=3) |
//! | 0..=9   | DR: flow key (IPv6 saddr.daddr.sport.dport = 40 B)                   |
//! | 9       | slot (numgen / jhash result)                                         |
//! | 11..=15 | NAT: destination address (+ port)                                    |
//! | 11..=12 | DR: destination MAC (map result, then read back from the frame)      |
//! | 13..=14 | DR: the frame's original destination MAC (no live server)            |
//! | 15      | DR: input interface index                                            |
//!
//! # DR packet path (chain `svcN` of the `netdev` table)
//!
//! The dispatch rule in `in_DEV` has made the director the frame's source MAC (when the
//! service has a live server), then, in order (first rule that forwards wins; a rule that
//! fails half-way may have rewritten the destination MAC, which a later rule rewrites
//! again):
//!
//! 1. *pinned flows* (`svcN_flows`: saddr . daddr . sport . dport → MAC): the frame goes
//!    to the flow's MAC if that MAC is still a destination (`svcN_ctr`, which counts it),
//!    and the entry's timeout is refreshed. TCP: one rule per class of the client's
//!    flags (no SYN/FIN/RST: established, FIN, RST), each with its timeout
//!    ([`flow_timeouts`]); SYNs skip the flow table (a new connection reusing a pinned
//!    4-tuple is scheduled afresh). With persistence, a first variant also refreshes the
//!    client's entry when the flow's server is live (`svcN_live`).
//! 2. *remembered client* (persistence), 3. *scheduled* (slot table): the frame goes to
//!    the chosen MAC, the client is remembered (persistence) and the flow pinned: its old
//!    entry, if any (a stale one, or a reused 4-tuple), is deleted and a new one added
//!    with the chosen MAC, read back from the frame.
//! 4. *fallbacks*, reached when a map is full: forward the rewritten frame (recording
//!    the flow if only the persistence map was full).
//!
//! Without a live server: pinned flows (rule 1, which then also sets the source MAC),
//! then frames of a pinned flow whose server left are dropped (they may be half
//! rewritten; such entries are deleted right after the apply, or expire), then everything
//! else is rejected.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::consts::*;
use super::encode::{Hook, SetDef};
use super::expr::{prefix_mask, reg, Expr};
use crate::model::{
    Dest, Family, Forward, Persistence, Proto, Sched, Service, ServiceKey, Table, Timeouts,
};
use crate::slots;

/// Name of every table vipd owns.
pub const TABLE: &str = "vipd";
/// Longest round-robin slot sequence (`slots::round_robin` max_len).
pub const RR_SLOTS: usize = 4096;
/// Most clients one persistent service remembers at a time.
pub const PERSIST_MAX: u32 = 131_072;
/// Fixed jhash seed: a flow must hash to the same slot after a rule is rewritten (and
/// after a restart), or DR would move established connections.
pub const HASH_SEED: u32 = 0x7669_7064;
/// Priority of the DR ingress chains.
pub const NETDEV_PRIORITY: i32 = 0;
/// Most flows one DR service pins at a time (`svcN_flows`). When the map is full, new
/// flows are still forwarded (by persistence or hash) but not pinned, so a later change
/// of the table can move them. An entry takes about 130 bytes of kernel memory (IPv4;
/// about 170 for IPv6; measured on 6.18), so a full map holds some 130-170 MB.
pub const FLOWS_MAX: u32 = 1 << 20;
/// Largest flow table whose entries of departed destinations vipd deletes right after an
/// apply. Listing a set costs the kernel time quadratic in its size (each dump message
/// walks the hash table from the start): about 150 ms for 65,536 entries, 35 s for a
/// million. Beyond this the entries are left to expire: nothing is forwarded to a
/// destination that left anyway (a flow's next packet is scheduled anew), unless it comes
/// back with the same MAC.
pub const FLOWS_PURGE_MAX: usize = 65_536;

/// How long a DR flow stays pinned after its last packet, in milliseconds (the timeout
/// every forwarded packet sets again). Modelled on IPVS' defaults for a director that
/// only sees the client's half of the connection (`ipvsadm --set 900 120 300`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// The first packet of a flow (normally a SYN; or the first one seen of a flow that
    /// was not pinned, e.g. after a restart): a connection attempt nobody answers, or a
    /// spoofed SYN, is not remembered for long (IPVS: SYN_RECV, 60 s).
    pub new: u64,
    /// Any later packet (IPVS: TCP ESTABLISHED 900 s, UDP 300 s).
    pub established: u64,
    /// TCP: a FIN from the client (IPVS: FIN_WAIT, 120 s). When the client closes first,
    /// its last ACK (after the server's FIN) looks like any other ACK and sets
    /// `established` again: such entries linger for 15 minutes.
    pub fin: u64,
    /// TCP: a RST from the client (IPVS: CLOSE, 10 s).
    pub rst: u64,
}

/// The flow timeouts of a protocol.
pub const fn flow_timeouts(proto: Proto) -> FlowTimeouts {
    match proto {
        Proto::Tcp => FlowTimeouts {
            new: 60_000,
            established: 900_000,
            fin: 120_000,
            rst: 10_000,
        },
        Proto::Udp => FlowTimeouts {
            new: 300_000,
            established: 300_000,
            fin: 300_000,
            rst: 300_000,
        },
        Proto::Sctp => FlowTimeouts {
            new: 60_000,
            established: 900_000,
            fin: 900_000,
            rst: 900_000,
        },
    }
}

/// [`flow_timeouts`] with `lvs_timeouts` applied: `tcp` is an established TCP flow's,
/// `tcpfin` a TCP flow's after the client's FIN, `udp` every UDP flow's (0: the
/// default).
pub fn flow_timeouts_with(proto: Proto, t: &Timeouts) -> FlowTimeouts {
    let mut f = flow_timeouts(proto);
    let ms = |secs: u32| u64::from(secs) * 1000;
    match proto {
        Proto::Tcp => {
            if t.tcp != 0 {
                f.established = ms(t.tcp);
            }
            if t.tcpfin != 0 {
                f.fin = ms(t.tcpfin);
            }
        }
        Proto::Udp if t.udp != 0 => {
            f = FlowTimeouts {
                new: ms(t.udp),
                established: ms(t.udp),
                fin: ms(t.udp),
                rst: ms(t.udp),
            };
        }
        Proto::Udp | Proto::Sctp => {}
    }
    f
}

/// A conntrack timeout policy (`ct timeout NAME`) for the NAT services' connections,
/// from `lvs_timeouts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtTimeout {
    /// IPPROTO_TCP / IPPROTO_UDP.
    pub l4proto: u8,
    /// (`CTA_TIMEOUT_*` state, seconds); states not listed keep the namespace's values.
    pub policy: Vec<(u16, u32)>,
}

/// The `ct timeout` objects `lvs_timeouts` asks for, by name: one for TCP (`tcp` on
/// ESTABLISHED, `tcpfin` on the states after a FIN: FIN_WAIT, CLOSE_WAIT, LAST_ACK),
/// one for UDP (`udp`, replied or not). The name carries the values, so a change is a
/// new object (the old one is deleted once no rule refers to it).
pub fn ct_timeouts(t: &Timeouts) -> BTreeMap<String, CtTimeout> {
    let mut out = BTreeMap::new();
    if t.tcp != 0 || t.tcpfin != 0 {
        let mut policy = Vec::new();
        if t.tcp != 0 {
            policy.push((CTA_TIMEOUT_TCP_ESTABLISHED, t.tcp));
        }
        if t.tcpfin != 0 {
            for state in [
                CTA_TIMEOUT_TCP_FIN_WAIT,
                CTA_TIMEOUT_TCP_CLOSE_WAIT,
                CTA_TIMEOUT_TCP_LAST_ACK,
            ] {
                policy.push((state, t.tcpfin));
            }
        }
        out.insert(
            format!("timeout_tcp_{}_{}", t.tcp, t.tcpfin),
            CtTimeout {
                l4proto: Proto::Tcp.number(),
                policy,
            },
        );
    }
    if t.udp != 0 {
        out.insert(
            format!("timeout_udp_{}", t.udp),
            CtTimeout {
                l4proto: Proto::Udp.number(),
                policy: vec![
                    (CTA_TIMEOUT_UDP_UNREPLIED, t.udp),
                    (CTA_TIMEOUT_UDP_REPLIED, t.udp),
                ],
            },
        );
    }
    out
}

/// TCP flag bits (the byte at offset 13 of the TCP header).
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

const K: u32 = reg(0);
const SLOT: u32 = reg(9);
const DATA: u32 = reg(11);
/// DR: the frame's original destination MAC (2 registers).
const ORIG: u32 = reg(13);
const IIF: u32 = reg(15);

/// The nf_tables family of one vipd table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fam {
    /// `ip vipd`: IPv4 NAT services.
    Ip,
    /// `ip6 vipd`: IPv6 NAT services.
    Ip6,
    /// `netdev vipd`: direct-routing services of both families.
    Netdev,
}

impl Fam {
    pub const ALL: [Fam; 3] = [Fam::Ip, Fam::Ip6, Fam::Netdev];
    pub fn nfproto(self) -> u8 {
        match self {
            Fam::Ip => NFPROTO_IPV4,
            Fam::Ip6 => NFPROTO_IPV6,
            Fam::Netdev => NFPROTO_NETDEV,
        }
    }
}

/// Everything vipd wants in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub tables: BTreeMap<Fam, TablePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TablePlan {
    /// Base chains by name.
    pub base: BTreeMap<String, BaseChain>,
    /// Service chains by name (shared with the planner's cache: comparing an unchanged
    /// service is a pointer comparison).
    pub services: BTreeMap<String, Arc<SvcPlan>>,
    /// `ct timeout` objects by name (`lvs_timeouts`, NAT tables only).
    pub ct_timeouts: BTreeMap<String, CtTimeout>,
    /// Verdict maps of the table by name (NAT tables): [`DISPATCH_MAP`] and
    /// [`COUNT_MAP`], `address . protocol . port` of a service → `goto` its chain
    /// (element data: the chain's name). One lookup finds a packet's service however
    /// many there are, where a rule per service made every packet walk them all.
    pub maps: BTreeMap<String, SetPlan>,
}

/// NAT tables: the services with an address and a port by the packet's destination,
/// for `pre` and `out` (→ `svcN`).
pub const DISPATCH_MAP: &str = "dispatch";
/// NAT tables: the same services by the connection's original destination, for `post`
/// (→ `svcN_post`).
pub const COUNT_MAP: &str = "count";

/// A NAT service's postrouting chain: counts its packets per real server and records
/// persistence.
pub fn post_chain(chain: &str) -> String {
    format!("{chain}_post")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    pub rules: Vec<Vec<Expr>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcPlan {
    pub key: ServiceKey,
    pub rules: Vec<Vec<Expr>>,
    /// NAT: the rules of its chain [`post_chain`] (empty for DR: no such chain).
    pub post_rules: Vec<Vec<Expr>>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, SetPlan>,
    /// Destinations in the kernel and the keys their counters are found under.
    pub dests: Vec<PlannedDest>,
    /// Set whose element counters count the destinations' packets and bytes.
    pub packets_set: String,
    /// The slot map (slot → destination data).
    pub slots_set: String,
    /// The persistence map (masked client address → destination data), if any.
    pub pers_set: Option<String>,
    /// DR: the flow table (flow → destination MAC).
    pub flows_set: Option<String>,
}

impl SvcPlan {
    /// Data (address[.port] / MAC) of the destinations taking new clients.
    pub fn live(&self) -> std::collections::BTreeSet<&[u8]> {
        self.sets
            .get(&self.slots_set)
            .map(|s| s.elems.values().map(|v| v.as_slice()).collect())
            .unwrap_or_default()
    }

    /// Data (address[.port] / MAC) of every destination in the kernel, drained ones
    /// included.
    pub fn reach(&self) -> std::collections::BTreeSet<&[u8]> {
        self.sets
            .get(&self.packets_set)
            .map(|s| s.elems.keys().map(|v| v.as_slice()).collect())
            .unwrap_or_default()
    }
}

pub use super::elems::{Elem, Elems};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPlan {
    pub def: SetDef,
    /// key → data (empty for plain sets).
    pub elems: Elems,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDest {
    pub addr: IpAddr,
    pub port: u16,
    /// Key of this destination in `packets_set`.
    pub packets_key: Elem,
}

/// A destination left out because the backend cannot reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnreachableDest {
    pub service: ServiceKey,
    pub addr: IpAddr,
    pub port: u16,
    pub reason: &'static str,
}

/// Stable numbering of services: chain and set names derive from it. Ids are never
/// reused while the backend lives.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    next_svc: u32,
    svcs: BTreeMap<ServiceKey, u32>,
    /// The last plan of each service, reused while the service is unchanged.
    cache: BTreeMap<ServiceKey, (Service, u32, SvcOut)>,
    /// `lvs_timeouts`: every service's plan depends on them.
    timeouts: Timeouts,
}

impl Ids {
    /// `lvs_timeouts` from now on; forgets the plans made with others.
    pub fn set_timeouts(&mut self, t: &Timeouts) {
        if self.timeouts != *t {
            self.timeouts = *t;
            self.cache.clear();
        }
    }

    fn sync(&mut self, table: &Table) {
        let keys: std::collections::BTreeSet<ServiceKey> =
            table.services.iter().map(|s| s.key).collect();
        self.svcs.retain(|k, _| keys.contains(k));
        for svc in &table.services {
            if !self.svcs.contains_key(&svc.key) {
                self.next_svc += 1;
                self.svcs.insert(svc.key, self.next_svc);
            }
        }
    }
}

/// The port a NAT destination gets: without one in a service with one, the service's.
fn nat_port(svc: &Service, d: &Dest) -> u16 {
    match svc.key {
        ServiceKey::Addr { port, .. } if d.port == 0 => port,
        _ => d.port,
    }
}

/// The forwarding method of a service (all its destinations share it; `check` refuses
/// mixes).
pub fn forward_of(svc: &Service) -> Forward {
    svc.dests.first().map(|d| d.forward).unwrap_or(svc.forward)
}

/// Effective persistence (a zero timeout means none).
fn persistence_of(svc: &Service) -> Option<Persistence> {
    svc.persistence.filter(|p| !p.timeout.is_zero())
}

pub(super) struct L3 {
    pub(super) saddr: u32,
    pub(super) daddr: u32,
    /// Address length in bytes.
    pub(super) alen: u32,
    pub(super) nfproto: u8,
    pub(super) ethertype: u16,
    pub(super) addr_type: u32,
}

pub(super) fn l3(f: Family) -> L3 {
    match f {
        Family::V4 => L3 {
            saddr: 12,
            daddr: 16,
            alen: 4,
            nfproto: NFPROTO_IPV4,
            ethertype: 0x0800,
            addr_type: TYPE_IPADDR,
        },
        Family::V6 => L3 {
            saddr: 8,
            daddr: 24,
            alen: 16,
            nfproto: NFPROTO_IPV6,
            ethertype: 0x86dd,
            addr_type: TYPE_IP6ADDR,
        },
    }
}

pub(super) fn octets(a: &IpAddr) -> Elem {
    match a {
        IpAddr::V4(a) => Elem::from_slice(&a.octets()),
        IpAddr::V6(a) => Elem::from_slice(&a.octets()),
    }
}

/// An address, or address . port (port big endian, padded to 4 bytes like nft's
/// concatenations).
fn addr_port(a: &IpAddr, port: Option<u16>) -> Elem {
    let mut v = octets(a);
    if let Some(p) = port {
        v.extend_from_slice(&p.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
    }
    v
}

pub(super) fn load(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg,
    }
}

pub(super) fn eq(sreg: u32, data: impl Into<Vec<u8>>) -> Expr {
    Expr::Cmp {
        sreg,
        op: NFT_CMP_EQ,
        data: data.into(),
    }
}

pub(super) fn meta(key: u32, dreg: u32) -> Expr {
    Expr::Meta { key, dreg }
}

fn lookup(set: &str, sreg: u32, dreg: Option<u32>) -> Expr {
    Expr::Lookup {
        set: set.to_string(),
        sreg,
        dreg,
        invert: false,
    }
}

fn goto(chain: &str) -> Expr {
    Expr::Verdict {
        code: NFT_GOTO,
        chain: Some(chain.to_string()),
    }
}

/// `reg >= n` 4-byte registers after `r`.
fn after(r: u32, bytes: u32) -> u32 {
    r + bytes.div_ceil(4)
}

/// The ways a packet can belong to a service, each a list of match expressions
/// (fwmark services that rewrite ports only take protocols with ports).
fn match_alts(key: &ServiceKey, with_ports: bool) -> Vec<Vec<Expr>> {
    match key {
        ServiceKey::Addr { addr, port, proto } => {
            let l = l3(Family::of(addr));
            let mut v = vec![
                load(NFT_PAYLOAD_NETWORK_HEADER, l.daddr, l.alen, K),
                eq(K, octets(addr).to_vec()),
                meta(NFT_META_L4PROTO, K),
                eq(K, [proto.number()]),
            ];
            if *port != 0 {
                v.push(load(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, K));
                v.push(eq(K, port.to_be_bytes()));
            }
            vec![v]
        }
        ServiceKey::Fwmark { mark, .. } => {
            let m = vec![meta(NFT_META_MARK, K), eq(K, mark.to_ne_bytes())];
            if with_ports {
                [Proto::Tcp, Proto::Udp, Proto::Sctp]
                    .iter()
                    .map(|p| {
                        let mut v = m.clone();
                        v.push(meta(NFT_META_L4PROTO, K));
                        v.push(eq(K, [p.number()]));
                        v
                    })
                    .collect()
            } else {
                vec![m]
            }
        }
    }
}

/// The same matches on the conntrack original tuple (postrouting, after DNAT).
fn ct_match_alts(key: &ServiceKey, with_ports: bool) -> Vec<Vec<Expr>> {
    let dir = vec![meta_ct(NFT_CT_DIRECTION, None), eq(K, [IP_CT_DIR_ORIGINAL])];
    match key {
        ServiceKey::Addr { addr, port, proto } => {
            let ct_dst = if addr.is_ipv4() {
                NFT_CT_DST_IP
            } else {
                NFT_CT_DST_IP6
            };
            let mut v = dir;
            v.extend([
                meta_ct(ct_dst, Some(IP_CT_DIR_ORIGINAL)),
                eq(K, octets(addr).to_vec()),
                meta(NFT_META_L4PROTO, K),
                eq(K, [proto.number()]),
            ]);
            if *port != 0 {
                v.push(meta_ct(NFT_CT_PROTO_DST, Some(IP_CT_DIR_ORIGINAL)));
                v.push(eq(K, port.to_be_bytes()));
            }
            vec![v]
        }
        ServiceKey::Fwmark { .. } => match_alts(key, with_ports)
            .into_iter()
            .map(|m| dir.iter().cloned().chain(m).collect())
            .collect(),
    }
}

fn meta_ct(key: u32, dir: Option<u8>) -> Expr {
    Expr::Ct { key, dir, dreg: K }
}

/// Loads the persistence key: the source address under the netmask.
fn persist_key(l: &L3, p: &Persistence) -> Vec<Expr> {
    let mut v = vec![load(NFT_PAYLOAD_NETWORK_HEADER, l.saddr, l.alen, K)];
    v.extend(mask_key(l, p));
    v
}

/// Applies the persistence netmask to the address in K (nothing for a host mask).
fn mask_key(l: &L3, p: &Persistence) -> Option<Expr> {
    ((p.prefix_len as u32) < l.alen * 8).then(|| Expr::Mask {
        sreg: K,
        dreg: K,
        mask: prefix_mask(l.alen as usize, p.prefix_len),
    })
}

/// What a service's chain and sets look like.
struct SvcCtx<'a> {
    svc: &'a Service,
    chain: String,
    l: L3,
    dr: bool,
    /// NAT: destinations carry ports (DNAT rewrites the port).
    port_mode: bool,
    pers: Option<Persistence>,
    /// DR: how long flows stay pinned.
    timeouts: FlowTimeouts,
}

impl SvcCtx<'_> {
    fn set(&self, what: &str) -> String {
        format!("{}_{what}", self.chain)
    }
}

type Rules = Vec<Vec<Expr>>;
/// fwmark (0), with a port (1), port 0 (2); then the key.
type DispatchOrder = (u8, ServiceKey);

/// Everything one service contributes to the plan (a pure function of the service and
/// its id, so it is cached while the service does not change).
#[derive(Debug, Clone)]
struct SvcOut {
    fam: Fam,
    chain: String,
    plan: Arc<SvcPlan>,
    /// Sort key of its dispatch rules (fwmark, then with port, then port 0).
    order: DispatchOrder,
    /// (base chain, rules sending the service's packets to its chain)
    dispatch: Vec<(String, Vec<Vec<Expr>>)>,
    post: Vec<Vec<Expr>>,
    /// NAT services with an address and a port: their key in the table's verdict maps
    /// (instead of `dispatch` and `post` rules).
    map_key: Option<Elem>,
    unreachable: Vec<UnreachableDest>,
    /// Size of the consistent-hash table, if the service hashes.
    hash_size: Option<usize>,
}

/// Plans the whole table. `check` must have accepted it.
pub fn build(table: &Table, ids: &mut Ids) -> (Plan, Vec<UnreachableDest>) {
    ids.sync(table);
    let mut plan = Plan::default();
    let mut unreachable = Vec::new();
    let mut dispatch: BTreeMap<(Fam, String), Vec<(DispatchOrder, Rules)>> = BTreeMap::new();
    let mut post: BTreeMap<Fam, Vec<Vec<Expr>>> = BTreeMap::new();
    // Per NAT table: (map key, service chain) of the services found by the maps.
    let mut mapped: BTreeMap<Fam, Vec<(Elem, String)>> = BTreeMap::new();

    let mut cache = std::mem::take(&mut ids.cache);
    for svc in &table.services {
        let sid = ids.svcs[&svc.key];
        let out = match cache.remove(&svc.key) {
            Some((s, id, out)) if s == *svc && id == sid => out,
            prev => {
                let prev = prev.map(|p| (p.1 == sid, p.2));
                let hash_size = prev.as_ref().and_then(|p| p.1.hash_size);
                // The slots it had, for a round robin that moves as few as it can.
                let slots = prev
                    .as_ref()
                    .filter(|p| p.0)
                    .and_then(|p| p.1.plan.sets.get(&p.1.plan.slots_set));
                plan_service(svc, sid, hash_size, slots, &ids.timeouts)
            }
        };
        for (chain, rules) in &out.dispatch {
            dispatch
                .entry((out.fam, chain.clone()))
                .or_default()
                .push((out.order, rules.clone()));
        }
        post.entry(out.fam)
            .or_default()
            .extend(out.post.iter().cloned());
        if let Some(k) = &out.map_key {
            mapped
                .entry(out.fam)
                .or_default()
                .push((k.clone(), out.chain.clone()));
        }
        unreachable.extend(out.unreachable.iter().cloned());
        plan.tables
            .entry(out.fam)
            .or_default()
            .services
            .insert(out.chain.clone(), out.plan.clone());
        ids.cache.insert(svc.key, (svc.clone(), sid, out));
    }

    // Base chains of every table that has services.
    for (fam, t) in plan.tables.iter_mut() {
        if *fam != Fam::Netdev {
            t.ct_timeouts = ct_timeouts(&ids.timeouts);
        }
        let mut chains: Vec<(String, Hook)> = Vec::new();
        if *fam == Fam::Netdev {
            for (f, name) in dispatch.keys() {
                if f == fam {
                    chains.push((
                        name.clone(),
                        Hook {
                            num: NF_NETDEV_INGRESS,
                            priority: NETDEV_PRIORITY,
                            kind: "filter",
                            dev: Some(name["in_".len()..].to_string()),
                        },
                    ));
                }
            }
        } else {
            let h = |num, priority, kind| Hook {
                num,
                priority,
                kind,
                dev: None,
            };
            chains.push((
                "pre".into(),
                h(NF_INET_PRE_ROUTING, NF_IP_PRI_NAT_DST, "nat"),
            ));
            chains.push(("out".into(), h(NF_INET_LOCAL_OUT, NF_IP_PRI_NAT_DST, "nat")));
            chains.push((
                "post".into(),
                h(NF_INET_POST_ROUTING, NF_IP_PRI_NAT_SRC, "filter"),
            ));
        }
        let by_map = mapped.remove(fam).unwrap_or_default();
        let l = l3(if *fam == Fam::Ip6 {
            Family::V6
        } else {
            Family::V4
        });
        for (name, hook) in chains {
            let rules = match name.as_str() {
                "post" => {
                    let mut r = post.get(fam).cloned().unwrap_or_default();
                    if !by_map.is_empty() {
                        r.push(count_map_rule(&l));
                    }
                    r
                }
                _ => {
                    let mut d = dispatch.remove(&(*fam, name.clone())).unwrap_or_default();
                    d.sort_by_key(|a| a.0);
                    // The map takes the place of the services with a port: after
                    // the fwmark services, before those with port 0.
                    let mut r: Rules = Vec::new();
                    let mut map_rule = (!by_map.is_empty()).then(|| dispatch_map_rule(&l));
                    for (order, rules) in d {
                        if order.0 > 1 {
                            r.extend(map_rule.take());
                        }
                        r.extend(rules);
                    }
                    r.extend(map_rule);
                    r
                }
            };
            t.base.insert(name, BaseChain { hook, rules });
        }
        if !by_map.is_empty() {
            for name in [DISPATCH_MAP, COUNT_MAP] {
                let d = def(
                    name,
                    NFT_SET_MAP,
                    (map_key_type(&l), map_key_len(&l)),
                    Some((NFT_DATA_VERDICT, 0)),
                );
                let elems = by_map
                    .iter()
                    .map(|(k, c)| {
                        let to = if name == COUNT_MAP {
                            post_chain(c)
                        } else {
                            c.clone()
                        };
                        (k.clone(), Elem::from_slice(to.as_bytes()))
                    })
                    .collect();
                t.maps.insert(name.to_string(), SetPlan { def: d, elems });
            }
        }
    }
    (plan, unreachable)
}

/// A set's definition: `key` and `data` are (type, length); no timeout, size, counter.
fn def(name: &str, flags: u32, key: (u32, u32), data: Option<(u32, u32)>) -> SetDef {
    SetDef {
        name: name.to_string(),
        flags,
        key_type: key.0,
        key_len: key.1,
        data,
        timeout_ms: None,
        size: None,
        counter: false,
        key_host_order: false,
        tag: 0,
    }
}

/// nf_tables type of a verdict map key: `addr . inet_proto . inet_service`.
fn map_key_type(l: &L3) -> u32 {
    (((l.addr_type << TYPE_BITS) | TYPE_INET_PROTO) << TYPE_BITS) | TYPE_INET_SERVICE
}

/// Length of a verdict map key (each part padded to 4 bytes).
fn map_key_len(l: &L3) -> u32 {
    l.alen + 4 + 4
}

/// A service's key in the verdict maps: address . protocol . port, as the rules load
/// them (each part padded to a register).
fn map_key(addr: &IpAddr, proto: Proto, port: u16) -> Elem {
    let mut k = octets(addr);
    k.extend_from_slice(&[proto.number(), 0, 0, 0]);
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    k
}

/// `ip daddr . meta l4proto . th dport vmap @dispatch` (`pre` and `out`).
fn dispatch_map_rule(l: &L3) -> Vec<Expr> {
    let p = after(K, l.alen);
    vec![
        load(NFT_PAYLOAD_NETWORK_HEADER, l.daddr, l.alen, K),
        meta(NFT_META_L4PROTO, p),
        load(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, p + 1),
        lookup(DISPATCH_MAP, K, Some(NFT_REG_VERDICT)),
    ]
}

/// `ct direction original ct original daddr . meta l4proto . ct original proto-dst
/// vmap @count` (`post`).
fn count_map_rule(l: &L3) -> Vec<Expr> {
    let p = after(K, l.alen);
    let ct_dst = if l.alen == 4 {
        NFT_CT_DST_IP
    } else {
        NFT_CT_DST_IP6
    };
    vec![
        meta_ct(NFT_CT_DIRECTION, None),
        eq(K, [IP_CT_DIR_ORIGINAL]),
        meta_ct(ct_dst, Some(IP_CT_DIR_ORIGINAL)),
        meta(NFT_META_L4PROTO, p),
        Expr::Ct {
            key: NFT_CT_PROTO_DST,
            dir: Some(IP_CT_DIR_ORIGINAL),
            dreg: p + 1,
        },
        lookup(COUNT_MAP, K, Some(NFT_REG_VERDICT)),
    ]
}

fn plan_service(
    svc: &Service,
    sid: u32,
    prev_hash_size: Option<usize>,
    prev_slots: Option<&SetPlan>,
    lvs_timeouts: &Timeouts,
) -> SvcOut {
    let family = svc.key.family();
    let dr = forward_of(svc) == Forward::Dr;
    let port_mode = !dr
        && match svc.key {
            ServiceKey::Addr { port, .. } if port != 0 => true,
            _ => svc.dests.iter().any(|d| d.port != 0) || svc.dests.is_empty(),
        };
    let cx = SvcCtx {
        svc,
        chain: format!("svc{sid}"),
        l: l3(family),
        dr,
        port_mode,
        pers: persistence_of(svc),
        timeouts: match svc.key {
            ServiceKey::Addr { proto, .. } => flow_timeouts_with(proto, lvs_timeouts),
            // (`check` refuses DR for fwmark services)
            ServiceKey::Fwmark { .. } => flow_timeouts_with(Proto::Udp, lvs_timeouts),
        },
    };
    let fam = if dr {
        Fam::Netdev
    } else if family == Family::V4 {
        Fam::Ip
    } else {
        Fam::Ip6
    };
    let mut unreachable = Vec::new();
    let (mut svc_plan, hash_size) = service(&cx, prev_hash_size, prev_slots, &mut unreachable);
    let order = (
        match svc.key {
            ServiceKey::Fwmark { .. } => 0,
            ServiceKey::Addr { port, .. } if port != 0 => 1,
            _ => 2,
        },
        svc.key,
    );
    let mut dispatch = Vec::new();
    let mut post = Vec::new();
    let mut map_key_of = None;
    if dr {
        let dev = svc.device.clone().unwrap_or_default();
        let pre = vec![
            meta(NFT_META_IIFTYPE, K),
            eq(K, ARPHRD_ETHER.to_ne_bytes()),
            meta(NFT_META_PROTOCOL, K),
            eq(K, cx.l.ethertype.to_be_bytes()),
        ];
        let live = !svc_plan.live().is_empty();
        let rules = match_alts(&svc.key, false)
            .into_iter()
            .map(|m| {
                let mut r = pre.clone();
                r.extend(m);
                if live {
                    // The director becomes the frame's source: `ether saddr set ether
                    // daddr` (the client sent it to the director's MAC). Not for a
                    // service that rejects: the reject answers the frame's source.
                    r.push(load(NFT_PAYLOAD_LL_HEADER, 0, 6, K));
                    r.push(Expr::PayloadWrite {
                        base: NFT_PAYLOAD_LL_HEADER,
                        offset: 6,
                        len: 6,
                        sreg: K,
                    });
                }
                r.push(goto(&cx.chain));
                r
            })
            .collect();
        dispatch.push((format!("in_{dev}"), rules));
    } else {
        // lvs_timeouts: the connection's conntrack timeouts, attached while the nat
        // chain sees its first packet (the entry is not confirmed yet). An object
        // applies only to packets of its protocol, so a port-0 or fwmark service names
        // both.
        let objrefs: Vec<Expr> = ct_timeouts(lvs_timeouts)
            .into_iter()
            .filter(|(_, t)| match svc.key {
                ServiceKey::Addr { proto, port, .. } if port != 0 => proto.number() == t.l4proto,
                _ => true,
            })
            .map(|(name, _)| Expr::Objref {
                ty: NFT_OBJECT_CT_TIMEOUT,
                name,
            })
            .collect();
        let post_chain = post_chain(&cx.chain);
        match svc.key {
            ServiceKey::Addr { addr, port, proto } if port != 0 => {
                // Found by the verdict maps; the timeouts open the service's chain.
                map_key_of = Some(map_key(&addr, proto, port));
                if !objrefs.is_empty() {
                    svc_plan.rules.insert(0, objrefs);
                }
            }
            _ => {
                let rules: Vec<Vec<Expr>> = match_alts(&svc.key, port_mode)
                    .into_iter()
                    .map(|mut m| {
                        m.extend(objrefs.iter().cloned());
                        m.push(goto(&cx.chain));
                        m
                    })
                    .collect();
                dispatch.push(("pre".to_string(), rules.clone()));
                dispatch.push(("out".to_string(), rules));
                // `jump`: a packet may match another fwmark or port-0 service's rule
                // too, and is counted wherever its server is listed (as before).
                for mut m in ct_match_alts(&svc.key, port_mode) {
                    m.push(Expr::Verdict {
                        code: NFT_JUMP,
                        chain: Some(post_chain.clone()),
                    });
                    post.push(m);
                }
            }
        }
        // The service's postrouting chain, for packets of its connections (client →
        // server, after DNAT).
        let ctr = cx.set("ctr");
        let daddr_port = |r: u32| {
            let mut v = vec![load(NFT_PAYLOAD_NETWORK_HEADER, cx.l.daddr, cx.l.alen, r)];
            if port_mode {
                v.push(load(
                    NFT_PAYLOAD_TRANSPORT_HEADER,
                    2,
                    2,
                    after(r, cx.l.alen),
                ));
            }
            v
        };
        // Count client→server packets after DNAT, by the real server's address[.port].
        let mut r = daddr_port(K);
        r.push(lookup(&ctr, K, None));
        svc_plan.post_rules.push(r);
        // Persistence: remember (or refresh) which server the client's connection went
        // to, unless that server no longer takes new clients. Done here, on every
        // packet, because the nat chains only see a connection's first packet.
        if let Some(p) = &cx.pers {
            let src = if cx.l.alen == 4 {
                NFT_CT_SRC_IP
            } else {
                NFT_CT_SRC_IP6
            };
            let mut r = vec![Expr::Ct {
                key: src,
                dir: Some(IP_CT_DIR_REPLY),
                dreg: DATA,
            }];
            if port_mode {
                r.push(Expr::Ct {
                    key: NFT_CT_PROTO_SRC,
                    dir: Some(IP_CT_DIR_REPLY),
                    dreg: after(DATA, cx.l.alen),
                });
            }
            r.push(lookup(&cx.set("live"), DATA, None));
            r.push(Expr::Ct {
                key: src,
                dir: Some(IP_CT_DIR_ORIGINAL),
                dreg: K,
            });
            r.extend(mask_key(&cx.l, p));
            r.push(Expr::Dynset {
                set: cx.set("pers"),
                op: NFT_DYNSET_OP_UPDATE,
                sreg_key: K,
                sreg_data: Some(DATA),
                timeout_ms: Some(p.timeout.as_millis() as u64),
            });
            svc_plan.post_rules.push(r);
        }
    }
    SvcOut {
        fam,
        chain: cx.chain.clone(),
        plan: Arc::new(svc_plan),
        order,
        dispatch,
        post,
        map_key: map_key_of,
        unreachable,
        hash_size,
    }
}

/// Size of a consistent-hash table for `n` destinations. The size is the hash modulus,
/// so changing it moves almost every flow: keep the previous size while it stays
/// between 4 and 32 slots per destination (or is the minimum size).
pub fn hash_table_size(n: usize, prev: Option<usize>) -> usize {
    let fresh = slots::consistent_size(n);
    match prev {
        Some(p) if p >= fresh.min(4 * n.max(1)) && p <= fresh.max(32 * n) => p,
        _ => fresh,
    }
}

/// A round-robin sequence with the multiset of `fresh` that keeps each slot of the
/// previous one (`prev`: slot → data) whose destination still wants that many slots, and
/// fills the rest in `fresh`'s order: removing one of 10,000 servers rewrites a few
/// slots instead of shifting them all. Connections are not affected either way (NAT
/// keeps them in conntrack); this is about the size of the kernel transaction. When
/// more than half would change anyway, `fresh` (smoothly interleaved) is used as is.
fn keep_slots<'a>(prev: &Elems, fresh: Vec<&'a [u8]>) -> Vec<&'a [u8]> {
    let n = fresh.len();
    let mut old: Vec<Option<&[u8]>> = vec![None; prev.len()];
    for (k, v) in prev.iter() {
        let slot = k
            .as_slice()
            .try_into()
            .map(|b: [u8; 4]| u32::from_ne_bytes(b) as usize);
        match slot {
            Ok(i) if i < old.len() => old[i] = Some(v.as_slice()),
            _ => return fresh,
        }
    }
    let mut want: HashMap<&'a [u8], usize, BuildBytesHasher> =
        HashMap::with_capacity_and_hasher(n, BuildBytesHasher);
    for d in &fresh {
        *want.entry(*d).or_default() += 1;
    }
    let mut out: Vec<Option<&'a [u8]>> = vec![None; n];
    let mut kept = 0;
    for (slot, data) in old.iter().take(n).enumerate() {
        let Some(data) = data else { continue };
        if let Some((key, left)) = want.get_key_value(*data).map(|(k, v)| (*k, *v)) {
            if left > 0 {
                want.insert(key, left - 1);
                out[slot] = Some(key);
                kept += 1;
            }
        }
    }
    if kept * 2 < n {
        return fresh;
    }
    let mut rest = fresh.iter().filter(|d| match want.get_mut(**d) {
        Some(left) if *left > 0 => {
            *left -= 1;
            true
        }
        _ => false,
    });
    let filled: Option<Vec<&'a [u8]>> = out
        .into_iter()
        .map(|s| s.or_else(|| rest.next().copied()))
        .collect();
    // (The counts match, so every hole is filled.)
    filled.unwrap_or(fresh)
}

/// A fast hasher for the short byte strings of set elements (addresses, ports, MACs) in
/// `keep_slots`; the keys are vipd's own, so SipHash's flood resistance buys nothing.
#[derive(Clone, Copy, Default)]
struct BuildBytesHasher;

impl std::hash::BuildHasher for BuildBytesHasher {
    type Hasher = BytesHasher;
    fn build_hasher(&self) -> BytesHasher {
        BytesHasher(0)
    }
}

struct BytesHasher(u64);

impl std::hash::Hasher for BytesHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn finish(&self) -> u64 {
        // murmur3's finaliser: the table indexes by the low bits, which the multiply
        // alone leaves depending on the low input bits only.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The first 16 bytes of `b`, big-endian, zero-padded: ordering by it agrees with
/// ordering the slices byte by byte wherever it does not tie.
fn byte_prefix(b: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let n = b.len().min(16);
    buf[..n].copy_from_slice(&b[..n]);
    u128::from_be_bytes(buf)
}

/// One service's chain rules and sets.
fn service(
    cx: &SvcCtx,
    prev_hash_size: Option<usize>,
    prev_slots: Option<&SetPlan>,
    unreachable: &mut Vec<UnreachableDest>,
) -> (SvcPlan, Option<usize>) {
    let svc = cx.svc;
    let l = &cx.l;
    // Destinations the kernel can reach, in configuration order, with the data the
    // rules forward to: NAT address[.port], DR MAC address.
    let mut reach: Vec<(&Dest, Elem)> = Vec::with_capacity(svc.dests.len());
    for d in &svc.dests {
        let data = if cx.dr {
            match d.mac {
                Some(mac) => Elem::from_slice(&mac),
                None => {
                    unreachable.push(UnreachableDest {
                        service: svc.key,
                        addr: d.addr,
                        port: d.port,
                        reason: "no link-layer address known (needed for direct routing)",
                    });
                    continue;
                }
            }
        } else {
            addr_port(&d.addr, cx.port_mode.then(|| nat_port(svc, d)))
        };
        reach.push((d, data));
    }
    // The same destination twice: keep the first. `by_data` orders the destinations by
    // their data bytes, the order of the sets keyed by it (see `sorted_map`).
    let order_by_data = |reach: &[(&Dest, Elem)]| {
        let mut v: Vec<(u128, usize)> = reach
            .iter()
            .enumerate()
            .map(|(i, (_, data))| (byte_prefix(data), i))
            .collect();
        v.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| reach[a.1].1.cmp(&reach[b.1].1))
                .then_with(|| reach[a.1].0.addr.cmp(&reach[b.1].0.addr))
                .then(a.1.cmp(&b.1))
        });
        v.into_iter().map(|(_, i)| i).collect::<Vec<usize>>()
    };
    let mut by_data = order_by_data(&reach);
    let mut dup = vec![false; reach.len()];
    for w in by_data.windows(2) {
        if reach[w[0]].1 == reach[w[1]].1 && reach[w[0]].0.addr == reach[w[1]].0.addr {
            dup[w[1]] = true;
        }
    }
    if dup.contains(&true) {
        let mut k = 0;
        reach.retain(|_| {
            k += 1;
            !dup[k - 1]
        });
        by_data = order_by_data(&reach);
    }
    let live: Vec<&(&Dest, Elem)> = reach.iter().filter(|r| r.0.weight > 0).collect();

    let hashed = cx.dr || !matches!(svc.sched, Sched::Rr | Sched::Wrr);
    let hash_size = hashed.then(|| hash_table_size(reach.len(), prev_hash_size));
    let slot_data: Vec<&[u8]> = if let Some(size) = hash_size {
        let input: Vec<(u64, u32)> = reach
            .iter()
            .map(|(d, _)| (slots::dest_key(&d.addr, d.port), d.weight))
            .collect();
        slots::consistent(&input, size)
            .into_iter()
            .map(|i| reach[i].1.as_slice())
            .collect()
    } else {
        let weights: Vec<u32> = live.iter().map(|r| r.0.weight).collect();
        let order = if weights.windows(2).all(|w| w[0] == w[1]) {
            // What `round_robin` returns for equal weights, without its O(n²) walk.
            (0..weights.len()).collect()
        } else {
            slots::round_robin(&weights, RR_SLOTS)
        };
        let fresh = order.into_iter().map(|i| live[i].1.as_slice()).collect();
        match prev_slots {
            Some(prev) => keep_slots(&prev.elems, fresh),
            None => fresh,
        }
    };
    let n_slots = slot_data.len() as u32;
    let slots_set = cx.set("slots");
    let pers_set = cx.set("pers");
    let ctr = cx.set("ctr");

    let (data_type, data_len) = if cx.dr {
        (TYPE_ETHERADDR, 6)
    } else if cx.port_mode {
        ((l.addr_type << TYPE_BITS) | TYPE_INET_SERVICE, l.alen + 4)
    } else {
        (l.addr_type, l.alen)
    };
    let mut sets = BTreeMap::new();
    sets.insert(
        slots_set.clone(),
        SetPlan {
            def: SetDef {
                key_host_order: true,
                ..def(
                    &slots_set,
                    NFT_SET_MAP,
                    (TYPE_MARK, 4),
                    Some((data_type, data_len)),
                )
            },
            elems: {
                // In key-byte order, so the map is built without comparing keys.
                let mut order: Vec<u32> = (0..slot_data.len() as u32).collect();
                order.sort_unstable_by_key(|slot| u32::from_be_bytes(slot.to_ne_bytes()));
                order
                    .into_iter()
                    .map(|slot| {
                        (
                            Elem::from_slice(&slot.to_ne_bytes()),
                            Elem::from_slice(slot_data[slot as usize]),
                        )
                    })
                    .collect()
            },
        },
    );
    if let Some(p) = &cx.pers {
        let mut d = def(
            &pers_set,
            NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL,
            (l.addr_type, l.alen),
            Some((data_type, data_len)),
        );
        d.timeout_ms = Some(p.timeout.as_millis() as u64);
        d.size = Some(PERSIST_MAX);
        d.tag = p.prefix_len as u64;
        sets.insert(
            pers_set.clone(),
            SetPlan {
                def: d,
                elems: Elems::new(),
            },
        );
    }
    // Live destinations: NAT records persistence only for them; DR refreshes persistence
    // from pinned flows only for them, and its fallback rules forward only to them.
    if cx.pers.is_some() || cx.dr {
        let live_set = cx.set("live");
        sets.insert(
            live_set.clone(),
            SetPlan {
                def: def(&live_set, 0, (data_type, data_len), None),
                elems: by_data
                    .iter()
                    .map(|&i| &reach[i])
                    .filter(|(d, _)| d.weight > 0)
                    .map(|(_, data)| (data.clone(), Elem::new()))
                    .collect(),
            },
        );
    }
    let flows_set = cx.set("flows");
    if cx.dr {
        let mut d = def(
            &flows_set,
            NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL,
            (flow_key_type(l), flow_key_len(l)),
            Some((data_type, data_len)),
        );
        d.timeout_ms = Some(cx.timeouts.established);
        d.size = Some(FLOWS_MAX);
        sets.insert(
            flows_set.clone(),
            SetPlan {
                def: d,
                elems: Elems::new(),
            },
        );
    }
    // Counters: NAT counts in postrouting by address[.port] of the rewritten packet, DR
    // by the rewritten destination MAC. Every reachable destination has one, including
    // drained (weight 0) ones, whose established connections still flow.
    let mut ctr_def = def(&ctr, 0, (data_type, data_len), None);
    ctr_def.counter = true;
    sets.insert(
        ctr.clone(),
        SetPlan {
            def: ctr_def,
            elems: by_data
                .iter()
                .map(|&i| (reach[i].1.clone(), Elem::new()))
                .collect(),
        },
    );
    let dests = reach
        .iter()
        .map(|(d, data)| PlannedDest {
            addr: d.addr,
            port: if cx.dr { d.port } else { nat_port(svc, d) },
            packets_key: data.clone(),
        })
        .collect();

    let rules = if cx.dr {
        dr_rules(cx, n_slots)
    } else if n_slots == 0 {
        reject_rules(cx)
    } else {
        // A remembered client goes where it went before (NAT records persistence in
        // postrouting, see `plan_service`); everybody else is scheduled.
        let dnat = Expr::Dnat {
            family: l.nfproto,
            reg_addr: DATA,
            reg_proto: cx.port_mode.then(|| after(DATA, l.alen)),
        };
        let mut rules = Vec::new();
        if let Some(p) = &cx.pers {
            let mut b = persist_key(l, p);
            b.push(lookup(&pers_set, K, Some(DATA)));
            b.push(dnat.clone());
            rules.push(b);
        }
        let mut c = select(cx, n_slots);
        c.push(lookup(&slots_set, SLOT, Some(DATA)));
        c.push(dnat);
        rules.push(c);
        rules
    };

    let plan = SvcPlan {
        key: svc.key,
        rules,
        post_rules: Vec::new(),
        sets,
        dests,
        packets_set: ctr,
        slots_set,
        pers_set: cx.pers.is_some().then_some(pers_set),
        flows_set: cx.dr.then_some(flows_set),
    };
    (plan, hash_size)
}

/// A service without live servers refuses new connections: TCP with a reset, anything
/// else with ICMP port unreachable.
fn reject_rules(cx: &SvcCtx) -> Rules {
    let tcp_rst = vec![
        meta(NFT_META_L4PROTO, K),
        eq(K, [Proto::Tcp.number()]),
        Expr::Reject {
            kind: NFT_REJECT_TCP_RST,
            code: 0,
        },
    ];
    let other = if cx.dr {
        Expr::Reject {
            kind: NFT_REJECT_ICMPX_UNREACH,
            code: NFT_REJECT_ICMPX_PORT_UNREACH,
        }
    } else {
        Expr::Reject {
            kind: NFT_REJECT_ICMP_UNREACH,
            code: if cx.l.alen == 4 {
                ICMP_PORT_UNREACH
            } else {
                ICMPV6_PORT_UNREACH
            },
        }
    };
    vec![tcp_rst, vec![other]]
}

/// nf_tables type of the DR flow key: `addr . addr . inet_service . inet_service`.
fn flow_key_type(l: &L3) -> u32 {
    let mut t = l.addr_type;
    for next in [l.addr_type, TYPE_INET_SERVICE, TYPE_INET_SERVICE] {
        t = (t << TYPE_BITS) | next;
    }
    t
}

/// Length of the DR flow key: two addresses and two ports, each port padded to 4 bytes.
fn flow_key_len(l: &L3) -> u32 {
    2 * l.alen + 8
}

/// Loads the DR flow key into K: source address, destination address, source port,
/// destination port (the layout of nft's `ip saddr . ip daddr . th sport . th dport`).
fn flow_key(l: &L3) -> Vec<Expr> {
    vec![
        load(NFT_PAYLOAD_NETWORK_HEADER, l.saddr, l.alen, K),
        load(
            NFT_PAYLOAD_NETWORK_HEADER,
            l.daddr,
            l.alen,
            after(K, l.alen),
        ),
        load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, after(K, 2 * l.alen)),
        load(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, after(K, 2 * l.alen + 4)),
    ]
}

/// Matches TCP segments whose flags under `mask` equal `value`.
fn tcp_flags(mask: u8, value: u8) -> Vec<Expr> {
    vec![
        load(NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1, K),
        Expr::Mask {
            sreg: K,
            dreg: K,
            mask: vec![mask],
        },
        eq(K, [value]),
    ]
}

/// The rules of a DR service's chain (see the module doc for the packet path).
fn dr_rules(cx: &SvcCtx, n_slots: u32) -> Rules {
    let l = &cx.l;
    let t = cx.timeouts;
    let flows = cx.set("flows");
    let ctr = cx.set("ctr");
    let live = cx.set("live");
    let pers = cx.set("pers");
    let tcp = matches!(
        cx.svc.key,
        ServiceKey::Addr {
            proto: Proto::Tcp,
            ..
        }
    );

    let fwd = [meta(NFT_META_IIF, IIF), Expr::Fwd { sreg_dev: IIF }];
    // The chosen MAC (in DATA) becomes the destination, and is read back from the frame:
    // nft (1.0.6) cannot print a map result used as a lookup key or as dynset data.
    let rewrite = [
        Expr::PayloadWrite {
            base: NFT_PAYLOAD_LL_HEADER,
            offset: 0,
            len: 6,
            sreg: DATA,
        },
        load(NFT_PAYLOAD_LL_HEADER, 0, 6, DATA),
    ];
    let flows_update = |timeout: u64| Expr::Dynset {
        set: flows.clone(),
        op: NFT_DYNSET_OP_UPDATE,
        sreg_key: K,
        sreg_data: Some(DATA),
        timeout_ms: Some(timeout),
    };
    let remember = |p: &Persistence| {
        let mut v = persist_key(l, p);
        v.push(Expr::Dynset {
            set: pers.clone(),
            op: NFT_DYNSET_OP_UPDATE,
            sreg_key: K,
            sreg_data: Some(DATA),
            timeout_ms: Some(p.timeout.as_millis() as u64),
        });
        v
    };
    // Pins a new flow to the MAC in DATA, replacing a stale entry (a server that has
    // left, or a new connection reusing a pinned 4-tuple: SYNs do not follow entries).
    let pin = || {
        let mut v = flow_key(l);
        v.push(Expr::Dynset {
            set: flows.clone(),
            op: NFT_DYNSET_OP_DELETE,
            sreg_key: K,
            sreg_data: Some(DATA),
            timeout_ms: None,
        });
        v.push(flows_update(t.new));
        v
    };
    let live_now = n_slots > 0;

    // 1. Pinned flows, by class of TCP flags.
    let classes: Vec<(Vec<Expr>, u64)> = if tcp {
        vec![
            (tcp_flags(TCP_FIN | TCP_SYN | TCP_RST, 0), t.established),
            (tcp_flags(TCP_FIN | TCP_SYN | TCP_RST, TCP_FIN), t.fin),
            (tcp_flags(TCP_SYN | TCP_RST, TCP_RST), t.rst),
        ]
    } else {
        vec![(Vec::new(), t.established)]
    };
    let pinned = |class: &[Expr], timeout: u64, refresh_client: Option<&Persistence>| {
        let mut r = class.to_vec();
        r.extend(flow_key(l));
        r.push(lookup(&flows, K, Some(DATA)));
        if !live_now {
            // The dispatch rule left the source alone (for the reject): the director
            // becomes the source here, before anything can fail.
            r.push(load(NFT_PAYLOAD_LL_HEADER, 0, 6, ORIG));
            r.push(Expr::PayloadWrite {
                base: NFT_PAYLOAD_LL_HEADER,
                offset: 6,
                len: 6,
                sreg: ORIG,
            });
        }
        r.extend(rewrite.iter().cloned());
        if let Some(p) = refresh_client {
            // Only for a live server (a drained one must not get the client back); fails
            // before the counter when not, and then the next rule forwards.
            r.push(lookup(&live, DATA, None));
            r.extend(remember(p));
            r.extend(flow_key(l));
        }
        r.push(lookup(&ctr, DATA, None));
        r.push(flows_update(timeout));
        r.extend(fwd.iter().cloned());
        r
    };
    let mut rules = Vec::new();
    if live_now {
        if let Some(p) = &cx.pers {
            rules.push(pinned(&classes[0].0, classes[0].1, Some(p)));
        }
    }
    for (class, timeout) in &classes {
        rules.push(pinned(class, *timeout, None));
    }

    if !live_now {
        // A pinned flow that could not be forwarded (its server left; the entry is deleted
        // right after the apply, or expires): the frame may be half rewritten, so drop it
        // rather than reject it.
        let mut x = if tcp {
            tcp_flags(TCP_SYN, 0)
        } else {
            Vec::new()
        };
        x.extend(flow_key(l));
        x.push(lookup(&flows, K, None));
        x.push(Expr::Verdict {
            code: NF_DROP as i32,
            chain: None,
        });
        rules.push(x);
        rules.extend(reject_rules(cx));
        return rules;
    }

    // 2. A remembered client goes where it went before. (An entry whose server has left
    // fails the counter lookup: the next rule reschedules.)
    let chosen = |mut v: Vec<Expr>| {
        v.extend(rewrite.iter().cloned());
        v.push(lookup(&ctr, DATA, None));
        if let Some(p) = &cx.pers {
            v.extend(remember(p));
        }
        v.extend(pin());
        v.extend(fwd.iter().cloned());
        v
    };
    if let Some(p) = &cx.pers {
        let mut b = persist_key(l, p);
        b.push(lookup(&pers, K, Some(DATA)));
        rules.push(chosen(b));
    }
    // 3. Everybody else is scheduled.
    let mut c = select(cx, n_slots);
    c.push(lookup(&cx.set("slots"), SLOT, Some(DATA)));
    rules.push(chosen(c));
    // 4. Only reached when a map is full: the frame is rewritten (to a live server),
    // send it, pinning the flow if only the persistence map was full.
    let to_live = vec![
        load(NFT_PAYLOAD_LL_HEADER, 0, 6, DATA),
        lookup(&live, DATA, None),
    ];
    if cx.pers.is_some() {
        let mut f = to_live.clone();
        f.extend(pin());
        f.extend(fwd.iter().cloned());
        rules.push(f);
    }
    let mut f = to_live;
    f.extend(fwd.iter().cloned());
    rules.push(f);
    rules
}

/// Expressions that leave the slot index in SLOT.
fn select(cx: &SvcCtx, n_slots: u32) -> Vec<Expr> {
    let l = &cx.l;
    let jhash = |len: u32| Expr::Jhash {
        sreg: K,
        len,
        dreg: SLOT,
        modulus: n_slots,
        seed: HASH_SEED,
    };
    let saddr = load(NFT_PAYLOAD_NETWORK_HEADER, l.saddr, l.alen, K);
    let daddr = |r| load(NFT_PAYLOAD_NETWORK_HEADER, l.daddr, l.alen, r);
    match cx.svc.sched {
        Sched::Rr | Sched::Wrr if cx.dr => vec![
            saddr,
            daddr(after(K, l.alen)),
            // source and destination port
            load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 4, after(K, 2 * l.alen)),
            jhash(2 * l.alen + 4),
        ],
        Sched::Rr | Sched::Wrr => vec![Expr::Numgen {
            dreg: SLOT,
            modulus: n_slots,
        }],
        Sched::Dh => vec![daddr(K), jhash(l.alen)],
        _ => {
            // sh, mh
            if cx.svc.flags.port {
                vec![
                    saddr,
                    load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, after(K, l.alen)),
                    jhash(l.alen + 4),
                ]
            } else {
                vec![saddr, jhash(l.alen)]
            }
        }
    }
}

#[cfg(test)]
mod keep_slots_tests {
    use super::*;

    fn map(seq: &[&'static [u8]]) -> Elems {
        seq.iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    Elem::from_slice(&(i as u32).to_ne_bytes()),
                    Elem::from_slice(d),
                )
            })
            .collect()
    }

    fn counts<'a>(seq: &[&'a [u8]]) -> BTreeMap<&'a [u8], usize> {
        let mut m = BTreeMap::new();
        for d in seq {
            *m.entry(*d).or_default() += 1;
        }
        m
    }

    #[test]
    fn removing_one_of_many_moves_one_slot() {
        let all: Vec<&'static [u8]> = vec![b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];
        let prev = map(&all);
        // `c` goes; the fresh sequence would shift everything after it.
        let fresh: Vec<&[u8]> = all.iter().copied().filter(|d| *d != b"c").collect();
        let got = keep_slots(&prev, fresh.clone());
        assert_eq!(counts(&got), counts(&fresh));
        let moved = got.iter().zip(&all).filter(|(g, p)| g != p).count();
        assert_eq!(moved, 1, "{got:?}");
        assert_eq!(got[2], b"h".as_slice());
    }

    #[test]
    fn weights_change_keeps_exact_proportions() {
        // 3:1 becomes 2:1 and then 1:3.
        let prev = map(&[b"a", b"a", b"b", b"a"]);
        let got = keep_slots(&prev, vec![b"a", b"b", b"a"]);
        assert_eq!(got, vec![b"a".as_slice(), b"a", b"b"]);
        let prev = map(&[b"a", b"a", b"b"]);
        let fresh: Vec<&[u8]> = vec![b"b", b"a", b"b", b"b"];
        let got = keep_slots(&prev, fresh.clone());
        assert_eq!(counts(&got), counts(&fresh));
    }

    #[test]
    fn a_mostly_new_sequence_is_taken_as_is() {
        let prev = map(&[b"a", b"b", b"c", b"d"]);
        let fresh: Vec<&[u8]> = vec![b"x", b"y", b"a", b"z"];
        assert_eq!(keep_slots(&prev, fresh.clone()), fresh);
        // A slot map that is not 0..n (never written by vipd): fresh too.
        let mut odd = map(&[b"a", b"b"]);
        odd.insert(
            Elem::from_slice(&9u32.to_ne_bytes()),
            Elem::from_slice(b"c"),
        );
        let fresh: Vec<&[u8]> = vec![b"c", b"b", b"a"];
        assert_eq!(keep_slots(&odd, fresh.clone()), fresh);
    }
}
