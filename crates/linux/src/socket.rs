//! Raw IP protocol-112 sockets: one per (interface, address family), shared by every
//! instance on that interface. Sends choose their source address per packet with
//! IP_PKTINFO / IPV6_PKTINFO, so `unicast_src_ip` and several instances need no extra
//! sockets; receives report TTL / hop limit so the engine can enforce 255.
//!
//! `auth_type AH` instances (VRRPv2 over IPv4) talk IP protocol 51 instead, on a second
//! raw socket per interface (as keepalived opens one per protocol): the engine builds
//! the whole IPv4 packet, since the AH ICV covers the header (IP_HDRINCL).

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use vipd_vrrp::wire::{self, ipv4, DropReason, Family, RxMeta};

pub struct VrrpSocket {
    sock: Socket,
    family: Family,
    ifname: String,
    ifindex: u32,
    /// IP protocol 51 (AH), IPv4 only, with IP_HDRINCL.
    ah: bool,
    /// The multicast groups joined, for a reopen (and the membership audit).
    groups: Vec<IpAddr>,
}

/// A received VRRP message with its IP metadata.
pub struct Received<'a> {
    pub meta: RxMeta,
    pub payload: &'a [u8],
    /// From an AH socket: the whole IPv4 packet (header, AH, VRRP) for the ICV check;
    /// `payload` is the VRRP message inside it, unauthenticated until then.
    pub ah_packet: Option<&'a [u8]>,
}

impl VrrpSocket {
    /// Open, bind to `ifname`, join `group` (multicast instances), and set TTL/hop
    /// limit 255 for everything we send.
    /// `ah`: an IPv4 socket for AH-authenticated VRRPv2 (protocol 51).
    pub fn open(
        family: Family,
        ifname: &str,
        ifindex: u32,
        group: Option<IpAddr>,
        ah: bool,
    ) -> io::Result<VrrpSocket> {
        let mut s = VrrpSocket {
            sock: Self::new_socket(family, ifname, ifindex, ah)?,
            family,
            ifname: ifname.to_string(),
            ifindex,
            ah,
            groups: Vec::new(),
        };
        if let Some(g) = group {
            s.join_group(g)?;
        }
        Ok(s)
    }

    fn new_socket(family: Family, ifname: &str, ifindex: u32, ah: bool) -> io::Result<Socket> {
        let domain = match family {
            Family::V4 => Domain::IPV4,
            Family::V6 if ah => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "VRRP with AH is IPv4 only",
                ))
            }
            Family::V6 => Domain::IPV6,
        };
        let protocol = if ah {
            wire::ah::IPPROTO_AH
        } else {
            wire::IPPROTO_VRRP
        };
        let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(protocol))))?;
        // An instance without `interface` (unicast) has no device to bind to, unless
        // its `vrf`, whose device it is given as `ifname`.
        if !ifname.is_empty() {
            sock.bind_device(Some(ifname.as_bytes()))?;
        }
        sock.set_nonblocking(true)?;
        sock.set_recv_buffer_size(1 << 20)?;
        match family {
            Family::V4 => {
                sock.set_ttl(u32::from(wire::VRRP_TTL))?;
                sock.set_multicast_ttl_v4(u32::from(wire::VRRP_TTL))?;
                sock.set_multicast_loop_v4(false)?;
                set_multicast_if_index_v4(&sock, ifindex)?;
                // We want the IP header on receive (TTL); we build none on send, but
                // for AH, whose ICV covers it.
                sock.set_header_included_v4(ah)?;
            }
            Family::V6 => {
                sock.set_unicast_hops_v6(u32::from(wire::VRRP_TTL))?;
                sock.set_multicast_hops_v6(u32::from(wire::VRRP_TTL))?;
                sock.set_multicast_loop_v6(false)?;
                sock.set_multicast_if_v6(ifindex)?;
                setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
                setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            }
        }
        Ok(sock)
    }

    /// Replace the kernel socket by a new one, bound and joined as this one was (a
    /// socket that failed, or whose multicast memberships the interface lost when it
    /// was re-created). The old socket leaves its groups first, so closing it cannot
    /// undo the new one's joins; on failure this one stays, without its groups.
    pub fn reopen(&mut self) -> io::Result<()> {
        for g in &self.groups {
            // Whatever the old socket says (it may be the one that failed).
            let _ = match g {
                IpAddr::V4(g) => self.sock.leave_multicast_v4_n(
                    g,
                    &socket2::InterfaceIndexOrAddress::Index(self.ifindex),
                ),
                IpAddr::V6(g) => self.sock.leave_multicast_v6(g, self.ifindex),
            };
        }
        let sock = Self::new_socket(self.family, &self.ifname, self.ifindex, self.ah)?;
        let old = std::mem::replace(&mut self.sock, sock);
        drop(old);
        for g in self.groups.clone() {
            self.join(g)?;
        }
        Ok(())
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The multicast groups this socket has joined.
    pub fn groups(&self) -> &[IpAddr] {
        &self.groups
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// An AH (protocol 51) socket.
    pub fn is_ah(&self) -> bool {
        self.ah
    }

    /// Join a multicast group our instances advertise to (the VRRP group, or an
    /// instance's `mcast_dst_ip`); joining twice is harmless.
    pub fn join_group(&mut self, group: IpAddr) -> io::Result<()> {
        self.join(group)?;
        if !self.groups.contains(&group) {
            self.groups.push(group);
        }
        Ok(())
    }

    fn join(&self, group: IpAddr) -> io::Result<()> {
        let res = match group {
            IpAddr::V4(g) if self.family == Family::V4 => self
                .sock
                .join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(self.ifindex)),
            IpAddr::V6(g) if self.family == Family::V6 => {
                self.sock.join_multicast_v6(&g, self.ifindex)
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "multicast group of another address family",
                ))
            }
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Ok(()),
            r => r,
        }
    }

    /// Sends a probe from `src` to `dst` the way adverts go: an 8-byte VRRP header of
    /// `version` with VRID 0, which no virtual router can have (VRIDs are 1–255), so
    /// every receiver drops it as an unknown VRID (keepalived silently, vipd counting
    /// it under `unknown_vrid`). It tells whether adverts could leave the host now
    /// (a firewall's output rule, a route, the interface) without advertising anything.
    pub fn send_probe(&self, src: IpAddr, dst: IpAddr, version: u8, ttl: u8) -> io::Result<()> {
        let mut probe = [version << 4 | 1, 0, 0, 0, 0, 1, 0, 0];
        let sum = wire::checksum::internet(&probe);
        probe[6..].copy_from_slice(&sum.to_be_bytes());
        if !self.ah {
            return self.send(src, dst, &probe, ttl);
        }
        // An AH socket sends whole IPv4 packets (IP_HDRINCL): a plain VRRP one here.
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "AH probe to an IPv6 address",
            ));
        };
        let mut packet = vec![
            0x45,
            0,
            0,
            28,
            0,
            0,
            0,
            0,
            wire::VRRP_TTL,
            wire::IPPROTO_VRRP,
        ];
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(&s.octets());
        packet.extend_from_slice(&d.octets());
        packet.extend_from_slice(&probe);
        self.send_ah(dst, &packet, ttl)
    }

    /// Sends one VRRP message from `src` to `dst`; to a unicast `dst` with TTL / hop
    /// limit `unicast_ttl` (multicast always leaves with 255).
    pub fn send(
        &self,
        src: IpAddr,
        dst: IpAddr,
        payload: &[u8],
        unicast_ttl: u8,
    ) -> io::Result<()> {
        if self.ah {
            return self.send_ah(dst, payload, unicast_ttl);
        }
        // Only the protocol thread sends on this socket: set, send, restore.
        let custom = unicast_ttl != wire::VRRP_TTL && !dst.is_multicast();
        if custom {
            self.set_unicast_ttl(dst, unicast_ttl)?;
        }
        let sent = self.send_raw(src, dst, payload);
        if custom {
            self.set_unicast_ttl(dst, wire::VRRP_TTL)?;
        }
        sent
    }

    /// `packet` is a whole IPv4 packet from the engine (header, AH, VRRP). The kernel
    /// fills in the header checksum; a unicast packet's TTL is outside the ICV and is
    /// set here.
    fn send_ah(&self, dst: IpAddr, packet: &[u8], unicast_ttl: u8) -> io::Result<()> {
        let IpAddr::V4(d) = dst else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "AH advert to an IPv6 address",
            ));
        };
        let mut packet = packet.to_vec();
        if !dst.is_multicast() && packet.len() > 8 {
            packet[8] = unicast_ttl;
        }
        let addr = socket2::SockAddr::from(SocketAddrV4::new(d, 0));
        self.sock.send_to(&packet, &addr).map(|_| ())
    }

    fn set_unicast_ttl(&self, dst: IpAddr, ttl: u8) -> io::Result<()> {
        match dst {
            IpAddr::V4(_) => self.sock.set_ttl(u32::from(ttl)),
            IpAddr::V6(_) => self.sock.set_unicast_hops_v6(u32::from(ttl)),
        }
    }

    fn send_raw(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
        let iov = [IoSlice::new(payload)];
        let fd = self.sock.as_raw_fd();
        let res = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as i32,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(s.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
                let addr = SockaddrIn::from(SocketAddrV4::new(d, 0));
                sendmsg(fd, &iov, &cmsg, MsgFlags::empty(), Some(&addr))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: s.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
                let addr = SockaddrIn6::from(SocketAddrV6::new(d, 0, 0, self.ifindex));
                sendmsg(fd, &iov, &cmsg, MsgFlags::empty(), Some(&addr))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "address family mismatch",
                ))
            }
        };
        res.map(|_| ()).map_err(io::Error::from)
    }

    /// Receive one packet if any is queued. `Ok(None)`: nothing to read.
    /// `Ok(Some(Err(reason)))`: a packet arrived that is not a VRRP message we can use.
    pub fn recv<'a>(
        &self,
        buf: &'a mut [u8],
    ) -> io::Result<Option<Result<Received<'a>, DropReason>>> {
        match self.family {
            Family::V4 => {
                // SAFETY: recv_from only writes initialised bytes into the slice.
                let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
                let n = match self.sock.recv_from(uninit) {
                    Ok((n, _)) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                };
                let buf = &buf[..n];
                let ah = self.ah;
                Ok(Some(ipv4::parse(buf).and_then(|(h, payload)| {
                    let meta = RxMeta {
                        src: IpAddr::V4(h.src),
                        dst: IpAddr::V4(h.dst),
                        ttl: h.ttl,
                    };
                    if ah {
                        if h.protocol != wire::ah::IPPROTO_AH {
                            return Err(DropReason::NotVrrp);
                        }
                        let vrrp = payload
                            .get(wire::ah::AH_LEN..)
                            .ok_or(DropReason::Truncated)?;
                        return Ok(Received {
                            meta,
                            payload: vrrp,
                            ah_packet: Some(&buf[..h.total_len]),
                        });
                    }
                    if h.protocol != wire::IPPROTO_VRRP {
                        return Err(DropReason::NotVrrp);
                    }
                    Ok(Received {
                        meta,
                        payload,
                        ah_packet: None,
                    })
                })))
            }
            Family::V6 => recv_v6(self.sock.as_raw_fd(), buf),
        }
    }
}

impl AsRawFd for VrrpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// recvmsg with IPV6_HOPLIMIT and IPV6_PKTINFO ancillary data (the kernel strips the
/// IPv6 header from raw sockets, so this is the only way to learn hop limit and dst).
fn recv_v6<'a>(
    fd: RawFd,
    buf: &'a mut [u8],
) -> io::Result<Option<Result<Received<'a>, DropReason>>> {
    let mut src: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 32];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut src as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let n = n as usize;
    let mut hop_limit = None;
    let mut dst = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            if (*c).cmsg_level == libc::IPPROTO_IPV6 {
                if (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                    hop_limit = Some(std::ptr::read_unaligned(data as *const libc::c_int));
                } else if (*c).cmsg_type == libc::IPV6_PKTINFO {
                    let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let (Some(ttl), Some(dst)) = (hop_limit, dst) else {
        return Ok(Some(Err(DropReason::Truncated)));
    };
    let src = Ipv6Addr::from(src.sin6_addr.s6_addr);
    Ok(Some(Ok(Received {
        meta: RxMeta {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            ttl: ttl.clamp(0, 255) as u8,
        },
        payload: &buf[..n],
        ah_packet: None,
    })))
}

fn setsockopt_int(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: plain int option on a live socket.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// IP_MULTICAST_IF by interface index (ip_mreqn), so the choice does not depend on
/// which IPv4 address the interface happens to have.
fn set_multicast_if_index_v4(sock: &Socket, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr {
            s_addr: u32::from_ne_bytes(Ipv4Addr::UNSPECIFIED.octets()),
        },
        imr_ifindex: ifindex as i32,
    };
    // SAFETY: ip_mreqn is the documented argument of IP_MULTICAST_IF.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockhealth::{self, RxHealth, RxVerdict};

    /// A socket that stopped being one (its descriptor now some other file) fails every
    /// receive with ENOTSOCK; the policy reopens it at once and the new socket has its
    /// group again.
    #[test]
    fn a_socket_that_fails_for_good_is_reopened_with_its_groups() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let group: IpAddr = "224.0.0.18".parse().unwrap();
        let mut s = VrrpSocket::open(Family::V4, "lo", 1, Some(group), false).unwrap();
        assert_eq!(s.groups(), [group]);
        let mut buf = [0u8; 2048];
        assert!(matches!(s.recv(&mut buf), Ok(None)));
        // Put /dev/null where the socket was (not a close: the number stays ours).
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: both descriptors are ours; the socket's is replaced atomically.
        assert!(unsafe { libc::dup2(null.as_raw_fd(), s.as_raw_fd()) } >= 0);
        let err = s.recv(&mut buf).err().expect("not a socket any more");
        let mut health = RxHealth::default();
        assert_eq!(health.error(err.raw_os_error()), RxVerdict::Reopen, "{err}");
        s.reopen().unwrap();
        assert!(!health.reopened(), "it was never broken");
        assert_eq!(health.reopens, 1);
        assert!(matches!(s.recv(&mut buf), Ok(None)));
        assert_eq!(s.groups(), [group]);
        let joined =
            sockhealth::memberships(&std::fs::read_to_string("/proc/net/igmp").unwrap(), "");
        assert!(
            sockhealth::missing_groups(1, s.groups(), &joined).is_empty(),
            "{joined:?}"
        );
        // And it sends: probes on lo, from it and from an AH socket (which builds its
        // own IPv4 header), arrive as VRRP messages of VRID 0, checksummed.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        s.send_probe(lo, lo, 3, 255).unwrap();
        let ah = VrrpSocket::open(Family::V4, "lo", 1, None, true).unwrap();
        ah.send_probe(lo, lo, 2, 255).unwrap();
        let mut versions = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while versions.len() < 2 && std::time::Instant::now() < deadline {
            match s.recv(&mut buf) {
                Ok(Some(Ok(rx))) if rx.meta.src == lo => {
                    assert_eq!(wire::checksum::internet(rx.payload), 0);
                    if let Some((version, 0)) = wire::vrrp::peek(rx.payload) {
                        versions.push(version);
                    }
                }
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => panic!("{e}"),
            }
        }
        versions.sort();
        assert_eq!(versions, [2, 3], "both probes arrive");
    }
}
