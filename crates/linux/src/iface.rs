//! Facts about local interfaces: index, MAC, primary IPv4 and IPv6 link-local address.

use anyhow::{anyhow, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Interface {
    pub fn lookup(name: &str) -> Result<Interface> {
        let index = nix::net::if_::if_nametoindex(name)
            .with_context(|| format!("interface `{name}` not found"))?;
        let mac_text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
            .with_context(|| format!("reading MAC address of `{name}`"))?;
        let mac = parse_mac(mac_text.trim())
            .ok_or_else(|| anyhow!("interface `{name}` has no Ethernet address"))?;
        Ok(Interface {
            name: name.to_string(),
            index,
            mac,
        })
    }

    /// Every address currently on the interface.
    pub fn addresses(&self) -> Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        for ifa in nix::ifaddrs::getifaddrs()? {
            if ifa.interface_name != self.name {
                continue;
            }
            let Some(addr) = ifa.address else { continue };
            if let Some(a) = addr.as_sockaddr_in() {
                out.push(IpAddr::V4(a.ip()));
            } else if let Some(a) = addr.as_sockaddr_in6() {
                out.push(IpAddr::V6(a.ip()));
            }
        }
        Ok(out)
    }

    /// The first IPv4 address that is not one of `exclude` (the VIPs): keepalived's
    /// "primary IP on interface".
    pub fn primary_v4(&self, exclude: &[IpAddr]) -> Result<Ipv4Addr> {
        self.addresses()?
            .into_iter()
            .find_map(|a| match a {
                IpAddr::V4(v4) if !exclude.contains(&a) => Some(v4),
                _ => None,
            })
            .ok_or_else(|| {
                anyhow!(
                    "interface `{}` has no IPv4 address to send VRRP adverts from",
                    self.name
                )
            })
    }

    pub fn link_local_v6(&self) -> Result<Ipv6Addr> {
        self.addresses()?
            .into_iter()
            .find_map(|a| match a {
                IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
                _ => None,
            })
            .ok_or_else(|| {
                anyhow!(
                    "interface `{}` has no IPv6 link-local address to send VRRP adverts from",
                    self.name
                )
            })
    }
}

/// `promote_secondaries`: sets `net.ipv4.conf.IFACE.promote_secondaries` to 1, so that
/// removing one address of a subnet promotes the others instead of removing them with
/// it. `true` when vipd changed it (it was 0), to be reset when vipd stops.
pub fn set_promote_secondaries(name: &str) -> std::io::Result<bool> {
    let path = format!("/proc/sys/net/ipv4/conf/{name}/promote_secondaries");
    if std::fs::read_to_string(&path)?.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(&path, "1")?;
    Ok(true)
}

/// Undoes [`set_promote_secondaries`] (keepalived resets it to 0 when it stops).
pub fn reset_promote_secondaries(name: &str) -> std::io::Result<()> {
    std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{name}/promote_secondaries"),
        "0",
    )
}

const IGMP_LINK_LOCAL: &str = "/proc/sys/net/ipv4/igmp_link_local_mcast_reports";

/// `disable_local_igmp`: no IGMP reports for 224.0.0.0/24 groups (the VRRP group among
/// them), by `net.ipv4.igmp_link_local_mcast_reports = 0`. `true` when vipd changed
/// it, to be restored by [`restore_local_igmp`] when vipd stops (as keepalived does).
pub fn disable_local_igmp() -> std::io::Result<bool> {
    if std::fs::read_to_string(IGMP_LINK_LOCAL)?.trim() == "0" {
        return Ok(false);
    }
    std::fs::write(IGMP_LINK_LOCAL, "0")?;
    Ok(true)
}

pub fn restore_local_igmp() -> std::io::Result<()> {
    std::fs::write(IGMP_LINK_LOCAL, "1")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:00:5e:00:01:33"),
            Some([2, 0, 0x5e, 0, 1, 0x33])
        );
        assert_eq!(parse_mac("02:00:5e:00:01"), None);
        assert_eq!(parse_mac("02:00:5e:00:01:33:44"), None);
        assert_eq!(parse_mac("zz:00:5e:00:01:33"), None);
    }

    #[test]
    fn loopback_is_found() {
        let lo = Interface::lookup("lo").unwrap();
        assert_eq!(lo.mac, [0; 6]);
        assert!(lo.index > 0);
        assert!(lo
            .addresses()
            .unwrap()
            .contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(Interface::lookup("no-such-if0").is_err());
    }
}
