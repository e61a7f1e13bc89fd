//! Keeps the kernel's NAT bindings alive while conntrackd syncs connections
//! (`lvs_sync_daemon` on the nftables backend).
//!
//! When the last nftables NAT chain of a family goes away in a network namespace, the
//! kernel deletes every conntrack entry that carries a NAT binding. The load balancer
//! removes its `vipd` table when its VRRP instance leaves MASTER; during the graceful
//! handover that director still holds the VIP for a moment, and without its NAT
//! bindings a segment of a synced connection that still reaches it would leave
//! un-NATed and get the flow reset. An empty NAT chain in a table of its own,
//! `vipd_ctsync` (families `ip` and `ip6`), keeps the NAT hooks registered: the old
//! director keeps forwarding its connections by their conntrack entries until they
//! expire (conntrackd shortens their timers).

use anyhow::Context;

use super::consts::*;
use super::encode::{Batch, Hook};
use super::sock::NftSocket;

/// The tables' name (in the `ip` and `ip6` families).
pub const TABLE: &str = "vipd_ctsync";
const CHAIN: &str = "nat_anchor";

/// The anchor tables, installed by this process until dropped.
pub struct NatAnchor {
    sock: NftSocket,
    released: bool,
}

impl NatAnchor {
    /// Installs the tables (replacing ones an earlier vipd left).
    pub fn hold() -> anyhow::Result<NatAnchor> {
        let mut me = NatAnchor {
            sock: NftSocket::open().context("opening a NETLINK_NETFILTER socket")?,
            released: false,
        };
        me.program(true)
            .context("installing the vipd_ctsync NAT anchor")?;
        Ok(me)
    }

    fn program(&mut self, install: bool) -> anyhow::Result<()> {
        let mut b = Batch::new(self.sock.next_seq());
        for family in [NFPROTO_IPV4, NFPROTO_IPV6] {
            // Create-then-delete: removes the table whether or not it exists.
            b.new_table(family, TABLE);
            b.del_table(family, TABLE);
            if install {
                b.new_table(family, TABLE);
                b.new_chain(
                    family,
                    TABLE,
                    CHAIN,
                    Some(&Hook {
                        num: NF_INET_PRE_ROUTING,
                        priority: -100,
                        kind: "nat",
                        dev: None,
                    }),
                );
            }
        }
        let n = b.len();
        let (bytes, begin, msgs) = b.finish();
        self.sock.use_seqs(n as u32 + 2);
        self.sock.send_batch(&bytes, begin, &msgs)?;
        Ok(())
    }

    /// Removes the tables.
    pub fn release(mut self) -> anyhow::Result<()> {
        self.released = true;
        self.program(false)
    }
}

impl Drop for NatAnchor {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.program(false);
        }
    }
}
