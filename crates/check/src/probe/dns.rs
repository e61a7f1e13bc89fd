//! DNS_CHECK: one query (`type`, default SOA; `name`, default `.`) over UDP. The
//! answer must carry our id, have QR set, RCODE 0 (NOERROR), echo the question and
//! hold at least one answer record.

use tokio::time::Instant;

use super::{random_u64, secs, short, udp_connect, Probe};
use crate::sched::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub name: String,
    pub qtype: u16,
}

/// `type` keyword values and their codes.
pub const TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];

pub fn qtype(name: &str) -> Option<u16> {
    TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|t| t.1)
}

fn type_name(code: u16) -> String {
    TYPES
        .iter()
        .find(|t| t.1 == code)
        .map_or_else(|| format!("TYPE{code}"), |t| t.0.to_string())
}

/// `name` as wire labels (`.`/empty = the root).
pub fn encode_name(name: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(format!("`{name}`: empty label"));
            }
            if label.len() > 63 {
                return Err(format!("`{name}`: label longer than 63 bytes"));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() > 255 {
        return Err(format!("`{name}`: longer than 255 bytes"));
    }
    Ok(out)
}

/// A standard query: id, RD set, one question of class IN.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1 AN=NS=AR=0
    q.extend_from_slice(&encode_name(name)?);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

const RCODES: &[&str] = &[
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];

/// Reads a possibly compressed name at `pos`; returns it (lowercase, dotted, `.` for
/// the root) and the position after it in the original data.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or("truncated name")? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    let after = end.unwrap_or(pos + 1);
                    let name = if labels.is_empty() {
                        ".".to_string()
                    } else {
                        labels.join(".")
                    };
                    return Ok((name, after));
                }
                let label = msg.get(pos + 1..pos + 1 + len).ok_or("truncated label")?;
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or("truncated pointer")? as usize;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                jumps += 1;
                if jumps > 64 {
                    return Err("compression loop".into());
                }
                pos = ((len & 0x3f) << 8) | lo;
            }
            _ => return Err("bad label type".into()),
        }
    }
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, String> {
    msg.get(pos..pos + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated".to_string())
}

/// Checks a response to `encode_query(id, name, qtype)`; returns the number of
/// answer records.
pub fn check_response(msg: &[u8], id: u16, name: &str, qtype: u16) -> Result<usize, String> {
    if msg.len() < 12 {
        return Err(format!("short response ({} bytes)", msg.len()));
    }
    let got_id = u16_at(msg, 0)?;
    if got_id != id {
        return Err(format!("id {got_id} is not {id}"));
    }
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 {
        return Err("not a response (QR 0)".into());
    }
    let rcode = (flags & 0xf) as usize;
    if rcode != 0 {
        return Err(format!(
            "RCODE {}",
            RCODES
                .get(rcode)
                .map_or_else(|| rcode.to_string(), |s| s.to_string())
        ));
    }
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)? as usize;
    if qd != 1 {
        return Err(format!("{qd} questions in the response"));
    }
    let (qname, mut pos) = read_name(msg, 12).map_err(|e| format!("question: {e}"))?;
    let want = encode_name(name)?;
    let (want_name, _) = read_name(&want, 0)?;
    let (qt, qc) = (u16_at(msg, pos)?, u16_at(msg, pos + 2)?);
    if qname != want_name || qt != qtype || qc != 1 {
        return Err(format!(
            "question is {qname} {} (asked {want_name} {})",
            type_name(qt),
            type_name(qtype)
        ));
    }
    pos += 4;
    if an == 0 {
        return Err("no answer".into());
    }
    for i in 0..an {
        let (_, p) = read_name(msg, pos).map_err(|e| format!("answer {i}: {e}"))?;
        let rdlen = u16_at(msg, p + 8).map_err(|e| format!("answer {i}: {e}"))? as usize;
        pos = p + 10 + rdlen;
        if pos > msg.len() {
            return Err(format!("answer {i}: truncated"));
        }
    }
    Ok(an)
}

impl Dns {
    pub async fn run(&self, p: &Probe) -> Outcome {
        match self.check(p).await {
            Ok(n) => Outcome {
                ok: true,
                reason: format!("{n} answer(s)").into(),
                weight: None,
            },
            Err(e) => Outcome::fail(e),
        }
    }

    async fn check(&self, p: &Probe) -> Result<usize, String> {
        let deadline = Instant::now() + p.timeout;
        let id = random_u64() as u16;
        let query = encode_query(id, &self.name, self.qtype)?;
        let sock = udp_connect(p).await?;
        sock.send(&query)
            .await
            .map_err(|e| format!("send: {}", short(&e)))?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => return Err(format!("no answer within {}", secs(p.timeout))),
                Ok(Err(e)) => return Err(format!("recv: {}", short(&e))),
                Ok(Ok(n)) => n,
            };
            // A late answer to an earlier query: keep waiting for ours.
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id {
                continue;
            }
            return check_response(&buf[..n], id, &self.name, self.qtype);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `q` with `answers` records of `qtype` and the given RCODE; the
    /// answers use a compression pointer to the question name.
    pub(crate) fn respond(q: &[u8], rcode: u8, answers: usize) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] |= 0x80; // QR
        r[3] = (r[3] & 0xf0) | rcode;
        r[6..8].copy_from_slice(&(answers as u16).to_be_bytes());
        let qtype = [q[q.len() - 4], q[q.len() - 3]];
        for _ in 0..answers {
            r.extend_from_slice(&[0xc0, 12]);
            r.extend_from_slice(&qtype);
            r.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        }
        r
    }

    #[test]
    fn query_encoding() {
        let q = encode_query(0x1234, "www.example.org", 1).unwrap();
        assert_eq!(
            q,
            [
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x',
                b'a', b'm', b'p', b'l', b'e', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1
            ]
        );
        // The root, with or without the dot; a trailing dot is ignored.
        assert_eq!(encode_name(".").unwrap(), [0]);
        assert_eq!(encode_name("").unwrap(), [0]);
        assert_eq!(encode_name("a.b.").unwrap(), encode_name("a.b").unwrap());
        assert!(encode_name("a..b").is_err());
        assert!(encode_name(&"x".repeat(64)).is_err());
        assert!(encode_name(&["abcdefghi"; 30].join(".")).is_err());
        assert_eq!(qtype("soa"), Some(6));
        assert_eq!(qtype("AAAA"), Some(28));
        assert_eq!(qtype("PTR"), None);
    }

    #[test]
    fn response_checks() {
        let q = encode_query(7, "example.org", 6).unwrap();
        assert_eq!(
            check_response(&respond(&q, 0, 2), 7, "example.org", 6),
            Ok(2)
        );
        // Case-insensitive name, trailing dot.
        assert_eq!(
            check_response(&respond(&q, 0, 1), 7, "Example.ORG.", 6),
            Ok(1)
        );
        assert_eq!(
            check_response(&respond(&q, 3, 0), 7, "example.org", 6),
            Err("RCODE NXDOMAIN".into())
        );
        assert_eq!(
            check_response(&respond(&q, 0, 0), 7, "example.org", 6),
            Err("no answer".into())
        );
        assert!(check_response(&respond(&q, 0, 1), 8, "example.org", 6)
            .unwrap_err()
            .starts_with("id 7"));
        assert!(check_response(&q, 7, "example.org", 6)
            .unwrap_err()
            .contains("QR"));
        assert!(check_response(&respond(&q, 0, 1), 7, "example.com", 6)
            .unwrap_err()
            .contains("question"));
        assert!(check_response(&respond(&q, 0, 1), 7, "example.org", 1)
            .unwrap_err()
            .contains("question"));
        // Truncated answer section, short message, pointer loop.
        let r = respond(&q, 0, 1);
        assert!(check_response(&r[..r.len() - 2], 7, "example.org", 6)
            .unwrap_err()
            .contains("truncated"));
        assert!(check_response(&r[..5], 7, "example.org", 6).is_err());
        let mut looped = respond(&q, 0, 1);
        let at = q.len();
        looped[at] = 0xc0;
        looped[at + 1] = at as u8;
        assert!(check_response(&looped, 7, "example.org", 6)
            .unwrap_err()
            .contains("loop"));
        // Root SOA.
        let q = encode_query(9, ".", 6).unwrap();
        assert_eq!(check_response(&respond(&q, 0, 1), 9, ".", 6), Ok(1));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = check_response(&data, 1, "example.org", 1);
        }
    }
}
