//! Virtual addresses over rtnetlink (request/ack on a private socket that subscribes to
//! no multicast groups, so no event flood can queue up in front of our answers).
//!
//! Every address vipd adds carries the address protocol [`VIPD_ADDR_PROTO`] (IFA_PROTO,
//! shown by `ip address` as `proto 118`). That is how a restarted vipd tells its own
//! stale VIPs from addresses an administrator put there, which it never touches.

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_packet_utils::nla::{DefaultNla, Nla};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};

/// IFA_PROTO value marking addresses vipd added ('v').
pub const VIPD_ADDR_PROTO: u8 = 118;
const IFA_PROTO: u16 = 11;

/// One virtual address as it goes into the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddressSpec {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub brd: Option<Ipv4Addr>,
    /// RT_SCOPE_* value; 0 = global.
    pub scope: u8,
    pub label: Option<String>,
}

/// An address found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelAddress {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub proto: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// The address was already there (not ours to remove later).
    AlreadyPresent,
}

pub struct Rtnetlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnetlink {
    pub fn open() -> Result<Rtnetlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).context("opening rtnetlink socket")?;
        sock.bind_auto().context("binding rtnetlink socket")?;
        sock.connect(&SocketAddr::new(0, 0))
            .context("connecting rtnetlink socket")?;
        Ok(Rtnetlink {
            sock,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    pub fn add_address(&mut self, spec: &AddressSpec) -> Result<AddOutcome> {
        let msg = address_message(spec, true);
        match self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(AddOutcome::Added),
            Err(code) if code == libc::EEXIST => Ok(AddOutcome::AlreadyPresent),
            Err(code) if code == libc::EINVAL && spec.scope != 0 && spec.addr.is_ipv4() => bail!(
                "adding {}/{} with scope {}: the kernel refuses a secondary address whose scope \
                 differs from the primary address of the same subnet (use the same scope, or a /32)",
                spec.addr,
                spec.prefix_len,
                spec.scope
            ),
            Err(code) => bail!(
                "adding {}/{}: {}",
                spec.addr,
                spec.prefix_len,
                std::io::Error::from_raw_os_error(code)
            ),
        }
    }

    /// Remove an address; one that is already gone is not an error.
    pub fn delete_address(&mut self, spec: &AddressSpec) -> Result<()> {
        let msg = address_message(spec, false);
        match self.request(RouteNetlinkMessage::DelAddress(msg), 0) {
            Ok(()) => Ok(()),
            Err(code)
                if code == libc::EADDRNOTAVAIL || code == libc::ENOENT || code == libc::ENODEV =>
            {
                Ok(())
            }
            Err(code) => bail!(
                "removing {}/{}: {}",
                spec.addr,
                spec.prefix_len,
                std::io::Error::from_raw_os_error(code)
            ),
        }
    }

    /// All IPv4 and IPv6 addresses in this network namespace.
    pub fn dump_addresses(&mut self) -> Result<Vec<KernelAddress>> {
        let mut out = Vec::new();
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.seq += 1;
        hdr.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(
            hdr,
            NetlinkPayload::from(RouteNetlinkMessage::GetAddress(AddressMessage::default())),
        );
        msg.finalize();
        let mut tx = vec![0; msg.buffer_len()];
        msg.serialize(&mut tx);
        self.sock
            .send(&tx, 0)
            .context("sending address dump request")?;
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .context("reading address dump")?;
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| anyhow!("bad netlink message in address dump: {e}"))?;
                let len = m.header.length as usize;
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        bail!("address dump: {}", e.to_io())
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
                        if let Some(k) = kernel_address(&a) {
                            out.push(k);
                        }
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Send one request and wait for its ack. `Err(errno)` on a NACK.
    fn request(
        &mut self,
        payload: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> std::result::Result<(), i32> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        self.seq = self.seq.wrapping_add(1);
        hdr.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(hdr, NetlinkPayload::from(payload));
        msg.finalize();
        let mut tx = vec![0; msg.buffer_len()];
        msg.serialize(&mut tx);
        self.sock
            .send(&tx, 0)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            let mut off = 0;
            while off < n {
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                else {
                    return Err(libc::EBADMSG);
                };
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = m.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(c) => Err(-c.get()),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

fn address_message(spec: &AddressSpec, with_details: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match spec.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = spec.prefix_len;
    msg.header.index = spec.ifindex;
    msg.header.scope = AddressScope::from(spec.scope);
    msg.attributes.push(AddressAttribute::Local(spec.addr));
    msg.attributes.push(AddressAttribute::Address(spec.addr));
    if with_details {
        if let Some(b) = spec.brd {
            msg.attributes.push(AddressAttribute::Broadcast(b));
        }
        if let Some(l) = &spec.label {
            msg.attributes.push(AddressAttribute::Label(l.clone()));
        }
        if spec.addr.is_ipv6() {
            // Usable at once: duplicate address detection would delay take-over by ~1 s.
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        msg.attributes.push(AddressAttribute::Other(DefaultNla::new(
            IFA_PROTO,
            vec![VIPD_ADDR_PROTO],
        )));
    }
    msg
}

fn kernel_address(a: &AddressMessage) -> Option<KernelAddress> {
    let mut local = None;
    let mut address = None;
    let mut proto = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Other(nla) if nla.kind() == IFA_PROTO => {
                let mut v = [0u8; 1];
                if nla.value_len() == 1 {
                    nla.emit_value(&mut v);
                    proto = Some(v[0]);
                }
            }
            _ => {}
        }
    }
    Some(KernelAddress {
        ifindex: a.header.index,
        addr: local.or(address)?,
        prefix_len: a.header.prefix_len,
        proto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread in a fresh, private network namespace (root only).
    fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
                Some(f())
            })
            .join()
            .unwrap()
        })
    }

    #[test]
    fn add_dump_delete_with_every_attribute() {
        in_private_netns(|| {
            let mut nl = Rtnetlink::open().unwrap();
            let spec = AddressSpec {
                ifindex: 1, // lo
                addr: "192.0.2.100".parse().unwrap(),
                prefix_len: 24,
                brd: Some("192.0.2.255".parse().unwrap()),
                scope: 253,
                label: Some("lo:vip".into()),
            };
            assert_eq!(nl.add_address(&spec).unwrap(), AddOutcome::Added);
            assert_eq!(nl.add_address(&spec).unwrap(), AddOutcome::AlreadyPresent);
            let found = nl.dump_addresses().unwrap();
            let ours = found
                .iter()
                .find(|k| k.addr == spec.addr)
                .expect("address is there");
            assert_eq!(ours.prefix_len, 24);
            assert_eq!(ours.proto, Some(VIPD_ADDR_PROTO), "marked as vipd's");
            nl.delete_address(&spec).unwrap();
            nl.delete_address(&spec).unwrap(); // gone already: not an error
            assert!(!nl
                .dump_addresses()
                .unwrap()
                .iter()
                .any(|k| k.addr == spec.addr));
            let v6 = AddressSpec {
                ifindex: 1,
                addr: "2001:db8::100".parse().unwrap(),
                prefix_len: 64,
                brd: None,
                scope: 0,
                label: None,
            };
            assert_eq!(nl.add_address(&v6).unwrap(), AddOutcome::Added);
            nl.delete_address(&v6).unwrap();
            // The same on an Ethernet-like device that has an address of its own.
            let ok = std::process::Command::new("ip")
                .args(["link", "add", "d0", "type", "veth", "peer", "d1"])
                .status();
            assert!(ok.unwrap().success());
            std::process::Command::new("ip")
                .args(["addr", "add", "192.0.2.1/24", "dev", "d0"])
                .status()
                .unwrap();
            let d0 = nix::net::if_::if_nametoindex("d0").unwrap();
            let spec = AddressSpec {
                ifindex: d0,
                label: Some("d0:vip".into()),
                ..spec
            };
            // A secondary in 192.0.2.1/24's subnet must share its scope: the kernel says
            // EINVAL, and we say why.
            let err = nl.add_address(&spec).unwrap_err().to_string();
            assert!(err.contains("same subnet"), "{err}");
            let host = AddressSpec {
                prefix_len: 32,
                brd: None,
                ..spec
            };
            assert_eq!(nl.add_address(&host).unwrap(), AddOutcome::Added);
        });
    }
}
