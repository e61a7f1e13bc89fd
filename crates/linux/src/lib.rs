//! vipd's Linux runtime: the I/O around the sans-IO engine of `vipd-vrrp`.
//!
//! * [`plan`]: keepalived.conf model + host facts → what to run (pure).
//! * [`links`]: the VMAC links a plan asks for.
//! * [`runtime`]: the protocol thread (engine, VRRP sockets, GARP/NA).
//! * [`addresses`]: the thread that owns VIPs in the kernel (rtnetlink).
//! * [`control`]: the control socket that serves status to `vipd status`.

pub mod addresses;
pub mod control;
pub mod iface;
pub mod links;
pub mod linkwatch;
pub mod mail;
pub mod metrics;
pub mod netlink;
pub mod notifier;
pub mod packet;
pub mod plan;
pub mod realserver;
pub mod routes;
pub mod runtime;
pub mod socket;
pub mod status;
pub mod track;
pub mod tracker;

/// Re-exported for the daemon's READY/RELOADING/STOPPING/WATCHDOG notifications.
pub use sd_notify;
