//! UDP_CHECK: send `payload` (or random bytes) on a connected UDP socket. Without
//! `require_reply` the check fails only on an ICMP error (port/host/network
//! unreachable, reported by the kernel on the connected socket) within
//! `connect_timeout`; with it, a reply whose length is within
//! `min_reply_length..=max_reply_length` and that matches the pattern must arrive.

use tokio::time::Instant;

use super::{random_u64, secs, short, udp_connect, Probe};
use crate::sched::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp {
    /// `None`: 16 random bytes each time.
    pub payload: Option<Vec<u8>>,
    pub require_reply: Option<Pattern>,
    pub min_reply_length: usize,
    pub max_reply_length: usize,
}

/// A `require_reply` hex string: bytes with a mask (`X` nibbles are ignored). Empty =
/// any reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern(pub Vec<(u8, u8)>);

impl Pattern {
    /// Whether `reply` matches up to the shorter of the two lengths.
    pub fn matches(&self, reply: &[u8]) -> bool {
        self.0
            .iter()
            .zip(reply)
            .all(|(&(v, mask), &b)| b & mask == v & mask)
    }
}

/// keepalived's free-format hex: whitespace separates groups; in a group, digits
/// pair up from the left and a final odd digit is a byte of its own
/// (`Ab12f 3 456` → `AB 12 0F 03 45 06`). With `wildcards`, `X`/`x` is a nibble
/// that matches anything.
pub fn parse_hex(s: &str, wildcards: bool) -> Result<Pattern, String> {
    let nibble = |c: char| -> Result<(u8, u8), String> {
        match c {
            'x' | 'X' if wildcards => Ok((0, 0)),
            c => c
                .to_digit(16)
                .map(|d| (d as u8, 0xf))
                .ok_or_else(|| format!("`{c}` is not a hex digit")),
        }
    };
    let mut out = Vec::new();
    for group in s.split_whitespace() {
        let chars: Vec<char> = group.chars().collect();
        for pair in chars.chunks(2) {
            let (v, m) = match pair {
                [hi, lo] => {
                    let (hv, hm) = nibble(*hi)?;
                    let (lv, lm) = nibble(*lo)?;
                    ((hv << 4) | lv, (hm << 4) | lm)
                }
                [d] => nibble(*d)?,
                _ => unreachable!(),
            };
            out.push((v, m));
        }
    }
    Ok(Pattern(out))
}

impl Udp {
    pub async fn run(&self, p: &Probe) -> Outcome {
        match self.check(p).await {
            Ok(why) => Outcome {
                ok: true,
                reason: why.into(),
                weight: None,
            },
            Err(e) => Outcome::fail(e),
        }
    }

    async fn check(&self, p: &Probe) -> Result<String, String> {
        let deadline = Instant::now() + p.timeout;
        let sock = udp_connect(p).await?;
        let payload = match &self.payload {
            Some(b) => b.clone(),
            None => {
                let (a, b) = (random_u64(), random_u64());
                [a.to_be_bytes(), b.to_be_bytes()].concat()
            }
        };
        sock.send(&payload)
            .await
            .map_err(|e| format!("send: {}", icmp_reason(&e)))?;
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => match &self.require_reply {
                Some(_) => Err(format!("no reply within {}", secs(p.timeout))),
                None => Ok(format!("no ICMP error within {}", secs(p.timeout))),
            },
            Ok(Err(e)) => Err(icmp_reason(&e)),
            Ok(Ok(n)) => {
                let reply = &buf[..n];
                if let Some(pattern) = &self.require_reply {
                    if n < self.min_reply_length || n > self.max_reply_length {
                        return Err(format!(
                            "reply of {n} bytes not within {}-{}",
                            self.min_reply_length, self.max_reply_length
                        ));
                    }
                    if !pattern.matches(reply) {
                        return Err("reply does not match require_reply".into());
                    }
                }
                Ok(format!("reply of {n} bytes"))
            }
        }
    }
}

fn icmp_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "ICMP port unreachable".into(),
        Some(libc::EHOSTUNREACH) => "ICMP host unreachable".into(),
        Some(libc::ENETUNREACH) => "ICMP network unreachable".into(),
        _ => short(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(p: &Pattern) -> Vec<u8> {
        p.0.iter().map(|b| b.0).collect()
    }

    #[test]
    fn free_format_hex_like_the_man_page() {
        let p = parse_hex("Ab12f 3 456 546443123", false).unwrap();
        assert_eq!(
            bytes(&p),
            [0xAB, 0x12, 0x0F, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03]
        );
        assert!(p.0.iter().all(|b| b.1 == 0xff || b.1 == 0x0f));
        assert!(parse_hex("12 zz", false).is_err());
        assert!(parse_hex("1X", false).is_err());
        assert_eq!(parse_hex("", false).unwrap(), Pattern::default());
    }

    #[test]
    fn wildcards_ignore_nibbles() {
        let p = parse_hex("aXx5 ff", true).unwrap();
        assert_eq!(p.0, [(0xa0, 0xf0), (0x05, 0x0f), (0xff, 0xff)]);
        assert!(p.matches(&[0xa7, 0x35, 0xff]));
        assert!(p.matches(&[0xa7, 0x35, 0xff, 0x00])); // longer reply
        assert!(p.matches(&[0xa7])); // shorter reply: compared up to its length
        assert!(!p.matches(&[0xb7, 0x35, 0xff]));
        assert!(!p.matches(&[0xa7, 0x36, 0xff]));
        assert!(Pattern::default().matches(b"anything"));
    }
}
