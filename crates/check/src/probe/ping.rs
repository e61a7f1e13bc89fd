//! PING_CHECK: one ICMP / ICMPv6 echo request; success when the matching echo reply
//! arrives within `connect_timeout`.
//!
//! Uses an unprivileged "ping" socket (`SOCK_DGRAM`, `IPPROTO_ICMP[V6]`: the kernel
//! picks the identifier and hands each socket only its own replies) when
//! `net.ipv4.ping_group_range` allows it, else a raw socket (root / CAP_NET_RAW),
//! filtered by identifier, sequence and payload. Unlike keepalived, vipd does not
//! widen `ping_group_range`.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use socket2::{Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use super::{random_u64, secs, short, Probe};
use crate::sched::Outcome;

const PAYLOAD_LEN: usize = 24;

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = match chunk {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += word as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request (type 8 or 128) with its ICMPv4 checksum (the kernel fills in
/// ICMPv6's).
pub(crate) fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    if !v6 {
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// Whether `pkt` (ICMP, or IPv4 + ICMP from a raw v4 socket) is the reply to our
/// request. `id` is checked only on raw sockets (ping sockets rewrite it).
pub(crate) fn is_reply(pkt: &[u8], v6: bool, raw: bool, id: u16, seq: u16, payload: &[u8]) -> bool {
    let icmp = if raw && !v6 {
        let ihl = match pkt.first() {
            Some(b) if b >> 4 == 4 => ((b & 0xf) as usize) * 4,
            _ => return false,
        };
        match pkt.get(ihl..) {
            Some(p) => p,
            None => return false,
        }
    } else {
        pkt
    };
    if icmp.len() < 8 || icmp[0] != if v6 { 129 } else { 0 } || icmp[1] != 0 {
        return false;
    }
    let (rid, rseq) = (
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    );
    (!raw || rid == id) && rseq == seq && &icmp[8..] == payload
}

fn open(p: &Probe, v6: bool) -> io::Result<(Socket, bool)> {
    let proto = if v6 {
        Protocol::ICMPV6
    } else {
        Protocol::ICMPV4
    };
    match p.socket(Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s, false)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            p.socket(Type::RAW, Some(proto)).map(|s| (s, true))
        }
        Err(e) => Err(e),
    }
}

pub async fn run(p: &Probe) -> Outcome {
    match check(p).await {
        Ok(()) => Outcome::ok(),
        Err(e) => Outcome::fail(e),
    }
}

async fn check(p: &Probe) -> Result<(), String> {
    let deadline = Instant::now() + p.timeout;
    let target = p.target_addr();
    let v6 = matches!(target, SocketAddr::V6(_));
    let (sock, raw) = open(p, v6).map_err(|e| format!("socket: {}", short(&e)))?;
    let dest = SocketAddr::new(target.ip(), 0);
    let dest = match (dest, target) {
        (SocketAddr::V6(mut d), SocketAddr::V6(t)) => {
            d.set_scope_id(t.scope_id());
            SocketAddr::V6(d)
        }
        (d, _) => d,
    };
    sock.connect(&dest.into())
        .map_err(|e| format!("connect: {}", short(&e)))?;
    // SAFETY: a socket2::Socket owns its descriptor and always returns the same one.
    let fd = unsafe { AsyncFd::register(sock) }
        .map_err(|e| format!("socket: {}", short(&e.into_parts().1)))?;
    let r = random_u64();
    let (id, seq) = (r as u16, (r >> 16) as u16);
    let payload: Vec<u8> = (0..PAYLOAD_LEN)
        .map(|i| (r >> (8 * (i % 8))) as u8 ^ i as u8)
        .collect();
    let req = echo_request(v6, id, seq, &payload);
    let io = async {
        loop {
            let mut guard = fd.writable().await.map_err(|e| short(&e))?;
            match guard.try_io(|s| s.get_ref().send(&req)) {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => return Err(format!("send: {}", short(&e))),
                Err(_would_block) => continue,
            }
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        loop {
            let mut guard = fd.readable().await.map_err(|e| short(&e))?;
            let n = match guard.try_io(|s| s.get_ref().recv(&mut buf)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("recv: {}", short(&e))),
                Err(_would_block) => continue,
            };
            // SAFETY: recv initialised the first n bytes.
            let pkt: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
            if is_reply(pkt, v6, raw, id, seq, &payload) {
                return Ok(());
            }
        }
    };
    match tokio::time::timeout_at(deadline, io).await {
        Ok(r) => r,
        Err(_) => Err(format!("no echo reply within {}", secs(p.timeout))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_verifies() {
        let m = echo_request(false, 0x1234, 7, b"abc");
        assert_eq!(&m[..2], [8, 0]);
        assert_eq!(checksum(&m), 0, "a correct checksum sums to zero");
        let m6 = echo_request(true, 1, 2, b"x");
        assert_eq!(&m6[..4], [128, 0, 0, 0]);
    }

    #[test]
    fn reply_matching() {
        let mut reply = echo_request(false, 5, 9, b"payload");
        reply[0] = 0;
        assert!(is_reply(&reply, false, false, 0, 9, b"payload"));
        assert!(!is_reply(&reply, false, false, 0, 10, b"payload"));
        assert!(!is_reply(&reply, false, false, 0, 9, b"other!!"));
        assert!(!is_reply(&reply, true, false, 0, 9, b"payload"));
        // Raw v4: behind a 20-byte IP header, and the id counts.
        let mut raw = vec![0x45; 1];
        raw.extend_from_slice(&[0; 19]);
        raw.extend_from_slice(&reply);
        assert!(is_reply(&raw, false, true, 5, 9, b"payload"));
        assert!(!is_reply(&raw, false, true, 6, 9, b"payload"));
        // Our own request (echoed on loopback raw sockets) is not a reply.
        let req = echo_request(false, 5, 9, b"payload");
        assert!(!is_reply(&req, false, false, 5, 9, b"payload"));
        assert!(!is_reply(&[], false, true, 5, 9, b""));
    }
}
