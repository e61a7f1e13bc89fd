//! Wire formats. Each codec parses from a byte slice and never panics, whatever the
//! bytes; lengths always come from the headers, never from the buffer size, because
//! Ethernet frames can carry padding.

pub mod ah;
pub mod arp;
pub mod checksum;
pub mod hmac;
pub mod ipv4;
pub mod ndisc;
pub mod vrrp;

pub use vrrp::{Advert, Auth, ChecksumVariant, RxMeta};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// VRRP protocol number in the IP header.
pub const IPPROTO_VRRP: u8 = 112;
/// 224.0.0.18
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// ff02::12
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every VRRP packet is sent with and (multicast) must arrive with.
pub const VRRP_TTL: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The VRRP multicast group of this family.
    pub fn multicast_group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(MCAST_V4),
            Family::V6 => IpAddr::V6(MCAST_V6),
        }
    }

    pub fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }
}

/// Why a received packet was discarded. Every drop is counted under one of these, so
/// an operator can tell a misconfigured peer from a noisy network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than its headers or than the length the headers claim.
    Truncated,
    /// Not an IPv4/IPv6 packet carrying protocol 112 (or AH over 112) where one was expected.
    NotVrrp,
    /// Version field differs from the instance's VRRP version.
    VersionMismatch,
    /// Type field is not 1 (ADVERTISEMENT).
    BadType,
    BadChecksum,
    /// TTL / hop limit was not 255 on a multicast advert (RFC 5798 §7.1).
    BadTtl,
    /// No instance on this interface/family has the advert's VRID.
    UnknownVrid,
    /// Address count is zero (v3) or does not fit the packet length.
    BadAddressCount,
    /// The advert's address list differs from ours and the sender is not the owner.
    AddressMismatch,
    /// v2: the advert interval differs from ours (RFC 3768 §7.1).
    IntervalMismatch,
    /// v3: Max Advertise Interval is zero (RFC 9568 §7.1, erratum 8301).
    ZeroInterval,
    /// v2: we are the address owner (priority 255), who ignores adverts (RFC 3768 §7.1).
    AddressOwner,
    /// v2: authentication type differs from ours.
    AuthTypeMismatch,
    /// v2: PASS authentication data differs from ours; AH: the ICV does not verify
    /// (another password, or the packet was altered) or the SPI is not the sender;
    /// `auth_hmac`: the HMAC does not verify (another key, a forged advert).
    AuthMismatch,
    /// Address family of the advert differs from the instance.
    FamilyMismatch,
    /// Our own advert, looped back.
    OwnAdvert,
    /// Unicast mode: the sender is not one of the configured `unicast_peer`s.
    UnknownPeer,
    /// Unicast mode: TTL outside the peer's `min_ttl`..`max_ttl`.
    PeerTtl,
    /// Authenticated (AH or `auth_hmac`), but its sequence number is not newer than
    /// one already seen: a replayed or duplicated advert.
    Replayed,
    /// `auth_hmac mode enforce`: an advert without the authentication trailer.
    AuthMissing,
    /// `auth_hmac`: a trailer of an unknown scheme or with reserved bits set.
    AuthMalformed,
    /// `auth_hmac`: signed with a key id we do not have.
    AuthUnknownKey,
    /// `auth_hmac anti_replay time`: the timestamp is outside `time_window`.
    AuthStale,
}

impl DropReason {
    pub const ALL: [DropReason; 23] = [
        DropReason::Truncated,
        DropReason::NotVrrp,
        DropReason::VersionMismatch,
        DropReason::BadType,
        DropReason::BadChecksum,
        DropReason::BadTtl,
        DropReason::UnknownVrid,
        DropReason::BadAddressCount,
        DropReason::AddressMismatch,
        DropReason::IntervalMismatch,
        DropReason::ZeroInterval,
        DropReason::AddressOwner,
        DropReason::AuthTypeMismatch,
        DropReason::AuthMismatch,
        DropReason::FamilyMismatch,
        DropReason::OwnAdvert,
        DropReason::UnknownPeer,
        DropReason::PeerTtl,
        DropReason::Replayed,
        DropReason::AuthMissing,
        DropReason::AuthMalformed,
        DropReason::AuthUnknownKey,
        DropReason::AuthStale,
    ];

    /// Stable snake_case name, used in logs, status output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::NotVrrp => "not_vrrp",
            DropReason::VersionMismatch => "version_mismatch",
            DropReason::BadType => "bad_type",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadTtl => "bad_ttl",
            DropReason::UnknownVrid => "unknown_vrid",
            DropReason::BadAddressCount => "bad_address_count",
            DropReason::AddressMismatch => "address_mismatch",
            DropReason::IntervalMismatch => "interval_mismatch",
            DropReason::ZeroInterval => "zero_interval",
            DropReason::AddressOwner => "address_owner",
            DropReason::AuthTypeMismatch => "auth_type_mismatch",
            DropReason::AuthMismatch => "auth_mismatch",
            DropReason::FamilyMismatch => "family_mismatch",
            DropReason::OwnAdvert => "own_advert",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::PeerTtl => "peer_ttl",
            DropReason::Replayed => "replayed",
            DropReason::AuthMissing => "auth_missing",
            DropReason::AuthMalformed => "auth_malformed",
            DropReason::AuthUnknownKey => "auth_unknown_key",
            DropReason::AuthStale => "auth_stale",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-reason drop counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    pub fn count(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    /// Non-zero counters, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }
}
