//! The [`Lan`] topology: one switch, N routers and a client.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::capture::MacAddr;
use crate::ns::{cleanup_stale, unique_prefix, Netns};
use crate::util::parse_addresses;

/// The IPv4 virtual address used by tests: 192.0.2.100.
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The IPv6 virtual address used by tests: 2001:db8::100.
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// The client's IPv4 address: 192.0.2.50.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
/// The client's IPv6 address: 2001:db8::50.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x50);
/// Prefix length of the LAN's IPv4 subnet (192.0.2.0/24).
pub const PREFIX_LEN_V4: u8 = 24;
/// Prefix length of the LAN's IPv6 subnet (2001:db8::/64).
pub const PREFIX_LEN_V6: u8 = 64;

/// Options for [`Lan::new`].
#[derive(Debug, Clone)]
pub struct LanOptions {
    /// First part of the namespace names (`<prefix>-<pid>-<n>-r1`).
    /// Default `"vpd"`. Keep it short.
    pub prefix: String,
    /// How long to wait for the interfaces' IPv6 link-local addresses to
    /// become usable. Default 5 s.
    pub ready_timeout: Duration,
}

impl Default for LanOptions {
    fn default() -> Self {
        LanOptions {
            prefix: "vpd".into(),
            ready_timeout: Duration::from_secs(5),
        }
    }
}

/// A switched LAN in namespaces:
///
/// ```text
///            switch ns: br0 (STP off, multicast snooping off)
///          /      |        \           \
///       p-r1    p-r2  …   p-rN         p-cl      (switch side of each veth)
///        |        |         |            |
///  r1:eth0   r2:eth0  … rN:eth0     client:eth0
///  .11/::11  .12/::12   .(10+N)      .50/::50    (192.0.2.0/24, 2001:db8::/64)
/// ```
///
/// Router `i` (1-based) has MAC `02:00:00:00:01:<i>`, the client
/// `02:00:00:00:02:01`. IPv6 DAD is off everywhere, so addresses are usable
/// as soon as `new` returns. Dropping the `Lan` deletes every namespace.
#[derive(Debug)]
pub struct Lan {
    // Routers first: dropping them first avoids needless carrier events.
    routers: Vec<Netns>,
    client: Netns,
    switch: Netns,
    prefix: String,
}

const MAX_ROUTERS: usize = 39; // 10+i stays below the client's .50

impl Lan {
    /// Builds the topology with `n_routers` routers (1..=39). Typically takes
    /// a few tens of milliseconds.
    pub fn new(n_routers: usize, opts: LanOptions) -> Result<Lan> {
        ensure!(
            (1..=MAX_ROUTERS).contains(&n_routers),
            "Lan::new: n_routers must be 1..={MAX_ROUTERS}, got {n_routers}"
        );
        static CLEANUP: Once = Once::new();
        let prefix_for_cleanup = opts.prefix.clone();
        CLEANUP.call_once(|| {
            cleanup_stale(&prefix_for_cleanup);
        });

        let prefix = unique_prefix(&opts.prefix);
        // Create guards as we go: an error half-way drops (deletes) them.
        let switch = Netns::new(format!("{prefix}-sw"))?;
        let client = Netns::new(format!("{prefix}-cl"))?;
        let mut routers = Vec::with_capacity(n_routers);
        for i in 1..=n_routers {
            routers.push(Netns::new(format!("{prefix}-r{i}"))?);
        }
        let lan = Lan {
            routers,
            client,
            switch,
            prefix,
        };
        lan.build(&opts)
            .with_context(|| format!("building Lan {}", lan.prefix))?;
        Ok(lan)
    }

    fn build(&self, opts: &LanOptions) -> Result<()> {
        // 1. IPv6 without DAD in the hosts (set *before* any interface exists,
        //    so new interfaces inherit it), no IPv6 at all on the switch.
        for ns in self.hosts() {
            ns.sysctls(&[
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
                ("net.ipv6.conf.all.dad_transmits", "0"),
                ("net.ipv6.conf.default.dad_transmits", "0"),
                ("net.ipv6.conf.default.router_solicitations", "0"),
                ("net.ipv6.conf.default.accept_ra", "0"),
            ])?;
        }
        self.switch.sysctls(&[
            ("net.ipv6.conf.default.disable_ipv6", "1"),
            ("net.ipv6.conf.all.disable_ipv6", "1"),
        ])?;

        // 2. The switch: bridge + one veth per host, peers created directly
        //    in the host namespaces as eth0.
        let mut b = String::new();
        writeln!(
            b,
            "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0"
        )?;
        writeln!(b, "link set br0 up")?;
        for (port, ns, mac) in self.ports() {
            writeln!(
                b,
                "link add {port} type veth peer name eth0 address {mac} netns {}",
                ns.name()
            )?;
            writeln!(b, "link set {port} master br0")?;
            writeln!(b, "link set {port} up")?;
        }
        self.switch.ip_batch(&b)?;

        // 3. Hosts: per-interface accept_dad=0 (before addresses), addresses,
        //    link up.
        let hosts: Vec<(&Netns, Ipv4Addr, Ipv6Addr)> = (1..=self.routers.len())
            .map(|i| {
                (
                    self.router(i),
                    self.router_addr_v4(i),
                    self.router_addr_v6(i),
                )
            })
            .chain(std::iter::once((&self.client, CLIENT_V4, CLIENT_V6)))
            .collect();
        for (ns, v4, v6) in &hosts {
            configure_eth0(ns, *v4, *v6)?;
        }

        // 4. Wait until every eth0 has a non-tentative link-local address.
        let deadline = Instant::now() + opts.ready_timeout;
        for (ns, _, _) in &hosts {
            loop {
                let out = ns.ip(["-6", "-o", "addr", "show", "dev", "eth0"])?;
                let ready = parse_addresses(&out).iter().any(|(a, line)| {
                    matches!(a, IpAddr::V6(v6) if is_link_local(v6)) && !line.contains("tentative")
                });
                if ready {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("{}: eth0 link-local address not ready:\n{out}", ns.name());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    }

    /// Every host namespace: routers, then the client.
    fn hosts(&self) -> impl Iterator<Item = &Netns> {
        self.routers.iter().chain(std::iter::once(&self.client))
    }

    /// `(switch port name, host ns, host MAC)` for every host.
    fn ports(&self) -> Vec<(String, &Netns, MacAddr)> {
        let mut v: Vec<_> = (1..=self.routers.len())
            .map(|i| (Lan::port_name(i), self.router(i), self.router_mac(i)))
            .collect();
        v.push(("p-cl".into(), &self.client, Lan::client_mac()));
        v
    }

    /// Number of routers.
    pub fn n_routers(&self) -> usize {
        self.routers.len()
    }

    /// The unique `<prefix>-<pid>-<n>` part of this LAN's namespace names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Router `i` (1-based). Panics if out of range.
    pub fn router(&self, i: usize) -> &Netns {
        assert!(
            (1..=self.routers.len()).contains(&i),
            "router index {i} out of range 1..={}",
            self.routers.len()
        );
        &self.routers[i - 1]
    }

    /// All routers, `r1` first.
    pub fn routers(&self) -> &[Netns] {
        &self.routers
    }

    /// The client namespace (interface `eth0`, 192.0.2.50, 2001:db8::50).
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The switch namespace (bridge `br0`, ports `p-r1`…, `p-cl`).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// Router `i`'s IPv4 address, 192.0.2.(10+i).
    pub fn router_addr_v4(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 10 + i as u8)
    }

    /// Router `i`'s IPv6 address, 2001:db8::(10+i) (hex digits as decimal:
    /// router 1 is `2001:db8::11`).
    pub fn router_addr_v6(&self, i: usize) -> Ipv6Addr {
        let last = u16::from_str_radix(&(10 + i).to_string(), 16).expect("small number");
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
    }

    /// Router `i`'s IPv6 link-local address on eth0, read from the namespace.
    pub fn router_link_local(&self, i: usize) -> Result<Ipv6Addr> {
        let ns = self.router(i);
        let out = ns.ip(["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])?;
        parse_addresses(&out)
            .into_iter()
            .find_map(|(a, _)| match a {
                IpAddr::V6(v6) if is_link_local(&v6) => Some(v6),
                _ => None,
            })
            .with_context(|| format!("{}: no link-local address on eth0", ns.name()))
    }

    /// Router `i`'s eth0 MAC address, `02:00:00:00:01:<i>`.
    pub fn router_mac(&self, i: usize) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0x01, i as u8])
    }

    /// The client's eth0 MAC address, `02:00:00:00:02:01`.
    pub fn client_mac() -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0x02, 0x01])
    }

    /// Name of router `i`'s port on the switch: `p-r<i>`.
    pub fn port_name(i: usize) -> String {
        format!("p-r{i}")
    }

    /// Sets router `i`'s switch port down (`up == false`: a cable pull — the
    /// router sees its carrier go away and can neither send nor receive) or
    /// back up.
    pub fn set_port(&self, i: usize, up: bool) -> Result<()> {
        self.router(i); // range check
        self.switch.ip([
            "link",
            "set",
            &Lan::port_name(i),
            if up { "up" } else { "down" },
        ])?;
        Ok(())
    }

    /// Deletes router `i`'s cable: the veth pair (`eth0` in the router, `p-r<i>`
    /// on the switch) disappears, as when a NIC is unplugged or a virtual
    /// interface is deleted. [`recreate_link`](Self::recreate_link) brings it back.
    pub fn delete_link(&self, i: usize) -> Result<()> {
        self.router(i); // range check
        self.switch
            .ip(["link", "del", &Lan::port_name(i)])
            .map(drop)
    }

    /// Re-creates router `i`'s `eth0` after [`delete_link`](Self::delete_link):
    /// same name, MAC and addresses, attached to the switch again, link up (a
    /// new ifindex, as after a real re-creation).
    pub fn recreate_link(&self, i: usize) -> Result<()> {
        let ns = self.router(i);
        let port = Lan::port_name(i);
        self.switch.ip_batch(&format!(
            "link add {port} type veth peer name eth0 address {} netns {}\n\
             link set {port} master br0\n\
             link set {port} up\n",
            self.router_mac(i),
            ns.name()
        ))?;
        configure_eth0(ns, self.router_addr_v4(i), self.router_addr_v6(i))
    }

    /// Like [`recreate_link`](Self::recreate_link), but the new `eth0` gets the
    /// interface index `ifindex` (the old one's, typically): a re-creation a daemon
    /// cannot tell from a down/up by the index, though the kernel has forgotten every
    /// multicast group the old interface had joined.
    pub fn recreate_link_with_index(&self, i: usize, ifindex: u32) -> Result<()> {
        let ns = self.router(i);
        let port = Lan::port_name(i);
        ns.ip_batch(&format!(
            "link add eth0 index {ifindex} address {} type veth peer name {port} netns {}\n",
            self.router_mac(i),
            self.switch.name()
        ))?;
        self.switch.ip_batch(&format!(
            "link set {port} master br0\n\
             link set {port} up\n"
        ))?;
        configure_eth0(ns, self.router_addr_v4(i), self.router_addr_v6(i))
    }

    /// Same as [`set_port`](Self::set_port) for the client's port.
    pub fn set_client_port(&self, up: bool) -> Result<()> {
        self.switch
            .ip(["link", "set", "p-cl", if up { "up" } else { "down" }])?;
        Ok(())
    }
}

/// A host's fresh `eth0`: no DAD (before any address), its addresses, link up.
fn configure_eth0(ns: &Netns, v4: Ipv4Addr, v6: Ipv6Addr) -> Result<()> {
    ns.sysctls(&[
        ("net.ipv6.conf.eth0.accept_dad", "0"),
        ("net.ipv6.conf.eth0.dad_transmits", "0"),
    ])?;
    ns.ip_batch(&format!(
        "addr add {v4}/{PREFIX_LEN_V4} dev eth0\n\
         addr add {v6}/{PREFIX_LEN_V6} dev eth0 nodad\n\
         link set eth0 up\n"
    ))
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}
