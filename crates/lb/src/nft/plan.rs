//! Pure translation of a [`Table`] into the nf_tables objects vipd wants: per family
//! table, its base chains with their rules, and per service one regular chain plus its
//! sets and maps with their elements. [`super::diff`] turns two plans into a batch.
//!
//! Register plan (32-bit registers, `expr::reg(n)`):
//!
//! | regs   | use                                                              |
//! |--------|------------------------------------------------------------------|
//! | 0..=8  | match scratch, hash input (IPv6 saddr.daddr.ports = 36 B), persistence key (0..=3) |
//! | 5..=6  | DR: the destination MAC read back from the rewritten frame       |
//! | 9      | slot (numgen / jhash result)                                     |
//! | 11..=15| NAT: destination address (+ port); DR: destination MAC (11..=12) |
//! | 15     | DR: input interface index                                        |

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::consts::*;
use super::encode::{Hook, SetDef};
use super::expr::{prefix_mask, reg, Expr};
use crate::model::{Dest, Family, Forward, Persistence, Proto, Sched, Service, ServiceKey, Table};
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

const K: u32 = reg(0);
const SLOT: u32 = reg(9);
const DATA: u32 = reg(11);
const NEWMAC: u32 = reg(5);
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
}

impl SvcPlan {
    /// Data (address[.port] / MAC) of the destinations taking new clients.
    pub fn live(&self) -> std::collections::BTreeSet<&[u8]> {
        self.sets
            .get(&self.slots_set)
            .map(|s| s.elems.values().map(|v| v.as_slice()).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPlan {
    pub def: SetDef,
    /// key → data (empty for plain sets).
    pub elems: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDest {
    pub addr: IpAddr,
    pub port: u16,
    /// Key of this destination in `packets_set`.
    pub packets_key: Vec<u8>,
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
}

impl Ids {
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

struct L3 {
    saddr: u32,
    daddr: u32,
    /// Address length in bytes.
    alen: u32,
    nfproto: u8,
    ethertype: u16,
    addr_type: u32,
}

fn l3(f: Family) -> L3 {
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

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An address, or address . port (port big endian, padded to 4 bytes like nft's
/// concatenations).
fn addr_port(a: &IpAddr, port: Option<u16>) -> Vec<u8> {
    let mut v = octets(a);
    if let Some(p) = port {
        v.extend_from_slice(&p.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
    }
    v
}

fn load(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg,
    }
}

fn eq(sreg: u32, data: impl Into<Vec<u8>>) -> Expr {
    Expr::Cmp {
        sreg,
        op: NFT_CMP_EQ,
        data: data.into(),
    }
}

fn meta(key: u32, dreg: u32) -> Expr {
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
                eq(K, octets(addr)),
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
                eq(K, octets(addr)),
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

    let mut cache = std::mem::take(&mut ids.cache);
    for svc in &table.services {
        let sid = ids.svcs[&svc.key];
        let out = match cache.remove(&svc.key) {
            Some((s, id, out)) if s == *svc && id == sid => out,
            prev => plan_service(svc, sid, prev.and_then(|p| p.2.hash_size)),
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
        for (name, hook) in chains {
            let rules = match name.as_str() {
                "post" => post.get(fam).cloned().unwrap_or_default(),
                _ => {
                    let mut d = dispatch.remove(&(*fam, name.clone())).unwrap_or_default();
                    d.sort_by_key(|a| a.0);
                    d.into_iter().flat_map(|(_, r)| r).collect()
                }
            };
            t.base.insert(name, BaseChain { hook, rules });
        }
    }
    (plan, unreachable)
}

fn plan_service(svc: &Service, sid: u32, prev_hash_size: Option<usize>) -> SvcOut {
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
    };
    let fam = if dr {
        Fam::Netdev
    } else if family == Family::V4 {
        Fam::Ip
    } else {
        Fam::Ip6
    };
    let mut unreachable = Vec::new();
    let (svc_plan, hash_size) = service(&cx, prev_hash_size, &mut unreachable);
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
        let rules: Vec<Vec<Expr>> = match_alts(&svc.key, port_mode)
            .into_iter()
            .map(|mut m| {
                m.push(goto(&cx.chain));
                m
            })
            .collect();
        dispatch.push(("pre".to_string(), rules.clone()));
        dispatch.push(("out".to_string(), rules));
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
        for m in ct_match_alts(&svc.key, port_mode) {
            // Count client→server packets after DNAT, by the real server's address[.port].
            let mut r = m.clone();
            r.extend(daddr_port(K));
            r.push(lookup(&ctr, K, None));
            post.push(r);
            // Persistence: remember (or refresh) which server the client's connection
            // went to, unless that server no longer takes new clients. Done here, on
            // every packet, because the nat chains only see a connection's first packet.
            if let Some(p) = &cx.pers {
                let src = if cx.l.alen == 4 {
                    NFT_CT_SRC_IP
                } else {
                    NFT_CT_SRC_IP6
                };
                let mut r = m;
                r.push(Expr::Ct {
                    key: src,
                    dir: Some(IP_CT_DIR_REPLY),
                    dreg: DATA,
                });
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
                post.push(r);
            }
        }
    }
    SvcOut {
        fam,
        chain: cx.chain.clone(),
        plan: Arc::new(svc_plan),
        order,
        dispatch,
        post,
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

/// One service's chain rules and sets.
fn service(
    cx: &SvcCtx,
    prev_hash_size: Option<usize>,
    unreachable: &mut Vec<UnreachableDest>,
) -> (SvcPlan, Option<usize>) {
    let svc = cx.svc;
    let l = &cx.l;
    // Destinations the kernel can reach, in configuration order, with the data the
    // rules forward to: NAT address[.port], DR MAC address.
    let mut reach: Vec<(&Dest, Vec<u8>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for d in &svc.dests {
        let data = if cx.dr {
            match d.mac {
                Some(mac) => mac.to_vec(),
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
        if !seen.insert((d.addr, data.clone())) {
            continue; // the same destination twice
        }
        reach.push((d, data));
    }
    let live: Vec<&(&Dest, Vec<u8>)> = reach.iter().filter(|r| r.0.weight > 0).collect();

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
        order.into_iter().map(|i| live[i].1.as_slice()).collect()
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
    let def = |name: &str, flags: u32, key: (u32, u32), data: Option<(u32, u32)>| SetDef {
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
            elems: slot_data
                .iter()
                .enumerate()
                .map(|(slot, data)| ((slot as u32).to_ne_bytes().to_vec(), data.to_vec()))
                .collect(),
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
                elems: BTreeMap::new(),
            },
        );
    }
    if cx.pers.is_some() && !cx.dr {
        let live_set = cx.set("live");
        sets.insert(
            live_set.clone(),
            SetPlan {
                def: def(&live_set, 0, (data_type, data_len), None),
                elems: live
                    .iter()
                    .map(|(_, data)| (data.clone(), Vec::new()))
                    .collect(),
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
            elems: reach
                .iter()
                .map(|(_, data)| (data.clone(), Vec::new()))
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

    // Rules.
    let mut rules = Vec::new();
    if n_slots == 0 {
        rules.push(vec![
            meta(NFT_META_L4PROTO, K),
            eq(K, [Proto::Tcp.number()]),
            Expr::Reject {
                kind: NFT_REJECT_TCP_RST,
                code: 0,
            },
        ]);
        rules.push(vec![if cx.dr {
            Expr::Reject {
                kind: NFT_REJECT_ICMPX_UNREACH,
                code: NFT_REJECT_ICMPX_PORT_UNREACH,
            }
        } else {
            Expr::Reject {
                kind: NFT_REJECT_ICMP_UNREACH,
                code: if l.alen == 4 {
                    ICMP_PORT_UNREACH
                } else {
                    ICMPV6_PORT_UNREACH
                },
            }
        }]);
    } else {
        // DR: the dispatch rule already made the director the frame's source (see
        // `plan_service`), so a rule that fails half-way leaves a frame the next rule can
        // still rewrite: only the destination MAC is written here.
        let action: Vec<Expr> = if cx.dr {
            let mut v = vec![
                Expr::PayloadWrite {
                    base: NFT_PAYLOAD_LL_HEADER,
                    offset: 0,
                    len: 6,
                    sreg: DATA,
                },
                // Count by the new destination MAC (read back: nft cannot print a map
                // result used as a lookup key) ...
                load(NFT_PAYLOAD_LL_HEADER, 0, 6, NEWMAC),
                lookup(&ctr, NEWMAC, None),
            ];
            if let Some(p) = &cx.pers {
                // ... and remember it for the client (or refresh the entry).
                v.extend(persist_key(l, p));
                v.push(Expr::Dynset {
                    set: pers_set.clone(),
                    op: NFT_DYNSET_OP_UPDATE,
                    sreg_key: K,
                    sreg_data: Some(NEWMAC),
                    timeout_ms: Some(p.timeout.as_millis() as u64),
                });
            }
            v.push(meta(NFT_META_IIF, IIF));
            v.push(Expr::Fwd { sreg_dev: IIF });
            v
        } else {
            // (NAT records persistence in postrouting, see `plan_service`.)
            vec![Expr::Dnat {
                family: l.nfproto,
                reg_addr: DATA,
                reg_proto: cx.port_mode.then(|| after(DATA, l.alen)),
            }]
        };
        if let Some(p) = &cx.pers {
            // A remembered client goes where it went before. (A DR entry whose server
            // has left fails the counter lookup: the next rule reschedules.)
            let mut b = persist_key(l, p);
            b.push(lookup(&pers_set, K, Some(DATA)));
            b.extend(action.iter().cloned());
            rules.push(b);
        }
        // Everybody else is scheduled.
        let mut c = select(cx, n_slots);
        c.push(lookup(&slots_set, SLOT, Some(DATA)));
        c.extend(action);
        rules.push(c);
        if cx.dr && cx.pers.is_some() {
            // Only reached when the persistence map is full: the frame is rewritten,
            // send it without remembering the client.
            rules.push(vec![meta(NFT_META_IIF, IIF), Expr::Fwd { sreg_dev: IIF }]);
        }
    }

    let plan = SvcPlan {
        key: svc.key,
        rules,
        sets,
        dests,
        packets_set: ctr,
        slots_set,
        pers_set: cx.pers.is_some().then_some(pers_set),
    };
    (plan, hash_size)
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
