//! Gratuitous ARP (RFC 5227 §3 "ARP Announcement"), as keepalived sends it: an ARP
//! *request* to broadcast with sender IP = target IP = the VIP.

use std::net::Ipv4Addr;

pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethernet minimum frame length without FCS; we pad ourselves because veth does not.
pub const MIN_FRAME: usize = 60;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// A whole Ethernet frame announcing `ip` at `mac`.
pub fn gratuitous_request(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&BROADCAST); // target hardware address: unused in an announcement
    f.extend_from_slice(&ip.octets());
    f.resize(MIN_FRAME, 0);
    f
}

/// The parts of an ARP frame a test or capture cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

/// Parse an Ethernet frame carrying Ethernet/IPv4 ARP.
pub fn parse_frame(frame: &[u8]) -> Option<ArpPacket> {
    if frame.len() < 42 || frame[12..14] != ETHERTYPE_ARP.to_be_bytes() {
        return None;
    }
    let a = &frame[14..];
    if a[0..6] != [0x00, 0x01, 0x08, 0x00, 6, 4] {
        return None;
    }
    let mut sender_mac = [0u8; 6];
    sender_mac.copy_from_slice(&a[8..14]);
    Some(ArpPacket {
        op: u16::from_be_bytes([a[6], a[7]]),
        sender_mac,
        sender_ip: Ipv4Addr::new(a[14], a[15], a[16], a[17]),
        target_ip: Ipv4Addr::new(a[24], a[25], a[26], a[27]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let mac = [0x02, 0, 0, 0, 0, 1];
        let ip = Ipv4Addr::new(192, 0, 2, 100);
        let f = gratuitous_request(mac, ip);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "opcode request");
        assert_eq!(&f[28..32], &[192, 0, 2, 100], "sender ip");
        assert_eq!(&f[38..42], &[192, 0, 2, 100], "target ip");
        let p = parse_frame(&f).unwrap();
        assert!(p.is_gratuitous());
        assert_eq!(p.sender_mac, mac);
        assert_eq!(p.op, 1);
    }

    #[test]
    fn parse_rejects_other_frames() {
        assert_eq!(parse_frame(&[0u8; 10]), None);
        let mut f = gratuitous_request([2, 0, 0, 0, 0, 1], Ipv4Addr::new(192, 0, 2, 1));
        f[12] = 0x08;
        f[13] = 0x00;
        assert_eq!(parse_frame(&f), None);
    }
}
