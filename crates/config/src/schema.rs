//! The whole keepalived.conf 2.2.7 grammar as data: for every block, the keywords it
//! accepts, the shape of their arguments and whether they open a block or a list.
//!
//! `typed` maps the parts vipd runs; everything else is checked against this schema
//! (unknown keywords, argument counts, numbers and ranges, addresses, booleans) and,
//! where the runtime is missing, reported as "parsed but not active yet".

/// What may follow a keyword on its line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum A {
    /// Nothing.
    Flag,
    /// `[<BOOL>]`.
    Bool,
    /// One integer in the range.
    Int(i64, i64),
    /// Optional integer in the range.
    OptInt(i64, i64),
    /// Decimal seconds, at most the value.
    Secs(u64),
    /// Exactly one word.
    Str,
    /// One word, optionally more (a script with arguments, `[user [group]]`).
    Words,
    /// A script: one word or one quoted string (with its arguments inside the quotes).
    /// keepalived reads further words as `[username [groupname]]`, which vipd refuses
    /// by name rather than misreading them as arguments.
    Script,
    /// Anything, including nothing.
    Any,
    /// One IP address.
    Ip,
    /// First word one of the list, more words allowed after it.
    OneOf(&'static [&'static str]),
    /// `<INT> [reverse|noreverse]` in the range.
    Weight(i64, i64),
    /// Port 0..=65535.
    Port,
    /// One or more integers, each in the range (`vrrp_cpu_affinity 0 2`).
    Ints(i64, i64),
    /// `[all] SECONDS` (`garp_extra_if`): one integer in 0..=max and optionally `all`.
    AllSecs(i64),
    /// Decimal milliseconds with at most 3 decimals (keepalived's BFD intervals), in the
    /// range of whole milliseconds.
    Millis(u64, u64),
    /// Any number of words, each one of the list (`dynamic_interfaces [allow_if_changes]`).
    Options(&'static [&'static str]),
}

/// What follows `{`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body {
    /// The keyword takes no block.
    None,
    /// A block of keywords.
    Block(&'static [Kw]),
    /// A block whose lines are entries of the given kind.
    List(Entry),
    /// A block is optional (e.g. `notification_email`); entries of the given kind.
    OptList(Entry),
}

/// Kinds of list entries.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum Entry {
    /// Any words (names, e-mail addresses, interface names).
    Names,
    /// `ADDR[/MASK] [options]` as in `virtual_ipaddress`.
    Address,
    /// A route line (`virtual_routes`, `static_routes`).
    Route,
    /// A rule line (`virtual_rules`, `static_rules`).
    Rule,
    /// `NAME [weight N [reverse|noreverse]]` with the weight range.
    Tracked(i64, i64),
    /// `virtual_server_group` entries: `ADDR[-N] [PORT]` or `fwmark N [inet|inet6]`.
    VsgEntry,
    /// `interface_up_down_delays`: `IFNAME DOWN [UP]`.
    Delays,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Kw {
    pub name: &'static str,
    pub args: A,
    pub body: Body,
}

const fn k(name: &'static str, args: A) -> Kw {
    Kw {
        name,
        args,
        body: Body::None,
    }
}

const fn b(name: &'static str, args: A, block: &'static [Kw]) -> Kw {
    Kw {
        name,
        args,
        body: Body::Block(block),
    }
}

const fn l(name: &'static str, args: A, entry: Entry) -> Kw {
    Kw {
        name,
        args,
        body: Body::List(entry),
    }
}

pub(crate) fn find(kws: &'static [Kw], name: &str) -> Option<&'static Kw> {
    kws.iter().find(|k| k.name == name)
}

const SCHED: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos",
];
const METHOD: &[&str] = &["NAT", "DR", "TUN", "PMTUD"];
const FAMILY: &[&str] = &["inet", "inet6"];

/// Daemon options keepalived accepts both at top level and in `global_defs`.
macro_rules! daemon_opts {
    () => {
        [
            k("net_namespace", A::Str),
            k("net_namespace_ipvs", A::Any),
            k("namespace_with_ipsets", A::Flag),
            k("instance", A::Str),
            k("use_pid_dir", A::Flag),
            k("linkbeat_use_polling", A::Flag),
            k("child_wait_time", A::Int(0, 1_000_000)),
        ]
    };
}

const DAEMON_OPTS: [Kw; 7] = daemon_opts!();

/// The names of [`DAEMON_OPTS`]: keepalived 2.4.3 reads them only at top level.
pub(crate) const DAEMON_OPT_NAMES: [&str; 7] = [
    DAEMON_OPTS[0].name,
    DAEMON_OPTS[1].name,
    DAEMON_OPTS[2].name,
    DAEMON_OPTS[3].name,
    DAEMON_OPTS[4].name,
    DAEMON_OPTS[5].name,
    DAEMON_OPTS[6].name,
];

pub(crate) const GLOBAL_INACTIVE: &[Kw] = &[
    DAEMON_OPTS[0],
    DAEMON_OPTS[1],
    DAEMON_OPTS[2],
    DAEMON_OPTS[3],
    DAEMON_OPTS[4],
    DAEMON_OPTS[5],
    DAEMON_OPTS[6],
    k("bfd_cpu_affinity", A::Ints(0, 1023)),
    k("bfd_no_swap", A::Flag),
    k("bfd_priority", A::Int(-20, 19)),
    k("bfd_process_name", A::Str),
    k("bfd_rlimit_rttime", A::Int(1, 100_000_000)),
    k("bfd_rt_priority", A::Int(1, 99)),
    k("checker_cpu_affinity", A::Ints(0, 1023)),
    k("checker_log_all_failures", A::Bool),
    k("checker_no_swap", A::Flag),
    k("checker_priority", A::Int(-20, 19)),
    k("checker_process_name", A::Str),
    k("checker_rlimit_rttime", A::Int(1, 100_000_000)),
    k("checker_rt_priority", A::Int(1, 99)),
    k("config_save_dir", A::Str),
    k("data_use_instance", A::Bool),
    k("dbus_service_name", A::Str),
    k("dbus_no_interface_name", A::Str),
    k("default_interface", A::Str),
    k("disable_local_igmp", A::Flag),
    k("dynamic_interfaces", A::Options(&["allow_if_changes"])),
    k("enable_dbus", A::Flag),
    k("enable_script_security", A::Flag),
    k("enable_snmp_checker", A::Flag),
    k("enable_snmp_rfc", A::Flag),
    k("enable_snmp_rfcv2", A::Flag),
    k("enable_snmp_rfcv3", A::Flag),
    k("enable_snmp_vrrp", A::Flag),
    k("enable_snmp_keepalived", A::Flag),
    k("enable_traps", A::Flag),
    k("fifo_write_vrrp_states_on_reload", A::Flag),
    k("include_check", A::Any),
    k("log_unknown_vrids", A::Flag),
    k("lvs_flush", A::Flag),
    k("lvs_flush_on_stop", A::Any),
    k("lvs_netlink_cmd_rcv_bufs", A::Int(0, u32::MAX as i64)),
    k("lvs_netlink_cmd_rcv_bufs_force", A::Bool),
    k("lvs_netlink_monitor_rcv_bufs", A::Int(0, u32::MAX as i64)),
    k("lvs_netlink_monitor_rcv_bufs_force", A::Bool),
    k("lvs_notify_fifo", A::Words),
    k("lvs_notify_fifo_script", A::Words),
    k("lvs_sync_daemon", A::Words),
    k("lvs_timeouts", A::Words),
    k("max_auto_priority", A::OptInt(-1, 99)),
    k("min_auto_priority_delay", A::Int(1, 10_000_000)),
    k("nftables", A::Any),
    k("nftables_counters", A::Flag),
    k("nftables_ifindex", A::Flag),
    k("nftables_ipvs", A::Any),
    k("nftables_ipvs_priority", A::Int(-2147483648, 2147483647)),
    k("nftables_ipvs_start_fwmark", A::Int(1, u32::MAX as i64)),
    k("nftables_priority", A::Int(-2147483648, 2147483647)),
    k("no_checker_emails", A::Flag),
    k("no_email_faults", A::Flag),
    Kw {
        name: "notification_email",
        args: A::Any,
        body: Body::OptList(Entry::Names),
    },
    k("notification_email_from", A::Str),
    k("notify_fifo", A::Words),
    k("notify_fifo_script", A::Words),
    k("process_monitor_rcv_bufs", A::Int(0, u32::MAX as i64)),
    k("process_monitor_rcv_bufs_force", A::Bool),
    k("process_name", A::Str),
    k("process_names", A::Flag),
    k("random_seed", A::Int(0, u32::MAX as i64)),
    k("reload_check_config", A::Any),
    k("reload_file", A::Any),
    k("reload_repeat", A::Flag),
    k("reload_time_file", A::Str),
    k("rs_init_notifies", A::Flag),
    k("script_user", A::Words),
    k("shutdown_script", A::Words),
    k("shutdown_script_timeout", A::Int(1, 1000)),
    k("smtp_alert", A::Bool),
    k("smtp_alert_checker", A::Bool),
    k("smtp_alert_vrrp", A::Bool),
    k("smtp_connect_timeout", A::Int(1, 86400)),
    k("smtp_helo_name", A::Str),
    k("smtp_server", A::Words),
    k("snmp_socket", A::Str),
    k("snmp_vs_stats_update_interval", A::Secs(30)),
    k("snmp_rs_stats_update_interval", A::Secs(30)),
    k("startup_script", A::Words),
    k("startup_script_timeout", A::Int(1, 1000)),
    k("tmp_config_directory", A::Str),
    k("umask", A::Words),
    k("vmac_addr_prefix", A::Str),
    k("vmac_prefix", A::Str),
    k("vrrp_cpu_affinity", A::Ints(0, 1023)),
    k("vrrp_down_timer_adverts", A::Int(1, 100)),
    k("vrrp_garp_extra_if", A::AllSecs(86400)),
    k("vrrp_garp_extra_if_vmac", A::Any),
    k("vrrp_ipsets", A::Any),
    k("vrrp_iptables", A::Any),
    k("vrrp_mcast_group4", A::Ip),
    k("vrrp_mcast_group6", A::Ip),
    k("vrrp_netlink_cmd_rcv_bufs", A::Int(0, u32::MAX as i64)),
    k("vrrp_netlink_cmd_rcv_bufs_force", A::Bool),
    k("vrrp_netlink_monitor_rcv_bufs", A::Int(0, u32::MAX as i64)),
    k("vrrp_netlink_monitor_rcv_bufs_force", A::Bool),
    k("vrrp_no_swap", A::Flag),
    k("vrrp_notify_fifo", A::Words),
    k("vrrp_notify_fifo_script", A::Words),
    k("vrrp_notify_priority_changes", A::Bool),
    k("vrrp_priority", A::Int(-20, 19)),
    k("vrrp_process_name", A::Str),
    k("vrrp_rlimit_rttime", A::Int(1, 100_000_000)),
    k("vrrp_rx_bufs_multiplier", A::Int(1, 1_000_000)),
    k("vrrp_rx_bufs_policy", A::Any),
    k("vrrp_startup_delay", A::Secs(3600)),
    k("vrrp_strict", A::Flag),
    // keepalived 2.2.8 – 2.4.3.
    k("use_symlink_paths", A::Bool),
    k("vrrp_delay_after_boot", A::Secs(u32::MAX as u64)),
    k("vrrp_owner_ignore_adverts", A::Bool),
    k("v3_checksum_as_v2", A::Bool),
    k("json_version", A::Int(1, 2)),
    k("state_dump_file", A::Str),
    k("stats_dump_file", A::Str),
    k("json_dump_file", A::Str),
    k("state_file_location", A::Str),
    k("stats_file_location", A::Str),
    k("json_file_location", A::Str),
    k("iproute_etc_dir", A::Str),
    k("iproute_usr_dir", A::Str),
];

pub(crate) const TRACKERS: &[Kw] = &[
    l("track_interface", A::Flag, Entry::Tracked(-253, 253)),
    l("track_script", A::Flag, Entry::Tracked(-253, 253)),
    l("track_file", A::Flag, Entry::Tracked(-254, 254)),
    l("track_process", A::Flag, Entry::Tracked(-254, 254)),
    l("track_bfd", A::Flag, Entry::Tracked(-253, 253)),
];

/// Keywords listed as inactive above whose runtime exists now: no "parsed but not
/// active yet" warning for them (the typed model already carries them).
pub(crate) const RUNTIME_ACTIVE: &[&str] = &[
    "bfd_instance",
    // vipd extension (`@vipd bfd_takeover`).
    "bfd_takeover",
    // vipd extension (`@vipd release_drain`).
    "release_drain",
    // vipd extension (`@vipd standby_metric`).
    "standby_metric",
    "track_bfd",
    "bfd_priority",
    "bfd_rt_priority",
    "bfd_no_swap",
    "vrrp_script",
    "track_interface",
    "track_script",
    "dont_track_primary",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "enable_script_security",
    "script_user",
    "notify_fifo",
    "vrrp_notify_fifo",
    "track_file",
    "vrrp_track_file",
    "track_process",
    "vrrp_track_process",
    "vrrp_sync_group",
    "virtual_ipaddress_excluded",
    "static_ipaddress",
    "virtual_routes",
    "virtual_rules",
    "static_routes",
    "static_rules",
    "use_vmac",
    "use_ipvlan",
    "vmac_xmit_base",
    "virtual_server",
    "virtual_server_group",
    "SSL",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
    "no_checker_emails",
    "router_id",
    "vrrp_strict",
    "strict_mode",
    "no_accept",
    "mcast_dst_ip",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_priority",
    "checker_priority",
    "checker_rt_priority",
    "vrrp_no_swap",
    "checker_no_swap",
    "umask",
    "no_virtual_ipaddress",
    "native_ipv6",
    "owner_ignore_adverts",
    "vrrp_owner_ignore_adverts",
    "timer_expired_backup",
    "thread_timer_expired",
    "v3_checksum_as_v2",
    "default_interface",
    "vrrp_startup_delay",
    "vrrp_delay_after_boot",
    "vrrp_down_timer_adverts",
    "checker_log_all_failures",
    "use_symlink_paths",
    // keepalived 2.4 ignores them and uses nftables; so does vipd (with a warning).
    "vrrp_iptables",
    "vrrp_ipsets",
    "notify_fifo_script",
    "vrrp_notify_fifo_script",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "notify_master_rx_lower_pri",
    "state_dump_file",
    "stats_dump_file",
    "json_dump_file",
    "state_file_location",
    "stats_file_location",
    "json_file_location",
    "json_version",
    "data_use_instance",
    "config_save_dir",
    // Read when the config is loaded: names in routes and rules (crate::iproute).
    "iproute_etc_dir",
    "iproute_usr_dir",
    // Applied to vipd's protocol / checker thread (vipd_exec::tuning).
    "vrrp_cpu_affinity",
    "checker_cpu_affinity",
    "bfd_cpu_affinity",
    "vrrp_rlimit_rttime",
    "checker_rlimit_rttime",
    "bfd_rlimit_rttime",
    "max_auto_priority",
    "min_auto_priority_delay",
    // MASTER_PRIORITY / BACKUP_PRIORITY lines on the notify FIFOs.
    "vrrp_notify_priority_changes",
    "notify_priority_changes",
    // Run by `vipd run` before it starts anything / after it stopped everything.
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
    // net.ipv4.conf.IFACE.promote_secondaries while vipd runs.
    "promote_secondaries",
    // A permanent FAULT for an instance without unicast peers.
    "unicast_fault_no_peer",
    "fifo_write_vrrp_states_on_reload",
    "notify_deleted",
    "vmac_prefix",
    "disable_local_igmp",
    // Read by the preprocessor (crate::preprocess) for the includes that follow.
    "include_check",
    "reload_file",
    "rs_init_notifies",
    // Periodic GARP / NA on the VIPs' other interfaces while MASTER (the runtime).
    "garp_extra_if",
    "vrrp_garp_extra_if",
    // `vipd run` enters the named network namespace before anything else.
    "net_namespace",
    // Names the dump files with data_use_instance (vipd's dumps.rs); see the docs for
    // the pid file.
    "instance",
    "reload_time_file",
    "reload_repeat",
    // keepalived's org.keepalived.Vrrp1 DBus interface (vipd's dbus module).
    "enable_dbus",
    "dbus_service_name",
    "dbus_no_interface_name",
    // SNMP over AgentX (vipd's snmp module): KEEPALIVED-MIB's VRRP and checker parts,
    // RFC 2787, RFC 6527.
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_traps",
    "snmp_socket",
    // Traffic counters' refresh (SNMP and `vipd status`).
    "snmp_vs_stats_update_interval",
    "snmp_rs_stats_update_interval",
    // IPVS: the kernel's sync daemon; nftables: conntrackd (vipd's syncd module).
    "lvs_sync_daemon",
    "lvs_sync_daemon_interface",
    // The no_accept drop tables' name, hook priority and counters (vipd_lb::nft::no_accept).
    "nftables",
    "nftables_priority",
    "nftables_counters",
    // The load balancer's kernel table (vipd_lb::ipvs / vipd_lb::nft; vipd's balancer.rs):
    // flushed at start / stop, IPVS connection timeouts (nftables: the director's
    // conntrack / DR flow timeouts), and the network namespace it lives in.
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_timeouts",
    "net_namespace_ipvs",
    // The VRRPv3/IPv4 checksum with the multicast group (vipd_vrrp::wire ChecksumVariant).
    "old_unicast_checksum",
    // The source address as a tracked object (vipd_linux::tracker, polled).
    "track_src_ip",
    // GARP / NA pacing per group of interfaces (vipd_linux::pacing).
    "garp_group",
    // Instances that track the interfaces of static addresses / routes / rules.
    "track_group",
    // Missing interfaces at start-up: FAULT / left out until they appear, then a
    // reload (vipd_linux::plan::missing_interfaces, the tracker's Appeared notice).
    "dynamic_interfaces",
    // A VMAC per other interface / family of the VIPs (vipd_linux::plan::address_vmac).
    "use_vmac_addr",
    "vmac_addr_prefix",
    // The VRRP socket of a unicast instance without `interface` bound to the VRF device.
    "vrf",
];

/// Keywords whose purpose vipd's design already serves, so there is nothing to act on:
/// accepted (no "parsed but not active yet"), and `vipd check-config` says why in a
/// warning at their line (lints.rs). Each reason names what vipd does instead.
pub(crate) const COVERED_BY_DESIGN: &[(&str, &str)] = &[
    ("vrrp_netlink_cmd_rcv_bufs", NETLINK_CMD),
    ("vrrp_netlink_cmd_rcv_bufs_force", NETLINK_CMD),
    ("lvs_netlink_cmd_rcv_bufs", NETLINK_CMD),
    ("lvs_netlink_cmd_rcv_bufs_force", NETLINK_CMD),
    ("vrrp_netlink_monitor_rcv_bufs", NETLINK_MONITOR),
    ("vrrp_netlink_monitor_rcv_bufs_force", NETLINK_MONITOR),
    ("lvs_netlink_monitor_rcv_bufs", LVS_MONITOR),
    ("lvs_netlink_monitor_rcv_bufs_force", LVS_MONITOR),
    ("process_monitor_rcv_bufs", PROCESS_MONITOR),
    ("process_monitor_rcv_bufs_force", PROCESS_MONITOR),
    ("vrrp_rx_bufs_policy", RX_BUFS),
    ("vrrp_rx_bufs_multiplier", RX_BUFS),
    ("kernel_rx_buf_size", RX_BUFS),
    ("linkbeat_use_polling", LINKBEAT),
    ("linkbeat_interfaces", LINKBEAT),
    ("process_names", ONE_PROCESS),
    ("process_name", ONE_PROCESS),
    ("vrrp_process_name", ONE_PROCESS),
    ("checker_process_name", ONE_PROCESS),
    ("bfd_process_name", ONE_PROCESS),
    ("child_wait_time", "vipd's VRRP and checkers are threads of one process, so at shutdown there are no child processes to wait for"),
    ("tmp_config_directory", "vipd has no child processes that re-read the configuration, so it keeps no temporary copy of it"),
    ("random_seed", "vipd draws no random numbers, so there is nothing to seed"),
    ("reload_check_config", "vipd validates every new configuration completely before a reload and keeps running the old one if it has errors (they are logged, and `vipd reload` prints them; no LOG_FILE is written)"),
    ("debug", "keepalived 2.4.3 only stores an instance's `debug` level and prints it in the SIGUSR1 data file; it changes nothing it does. vipd's log detail is `VIPD_LOG` (e.g. `VIPD_LOG=debug`)"),
    ("use_pid_dir", "vipd writes its pid file where `vipd run --pid-file` says (one per daemon: give each its own, e.g. under /run/vipd/)"),
    ("namespace_with_ipsets", "vipd uses no ipsets: its drop rules are nftables tables, which every kernel vipd supports keeps per network namespace"),
    ("garp_extra_if_vmac", NOT_A_KEYWORD),
    ("vrrp_garp_extra_if_vmac", NOT_A_KEYWORD),
    ("nftables_ifindex", "vipd's no_accept drop sets hold addresses only, not (interface, address) pairs, so there is no interface to key by index or name (an IPv6 link-local VIP under no_accept is dropped on every interface, not only its instance's)"),
    ("nftables_ipvs", NFT_IPVS),
    ("nftables_ipvs_priority", NFT_IPVS),
    ("nftables_ipvs_start_fwmark", NFT_IPVS),
    ("log_unknown_vrids", "vipd counts adverts for VRIDs it has no instance for in the metric `vipd_socket_dropped_total{reason=\"unknown_vrid\"}` (`vipd run --metrics ADDR`) instead of logging each one"),
];

const NFT_IPVS: &str = "vipd marks no packets for IPVS: with the IPVS backend each address/port of a virtual_server_group is its own IPVS service (keepalived's way without nftables_ipvs: the same real servers get the traffic, but `ipvsadm -Ln` lists every group entry instead of one fwmark service, and persistence holds per entry, not across the group); vipd's nftables backend needs no fwmarks";
const NOT_A_KEYWORD: &str = "keepalived 2.2.7 and 2.4.3 do not know it (only a comment in their man page names it): they ignore the line as an unknown keyword, and so does vipd; `garp_extra_if` is the keyword";
const NETLINK_CMD: &str = "vipd waits for the answer to each netlink request before sending the next, so its command sockets never queue more than one answer";
const NETLINK_MONITOR: &str = "vipd's link watcher re-reads every interface's state when the kernel reports lost events (ENOBUFS), so no event is missed whatever the buffer size";
const LVS_MONITOR: &str = "vipd's checkers and load balancer follow no netlink events (the IPVS table is re-read from the kernel whenever it may be stale)";
const PROCESS_MONITOR: &str = "vipd's track_process reads /proc every 500 ms instead of listening to the process connector, so there is no event socket to size";
const RX_BUFS: &str = "vipd's VRRP sockets have a fixed 1 MiB receive buffer, drained by the protocol thread as packets arrive";
const LINKBEAT: &str = "vipd follows the kernel's link events and the interfaces' operstate; it has no MII/ethtool polling";
const ONE_PROCESS: &str =
    "vipd is one process (`vipd`) whose parts are threads named `vipd-vrrp`, `vipd-check`, ...";

/// Whether a keyword from the inactive lists acts (or needs nothing) at runtime.
pub(crate) fn is_active(name: &str) -> bool {
    RUNTIME_ACTIVE.contains(&name) || COVERED_BY_DESIGN.iter().any(|(k, _)| *k == name)
}

/// Keywords inside `virtual_server` (and its real servers and checkers) that vipd parses
/// but whose runtime does not exist: reported as inactive even though the block is
/// active. Checker options the checkers cannot honour are refused by the checkers
/// themselves with their line.
pub(crate) const LB_INACTIVE: &[(&str, &str)] = &[
    // (parent block or "*" for anywhere, keyword); none left.
];

pub(crate) const INSTANCE_INACTIVE: &[Kw] = &[
    k("vrf", A::Str),
    k("use_vmac", A::Any),
    k("use_vmac_addr", A::Flag),
    k("vmac_xmit_base", A::Flag),
    k("use_ipvlan", A::Any),
    k("native_ipv6", A::Flag),
    k("dont_track_primary", A::Flag),
    TRACKERS[0],
    TRACKERS[1],
    TRACKERS[2],
    TRACKERS[3],
    TRACKERS[4],
    k("mcast_dst_ip", A::Ip),
    k("track_src_ip", A::Flag),
    k("unicast_fault_no_peer", A::Flag),
    k("old_unicast_checksum", A::Any),
    k("garp_extra_if", A::AllSecs(86400)),
    k("garp_extra_if_vmac", A::Any),
    l("virtual_ipaddress_excluded", A::Flag, Entry::Address),
    k("promote_secondaries", A::Flag),
    l("virtual_routes", A::Flag, Entry::Route),
    l("virtual_rules", A::Flag, Entry::Rule),
    k("strict_mode", A::Bool),
    k("debug", A::OptInt(0, 4)),
    k("notify_master", A::Script),
    k("notify_backup", A::Script),
    k("notify_fault", A::Script),
    k("notify_stop", A::Script),
    k("notify_deleted", A::Any),
    k("notify", A::Script),
    k("notify_master_rx_lower_pri", A::Script),
    k("notify_priority_changes", A::Bool),
    k("smtp_alert", A::Bool),
    k("kernel_rx_buf_size", A::Int(0, u32::MAX as i64)),
    k("linkbeat_use_polling", A::Flag),
    k("lvs_sync_daemon_interface", A::Str),
    k("no_accept", A::Flag),
    // keepalived 2.2.8 – 2.4.3.
    k("no_virtual_ipaddress", A::Flag),
    k("owner_ignore_adverts", A::Bool),
    k("timer_expired_backup", A::OptInt(1, 254)),
    // The spelling of keepalived's release notes, accepted by 2.4.3 too.
    k("thread_timer_expired", A::OptInt(1, 254)),
    // vipd extension, written `@vipd bfd_takeover NAME ...` so that keepalived skips it.
    k("bfd_takeover", A::Words),
    // vipd extension, written `@vipd release_drain MS`: after a graceful release the
    // VIPs stay announced MS, then are withdrawn but still answered MS more (BGP mode).
    k("release_drain", A::Int(1, 10_000)),
    // vipd extension, written `@vipd standby_metric BASE`: while BACKUP the instance's
    // `virtual_routes` are installed too, with metric BASE + 255 - priority (BGP anycast).
    k("standby_metric", A::Int(0, 1_000_000_000)),
];

const SYNC_GROUP: &[Kw] = &[
    l("group", A::Flag, Entry::Names),
    TRACKERS[0],
    TRACKERS[1],
    TRACKERS[2],
    TRACKERS[3],
    TRACKERS[4],
    k("notify_master", A::Script),
    k("notify_backup", A::Script),
    k("notify_fault", A::Script),
    k("notify_stop", A::Script),
    k("notify_deleted", A::Any),
    k("notify", A::Script),
    k("notify_priority_changes", A::Bool),
    k("smtp_alert", A::Bool),
    k("global_tracking", A::Flag),
    k("sync_group_tracking_weight", A::Flag),
];

pub(crate) const VRRP_SCRIPT: &[Kw] = &[
    k("script", A::Words),
    k("interval", A::Secs(u32::MAX as u64)),
    k("timeout", A::Secs(u32::MAX as u64)),
    k("weight", A::Weight(-253, 253)),
    k("rise", A::Int(1, u32::MAX as i64)),
    k("fall", A::Int(1, u32::MAX as i64)),
    k("user", A::Words),
    k("init_fail", A::Flag),
];

pub(crate) const TRACK_FILE: &[Kw] = &[
    k("file", A::Str),
    k("weight", A::Weight(-2147483647, 2147483647)),
    k("init_file", A::Any),
];

pub(crate) const TRACK_PROCESS: &[Kw] = &[
    k("process", A::Words),
    k("param_match", A::OneOf(&["initial", "partial"])),
    k("weight", A::Weight(-254, 254)),
    k("quorum", A::Int(0, 65535)),
    k("quorum_max", A::Int(0, 65535)),
    k("fork_delay", A::Secs(3600)),
    k("terminate_delay", A::Secs(3600)),
    k("delay", A::Secs(3600)),
    k("full_command", A::Flag),
];

/// keepalived's `BFD_MINRX_MAX` etc.: `UINT32_MAX / 1000` milliseconds.
pub(crate) const BFD_INTERVAL_MAX_MS: u64 = u32::MAX as u64 / 1000;

pub(crate) const BFD_INSTANCE: &[Kw] = &[
    k("neighbor_ip", A::Ip),
    k("neighbour_ip", A::Ip),
    k("source_ip", A::Ip),
    k("min_rx", A::Millis(1, BFD_INTERVAL_MAX_MS)),
    k("min_tx", A::Millis(1, BFD_INTERVAL_MAX_MS)),
    k("idle_tx", A::Millis(1000, BFD_INTERVAL_MAX_MS)),
    k("multiplier", A::Int(1, 255)),
    k("passive", A::Flag),
    k("ttl", A::Int(1, 255)),
    k("hoplimit", A::Int(1, 255)),
    // -1 is 255: no hop count check.
    k("max_hops", A::Int(-1, 255)),
    // keepalived 2.4 (RFC 5883, port 4784).
    k("multihop", A::Bool),
    k("weight", A::Weight(-253, 253)),
    k("vrrp", A::Flag),
    k("checker", A::Flag),
];

const TRACK_GROUP: &[Kw] = &[l("group", A::Flag, Entry::Names)];

const GARP_GROUP: &[Kw] = &[
    // keepalived takes up to UINT_MAX microseconds here (about 71 minutes).
    k("garp_interval", A::Secs(4294)),
    k("gna_interval", A::Secs(4294)),
    k("interface", A::Str),
    l("interfaces", A::Flag, Entry::Names),
];

const SSL: &[Kw] = &[
    k("password", A::Str),
    k("ca", A::Str),
    k("certificate", A::Str),
    k("key", A::Str),
];

const URL: &[Kw] = &[
    k("path", A::Str),
    k("digest", A::Str),
    k("status_code", A::Words),
    k("virtualhost", A::Str),
    k("regex", A::Words),
    k("regex_no_match", A::Flag),
    k("regex_options", A::Words),
    k("regex_stack", A::Words),
    k("regex_min_offset", A::Int(0, u32::MAX as i64)),
    k("regex_max_offset", A::Int(0, u32::MAX as i64)),
    k("tls_compliant", A::Bool),
];

/// Options every checker accepts.
macro_rules! checker_common {
    ($($extra:expr),* $(,)?) => {
        &[
            k("connect_ip", A::Ip),
            k("connect_port", A::Port),
            k("bindto", A::Ip),
            k("bind_if", A::Str),
            k("bind_port", A::Port),
            k("fwmark", A::Int(0, u32::MAX as i64)),
            k("alpha", A::Bool),
            k("connect_timeout", A::Secs(u32::MAX as u64)),
            k("retry", A::Int(0, u32::MAX as i64)),
            k("nb_get_retry", A::Int(0, u32::MAX as i64)),
            k("delay_before_retry", A::Secs(u32::MAX as u64)),
            k("warmup", A::Secs(u32::MAX as u64)),
            k("delay_loop", A::Secs(u32::MAX as u64)),
            k("log_all_failures", A::Bool),
            $($extra),*
        ]
    };
}

const HTTP_GET: &[Kw] = checker_common!(
    k("http_protocol", A::OneOf(&["1.0", "1.0C", "1.1"])),
    k("fast_recovery", A::Bool),
    k("virtualhost", A::Str),
    b("url", A::Flag, URL),
);
const SSL_GET: &[Kw] = checker_common!(
    k("http_protocol", A::OneOf(&["1.0", "1.0C", "1.1"])),
    k("fast_recovery", A::Bool),
    k("virtualhost", A::Str),
    k("enable_sni", A::Bool),
    k("tls_compliant", A::Bool),
    b("url", A::Flag, URL),
);
const TCP_CHECK: &[Kw] = checker_common!();
const PING_CHECK: &[Kw] = checker_common!();
const SMTP_CHECK: &[Kw] = checker_common!(
    k("helo_name", A::Str),
    // Old syntax: one `host { ... }` block per server to try.
    b("host", A::Flag, checker_common!()),
);
const DNS_CHECK: &[Kw] = checker_common!(
    k(
        "type",
        A::OneOf(&["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"])
    ),
    k("name", A::Str),
);
const MISC_CHECK: &[Kw] = checker_common!(
    k("misc_path", A::Words),
    k("misc_timeout", A::Int(0, u32::MAX as i64)),
    k("misc_dynamic", A::Flag),
    k("user", A::Words),
);
const UDP_CHECK: &[Kw] = checker_common!(
    k("payload", A::Str),
    k("require_reply", A::Any),
    k("min_reply_length", A::Int(0, 65535)),
    k("max_reply_length", A::Int(0, 65535)),
);
const FILE_CHECK: &[Kw] = &[
    k("track_file", A::Str),
    k("dynamic", A::Flag),
    k("weight", A::Weight(-2147483647, 2147483647)),
];
const BFD_CHECK: &[Kw] = &[
    k("name", A::Str),
    k("alpha", A::Bool),
    k("weight", A::Weight(-253, 253)),
];

pub(crate) const CHECKERS: &[&str] = &[
    "HTTP_GET",
    "SSL_GET",
    "TCP_CHECK",
    "UDP_CHECK",
    "DNS_CHECK",
    "SMTP_CHECK",
    "MISC_CHECK",
    "PING_CHECK",
    "ICMP_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
];

macro_rules! server_common {
    ($($extra:expr),* $(,)?) => {
        &[
            k("lvs_method", A::OneOf(METHOD)),
            k("lb_kind", A::OneOf(METHOD)),
            k("connect_timeout", A::Secs(u32::MAX as u64)),
            k("retry", A::Int(0, u32::MAX as i64)),
            k("nb_get_retry", A::Int(0, u32::MAX as i64)),
            k("delay_before_retry", A::Secs(u32::MAX as u64)),
            k("warmup", A::Secs(u32::MAX as u64)),
            k("delay_loop", A::Secs(u32::MAX as u64)),
            k("inhibit_on_failure", A::Bool),
            k("smtp_alert", A::Bool),
            k("virtualhost", A::Str),
            k("snmp_name", A::Str),
            $($extra),*
        ]
    };
}

pub(crate) const REAL_SERVER: &[Kw] = server_common!(
    k("weight", A::Int(-2147483647, 2147483647)),
    k("notify_up", A::Script),
    k("notify_down", A::Script),
    k("uthreshold", A::Int(0, u32::MAX as i64)),
    k("lthreshold", A::Int(0, u32::MAX as i64)),
    k("alpha", A::Bool),
    k("omega", A::Bool),
    b("HTTP_GET", A::Flag, HTTP_GET),
    b("SSL_GET", A::Flag, SSL_GET),
    b("TCP_CHECK", A::Flag, TCP_CHECK),
    b("UDP_CHECK", A::Flag, UDP_CHECK),
    b("DNS_CHECK", A::Flag, DNS_CHECK),
    b("SMTP_CHECK", A::Flag, SMTP_CHECK),
    b("MISC_CHECK", A::Flag, MISC_CHECK),
    b("PING_CHECK", A::Flag, PING_CHECK),
    b("ICMP_CHECK", A::Flag, PING_CHECK),
    b("FILE_CHECK", A::Flag, FILE_CHECK),
    b("BFD_CHECK", A::Flag, BFD_CHECK),
);

pub(crate) const VIRTUAL_SERVER: &[Kw] = server_common!(
    k("lvs_sched", A::OneOf(SCHED)),
    k("lb_algo", A::OneOf(SCHED)),
    k("flag-1", A::Flag),
    k("flag-2", A::Flag),
    k("flag-3", A::Flag),
    k("sh-port", A::Flag),
    k("sh-fallback", A::Flag),
    k("mh-port", A::Flag),
    k("mh-fallback", A::Flag),
    k("ops", A::Flag),
    k("persistence_engine", A::Str),
    k("persistence_timeout", A::OptInt(1, u32::MAX as i64)),
    k("persistence_granularity", A::Str),
    k(
        "protocol",
        A::OneOf(&["TCP", "UDP", "SCTP", "tcp", "udp", "sctp"])
    ),
    k("ha_suspend", A::Flag),
    k("alpha", A::Flag),
    k("omega", A::Flag),
    k("quorum", A::Int(1, u32::MAX as i64)),
    k("hysteresis", A::Int(0, u32::MAX as i64)),
    k("quorum_up", A::Script),
    k("quorum_down", A::Script),
    k("ip_family", A::OneOf(FAMILY)),
    k("sorry_server", A::Words),
    k("sorry_server_inhibit", A::Bool),
    k("sorry_server_lvs_method", A::OneOf(METHOD)),
    k("sorry_server_lb_kind", A::OneOf(METHOD)),
    b("real_server", A::Words, REAL_SERVER),
);

/// Top-level blocks and options.
pub(crate) const TOP: &[Kw] = &[
    DAEMON_OPTS[0],
    DAEMON_OPTS[1],
    DAEMON_OPTS[2],
    DAEMON_OPTS[3],
    DAEMON_OPTS[4],
    DAEMON_OPTS[5],
    DAEMON_OPTS[6],
    l("linkbeat_interfaces", A::Flag, Entry::Names),
    b("track_group", A::Str, TRACK_GROUP),
    l("static_ipaddress", A::Flag, Entry::Address),
    l("static_routes", A::Flag, Entry::Route),
    l("static_rules", A::Flag, Entry::Rule),
    b("vrrp_script", A::Str, VRRP_SCRIPT),
    b("track_file", A::Str, TRACK_FILE),
    b("vrrp_track_file", A::Str, TRACK_FILE),
    b("track_process", A::Str, TRACK_PROCESS),
    b("vrrp_track_process", A::Str, TRACK_PROCESS),
    b("bfd_instance", A::Str, BFD_INSTANCE),
    b("vrrp_sync_group", A::Str, SYNC_GROUP),
    b("garp_group", A::Flag, GARP_GROUP),
    l("interface_up_down_delays", A::Flag, Entry::Delays),
    l("virtual_server_group", A::Str, Entry::VsgEntry),
    b("virtual_server", A::Words, VIRTUAL_SERVER),
    b("SSL", A::Flag, SSL),
];

/// Names of the keywords of a block, for "did you mean".
pub(crate) fn names(kws: &'static [Kw]) -> impl Iterator<Item = &'static str> + Clone {
    kws.iter().map(|k| k.name)
}

/// Options after the address in a `virtual_ipaddress`/`static_ipaddress` entry.
pub(crate) const ADDRESS_OPTIONS: &[(&str, bool)] = &[
    // (option, takes a value)
    ("brd", true),
    ("dev", true),
    ("scope", true),
    ("label", true),
    ("peer", true),
    ("home", false),
    ("-nodad", false),
    ("nodad", false),
    ("mngtmpaddr", false),
    ("noprefixroute", false),
    ("autojoin", false),
    ("no_track", false),
    ("preferred_lft", true),
    ("track_group", true),
    ("use_vmac", false),
];

/// Route options: (option, number of values).
pub(crate) const ROUTE_OPTIONS: &[(&str, usize)] = &[
    ("src", 1),
    ("via", 1),
    ("gw", 1),
    ("or", 1),
    ("dev", 1),
    ("table", 1),
    ("tos", 1),
    ("dsfield", 1),
    ("protocol", 1),
    ("scope", 1),
    ("metric", 1),
    ("priority", 1),
    ("preference", 1),
    ("mtu", 1),
    ("hoplimit", 1),
    ("advmss", 1),
    ("rtt", 1),
    ("rttvar", 1),
    ("reordering", 1),
    ("window", 1),
    ("cwnd", 1),
    ("ssthresh", 1),
    ("lock", 0),
    ("realms", 1),
    ("rto_min", 1),
    ("initcwnd", 1),
    ("initrwnd", 1),
    ("features", 1),
    ("quickack", 1),
    ("congctl", 1),
    ("pref", 1),
    ("fastopen_no_cookie", 1),
    ("ttl-propagate", 1),
    ("vrf", 1),
    ("nexthop", 0),
    ("weight", 1),
    ("onlink", 0),
    ("pervasive", 0),
    ("encap", 0),
    ("append", 0),
    ("no_track", 0),
    ("track_group", 1),
    ("type", 1),
    ("blackhole", 0),
    ("unreachable", 0),
    ("prohibit", 0),
    ("throw", 0),
    ("local", 0),
    ("broadcast", 0),
    ("unicast", 0),
    ("multicast", 0),
    ("nat", 0),
    ("anycast", 0),
    ("to", 1),
];

pub(crate) const RULE_OPTIONS: &[(&str, usize)] = &[
    ("from", 1),
    ("to", 1),
    ("table", 1),
    ("lookup", 1),
    ("iif", 1),
    ("oif", 1),
    ("tos", 1),
    ("dsfield", 1),
    ("fwmark", 1),
    ("preference", 1),
    ("priority", 1),
    ("pref", 1),
    ("realms", 1),
    ("goto", 1),
    ("uidrange", 1),
    ("l3mdev", 0),
    ("protocol", 1),
    ("ip_proto", 1),
    ("ipproto", 1),
    ("sport", 1),
    ("dport", 1),
    ("suppress_prefixlength", 1),
    ("suppress_ifgroup", 1),
    ("no_track", 0),
    ("track_group", 1),
    ("not", 0),
    ("nop", 0),
    ("blackhole", 0),
    ("prohibit", 0),
    ("unreachable", 0),
    ("type", 1),
    ("all", 0),
    ("inet", 0),
    ("inet6", 0),
];
