//! The [`Capture`]: VRRP / ARP / neighbour-advertisement frames seen on an
//! interface.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Netns;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `true` for multicast/broadcast addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            bail!("bad MAC address {s:?}");
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC address {s:?}"))?;
        }
        Ok(MacAddr(m))
    }
}

/// What kind of frame a [`Frame`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// IPv4 or IPv6 packet with protocol / next header 112 (VRRP); the
    /// payload is the VRRP packet.
    Vrrp,
    /// ARP for IPv4 over Ethernet. `src`/`dst` of the frame are the sender /
    /// target protocol addresses; the payload is the 28-byte ARP packet.
    Arp {
        /// 1 = request, 2 = reply.
        op: u16,
        /// Sender hardware address.
        sender_mac: MacAddr,
        /// Target hardware address.
        target_mac: MacAddr,
    },
    /// ICMPv6 neighbour advertisement; the payload is the ICMPv6 message.
    NeighborAdvert {
        /// The advertised target address.
        target: Ipv6Addr,
        /// R flag.
        router: bool,
        /// S flag (clear in unsolicited advertisements).
        solicited: bool,
        /// O flag.
        override_: bool,
    },
    /// IPv4 ICMP echo reply (only with [`Capture::start_with_echo_replies`]);
    /// the payload is the ICMP message.
    EchoReply,
}

/// A captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Receive time (taken right after `recvfrom`, on the [`Instant`] clock).
    pub at: Instant,
    /// `true` if the frame was sent by this host (`PACKET_OUTGOING`).
    pub outgoing: bool,
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// What it is.
    pub kind: FrameKind,
    /// IP source (ARP: sender protocol address).
    pub src: IpAddr,
    /// IP destination (ARP: target protocol address).
    pub dst: IpAddr,
    /// IPv4 TTL / IPv6 hop limit (0 for ARP).
    pub ttl: u8,
    /// The IP payload (length from the IP header, so without Ethernet
    /// padding); for ARP the ARP packet.
    pub payload: Vec<u8>,
}

/// The fixed part of a VRRP (v2 or v3) advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VrrpHeader {
    /// 2 or 3.
    pub version: u8,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority (0 = master resigning, 255 = address owner).
    pub priority: u8,
    /// Number of addresses in the advert.
    pub count: u8,
    /// Advertisement interval (v2: seconds, v3: centiseconds, normalised).
    pub interval: Duration,
}

impl Frame {
    /// `true` for a VRRP packet (any version/type).
    pub fn is_vrrp(&self) -> bool {
        self.kind == FrameKind::Vrrp
    }

    /// The VRRP header if this is a VRRP advertisement.
    pub fn vrrp(&self) -> Option<VrrpHeader> {
        if !self.is_vrrp() || self.payload.len() < 8 {
            return None;
        }
        let p = &self.payload;
        let version = p[0] >> 4;
        if p[0] & 0x0f != 1 {
            return None; // not an advertisement
        }
        let interval = match version {
            2 => Duration::from_secs(p[5] as u64),
            3 => Duration::from_millis((((p[4] as u64 & 0x0f) << 8) | p[5] as u64) * 10),
            _ => return None,
        };
        Some(VrrpHeader {
            version,
            vrid: p[1],
            priority: p[2],
            count: p[3],
            interval,
        })
    }

    /// The addresses listed in a VRRP advertisement.
    pub fn vrrp_addresses(&self) -> Vec<IpAddr> {
        let Some(h) = self.vrrp() else {
            return vec![];
        };
        let body = &self.payload[8..];
        match self.src {
            IpAddr::V4(_) => body
                .chunks_exact(4)
                .take(h.count as usize)
                .map(|c| IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])))
                .collect(),
            IpAddr::V6(_) => body
                .chunks_exact(16)
                .take(h.count as usize)
                .map(|c| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16"))))
                .collect(),
        }
    }

    /// A gratuitous ARP: an ARP request (or reply) whose sender IP equals
    /// its target IP.
    pub fn is_gratuitous_arp(&self) -> bool {
        matches!(self.kind, FrameKind::Arp { op: 1 | 2, .. }) && self.src == self.dst
    }

    /// An unsolicited neighbour advertisement (S flag clear).
    pub fn is_unsolicited_na(&self) -> bool {
        matches!(
            self.kind,
            FrameKind::NeighborAdvert {
                solicited: false,
                ..
            }
        )
    }

    /// The address announced by an ARP (sender IP) or NA (target).
    pub fn announced_addr(&self) -> Option<IpAddr> {
        match self.kind {
            FrameKind::Arp { .. } => Some(self.src),
            FrameKind::NeighborAdvert { target, .. } => Some(IpAddr::V6(target)),
            FrameKind::Vrrp | FrameKind::EchoReply => None,
        }
    }
}

/// Filters over a list of frames, e.g. the result of [`Capture::stop`].
pub trait Frames {
    /// VRRP advertisements.
    fn vrrp_adverts(&self) -> Vec<&Frame>;
    /// Gratuitous ARPs (see [`Frame::is_gratuitous_arp`]).
    fn gratuitous_arps(&self) -> Vec<&Frame>;
    /// Unsolicited neighbour advertisements.
    fn unsolicited_nas(&self) -> Vec<&Frame>;
}

impl Frames for [Frame] {
    fn vrrp_adverts(&self) -> Vec<&Frame> {
        self.iter().filter(|f| f.vrrp().is_some()).collect()
    }
    fn gratuitous_arps(&self) -> Vec<&Frame> {
        self.iter().filter(|f| f.is_gratuitous_arp()).collect()
    }
    fn unsolicited_nas(&self) -> Vec<&Frame> {
        self.iter().filter(|f| f.is_unsolicited_na()).collect()
    }
}

/// Records VRRP, ARP and neighbour-advertisement frames on one interface of
/// a namespace (AF_PACKET, ETH_P_ALL, bound to the interface; both
/// directions). Everything else is ignored.
///
/// Capturing has started when [`start`](Self::start) returns. Dropping stops it.
pub struct Capture {
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    iface: String,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("iface", &self.iface)
            .finish()
    }
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

impl Capture {
    /// Starts capturing on `iface` in `ns`.
    pub fn start(ns: &Netns, iface: &str) -> Result<Capture> {
        Self::start_opts(ns, iface, false)
    }

    /// Like [`start`](Self::start), but also records IPv4 ICMP echo replies
    /// ([`FrameKind::EchoReply`]), e.g. to see which MAC answers a prober.
    pub fn start_with_echo_replies(ns: &Netns, iface: &str) -> Result<Capture> {
        Self::start_opts(ns, iface, true)
    }

    fn start_opts(ns: &Netns, iface: &str, echo_replies: bool) -> Result<Capture> {
        let name = iface.to_string();
        let fd = ns
            .run(move || open_packet_socket(&name))?
            .with_context(|| format!("capture on {iface} in {}", ns.name()))?;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, s2) = (frames.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("capture:{iface}"))
            .spawn(move || capture_loop(fd, echo_replies, &f2, &s2))?;
        Ok(Capture {
            frames,
            stop,
            thread: Some(thread),
            iface: iface.to_string(),
        })
    }

    /// A copy of the frames captured so far (capture continues).
    pub fn snapshot(&self) -> Vec<Frame> {
        self.frames.lock().expect("capture lock").clone()
    }

    /// Number of frames captured so far.
    pub fn len(&self) -> usize {
        self.frames.lock().expect("capture lock").len()
    }

    /// `true` if nothing was captured yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// VRRP advertisements captured so far.
    pub fn vrrp_adverts(&self) -> Vec<Frame> {
        self.filtered(|f| f.vrrp().is_some())
    }

    /// Gratuitous ARPs captured so far.
    pub fn gratuitous_arps(&self) -> Vec<Frame> {
        self.filtered(Frame::is_gratuitous_arp)
    }

    /// Unsolicited neighbour advertisements captured so far.
    pub fn unsolicited_nas(&self) -> Vec<Frame> {
        self.filtered(Frame::is_unsolicited_na)
    }

    /// The first frame captured so far that satisfies `pred` (without
    /// copying the others).
    pub fn first(&self, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let g = self.frames.lock().expect("capture lock");
        g.iter().find(|x| pred(x)).cloned()
    }

    fn filtered(&self, f: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let g = self.frames.lock().expect("capture lock");
        g.iter().filter(|x| f(x)).cloned().collect()
    }

    /// Stops capturing and returns every recorded frame in receive order.
    pub fn stop(mut self) -> Vec<Frame> {
        self.halt();
        std::mem::take(&mut *self.frames.lock().expect("capture lock"))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Owned file descriptor of a bound packet socket.
fn open_packet_socket(iface: &str) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(iface)?;
    // SAFETY: plain libc calls with valid arguments.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface}");
    }
    // Protocol 0: receive nothing until bound, so no frames of other
    // interfaces sneak in between socket() and bind().
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: fresh fd we own.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid sockaddr_ll.
    let r = unsafe {
        libc::bind(
            raw,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET)");
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 10_000,
    };
    let rcvbuf: libc::c_int = 4 << 20;
    // SAFETY: valid option values.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &rcvbuf as *const _ as *const libc::c_void,
            4,
        );
    }
    Ok(fd)
}

fn capture_loop(
    fd: std::os::fd::OwnedFd,
    echo_replies: bool,
    frames: &Mutex<Vec<Frame>>,
    stop: &AtomicBool,
) {
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: valid buffer and address storage.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut sll as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        };
        let at = Instant::now();
        if n <= 0 {
            continue;
        }
        let outgoing = sll.sll_pkttype == PACKET_OUTGOING;
        if let Some(f) = parse(&buf[..n as usize], at, outgoing, echo_replies) {
            frames.lock().expect("capture lock").push(f);
        }
    }
}

/// Parses an Ethernet frame; `None` unless it is VRRP, ARP or an NA.
#[cfg(test)]
pub(crate) fn parse_frame(b: &[u8], at: Instant, outgoing: bool) -> Option<Frame> {
    parse(b, at, outgoing, false)
}

/// [`parse_frame`], plus IPv4 ICMP echo replies if `echo_replies`.
fn parse(b: &[u8], at: Instant, outgoing: bool, echo_replies: bool) -> Option<Frame> {
    if b.len() < 14 {
        return None;
    }
    let mac = |s: &[u8]| MacAddr(s.try_into().expect("6 bytes"));
    let (dst_mac, src_mac) = (mac(&b[0..6]), mac(&b[6..12]));
    let mut ethertype = u16::from_be_bytes([b[12], b[13]]);
    let mut off = 14;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        let t = b.get(off + 2..off + 4)?;
        ethertype = u16::from_be_bytes([t[0], t[1]]);
        off += 4;
    }
    let p = &b[off..];
    let frame = |kind, src, dst, ttl, payload: &[u8]| Frame {
        at,
        outgoing,
        src_mac,
        dst_mac,
        kind,
        src,
        dst,
        ttl,
        payload: payload.to_vec(),
    };
    match ethertype {
        0x0800 => {
            if p.len() < 20 || p[0] >> 4 != 4 {
                return None;
            }
            let ihl = (p[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([p[2], p[3]]) as usize;
            if ihl < 20 || total < ihl || total > p.len() {
                return None;
            }
            let kind = match p[9] {
                112 => FrameKind::Vrrp,
                1 if echo_replies && p.get(ihl) == Some(&0) => FrameKind::EchoReply,
                _ => return None,
            };
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            Some(frame(kind, src.into(), dst.into(), p[8], &p[ihl..total]))
        }
        0x86dd => {
            if p.len() < 40 || p[0] >> 4 != 6 {
                return None;
            }
            let plen = u16::from_be_bytes([p[4], p[5]]) as usize;
            if 40 + plen > p.len() {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?);
            let hop = p[7];
            let mut next = p[6];
            let mut body = &p[40..40 + plen];
            // Skip hop-by-hop, routing and destination-options headers.
            while matches!(next, 0 | 43 | 60) {
                if body.len() < 8 {
                    return None;
                }
                let l = (body[1] as usize + 1) * 8;
                if l > body.len() {
                    return None;
                }
                next = body[0];
                body = &body[l..];
            }
            match next {
                112 => Some(frame(FrameKind::Vrrp, src.into(), dst.into(), hop, body)),
                58 if body.len() >= 24 && body[0] == 136 => {
                    let flags = body[4];
                    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&body[8..24]).ok()?);
                    let kind = FrameKind::NeighborAdvert {
                        target,
                        router: flags & 0x80 != 0,
                        solicited: flags & 0x40 != 0,
                        override_: flags & 0x20 != 0,
                    };
                    Some(frame(kind, src.into(), dst.into(), hop, body))
                }
                _ => None,
            }
        }
        0x0806 => {
            // Ethernet/IPv4 ARP only.
            if p.len() < 28 || p[0..6] != [0, 1, 8, 0, 6, 4] {
                return None;
            }
            let op = u16::from_be_bytes([p[6], p[7]]);
            let spa = Ipv4Addr::new(p[14], p[15], p[16], p[17]);
            let tpa = Ipv4Addr::new(p[24], p[25], p[26], p[27]);
            let kind = FrameKind::Arp {
                op,
                sender_mac: mac(&p[8..14]),
                target_mac: mac(&p[18..24]),
            };
            Some(frame(kind, spa.into(), tpa.into(), 0, &p[..28]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x01, 0, 0x5e, 0, 0, 0x12, 2, 0, 0, 0, 1, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        while f.len() < 60 {
            f.push(0xee); // Ethernet padding must not end up in the payload
        }
        f
    }

    #[test]
    fn parses_vrrp_v2_with_padding() {
        let vrrp = [0x21, 51, 150, 1, 0, 1, 0, 0, 192, 0, 2, 100];
        let mut ip = vec![
            0x45,
            0xc0,
            0,
            20 + 12,
            0,
            0,
            0,
            0,
            255,
            112,
            0,
            0,
            192,
            0,
            2,
            11,
            224,
            0,
            0,
            18,
        ];
        ip.extend_from_slice(&vrrp);
        let f = parse_frame(&eth(0x0800, &ip), Instant::now(), false).unwrap();
        assert_eq!(f.payload, vrrp);
        assert_eq!(f.ttl, 255);
        assert_eq!(f.src, "192.0.2.11".parse::<IpAddr>().unwrap());
        assert_eq!(f.src_mac.to_string(), "02:00:00:00:01:01");
        let h = f.vrrp().unwrap();
        assert_eq!((h.version, h.vrid, h.priority, h.count), (2, 51, 150, 1));
        assert_eq!(h.interval, Duration::from_secs(1));
        assert_eq!(
            f.vrrp_addresses(),
            vec!["192.0.2.100".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn parses_garp_and_na() {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 1, 1, 192, 0, 2, 100];
        arp.extend_from_slice(&[0xff; 6]);
        arp.extend_from_slice(&[192, 0, 2, 100]);
        let f = parse_frame(&eth(0x0806, &arp), Instant::now(), true).unwrap();
        assert!(f.is_gratuitous_arp());
        assert!(f.outgoing);
        assert_eq!(f.payload.len(), 28);

        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let mut na = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
        na.extend_from_slice(&target.octets());
        let mut ip = vec![0x60, 0, 0, 0, 0, na.len() as u8, 58, 255];
        ip.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&na);
        let f = parse_frame(&eth(0x86dd, &ip), Instant::now(), false).unwrap();
        assert!(f.is_unsolicited_na());
        assert_eq!(f.announced_addr(), Some(IpAddr::V6(target)));
        let frames = [f];
        assert_eq!(frames.unsolicited_nas().len(), 1);
        assert!(frames.vrrp_adverts().is_empty());
    }

    #[test]
    fn echo_replies_only_when_asked() {
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 100, 192, 0, 2, 1,
        ];
        ip.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1]); // echo reply
        let b = eth(0x0800, &ip);
        assert!(parse_frame(&b, Instant::now(), false).is_none());
        let f = parse(&b, Instant::now(), false, true).unwrap();
        assert_eq!(f.kind, FrameKind::EchoReply);
        assert_eq!(f.src, "192.0.2.100".parse::<IpAddr>().unwrap());
        assert_eq!(f.src_mac.to_string(), "02:00:00:00:01:01");
        assert_eq!(f.payload.len(), 8);
        let mut req = b.clone();
        req[14 + 20] = 8; // echo request
        assert!(parse(&req, Instant::now(), false, true).is_none());
    }

    #[test]
    fn mac_roundtrip() {
        let m: MacAddr = "02:00:00:00:01:0a".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:00:00:01:0a");
        assert!("01:00:5e:00:00:12"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        assert!("zz".parse::<MacAddr>().is_err());
    }
}
