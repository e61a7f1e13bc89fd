//! The Internet checksum (RFC 1071) and the pseudo-headers VRRP uses.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Running one's-complement sum; feed it slices in order, then [`Sum::finish`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Sum {
    acc: u64,
    /// A dangling odd byte from the previous slice.
    odd: Option<u8>,
}

impl Sum {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, mut data: &[u8]) -> &mut Self {
        if let Some(hi) = self.odd.take() {
            if let Some((&lo, rest)) = data.split_first() {
                self.acc += u64::from(u16::from_be_bytes([hi, lo]));
                data = rest;
            } else {
                self.odd = Some(hi);
                return self;
            }
        }
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            self.acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            self.odd = Some(*last);
        }
        self
    }

    /// The checksum to put on the wire (complement of the folded sum).
    pub fn finish(&self) -> u16 {
        let mut acc = self.acc;
        if let Some(hi) = self.odd {
            acc += u64::from(u16::from_be_bytes([hi, 0]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }
}

/// RFC 1071 checksum of one buffer.
pub fn internet(data: &[u8]) -> u16 {
    Sum::new().add(data).finish()
}

/// IPv4 pseudo-header as used by keepalived/FRR for VRRPv3 (src, dst, 0, proto, length).
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> Sum {
    let mut s = Sum::new();
    s.add(&src.octets())
        .add(&dst.octets())
        .add(&[0, proto])
        .add(&len.to_be_bytes());
    s
}

/// IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> Sum {
    let mut s = Sum::new();
    s.add(&src.octets())
        .add(&dst.octets())
        .add(&len.to_be_bytes())
        .add(&[0, 0, 0, next_header]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2, checksum 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet(&data), !0xddf2);
    }

    #[test]
    fn split_feeding_equals_whole() {
        let data: Vec<u8> = (0u8..=200).collect();
        for cut in 0..data.len() {
            let mut s = Sum::new();
            s.add(&data[..cut]).add(&data[cut..]);
            assert_eq!(s.finish(), internet(&data), "cut at {cut}");
        }
    }

    #[test]
    fn checksum_of_data_with_its_checksum_is_zero() {
        let mut data = vec![0x45, 0x00, 0x12, 0x34, 0xab, 0xcd, 0x00, 0x00, 0x01];
        let c = internet(&data);
        data[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet(&data), 0);
    }
}
