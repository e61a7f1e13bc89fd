//! The NETLINK_NETFILTER socket of the nftables backend: sends whole batches in one
//! `sendmsg` (the kernel only treats a batch as a transaction when BEGIN and END arrive in
//! the same datagram, so the send buffer is grown to the batch size) and collects the
//! per-message acks with extended-ack details.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;

use anyhow::{anyhow, Context};

use super::decode;
use crate::netlink::{error_of, parse_msgs, Msg, NLMSG_DONE, NLMSG_ERROR};

pub struct NftSocket {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
    sndbuf: usize,
    rcvbuf: usize,
}

/// The kernel refused one message of a batch (the whole batch was rolled back).
#[derive(Debug, Clone, thiserror::Error)]
#[error("nftables: {what}: {err}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct BatchError {
    /// Description of the failing message, e.g. `add rule ip vipd svc1 [...]`.
    pub what: String,
    pub err: crate::netlink::KernelErrno,
    /// Extended ack message / offset.
    pub detail: Option<String>,
}

impl NftSocket {
    pub fn open() -> io::Result<NftSocket> {
        let mut sock = netlink_sys::Socket::new(libc::NETLINK_NETFILTER as isize)?;
        sock.bind_auto()?;
        // Errors echo only the header of the failing request, plus a message/offset.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_rx_buf_sz(8usize << 20);
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: valid fd, option value of the declared size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(NftSocket {
            sock,
            seq,
            buf: vec![0u8; 1 << 20],
            sndbuf: 0,
            rcvbuf: 0,
        })
    }

    /// The next unused sequence number (a batch numbers its messages from here on).
    pub fn next_seq(&self) -> u32 {
        self.seq.wrapping_add(1)
    }

    /// Marks `n` sequence numbers from [`next_seq`](Self::next_seq) as used.
    pub fn use_seqs(&mut self, n: u32) {
        self.seq = self.seq.wrapping_add(n);
    }

    fn grow_sndbuf(&mut self, len: usize) {
        if len + 4096 <= self.sndbuf {
            return;
        }
        let want = (len + (64 << 10)).max(1 << 20);
        self.sndbuf = self.force_buf(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, want);
    }

    /// Room for one ack per message of a batch: the kernel queues them all before
    /// `sendmsg` returns, each ack a whole skb (~0.7 KiB of buffer accounting), so a
    /// batch of thousands of messages overflows the default receive buffer (capped by
    /// `net.core.rmem_max`) — acks are lost and the socket reports ENOBUFS although the
    /// batch was committed.
    fn grow_rcvbuf(&mut self, msgs: usize) {
        let want = (msgs * 1024 + (1 << 20)).max(8 << 20);
        if want <= self.rcvbuf {
            return;
        }
        self.rcvbuf = self.force_buf(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, want);
    }

    /// Sets a socket buffer to `want` bytes with `force` (CAP_NET_ADMIN: past the
    /// `*mem_max` cap), else `plain`; returns the size known to be in place (0: unknown).
    fn force_buf(&self, force: libc::c_int, plain: libc::c_int, want: usize) -> usize {
        let v = want.min(i32::MAX as usize / 2) as libc::c_int;
        for opt in [force, plain] {
            // SAFETY: valid fd, int option.
            let r = unsafe {
                libc::setsockopt(
                    self.sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &v as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                // The kernel doubles the value; the plain option is capped by *mem_max.
                return if opt == force { want } else { 0 };
            }
        }
        0
    }

    /// Sends a finished batch and waits for every message's ack. On failure the kernel
    /// has rolled the whole batch back.
    pub fn send_batch(
        &mut self,
        bytes: &[u8],
        begin_seq: u32,
        msgs: &[(u32, String)],
    ) -> anyhow::Result<()> {
        self.grow_sndbuf(bytes.len());
        self.grow_rcvbuf(msgs.len());
        self.sock
            .send(bytes, 0)
            .with_context(|| format!("sending an nftables batch of {} bytes", bytes.len()))?;
        let names: BTreeMap<u32, &str> = msgs.iter().map(|(s, w)| (*s, w.as_str())).collect();
        let mut pending: std::collections::BTreeSet<u32> = names.keys().copied().collect();
        let mut first_err: Option<BatchError> = None;
        let mut batch_err: Option<BatchError> = None;
        // The kernel processes the batch inside sendmsg, so every answer is queued by now;
        // the blocking receive (with its timeout) is only a safety net.
        while !pending.is_empty() && batch_err.is_none() {
            let n = self.recv(0).context("waiting for nftables acks")?;
            for m in parse_msgs(&self.buf[..n]) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let Some((errno, _)) = error_of(&m.payload) else {
                    continue;
                };
                pending.remove(&m.seq);
                if errno == 0 {
                    continue;
                }
                let (text, offs) = decode::ext_ack(m.flags, &m.payload);
                let detail = match (text, offs) {
                    (Some(t), Some(o)) => Some(format!("{t}, attribute at offset {o}")),
                    (Some(t), None) => Some(t),
                    (None, Some(o)) => Some(format!("attribute at offset {o}")),
                    (None, None) => None,
                };
                let e = BatchError {
                    what: names
                        .get(&m.seq)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "batch".to_string()),
                    err: crate::netlink::KernelErrno(errno),
                    detail,
                };
                if m.seq == begin_seq || !names.contains_key(&m.seq) {
                    batch_err.get_or_insert(e);
                } else {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Drain anything left (acks after an early batch error).
        while let Ok(n) = self.recv(libc::MSG_DONTWAIT) {
            if n == 0 {
                break;
            }
        }
        match first_err.or(batch_err) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Sends a dump request and returns every reply up to NLMSG_DONE.
    pub fn dump(&mut self, req: &[u8]) -> anyhow::Result<Vec<Msg>> {
        let mut out = Vec::new();
        self.dump_each(req, |m| {
            out.push(m);
            true
        })?;
        Ok(out)
    }

    /// Sends a dump request and hands every reply up to NLMSG_DONE to `f` as it arrives
    /// (a big dump is never held in memory at once). When `f` returns false the dump is
    /// abandoned and `false` returned: the rest of it is still queued, so the socket must
    /// then be dropped (which ends the dump in the kernel).
    pub fn dump_each(
        &mut self,
        req: &[u8],
        mut f: impl FnMut(Msg) -> bool,
    ) -> anyhow::Result<bool> {
        self.sock.send(req, 0)?;
        loop {
            let n = self.recv(0).context("reading an nftables dump")?;
            for m in parse_msgs(&self.buf[..n]) {
                match m.ty {
                    NLMSG_DONE => return Ok(true),
                    NLMSG_ERROR => {
                        if let Some((errno, _)) = error_of(&m.payload) {
                            if errno != 0 {
                                return Err(anyhow!(
                                    "nftables dump: {}",
                                    crate::netlink::KernelErrno(errno)
                                ));
                            }
                        }
                    }
                    _ => {
                        if !f(m) {
                            return Ok(false);
                        }
                    }
                }
            }
        }
    }

    fn recv(&mut self, flags: libc::c_int) -> io::Result<usize> {
        loop {
            match self.sock.recv(&mut &mut self.buf[..], flags) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
