//! The load balancer's netlink reply decoders (crates/lb), on one received datagram:
//! `netlink::parse_msgs` (message framing), `netlink::error_of` (NLMSG_ERROR),
//! `nft::decode::ext_ack` (extended-ack TLVs of an nftables batch error),
//! `nft::decode::set_elems` (element dumps with counters, as `each_elem` reads them),
//! `ipvs::encode::decode_service` / `decode_dest` (IPVS dumps, both families) and
//! `ipvs::encode::family_id` (the generic netlink family lookup).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd_lb::ipvs::encode;
use vipd_lb::netlink::{attrs, error_of, parse_msgs, NLMSG_HDRLEN};
use vipd_lb::nft::decode;
use vipd_lb::Family;

fuzz_target!(|data: &[u8]| {
    let msgs = parse_msgs(data);
    let framed: usize = msgs.iter().map(|m| NLMSG_HDRLEN + m.payload.len()).sum();
    assert!(
        framed <= data.len(),
        "{framed} bytes framed out of {}",
        data.len()
    );
    for m in &msgs {
        if let Some((errno, _ty)) = error_of(&m.payload) {
            assert!(m.payload.len() >= 4 + NLMSG_HDRLEN);
            let _ = errno;
        }
        let (text, _offs) = decode::ext_ack(m.flags, &m.payload);
        if let Some(t) = text {
            assert!(t.len() <= m.payload.len() || t == "<invalid utf-8>");
        }
        if m.payload.len() >= 4 {
            for e in decode::set_elems(&m.payload[4..]) {
                assert!(e.key.len() + e.data.len() <= m.payload.len());
            }
        }
        for _ in attrs(&m.payload) {}
        if let Ok(Some(s)) = encode::decode_service(m) {
            let _ = s.key.family();
        }
        let _ = encode::decode_dest(m, Family::V4);
        let _ = encode::decode_dest(m, Family::V6);
    }
    let _ = encode::family_id(&msgs, "IPVS");
});
