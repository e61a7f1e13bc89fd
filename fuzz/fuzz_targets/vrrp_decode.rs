//! VRRP v2/v3 advertisements, IPv4 and IPv6: the receive path's IPv4 header parse
//! (`wire::ipv4::parse`, as `VrrpSocket::recv` does) and `Advert::decode`.
//!
//! Input: one mode byte, then the bytes under test.
//! - mode & 3 == 0: a whole IPv4 packet (header + VRRP), decoded as IPv4;
//! - mode & 3 == 1: a VRRP message received over IPv4 (192.0.2.1 -> 224.0.0.18);
//! - mode & 3 == 2: a VRRP message received over IPv6 (fe80::1 -> ff02::12);
//! - mode & 3 == 3: the same message decoded as both families.
//!
//! mode & 4: the checksum field is recomputed first (both variants are tried through
//! mode & 8 for v3/IPv4), so the fuzzer reaches the code behind the checksum check.
//!
//! Every advert that decodes must encode back to a message that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_vrrp::wire::checksum::{self, Sum};
use vipd_vrrp::wire::{ipv4, Advert, Family, RxMeta, IPPROTO_VRRP};

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Writes the checksum `decode` expects over the length the header claims.
fn fix_checksum(msg: &mut [u8], family: Family, meta: &RxMeta, pseudo: bool) {
    if msg.len() < 8 {
        return;
    }
    let v3 = msg[0] >> 4 == 3;
    let len = 8 + usize::from(msg[3]) * family.addr_len() + if v3 { 0 } else { 8 };
    if msg.len() < len {
        return;
    }
    msg[6] = 0;
    msg[7] = 0;
    let body = &msg[..len];
    let sum = match (v3, meta.src, meta.dst) {
        (true, IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(s, d, IPPROTO_VRRP, len as u32)
            .add(body)
            .finish(),
        (true, IpAddr::V4(s), IpAddr::V4(d)) if pseudo => {
            checksum::pseudo_v4(s, d, IPPROTO_VRRP, len as u16)
                .add(body)
                .finish()
        }
        _ => Sum::new().add(body).finish(),
    };
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
}

fn check(msg: &mut [u8], family: Family, meta: &RxMeta, mode: u8) {
    if mode & 4 != 0 {
        fix_checksum(msg, family, meta, mode & 8 == 0);
    }
    let _ = vipd_vrrp::wire::vrrp::peek(msg);
    if let Ok((adv, variant)) = Advert::decode(msg, family, meta) {
        assert_eq!(adv.version == vipd_vrrp::Version::V2, msg[0] >> 4 == 2);
        let again = adv.encode(meta.src, meta.dst, variant);
        assert_eq!(again.len(), adv.encoded_len());
        let (back, _) = Advert::decode(&again, family, meta)
            .unwrap_or_else(|e| panic!("re-encoded advert {adv:?} does not decode: {e}"));
        assert_eq!(back, adv);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    let meta4 = RxMeta {
        src: IpAddr::V4(SRC4),
        dst: IpAddr::V4(DST4),
        ttl: 255,
    };
    let meta6 = RxMeta {
        src: IpAddr::V6(SRC6),
        dst: IpAddr::V6(DST6),
        ttl: 255,
    };
    match mode & 3 {
        0 => {
            let Ok((h, payload)) = ipv4::parse(rest) else {
                return;
            };
            assert!(h.header_len >= 20 && h.header_len <= h.total_len);
            assert_eq!(payload.len(), h.total_len - h.header_len);
            if h.protocol != IPPROTO_VRRP {
                return;
            }
            let meta = RxMeta {
                src: IpAddr::V4(h.src),
                dst: IpAddr::V4(h.dst),
                ttl: h.ttl,
            };
            let mut payload = payload.to_vec();
            check(&mut payload, Family::V4, &meta, mode);
        }
        1 => check(&mut buf, Family::V4, &meta4, mode),
        2 => check(&mut buf, Family::V6, &meta6, mode),
        _ => {
            check(&mut buf.clone(), Family::V4, &meta4, mode);
            check(&mut buf, Family::V6, &meta6, mode);
            // A family that differs from the addresses is refused, never misread.
            assert!(Advert::decode(rest, Family::V6, &meta4).is_err());
        }
    }
});
