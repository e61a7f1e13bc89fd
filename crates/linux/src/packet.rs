//! AF_PACKET transmit socket for gratuitous ARP and unsolicited NA frames. Frames are
//! built by `vipd_vrrp::wire`; this only puts them on the wire of a given interface.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    pub fn open() -> io::Result<PacketSocket> {
        // Protocol 0: transmit only, the kernel queues nothing to us.
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Send a complete Ethernet frame out of `ifindex`.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        let addr = link_addr(ifindex, frame);
        // SAFETY: frame and addr are live for the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Send many frames, (ifindex, frame) each, [`BATCH`] per `sendmmsg(2)` call (a
    /// take-over of thousands of VIPs announces each of them). A frame the kernel
    /// refuses is reported (its position in `frames`, the error) and the ones after it
    /// still go.
    pub fn send_many(&self, frames: &[(u32, Vec<u8>)]) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        for (c, chunk) in frames.chunks(BATCH).enumerate() {
            let mut addrs: Vec<libc::sockaddr_ll> =
                chunk.iter().map(|(i, f)| link_addr(*i, f)).collect();
            let mut iovs: Vec<libc::iovec> = chunk
                .iter()
                .map(|(_, f)| libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                })
                .collect();
            // SAFETY: mmsghdr is plain data; zeroed is a valid starting value.
            let mut msgs: Vec<libc::mmsghdr> = (0..chunk.len())
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            for (k, m) in msgs.iter_mut().enumerate() {
                m.msg_hdr.msg_name = (&mut addrs[k] as *mut libc::sockaddr_ll).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                m.msg_hdr.msg_iov = &mut iovs[k];
                m.msg_hdr.msg_iovlen = 1;
            }
            let mut at = 0;
            while at < msgs.len() {
                // SAFETY: every header points at an address, iovec and frame that live
                // until the call returns.
                let rc = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        msgs[at..].as_mut_ptr(),
                        (msgs.len() - at) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if rc < 0 {
                    // The first of the remaining ones failed: report it, go on after it.
                    failed.push((c * BATCH + at, io::Error::last_os_error()));
                    at += 1;
                } else {
                    at += (rc as usize).max(1);
                }
            }
        }
        failed
    }
}

/// Frames per `sendmmsg(2)` call.
const BATCH: usize = 64;

/// Where a frame goes: out of `ifindex`, to its Ethernet destination.
fn link_addr(ifindex: u32, frame: &[u8]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More frames than one `sendmmsg` batch, one to a missing interface in the middle
    /// of a batch: that one is reported by position, every other one leaves.
    #[test]
    fn send_many_reports_each_refused_frame_and_sends_the_rest() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
                let ip = |args: &[&str]| {
                    let ok = std::process::Command::new("ip").args(args).status();
                    assert!(ok.unwrap().success(), "ip {args:?}");
                };
                // No IPv6 here: d0 coming up would send MLD reports / router
                // solicitations of its own, which d1 counts (131 for 130, once).
                for conf in ["all", "default"] {
                    let f = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                    if std::path::Path::new(&f).exists() {
                        std::fs::write(&f, "1").expect("disable IPv6 in the test's netns");
                    }
                }
                ip(&["link", "add", "d0", "type", "veth", "peer", "d1"]);
                ip(&["link", "set", "d0", "up"]);
                ip(&["link", "set", "d1", "up"]);
                let d0 = nix::net::if_::if_nametoindex("d0").unwrap();
                // (/sys shows the namespace it was mounted in: ask `ip`.)
                let rx = || {
                    let o = std::process::Command::new("ip")
                        .args(["-j", "-s", "link", "show", "dev", "d1"])
                        .output()
                        .unwrap();
                    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
                };
                let before = rx();
                let mut frame = vec![0xff; 6];
                frame.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
                frame.resize(60, 0);
                let mut frames: Vec<(u32, Vec<u8>)> =
                    (0..2 * BATCH + 3).map(|_| (d0, frame.clone())).collect();
                frames[BATCH + 5].0 = 0x7fff_fff0; // no such interface
                let sock = PacketSocket::open().unwrap();
                let failed = sock.send_many(&frames);
                assert_eq!(failed.len(), 1, "{failed:?}");
                assert_eq!(failed[0].0, BATCH + 5);
                assert_eq!(rx() - before, frames.len() as u64 - 1);
            })
            .join()
            .unwrap()
        });
    }
}
