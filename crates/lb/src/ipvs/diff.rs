//! From the backend-neutral [`Table`] to IPVS operations: [`lower`] turns the table into
//! the kernel's representation, [`diff`] computes the ordered operations that take the
//! kernel from what vipd last programmed to what it wants now. Both pure.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use super::consts::*;
use super::encode::{self, DestAttrs, SvcAttrs};
use crate::model::{Family, Forward, Service, ServiceKey, Table};
use crate::netlink::MsgBuf;

/// One virtual service with its destinations, in the kernel's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelService {
    pub svc: SvcAttrs,
    pub dests: Vec<DestAttrs>,
}

/// One IPVS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    NewService(SvcAttrs),
    SetService(SvcAttrs),
    DelService(ServiceKey),
    NewDest(ServiceKey, DestAttrs),
    SetDest(ServiceKey, DestAttrs),
    DelDest {
        key: ServiceKey,
        addr: IpAddr,
        port: u16,
    },
}

impl Op {
    /// The request message (with NLM_F_ACK) for IPVS family id `family`.
    pub fn encode(&self, family: u16, seq: u32) -> MsgBuf {
        match self {
            Op::NewService(s) => encode::new_service(family, s, seq),
            Op::SetService(s) => encode::set_service(family, s, seq),
            Op::DelService(k) => encode::del_service(family, k, seq),
            Op::NewDest(k, d) => encode::new_dest(family, k, d, seq),
            Op::SetDest(k, d) => encode::set_dest(family, k, d, seq),
            Op::DelDest { key, addr, port } => encode::del_dest(family, key, *addr, *port, seq),
        }
    }
}

fn fwd_name(fwd: u32) -> &'static str {
    match fwd {
        IP_VS_CONN_F_MASQ => "nat",
        IP_VS_CONN_F_LOCALNODE => "local",
        IP_VS_CONN_F_TUNNEL => "tun",
        IP_VS_CONN_F_DROUTE => "dr",
        _ => "?",
    }
}

struct DestFmt<'a>(&'a IpAddr, u16);

impl fmt::Display for DestFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::NewService(s) => write!(f, "add service {} (scheduler {})", s.key, s.sched),
            Op::SetService(s) => write!(f, "change service {} (scheduler {})", s.key, s.sched),
            Op::DelService(k) => write!(f, "delete service {k}"),
            Op::NewDest(k, d) => write!(
                f,
                "add destination {} to {k} ({}, weight {})",
                DestFmt(&d.addr, d.port),
                fwd_name(d.fwd),
                d.weight
            ),
            Op::SetDest(k, d) => write!(
                f,
                "change destination {} of {k} ({}, weight {})",
                DestFmt(&d.addr, d.port),
                fwd_name(d.fwd),
                d.weight
            ),
            Op::DelDest { key, addr, port } => {
                write!(f, "delete destination {} of {key}", DestFmt(addr, *port))
            }
        }
    }
}

/// `IP_VS_CONN_F_*` forwarding method of `fwd`.
pub fn conn_flags(fwd: Forward) -> u32 {
    match fwd {
        Forward::Nat => IP_VS_CONN_F_MASQ,
        Forward::Dr => IP_VS_CONN_F_DROUTE,
        Forward::Tun => IP_VS_CONN_F_TUNNEL,
    }
}

/// Persistence timeout in whole seconds, rounded up (a sub-second timeout still
/// persists), saturating at u32::MAX ([`super::check_table`] rejects large values).
fn timeout_secs(d: std::time::Duration) -> u32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// The kernel's form of one service. `Service::forward` is not used: every destination
/// carries its own method. `Service::device` and `Dest::mac` mean nothing to IPVS (the
/// kernel routes and resolves neighbours itself).
pub fn lower_service(s: &Service) -> KernelService {
    let family = s.key.family();
    let mut flags = 0;
    if s.flags.one_packet {
        flags |= IP_VS_SVC_F_ONEPACKET;
    }
    if s.flags.fallback {
        flags |= IP_VS_SVC_F_SCHED_SH_FALLBACK;
    }
    if s.flags.port {
        flags |= IP_VS_SVC_F_SCHED_SH_PORT;
    }
    if s.flags.sched3 {
        flags |= IP_VS_SVC_F_SCHED3;
    }
    let (timeout, prefix) = match &s.persistence {
        Some(p) => {
            flags |= IP_VS_SVC_F_PERSISTENT;
            (timeout_secs(p.timeout), Some(p.prefix_len))
        }
        None => (0, None),
    };
    // Without persistence the kernel still wants a netmask (and for IPv6 a valid prefix
    // length): a host mask, as ipvsadm sends.
    let netmask = match family {
        Family::V4 => match prefix.unwrap_or(32).min(32) {
            0 => 0,
            n => u32::MAX << (32 - n),
        },
        Family::V6 => u32::from(prefix.unwrap_or(128).min(128)),
    };
    let mut seen = HashSet::new();
    let dests = s
        .dests
        .iter()
        .filter(|d| seen.insert((d.addr, d.port)))
        .map(|d| DestAttrs {
            addr: d.addr,
            port: d.port,
            fwd: conn_flags(d.forward),
            weight: d.weight,
            u_thresh: d.upper_threshold,
            l_thresh: d.lower_threshold,
        })
        .collect();
    KernelService {
        svc: SvcAttrs {
            key: s.key,
            sched: s.sched.name().to_string(),
            flags,
            timeout,
            netmask,
            pe_name: s.pe_name.clone(),
        },
        dests,
    }
}

/// The kernel's form of a table, in the table's order. A repeated service key or
/// destination keeps its first occurrence ([`super::check_table`] rejects repeats).
pub fn lower(table: &Table) -> Vec<KernelService> {
    let mut seen = HashSet::new();
    table
        .services
        .iter()
        .filter(|s| seen.insert(s.key))
        .map(lower_service)
        .collect()
}

/// The operations that turn `old` (what the kernel has, as far as vipd knows) into
/// `new`, in the order to send them:
///
/// 1. services that are new: NEW_SERVICE, then NEW_DEST for each destination;
/// 2. services in both: SET_SERVICE if scheduler, flags, timeout, netmask or persistence
///    engine differ; then NEW_DEST for added destinations, SET_DEST for changed ones,
///    and only then DEL_DEST for those no longer wanted, so a service never drops to
///    zero destinations while its replacements are waiting;
/// 3. DEL_SERVICE for services no longer wanted (the kernel drops their destinations).
///
/// New and changed services follow `new`'s order, deletions `old`'s. Services are
/// matched by [`ServiceKey`], destinations by (address, port).
pub fn diff(old: &[KernelService], new: &[KernelService]) -> Vec<Op> {
    let old_by_key: HashMap<&ServiceKey, &KernelService> =
        old.iter().rev().map(|s| (&s.svc.key, s)).collect();
    let new_keys: HashSet<&ServiceKey> = new.iter().map(|s| &s.svc.key).collect();
    let mut ops = Vec::new();
    let mut done = HashSet::new();

    for n in new {
        let key = &n.svc.key;
        if old_by_key.contains_key(key) || !done.insert(key) {
            continue;
        }
        ops.push(Op::NewService(n.svc.clone()));
        let mut seen = HashSet::new();
        for d in &n.dests {
            if seen.insert((d.addr, d.port)) {
                ops.push(Op::NewDest(*key, *d));
            }
        }
    }

    for n in new {
        let key = &n.svc.key;
        let Some(o) = old_by_key.get(key) else {
            continue;
        };
        if !done.insert(key) {
            continue;
        }
        if o.svc != n.svc {
            ops.push(Op::SetService(n.svc.clone()));
        }
        let old_dests: HashMap<(IpAddr, u16), &DestAttrs> = o
            .dests
            .iter()
            .rev()
            .map(|d| ((d.addr, d.port), d))
            .collect();
        let new_ids: HashSet<(IpAddr, u16)> = n.dests.iter().map(|d| (d.addr, d.port)).collect();
        let mut seen = HashSet::new();
        let mut sets = Vec::new();
        for d in &n.dests {
            let id = (d.addr, d.port);
            if !seen.insert(id) {
                continue;
            }
            match old_dests.get(&id) {
                None => ops.push(Op::NewDest(*key, *d)),
                Some(od) if **od != *d => sets.push(Op::SetDest(*key, *d)),
                Some(_) => {}
            }
        }
        ops.extend(sets);
        let mut gone = HashSet::new();
        for d in &o.dests {
            let id = (d.addr, d.port);
            if !new_ids.contains(&id) && gone.insert(id) {
                ops.push(Op::DelDest {
                    key: *key,
                    addr: d.addr,
                    port: d.port,
                });
            }
        }
    }

    let mut gone = HashSet::new();
    for o in old {
        let key = &o.svc.key;
        if !new_keys.contains(key) && gone.insert(key) {
            ops.push(Op::DelService(*key));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dest, Persistence, Proto, Sched, SchedFlags};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    fn key(d: u8) -> ServiceKey {
        ServiceKey::Addr {
            addr: v4(d),
            port: 80,
            proto: Proto::Tcp,
        }
    }

    fn dest(d: u8, weight: u32) -> Dest {
        Dest {
            addr: v4(d),
            port: 80,
            weight,
            forward: Forward::Nat,
            upper_threshold: 0,
            lower_threshold: 0,
            mac: None,
        }
    }

    fn service(k: ServiceKey, dests: Vec<Dest>) -> Service {
        Service {
            key: k,
            sched: Sched::Wrr,
            flags: SchedFlags::default(),
            forward: Forward::Nat,
            persistence: None,
            pe_name: None,
            device: None,
            dests,
        }
    }

    fn table(services: Vec<Service>) -> Table {
        Table { services }
    }

    fn plan(old: &Table, new: &Table) -> Vec<Op> {
        diff(&lower(old), &lower(new))
    }

    fn da(d: u8, weight: u32, fwd: u32) -> DestAttrs {
        DestAttrs {
            addr: v4(d),
            port: 80,
            fwd,
            weight,
            u_thresh: 0,
            l_thresh: 0,
        }
    }

    #[test]
    fn lowering_maps_flags_persistence_and_forwarding() {
        let mut s = service(key(100), vec![dest(11, 3)]);
        s.sched = Sched::Sh;
        s.flags = SchedFlags {
            fallback: true,
            port: true,
            sched3: true,
            one_packet: true,
        };
        s.pe_name = Some("sip".into());
        s.persistence = Some(Persistence {
            timeout: Duration::from_millis(300_500),
            prefix_len: 24,
        });
        s.dests[0].forward = Forward::Dr;
        s.dests[0].upper_threshold = 100;
        s.dests[0].lower_threshold = 10;
        s.dests.push(Dest {
            forward: Forward::Tun,
            ..dest(12, 1)
        });
        let k = lower_service(&s);
        assert_eq!(
            k.svc,
            SvcAttrs {
                key: key(100),
                sched: "sh".into(),
                flags: 0x01 | 0x04 | 0x08 | 0x10 | 0x20,
                timeout: 301,
                netmask: 0xffff_ff00,
                pe_name: Some("sip".into()),
            }
        );
        assert_eq!(
            k.dests,
            vec![
                DestAttrs {
                    u_thresh: 100,
                    l_thresh: 10,
                    ..da(11, 3, 3)
                },
                da(12, 1, 2)
            ]
        );
    }

    #[test]
    fn lowering_netmask_defaults_and_ipv6_prefix() {
        let s4 = service(key(100), vec![]);
        assert_eq!(lower_service(&s4).svc.netmask, 0xffff_ffff);
        assert_eq!(lower_service(&s4).svc.timeout, 0);
        assert_eq!(lower_service(&s4).svc.flags, 0);
        let mut p0 = s4.clone();
        p0.persistence = Some(Persistence {
            timeout: Duration::from_secs(60),
            prefix_len: 0,
        });
        assert_eq!(lower_service(&p0).svc.netmask, 0);
        let k6 = ServiceKey::Fwmark {
            mark: 5,
            family: Family::V6,
        };
        let mut s6 = service(k6, vec![]);
        assert_eq!(lower_service(&s6).svc.netmask, 128);
        s6.persistence = Some(Persistence {
            timeout: Duration::from_secs(60),
            prefix_len: 64,
        });
        let l = lower_service(&s6).svc;
        assert_eq!((l.netmask, l.timeout, l.flags), (64, 60, 1));
        for s in Sched::ALL {
            let mut x = s4.clone();
            x.sched = s;
            assert_eq!(lower_service(&x).svc.sched, s.name());
        }
    }

    #[test]
    fn all_new_adds_services_then_their_destinations_in_order() {
        let new = table(vec![
            service(key(100), vec![dest(11, 1), dest(12, 2)]),
            service(key(101), vec![dest(13, 1)]),
        ]);
        let ops = plan(&Table::default(), &new);
        let l = lower(&new);
        assert_eq!(
            ops,
            vec![
                Op::NewService(l[0].svc.clone()),
                Op::NewDest(key(100), da(11, 1, 0)),
                Op::NewDest(key(100), da(12, 2, 0)),
                Op::NewService(l[1].svc.clone()),
                Op::NewDest(key(101), da(13, 1, 0)),
            ]
        );
    }

    #[test]
    fn unchanged_table_needs_nothing() {
        let t = table(vec![service(key(100), vec![dest(11, 1), dest(12, 2)])]);
        assert!(plan(&t, &t).is_empty());
    }

    #[test]
    fn destination_added_and_removed() {
        let old = table(vec![service(key(100), vec![dest(11, 1), dest(12, 1)])]);
        let add = table(vec![service(
            key(100),
            vec![dest(11, 1), dest(12, 1), dest(13, 1)],
        )]);
        assert_eq!(plan(&old, &add), vec![Op::NewDest(key(100), da(13, 1, 0))]);
        let remove = table(vec![service(key(100), vec![dest(12, 1)])]);
        assert_eq!(
            plan(&old, &remove),
            vec![Op::DelDest {
                key: key(100),
                addr: v4(11),
                port: 80
            }]
        );
    }

    #[test]
    fn weight_change_is_a_set_dest() {
        let old = table(vec![service(key(100), vec![dest(11, 1), dest(12, 1)])]);
        let new = table(vec![service(key(100), vec![dest(11, 1), dest(12, 0)])]);
        assert_eq!(plan(&old, &new), vec![Op::SetDest(key(100), da(12, 0, 0))]);
    }

    #[test]
    fn forwarding_method_and_threshold_changes_are_set_dest() {
        let old = table(vec![service(key(100), vec![dest(11, 1)])]);
        let mut new = old.clone();
        new.services[0].dests[0].forward = Forward::Dr;
        assert_eq!(
            plan(&old, &new),
            vec![Op::SetDest(key(100), da(11, 1, IP_VS_CONN_F_DROUTE))]
        );
        new.services[0].dests[0].upper_threshold = 50;
        let ops = plan(&old, &new);
        assert!(matches!(&ops[..], [Op::SetDest(_, d)] if d.u_thresh == 50));
    }

    #[test]
    fn scheduler_flag_and_persistence_changes_are_set_service() {
        let old = table(vec![service(key(100), vec![dest(11, 1)])]);
        let mut new = old.clone();
        new.services[0].sched = Sched::Mh;
        new.services[0].flags.port = true;
        let ops = plan(&old, &new);
        assert_eq!(ops.len(), 1);
        let Op::SetService(s) = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!((s.sched.as_str(), s.flags), ("mh", IP_VS_SVC_F_SCHED2));

        let mut persist = old.clone();
        persist.services[0].persistence = Some(Persistence {
            timeout: Duration::from_secs(300),
            prefix_len: 32,
        });
        let ops = plan(&old, &persist);
        assert!(
            matches!(&ops[..], [Op::SetService(s)] if s.flags == IP_VS_SVC_F_PERSISTENT && s.timeout == 300),
            "{ops:?}"
        );
        // ... and back: SET clears persistence (timeout 0, flag off).
        let ops = plan(&persist, &old);
        assert!(
            matches!(&ops[..], [Op::SetService(s)] if s.flags == 0 && s.timeout == 0),
            "{ops:?}"
        );
    }

    #[test]
    fn replaced_destinations_are_added_before_the_old_ones_go() {
        let old = table(vec![service(key(100), vec![dest(11, 1), dest(12, 1)])]);
        let new = table(vec![service(key(100), vec![dest(13, 1), dest(14, 1)])]);
        let ops = plan(&old, &new);
        assert_eq!(
            ops,
            vec![
                Op::NewDest(key(100), da(13, 1, 0)),
                Op::NewDest(key(100), da(14, 1, 0)),
                Op::DelDest {
                    key: key(100),
                    addr: v4(11),
                    port: 80
                },
                Op::DelDest {
                    key: key(100),
                    addr: v4(12),
                    port: 80
                },
            ]
        );
        // Simulate the service's destination count through the sequence: never 0.
        let mut count = 2i32;
        for op in &ops {
            count += match op {
                Op::NewDest(..) => 1,
                Op::DelDest { .. } => -1,
                _ => 0,
            };
            assert!(count > 0);
        }
    }

    #[test]
    fn destination_port_change_is_add_then_delete() {
        let old = table(vec![service(key(100), vec![dest(11, 1)])]);
        let mut new = old.clone();
        new.services[0].dests[0].port = 8080;
        assert_eq!(
            plan(&old, &new),
            vec![
                Op::NewDest(
                    key(100),
                    DestAttrs {
                        port: 8080,
                        ..da(11, 1, 0)
                    }
                ),
                Op::DelDest {
                    key: key(100),
                    addr: v4(11),
                    port: 80
                },
            ]
        );
    }

    #[test]
    fn removed_service_is_one_delete_after_additions() {
        let old = table(vec![
            service(key(100), vec![dest(11, 1)]),
            service(key(101), vec![dest(12, 1), dest(13, 1)]),
        ]);
        // 101 goes, 102 comes (e.g. the VIP was renumbered), 100 changes weight.
        let new = table(vec![
            service(key(102), vec![dest(12, 1), dest(13, 1)]),
            service(key(100), vec![dest(11, 5)]),
        ]);
        let l = lower(&new);
        assert_eq!(
            plan(&old, &new),
            vec![
                Op::NewService(l[0].svc.clone()),
                Op::NewDest(key(102), da(12, 1, 0)),
                Op::NewDest(key(102), da(13, 1, 0)),
                Op::SetDest(key(100), da(11, 5, 0)),
                Op::DelService(key(101)),
            ]
        );
        assert_eq!(
            plan(&old, &Table::default()),
            vec![Op::DelService(key(100)), Op::DelService(key(101))]
        );
    }

    #[test]
    fn adopted_kernel_state_converges_in_one_step() {
        // What a dump could show: a destination someone set to LOCALNODE, scheduler
        // "none", a persistence engine vipd does not configure.
        let want = lower(&table(vec![service(key(100), vec![dest(11, 1)])]));
        let mut have = want.clone();
        have[0].svc.sched = "none".into();
        have[0].svc.pe_name = Some("sip".into());
        have[0].dests[0].fwd = IP_VS_CONN_F_LOCALNODE;
        assert_eq!(
            diff(&have, &want),
            vec![
                Op::SetService(want[0].svc.clone()),
                Op::SetDest(key(100), want[0].dests[0]),
            ]
        );
        assert!(diff(&want, &want).is_empty());
    }

    #[test]
    fn family_and_protocol_are_part_of_the_service_key() {
        let udp = ServiceKey::Addr {
            addr: v4(100),
            port: 80,
            proto: Proto::Udp,
        };
        let m4 = ServiceKey::Fwmark {
            mark: 1,
            family: Family::V4,
        };
        let m6 = ServiceKey::Fwmark {
            mark: 1,
            family: Family::V6,
        };
        let old = table(vec![service(key(100), vec![]), service(m4, vec![])]);
        let new = table(vec![service(udp, vec![]), service(m6, vec![])]);
        let ops = plan(&old, &new);
        let kinds: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            kinds,
            vec![
                "add service udp 192.0.2.100:80 (scheduler wrr)",
                "add service fwmark 1 (scheduler wrr)",
                "delete service tcp 192.0.2.100:80",
                "delete service fwmark 1",
            ]
        );
        assert_eq!(ops[3], Op::DelService(m4));
    }

    #[test]
    fn ipv6_destination_display() {
        let k = ServiceKey::Addr {
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            port: 443,
            proto: Proto::Tcp,
        };
        let op = Op::DelDest {
            key: k,
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11)),
            port: 443,
        };
        assert_eq!(
            op.to_string(),
            "delete destination [2001:db8::11]:443 of tcp [2001:db8::1]:443"
        );
    }
}
