//! Load-balancer data plane for vipd.
//!
//! Layers, top to bottom:
//! - [`desired`]: pure code that turns virtual-server configuration, real-server health and
//!   the VRRP state of the instance owning each VIP into the forwarding [`model::Table`]
//!   the kernel should have (quorum, sorry server, inhibit_on_failure, ha_suspend).
//! - [`model`]: the backend-neutral table: services and their destinations.
//! - [`slots`]: weighted, change-stable slot tables for hash/numgen based backends.
//! - [`nft`] and [`ipvs`]: the two kernel backends, each a message encoder (pure, tested
//!   against byte layouts) plus a thin netlink sender.
//! - [`netlink`]: the attribute builder and socket both backends share.
//! - [`netns`]: sockets made in another network namespace (`net_namespace_ipvs`).

pub mod desired;
pub mod ipvs;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod slots;

pub use model::{Dest, Family, Forward, Proto, Sched, Service, ServiceKey, Table, Timeouts};

/// A kernel forwarding backend. One owner thread holds it; `apply` makes the kernel equal
/// to `desired` (atomically where the backend allows), `clear` removes everything this
/// backend installed.
pub trait DataPlane: Send {
    /// Short name for logs and status: `nftables` or `ipvs`.
    fn name(&self) -> &'static str;
    /// Why `table` cannot be expressed on this backend, naming the service and the limit.
    fn check(&self, table: &Table) -> Result<(), Unsupported>;
    /// Make the kernel's table equal to `desired`.
    fn apply(&mut self, desired: &Table) -> anyhow::Result<()>;
    /// Housekeeping an apply left that forwarding does not wait for (nftables: forget
    /// the pinned flows and persistence entries of departed real servers). The owner
    /// calls it right after `apply`, outside the time it reports for programming.
    fn tidy(&mut self) {}
    /// `lvs_timeouts`: the idle timeouts of the virtual services' connections from now on
    /// (0 = the kernel's own).
    fn set_timeouts(&mut self, timeouts: &Timeouts) -> anyhow::Result<()>;
    /// Remove everything this backend installed (shutdown).
    fn clear(&mut self) -> anyhow::Result<()>;
    /// The traffic counters of every destination the kernel forwards to, by service.
    fn counters(&mut self) -> anyhow::Result<Vec<DestCounters>>;
}

/// Totals the kernel counted for one destination since it was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Connections scheduled (IPVS; always 0 on nftables, which does not count them).
    pub conns: u64,
    /// Client → server packets and bytes.
    pub in_packets: u64,
    pub in_bytes: u64,
    /// Server → client packets and bytes (IPVS; 0 on nftables).
    pub out_packets: u64,
    pub out_bytes: u64,
    /// Connections now, active / inactive / persistent (IPVS; 0 on nftables).
    pub active_conns: u64,
    pub inactive_conns: u64,
    pub persistent_conns: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.conns += o.conns;
        self.in_packets += o.in_packets;
        self.in_bytes += o.in_bytes;
        self.out_packets += o.out_packets;
        self.out_bytes += o.out_bytes;
        self.active_conns += o.active_conns;
        self.inactive_conns += o.inactive_conns;
        self.persistent_conns += o.persistent_conns;
    }
}

/// [`Counters`] of destination `addr`:`port` of `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestCounters {
    pub service: ServiceKey,
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub counters: Counters,
}

/// A configuration the chosen backend cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service}: {reason}")]
pub struct Unsupported {
    /// The service as the user wrote it, e.g. `virtual_server 192.0.2.100 80`.
    pub service: String,
    pub reason: String,
}
