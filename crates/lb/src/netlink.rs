//! Netlink message building and a blocking request/ack socket, shared by the nftables
//! (NETLINK_NETFILTER) and IPVS (NETLINK_GENERIC) backends. The encoders write into a
//! [`MsgBuf`] without touching a socket so their output can be compared byte for byte in
//! unit tests; [`NlSocket`] only moves finished buffers.

use std::io;

pub const NLMSG_HDRLEN: usize = 16;
pub const NLA_HDRLEN: usize = 4;
pub const NLA_F_NESTED: u16 = 1 << 15;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A buffer of one or more netlink messages under construction.
#[derive(Debug, Default, Clone)]
pub struct MsgBuf {
    buf: Vec<u8>,
}

/// Handle to an open message or nested attribute (its start offset).
#[derive(Debug, Clone, Copy)]
#[must_use = "close it with end_msg / nest_end"]
pub struct Open(usize);

impl MsgBuf {
    pub fn new() -> MsgBuf {
        MsgBuf::default()
    }

    /// Starts a message: writes an nlmsghdr whose length `end_msg` fills in.
    pub fn begin_msg(&mut self, ty: u16, flags: u16, seq: u32) -> Open {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Open(start)
    }

    pub fn end_msg(&mut self, open: Open) {
        let len = (self.buf.len() - open.0) as u32;
        self.buf[open.0..open.0 + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Raw bytes after the header (nfgenmsg, genlmsghdr), padded to 4.
    pub fn put_raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len()) - self.buf.len();
        self.buf.resize(self.buf.len() + n, 0);
    }

    pub fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (NLA_HDRLEN + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    pub fn attr_u8(&mut self, ty: u16, v: u8) {
        self.attr(ty, &[v]);
    }
    pub fn attr_u16(&mut self, ty: u16, v: u16) {
        self.attr(ty, &v.to_ne_bytes());
    }
    pub fn attr_u16_be(&mut self, ty: u16, v: u16) {
        self.attr(ty, &v.to_be_bytes());
    }
    pub fn attr_u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }
    pub fn attr_u32_be(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }
    pub fn attr_u64_be(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }
    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    /// Opens a nested attribute (NLA_F_NESTED set, as the kernel's strict policies want).
    pub fn nest_begin(&mut self, ty: u16) -> Open {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        Open(start)
    }

    pub fn nest_end(&mut self, open: Open) {
        let len = (self.buf.len() - open.0) as u16;
        self.buf[open.0..open.0 + 2].copy_from_slice(&len.to_ne_bytes());
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// One received netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the 16-byte header.
    pub payload: Vec<u8>,
}

/// Splits a datagram into messages; stops at the first malformed header.
pub fn parse_msgs(mut data: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        out.push(Msg {
            ty: u16::from_ne_bytes(data[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(data[6..8].try_into().unwrap()),
            seq: u32::from_ne_bytes(data[8..12].try_into().unwrap()),
            payload: data[NLMSG_HDRLEN..len].to_vec(),
        });
        data = &data[align4(len).min(data.len())..];
    }
    out
}

/// Iterates the attributes of a payload region: yields (type without flag bits, value).
pub fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < NLA_HDRLEN || len > data.len() {
            return None;
        }
        let value = &data[NLA_HDRLEN..len];
        data = &data[align4(len).min(data.len())..];
        Some((ty, value))
    })
}

/// An error the kernel answered to one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("netlink request {seq} (message type {ty}) failed: {err}")]
pub struct NlError {
    pub seq: u32,
    pub ty: u16,
    pub err: KernelErrno,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelErrno(pub i32);

impl std::fmt::Display for KernelErrno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.0))
    }
}

/// Reads the errno and the failing request's type from an NLMSG_ERROR payload
/// (0 = acknowledgement).
pub fn error_of(payload: &[u8]) -> Option<(i32, u16)> {
    if payload.len() < 4 + NLMSG_HDRLEN {
        return None;
    }
    let code = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
    let ty = u16::from_ne_bytes(payload[8..10].try_into().unwrap());
    // i32::MIN has no negation: still an error (any non-zero errno is), never a panic.
    Some((code.saturating_neg(), ty))
}

/// A blocking netlink socket for request/ack exchanges.
pub struct NlSocket {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NlSocket {
    /// `protocol`: `libc::NETLINK_NETFILTER` or `libc::NETLINK_GENERIC`.
    pub fn open(protocol: isize) -> io::Result<NlSocket> {
        let mut sock = netlink_sys::Socket::new(protocol)?;
        sock.bind_auto()?;
        // Big batches (10,000 real servers) are answered with one ack per message.
        let _ = sock.set_rx_buf_sz(8 << 20);
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(NlSocket {
            sock,
            seq,
            buf: vec![0u8; 1 << 20],
        })
    }

    /// A fresh sequence number for the next message.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `msgs` and waits for an ack of every sequence number in `acks` (messages
    /// sent with NLM_F_ACK). Returns the first error; all acks are drained either way.
    pub fn transact(&mut self, msgs: &[u8], acks: &[u32]) -> anyhow::Result<()> {
        self.sock.send(msgs, 0)?;
        let mut pending: std::collections::BTreeSet<u32> = acks.iter().copied().collect();
        let mut first_err: Option<NlError> = None;
        while !pending.is_empty() {
            let n = self.recv()?;
            for m in parse_msgs(&self.buf[..n]) {
                if m.ty == NLMSG_ERROR {
                    if let Some((errno, ty)) = error_of(&m.payload) {
                        pending.remove(&m.seq);
                        if errno != 0 && first_err.is_none() {
                            first_err = Some(NlError {
                                seq: m.seq,
                                ty,
                                err: KernelErrno(errno),
                            });
                            // nfnetlink batches abort on the first error; the kernel may not
                            // ack the rest.
                            pending.retain(|s| *s < m.seq);
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Sends one dump request and returns every reply message up to NLMSG_DONE.
    pub fn dump(&mut self, msg: &[u8]) -> anyhow::Result<Vec<Msg>> {
        self.sock.send(msg, 0)?;
        let mut out = Vec::new();
        loop {
            let n = self.recv()?;
            for m in parse_msgs(&self.buf[..n]) {
                match m.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        if let Some((errno, ty)) = error_of(&m.payload) {
                            if errno != 0 {
                                return Err(NlError {
                                    seq: m.seq,
                                    ty,
                                    err: KernelErrno(errno),
                                }
                                .into());
                            }
                        }
                    }
                    _ => out.push(m),
                }
            }
        }
    }

    fn recv(&mut self) -> io::Result<usize> {
        loop {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/lb_netlink.rs: an NLMSG_ERROR whose error field is
    /// i32::MIN overflowed the negation (a panic with overflow checks, a negative
    /// "errno" without). It is an error like any non-zero code.
    #[test]
    fn error_code_i32_min_is_an_error_not_an_overflow() {
        let datagram: &[u8] = &[
            0x74, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x80, 0x74, 0x00, 0x00, 0x00, 0x24, 0x00, 0x02, 0x00,
            0x05, 0x00, 0x00, 0x00, 0x92, 0x10, 0x00, 0x00, 0x06, 0x00, 0x01, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x06, 0x00, 0x02, 0x26, 0x00, 0x06, 0x00, 0x00, 0x00, 0x14, 0x00, 0x03,
            0x00, 0xc0, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x06, 0x55, 0x55, 0x55, 0x55,
            0x55, 0x55, 0x56, 0x06, 0x00, 0x04, 0x00, 0x00, 0xff, 0xff, 0xff, 0x08, 0x00, 0x08,
            0x00, 0x00, 0x07, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00, 0x08, 0x92, 0x10, 0x00, 0x00,
            0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x14, 0x00, 0x03, 0x00, 0xc0, 0x00, 0x02, 0x0a,
            0x00, 0x00, 0x80, 0x08, 0x01, 0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00,
        ];
        let msgs = parse_msgs(datagram);
        let errs: Vec<_> = msgs.iter().filter_map(|m| error_of(&m.payload)).collect();
        assert!(errs.iter().any(|(e, _)| *e == i32::MAX), "{errs:?}");
        let mut p = i32::MIN.to_ne_bytes().to_vec();
        p.extend([0u8; NLMSG_HDRLEN]);
        assert_eq!(error_of(&p), Some((i32::MAX, 0)));
        p[..4].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(error_of(&p), Some((17, 0)));
    }

    #[test]
    fn message_and_nested_attribute_layout() {
        let mut b = MsgBuf::new();
        let m = b.begin_msg(0x0a00, NLM_F_REQUEST | NLM_F_ACK, 7);
        b.put_raw(&[2, 0, 0, 0]);
        let n = b.nest_begin(1);
        b.attr_str(1, "ab");
        b.attr_u32_be(2, 0x0102_0304);
        b.nest_end(n);
        b.end_msg(m);
        let bytes = b.as_bytes();
        // 16 header + 4 raw + 4 nest hdr + 8 ("ab\0" padded) + 8 (u32) = 40
        assert_eq!(bytes.len(), 40);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(bytes[20..22].try_into().unwrap()), 20);
        assert_eq!(
            u16::from_ne_bytes(bytes[22..24].try_into().unwrap()),
            1 | NLA_F_NESTED
        );
        assert_eq!(&bytes[24..32], &[7, 0, 1, 0, b'a', b'b', 0, 0]);
        assert_eq!(&bytes[36..40], &[1, 2, 3, 4]);
        let msgs = parse_msgs(bytes);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].seq, 7);
        let outer: Vec<_> = attrs(&msgs[0].payload[4..]).collect();
        assert_eq!(outer.len(), 1);
        let inner: Vec<_> = attrs(outer[0].1).collect();
        assert_eq!(inner, vec![(1, &b"ab\0"[..]), (2, &[1u8, 2, 3, 4][..])]);
    }
}
