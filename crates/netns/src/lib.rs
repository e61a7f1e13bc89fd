//! # vipd-netns — throw-away network topologies for vipd
//!
//! This crate builds small, disposable network topologies out of Linux
//! network namespaces and gives you the instruments to measure VRRP failover
//! in them. It is used by `vipd lab`, by vipd's integration tests and by its
//! benchmarks.
//!
//! Everything here needs `root` (or at least `CAP_SYS_ADMIN` + `CAP_NET_ADMIN`)
//! and `ip` from iproute2. Tests should start with [`skip_unless_root`].
//!
//! * [`Netns`] — a guard around one named namespace (`ip netns add`); run
//!   commands in it ([`Netns::exec`], [`Netns::ip`]), start long-lived
//!   processes ([`Netns::spawn`] → [`Proc`]) or run Rust code on a thread that
//!   has entered it ([`Netns::enter_thread`], [`Netns::run`]). Dropping it
//!   kills whatever still runs inside and deletes the namespace.
//! * [`Proc`] — a guard around a child process whose output goes to a log file;
//!   dropping it SIGKILLs the whole process group.
//! * [`Lan`] — a switch (bridge `br0`, multicast snooping and STP off), `n`
//!   routers `r1..rN` and one client, all on 192.0.2.0/24 and 2001:db8::/64.
//!   [`Lan::set_port`] pulls a router's cable.
//! * [`Prober`] — a 1 ms ICMP/ICMPv6 echo prober that measures outages.
//! * [`Capture`] — an AF_PACKET capture of VRRP adverts, ARP and neighbour
//!   advertisements, with timestamps on the same clock as the prober.
//! * [`routed`] — the routed (BGP) lab around a [`Lan`]: an upstream router and
//!   a client on another subnet, FRR on every router.
//! * [`Keepalived`] — starts keepalived 2.x as a peer in a namespace; [`Version`]
//!   picks Debian's 2.2.7 or the upstream 2.4.3 the CI builds.
//!
//! Only documentation address ranges are used, only inside namespaces this
//! crate created; every namespace name is unique per process and topology
//! (`vpd-<pid>-<n>-<role>`), so tests can run in parallel.
//!
//! ```no_run
//! use std::time::Duration;
//! use vipd_netns::{Lan, LanOptions, Prober, ProbeOptions};
//!
//! # fn main() -> anyhow::Result<()> {
//! let lan = Lan::new(2, LanOptions::default())?;
//! let prober = Prober::start(lan.client(), lan.router_addr_v4(1).into(), ProbeOptions::default())?;
//! std::thread::sleep(Duration::from_millis(200));
//! lan.set_port(1, false)?; // cable pull
//! std::thread::sleep(Duration::from_millis(200));
//! let report = prober.stop();
//! println!("sent {} received {} largest gap {:?}", report.sent, report.received, report.largest_gap());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod capture;
mod keepalived;
mod lan;
mod ns;
mod probe;
mod process;
pub mod routed;
mod util;
pub mod vm;

pub use capture::{Capture, Frame, FrameKind, Frames, MacAddr, VrrpHeader};
pub use keepalived::{
    config_test, host_interface, keepalived_243, simple_vrrp_config, start_keepalived, Keepalived,
    Version, KEEPALIVED_243_DEFAULT, KEEPALIVED_243_ENV,
};
pub use lan::{
    Lan, LanOptions, CLIENT_V4, CLIENT_V6, PREFIX_LEN_V4, PREFIX_LEN_V6, VIP_V4, VIP_V6,
};
pub use ns::{cleanup_stale, unique_prefix, Netns};
pub use probe::{ProbeOptions, ProbeReport, Prober, Reply};
pub use process::Proc;
pub use util::{has_address, is_root, skip_unless_root, wait_for, WorkDir};

/// Re-export of the signal type accepted by [`Proc::signal`].
pub use nix::sys::signal::Signal;
