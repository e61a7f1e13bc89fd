//! Unit tests of the nftables encoders, planner and differ (no kernel needed).

use std::net::IpAddr;
use std::time::Duration;

use super::check_table;
use super::consts::*;
use super::decode::{self, attrs, rule_exprs};
use super::diff::diff;
use super::encode::{nft_type, Batch, SetDef, ELEMS_CHUNK};
use super::expr::{encode_list, reg, Expr};
use super::plan::{build, hash_table_size, Elem, Fam, Ids, Plan, COUNT_MAP, DISPATCH_MAP};
use crate::model::{Dest, Family, Forward, Persistence, Proto, Sched, SchedFlags, Service};
use crate::model::{ServiceKey, Table};
use crate::netlink::NLM_F_REQUEST;
use crate::netlink::{parse_msgs, Msg, MsgBuf, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn dest(addr: &str, port: u16, weight: u32) -> Dest {
    Dest {
        addr: ip(addr),
        port,
        weight,
        forward: Forward::Nat,
        upper_threshold: 0,
        lower_threshold: 0,
        mac: None,
    }
}

fn svc(addr: &str, port: u16, sched: Sched, dests: Vec<Dest>) -> Service {
    Service {
        key: ServiceKey::Addr {
            addr: ip(addr),
            port,
            proto: Proto::Tcp,
        },
        sched,
        flags: SchedFlags::default(),
        forward: Forward::Nat,
        persistence: None,
        pe_name: None,
        device: None,
        dests,
    }
}

fn dr(mut s: Service, macs: &[Option<[u8; 6]>]) -> Service {
    s.forward = Forward::Dr;
    s.device = Some("eth0".into());
    for (d, m) in s.dests.iter_mut().zip(macs) {
        d.forward = Forward::Dr;
        d.mac = *m;
    }
    s
}

fn rr3() -> Service {
    svc(
        "192.0.2.100",
        80,
        Sched::Rr,
        vec![
            dest("192.0.2.11", 8080, 1),
            dest("192.0.2.12", 8080, 1),
            dest("192.0.2.13", 8080, 1),
        ],
    )
}

fn table(services: Vec<Service>) -> Table {
    Table { services }
}

/// Builds the batch that turns `old` into `new`.
fn batch(old: Option<&Plan>, new: &Plan) -> Batch {
    let mut b = Batch::new(1000);
    diff(old, new, &mut b);
    b
}

/// The content messages of a finished batch (without BEGIN/END) and their descriptions.
fn content(b: Batch) -> (Vec<Msg>, Vec<String>) {
    let (bytes, _, descr) = b.finish();
    let msgs = parse_msgs(&bytes);
    let n = msgs.len();
    (
        msgs[1..n - 1].to_vec(),
        descr.into_iter().map(|(_, d)| d).collect(),
    )
}

fn attrs_of(m: &Msg) -> &[u8] {
    &m.payload[4..]
}

// --- byte layouts ----------------------------------------------------------------------

/// Where the first batch message described by `prefix` is.
fn first(d: &[String], prefix: &str) -> usize {
    d.iter()
        .position(|x| x.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix}: {d:?}"))
}

#[test]
fn batch_framing_and_newtable_bytes() {
    let mut b = Batch::new(7);
    b.new_table(NFPROTO_IPV4, "vipd");
    let (bytes, begin, descr) = b.finish();
    assert_eq!(begin, 7);
    assert_eq!(descr, vec![(8, "add table ip vipd".to_string())]);
    let ne16 = |v: u16| v.to_ne_bytes();
    let ne32 = |v: u32| v.to_ne_bytes();
    let mut want = Vec::new();
    // BATCH_BEGIN: len 20, type 0x10, NLM_F_REQUEST, seq 7, port 0, nfgenmsg
    // {AF_UNSPEC, NFNETLINK_V0, res_id = htons(NFNL_SUBSYS_NFTABLES)}
    want.extend(ne32(20));
    want.extend(ne16(0x10));
    want.extend(ne16(NLM_F_REQUEST));
    want.extend(ne32(7));
    want.extend(ne32(0));
    want.extend([0, 0, 0, 10]);
    // NEWTABLE: type (10 << 8) | 0, REQUEST|ACK|CREATE, seq 8, nfgenmsg {NFPROTO_IPV4}
    // NFTA_TABLE_NAME "vipd\0" (len 9, padded to 12), NFTA_TABLE_FLAGS be32 0
    want.extend(ne32(16 + 4 + 12 + 8));
    want.extend(ne16(0x0a00));
    want.extend(ne16(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE));
    want.extend(ne32(8));
    want.extend(ne32(0));
    want.extend([2, 0, 0, 0]);
    want.extend(ne16(9));
    want.extend(ne16(NFTA_TABLE_NAME));
    want.extend(b"vipd\0\0\0\0");
    want.extend(ne16(8));
    want.extend(ne16(NFTA_TABLE_FLAGS));
    want.extend([0, 0, 0, 0]);
    // BATCH_END: type 0x11, seq 9
    want.extend(ne32(20));
    want.extend(ne16(0x11));
    want.extend(ne16(NLM_F_REQUEST));
    want.extend(ne32(9));
    want.extend(ne32(0));
    want.extend([0, 0, 0, 10]);
    assert_eq!(bytes, want);
}

#[test]
fn match_expression_bytes() {
    // ip daddr 192.0.2.100 → payload load 4b @ network header + 16 => reg 8; cmp eq
    let mut b = MsgBuf::new();
    encode_list(
        &mut b,
        &[
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 16,
                len: 4,
                dreg: reg(0),
            },
            Expr::Cmp {
                sreg: reg(0),
                op: NFT_CMP_EQ,
                data: vec![192, 0, 2, 100],
            },
        ],
    );
    let h = |len: u16, ty: u16| {
        let mut v = len.to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v
    };
    let be = |v: u32| v.to_be_bytes().to_vec();
    let mut payload = h(12, NFTA_EXPR_NAME);
    payload.extend(b"payload\0");
    payload.extend(h(36, NFTA_EXPR_DATA | NLA_F_NESTED));
    for (ty, v) in [
        (NFTA_PAYLOAD_DREG, 8),
        (NFTA_PAYLOAD_BASE, 1),
        (NFTA_PAYLOAD_OFFSET, 16),
        (NFTA_PAYLOAD_LEN, 4),
    ] {
        payload.extend(h(8, ty));
        payload.extend(be(v));
    }
    let mut cmp = h(8, NFTA_EXPR_NAME);
    cmp.extend(b"cmp\0");
    cmp.extend(h(32, NFTA_EXPR_DATA | NLA_F_NESTED));
    cmp.extend(h(8, NFTA_CMP_SREG));
    cmp.extend(be(8));
    cmp.extend(h(8, NFTA_CMP_OP));
    cmp.extend(be(0));
    cmp.extend(h(12, NFTA_CMP_DATA | NLA_F_NESTED));
    cmp.extend(h(8, NFTA_DATA_VALUE));
    cmp.extend([192, 0, 2, 100]);
    let mut want = h(
        4 + 4 + payload.len() as u16 + 4 + cmp.len() as u16,
        NFTA_RULE_EXPRESSIONS | NLA_F_NESTED,
    );
    want.extend(h(4 + payload.len() as u16, NFTA_LIST_ELEM | NLA_F_NESTED));
    want.extend(payload);
    want.extend(h(4 + cmp.len() as u16, NFTA_LIST_ELEM | NLA_F_NESTED));
    want.extend(cmp);
    assert_eq!(b.as_bytes(), &want[..]);
}

#[test]
fn attribute_lengths_add_up_at_every_level() {
    let (plan, _) = build(&table(vec![rr3()]), &mut Ids::default());
    let (msgs, _) = content(batch(None, &plan));
    fn walk(data: &[u8]) {
        let mut total = 0;
        for a in attrs(data) {
            total += (a.value.len() + 4 + 3) & !3;
            if a.nested {
                walk(a.value);
            }
        }
        assert_eq!(
            total,
            (data.len() + 3) & !3,
            "attribute lengths cover the region"
        );
    }
    for m in &msgs {
        walk(attrs_of(m));
    }
}

// --- plans → rules ---------------------------------------------------------------------

fn svc_rules(plan: &Plan, fam: Fam) -> Vec<Vec<Expr>> {
    plan.tables[&fam]
        .services
        .values()
        .next()
        .unwrap()
        .rules
        .clone()
}

#[test]
fn nat_round_robin_rule_and_maps() {
    let (plan, unreachable) = build(&table(vec![rr3()]), &mut Ids::default());
    assert!(unreachable.is_empty());
    let t = &plan.tables[&Fam::Ip];
    assert_eq!(
        t.base.keys().collect::<Vec<_>>(),
        vec!["out", "post", "pre"]
    );
    let rules = svc_rules(&plan, Fam::Ip);
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0],
        vec![
            Expr::Numgen {
                dreg: reg(9),
                modulus: 3
            },
            Expr::Lookup {
                set: "svc1_slots".into(),
                sreg: reg(9),
                dreg: Some(reg(11)),
                invert: false
            },
            Expr::Dnat {
                family: NFPROTO_IPV4,
                reg_addr: reg(11),
                reg_proto: Some(reg(12))
            },
        ]
    );
    let s = &t.services["svc1"].sets["svc1_slots"];
    assert_eq!(s.elems.len(), 3);
    // slot keys host-endian, data address . port (big endian, padded to 4 bytes)
    assert_eq!(
        s.elems[&0u32.to_ne_bytes()[..]][..],
        [192, 0, 2, 11, 0x1f, 0x90, 0, 0]
    );
    assert_eq!(
        s.elems[&2u32.to_ne_bytes()[..]][..],
        [192, 0, 2, 13, 0x1f, 0x90, 0, 0]
    );
    // dispatch: ip daddr . meta l4proto . th dport vmap @dispatch, whose element
    // 192.0.2.100 . tcp . 80 is `goto svc1`
    let pre = &t.base["pre"].rules;
    assert_eq!(pre.len(), 1);
    assert_eq!(
        pre[0].last(),
        Some(&Expr::Lookup {
            set: DISPATCH_MAP.into(),
            sreg: reg(0),
            dreg: Some(NFT_REG_VERDICT),
            invert: false
        })
    );
    assert!(pre[0].contains(&Expr::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: 2,
        len: 2,
        dreg: reg(2)
    }));
    assert_eq!(t.base["out"].rules, *pre);
    let key = [192, 0, 2, 100, 6, 0, 0, 0, 0, 80, 0, 0];
    let d = &t.maps[DISPATCH_MAP];
    assert_eq!(d.def.flags, NFT_SET_MAP);
    assert_eq!(d.def.key_len, 12);
    assert_eq!(d.def.data, Some((NFT_DATA_VERDICT, 0)));
    assert_eq!(d.elems.len(), 1);
    assert_eq!(&d.elems[&key[..]][..], b"svc1");
    // post: the same key from the conntrack original tuple → svc1_post, which counts.
    assert_eq!(&t.maps[COUNT_MAP].elems[&key[..]][..], b"svc1_post");
    assert_eq!(t.base["post"].rules.len(), 1);
    assert_eq!(
        t.services["svc1"].post_rules,
        vec![vec![
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 16,
                len: 4,
                dreg: reg(0)
            },
            Expr::Payload {
                base: NFT_PAYLOAD_TRANSPORT_HEADER,
                offset: 2,
                len: 2,
                dreg: reg(1)
            },
            Expr::Lookup {
                set: "svc1_ctr".into(),
                sreg: reg(0),
                dreg: None,
                invert: false
            }
        ]]
    );
}

#[test]
fn encoded_nat_rule_decodes_with_big_endian_registers() {
    let (plan, _) = build(&table(vec![rr3()]), &mut Ids::default());
    let (msgs, descr) = content(batch(Some(&Plan::default()), &plan));
    let i = descr
        .iter()
        .position(|d| d.starts_with("add rule ip vipd svc1"))
        .unwrap();
    assert_eq!(msgs[i].ty, nft_type(NFT_MSG_NEWRULE));
    assert_eq!(msgs[i].payload[0], NFPROTO_IPV4);
    let exprs = rule_exprs(attrs_of(&msgs[i]));
    let names: Vec<&str> = exprs.iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["numgen", "lookup", "nat"]);
    assert_eq!(exprs[0].be32(NFTA_NG_MODULUS), Some(3));
    assert_eq!(exprs[0].be32(NFTA_NG_DREG), Some(17));
    assert_eq!(exprs[1].get(NFTA_LOOKUP_SET).unwrap().str(), "svc1_slots");
    assert_eq!(exprs[1].be32(NFTA_LOOKUP_SREG), Some(17));
    assert_eq!(exprs[1].be32(NFTA_LOOKUP_DREG), Some(19));
    assert_eq!(exprs[2].be32(NFTA_NAT_TYPE), Some(NFT_NAT_DNAT));
    assert_eq!(exprs[2].be32(NFTA_NAT_FAMILY), Some(NFPROTO_IPV4 as u32));
    assert_eq!(exprs[2].be32(NFTA_NAT_REG_ADDR_MIN), Some(19));
    assert_eq!(exprs[2].be32(NFTA_NAT_REG_PROTO_MIN), Some(20));
    // The slot map: set id, key/data types and lengths, big endian.
    let i = descr
        .iter()
        .position(|d| d == "add set ip vipd svc1_slots")
        .unwrap();
    let a = attrs_of(&msgs[i]);
    let g = |ty| decode::get(a, ty).unwrap();
    assert_eq!(g(NFTA_SET_FLAGS).be32(), Some(NFT_SET_MAP));
    assert_eq!(g(NFTA_SET_KEY_LEN).be32(), Some(4));
    assert_eq!(g(NFTA_SET_DATA_LEN).be32(), Some(8));
    assert_eq!(
        g(NFTA_SET_DATA_TYPE).be32(),
        Some((TYPE_IPADDR << TYPE_BITS) | TYPE_INET_SERVICE)
    );
    assert!(decode::get(a, NFTA_SET_ID).is_some());
    // Its elements follow it.
    let e = decode::set_elems(attrs_of(&msgs[i + 1]));
    assert_eq!(e.len(), 3);
    assert_eq!(e[1].key, 1u32.to_ne_bytes());
    assert_eq!(e[1].data, [192, 0, 2, 12, 0x1f, 0x90, 0, 0]);
}

#[test]
fn weighted_round_robin_and_drained_servers() {
    let mut s = rr3();
    s.sched = Sched::Wrr;
    s.dests[0].weight = 3;
    s.dests[2].weight = 0;
    let (plan, _) = build(&table(vec![s]), &mut Ids::default());
    let sp = &plan.tables[&Fam::Ip].services["svc1"];
    let slots: Vec<u8> = sp.sets["svc1_slots"].elems.values().map(|d| d[3]).collect();
    assert_eq!(slots.len(), 4);
    assert_eq!(slots.iter().filter(|&&x| x == 11).count(), 3);
    assert_eq!(slots.iter().filter(|&&x| x == 12).count(), 1);
    // The drained server keeps its counter (its connections still flow).
    assert_eq!(sp.sets["svc1_ctr"].elems.len(), 3);
    assert_eq!(sp.dests.len(), 3);
}

#[test]
fn equal_weight_shortcut_matches_round_robin() {
    for n in (1..70).chain([4096, 5000]) {
        let w = vec![7u32; n];
        let rr = crate::slots::round_robin(&w, super::plan::RR_SLOTS);
        assert_eq!(rr, (0..n).collect::<Vec<_>>(), "n={n}");
    }
}

#[test]
fn empty_service_rejects() {
    for dests in [vec![], vec![dest("192.0.2.11", 80, 0)]] {
        let (plan, _) = build(
            &table(vec![svc("192.0.2.100", 80, Sched::Rr, dests)]),
            &mut Ids::default(),
        );
        let rules = svc_rules(&plan, Fam::Ip);
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].last(),
            Some(&Expr::Reject {
                kind: NFT_REJECT_TCP_RST,
                code: 0
            })
        );
        assert_eq!(
            rules[1],
            vec![Expr::Reject {
                kind: NFT_REJECT_ICMP_UNREACH,
                code: ICMP_PORT_UNREACH
            }]
        );
    }
    let (plan, _) = build(
        &table(vec![svc("2001:db8::100", 80, Sched::Sh, vec![])]),
        &mut Ids::default(),
    );
    assert_eq!(
        svc_rules(&plan, Fam::Ip6)[1],
        vec![Expr::Reject {
            kind: NFT_REJECT_ICMP_UNREACH,
            code: ICMPV6_PORT_UNREACH
        }]
    );
}

#[test]
fn source_hash_uses_a_fixed_seed_and_a_prime_table() {
    let mut s = rr3();
    s.sched = Sched::Sh;
    s.flags.port = true;
    let (plan, _) = build(&table(vec![s]), &mut Ids::default());
    let r = &svc_rules(&plan, Fam::Ip)[0];
    // saddr (4 bytes at reg 0), sport (reg 1), jhash over 8 bytes
    assert_eq!(
        r[..3],
        [
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 12,
                len: 4,
                dreg: reg(0)
            },
            Expr::Payload {
                base: NFT_PAYLOAD_TRANSPORT_HEADER,
                offset: 0,
                len: 2,
                dreg: reg(1)
            },
            Expr::Jhash {
                sreg: reg(0),
                len: 8,
                dreg: reg(9),
                modulus: 1021,
                seed: super::plan::HASH_SEED
            },
        ]
    );
    assert_eq!(
        plan.tables[&Fam::Ip].services["svc1"].sets["svc1_slots"]
            .elems
            .len(),
        1021
    );
}

#[test]
fn ipv6_nat_layout() {
    let s = svc(
        "2001:db8::100",
        443,
        Sched::Rr,
        vec![dest("2001:db8::11", 8443, 1)],
    );
    let (plan, _) = build(&table(vec![s]), &mut Ids::default());
    let t = &plan.tables[&Fam::Ip6];
    let sp = &t.services["svc1"];
    let mut data = match ip("2001:db8::11") {
        IpAddr::V6(a) => a.octets().to_vec(),
        _ => unreachable!(),
    };
    data.extend([0x20, 0xfb, 0, 0]);
    assert_eq!(
        sp.sets["svc1_slots"].elems.values().next().unwrap()[..],
        data
    );
    assert_eq!(
        sp.rules[0].last(),
        Some(&Expr::Dnat {
            family: NFPROTO_IPV6,
            reg_addr: reg(11),
            reg_proto: Some(reg(15))
        })
    );
    // ip6 daddr is 16 bytes at offset 24
    assert_eq!(
        t.base["pre"].rules[0][0],
        Expr::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset: 24,
            len: 16,
            dreg: reg(0)
        }
    );
}

#[test]
fn port_zero_and_fwmark_services() {
    // Port 0 without real-server ports: DNAT the address only, any protocol port kept.
    let s = svc("192.0.2.100", 0, Sched::Rr, vec![dest("192.0.2.11", 0, 1)]);
    let mut fw = svc("192.0.2.100", 0, Sched::Rr, vec![dest("192.0.2.12", 80, 1)]);
    fw.key = ServiceKey::Fwmark {
        mark: 5,
        family: Family::V4,
    };
    let specific = svc("192.0.2.100", 80, Sched::Rr, vec![dest("192.0.2.13", 0, 1)]);
    let (plan, _) = build(&table(vec![s, fw, specific]), &mut Ids::default());
    let t = &plan.tables[&Fam::Ip];
    assert_eq!(
        t.services["svc1"].rules[0].last(),
        Some(&Expr::Dnat {
            family: NFPROTO_IPV4,
            reg_addr: reg(11),
            reg_proto: None
        })
    );
    assert_eq!(
        t.services["svc1"].sets["svc1_slots"].def.data,
        Some((TYPE_IPADDR, 4))
    );
    // A real server without a port in a service with one gets the service's port.
    assert_eq!(
        t.services["svc3"].sets["svc3_slots"]
            .elems
            .values()
            .next()
            .unwrap()[..],
        [192, 0, 2, 13, 0, 80, 0, 0]
    );
    // Dispatch order: fwmark (one rule per protocol with ports), the map (port 80),
    // port 0.
    let gotos: Vec<String> = t.base["pre"]
        .rules
        .iter()
        .map(|r| match r.last() {
            Some(Expr::Verdict { chain: Some(c), .. }) => c.clone(),
            Some(Expr::Lookup { set, .. }) => format!("@{set}"),
            _ => panic!(),
        })
        .collect();
    assert_eq!(gotos, vec!["svc2", "svc2", "svc2", "@dispatch", "svc1"]);
    assert_eq!(
        t.maps[DISPATCH_MAP].elems.values().collect::<Vec<_>>(),
        vec![&Elem::from_slice(b"svc3")]
    );
    // post: the fwmark and port-0 services jump to their chains, the map comes last.
    let jumps: Vec<String> = t.base["post"]
        .rules
        .iter()
        .map(|r| match r.last() {
            Some(Expr::Verdict {
                code: NFT_JUMP,
                chain: Some(c),
            }) => c.clone(),
            Some(Expr::Lookup { set, .. }) => format!("@{set}"),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        jumps,
        vec!["svc1_post", "svc2_post", "svc2_post", "svc2_post", "@count"]
    );
    assert_eq!(
        t.base["pre"].rules[0][..2],
        [
            Expr::Meta {
                key: NFT_META_MARK,
                dreg: reg(0)
            },
            Expr::Cmp {
                sreg: reg(0),
                op: NFT_CMP_EQ,
                data: 5u32.to_ne_bytes().to_vec()
            }
        ]
    );
}

#[test]
fn persistence_maps_and_rules() {
    let mut s = rr3();
    s.persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        prefix_len: 24,
    });
    let (plan, _) = build(&table(vec![s]), &mut Ids::default());
    let t = &plan.tables[&Fam::Ip];
    let sp = &t.services["svc1"];
    let pers = &sp.sets["svc1_pers"].def;
    assert_eq!(pers.flags, NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL);
    assert_eq!(pers.timeout_ms, Some(300_000));
    assert_eq!(pers.key_len, 4);
    assert_eq!(
        pers.data,
        Some(((TYPE_IPADDR << TYPE_BITS) | TYPE_INET_SERVICE, 8))
    );
    assert_eq!(sp.sets["svc1_live"].elems.len(), 3);
    // Rule 1: remembered clients (masked source → lookup → DNAT); rule 2: scheduler.
    assert_eq!(sp.rules.len(), 2);
    assert!(sp.rules[0].contains(&Expr::Mask {
        sreg: reg(0),
        dreg: reg(0),
        mask: vec![255, 255, 255, 0]
    }));
    assert!(sp.rules[0].contains(&Expr::Lookup {
        set: "svc1_pers".into(),
        sreg: reg(0),
        dreg: Some(reg(11)),
        invert: false
    }));
    // Recording happens in postrouting with the conntrack reply tuple, for live servers.
    let rec = sp
        .post_rules
        .iter()
        .find(|r| r.iter().any(|e| matches!(e, Expr::Dynset { .. })))
        .unwrap();
    assert!(rec.contains(&Expr::Lookup {
        set: "svc1_live".into(),
        sreg: reg(11),
        dreg: None,
        invert: false
    }));
    assert!(rec.contains(&Expr::Dynset {
        set: "svc1_pers".into(),
        op: NFT_DYNSET_OP_UPDATE,
        sreg_key: reg(0),
        sreg_data: Some(reg(11)),
        timeout_ms: Some(300_000)
    }));
}

#[test]
fn direct_routing_layout_and_unreachable_servers() {
    let s = dr(
        svc(
            "192.0.2.100",
            80,
            Sched::Wrr,
            vec![
                dest("192.0.2.11", 80, 3),
                dest("192.0.2.12", 80, 1),
                dest("192.0.2.13", 80, 1),
            ],
        ),
        &[
            Some([2, 0, 0, 0, 0, 0x11]),
            Some([2, 0, 0, 0, 0, 0x12]),
            None,
        ],
    );
    let (plan, unreachable) = build(&table(vec![s]), &mut Ids::default());
    assert_eq!(unreachable.len(), 1);
    assert_eq!(unreachable[0].addr, ip("192.0.2.13"));
    let t = &plan.tables[&Fam::Netdev];
    let base = &t.base["in_eth0"];
    assert_eq!(base.hook.num, NF_NETDEV_INGRESS);
    assert_eq!(base.hook.dev.as_deref(), Some("eth0"));
    let sp = &t.services["svc1"];
    let slots = &sp.sets["svc1_slots"];
    assert_eq!(slots.def.data, Some((TYPE_ETHERADDR, 6)));
    let n11 = slots.elems.values().filter(|m| m[5] == 0x11).count();
    let n12 = slots.elems.values().filter(|m| m[5] == 0x12).count();
    assert_eq!(n11 + n12, 1021);
    assert!((n11 as f64 / 1021.0 - 0.75).abs() < 0.01, "{n11} {n12}");
    // Pinned flows (3 TCP flag classes), the scheduler, the fallback.
    assert_eq!(sp.rules.len(), 5, "{:#?}", sp.rules);
    // Weighted flow hash: saddr . daddr . ports → jhash over 12 bytes.
    let r = &sp.rules[3];
    assert!(r.contains(&Expr::Jhash {
        sreg: reg(0),
        len: 12,
        dreg: reg(9),
        modulus: 1021,
        seed: super::plan::HASH_SEED
    }));
    // The chosen MAC becomes the destination, is read back and counted, the flow is
    // pinned (a stale entry replaced) and the frame leaves by the device it came in on.
    let names: Vec<&str> = r.iter().map(|e| e.name()).collect();
    assert_eq!(
        names[names.len() - 11..],
        [
            "payload", "payload", "lookup", "payload", "payload", "payload", "payload", "dynset",
            "dynset", "meta", "fwd"
        ]
    );
    let at = names.len() - 11;
    assert_eq!(
        r[at],
        Expr::PayloadWrite {
            base: NFT_PAYLOAD_LL_HEADER,
            offset: 0,
            len: 6,
            sreg: reg(11)
        }
    );
    assert_eq!(
        r[at + 2],
        Expr::Lookup {
            set: "svc1_ctr".into(),
            sreg: reg(11),
            dreg: None,
            invert: false
        }
    );
    assert_eq!(
        r[at + 7..at + 9],
        [
            Expr::Dynset {
                set: "svc1_flows".into(),
                op: NFT_DYNSET_OP_DELETE,
                sreg_key: reg(0),
                sreg_data: Some(reg(11)),
                timeout_ms: None
            },
            Expr::Dynset {
                set: "svc1_flows".into(),
                op: NFT_DYNSET_OP_UPDATE,
                sreg_key: reg(0),
                sreg_data: Some(reg(11)),
                timeout_ms: Some(60_000)
            }
        ]
    );
    // The dispatch rule has made the director the source: ether saddr set ether daddr.
    let d = &base.rules[0];
    assert_eq!(
        d[d.len() - 3..d.len() - 1],
        [
            Expr::Payload {
                base: NFT_PAYLOAD_LL_HEADER,
                offset: 0,
                len: 6,
                dreg: reg(0)
            },
            Expr::PayloadWrite {
                base: NFT_PAYLOAD_LL_HEADER,
                offset: 6,
                len: 6,
                sreg: reg(0)
            },
        ]
    );
    check_dr_registers(sp);
}

#[test]
fn direct_routing_with_persistence_has_fallbacks_and_ipv6_fits_the_registers() {
    let mut s = dr(
        svc(
            "2001:db8::100",
            80,
            Sched::Rr,
            vec![dest("2001:db8::11", 80, 1), dest("2001:db8::12", 80, 0)],
        ),
        &[Some([2, 0, 0, 0, 0, 0x11]), Some([2, 0, 0, 0, 0, 0x12])],
    );
    s.persistence = Some(Persistence {
        timeout: Duration::from_secs(60),
        prefix_len: 64,
    });
    let (plan, _) = build(&table(vec![s]), &mut Ids::default());
    let sp = &plan.tables[&Fam::Netdev].services["svc1"];
    // pinned + client refresh, pinned x 3 classes, remembered client, scheduler, two
    // fallbacks
    assert_eq!(sp.rules.len(), 8, "{:#?}", sp.rules);
    // The flow key of IPv6: 40 bytes from register 0 (regs 0..=9).
    assert_eq!(sp.sets["svc1_flows"].def.key_len, 40);
    // saddr . daddr . ports of IPv6: 36 bytes from register 0 (regs 0..=8)
    assert!(sp.rules[5].contains(&Expr::Jhash {
        sreg: reg(0),
        len: 36,
        dreg: reg(9),
        modulus: 1021,
        seed: super::plan::HASH_SEED
    }));
    // Pinned flows refresh the client only for a live server, checked before counting.
    let r0 = &sp.rules[0];
    let pos = |e: &Expr| r0.iter().position(|x| x == e).unwrap();
    let live = Expr::Lookup {
        set: "svc1_live".into(),
        sreg: reg(11),
        dreg: None,
        invert: false,
    };
    let ctr = Expr::Lookup {
        set: "svc1_ctr".into(),
        sreg: reg(11),
        dreg: None,
        invert: false,
    };
    let pers = |e: &Expr| matches!(e, Expr::Dynset { set, .. } if set == "svc1_pers");
    assert!(pos(&live) < r0.iter().position(pers).unwrap());
    assert!(r0.iter().position(pers).unwrap() < pos(&ctr));
    assert!(!sp.rules[1].iter().any(pers));
    // The live set holds only the live server, the counters both.
    assert_eq!(sp.sets["svc1_live"].elems.len(), 1);
    assert_eq!(sp.reach().len(), 2);
    assert_eq!(sp.live().len(), 1);
    // Fallbacks: forward a rewritten frame to a live server, pinning it (persistence map
    // full), or just forwarding it (flow table full).
    let to_live = [
        Expr::Payload {
            base: NFT_PAYLOAD_LL_HEADER,
            offset: 0,
            len: 6,
            dreg: reg(11),
        },
        live.clone(),
    ];
    assert_eq!(sp.rules[6][..2], to_live);
    assert!(sp.rules[6]
        .iter()
        .any(|e| matches!(e, Expr::Dynset { set, .. } if set == "svc1_flows")));
    assert_eq!(sp.rules[7][..2], to_live);
    assert_eq!(
        sp.rules[7][2..],
        [
            Expr::Meta {
                key: NFT_META_IIF,
                dreg: reg(15)
            },
            Expr::Fwd { sreg_dev: reg(15) }
        ]
    );
    check_dr_registers(sp);
    // A service that rejects does not touch the frame's source in its dispatch rule.
    let e = dr(
        svc(
            "192.0.2.100",
            80,
            Sched::Rr,
            vec![dest("192.0.2.11", 80, 0)],
        ),
        &[Some([2, 0, 0, 0, 0, 1])],
    );
    let (plan, _) = build(&table(vec![e]), &mut Ids::default());
    let d = &plan.tables[&Fam::Netdev].base["in_eth0"].rules[0];
    assert!(!d.iter().any(|x| matches!(x, Expr::PayloadWrite { .. })));
}

/// A DR service of `proto` on `vip` with two servers (weights `w`).
fn dr2(vip: &str, proto: Proto, w: [u32; 2]) -> Service {
    let v6 = vip.contains(':');
    let a = |i: u8| {
        if v6 {
            format!("2001:db8::{i}")
        } else {
            format!("192.0.2.{i}")
        }
    };
    let mut s = dr(
        svc(
            vip,
            80,
            Sched::Wrr,
            vec![dest(&a(11), 80, w[0]), dest(&a(12), 80, w[1])],
        ),
        &[Some([2, 0, 0, 0, 0, 0x11]), Some([2, 0, 0, 0, 0, 0x12])],
    );
    s.key = ServiceKey::Addr {
        addr: ip(vip),
        port: 80,
        proto,
    };
    s
}

/// (mask, value) of a rule that starts by matching TCP flags.
fn flag_class(r: &[Expr]) -> Option<(u8, u8)> {
    match r {
        [Expr::Payload {
            base: NFT_PAYLOAD_TRANSPORT_HEADER,
            offset: 13,
            len: 1,
            ..
        }, Expr::Mask { mask, .. }, Expr::Cmp { data, op, .. }, ..]
            if *op == NFT_CMP_EQ =>
        {
            Some((mask[0], data[0]))
        }
        _ => None,
    }
}

/// The timeout a pinned-flow rule sets.
fn flow_refresh(r: &[Expr]) -> Option<u64> {
    r.iter().find_map(|e| match e {
        Expr::Dynset {
            set,
            op,
            timeout_ms,
            ..
        } if set.ends_with("_flows") && *op == NFT_DYNSET_OP_UPDATE => *timeout_ms,
        _ => None,
    })
}

#[test]
fn dr_flow_table_pins_tcp_flows_by_flag_class() {
    for vip in ["192.0.2.100", "2001:db8::100"] {
        let (plan, _) = build(
            &table(vec![dr2(vip, Proto::Tcp, [1, 1])]),
            &mut Ids::default(),
        );
        let sp = &plan.tables[&Fam::Netdev].services["svc1"];
        let alen = if vip.contains(':') { 16 } else { 4 };
        let addr = if alen == 4 { TYPE_IPADDR } else { TYPE_IP6ADDR };
        let flows = &sp.sets["svc1_flows"].def;
        assert_eq!(flows.flags, NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL);
        assert_eq!(
            flows.key_type,
            (((addr << TYPE_BITS | addr) << TYPE_BITS | TYPE_INET_SERVICE) << TYPE_BITS)
                | TYPE_INET_SERVICE
        );
        assert_eq!(flows.key_len, 2 * alen + 8);
        assert_eq!(flows.data, Some((TYPE_ETHERADDR, 6)));
        assert_eq!(flows.timeout_ms, Some(900_000));
        assert_eq!(flows.size, Some(super::plan::FLOWS_MAX));
        assert!(sp.sets["svc1_flows"].elems.is_empty());
        assert_eq!(sp.flows_set.as_deref(), Some("svc1_flows"));

        // Three pinned-flow rules, one per flag class, with IPVS-like timeouts.
        let pinned: Vec<(u8, u8, u64)> = sp.rules[..3]
            .iter()
            .map(|r| {
                let (m, v) = flag_class(r).expect("a flag match");
                assert!(r.contains(&Expr::Lookup {
                    set: "svc1_flows".into(),
                    sreg: reg(0),
                    dreg: Some(reg(11)),
                    invert: false
                }));
                (m, v, flow_refresh(r).unwrap())
            })
            .collect();
        assert_eq!(
            pinned,
            [
                (0x07, 0, 900_000),
                (0x07, 0x01, 120_000),
                (0x06, 0x04, 10_000)
            ]
        );
        // Every segment without SYN is in exactly one class; a SYN in none (a new
        // connection is scheduled, never sent along a pinned 4-tuple).
        for flags in 0..=255u8 {
            let n = pinned.iter().filter(|(m, v, _)| flags & m == *v).count();
            assert_eq!(n, usize::from(flags & 0x02 == 0), "flags {flags:#04x}");
        }
        // New flows are pinned for 60 s (until their next packet).
        assert_eq!(flow_refresh(&sp.rules[3]), Some(60_000));
        check_dr_registers(sp);
    }
}

#[test]
fn dr_flow_table_of_udp_and_sctp_has_one_class() {
    for (proto, new, est) in [
        (Proto::Udp, 300_000, 300_000),
        (Proto::Sctp, 60_000, 900_000),
    ] {
        let (plan, _) = build(
            &table(vec![dr2("192.0.2.100", proto, [1, 1])]),
            &mut Ids::default(),
        );
        let sp = &plan.tables[&Fam::Netdev].services["svc1"];
        // pinned, scheduler, fallback
        assert_eq!(sp.rules.len(), 3, "{:#?}", sp.rules);
        assert_eq!(flag_class(&sp.rules[0]), None);
        assert_eq!(flow_refresh(&sp.rules[0]), Some(est));
        assert_eq!(flow_refresh(&sp.rules[1]), Some(new));
        assert_eq!(sp.sets["svc1_flows"].def.timeout_ms, Some(est));
        check_dr_registers(sp);
    }
}

#[test]
fn dr_without_live_servers_keeps_pinned_flows_and_refuses_the_rest() {
    for (vip, proto) in [("192.0.2.100", Proto::Tcp), ("2001:db8::100", Proto::Udp)] {
        let (plan, _) = build(&table(vec![dr2(vip, proto, [0, 0])]), &mut Ids::default());
        let t = &plan.tables[&Fam::Netdev];
        let sp = &t.services["svc1"];
        let classes = if proto == Proto::Tcp { 3 } else { 1 };
        // pinned flows, drop of half-rewritten frames, reject TCP, reject others
        assert_eq!(sp.rules.len(), classes + 3, "{:#?}", sp.rules);
        // The dispatch rule leaves the source alone (for the reject) ...
        assert!(!t.base["in_eth0"].rules[0]
            .iter()
            .any(|x| matches!(x, Expr::PayloadWrite { .. })));
        // ... so pinned flows set it, right after the flow lookup and before the
        // destination.
        for r in &sp.rules[..classes] {
            let lookup = r
                .iter()
                .position(|e| matches!(e, Expr::Lookup { set, .. } if set == "svc1_flows"))
                .unwrap();
            assert_eq!(
                r[lookup + 1..lookup + 4],
                [
                    Expr::Payload {
                        base: NFT_PAYLOAD_LL_HEADER,
                        offset: 0,
                        len: 6,
                        dreg: reg(13)
                    },
                    Expr::PayloadWrite {
                        base: NFT_PAYLOAD_LL_HEADER,
                        offset: 6,
                        len: 6,
                        sreg: reg(13)
                    },
                    Expr::PayloadWrite {
                        base: NFT_PAYLOAD_LL_HEADER,
                        offset: 0,
                        len: 6,
                        sreg: reg(11)
                    },
                ]
            );
        }
        let drop = &sp.rules[classes];
        if proto == Proto::Tcp {
            assert_eq!(flag_class(drop), Some((0x02, 0)));
        }
        assert!(drop.contains(&Expr::Lookup {
            set: "svc1_flows".into(),
            sreg: reg(0),
            dreg: None,
            invert: false
        }));
        assert_eq!(
            drop.last(),
            Some(&Expr::Verdict {
                code: NF_DROP as i32,
                chain: None
            })
        );
        assert!(matches!(
            sp.rules[classes + 1].last(),
            Some(Expr::Reject {
                kind: NFT_REJECT_TCP_RST,
                ..
            })
        ));
        assert_eq!(sp.live().len(), 0);
        assert_eq!(sp.reach().len(), 2);
        check_dr_registers(sp);
    }
}

/// Checks the register use of every rule of a DR service: each expression reads only
/// bytes an earlier expression of the rule wrote, within the 64 bytes of registers; the
/// flow map's key is exactly the four flow-key loads; and every MAC used as a lookup key
/// or as dynset data was read back from the frame (nft 1.0.6 cannot print a map result
/// there).
fn check_dr_registers(sp: &super::plan::SvcPlan) {
    let lens = |set: &str| {
        let d = &sp.sets[set].def;
        (d.key_len, d.data.map(|x| x.1).unwrap_or(0))
    };
    let bytes = |r: u32, len: u32| {
        let start = ((r - reg(0)) * 4) as usize;
        start..start + len as usize
    };
    let padded = |len: u32| len.div_ceil(4) * 4;
    let mac_read_back = Expr::Payload {
        base: NFT_PAYLOAD_LL_HEADER,
        offset: 0,
        len: 6,
        dreg: reg(11),
    };
    for rule in &sp.rules {
        let mut writer: [Option<usize>; 64] = [None; 64];
        let ctx = |i: usize| format!("expression {i} of {rule:#?}");
        let read = |writer: &[Option<usize>; 64], r: u32, len: u32, i: usize| {
            for b in bytes(r, len) {
                assert!(b < 64 && writer[b].is_some(), "{}: reads byte {b}", ctx(i));
            }
        };
        let from_frame = |writer: &[Option<usize>; 64], r: u32, i: usize| {
            assert_eq!(r, reg(11), "{}", ctx(i));
            assert_eq!(
                rule[writer[bytes(r, 1).start].unwrap()],
                mac_read_back,
                "{}",
                ctx(i)
            );
        };
        let flow_key = |writer: &[Option<usize>; 64], r: u32, i: usize| {
            assert_eq!(r, reg(0), "{}", ctx(i));
            let (klen, _) = lens(sp.flows_set.as_deref().unwrap());
            let alen = (klen - 8) / 2;
            let (sa, da) = if alen == 4 { (12, 16) } else { (8, 24) };
            let want = [
                (NFT_PAYLOAD_NETWORK_HEADER, sa, alen, 0),
                (NFT_PAYLOAD_NETWORK_HEADER, da, alen, alen),
                (NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, 2 * alen),
                (NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, 2 * alen + 4),
            ];
            for (base, offset, len, at) in want {
                let w = writer[at as usize].unwrap();
                assert_eq!(
                    rule[w],
                    Expr::Payload {
                        base,
                        offset,
                        len,
                        dreg: reg(at / 4)
                    },
                    "{}",
                    ctx(i)
                );
                for b in at..at + padded(len) {
                    assert_eq!(writer[b as usize], Some(w), "{}", ctx(i));
                }
            }
        };
        for (i, e) in rule.iter().enumerate() {
            let write = |writer: &mut [Option<usize>; 64], r: u32, len: u32| {
                for b in bytes(r, padded(len)) {
                    assert!(b < 64, "{}: writes byte {b}", ctx(i));
                    writer[b] = Some(i);
                }
            };
            match e {
                Expr::Payload { len, dreg, .. } => write(&mut writer, *dreg, *len),
                Expr::Meta { dreg, .. } => write(&mut writer, *dreg, 4),
                Expr::Immediate { dreg, data } => write(&mut writer, *dreg, data.len() as u32),
                Expr::Cmp { sreg, data, .. } => read(&writer, *sreg, data.len() as u32, i),
                Expr::Mask { sreg, dreg, mask } => {
                    read(&writer, *sreg, mask.len() as u32, i);
                    write(&mut writer, *dreg, mask.len() as u32);
                }
                Expr::PayloadWrite { sreg, len, .. } => read(&writer, *sreg, *len, i),
                Expr::Lookup {
                    set, sreg, dreg, ..
                } => {
                    let (k, d) = lens(set);
                    read(&writer, *sreg, k, i);
                    if set.ends_with("_flows") {
                        flow_key(&writer, *sreg, i);
                    }
                    if set.ends_with("_ctr") || set.ends_with("_live") {
                        from_frame(&writer, *sreg, i);
                    }
                    if let Some(dreg) = dreg {
                        write(&mut writer, *dreg, d);
                    }
                }
                Expr::Dynset {
                    set,
                    sreg_key,
                    sreg_data,
                    ..
                } => {
                    let (k, d) = lens(set);
                    read(&writer, *sreg_key, k, i);
                    if set.ends_with("_flows") {
                        flow_key(&writer, *sreg_key, i);
                    }
                    let data = sreg_data.expect("maps take data");
                    read(&writer, data, d, i);
                    from_frame(&writer, data, i);
                }
                Expr::Jhash {
                    sreg, len, dreg, ..
                } => {
                    read(&writer, *sreg, *len, i);
                    write(&mut writer, *dreg, 4);
                }
                Expr::Numgen { dreg, .. } => write(&mut writer, *dreg, 4),
                Expr::Fwd { sreg_dev } => read(&writer, *sreg_dev, 4, i),
                Expr::Verdict { .. } | Expr::Reject { .. } | Expr::Counter => {}
                e => panic!("unexpected in a DR rule: {e:?}"),
            }
        }
    }
}

#[test]
fn dr_registers_are_consistent_in_every_variant() {
    for vip in ["192.0.2.100", "2001:db8::100"] {
        for proto in [Proto::Tcp, Proto::Udp] {
            for w in [[1, 2], [0, 1], [0, 0]] {
                for pers in [None, Some(24u8)] {
                    for sched in [Sched::Wrr, Sched::Sh, Sched::Dh, Sched::Mh] {
                        let mut s = dr2(vip, proto, w);
                        s.sched = sched;
                        s.flags.port = sched == Sched::Mh;
                        s.persistence = pers.map(|p| Persistence {
                            timeout: Duration::from_secs(60),
                            prefix_len: if vip.contains(':') { p + 40 } else { p },
                        });
                        let (plan, _) = build(&table(vec![s]), &mut Ids::default());
                        check_dr_registers(&plan.tables[&Fam::Netdev].services["svc1"]);
                    }
                }
            }
        }
    }
}

#[test]
fn hash_table_size_is_sticky() {
    assert_eq!(hash_table_size(3, None), 1021);
    assert_eq!(hash_table_size(4, Some(1021)), 1021);
    let big = hash_table_size(10_000, None);
    assert_eq!(hash_table_size(9_999, Some(big)), big);
    assert_eq!(hash_table_size(10_100, Some(big)), big);
    // Far too small for 100,000 servers: grow.
    assert_ne!(hash_table_size(100_000, Some(big)), big);
}

// --- diffs -----------------------------------------------------------------------------

#[test]
fn unchanged_table_sends_nothing() {
    let mut ids = Ids::default();
    let t = table(vec![rr3()]);
    let (a, _) = build(&t, &mut ids);
    let (b, _) = build(&t, &mut ids);
    assert!(batch(Some(&a), &b).is_empty());
}

#[test]
fn unknown_state_resets_all_three_families_first() {
    let (plan, _) = build(&table(vec![rr3()]), &mut Ids::default());
    let (_, d) = content(batch(None, &plan));
    assert_eq!(
        d[..6],
        [
            "add table ip vipd",
            "delete table ip vipd",
            "add table ip6 vipd",
            "delete table ip6 vipd",
            "add table netdev vipd",
            "delete table netdev vipd"
        ]
    );
    assert_eq!(d[6], "add table ip vipd");
}

#[test]
fn weight_change_of_a_hashed_service_only_touches_elements() {
    let mut ids = Ids::default();
    let mut s = rr3();
    s.sched = Sched::Sh;
    let (a, _) = build(
        &table(vec![s.clone(), svc("192.0.2.101", 80, Sched::Rr, vec![])]),
        &mut ids,
    );
    s.dests[1].weight = 3;
    let (b, _) = build(
        &table(vec![s, svc("192.0.2.101", 80, Sched::Rr, vec![])]),
        &mut ids,
    );
    let (msgs, d) = content(batch(Some(&a), &b));
    assert!(!d.is_empty());
    assert!(
        d.iter().all(|x| x.contains("elements ip vipd svc1_slots")),
        "{d:?}"
    );
    // deletes before adds, and the changed slots are re-added with the new server
    assert!(d[0].starts_with("delete"));
    assert_eq!(msgs[0].ty, nft_type(NFT_MSG_DELSETELEM));
    assert_eq!(msgs.last().unwrap().ty, nft_type(NFT_MSG_NEWSETELEM));
}

#[test]
fn round_robin_length_change_rewrites_the_service_rule() {
    let mut ids = Ids::default();
    let (a, _) = build(&table(vec![rr3()]), &mut ids);
    let mut s = rr3();
    s.dests.pop();
    let (b, _) = build(&table(vec![s]), &mut ids);
    let (_, d) = content(batch(Some(&a), &b));
    let pos = |p: &str| {
        d.iter()
            .position(|x| x.starts_with(p))
            .unwrap_or_else(|| panic!("{p}: {d:?}"))
    };
    // flush the chain, change elements, add the new rule (modulus 2)
    assert!(pos("flush chain ip vipd svc1") < pos("add rule ip vipd svc1"));
    assert!(pos("delete 1 elements ip vipd svc1_slots") < pos("add rule ip vipd svc1"));
    // the base chains are untouched
    assert!(
        !d.iter().any(|x| x.contains(" pre") || x.contains(" post")),
        "{d:?}"
    );
}

#[test]
fn removing_a_service_unhooks_it_before_deleting() {
    let mut ids = Ids::default();
    let other = svc(
        "192.0.2.101",
        80,
        Sched::Rr,
        vec![dest("192.0.2.11", 80, 1)],
    );
    let (a, _) = build(&table(vec![rr3(), other.clone()]), &mut ids);
    let (b, _) = build(&table(vec![other]), &mut ids);
    let (_, d) = content(batch(Some(&a), &b));
    let pos = |p: &str| {
        d.iter()
            .position(|x| x.starts_with(p))
            .unwrap_or_else(|| panic!("{p}: {d:?}"))
    };
    assert!(pos("flush chain ip vipd pre") < pos("delete chain ip vipd svc1"));
    assert!(pos("flush chain ip vipd post") < pos("delete set ip vipd svc1_ctr"));
    assert!(pos("delete chain ip vipd svc1") < pos("delete set ip vipd svc1_slots"));
    assert!(pos("delete chain ip vipd svc1") < pos("add rule ip vipd pre"));
    // Its verdict map elements name its chains: they go first.
    assert!(pos("delete 1 elements ip vipd dispatch") < pos("delete chain ip vipd svc1"));
    assert!(pos("delete 1 elements ip vipd count") < pos("delete chain ip vipd svc1_post"));
    assert!(pos("delete chain ip vipd svc1_post") < pos("delete set ip vipd svc1_ctr"));
    // the remaining service is re-dispatched, untouched otherwise
    assert!(!d.iter().any(|x| x.contains("svc2_")), "{d:?}");
    // Removing the last service of a family drops its table.
    let (c, _) = build(&table(vec![]), &mut ids);
    let (_, d) = content(batch(Some(&b), &c));
    assert_eq!(d, vec!["delete table ip vipd"]);
}

#[test]
fn adding_a_service_with_a_port_only_adds_map_elements_after_its_chains() {
    let mut ids = Ids::default();
    let other = svc(
        "192.0.2.101",
        80,
        Sched::Rr,
        vec![dest("192.0.2.11", 80, 1)],
    );
    let (a, _) = build(&table(vec![rr3()]), &mut ids);
    let (b, _) = build(&table(vec![rr3(), other]), &mut ids);
    assert_eq!(a.tables[&Fam::Ip].base, b.tables[&Fam::Ip].base);
    let (_, d) = content(batch(Some(&a), &b));
    let pos = |p: &str| first(&d, p);
    assert!(pos("add chain ip vipd svc2") < pos("add 1 elements ip vipd dispatch"));
    assert!(pos("add chain ip vipd svc2_post") < pos("add 1 elements ip vipd count"));
    // The base chains and the other service are untouched: however many services
    // there are, adding one sends only its own objects and two map elements.
    assert!(
        !d.iter()
            .any(|x| x.contains(" pre") || x.contains(" post") || x.contains("svc1")),
        "{d:?}"
    );
    // Removing the last one with a port takes the maps and their rules away.
    let (c, _) = build(
        &table(vec![svc(
            "192.0.2.102",
            0,
            Sched::Rr,
            vec![dest("192.0.2.11", 0, 1)],
        )]),
        &mut ids,
    );
    assert!(c.tables[&Fam::Ip].maps.is_empty());
    let (_, d) = content(batch(Some(&b), &c));
    let pos = |p: &str| first(&d, p);
    assert!(pos("flush chain ip vipd pre") < pos("delete set ip vipd dispatch"));
    assert!(pos("flush chain ip vipd post") < pos("delete set ip vipd count"));
    assert!(pos("delete set ip vipd dispatch") < pos("delete chain ip vipd svc1"));
}

#[test]
fn persistence_change_replaces_the_map_safely() {
    let mut ids = Ids::default();
    let mut s = rr3();
    s.persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        prefix_len: 32,
    });
    let (a, _) = build(&table(vec![s.clone()]), &mut ids);
    s.persistence = Some(Persistence {
        timeout: Duration::from_secs(300),
        prefix_len: 24,
    });
    let (b, _) = build(&table(vec![s]), &mut ids);
    let (_, d) = content(batch(Some(&a), &b));
    let pos = |p: &str| {
        d.iter()
            .position(|x| x.starts_with(p))
            .unwrap_or_else(|| panic!("{p}: {d:?}"))
    };
    // references to the old map go first: the service chain and postrouting
    assert!(pos("flush chain ip vipd svc1") < pos("delete set ip vipd svc1_pers"));
    assert!(pos("flush chain ip vipd post") < pos("delete set ip vipd svc1_pers"));
    assert!(pos("delete set ip vipd svc1_pers") < pos("add set ip vipd svc1_pers"));
    assert!(pos("add set ip vipd svc1_pers") < pos("add rule ip vipd svc1"));
}

#[test]
fn nat_to_dr_moves_the_service_between_tables() {
    let mut ids = Ids::default();
    let s = svc(
        "192.0.2.100",
        80,
        Sched::Rr,
        vec![dest("192.0.2.11", 80, 1)],
    );
    let (a, _) = build(&table(vec![s.clone()]), &mut ids);
    let (b, _) = build(&table(vec![dr(s, &[Some([2, 0, 0, 0, 0, 1])])]), &mut ids);
    let (_, d) = content(batch(Some(&a), &b));
    assert_eq!(d[0], "delete table ip vipd");
    assert_eq!(d[1], "add table netdev vipd");
    assert!(
        d.contains(&"add chain netdev vipd in_eth0".to_string()),
        "{d:?}"
    );
}

#[test]
fn dr_table_changes_keep_the_flow_table() {
    let mut ids = Ids::default();
    let s = dr2("192.0.2.100", Proto::Tcp, [1, 1]);
    let (a, _) = build(&table(vec![s.clone()]), &mut ids);
    let mut changes = Vec::new();
    let mut w = s.clone();
    w.dests[0].weight = 3;
    changes.push(w);
    let mut drained = s.clone();
    drained.dests[0].weight = 0;
    changes.push(drained);
    let mut none_live = s.clone();
    none_live.dests.iter_mut().for_each(|d| d.weight = 0);
    changes.push(none_live);
    let mut removed = s.clone();
    removed.dests.pop();
    changes.push(removed);
    let mut pers = s.clone();
    pers.persistence = Some(Persistence {
        timeout: Duration::from_secs(60),
        prefix_len: 32,
    });
    changes.push(pers);
    let mut sh = s.clone();
    sh.sched = Sched::Sh;
    changes.push(sh);
    for c in changes {
        let (b, _) = build(&table(vec![c.clone()]), &mut ids);
        let (_, d) = content(batch(Some(&a), &b));
        assert!(!d.is_empty());
        assert!(
            !d.iter()
                .any(|x| x.contains(" set ") && x.contains("svc1_flows")),
            "{c:?}: {d:?}"
        );
        // and back
        let (_, d) = content(batch(Some(&b), &a));
        assert!(
            !d.iter()
                .any(|x| x.contains(" set ") && x.contains("svc1_flows")),
            "{c:?}: {d:?}"
        );
    }
}

#[test]
fn destroy_elements_message() {
    let mut b = Batch::new(1);
    let keys = [[192u8, 0, 2, 50], [192, 0, 2, 51]];
    b.destroy_elems(
        NFPROTO_NETDEV,
        "vipd",
        "svc1_flows",
        keys.iter().map(|k| &k[..]),
    );
    let (msgs, d) = content(b);
    assert_eq!(d, vec!["destroy 2 elements netdev vipd svc1_flows"]);
    assert_eq!(msgs[0].ty, nft_type(NFT_MSG_DESTROYSETELEM));
    assert_eq!(msgs[0].flags, NLM_F_REQUEST | NLM_F_ACK);
    let e = decode::set_elems(attrs_of(&msgs[0]));
    assert_eq!(e.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), keys);
}

#[test]
fn big_element_lists_are_split_below_the_attribute_limit() {
    let mut b = Batch::new(1);
    let keys: Vec<[u8; 4]> = (0..20_000u32).map(|i| i.to_ne_bytes()).collect();
    let data = [192u8, 0, 2, 1, 0, 80, 0, 0];
    b.new_elems(
        NFPROTO_IPV4,
        "vipd",
        "s",
        keys.iter().map(|k| (&k[..], &data[..])),
    );
    let (msgs, _) = content(b);
    assert!(msgs.len() >= 2);
    let mut n = 0;
    for m in &msgs {
        let list = decode::get(attrs_of(m), NFTA_SET_ELEM_LIST_ELEMENTS).unwrap();
        assert!(list.value.len() + 4 < 65_536);
        assert!(list.value.len() < ELEMS_CHUNK + 200);
        for e in decode::set_elems(attrs_of(m)) {
            assert_eq!(e.key, (n as u32).to_ne_bytes());
            assert_eq!(e.data, data);
            n += 1;
        }
    }
    assert_eq!(n, 20_000);
}

#[test]
fn set_definition_bytes() {
    let mut b = Batch::new(1);
    b.new_set(
        NFPROTO_IPV4,
        "vipd",
        &SetDef {
            name: "p".into(),
            flags: NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL,
            key_type: TYPE_IPADDR,
            key_len: 4,
            data: Some((TYPE_MARK, 4)),
            timeout_ms: Some(90_000),
            size: Some(1000),
            counter: true,
            key_host_order: false,
            tag: 0,
        },
    );
    let (msgs, _) = content(b);
    let a = attrs_of(&msgs[0]);
    assert_eq!(
        decode::get(a, NFTA_SET_TIMEOUT).unwrap().value,
        90_000u64.to_be_bytes()
    );
    assert_eq!(
        decode::get(a, NFTA_SET_FLAGS).unwrap().value,
        [0, 0, 0, 0x38]
    );
    let desc = decode::get(a, NFTA_SET_DESC).unwrap();
    assert!(desc.nested);
    assert_eq!(desc.get(NFTA_SET_DESC_SIZE).unwrap().be32(), Some(1000));
    let e = decode::get(a, NFTA_SET_EXPR).unwrap();
    assert_eq!(e.get(NFTA_EXPR_NAME).unwrap().str(), "counter");
}

// --- decoding kernel answers -------------------------------------------------------------

#[test]
fn decodes_counters_of_a_dump() {
    // NEWSETELEM as the kernel dumps it: an element with key, data and a counter.
    let mut b = MsgBuf::new();
    let m = b.begin_msg(nft_type(NFT_MSG_NEWSETELEM), 0, 1);
    b.put_raw(&[2, 0, 0, 0]);
    b.attr_str(NFTA_SET_ELEM_LIST_TABLE, "vipd");
    b.attr_str(NFTA_SET_ELEM_LIST_SET, "svc1_ctr");
    let l = b.nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    let el = b.nest_begin(NFTA_LIST_ELEM);
    super::expr::value(&mut b, NFTA_SET_ELEM_KEY, &[192, 0, 2, 11, 0, 80, 0, 0]);
    let ex = b.nest_begin(NFTA_SET_ELEM_EXPR);
    b.attr_str(NFTA_EXPR_NAME, "counter");
    let d = b.nest_begin(NFTA_EXPR_DATA);
    b.attr_u64_be(NFTA_COUNTER_BYTES, 4242);
    b.attr_u64_be(NFTA_COUNTER_PACKETS, 42);
    b.nest_end(d);
    b.nest_end(ex);
    b.nest_end(el);
    b.nest_end(l);
    b.end_msg(m);
    let msgs = parse_msgs(b.as_bytes());
    let e = decode::set_elems(&msgs[0].payload[4..]);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key, [192, 0, 2, 11, 0, 80, 0, 0]);
    assert_eq!(e[0].counter, Some((42, 4242)));
}

/// Found by fuzz/fuzz_targets/lb_netlink.rs: an element dump whose counter carries a
/// 1-byte NFTA_COUNTER_PACKETS made `set_elems` panic (a slice past the value's end).
/// A short value now reads as 0, like a missing one.
#[test]
fn short_counter_value_in_an_element_dump_is_not_a_panic() {
    let datagram: &[u8] = &[
        0x7c, 0x00, 0x00, 0x00, 0x0c, 0x0a, 0x02, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x92, 0x10, 0x00,
        0x00, 0x02, 0x00, 0x00, 0x0a, 0x09, 0x00, 0x01, 0x00, 0x76, 0x69, 0x70, 0x64, 0x00, 0x00,
        0x00, 0x00, 0x08, 0x00, 0x02, 0x00, 0x73, 0x76, 0x63, 0x00, 0x54, 0x00, 0x03, 0x80, 0x50,
        0x00, 0x01, 0x80, 0x10, 0x00, 0x01, 0x80, 0x0c, 0x00, 0x01, 0x00, 0xc0, 0x00, 0x02, 0x0a,
        0x00, 0x50, 0x00, 0x00, 0x10, 0x00, 0x02, 0x80, 0x41, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x07, 0x80, 0x0c, 0x00, 0x01, 0x00, 0x63, 0x6f,
        0x75, 0x6e, 0x74, 0x65, 0x72, 0x00, 0x1c, 0x00, 0x02, 0x80, 0x0c, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0xdc, 0x05, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x03, 0x14, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x05, 0x00, 0x00,
        0x00, 0x92, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let msgs = parse_msgs(datagram);
    assert_eq!(msgs.len(), 2);
    let e = decode::set_elems(&msgs[0].payload[4..]);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key, [192, 0, 2, 10, 0, 80, 0, 0]);
    // NFTA_COUNTER_BYTES is 8 bytes (0xcdc); NFTA_COUNTER_PACKETS is 1 byte.
    assert_eq!(e[0].counter, Some((0, 0xcdc)));
}

#[test]
fn decodes_extended_acks() {
    // errno, capped original header, then TLVs: message and offset
    let mut p = Vec::new();
    p.extend((-22i32).to_ne_bytes());
    p.extend(20u32.to_ne_bytes()); // original nlmsg_len
    p.extend([0u8; 12]);
    let mut b = MsgBuf::new();
    b.attr_str(NLMSGERR_ATTR_MSG, "bad thing");
    b.attr_u32(NLMSGERR_ATTR_OFFS, 36);
    p.extend(b.as_bytes());
    assert_eq!(
        decode::ext_ack(NLM_F_CAPPED | NLM_F_ACK_TLVS, &p),
        (Some("bad thing".to_string()), Some(36))
    );
    assert_eq!(decode::ext_ack(NLM_F_CAPPED, &p), (None, None));
}

// --- check -------------------------------------------------------------------------------

fn refused(s: Service) -> String {
    let e = check_table(&table(vec![s])).unwrap_err();
    assert_eq!(e.service, "virtual_server 192.0.2.100 80");
    e.reason
}

#[test]
fn check_names_the_service_and_the_limit() {
    assert!(check_table(&table(vec![rr3()])).is_ok());
    for sched in [
        Sched::Lc,
        Sched::Wlc,
        Sched::Lblc,
        Sched::Lblcr,
        Sched::Sed,
        Sched::Nq,
        Sched::Fo,
        Sched::Ovf,
        Sched::Twos,
    ] {
        let mut s = rr3();
        s.sched = sched;
        let r = refused(s);
        assert!(
            r.contains(sched.name())
                && r.contains("per-destination connection counts, which nftables does not keep")
                && r.contains("use rr/wrr/sh/dh/mh or a kernel with IPVS"),
            "{r}"
        );
    }
    let mut s = rr3();
    s.forward = Forward::Tun;
    for d in &mut s.dests {
        d.forward = Forward::Tun;
    }
    assert!(refused(s).contains("TUN"));

    let mut s = rr3();
    s.dests[1].forward = Forward::Dr;
    assert!(refused(s).contains("mix forwarding methods"));

    let mut s = dr(rr3(), &[Some([2, 0, 0, 0, 0, 1]); 3]);
    s.device = None;
    assert!(refused(s).contains("device"));

    let mut s = rr3();
    s.flags.one_packet = true;
    assert!(refused(s).contains("ops"));

    let mut s = rr3();
    s.dests[0].upper_threshold = 100;
    assert!(refused(s).contains("uthreshold"));

    let mut s = rr3();
    s.dests[0].addr = ip("2001:db8::1");
    assert!(refused(s).contains("address family"));

    let mut s = svc(
        "192.0.2.100",
        0,
        Sched::Rr,
        vec![dest("192.0.2.11", 80, 1), dest("192.0.2.12", 0, 1)],
    );
    s.key = ServiceKey::Addr {
        addr: ip("192.0.2.100"),
        port: 0,
        proto: Proto::Tcp,
    };
    let e = check_table(&table(vec![s])).unwrap_err();
    assert_eq!(e.service, "virtual_server 192.0.2.100 0");
    assert!(e.reason.contains("all or none"));

    let mut fw = dr(rr3(), &[Some([2, 0, 0, 0, 0, 1]); 3]);
    fw.key = ServiceKey::Fwmark {
        mark: 3,
        family: Family::V4,
    };
    let e = check_table(&table(vec![fw])).unwrap_err();
    assert_eq!(e.service, "virtual_server fwmark 3");

    let mut s = rr3();
    s.persistence = Some(Persistence {
        timeout: Duration::from_secs(1),
        prefix_len: 33,
    });
    assert!(refused(s).contains("/33"));
}

#[test]
fn virtual_server_names() {
    let mut s = rr3();
    assert_eq!(s.key.config_name(), "virtual_server 192.0.2.100 80");
    s.key = ServiceKey::Addr {
        addr: ip("2001:db8::1"),
        port: 53,
        proto: Proto::Udp,
    };
    assert_eq!(
        s.key.config_name(),
        "virtual_server 2001:db8::1 53 (protocol UDP)"
    );
}

#[test]
fn lvs_timeouts_become_ct_timeout_policies_and_dr_flow_timeouts() {
    use crate::model::Timeouts;
    let mut udp = svc(
        "192.0.2.101",
        53,
        Sched::Rr,
        vec![dest("192.0.2.11", 53, 1)],
    );
    udp.key = ServiceKey::Addr {
        addr: ip("192.0.2.101"),
        port: 53,
        proto: Proto::Udp,
    };
    let mut all_ports = svc("192.0.2.102", 0, Sched::Rr, vec![dest("192.0.2.11", 0, 1)]);
    all_ports.persistence = Some(Persistence {
        timeout: Duration::from_secs(60),
        prefix_len: 32,
    });
    let t = table(vec![
        rr3(),
        udp,
        all_ports,
        dr2("192.0.2.110", Proto::Tcp, [1, 1]),
    ]);
    let mut ids = Ids::default();
    let (plain, _) = build(&t, &mut ids);
    assert!(plain.tables[&Fam::Ip].ct_timeouts.is_empty());
    let lvs = Timeouts {
        tcp: 100,
        tcpfin: 20,
        udp: 40,
    };
    ids.set_timeouts(&lvs);
    let (plan, _) = build(&t, &mut ids);
    let ip4 = &plan.tables[&Fam::Ip];
    let names: Vec<&str> = ip4.ct_timeouts.keys().map(String::as_str).collect();
    assert_eq!(names, ["timeout_tcp_100_20", "timeout_udp_40"]);
    assert_eq!(
        ip4.ct_timeouts["timeout_tcp_100_20"].policy,
        [
            (CTA_TIMEOUT_TCP_ESTABLISHED, 100),
            (CTA_TIMEOUT_TCP_FIN_WAIT, 20),
            (CTA_TIMEOUT_TCP_CLOSE_WAIT, 20),
            (CTA_TIMEOUT_TCP_LAST_ACK, 20)
        ]
    );
    assert!(plan.tables[&Fam::Netdev].ct_timeouts.is_empty());
    // Each NAT service names the objects of its protocol (port 0: both): the services
    // found by the verdict maps in the first rule of their chain, the others in their
    // dispatch rules, before the jump to the service's chain (its DNAT).
    let refs = |r: &[Expr]| -> Vec<String> {
        r.iter()
            .filter_map(|e| match e {
                Expr::Objref { ty, name } if *ty == NFT_OBJECT_CT_TIMEOUT => Some(name.clone()),
                _ => None,
            })
            .collect()
    };
    let tcp = "timeout_tcp_100_20".to_string();
    let udp = "timeout_udp_40".to_string();
    assert_eq!(
        refs(&ip4.services["svc1"].rules[0]),
        std::slice::from_ref(&tcp)
    );
    assert_eq!(
        refs(&ip4.services["svc2"].rules[0]),
        std::slice::from_ref(&udp)
    );
    let pre = &ip4.base["pre"].rules;
    let out = &ip4.base["out"].rules;
    assert_eq!(pre, out);
    let port0: Vec<&Vec<Expr>> = pre
        .iter()
        .filter(|r| r.iter().any(|e| matches!(e, Expr::Verdict { .. })))
        .collect();
    assert_eq!(port0.len(), 1);
    assert_eq!(refs(port0[0]), [tcp, udp]);
    let at = port0[0]
        .iter()
        .position(|e| matches!(e, Expr::Objref { .. }))
        .unwrap();
    let goto = port0[0]
        .iter()
        .position(|e| matches!(e, Expr::Verdict { .. }))
        .unwrap();
    assert!(at < goto, "{:?}", port0[0]);
    // DR: the pinned flows of TCP follow tcp / tcpfin (RST keeps its 10 s).
    let sp = plan.tables[&Fam::Netdev].services.values().next().unwrap();
    let pinned: Vec<u64> = sp.rules[..3]
        .iter()
        .map(|r| flow_refresh(r).unwrap())
        .collect();
    assert_eq!(pinned, [100_000, 20_000, 10_000]);

    // The objects are created before the rules that name them.
    let (msgs, d) = content(batch(Some(&plain), &plan));
    let first_rule = d
        .iter()
        .position(|x| x.starts_with("add rule ip "))
        .unwrap();
    let obj = d
        .iter()
        .position(|x| x == "add ct timeout ip vipd timeout_tcp_100_20")
        .unwrap();
    assert!(obj < first_rule, "{d:#?}");
    let m = &msgs[obj];
    assert_eq!(m.ty, nft_type(NFT_MSG_NEWOBJ));
    let a = decode::attrs(attrs_of(m));
    let get = |ty| a.iter().find(|x| x.ty == ty).unwrap();
    assert_eq!(get(NFTA_OBJ_TABLE).str(), "vipd");
    assert_eq!(get(NFTA_OBJ_NAME).str(), "timeout_tcp_100_20");
    assert_eq!(get(NFTA_OBJ_TYPE).be32(), Some(NFT_OBJECT_CT_TIMEOUT));
    let data = get(NFTA_OBJ_DATA);
    assert!(data.nested);
    assert_eq!(
        data.get(NFTA_CT_TIMEOUT_L3PROTO).unwrap().value,
        (libc::AF_INET as u16).to_be_bytes()
    );
    assert_eq!(data.get(NFTA_CT_TIMEOUT_L4PROTO).unwrap().value, [6]);
    let policy: Vec<(u16, u32)> = data
        .get(NFTA_CT_TIMEOUT_DATA)
        .unwrap()
        .children()
        .iter()
        .map(|x| (x.ty, x.be32().unwrap()))
        .collect();
    assert_eq!(policy, ip4.ct_timeouts["timeout_tcp_100_20"].policy);

    // A change: the new object first, the old one deleted after the rules moved on.
    ids.set_timeouts(&Timeouts { tcp: 200, ..lvs });
    let (next, _) = build(&t, &mut ids);
    let (_, d) = content(batch(Some(&plan), &next));
    let add = d
        .iter()
        .position(|x| x == "add ct timeout ip vipd timeout_tcp_200_20")
        .unwrap();
    let del = d
        .iter()
        .position(|x| x == "delete ct timeout ip vipd timeout_tcp_100_20")
        .unwrap();
    let last_rule = d
        .iter()
        .rposition(|x| x.starts_with("add rule ip "))
        .unwrap();
    assert!(add < last_rule && last_rule < del, "{d:#?}");
    assert!(!d.iter().any(|x| x.contains("timeout_udp_40")), "{d:#?}");
    // Back to no timeouts: the objects go.
    ids.set_timeouts(&Timeouts::default());
    let (none, _) = build(&t, &mut ids);
    let (_, d) = content(batch(Some(&next), &none));
    assert!(d.contains(&"delete ct timeout ip vipd timeout_udp_40".to_string()));
}

#[test]
fn a_persistence_engine_is_refused_with_the_way_out() {
    let mut s = rr3();
    s.pe_name = Some("sip".into());
    let e = check_table(&table(vec![s])).unwrap_err();
    assert_eq!(e.service, "virtual_server 192.0.2.100 80");
    assert!(
        e.reason.contains("persistence_engine sip") && e.reason.contains("--lb-backend ipvs"),
        "{e}"
    );
}
