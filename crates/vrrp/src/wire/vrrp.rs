//! VRRP advertisement codec: VRRPv2 (RFC 3768 §5) and VRRPv3 (RFC 5798 / RFC 9568 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! v2: | Auth Type   | Adver Int (s) |          Checksum             |
//! v3: |(rsvd)|  Max Adver Int (cs)  |          Checksum             |
//! |                 IPvX address(es) ...                          |
//! v2 only: Authentication Data (8 bytes)
//! ```

use super::checksum::{self, Sum};
use super::{DropReason, Family, Version, IPPROTO_VRRP};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HEADER_LEN: usize = 8;
const V2_AUTH_LEN: usize = 8;
const TYPE_ADVERTISEMENT: u8 = 1;
const AUTH_NONE: u8 = 0;
const AUTH_PASS: u8 = 1;
const AUTH_AH: u8 = 2;

/// VRRPv2 authentication field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// Simple text password (keepalived `auth_type PASS`), NUL padded to 8 bytes.
    Pass([u8; 8]),
    /// IP AH (type 2): only its type is recognised; vipd does not implement it.
    Ah,
    Other(u8),
}

impl Auth {
    /// keepalived puts the first 8 bytes of `auth_pass` on the wire.
    pub fn pass(password: &str) -> Auth {
        let mut data = [0u8; 8];
        let bytes = password.as_bytes();
        let n = bytes.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
        Auth::Pass(data)
    }

    fn type_code(&self) -> u8 {
        match self {
            Auth::None => AUTH_NONE,
            Auth::Pass(_) => AUTH_PASS,
            Auth::Ah => AUTH_AH,
            Auth::Other(t) => *t,
        }
    }
}

/// Which VRRPv3-over-IPv4 checksum a router computes. IPv6 always uses the pseudo-header
/// and v2 never does, so this matters only for v3/IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumVariant {
    /// Include the IPv4 pseudo-header, as keepalived and FRR do (the field's default).
    #[default]
    PseudoHeader,
    /// VRRP message only, as RFC 9568 reads and some vendors do
    /// (keepalived's `v3_checksum_as_v2`).
    VrrpOnly,
    /// The pseudo-header with this IPv4 multicast group as its destination, whatever
    /// the packet's (keepalived's `old_unicast_checksum`, its unicast checksum before
    /// 1.3.6). Only for sending: a receiver checks such adverts by taking the group as
    /// the packet's destination in [`RxMeta`].
    OldUnicast(Ipv4Addr),
}

/// A decoded (or to-be-encoded) advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2's whole seconds are converted).
    pub interval_cs: u16,
    pub addresses: Vec<IpAddr>,
    /// v2 only; `Auth::None` for v3.
    pub auth: Auth,
}

/// What the IP layer told us about a received advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) the packet arrived with.
    pub ttl: u8,
}

/// Version and VRID of a VRRP message, for demultiplexing to an instance before full
/// validation. `None` if the buffer is too short to tell.
pub fn peek(buf: &[u8]) -> Option<(u8, u8)> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some((buf[0] >> 4, buf[1]))
}

impl Advert {
    /// Length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        let family = self.addresses.first().map(Family::of).unwrap_or(Family::V4);
        let auth = if self.version == Version::V2 {
            V2_AUTH_LEN
        } else {
            0
        };
        HEADER_LEN + self.addresses.len() * family.addr_len() + auth
    }

    /// Encode for sending from `src` to `dst` (the addresses matter for the v3 checksum).
    /// Addresses must all be of one family, at most 255 of them.
    pub fn encode(&self, src: IpAddr, dst: IpAddr, variant: ChecksumVariant) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push((self.version.number() << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(self.addresses.len().min(255) as u8);
        match self.version {
            Version::V2 => {
                out.push(self.auth.type_code());
                out.push((self.interval_cs / 100).min(255) as u8);
            }
            Version::V3 => {
                out.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
        for a in self.addresses.iter().take(255) {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            match self.auth {
                Auth::Pass(data) => out.extend_from_slice(&data),
                _ => out.extend_from_slice(&[0; V2_AUTH_LEN]),
            }
        }
        let sum = checksum_for(self.version, src, dst, variant, &out);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Decode and validate the VRRP message of a received packet (RFC 5798 §7.1 checks
    /// that need only the packet; instance-specific checks are the engine's).
    ///
    /// `family` is the address family of the socket it came in on. For v3/IPv4 both
    /// checksum variants are accepted; the one that matched is returned.
    pub fn decode(
        buf: &[u8],
        family: Family,
        meta: &RxMeta,
    ) -> Result<(Advert, ChecksumVariant), DropReason> {
        Self::decode_trailed(buf, family, meta, 0)
    }

    /// [`Advert::decode`] of a message followed by a `trailer`-byte extension
    /// (keepalived's `auth_hmac` trailer) that an IPv6 checksum covers: there the kernel
    /// sums the whole payload. The IPv4 checksum covers the message alone.
    pub fn decode_trailed(
        buf: &[u8],
        family: Family,
        meta: &RxMeta,
        trailer: usize,
    ) -> Result<(Advert, ChecksumVariant), DropReason> {
        if buf.len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let version = match buf[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            _ => return Err(DropReason::VersionMismatch),
        };
        if buf[0] & 0x0f != TYPE_ADVERTISEMENT {
            return Err(DropReason::BadType);
        }
        if version == Version::V2 && family == Family::V6 {
            return Err(DropReason::VersionMismatch);
        }
        // A v3 advert with no address breaks RFC 5798 §5.2.5, but the codec represents
        // it: the engine refuses it unless it runs without addresses itself
        // (`no_virtual_ipaddress`, as keepalived allows).
        let count = usize::from(buf[3]);
        let auth_len = if version == Version::V2 {
            V2_AUTH_LEN
        } else {
            0
        };
        let len = HEADER_LEN + count * family.addr_len() + auth_len;
        // The message may be followed by bytes we don't own (padding); we checksum
        // and parse exactly `len` bytes. A shorter buffer cannot be a valid advert.
        if buf.len() < len {
            return Err(DropReason::BadAddressCount);
        }
        let msg = &buf[..len];
        let covered = if family == Family::V6 {
            buf.get(..len + trailer).ok_or(DropReason::Truncated)?
        } else {
            msg
        };
        let variant = verify_checksum(version, family, meta, covered)?;

        let mut addresses = Vec::with_capacity(count);
        let body = &msg[HEADER_LEN..HEADER_LEN + count * family.addr_len()];
        match family {
            Family::V4 => {
                for c in body.chunks_exact(4) {
                    addresses.push(IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])));
                }
            }
            Family::V6 => {
                for c in body.chunks_exact(16) {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    addresses.push(IpAddr::V6(Ipv6Addr::from(o)));
                }
            }
        }
        let (interval_cs, auth) = match version {
            Version::V2 => {
                let auth_data = &msg[len - V2_AUTH_LEN..];
                let auth = match buf[4] {
                    AUTH_NONE => Auth::None,
                    AUTH_PASS => {
                        let mut d = [0u8; 8];
                        d.copy_from_slice(auth_data);
                        Auth::Pass(d)
                    }
                    AUTH_AH => Auth::Ah,
                    t => Auth::Other(t),
                };
                (u16::from(buf[5]) * 100, auth)
            }
            Version::V3 => (u16::from_be_bytes([buf[4], buf[5]]) & 0x0fff, Auth::None),
        };
        Ok((
            Advert {
                version,
                vrid: buf[1],
                priority: buf[2],
                interval_cs,
                addresses,
                auth,
            },
            variant,
        ))
    }
}

/// Length of the VRRP message in `buf` as its header describes it (v2 with its 8
/// bytes of authentication data); `None` if the header is cut or the version unknown.
pub fn message_len(buf: &[u8], family: Family) -> Option<usize> {
    let h = buf.get(..HEADER_LEN)?;
    let auth = match h[0] >> 4 {
        2 => V2_AUTH_LEN,
        3 => 0,
        _ => return None,
    };
    Some(HEADER_LEN + usize::from(h[3]) * family.addr_len() + auth)
}

/// Recompute the v3/IPv6 checksum of `buf` (message and any trailer) the way the
/// kernel does with IPV6_CHECKSUM: over everything, with the pseudo-header.
pub fn refresh_checksum_v6(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    if buf.len() < HEADER_LEN {
        return;
    }
    buf[6..8].copy_from_slice(&[0, 0]);
    let mut sum = checksum::pseudo_v6(src, dst, IPPROTO_VRRP, buf.len() as u32);
    let c = sum.add(buf).finish();
    buf[6..8].copy_from_slice(&c.to_be_bytes());
}

fn checksum_for(
    version: Version,
    src: IpAddr,
    dst: IpAddr,
    variant: ChecksumVariant,
    msg: &[u8],
) -> u16 {
    let len = msg.len();
    match (version, src, dst) {
        (Version::V3, IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut sum = checksum::pseudo_v6(s, d, IPPROTO_VRRP, len as u32);
            sum.add(msg).finish()
        }
        (Version::V3, IpAddr::V4(s), IpAddr::V4(d)) if variant == ChecksumVariant::PseudoHeader => {
            let mut sum = checksum::pseudo_v4(s, d, IPPROTO_VRRP, len as u16);
            sum.add(msg).finish()
        }
        (Version::V3, IpAddr::V4(s), IpAddr::V4(_)) => match variant {
            ChecksumVariant::OldUnicast(group) => {
                let mut sum = checksum::pseudo_v4(s, group, IPPROTO_VRRP, len as u16);
                sum.add(msg).finish()
            }
            _ => Sum::new().add(msg).finish(),
        },
        _ => Sum::new().add(msg).finish(),
    }
}

fn verify_checksum(
    version: Version,
    family: Family,
    meta: &RxMeta,
    msg: &[u8],
) -> Result<ChecksumVariant, DropReason> {
    if Family::of(&meta.src) != family || Family::of(&meta.dst) != family {
        return Err(DropReason::FamilyMismatch);
    }
    // A message whose checksum field is correct sums to zero; `finish` returns the
    // complement, so a valid message yields 0.
    let ok = |variant| checksum_for(version, meta.src, meta.dst, variant, msg) == 0;
    if ok(ChecksumVariant::PseudoHeader) {
        Ok(ChecksumVariant::PseudoHeader)
    } else if version == Version::V3 && family == Family::V4 && ok(ChecksumVariant::VrrpOnly) {
        Ok(ChecksumVariant::VrrpOnly)
    } else {
        Err(DropReason::BadChecksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn meta(src: &str, dst: &str) -> RxMeta {
        RxMeta {
            src: v4(src),
            dst: v4(dst),
            ttl: 255,
        }
    }

    /// A VRRPv2 advert as keepalived sends it for `virtual_router_id 51, priority 100,
    /// advert_int 1, auth_type PASS, auth_pass 1111`, VIP 192.168.200.16, laid out by
    /// hand from RFC 3768 §5.1 and its checksum worked out independently of `encode`.
    #[test]
    fn v2_known_bytes() {
        let bytes: [u8; 20] = [
            0x21, 51, 100, 1, // version 2 type 1, vrid, prio, count
            1, 1, 0x00, 0x00, // auth PASS, interval 1 s, checksum (patched below)
            192, 168, 200, 16, // VIP
            b'1', b'1', b'1', b'1', 0, 0, 0, 0, // auth data
        ];
        // one's complement sum of the 16-bit words above, checksum field 0:
        // 0x2133+0x6401+0x0101+0x0000+0xc0a8+0xc810+0x3131+0x3131+0+0 = 0x2_714f -> 0x7151
        let mut expected = bytes;
        let cks = !0x7151u16;
        expected[6..8].copy_from_slice(&cks.to_be_bytes());
        let adv = Advert {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addresses: vec![v4("192.168.200.16")],
            auth: Auth::pass("1111"),
        };
        let enc = adv.encode(
            v4("192.0.2.1"),
            v4("224.0.0.18"),
            ChecksumVariant::PseudoHeader,
        );
        assert_eq!(enc, expected);
        let (dec, _) = Advert::decode(&enc, Family::V4, &meta("192.0.2.1", "224.0.0.18")).unwrap();
        assert_eq!(dec, adv);
    }

    #[test]
    fn v3_v4_both_checksum_variants_roundtrip() {
        let adv = Advert {
            version: Version::V3,
            vrid: 7,
            priority: 200,
            interval_cs: 1,
            addresses: vec![v4("192.0.2.100"), v4("192.0.2.101")],
            auth: Auth::None,
        };
        let m = meta("192.0.2.11", "224.0.0.18");
        for variant in [ChecksumVariant::PseudoHeader, ChecksumVariant::VrrpOnly] {
            let enc = adv.encode(m.src, m.dst, variant);
            assert_eq!(enc.len(), 16);
            assert_eq!(enc[4..6], [0x00, 0x01]);
            let (dec, got) = Advert::decode(&enc, Family::V4, &m).unwrap();
            assert_eq!(dec, adv);
            assert_eq!(got, variant);
        }
        // The pseudo-header variant really depends on the addresses.
        let enc = adv.encode(m.src, m.dst, ChecksumVariant::PseudoHeader);
        let other = meta("192.0.2.12", "224.0.0.18");
        assert_eq!(
            Advert::decode(&enc, Family::V4, &other),
            Err(DropReason::BadChecksum)
        );
    }

    #[test]
    fn old_unicast_checksum_takes_the_group_as_destination() {
        let adv = Advert {
            version: Version::V3,
            vrid: 7,
            priority: 200,
            interval_cs: 100,
            addresses: vec![v4("192.0.2.100")],
            auth: Auth::None,
        };
        let group = Ipv4Addr::new(224, 0, 0, 18);
        let unicast = meta("192.0.2.11", "192.0.2.12");
        let enc = adv.encode(unicast.src, unicast.dst, ChecksumVariant::OldUnicast(group));
        assert_eq!(
            enc,
            adv.encode(unicast.src, group.into(), ChecksumVariant::PseudoHeader)
        );
        assert_eq!(
            Advert::decode(&enc, Family::V4, &unicast),
            Err(DropReason::BadChecksum)
        );
        let as_group = RxMeta {
            dst: group.into(),
            ..unicast
        };
        assert_eq!(Advert::decode(&enc, Family::V4, &as_group).unwrap().0, adv);
    }

    #[test]
    fn v3_v6_roundtrip_and_pseudo_header() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst: IpAddr = "ff02::12".parse().unwrap();
        let adv = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 100,
            interval_cs: 100,
            addresses: vec![
                "fe80::100".parse().unwrap(),
                "2001:db8::100".parse().unwrap(),
            ],
            auth: Auth::None,
        };
        let enc = adv.encode(src, dst, ChecksumVariant::VrrpOnly);
        assert_eq!(enc.len(), 8 + 32);
        let m = RxMeta { src, dst, ttl: 255 };
        assert_eq!(Advert::decode(&enc, Family::V6, &m).unwrap().0, adv);
        // VrrpOnly is ignored for IPv6: a checksum without pseudo-header would not verify.
        let mut plain = enc.clone();
        plain[6..8].copy_from_slice(&[0, 0]);
        let c = checksum::internet(&plain);
        plain[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            Advert::decode(&plain, Family::V6, &m),
            Err(DropReason::BadChecksum)
        );
    }

    #[test]
    fn padding_is_ignored_and_short_is_rejected() {
        let adv = Advert {
            version: Version::V3,
            vrid: 9,
            priority: 50,
            interval_cs: 100,
            addresses: vec![v4("192.0.2.100")],
            auth: Auth::None,
        };
        let m = meta("192.0.2.11", "224.0.0.18");
        let mut enc = adv.encode(m.src, m.dst, ChecksumVariant::PseudoHeader);
        enc.extend_from_slice(&[0xaa; 18]);
        assert_eq!(Advert::decode(&enc, Family::V4, &m).unwrap().0, adv);
        let short = &enc[..11];
        assert_eq!(
            Advert::decode(short, Family::V4, &m),
            Err(DropReason::BadAddressCount)
        );
        assert_eq!(
            Advert::decode(&enc[..5], Family::V4, &m),
            Err(DropReason::Truncated)
        );
    }

    #[test]
    fn header_field_errors() {
        let adv = Advert {
            version: Version::V3,
            vrid: 9,
            priority: 50,
            interval_cs: 100,
            addresses: vec![v4("192.0.2.100")],
            auth: Auth::None,
        };
        let m = meta("192.0.2.11", "224.0.0.18");
        let enc = adv.encode(m.src, m.dst, ChecksumVariant::PseudoHeader);
        let mut bad = enc.clone();
        bad[0] = 0x41;
        assert_eq!(
            Advert::decode(&bad, Family::V4, &m),
            Err(DropReason::VersionMismatch)
        );
        let mut bad = enc.clone();
        bad[0] = 0x32;
        assert_eq!(
            Advert::decode(&bad, Family::V4, &m),
            Err(DropReason::BadType)
        );
        let mut bad = enc.clone();
        bad[3] = 0;
        assert_eq!(
            Advert::decode(&bad, Family::V4, &m),
            Err(DropReason::BadChecksum),
            "a count that disagrees with the checksummed bytes"
        );
        let empty = Advert {
            addresses: Vec::new(),
            ..adv.clone()
        };
        let enc_empty = empty.encode(m.src, m.dst, ChecksumVariant::PseudoHeader);
        assert_eq!(enc_empty[3], 0);
        assert_eq!(
            Advert::decode(&enc_empty, Family::V4, &m).unwrap().0,
            empty,
            "no addresses is representable (keepalived's no_virtual_ipaddress)"
        );
        let mut bad = enc.clone();
        bad[2] ^= 1;
        assert_eq!(
            Advert::decode(&bad, Family::V4, &m),
            Err(DropReason::BadChecksum)
        );
        let v6m = RxMeta {
            src: "fe80::1".parse().unwrap(),
            dst: "ff02::12".parse().unwrap(),
            ttl: 255,
        };
        assert_eq!(
            Advert::decode(&enc, Family::V4, &v6m),
            Err(DropReason::FamilyMismatch)
        );
    }

    #[test]
    fn peek_reads_version_and_vrid() {
        assert_eq!(peek(&[0x31, 42, 0, 0, 0, 0, 0, 0]), Some((3, 42)));
        assert_eq!(peek(&[0x31, 42]), None);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
                               v6 in proptest::bool::ANY) {
            let (family, m) = if v6 {
                (Family::V6, RxMeta { src: "fe80::1".parse().unwrap(), dst: "ff02::12".parse().unwrap(), ttl: 255 })
            } else {
                (Family::V4, meta("192.0.2.1", "224.0.0.18"))
            };
            let _ = Advert::decode(&data, family, &m);
            let _ = peek(&data);
        }

        #[test]
        fn encode_decode_roundtrip(vrid in 1u8..=255, prio in 0u8..=255, cs in 1u16..4096,
                                   n in 1usize..20, v3 in proptest::bool::ANY) {
            let addresses: Vec<IpAddr> = (0..n).map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8))).collect();
            let (version, interval_cs, auth) = if v3 {
                (Version::V3, cs, Auth::None)
            } else {
                (Version::V2, (cs / 100).max(1) * 100 % 25600, Auth::pass("secret"))
            };
            let adv = Advert { version, vrid, priority: prio, interval_cs, addresses, auth };
            let m = meta("192.0.2.1", "224.0.0.18");
            let enc = adv.encode(m.src, m.dst, ChecksumVariant::PseudoHeader);
            proptest::prop_assert_eq!(enc.len(), adv.encoded_len());
            let (dec, _) = Advert::decode(&enc, Family::V4, &m).unwrap();
            proptest::prop_assert_eq!(dec, adv);
        }
    }
}
