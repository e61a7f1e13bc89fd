//! Ethernet frames carrying ARP (`wire::arp::parse_frame`, used on captures), and the
//! gratuitous ARP vipd builds, which must parse back to what it announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use vipd_vrrp::wire::arp;

fuzz_target!(|data: &[u8]| {
    if let Some(p) = arp::parse_frame(data) {
        assert!(data.len() >= 42);
        assert_eq!(p.sender_mac, data[22..28]);
        let _ = p.is_gratuitous();
    }
    if data.len() >= 10 {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&data[..6]);
        let ip = Ipv4Addr::new(data[6], data[7], data[8], data[9]);
        let p = arp::parse_frame(&arp::gratuitous_request(mac, ip)).expect("own GARP parses");
        assert!(p.is_gratuitous());
        assert_eq!((p.op, p.sender_mac, p.sender_ip), (1, mac, ip));
    }
});
