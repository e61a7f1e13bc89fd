//! keepalived 2.4's authentication extension (`auth_hmac`): a 28-byte trailer after
//! the VRRP message (v2 or v3, IPv4 or IPv6), HMAC-SHA256 truncated to 128 bits.
//!
//! ```text
//! ext type (1 = HMAC-SHA256) | key id | reserved (0, 16 bits)
//! sequence: seconds (32) | 1/65536 s fraction (16) | counter (16)
//! HMAC (16 bytes)
//! ```
//!
//! The HMAC input is a 20-byte pseudo-header (4 or 6, version, VRID, 0, the
//! sender's address, zero padded), the message with its checksum read as zero, the
//! first 12 trailer bytes and 16 zero bytes. The IP header is not covered. The
//! sequence is time based (`anti_replay time`: within `time_window` seconds of our
//! clock) or only strictly growing (`monotonic`), per sender.
//!
//! Everything here is pure: the caller passes the wall-clock time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::time::Duration;

pub const TRAILER_LEN: usize = 28;
/// The only scheme: HMAC-SHA256 truncated to 128 bits.
pub const EXT_HMAC_SHA256: u8 = 1;
const HMAC_LEN: usize = 16;
const SIGNED_PREFIX: usize = TRAILER_LEN - HMAC_LEN;
const PSEUDO_LEN: usize = 20;
pub const KEY_MIN: usize = 32;
pub const KEY_MAX: usize = 64;
/// Replay state kept for this many multicast senders (least recently used goes).
const MCAST_SENDERS: usize = 4;

/// A signing key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey {
    pub id: u8,
    bytes: Vec<u8>,
}

impl HmacKey {
    pub fn new(id: u8, bytes: Vec<u8>) -> HmacKey {
        HmacKey { id, bytes }
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacKey {{ id: {}, bytes: <redacted> }}", self.id)
    }
}

/// `mode`: what is sent and what is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Sign, and accept only signed adverts.
    #[default]
    Enforce,
    /// Sign; accept unsigned adverts too (signed ones must verify).
    Permissive,
    /// Do not sign; accept unsigned adverts, verify signed ones.
    ReceiveOnly,
}

/// One instance's `auth_hmac` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacConfig {
    pub keys: Vec<HmacKey>,
    pub active_key: u8,
    pub mode: Mode,
    /// `anti_replay time` (else `monotonic`).
    pub anti_replay_time: bool,
    /// Seconds, 1..=300.
    pub time_window: u32,
}

impl HmacConfig {
    pub fn key(&self, id: u8) -> Option<&HmacKey> {
        self.keys.iter().find(|k| k.id == id)
    }
    pub fn signs(&self) -> bool {
        self.mode != Mode::ReceiveOnly
    }
}

/// Why a trailer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown scheme or non-zero reserved field.
    Malformed,
    UnknownKey,
    BadHmac,
    /// `anti_replay time`: the timestamp is outside the window.
    Stale,
    Replayed,
}

/// The fields of a trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer<'a> {
    pub ext_type: u8,
    pub key_id: u8,
    pub reserved: u16,
    pub seq: u64,
    pub hmac: &'a [u8],
}

impl<'a> Trailer<'a> {
    /// `None` unless exactly [`TRAILER_LEN`] bytes.
    pub fn parse(t: &'a [u8]) -> Option<Trailer<'a>> {
        if t.len() != TRAILER_LEN {
            return None;
        }
        let sec = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        let sub = u16::from_be_bytes([t[8], t[9]]);
        let ctr = u16::from_be_bytes([t[10], t[11]]);
        Some(Trailer {
            ext_type: t[0],
            key_id: t[1],
            reserved: u16::from_be_bytes([t[2], t[3]]),
            seq: (u64::from(sec) << 32) | (u64::from(sub) << 16) | u64::from(ctr),
            hmac: &t[SIGNED_PREFIX..],
        })
    }
}

/// What the HMAC binds besides the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub version: u8,
    pub vrid: u8,
    /// The sender's address (our source when signing, the packet's when checking).
    pub src: IpAddr,
}

fn pseudo(b: &Binding) -> [u8; PSEUDO_LEN] {
    let mut out = [0u8; PSEUDO_LEN];
    out[1] = b.version;
    out[2] = b.vrid;
    match b.src {
        IpAddr::V4(a) => {
            out[0] = 4;
            out[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out[0] = 6;
            out[4..20].copy_from_slice(&a.octets());
        }
    }
    out
}

/// HMAC over pseudo-header, `msg` (checksum as zero) and the trailer's first 12 bytes.
fn mac(key: &HmacKey, b: &Binding, msg: &[u8], prefix: &[u8]) -> [u8; 32] {
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes).expect("HMAC takes any key length");
    m.update(&pseudo(b));
    let cut = msg.len().min(6);
    m.update(&msg[..cut]);
    m.update(&[0, 0]);
    if msg.len() > 8 {
        m.update(&msg[8..]);
    }
    m.update(prefix);
    m.update(&[0; HMAC_LEN]);
    m.finalize().into_bytes().into()
}

/// The 28-byte trailer for `msg` with `key` and sequence `seq`.
pub fn sign(key: &HmacKey, b: &Binding, msg: &[u8], seq: u64) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[0] = EXT_HMAC_SHA256;
    t[1] = key.id;
    t[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
    t[8..10].copy_from_slice(&((seq >> 16) as u16).to_be_bytes());
    t[10..12].copy_from_slice(&(seq as u16).to_be_bytes());
    let d = mac(key, b, msg, &t[..SIGNED_PREFIX]);
    t[SIGNED_PREFIX..].copy_from_slice(&d[..HMAC_LEN]);
    t
}

/// RFC 1982 serial-number order over the 64-bit sequence.
fn seq_after(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) > 0
}

/// Seconds in the high 32 bits, a 1/65536 s fraction in the next 16, counter 0.
fn clock_seq(now: Duration) -> u64 {
    let sec = now.as_secs() as u32;
    let frac = (u64::from(now.subsec_nanos()) << 16) / 1_000_000_000;
    (u64::from(sec) << 32) | (frac << 16)
}

fn secs_delta(now: Duration, sec: u32) -> i32 {
    (now.as_secs() as u32).wrapping_sub(sec) as i32
}

/// Sending and replay state of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HmacState {
    send_seq: u64,
    /// (sender, last accepted sequence, LRU rank).
    senders: Vec<(IpAddr, u64, u64)>,
    clock: u64,
}

impl HmacState {
    /// The next sequence to send: the clock, or one above the last if the clock has
    /// not moved on (time mode restarts from the clock once the last one is more
    /// than the window ahead of it, after a clock step back).
    pub fn next_seq(&mut self, cfg: &HmacConfig, now: Duration) -> u64 {
        let clk = clock_seq(now);
        if seq_after(clk, self.send_seq) {
            self.send_seq = clk;
            return clk;
        }
        let ahead = ((self.send_seq >> 32) as u32).wrapping_sub((clk >> 32) as u32) as i32;
        if cfg.anti_replay_time && ahead > cfg.time_window as i32 {
            self.send_seq = clk;
        } else {
            self.send_seq = self.send_seq.wrapping_add(1);
        }
        self.send_seq
    }

    /// Check a received trailer `t` for `msg` from `b.src`. The replay mark of a
    /// sender moves only after its HMAC verified. `unicast_peers`: how many
    /// senders to remember (at least the multicast table's 4).
    pub fn check(
        &mut self,
        cfg: &HmacConfig,
        now: Duration,
        b: &Binding,
        msg: &[u8],
        t: &[u8],
        senders_kept: usize,
    ) -> Result<(), Refusal> {
        let tr = Trailer::parse(t).ok_or(Refusal::Malformed)?;
        if tr.ext_type != EXT_HMAC_SHA256 || tr.reserved != 0 {
            return Err(Refusal::Malformed);
        }
        let window = cfg.time_window as i32;
        // Cheap rejection of old captures before the HMAC (it never grants trust).
        if cfg.anti_replay_time && secs_delta(now, (tr.seq >> 32) as u32).abs() > window {
            return Err(Refusal::Stale);
        }
        let key = cfg.key(tr.key_id).ok_or(Refusal::UnknownKey)?;
        let want = mac(key, b, msg, &t[..SIGNED_PREFIX]);
        if !constant_time_eq(&want[..HMAC_LEN], tr.hmac) {
            return Err(Refusal::BadHmac);
        }
        self.clock += 1;
        let rank = self.clock;
        let slot = match self.senders.iter().position(|s| s.0 == b.src) {
            Some(i) => i,
            None => {
                let cap = senders_kept.max(MCAST_SENDERS);
                if self.senders.len() >= cap {
                    let victim = (0..self.senders.len())
                        .min_by_key(|&i| self.senders[i].2)
                        .unwrap_or(0);
                    self.senders.remove(victim);
                }
                // A new sender: anything verified is accepted.
                self.senders.push((b.src, tr.seq.wrapping_sub(1), rank));
                self.senders.len() - 1
            }
        };
        let s = &mut self.senders[slot];
        s.2 = rank;
        // A mark outside the window orders nothing the window lets in: expire it, so
        // a sender whose clock stepped back recovers.
        let expired = cfg.anti_replay_time && secs_delta(now, (s.1 >> 32) as u32).abs() > window;
        if !expired && !seq_after(tr.seq, s.1) {
            return Err(Refusal::Replayed);
        }
        s.1 = tr.seq;
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The time window keepalived derives when `time_window` is not set:
/// 3 × advert interval in whole seconds, within 5..=300.
pub fn default_window(advert_interval: Duration) -> u32 {
    (3 * advert_interval.as_secs() as u32).clamp(5, 300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn cfg() -> HmacConfig {
        HmacConfig {
            keys: vec![
                HmacKey::new(1, vec![0x11; 32]),
                HmacKey::new(2, b"an ascii key that is long enough!".to_vec()),
            ],
            active_key: 1,
            mode: Mode::Enforce,
            anti_replay_time: true,
            time_window: 5,
        }
    }

    fn binding() -> Binding {
        Binding {
            version: 2,
            vrid: 51,
            src: "192.0.2.11".parse().unwrap(),
        }
    }

    const MSG: [u8; 20] = [
        0x21, 51, 100, 1, 0, 1, 0xab, 0xcd, 192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn now() -> Duration {
        Duration::new(1_800_000_000, 500_000_000)
    }

    /// HMAC-SHA256 by RFC 2104 from the plain hash: checks coverage independently.
    fn rfc2104(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let mut i = Sha256::new();
        i.update(k.map(|b| b ^ 0x36));
        i.update(data);
        let ih = i.finalize();
        let mut o = Sha256::new();
        o.update(k.map(|b| b ^ 0x5c));
        o.update(ih);
        o.finalize().into()
    }

    #[test]
    fn trailer_layout_and_coverage() {
        let c = cfg();
        let seq = clock_seq(now()) | 3;
        let t = sign(&c.keys[0], &binding(), &MSG, seq);
        assert_eq!(&t[..4], &[1, 1, 0, 0]);
        assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 1_800_000_000);
        assert_eq!(u16::from_be_bytes([t[8], t[9]]), 0x8000, "half a second");
        assert_eq!(u16::from_be_bytes([t[10], t[11]]), 3);
        let mut input = vec![4, 2, 51, 0, 192, 0, 2, 11];
        input.extend_from_slice(&[0; 12]);
        let mut m = MSG.to_vec();
        m[6] = 0;
        m[7] = 0;
        input.extend_from_slice(&m);
        input.extend_from_slice(&t[..12]);
        input.extend_from_slice(&[0; 16]);
        assert_eq!(&t[12..], &rfc2104(&[0x11; 32], &input)[..16]);
        let p = Trailer::parse(&t).unwrap();
        assert_eq!((p.key_id, p.seq), (1, seq));
    }

    #[test]
    fn check_accepts_then_refuses_replays_forgeries_and_stale() {
        let c = cfg();
        let mut st = HmacState::default();
        let b = binding();
        let s1 = st.next_seq(&c, now());
        let t1 = sign(&c.keys[0], &b, &MSG, s1);
        let mut rx = HmacState::default();
        assert_eq!(rx.check(&c, now(), &b, &MSG, &t1, 0), Ok(()));
        assert_eq!(
            rx.check(&c, now(), &b, &MSG, &t1, 0),
            Err(Refusal::Replayed)
        );
        // The same clock reading: the counter moves on.
        let s2 = st.next_seq(&c, now());
        assert_eq!(s2, s1 + 1);
        let t2 = sign(&c.keys[1], &b, &MSG, s2);
        assert_eq!(rx.check(&c, now(), &b, &MSG, &t2, 0), Ok(()), "key 2 too");
        // The checksum is outside the HMAC (the kernel writes it for IPv6).
        let mut m = MSG;
        m[6] ^= 0xff;
        let t3 = sign(&c.keys[0], &b, &MSG, s2 + 1);
        assert_eq!(rx.check(&c, now(), &b, &m, &t3, 0), Ok(()));
        // A changed priority, another sender, another VRID: forged.
        let t4 = sign(&c.keys[0], &b, &MSG, s2 + 2);
        let mut m = MSG;
        m[2] = 255;
        assert_eq!(rx.check(&c, now(), &b, &m, &t4, 0), Err(Refusal::BadHmac));
        let other = Binding {
            src: "192.0.2.12".parse().unwrap(),
            ..b
        };
        assert_eq!(
            rx.check(&c, now(), &other, &MSG, &t4, 0),
            Err(Refusal::BadHmac)
        );
        let mut bad = t4;
        bad[1] = 9;
        assert_eq!(
            rx.check(&c, now(), &b, &MSG, &bad, 0),
            Err(Refusal::UnknownKey)
        );
        let mut bad = t4;
        bad[0] = 2;
        assert_eq!(
            rx.check(&c, now(), &b, &MSG, &bad, 0),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            rx.check(&c, now(), &b, &MSG, &t4[..27], 0),
            Err(Refusal::Malformed)
        );
        let late = now() + Duration::from_secs(6);
        assert_eq!(rx.check(&c, late, &b, &MSG, &t4, 0), Err(Refusal::Stale));
        // monotonic: no window, only growth.
        let mono = HmacConfig {
            anti_replay_time: false,
            ..c.clone()
        };
        assert_eq!(rx.check(&mono, late, &b, &MSG, &t4, 0), Ok(()));
    }

    #[test]
    fn keys_are_not_printed() {
        let s = format!("{:?}", cfg());
        assert!(!s.contains("ascii key") && !s.contains("17, 17"), "{s}");
    }

    #[test]
    fn send_sequence_survives_a_clock_step_back() {
        let c = cfg();
        let mut st = HmacState::default();
        let a = st.next_seq(&c, now());
        let back = now() - Duration::from_secs(2);
        assert_eq!(st.next_seq(&c, back), a + 1, "within the window: counter");
        let far = now() - Duration::from_secs(60);
        assert_eq!(st.next_seq(&c, far), clock_seq(far), "beyond: restart");
        assert_eq!(default_window(Duration::from_secs(1)), 5);
        assert_eq!(default_window(Duration::from_secs(4)), 12);
    }

    proptest::proptest! {
        #[test]
        fn check_never_panics(t in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                              m in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let mut st = HmacState::default();
            let _ = st.check(&cfg(), now(), &binding(), &m, &t, 0);
        }
    }
}
