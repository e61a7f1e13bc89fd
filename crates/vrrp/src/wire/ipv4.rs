//! Just enough IPv4 header parsing for a raw socket's receive path (which hands us the
//! IP header) and for captures (which hand us whole frames).

use super::DropReason;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    pub header_len: usize,
    pub total_len: usize,
}

/// Parse an IPv4 packet; returns the header and the payload, bounded by the header's
/// total length (anything after it is link padding).
pub fn parse(buf: &[u8]) -> Result<(Ipv4Header, &[u8]), DropReason> {
    if buf.len() < 20 || buf[0] >> 4 != 4 {
        return Err(DropReason::Truncated);
    }
    let header_len = usize::from(buf[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if header_len < 20 || total_len < header_len || buf.len() < total_len {
        return Err(DropReason::Truncated);
    }
    let h = Ipv4Header {
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
        ttl: buf[8],
        protocol: buf[9],
        header_len,
        total_len,
    };
    Ok((h, &buf[header_len..total_len]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_strips_padding() {
        let mut pkt = vec![
            0x45, 0, 0, 24, 0, 0, 0, 0, 255, 112, 0, 0, 192, 0, 2, 11, 224, 0, 0, 18, 1, 2, 3, 4,
        ];
        pkt.extend_from_slice(&[0; 22]);
        let (h, payload) = parse(&pkt).unwrap();
        assert_eq!(h.ttl, 255);
        assert_eq!(h.protocol, 112);
        assert_eq!(h.src, Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(h.dst, Ipv4Addr::new(224, 0, 0, 18));
        assert_eq!(payload, &[1, 2, 3, 4]);
    }

    #[test]
    fn rejects_lies() {
        let pkt = [
            0x45, 0, 0, 200, 0, 0, 0, 0, 255, 112, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
        ];
        assert_eq!(parse(&pkt), Err(DropReason::Truncated));
        let pkt = [
            0x44, 0, 0, 20, 0, 0, 0, 0, 255, 112, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
        ];
        assert_eq!(parse(&pkt), Err(DropReason::Truncated));
        assert_eq!(parse(&[0x45]), Err(DropReason::Truncated));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let _ = parse(&data);
        }
    }
}
