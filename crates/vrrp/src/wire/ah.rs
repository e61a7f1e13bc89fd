//! VRRPv2 over IPv4 with an IP Authentication Header (RFC 2402), HMAC-MD5-96
//! (RFC 2403): keepalived's `auth_type AH`, the authentication type 2 of RFC 2338.
//!
//! keepalived's wire format, which this module reproduces:
//!
//! ```text
//! IPv4 header, protocol 51 (AH)                                  20 bytes
//! AH: next header 112 | payload len 4 | reserved 0               4 bytes
//!     SPI = the sender's IPv4 source address                      4 bytes
//!     sequence number, +1 for each advert                         4 bytes
//!     ICV: HMAC-MD5 truncated to 96 bits                         12 bytes
//! VRRPv2 advert with auth type 2 and 8 zero bytes of auth data
//! ```
//!
//! The ICV is HMAC-MD5 keyed with `auth_pass` (its first 8 bytes, NUL padded to 8, as
//! for PASS) over the whole IP packet with the ICV field zeroed and the mutable IPv4
//! fields zeroed: TOS, flags/fragment offset, header checksum, and the TTL for unicast
//! peers (a multicast advert's TTL must be 255 and is covered). The identification
//! field is covered, so the sender must choose it (IP_HDRINCL) rather than leave it
//! to the kernel. VRRP over IPv6 has no AH mode.

use super::ipv4::{self, Ipv4Header};
use super::{DropReason, IPPROTO_VRRP};
use hmac::{Hmac, Mac};
use md5::Md5;
use std::net::Ipv4Addr;

/// IP protocol number of the Authentication Header.
pub const IPPROTO_AH: u8 = 51;
/// Length of keepalived's AH header: 12 fixed bytes and a 12-byte ICV.
pub const AH_LEN: usize = 24;
/// AH "payload length": the header's length in 32-bit words minus 2.
const AH_PAYLOAD_LEN: u8 = 4;
const ICV_LEN: usize = 12;
const ICV_OFFSET: usize = 12;
const IPV4_HEADER_LEN: usize = 20;
/// keepalived sends its adverts with TOS "internet network control".
const TOS_NETWORK_CONTROL: u8 = 0xc0;

/// The 8-byte HMAC key derived from `auth_pass`. Its `Debug` never shows the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AhKey([u8; 8]);

impl AhKey {
    /// keepalived keys the HMAC with the 8-byte authentication data field: the first
    /// 8 bytes of `auth_pass`, NUL padded.
    pub fn from_pass(pass: &str) -> AhKey {
        let mut k = [0u8; 8];
        let b = pass.as_bytes();
        let n = b.len().min(8);
        k[..n].copy_from_slice(&b[..n]);
        AhKey(k)
    }
}

impl std::fmt::Debug for AhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AhKey(<redacted>)")
    }
}

/// The AH fields of a received packet whose ICV verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened<'a> {
    pub ip: Ipv4Header,
    pub seq: u32,
    /// The VRRP message (up to the IP total length).
    pub vrrp: &'a [u8],
}

/// What [`seal`] needs besides the VRRP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealParams {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// TTL written into the header: 255 for multicast. For unicast it is outside the
    /// ICV, so the sender may rewrite it (the socket's `unicast_ttl`).
    pub ttl: u8,
    /// IPv4 identification: covered by the ICV, never 0 (the kernel would fill it in).
    pub id: u16,
    pub seq: u32,
    /// Unicast peers: the TTL is left out of the ICV, as keepalived does.
    pub unicast: bool,
}

/// Build the whole IPv4 packet (header, AH, `vrrp`) for a raw IP_HDRINCL socket.
/// The header checksum is left 0: the kernel fills it in.
pub fn seal(key: &AhKey, p: &SealParams, vrrp: &[u8]) -> Vec<u8> {
    let total = IPV4_HEADER_LEN + AH_LEN + vrrp.len();
    let mut out = Vec::with_capacity(total);
    out.push(0x45);
    out.push(TOS_NETWORK_CONTROL);
    out.extend_from_slice(&(total.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&p.id.max(1).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // flags / fragment offset
    out.push(p.ttl);
    out.push(IPPROTO_AH);
    out.extend_from_slice(&[0, 0]); // header checksum
    out.extend_from_slice(&p.src.octets());
    out.extend_from_slice(&p.dst.octets());
    out.extend_from_slice(&[IPPROTO_VRRP, AH_PAYLOAD_LEN, 0, 0]);
    out.extend_from_slice(&p.src.octets()); // SPI
    out.extend_from_slice(&p.seq.to_be_bytes());
    out.extend_from_slice(&[0; ICV_LEN]);
    out.extend_from_slice(vrrp);
    let icv = icv(key, &out, IPV4_HEADER_LEN, p.unicast);
    let at = IPV4_HEADER_LEN + ICV_OFFSET;
    out[at..at + ICV_LEN].copy_from_slice(&icv[..ICV_LEN]);
    out
}

/// Check a received IPv4 packet carrying AH: the structure, then the ICV with `key`,
/// then that the SPI is the source address (keepalived's rule). Replay protection
/// (the sequence number) is the caller's, which keeps the counter.
///
/// Errors: `Truncated` (shorter than its headers), `NotVrrp` (not AH, or AH over
/// something other than VRRP), `AuthMismatch` (another AH layout, a wrong ICV — a
/// different password — or an SPI that is not the sender).
pub fn open<'a>(packet: &'a [u8], key: &AhKey, unicast: bool) -> Result<Opened<'a>, DropReason> {
    let (ip, payload) = ipv4::parse(packet)?;
    if ip.protocol != IPPROTO_AH {
        return Err(DropReason::NotVrrp);
    }
    if payload.len() < AH_LEN {
        return Err(DropReason::Truncated);
    }
    if payload[0] != IPPROTO_VRRP {
        return Err(DropReason::NotVrrp);
    }
    if payload[1] != AH_PAYLOAD_LEN {
        return Err(DropReason::AuthMismatch);
    }
    let packet = &packet[..ip.total_len];
    let expected = icv(key, packet, ip.header_len, unicast);
    let got = &payload[ICV_OFFSET..ICV_OFFSET + ICV_LEN];
    if !constant_time_eq(&expected[..ICV_LEN], got) {
        return Err(DropReason::AuthMismatch);
    }
    if payload[4..8] != ip.src.octets() {
        return Err(DropReason::AuthMismatch);
    }
    let seq = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]);
    Ok(Opened {
        ip,
        seq,
        vrrp: &payload[AH_LEN..],
    })
}

/// HMAC-MD5 over `packet` (IPv4 header of `header_len` bytes, then AH at that offset)
/// with the mutable fields and the ICV taken as zero.
fn icv(key: &AhKey, packet: &[u8], header_len: usize, unicast: bool) -> [u8; 16] {
    let mut header = [0u8; 60];
    let header = &mut header[..header_len];
    header.copy_from_slice(&packet[..header_len]);
    header[1] = 0; // TOS
    header[6] = 0; // flags, fragment offset
    header[7] = 0;
    header[10] = 0; // checksum
    header[11] = 0;
    if unicast {
        header[8] = 0; // TTL
    }
    let ah = &packet[header_len..header_len + AH_LEN];
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(header);
    mac.update(&ah[..ICV_OFFSET]);
    mac.update(&[0; ICV_LEN]);
    mac.update(&packet[header_len + AH_LEN..]);
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Replay protection as keepalived does it for AH: one counter per instance, shared by
/// sending and receiving. A received advert must carry a sequence number above the
/// counter and raises it; each advert sent takes the next number. So a backup that
/// takes over continues above the numbers its peers last saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqCounter(u32);

impl SeqCounter {
    /// Accept `seq` if it is newer than everything seen or sent.
    pub fn accept(&mut self, seq: u32) -> bool {
        if seq > self.0 {
            self.0 = seq;
            true
        } else {
            false
        }
    }

    /// The number for the next advert (saturates: 2^32 adverts at one a second is
    /// 136 years).
    pub fn next_seq(&mut self) -> u32 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    pub fn current(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;

    fn params(unicast: bool) -> SealParams {
        SealParams {
            src: Ipv4Addr::new(192, 0, 2, 11),
            dst: if unicast {
                Ipv4Addr::new(192, 0, 2, 12)
            } else {
                Ipv4Addr::new(224, 0, 0, 18)
            },
            ttl: 255,
            id: 7,
            seq: 1,
            unicast,
        }
    }

    /// HMAC-MD5 written out from RFC 2104 with the plain MD5 hash, to check the
    /// crate's HMAC and the coverage independently.
    fn rfc2104(key: &[u8], data: &[u8]) -> [u8; 16] {
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let mut inner = md5::Md5::new();
        inner.update(k.map(|b| b ^ 0x36));
        inner.update(data);
        let ih = inner.finalize();
        let mut outer = md5::Md5::new();
        outer.update(k.map(|b| b ^ 0x5c));
        outer.update(ih);
        outer.finalize().into()
    }

    #[test]
    fn layout_and_icv_coverage() {
        let vrrp = [0x21, 1, 100, 0, 2, 1, 0xaa, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0];
        let key = AhKey::from_pass("secret12345");
        let pkt = seal(&key, &params(false), &vrrp);
        assert_eq!(pkt.len(), 20 + 24 + vrrp.len());
        assert_eq!(&pkt[..2], &[0x45, 0xc0]);
        assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]) as usize, pkt.len());
        assert_eq!(&pkt[4..6], &[0, 7]);
        assert_eq!((pkt[8], pkt[9]), (255, 51));
        assert_eq!(&pkt[20..24], &[112, 4, 0, 0]);
        assert_eq!(&pkt[24..28], &[192, 0, 2, 11], "SPI is the source address");
        assert_eq!(&pkt[28..32], &[0, 0, 0, 1]);
        assert_eq!(&pkt[44..], &vrrp);
        // The ICV, recomputed by hand: key is the first 8 bytes of the password, the
        // TOS/flags/checksum are zeroed, the TTL (multicast) and the id are covered.
        let mut zeroed = pkt.clone();
        zeroed[1] = 0;
        zeroed[32..44].fill(0);
        let want = rfc2104(b"secret12", &zeroed);
        assert_eq!(&pkt[32..44], &want[..12]);

        let opened = open(&pkt, &key, false).unwrap();
        assert_eq!(opened.seq, 1);
        assert_eq!(opened.vrrp, &vrrp);
        assert_eq!(opened.ip.src, Ipv4Addr::new(192, 0, 2, 11));
    }

    #[test]
    fn mutable_fields_are_outside_the_icv() {
        let key = AhKey::from_pass("pw");
        let vrrp = [0x21, 1, 100, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut pkt = seal(&key, &params(false), &vrrp);
        pkt[1] = 0; // TOS rewritten on the way
        pkt[6] = 0x40; // DF set
        pkt[10] = 0x12; // kernel's checksum
        pkt[11] = 0x34;
        assert!(open(&pkt, &key, false).is_ok());
        // Multicast: the TTL is covered.
        let mut t = pkt.clone();
        t[8] = 254;
        assert_eq!(open(&t, &key, false), Err(DropReason::AuthMismatch));
        // Unicast: it is not.
        let mut u = seal(&key, &params(true), &vrrp);
        u[8] = 64;
        assert!(open(&u, &key, true).is_ok());
        // The id is covered.
        let mut i = pkt.clone();
        i[5] ^= 1;
        assert_eq!(open(&i, &key, false), Err(DropReason::AuthMismatch));
    }

    #[test]
    fn wrong_key_spi_and_structure() {
        let key = AhKey::from_pass("right");
        let vrrp = [0x21, 1, 100, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let pkt = seal(&key, &params(false), &vrrp);
        assert_eq!(
            open(&pkt, &AhKey::from_pass("wrong"), false),
            Err(DropReason::AuthMismatch)
        );
        // Only 8 bytes of the password count, as in keepalived.
        let long = seal(&AhKey::from_pass("12345678"), &params(false), &vrrp);
        assert!(open(&long, &AhKey::from_pass("123456789"), false).is_ok());
        // SPI other than the source, with a valid ICV over it.
        let mut spi = pkt.clone();
        spi[27] ^= 1;
        spi[32..44].fill(0);
        let want = rfc2104(b"right\0\0\0", &{
            let mut z = spi.clone();
            z[1] = 0;
            z
        });
        spi[32..44].copy_from_slice(&want[..12]);
        assert_eq!(open(&spi, &key, false), Err(DropReason::AuthMismatch));
        let mut next = pkt.clone();
        next[20] = 6;
        assert_eq!(open(&next, &key, false), Err(DropReason::NotVrrp));
        let mut proto = pkt.clone();
        proto[9] = 112;
        assert_eq!(open(&proto, &key, false), Err(DropReason::NotVrrp));
        let short = {
            let mut s = pkt[..40].to_vec();
            s[3] = 40;
            s
        };
        assert_eq!(open(&short, &key, false), Err(DropReason::Truncated));
        // Link padding after the IP total length is not part of the packet.
        let mut padded = pkt.clone();
        padded.extend_from_slice(&[0xee; 10]);
        assert_eq!(open(&padded, &key, false).unwrap().vrrp, &vrrp);
    }

    #[test]
    fn key_is_not_printed() {
        let k = AhKey::from_pass("hunter22");
        assert!(!format!("{k:?}").contains("hunter"));
    }

    #[test]
    fn sequence_counter_is_shared_and_monotonic() {
        let mut c = SeqCounter::default();
        assert_eq!(c.next_seq(), 1);
        assert!(!c.accept(1), "our own number back is a replay");
        assert!(c.accept(5));
        assert!(!c.accept(5));
        assert!(!c.accept(3));
        assert_eq!(c.next_seq(), 6, "sending continues above what was received");
        let mut top = SeqCounter(u32::MAX);
        assert_eq!(top.next_seq(), u32::MAX);
    }

    proptest::proptest! {
        #[test]
        fn open_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                             unicast in proptest::bool::ANY) {
            let _ = open(&data, &AhKey::from_pass("x"), unicast);
        }

        #[test]
        fn open_never_panics_on_mangled_packets(idx in 0usize..60, val in proptest::num::u8::ANY,
                                                 cut in 0usize..60) {
            let key = AhKey::from_pass("k");
            let vrrp = [0x21, 1, 100, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let mut pkt = seal(&key, &params(false), &vrrp);
            let i = idx % pkt.len();
            let changed = pkt[i] != val;
            pkt[i] = val;
            let len = pkt.len().saturating_sub(cut);
            let r = open(&pkt[..len], &key, false);
            // A changed byte outside the mutable fields or a cut never verifies.
            if (changed && ![1usize, 6, 7, 10, 11].contains(&i)) || cut > 0 {
                proptest::prop_assert!(r.is_err());
            }
        }

        #[test]
        fn seal_open_roundtrip(seq in proptest::num::u32::ANY, id in proptest::num::u16::ANY,
                               len in 0usize..100, unicast in proptest::bool::ANY) {
            let key = AhKey::from_pass("roundtrip");
            let vrrp = vec![0x5a; len];
            let p = SealParams { seq, id, unicast, ..params(unicast) };
            let pkt = seal(&key, &p, &vrrp);
            let o = open(&pkt, &key, unicast).unwrap();
            proptest::prop_assert_eq!(o.seq, seq);
            proptest::prop_assert_eq!(o.vrrp, &vrrp[..]);
        }
    }
}
