//! Ethernet frames carrying an ICMPv6 Neighbor Advertisement (`wire::ndisc::parse_frame`,
//! options walked by their own lengths), and the unsolicited NA vipd builds, which must
//! parse back to what it announced with a correct checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv6Addr;
use vipd_vrrp::wire::ndisc;

fuzz_target!(|data: &[u8]| {
    if let Some(na) = ndisc::parse_frame(data) {
        assert!(data.len() >= 14 + 40 + 24);
        let _ = (na.router, na.solicited, na.overrides, na.checksum_ok);
    }
    if data.len() >= 38 {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&data[..6]);
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&data[6..22]).unwrap());
        let target = Ipv6Addr::from(<[u8; 16]>::try_from(&data[22..38]).unwrap());
        let frame = ndisc::unsolicited_na(mac, src, target);
        let na = ndisc::parse_frame(&frame).expect("own NA parses");
        assert!(na.checksum_ok, "own NA checksum");
        assert_eq!((na.src, na.target, na.target_mac), (src, target, Some(mac)));
        assert_eq!(na.dst, ndisc::ALL_NODES);
        assert!(na.overrides && !na.solicited && !na.router);
        assert_eq!(frame[..6], ndisc::multicast_mac(ndisc::ALL_NODES));
    }
});
