//! VRRP `no_accept` mode (also what `vrrp_strict` turns on for non-owners): the host
//! does not accept packets addressed to those virtual addresses; they only route. As
//! keepalived does, with nftables: one table per family, `vipd_vrrp` (global_defs'
//! `nftables TABLENAME`), whose input chain (priority -1, before the usual filter
//! chains; `nftables_priority`) drops packets to a set of addresses (with a counter on
//! each rule when `nftables_counters` asks).
//! IPv6 neighbour solicitations and advertisements to them still pass, so neighbours
//! can resolve the address of the router that holds it.
//!
//! Uses the load balancer's netlink encoder; it owns only its own tables.

use std::net::IpAddr;

use anyhow::Context;

use super::consts::*;
use super::encode::{Batch, Hook, SetDef};
use super::expr::Expr;
use super::plan::{eq, l3, load, meta, octets, L3};
use super::sock::NftSocket;
use crate::model::Family;

/// The tables' default name (in the `ip` and `ip6` families).
pub const TABLE: &str = "vipd_vrrp";
/// The input chain's default hook priority (keepalived's too).
pub const PRIORITY: i32 = -1;

/// global_defs' `nftables [TABLENAME]`, `nftables_priority` and `nftables_counters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub table: String,
    pub priority: i32,
    pub counters: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            table: TABLE.into(),
            priority: PRIORITY,
            counters: false,
        }
    }
}
const SET: &str = "no_accept";
const CHAIN: &str = "input";
/// ICMPv6 neighbour solicitation and advertisement.
const ND_TYPES: [u8; 2] = [135, 136];

/// The drop rules, as installed by this process.
pub struct NoAccept {
    sock: NftSocket,
    settings: Settings,
    installed: Vec<IpAddr>,
}

impl NoAccept {
    /// With the default settings (`vipd_vrrp`, priority -1, no counters).
    pub fn open() -> anyhow::Result<NoAccept> {
        NoAccept::open_with(Settings::default())
    }

    pub fn open_with(settings: Settings) -> anyhow::Result<NoAccept> {
        Ok(NoAccept {
            sock: NftSocket::open().context("opening a NETLINK_NETFILTER socket")?,
            settings,
            installed: Vec::new(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Makes the host drop packets addressed to `addrs` (and no others): one atomic
    /// transaction that also replaces tables an earlier vipd left behind. An empty list
    /// removes the tables.
    pub fn apply(&mut self, addrs: &[IpAddr]) -> anyhow::Result<()> {
        let mut want: Vec<IpAddr> = addrs.to_vec();
        want.sort();
        want.dedup();
        let mut b = Batch::new(self.sock.next_seq());
        let table = self.settings.table.as_str();
        for fam in [Family::V4, Family::V6] {
            let l = l3(fam);
            let (family, v6) = (l.nfproto, fam == Family::V6);
            // Create-then-delete: removes the table whether or not it exists.
            b.new_table(family, table);
            b.del_table(family, table);
            let of_family: Vec<&IpAddr> = want.iter().filter(|a| a.is_ipv6() == v6).collect();
            if of_family.is_empty() {
                continue;
            }
            b.new_table(family, table);
            b.new_set(
                family,
                table,
                &SetDef {
                    name: SET.into(),
                    flags: 0,
                    key_type: l.addr_type,
                    key_len: l.alen,
                    data: None,
                    timeout_ms: None,
                    size: None,
                    counter: false,
                    key_host_order: false,
                    tag: 0,
                },
            );
            let keys: Vec<_> = of_family.iter().map(|a| octets(a)).collect();
            b.new_elems(
                family,
                table,
                SET,
                keys.iter().map(|k| (k.as_slice(), &[][..])),
            );
            b.new_chain(
                family,
                table,
                CHAIN,
                Some(&Hook {
                    num: NF_INET_LOCAL_IN,
                    priority: self.settings.priority,
                    kind: "filter",
                    dev: None,
                }),
            );
            for rule in rules(&l, v6, self.settings.counters) {
                b.new_rule(family, table, CHAIN, &rule);
            }
        }
        let n = b.len();
        let (bytes, begin, msgs) = b.finish();
        self.sock.use_seqs(n as u32 + 2);
        self.sock
            .send_batch(&bytes, begin, &msgs)
            .context("programming the no_accept drop rules")?;
        self.installed = want;
        Ok(())
    }

    /// The addresses dropped now.
    pub fn installed(&self) -> &[IpAddr] {
        &self.installed
    }
}

/// `ip daddr @no_accept drop`; for IPv6 first `icmpv6 type { nd-neighbor-solicit,
/// nd-neighbor-advert } accept`; `counter` before each verdict with `counters`.
fn rules(l: &L3, v6: bool, counters: bool) -> Vec<Vec<Expr>> {
    let r = NFT_REG32_00;
    let drop_to_set = vec![
        load(NFT_PAYLOAD_NETWORK_HEADER, l.daddr, l.alen, r),
        Expr::Lookup {
            set: SET.into(),
            sreg: r,
            dreg: None,
            invert: false,
        },
        Expr::Verdict {
            code: NF_DROP as i32,
            chain: None,
        },
    ];
    let nd_accept = |ty: u8| {
        vec![
            meta(NFT_META_L4PROTO, r),
            eq(r, [libc::IPPROTO_ICMPV6 as u8]),
            load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, r),
            eq(r, [ty]),
            Expr::Verdict {
                code: NF_ACCEPT as i32,
                chain: None,
            },
        ]
    };
    let mut out: Vec<Vec<Expr>> = if v6 {
        ND_TYPES.iter().map(|&ty| nd_accept(ty)).collect()
    } else {
        Vec::new()
    };
    out.push(drop_to_set);
    if counters {
        for rule in &mut out {
            let verdict = rule.len() - 1;
            rule.insert(verdict, Expr::Counter);
        }
    }
    out
}
