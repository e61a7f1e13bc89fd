//! Unsolicited Neighbor Advertisement (RFC 4861 §7.2.6): the IPv6 counterpart of
//! gratuitous ARP, sent to all-nodes with the Override flag and a Target Link-Layer
//! Address option so neighbours replace a stale cache entry.

use super::checksum;
use std::net::Ipv6Addr;

pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ICMPV6: u8 = 58;
pub const NEIGHBOR_ADVERT: u8 = 136;
/// ff02::1
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// A whole Ethernet frame: unsolicited NA for `target` at `mac`, sent from `src`
/// (the interface's link-local address) to ff02::1 with hop limit 255.
pub fn unsolicited_na(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[NEIGHBOR_ADVERT, 0, 0, 0, FLAG_OVERRIDE, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]); // option: Target Link-Layer Address, 8 bytes
    icmp.extend_from_slice(&mac);
    let mut sum = checksum::pseudo_v6(src, ALL_NODES, ICMPV6, icmp.len() as u32);
    let c = sum.add(&icmp).finish();
    icmp[2..4].copy_from_slice(&c.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&multicast_mac(ALL_NODES));
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(ICMPV6);
    f.push(255);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// A parsed neighbour advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvert {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub router: bool,
    pub solicited: bool,
    pub overrides: bool,
    pub target: Ipv6Addr,
    pub target_mac: Option<[u8; 6]>,
    pub checksum_ok: bool,
}

/// Parse an Ethernet frame carrying an ICMPv6 Neighbor Advertisement (no extension
/// headers). Length comes from the IPv6 payload length.
pub fn parse_frame(frame: &[u8]) -> Option<NeighborAdvert> {
    if frame.len() < 14 + 40 || frame[12..14] != ETHERTYPE_IPV6.to_be_bytes() {
        return None;
    }
    let ip = &frame[14..];
    if ip[0] >> 4 != 6 || ip[6] != ICMPV6 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ip.len() < 40 + plen || plen < 24 {
        return None;
    }
    let icmp = &ip[40..40 + plen];
    if icmp[0] != NEIGHBOR_ADVERT {
        return None;
    }
    let addr = |b: &[u8]| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[..16]);
        Ipv6Addr::from(o)
    };
    let src = addr(&ip[8..]);
    let dst = addr(&ip[24..]);
    let mut target_mac = None;
    let mut opts = &icmp[24..];
    while opts.len() >= 8 {
        let olen = usize::from(opts[1]) * 8;
        if olen == 0 || olen > opts.len() {
            break;
        }
        if opts[0] == 2 && olen >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            target_mac = Some(m);
        }
        opts = &opts[olen..];
    }
    let mut sum = checksum::pseudo_v6(src, dst, ICMPV6, plen as u32);
    Some(NeighborAdvert {
        src,
        dst,
        hop_limit: ip[7],
        router: icmp[4] & FLAG_ROUTER != 0,
        solicited: icmp[4] & FLAG_SOLICITED != 0,
        overrides: icmp[4] & FLAG_OVERRIDE != 0,
        target: addr(&icmp[8..]),
        target_mac,
        checksum_ok: sum.add(icmp).finish() == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn na_layout_and_checksum() {
        let mac = [0x02, 0, 0, 0, 0, 2];
        let src: Ipv6Addr = "fe80::2".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let f = unsolicited_na(mac, src, target);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f[14 + 7], 255, "hop limit");
        let na = parse_frame(&f).unwrap();
        assert!(na.checksum_ok);
        assert!(na.overrides && !na.solicited && !na.router);
        assert_eq!(na.target, target);
        assert_eq!(na.target_mac, Some(mac));
        assert_eq!(na.dst, ALL_NODES);
        let mut bad = f.clone();
        bad[14 + 40 + 10] ^= 1;
        assert!(!parse_frame(&bad).unwrap().checksum_ok);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_frame(&data);
            let _ = super::super::arp::parse_frame(&data);
        }
    }
}
