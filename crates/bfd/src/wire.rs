//! The BFD Control packet (RFC 5880 §4.1), with its optional authentication section
//! (§4.2–§4.4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |
//! ```
//!
//! [`decode`] applies the session-independent receive checks of RFC 5880 §6.8.6 (version,
//! length, detection multiplier, multipoint, discriminators) and returns the reason of
//! the first that fails. It takes any bytes and never panics.

/// Length of a Control packet without authentication.
pub const HEADER_LEN: usize = 24;
/// Shortest Control packet with the A bit: the header plus Auth Type and Auth Len.
pub const MIN_AUTH_LEN: usize = HEADER_LEN + 2;
/// The only version defined (RFC 5880 §4.1).
pub const VERSION: u8 = 1;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// Session state (RFC 5880 §4.1 "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    pub fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Diagnostic code (RFC 5880 §4.1 "Diag"). Reserved values are kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    /// 9–31: reserved; carried, not interpreted.
    Reserved(u8),
}

impl Diagnostic {
    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Reserved(c) => c & 0x1f,
        }
    }
    pub fn from_code(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            c => Diagnostic::Reserved(c),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnostic::None => "no_diagnostic",
            Diagnostic::ControlDetectionTimeExpired => "control_detection_time_expired",
            Diagnostic::EchoFunctionFailed => "echo_function_failed",
            Diagnostic::NeighborSignaledDown => "neighbor_signaled_session_down",
            Diagnostic::ForwardingPlaneReset => "forwarding_plane_reset",
            Diagnostic::PathDown => "path_down",
            Diagnostic::ConcatenatedPathDown => "concatenated_path_down",
            Diagnostic::AdministrativelyDown => "administratively_down",
            Diagnostic::ReverseConcatenatedPathDown => "reverse_concatenated_path_down",
            Diagnostic::Reserved(_) => "reserved",
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authentication section, parsed but not verified (vipd, like keepalived 2.4.3,
/// implements no BFD authentication; the engine drops such packets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSection {
    /// 1 simple password, 2 keyed MD5, 3 meticulous keyed MD5, 4 keyed SHA1,
    /// 5 meticulous keyed SHA1; others reserved.
    pub auth_type: u8,
    /// Everything after Auth Type and Auth Len (Auth Key ID first), `Auth Len - 2` bytes.
    pub data: Vec<u8>,
}

/// A decoded (or to-be-encoded) Control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diagnostic,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    /// Control Plane Independent.
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    /// Microseconds.
    pub required_min_rx: u32,
    /// Microseconds; 0: no echo function.
    pub required_min_echo_rx: u32,
    /// Present iff the A bit is set.
    pub auth: Option<AuthSection>,
}

/// Why a received packet was discarded. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than the header, or than the Length field claims (§6.8.6).
    Truncated,
    /// Length field below 24 (26 with the A bit) or an authentication section that
    /// does not fit it (§6.8.6).
    BadLength,
    /// Version other than 1 (§6.8.6).
    BadVersion,
    /// Detect Mult is zero (§6.8.6).
    ZeroDetectMult,
    /// Multipoint bit set (§6.8.6).
    Multipoint,
    /// My Discriminator is zero (§6.8.6).
    ZeroMyDiscriminator,
    /// Your Discriminator is zero while State is neither Down nor AdminDown (§6.8.6).
    ZeroYourDiscriminator,
    /// Both Poll and Final set, which §4.1 forbids (keepalived drops these too).
    PollAndFinal,
    /// Your Discriminator names no session of ours (§6.8.6).
    DiscriminatorMismatch,
    /// No session matches the packet's addresses/discriminator (counted by the IO
    /// layer's demultiplexer).
    NoSession,
    /// A bit set: vipd, like keepalived 2.4.3, has no BFD authentication (§6.8.6: A bit
    /// set and no authentication in use).
    Authenticated,
    /// TTL / hop limit below what the session requires (RFC 5881 §5 GTSM, or the
    /// configured `max_hops`).
    BadTtl,
    /// The session is AdminDown (§6.8.6).
    AdminDown,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::Truncated,
        DropReason::BadLength,
        DropReason::BadVersion,
        DropReason::ZeroDetectMult,
        DropReason::Multipoint,
        DropReason::ZeroMyDiscriminator,
        DropReason::ZeroYourDiscriminator,
        DropReason::PollAndFinal,
        DropReason::DiscriminatorMismatch,
        DropReason::NoSession,
        DropReason::Authenticated,
        DropReason::BadTtl,
        DropReason::AdminDown,
    ];

    /// Stable snake_case name for logs, status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadLength => "bad_length",
            DropReason::BadVersion => "bad_version",
            DropReason::ZeroDetectMult => "zero_detect_mult",
            DropReason::Multipoint => "multipoint",
            DropReason::ZeroMyDiscriminator => "zero_my_discriminator",
            DropReason::ZeroYourDiscriminator => "zero_your_discriminator",
            DropReason::PollAndFinal => "poll_and_final",
            DropReason::DiscriminatorMismatch => "discriminator_mismatch",
            DropReason::NoSession => "no_session",
            DropReason::Authenticated => "authenticated",
            DropReason::BadTtl => "bad_ttl",
            DropReason::AdminDown => "admin_down",
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

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Your Discriminator of a packet, for demultiplexing before [`decode`]; `None` if the
/// buffer is shorter than the header.
pub fn peek_your_discriminator(buf: &[u8]) -> Option<u32> {
    (buf.len() >= HEADER_LEN).then(|| be32(buf, 8))
}

/// Decode a Control packet from a UDP payload, applying the session-independent checks
/// of RFC 5880 §6.8.6 in the RFC's order (Poll-and-Final last). Bytes beyond the Length
/// field are ignored. Pure and total: any input gives `Ok` or `Err`, never a panic.
pub fn decode(buf: &[u8]) -> Result<ControlPacket, DropReason> {
    if buf.len() < HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let version = buf[0] >> 5;
    if version != VERSION {
        return Err(DropReason::BadVersion);
    }
    let flags = buf[1];
    let auth_bit = flags & FLAG_AUTH != 0;
    let length = usize::from(buf[3]);
    let min = if auth_bit { MIN_AUTH_LEN } else { HEADER_LEN };
    if length < min {
        return Err(DropReason::BadLength);
    }
    if length > buf.len() {
        return Err(DropReason::Truncated);
    }
    let detect_mult = buf[2];
    if detect_mult == 0 {
        return Err(DropReason::ZeroDetectMult);
    }
    if flags & FLAG_MULTIPOINT != 0 {
        return Err(DropReason::Multipoint);
    }
    let my_discriminator = be32(buf, 4);
    if my_discriminator == 0 {
        return Err(DropReason::ZeroMyDiscriminator);
    }
    let your_discriminator = be32(buf, 8);
    let state = State::from_bits(flags >> 6);
    if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
        return Err(DropReason::ZeroYourDiscriminator);
    }
    let auth = if auth_bit {
        let auth_type = buf[HEADER_LEN];
        let auth_len = usize::from(buf[HEADER_LEN + 1]);
        if auth_len < 2 || HEADER_LEN + auth_len > length {
            return Err(DropReason::BadLength);
        }
        Some(AuthSection {
            auth_type,
            data: buf[HEADER_LEN + 2..HEADER_LEN + auth_len].to_vec(),
        })
    } else {
        None
    };
    let poll = flags & FLAG_POLL != 0;
    let final_ = flags & FLAG_FINAL != 0;
    if poll && final_ {
        return Err(DropReason::PollAndFinal);
    }
    Ok(ControlPacket {
        diag: Diagnostic::from_code(buf[0]),
        state,
        poll,
        final_,
        cpi: flags & FLAG_CPI != 0,
        demand: flags & FLAG_DEMAND != 0,
        detect_mult,
        my_discriminator,
        your_discriminator,
        desired_min_tx: be32(buf, 12),
        required_min_rx: be32(buf, 16),
        required_min_echo_rx: be32(buf, 20),
        auth,
    })
}

impl ControlPacket {
    /// Encoded length: 24, plus the authentication section if any (capped so the Length
    /// byte can hold it).
    pub fn encoded_len(&self) -> usize {
        match &self.auth {
            None => HEADER_LEN,
            Some(a) => HEADER_LEN + 2 + a.data.len().min(255 - HEADER_LEN - 2),
        }
    }

    /// Encode; the A bit follows `auth`. Authentication data longer than fits the
    /// one-byte Length field is cut.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.encoded_len();
        let mut b = Vec::with_capacity(len);
        b.push((VERSION << 5) | self.diag.code());
        let mut flags = (self.state as u8) << 6;
        for (on, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.cpi, FLAG_CPI),
            (self.auth.is_some(), FLAG_AUTH),
            (self.demand, FLAG_DEMAND),
        ] {
            if on {
                flags |= bit;
            }
        }
        b.push(flags);
        b.push(self.detect_mult);
        b.push(len as u8);
        for v in [
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        if let Some(a) = &self.auth {
            let n = len - HEADER_LEN - 2;
            b.push(a.auth_type);
            b.push((n + 2) as u8);
            b.extend_from_slice(&a.data[..n]);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diagnostic::None,
            state: State::Up,
            poll: false,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 0x0a0b_0c0d,
            desired_min_tx: 10_000,
            required_min_rx: 20_000,
            required_min_echo_rx: 0,
            auth: None,
        }
    }

    /// RFC 5880 §4.1: the bit layout, checked against hand-assembled bytes.
    #[test]
    fn rfc5880_4_1_layout() {
        let mut p = sample();
        p.diag = Diagnostic::NeighborSignaledDown;
        p.poll = true;
        p.demand = true;
        let b = p.encode();
        assert_eq!(
            b,
            [
                0x23, 0xe2, 3, 24, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0x27, 0x10, 0, 0,
                0x4e, 0x20, 0, 0, 0, 0
            ]
        );
        assert_eq!(decode(&b), Ok(p));
    }

    #[test]
    fn rfc5880_6_8_6_checks_in_order() {
        let good = sample().encode();
        assert_eq!(decode(&good[..23]), Err(DropReason::Truncated));
        let mut b = good.clone();
        b[0] = 2 << 5;
        assert_eq!(decode(&b), Err(DropReason::BadVersion));
        let mut b = good.clone();
        b[3] = 23;
        assert_eq!(decode(&b), Err(DropReason::BadLength));
        let mut b = good.clone();
        b[3] = 25;
        assert_eq!(decode(&b), Err(DropReason::Truncated));
        let mut b = good.clone();
        b[2] = 0;
        assert_eq!(decode(&b), Err(DropReason::ZeroDetectMult));
        let mut b = good.clone();
        b[1] |= FLAG_MULTIPOINT;
        assert_eq!(decode(&b), Err(DropReason::Multipoint));
        let mut b = good.clone();
        b[4..8].fill(0);
        assert_eq!(decode(&b), Err(DropReason::ZeroMyDiscriminator));
        let mut b = good.clone();
        b[8..12].fill(0);
        assert_eq!(decode(&b), Err(DropReason::ZeroYourDiscriminator));
        for st in [State::Down, State::AdminDown] {
            let mut p = sample();
            p.state = st;
            p.your_discriminator = 0;
            assert_eq!(
                decode(&p.encode()),
                Ok(p),
                "zero Your Discriminator in {st}"
            );
        }
        let mut b = good.clone();
        b[1] |= FLAG_POLL | FLAG_FINAL;
        assert_eq!(decode(&b), Err(DropReason::PollAndFinal));
        // Trailing bytes beyond Length (e.g. padding) are ignored.
        let mut b = good.clone();
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(decode(&b), Ok(sample()));
    }

    /// §4.2–§4.4: the authentication section is parsed; its length must fit Length.
    #[test]
    fn rfc5880_4_2_auth_section() {
        let mut p = sample();
        p.auth = Some(AuthSection {
            auth_type: 1,
            data: vec![7, b's', b'e', b'c'],
        });
        let b = p.encode();
        assert_eq!(b.len(), 30);
        assert_eq!(b[3], 30);
        assert_eq!(b[1] & FLAG_AUTH, FLAG_AUTH);
        assert_eq!(&b[24..], &[1, 6, 7, b's', b'e', b'c']);
        assert_eq!(decode(&b), Ok(p));
        // A bit with Length 24: too short for an authentication section.
        let mut b2 = sample().encode();
        b2[1] |= FLAG_AUTH;
        assert_eq!(decode(&b2), Err(DropReason::BadLength));
        // Auth Len running past Length.
        let mut b3 = b.clone();
        b3[25] = 7;
        assert_eq!(decode(&b3), Err(DropReason::BadLength));
        let mut b4 = b.clone();
        b4[25] = 1;
        assert_eq!(decode(&b4), Err(DropReason::BadLength));
    }

    #[test]
    fn diagnostics_round_trip() {
        for c in 0..32u8 {
            assert_eq!(Diagnostic::from_code(c).code(), c);
        }
        assert_eq!(
            Diagnostic::from_code(1),
            Diagnostic::ControlDetectionTimeExpired
        );
    }

    #[test]
    fn peek() {
        assert_eq!(peek_your_discriminator(&[0; 23]), None);
        assert_eq!(
            peek_your_discriminator(&sample().encode()),
            Some(0x0a0b_0c0d)
        );
    }

    fn arb_packet() -> impl proptest::strategy::Strategy<Value = ControlPacket> {
        use proptest::prelude::*;
        (
            (0u8..32, 0u8..4, 0u8..3, any::<bool>(), any::<bool>()),
            (
                1u8..,
                1u32..,
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
            proptest::option::of((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))),
        )
            .prop_map(
                |((diag, st, pf, cpi, demand), (m, my, your, tx, rx, echo), auth)| {
                    let state = State::from_bits(st);
                    ControlPacket {
                        diag: Diagnostic::from_code(diag),
                        state,
                        // Neither, Poll or Final; never both.
                        poll: pf == 1,
                        final_: pf == 2,
                        cpi,
                        demand,
                        detect_mult: m,
                        my_discriminator: my,
                        your_discriminator: if matches!(state, State::Up | State::Init) {
                            your.max(1)
                        } else {
                            your
                        },
                        desired_min_tx: tx,
                        required_min_rx: rx,
                        required_min_echo_rx: echo,
                        auth: auth.map(|(t, data)| AuthSection { auth_type: t, data }),
                    }
                },
            )
    }

    proptest::proptest! {
        /// Never panics on any bytes, and whatever decodes re-encodes to the same
        /// packet.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            if let Ok(p) = decode(&bytes) {
                let again = p.encode();
                proptest::prop_assert_eq!(decode(&again), Ok(p));
            }
        }

        /// Mutating a valid packet's bytes never panics either.
        #[test]
        fn decode_mutated(p in arb_packet(), at in 0usize..64, byte in proptest::prelude::any::<u8>(), cut in 0usize..64) {
            let mut b = p.encode();
            let i = at % b.len();
            b[i] = byte;
            b.truncate(cut.max(1));
            let _ = decode(&b);
        }

        #[test]
        fn round_trip(p in arb_packet()) {
            proptest::prop_assert_eq!(decode(&p.encode()), Ok(p));
        }
    }
}
