//! The backend-neutral forwarding table: what the kernel should do with traffic to each
//! virtual service. Built by [`crate::desired`], consumed by the backends.

use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
    /// AF_INET / AF_INET6.
    pub fn af(self) -> u16 {
        match self {
            Family::V4 => libc::AF_INET as u16,
            Family::V6 => libc::AF_INET6 as u16,
        }
    }
}

/// `lb_kind` / `lvs_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forward {
    /// Masquerading: the director rewrites the destination (DNAT) and sees replies.
    Nat,
    /// Direct routing: the frame is re-addressed to the real server's MAC; the real
    /// server holds the VIP on a non-ARPing interface and answers the client itself.
    Dr,
    /// IP-in-IP tunnelling.
    Tun,
}

/// `lb_algo` / `lvs_sched`: IPVS scheduler names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sched {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Fo,
    Ovf,
    Mh,
    Twos,
}

impl Sched {
    pub const ALL: [Sched; 14] = [
        Sched::Rr,
        Sched::Wrr,
        Sched::Lc,
        Sched::Wlc,
        Sched::Lblc,
        Sched::Lblcr,
        Sched::Dh,
        Sched::Sh,
        Sched::Sed,
        Sched::Nq,
        Sched::Fo,
        Sched::Ovf,
        Sched::Mh,
        Sched::Twos,
    ];
    /// The kernel's scheduler name (what IPVS expects in IPVS_SVC_ATTR_SCHED_NAME).
    pub fn name(self) -> &'static str {
        match self {
            Sched::Rr => "rr",
            Sched::Wrr => "wrr",
            Sched::Lc => "lc",
            Sched::Wlc => "wlc",
            Sched::Lblc => "lblc",
            Sched::Lblcr => "lblcr",
            Sched::Dh => "dh",
            Sched::Sh => "sh",
            Sched::Sed => "sed",
            Sched::Nq => "nq",
            Sched::Fo => "fo",
            Sched::Ovf => "ovf",
            Sched::Mh => "mh",
            Sched::Twos => "twos",
        }
    }
    pub fn parse(s: &str) -> Option<Sched> {
        Sched::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// What traffic a service matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// `virtual_server ADDR PORT` (port 0 = all ports, keepalived's "persistent port 0").
    Addr {
        addr: IpAddr,
        port: u16,
        proto: Proto,
    },
    /// `virtual_server fwmark N`.
    Fwmark { mark: u32, family: Family },
}

impl ServiceKey {
    /// The service as a keepalived.conf line names it, for messages:
    /// `virtual_server 192.0.2.100 80`, `... (protocol UDP)`, `virtual_server fwmark 7`.
    pub fn config_name(&self) -> String {
        match self {
            ServiceKey::Addr { addr, port, proto } => {
                let p = match proto {
                    Proto::Tcp => "",
                    Proto::Udp => " (protocol UDP)",
                    Proto::Sctp => " (protocol SCTP)",
                };
                format!("virtual_server {addr} {port}{p}")
            }
            ServiceKey::Fwmark { mark, family } => match family {
                Family::V4 => format!("virtual_server fwmark {mark}"),
                Family::V6 => format!("virtual_server fwmark {mark} (inet6)"),
            },
        }
    }

    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Addr { addr, port, proto } => {
                let p = match proto {
                    Proto::Tcp => "tcp",
                    Proto::Udp => "udp",
                    Proto::Sctp => "sctp",
                };
                match addr {
                    IpAddr::V4(a) => write!(f, "{p} {a}:{port}"),
                    IpAddr::V6(a) => write!(f, "{p} [{a}]:{port}"),
                }
            }
            ServiceKey::Fwmark { mark, .. } => write!(f, "fwmark {mark}"),
        }
    }
}

/// Scheduler flags (`sh-port`, `sh-fallback`, `mh-port`, `mh-fallback`, `flag-3`, `ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SchedFlags {
    /// `sh-fallback` / `mh-fallback`.
    pub fallback: bool,
    /// `sh-port` / `mh-port`: hash the source port too.
    pub port: bool,
    /// `flag-3`: IPVS' third scheduler flag (`IP_VS_SVC_F_SCHED3`), which no scheduler
    /// of the kernel reads today; passed through for out-of-tree schedulers.
    pub sched3: bool,
    /// `ops`: one-packet scheduling (UDP).
    pub one_packet: bool,
}

/// `persistence_timeout` (and `persistence_granularity` as a netmask prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Persistence {
    pub timeout: Duration,
    /// Prefix length of the client address that identifies a client (32 / 128 = host).
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    pub key: ServiceKey,
    pub sched: Sched,
    pub flags: SchedFlags,
    /// Default forwarding method for destinations that don't set their own.
    pub forward: Forward,
    pub persistence: Option<Persistence>,
    /// `persistence_engine NAME` (IPVS' SIP Call-ID persistence is `sip`).
    pub pe_name: Option<String>,
    /// Interface the service's traffic arrives on and leaves by, for direct routing
    /// (the interface that holds the VIP). Filled in by the runtime.
    pub device: Option<String>,
    /// Destinations in configuration order. Weight 0 = kept but given no new traffic
    /// (inhibit_on_failure, or a `weight 0` server).
    pub dests: Vec<Dest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dest {
    pub addr: IpAddr,
    /// Destination port (NAT may change it; DR/TUN keep the service's).
    pub port: u16,
    pub weight: u32,
    pub forward: Forward,
    /// `uthreshold` (0 = none).
    pub upper_threshold: u32,
    /// `lthreshold` (0 = none).
    pub lower_threshold: u32,
    /// Link-layer address of the destination, resolved by the runtime from the
    /// neighbour table; direct routing by MAC rewrite needs it.
    pub mac: Option<[u8; 6]>,
}

/// The whole forwarding table vipd wants in the kernel. Services in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Table {
    pub services: Vec<Service>,
}

/// `lvs_timeouts`: how long the kernel keeps an idle connection of the virtual services
/// (IPVS: its connection table, `ipvsadm --set`), in seconds; 0 = the kernel's own
/// value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Timeouts {
    /// An established TCP connection.
    pub tcp: u32,
    /// A TCP connection after the client's FIN.
    pub tcpfin: u32,
    /// A UDP flow.
    pub udp: u32,
}

impl Timeouts {
    pub fn is_empty(&self) -> bool {
        self.tcp == 0 && self.tcpfin == 0 && self.udp == 0
    }
}
