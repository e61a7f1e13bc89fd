//! Virtual addresses over rtnetlink (request/ack on a private socket that subscribes to
//! no multicast groups, so no event flood can queue up in front of our answers).
//!
//! Every address vipd adds carries the address protocol [`VIPD_ADDR_PROTO`] (IFA_PROTO,
//! shown by `ip address` as `proto 118`). That is how a restarted vipd tells its own
//! stale VIPs from addresses an administrator put there, which it never touches.

use crate::routes::{RouteKind, RouteSpec, RuleSpec, VIPD_ROUTE_PROTO};
use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    ErrorMessage, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_packet_utils::nla::{DefaultNla, Nla};
use netlink_packet_utils::DecodeError;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};

/// IFA_PROTO value marking addresses vipd added ('v').
pub const VIPD_ADDR_PROTO: u8 = 118;
const IFA_PROTO: u16 = 11;

/// Requests sent in one datagram by [`Rtnetlink::requests`]. Their acks wait in the
/// socket's receive buffer until read (some hundreds of bytes each, a refusal more: it
/// quotes the request), so 64 stay well inside the default 208 KiB.
const BATCH: usize = 64;

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
    /// keepalived's per-address options (`peer`, flags, `-nodad`, `preferred_lft`).
    pub opts: AddressOptions,
}

/// The options of an address line that reach the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddressOptions {
    /// `peer ADDR`: IFA_ADDRESS (IFA_LOCAL stays the address).
    pub peer: Option<IpAddr>,
    /// IFA_F_* flags (`home`, `mngtmpaddr`, `noprefixroute`, `autojoin`).
    pub flags: u32,
    /// `-nodad`: IPv6 duplicate address detection runs (IFA_F_NODAD is not set).
    pub dad: bool,
    /// IPv6 preferred lifetime in seconds (IFA_CACHEINFO, valid forever); `None`:
    /// forever (no IFA_CACHEINFO).
    pub preferred_lft: Option<u32>,
    /// Not sent: a VIP (without `no_track`) whose deletion by someone else takes its
    /// instance out of MASTER, as in keepalived (see [`crate::addresses`]).
    pub track: bool,
}

/// One neighbour-table entry with a link-layer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub addr: IpAddr,
    pub mac: [u8; 6],
    pub ifindex: u32,
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
        self.add_addresses(std::slice::from_ref(spec))
            .pop()
            .expect("one result per request")
    }

    /// Add many addresses pipelined ([`Self::requests`]): one result per spec, in
    /// order; one refused address is reported by name and does not stop the others.
    pub fn add_addresses(&mut self, specs: &[AddressSpec]) -> Vec<Result<AddOutcome>> {
        let reqs = specs.iter().map(|s| {
            (
                RouteNetlinkMessage::NewAddress(address_message(s, true)),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        });
        let acks = self.requests(reqs);
        specs
            .iter()
            .zip(acks)
            .map(|(s, a)| add_outcome(s, a))
            .collect()
    }

    /// Remove an address; one that is already gone is not an error.
    pub fn delete_address(&mut self, spec: &AddressSpec) -> Result<()> {
        self.delete_addresses(std::slice::from_ref(spec))
            .pop()
            .expect("one result per request")
    }

    /// Remove many addresses pipelined ([`Self::requests`]): one result per spec, in
    /// order (an address already gone is not an error).
    pub fn delete_addresses(&mut self, specs: &[AddressSpec]) -> Vec<Result<()>> {
        let reqs = specs.iter().map(|s| {
            (
                RouteNetlinkMessage::DelAddress(address_message(s, false)),
                0,
            )
        });
        let acks = self.requests(reqs);
        specs
            .iter()
            .zip(acks)
            .map(|(spec, a)| match a {
                Ok(()) => Ok(()),
                Err(code)
                    if code == libc::EADDRNOTAVAIL
                        || code == libc::ENOENT
                        || code == libc::ENODEV =>
                {
                    Ok(())
                }
                Err(code) => bail!(
                    "removing {}/{}: {}",
                    spec.addr,
                    spec.prefix_len,
                    std::io::Error::from_raw_os_error(code)
                ),
            })
            .collect()
    }

    /// All IPv4 and IPv6 addresses in this network namespace.
    pub fn dump_addresses(&mut self) -> Result<Vec<KernelAddress>> {
        let mut out = Vec::new();
        let req = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        self.dump("address", req, |m| {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                out.extend(kernel_address(&a));
            }
        })?;
        Ok(out)
    }

    /// The kernel's neighbour (ARP / NDP) table: entries that hold a link-layer address
    /// (reachable, stale, delay, probe, permanent, noarp).
    pub fn dump_neighbours(&mut self) -> Result<Vec<Neighbour>> {
        let mut out = Vec::new();
        let req = RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default());
        self.dump("neighbour", req, |m| {
            if let RouteNetlinkMessage::NewNeighbour(n) = m {
                out.extend(neighbour(&n));
            }
        })?;
        Ok(out)
    }

    /// Send one request and wait for its ack. `Err(errno)` on a NACK.
    fn request(
        &mut self,
        payload: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> std::result::Result<(), i32> {
        self.requests(std::iter::once((payload, extra_flags)))
            .pop()
            .expect("one result per request")
    }

    /// Send requests pipelined, up to [`BATCH`] per datagram, each with its own
    /// sequence number and NLM_F_ACK, then read that datagram's acks: no round trip
    /// per request. The kernel handles every message of a datagram in turn and acks
    /// each; a refused one does not stop the ones after it. One result per request, in
    /// order: `Err(errno)` on a NACK (or when the socket fails: then for every request
    /// of the datagram not answered yet).
    fn requests(
        &mut self,
        reqs: impl IntoIterator<Item = (RouteNetlinkMessage, u16)>,
    ) -> Vec<std::result::Result<(), i32>> {
        let mut reqs = reqs.into_iter().peekable();
        let mut out = Vec::with_capacity(reqs.size_hint().0);
        let mut tx = Vec::new();
        while reqs.peek().is_some() {
            tx.clear();
            let first = self.seq.wrapping_add(1);
            let mut n = 0;
            for (payload, extra_flags) in reqs.by_ref().take(BATCH) {
                let mut hdr = NetlinkHeader::default();
                hdr.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
                self.seq = self.seq.wrapping_add(1);
                hdr.sequence_number = self.seq;
                let mut msg = NetlinkMessage::new(hdr, NetlinkPayload::from(payload));
                msg.finalize();
                let at = tx.len();
                tx.resize(at + msg.buffer_len(), 0);
                msg.serialize(&mut tx[at..]);
                n += 1;
            }
            let mut acks = vec![None; n];
            self.exchange(&tx, first, &mut acks);
            out.extend(acks.into_iter().map(|a| a.unwrap_or(Err(libc::EIO))));
        }
        out
    }

    /// Send one datagram of requests (sequence numbers `first`…) and collect their
    /// acks into `acks`. Acks of other sequence numbers (an earlier datagram given up
    /// on) are skipped; a message that does not parse fails every request still
    /// unanswered, so no reply the parser cannot place leaves us waiting.
    fn exchange(
        &mut self,
        tx: &[u8],
        first: u32,
        acks: &mut [Option<std::result::Result<(), i32>>],
    ) {
        let fail_rest = |acks: &mut [Option<_>], code: i32| {
            for a in acks.iter_mut().filter(|a| a.is_none()) {
                *a = Some(Err(code));
            }
        };
        if let Err(e) = self.sock.send(tx, 0) {
            return fail_rest(acks, e.raw_os_error().unwrap_or(libc::EIO));
        }
        let mut left = acks.len();
        while left > 0 {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) => return fail_rest(acks, e.raw_os_error().unwrap_or(libc::EIO)),
            };
            for m in messages(&self.buf[..n]) {
                let Ok(m) = m else {
                    return fail_rest(acks, libc::EBADMSG);
                };
                let k = m.header.sequence_number.wrapping_sub(first) as usize;
                if let (Some(slot @ None), NetlinkPayload::Error(e)) = (acks.get_mut(k), &m.payload)
                {
                    *slot = Some(ack_result(e));
                    left -= 1;
                }
            }
        }
    }

    /// Sends one dump request and hands every reply message to `each`.
    fn dump(
        &mut self,
        what: &str,
        req: RouteNetlinkMessage,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<()> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.seq += 1;
        hdr.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(hdr, NetlinkPayload::from(req));
        msg.finalize();
        let mut tx = vec![0; msg.buffer_len()];
        msg.serialize(&mut tx);
        self.sock
            .send(&tx, 0)
            .with_context(|| format!("sending {what} dump request"))?;
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .with_context(|| format!("reading {what} dump"))?;
            for m in messages(&self.buf[..n]) {
                let m = m.map_err(|e| anyhow!("bad netlink message in {what} dump: {e}"))?;
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        bail!("{what} dump: {}", e.to_io())
                    }
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
            }
        }
    }
}

impl Rtnetlink {
    /// Add a route; one that is already there is reported, not an error.
    pub fn add_route(&mut self, r: &RouteSpec) -> Result<AddOutcome> {
        match self.request(
            RouteNetlinkMessage::NewRoute(route_message(r)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(AddOutcome::Added),
            Err(code) if code == libc::EEXIST => Ok(AddOutcome::AlreadyPresent),
            Err(code) => bail!(
                "adding route to {}/{}: {}",
                r.dst,
                r.dst_len,
                std::io::Error::from_raw_os_error(code)
            ),
        }
    }

    /// Remove a route vipd added: the request carries protocol 118, so the kernel only
    /// matches a route marked as vipd's. `Ok(false)`: there was none (not an error).
    pub fn delete_route(&mut self, r: &RouteSpec) -> Result<bool> {
        match self.request(RouteNetlinkMessage::DelRoute(route_message(r)), 0) {
            Ok(()) => Ok(true),
            Err(code) if code == libc::ESRCH || code == libc::ENOENT || code == libc::ENODEV => {
                Ok(false)
            }
            Err(code) => bail!(
                "removing route to {}/{}: {}",
                r.dst,
                r.dst_len,
                std::io::Error::from_raw_os_error(code)
            ),
        }
    }

    /// Add the drain route of a released VIP (`@vipd release_drain`): `local ADDR dev
    /// IF proto 118` in the main table. The host keeps accepting (and answering)
    /// traffic to ADDR without having it as an address, so a routing daemon that
    /// announces the VIP as a connected route withdraws it (zebra ignores `local`
    /// routes of the main table).
    pub fn add_local_route(&mut self, addr: IpAddr, ifindex: u32) -> Result<AddOutcome> {
        self.add_local_routes(&[(addr, ifindex)])
            .pop()
            .expect("one result per request")
    }

    /// [`Self::add_local_route`] for many (address, ifindex), pipelined.
    pub fn add_local_routes(&mut self, which: &[(IpAddr, u32)]) -> Vec<Result<AddOutcome>> {
        let reqs = which.iter().map(|&(addr, ifindex)| {
            (
                RouteNetlinkMessage::NewRoute(local_route_message(addr, ifindex)),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        });
        let acks = self.requests(reqs);
        which
            .iter()
            .zip(acks)
            .map(|(&(addr, _), a)| match a {
                Ok(()) => Ok(AddOutcome::Added),
                Err(code) if code == libc::EEXIST => Ok(AddOutcome::AlreadyPresent),
                Err(code) => bail!(
                    "adding local route to {addr}: {}",
                    std::io::Error::from_raw_os_error(code)
                ),
            })
            .collect()
    }

    /// Remove a drain route ([`Self::add_local_route`]); `Ok(false)`: there was none.
    pub fn delete_local_route(&mut self, addr: IpAddr, ifindex: u32) -> Result<bool> {
        self.delete_local_routes(&[(addr, ifindex)])
            .pop()
            .expect("one result per request")
    }

    /// [`Self::delete_local_route`] for many (address, ifindex), pipelined.
    pub fn delete_local_routes(&mut self, which: &[(IpAddr, u32)]) -> Vec<Result<bool>> {
        let reqs = which.iter().map(|&(addr, ifindex)| {
            (
                RouteNetlinkMessage::DelRoute(local_route_message(addr, ifindex)),
                0,
            )
        });
        let acks = self.requests(reqs);
        which
            .iter()
            .zip(acks)
            .map(|(&(addr, _), a)| match a {
                Ok(()) => Ok(true),
                Err(code)
                    if code == libc::ESRCH || code == libc::ENOENT || code == libc::ENODEV =>
                {
                    Ok(false)
                }
                Err(code) => bail!(
                    "removing local route to {addr}: {}",
                    std::io::Error::from_raw_os_error(code)
                ),
            })
            .collect()
    }

    pub fn add_rule(&mut self, r: &RuleSpec) -> Result<AddOutcome> {
        match self.request(
            RouteNetlinkMessage::NewRule(rule_message(r)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(AddOutcome::Added),
            Err(code) if code == libc::EEXIST => Ok(AddOutcome::AlreadyPresent),
            Err(code) => bail!(
                "adding rule {r:?}: {}",
                std::io::Error::from_raw_os_error(code)
            ),
        }
    }

    pub fn delete_rule(&mut self, r: &RuleSpec) -> Result<()> {
        match self.request(RouteNetlinkMessage::DelRule(rule_message(r)), 0) {
            Ok(()) => Ok(()),
            Err(code) if code == libc::ENOENT || code == libc::ESRCH => Ok(()),
            Err(code) => bail!(
                "removing rule {r:?}: {}",
                std::io::Error::from_raw_os_error(code)
            ),
        }
    }
}

impl Rtnetlink {
    /// Create (or find) the macvlan of a `use_vmac` instance — private mode on top of
    /// `base`, with the virtual router MAC, in link group `group` — and bring it up.
    /// Returns its index and whether vipd created it (only then does vipd delete it at
    /// stop).
    pub fn ensure_vmac(
        &mut self,
        name: &str,
        base: u32,
        mac: [u8; 6],
        group: u32,
    ) -> Result<(u32, bool)> {
        if let Ok(index) = nix::net::if_::if_nametoindex(name) {
            let current = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
                .unwrap_or_default();
            if crate::iface::parse_mac(current.trim()) != Some(mac) {
                bail!(
                    "interface `{name}` exists but does not have the virtual router MAC {}",
                    fmt_mac(mac)
                );
            }
            self.set_up(index)?;
            return Ok((index, false));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Link(base));
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        if group != 0 {
            m.attributes.push(LinkAttribute::Group(group));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Private,
            )])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(|c| {
                anyhow!(
                    "creating VMAC interface `{name}`: {}",
                    std::io::Error::from_raw_os_error(c)
                )
            })?;
        let index = nix::net::if_::if_nametoindex(name)
            .with_context(|| format!("finding new VMAC `{name}`"))?;
        self.set_up(index)?;
        Ok((index, true))
    }

    /// Create (or find) the L2 ipvlan of a `use_ipvlan` instance on `base`, in link
    /// group `group`, and bring it up. An existing link of that name is used when it is
    /// stacked on `base` with `base`'s MAC (what an ipvlan of it is). Returns its index
    /// and whether vipd created it.
    pub fn ensure_ipvlan(
        &mut self,
        name: &str,
        base: &crate::iface::Interface,
        mode: vipd_config::model::IpvlanMode,
        group: u32,
    ) -> Result<(u32, bool)> {
        use netlink_packet_route::link::{InfoIpVlan, IpVlanFlags, IpVlanMode};
        use vipd_config::model::IpvlanMode as Mode;
        if let Ok(index) = nix::net::if_::if_nametoindex(name) {
            let current = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
                .unwrap_or_default();
            let stacked =
                std::path::Path::new(&format!("/sys/class/net/{name}/lower_{}", base.name))
                    .exists();
            if crate::iface::parse_mac(current.trim()) != Some(base.mac) || !stacked {
                bail!(
                    "interface `{name}` exists but is not an ipvlan of `{}` (use another name)",
                    base.name
                );
            }
            self.set_up(index)?;
            return Ok((index, false));
        }
        let flags = match mode {
            Mode::Bridge => IpVlanFlags::empty(),
            Mode::Private => IpVlanFlags::Private,
            Mode::Vepa => IpVlanFlags::Vepa,
        };
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Link(base.index));
        if group != 0 {
            m.attributes.push(LinkAttribute::Group(group));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::IpVlan),
            LinkInfo::Data(InfoData::IpVlan(vec![
                InfoIpVlan::Mode(IpVlanMode::L2),
                InfoIpVlan::Flags(flags),
            ])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(|c| {
                anyhow!(
                    "creating ipvlan interface `{name}`: {}{}",
                    std::io::Error::from_raw_os_error(c),
                    if c == libc::EOPNOTSUPP {
                        " (this kernel has no ipvlan support: CONFIG_IPVLAN)"
                    } else {
                        ""
                    }
                )
            })?;
        let index = nix::net::if_::if_nametoindex(name)
            .with_context(|| format!("finding new ipvlan `{name}`"))?;
        self.set_up(index)?;
        Ok((index, true))
    }

    fn set_up(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), 0)
            .map_err(|c| {
                anyhow!(
                    "setting interface {index} up: {}",
                    std::io::Error::from_raw_os_error(c)
                )
            })
    }

    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(()) => Ok(()),
            Err(c) if c == libc::ENODEV => Ok(()),
            Err(c) => bail!(
                "deleting interface {index}: {}",
                std::io::Error::from_raw_os_error(c)
            ),
        }
    }
}

/// What adding `spec` came to, from its ack.
fn add_outcome(spec: &AddressSpec, ack: std::result::Result<(), i32>) -> Result<AddOutcome> {
    match ack {
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

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn route_message(r: &RouteSpec) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = if r.dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = r.dst_len;
    m.header.table = if r.table < 256 { r.table as u8 } else { 0 };
    m.header.protocol = RouteProtocol::from(VIPD_ROUTE_PROTO);
    m.header.kind = match r.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
        RouteKind::Throw => RouteType::Throw,
        RouteKind::Local => RouteType::Local,
    };
    m.header.scope = RouteScope::from(r.effective_scope());
    if r.onlink {
        m.header.flags = RouteFlags::Onlink;
    }
    if r.dst_len > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst)));
    }
    if let Some(g) = r.gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    if let Some(d) = r.dev {
        m.attributes.push(RouteAttribute::Oif(d));
    }
    if let Some(s) = r.pref_src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(s)));
    }
    if let Some(p) = r.metric {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    m
}

/// `local ADDR/32 (or /128) dev IF scope host proto 118 table main`.
fn local_route_message(addr: IpAddr, ifindex: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
    m.header.table = 254;
    m.header.protocol = RouteProtocol::from(VIPD_ROUTE_PROTO);
    m.header.kind = RouteType::Local;
    m.header.scope = RouteScope::Host;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(addr)));
    m.attributes.push(RouteAttribute::Oif(ifindex));
    m.attributes.push(RouteAttribute::Table(254));
    m
}

fn rule_message(r: &RuleSpec) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = if r.v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.action = match r.action {
        None => RuleAction::ToTable,
        Some(RouteKind::Blackhole) => RuleAction::Blackhole,
        Some(RouteKind::Unreachable) => RuleAction::Unreachable,
        Some(_) => RuleAction::Prohibit,
    };
    if r.invert {
        m.header.flags = RuleFlags::Invert;
    }
    if let Some((a, l)) = r.from {
        m.header.src_len = l;
        m.attributes.push(RuleAttribute::Source(a));
    }
    if let Some((a, l)) = r.to {
        m.header.dst_len = l;
        m.attributes.push(RuleAttribute::Destination(a));
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(o.clone()));
    }
    if let Some((mark, mask)) = r.fwmark {
        m.attributes.push(RuleAttribute::FwMark(mark));
        if let Some(mask) = mask {
            m.attributes.push(RuleAttribute::FwMask(mask));
        }
    }
    if let Some(p) = r.priority {
        m.attributes.push(RuleAttribute::Priority(p));
    }
    if let Some(t) = r.table {
        m.header.table = if t < 256 { t as u8 } else { 0 };
        m.attributes.push(RuleAttribute::Table(t));
    }
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(
            VIPD_ROUTE_PROTO,
        )));
    m
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
    // With a peer the kernel keeps it as IFA_ADDRESS; a deletion must name it too (an
    // IPv4 deletion matches IFA_ADDRESS against the address's peer).
    let o = &spec.opts;
    msg.attributes
        .push(AddressAttribute::Address(o.peer.unwrap_or(spec.addr)));
    if with_details {
        if let Some(b) = spec.brd {
            msg.attributes.push(AddressAttribute::Broadcast(b));
        }
        if let Some(l) = &spec.label {
            msg.attributes.push(AddressAttribute::Label(l.clone()));
        }
        let mut flags = AddressFlags::from_bits_retain(o.flags);
        if spec.addr.is_ipv6() && !o.dad {
            // Usable at once: duplicate address detection would delay take-over by ~1 s
            // (keepalived sets it too, unless `-nodad`).
            flags |= AddressFlags::Nodad;
        }
        if !flags.is_empty() {
            msg.attributes.push(AddressAttribute::Flags(flags));
        }
        if let (Some(p), true) = (o.preferred_lft, spec.addr.is_ipv6()) {
            let mut c = CacheInfo::default();
            (c.ifa_preferred, c.ifa_valid) = (p, u32::MAX);
            msg.attributes.push(AddressAttribute::CacheInfo(c));
        }
        msg.attributes.push(AddressAttribute::Other(DefaultNla::new(
            IFA_PROTO,
            vec![VIPD_ADDR_PROTO],
        )));
    }
    msg
}

/// The messages of one datagram of rtnetlink replies or events, in order, as every
/// receive loop here and in [`crate::linkwatch`] walks it: each message starts at the
/// previous one's length rounded up to 4 bytes; the walk ends after a message that does
/// not parse (yielded as `Err`) or that claims length 0. Pure, for the fuzz target
/// (fuzz/fuzz_targets/rtnetlink.rs) as much as for the loops.
///
/// netlink-packet-route 0.24 panics on some malformed attributes (it reads an
/// IFA_CACHEINFO shorter than 16 bytes past its end, found by that fuzz target); such a
/// message is an `Err` here like any other that does not parse, never a panic that
/// would stop the link watcher's thread or the daemon.
pub fn messages(
    buf: &[u8],
) -> impl Iterator<Item = std::result::Result<NetlinkMessage<RouteNetlinkMessage>, DecodeError>> + '_
{
    let mut off = 0;
    std::iter::from_fn(move || {
        if off >= buf.len() {
            return None;
        }
        let at = &buf[off..];
        let m = std::panic::catch_unwind(|| NetlinkMessage::<RouteNetlinkMessage>::deserialize(at))
            .unwrap_or_else(|_| {
                Err(DecodeError::from(
                    "netlink-packet-route panicked decoding this message",
                ))
            });
        off = match &m {
            Ok(m) if m.header.length != 0 => off + ((m.header.length as usize + 3) & !3),
            _ => buf.len(),
        };
        Some(m)
    })
}

/// An acknowledgement (`Ok`) or the errno of a refusal. The kernel sends `-errno`; any
/// other non-zero code (positive, or i32::MIN, which has no negation and overflowed
/// here before fuzzing found it) is still a refusal, reported as EPROTO.
#[doc(hidden)]
pub fn ack_result(e: &ErrorMessage) -> std::result::Result<(), i32> {
    match e.code.map(|c| c.get()) {
        None => Ok(()),
        Some(c) if c < 0 && c != i32::MIN => Err(-c),
        Some(_) => Err(libc::EPROTO),
    }
}

/// The address notifications (RTM_NEWADDR: `true`, RTM_DELADDR: `false`) in a
/// datagram read from a socket subscribed to the address groups (`vipd bench vips`
/// watches a router's addresses come and go with them).
#[doc(hidden)]
pub fn address_events(buf: &[u8]) -> Vec<(bool, KernelAddress)> {
    messages(buf)
        .map_while(|m| m.ok())
        .filter_map(|m| match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
                kernel_address(&a).map(|k| (true, k))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => {
                kernel_address(&a).map(|k| (false, k))
            }
            _ => None,
        })
        .collect()
}

/// A neighbour-table entry that holds a link-layer address (reachable, stale, delay,
/// probe, permanent, noarp), as [`Rtnetlink::dump_neighbours`] keeps it.
#[doc(hidden)]
pub fn neighbour(n: &NeighbourMessage) -> Option<Neighbour> {
    if matches!(
        n.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return None;
    }
    let mut addr = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                addr = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                addr = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLocalAddress(l) if l.len() == 6 => {
                mac = Some([l[0], l[1], l[2], l[3], l[4], l[5]])
            }
            _ => {}
        }
    }
    Some(Neighbour {
        addr: addr?,
        mac: mac?,
        ifindex: n.header.ifindex,
    })
}

/// An address of an address dump, as [`Rtnetlink::dump_addresses`] keeps it.
#[doc(hidden)]
pub fn kernel_address(a: &AddressMessage) -> Option<KernelAddress> {
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

    fn on_the_wire(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    /// Found by fuzz/fuzz_targets/rtnetlink.rs: an NLMSG_ERROR with error code i32::MIN
    /// overflowed the negation in `request` (a panic with overflow checks, a negative
    /// "errno" without); a positive code gave a negative errno. Both are refusals
    /// (EPROTO); a real `-errno` is kept.
    #[test]
    fn error_code_i32_min_is_an_error_not_an_overflow() {
        let datagram: &[u8] = &[
            0x38, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00, 0x92, 0x80, 0x00, 0x08,
            0x00, 0x1d, 0x00, 0x00, 0x00, 0x80, 0x00, 0x08, 0x00, 0x00, 0x64, 0xff, 0x92, 0x80,
            0x00, 0x08, 0x00, 0x1d, 0x00, 0x00, 0x00, 0x80, 0x00, 0x08, 0x00, 0x1d, 0x00, 0x92,
            0x80, 0xff, 0x00, 0x08, 0x00, 0x1d, 0x00, 0x01, 0x01, 0x80, 0x00, 0x08, 0x00, 0x1d,
            0x00, 0xf5, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x26, 0x00, 0x00, 0x00,
            0x18, 0x64, 0x8f, 0x8f, 0x8f, 0x8f, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02,
            0x00, 0x08, 0x00, 0x00, 0x00, 0x92, 0x0a, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x10,
            0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xac, 0x3b, 0x00,
            0x00,
        ];
        let acks: Vec<_> = messages(datagram)
            .filter_map(|m| match m.ok()?.payload {
                NetlinkPayload::Error(e) => Some(ack_result(&e)),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [Err(libc::EPROTO)]);
        // The second input: code +11.
        let positive: &[u8] = &[
            0x24, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0x0c, 0x00, 0x05, 0x6e, 0xef,
            0xff, 0xff, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x48, 0x00, 0x00, 0x00, 0x1a, 0x00, 0xc7, 0x34, 0x00, 0x00,
        ];
        let acks: Vec<_> = messages(positive)
            .filter_map(|m| match m.ok()?.payload {
                NetlinkPayload::Error(e) => Some(ack_result(&e)),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [Err(libc::EPROTO)]);
        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-libc::EEXIST);
        assert_eq!(ack_result(&e), Err(libc::EEXIST));
        e.code = None;
        assert_eq!(ack_result(&e), Ok(()));
    }

    /// Found by fuzz/fuzz_targets/rtnetlink.rs: an RTM_NEWADDR whose IFA_CACHEINFO is
    /// 12 bytes made netlink-packet-route 0.24 panic (it reads 16). The walk reports it
    /// as a message that does not parse and ends, as for any other bad message.
    #[test]
    fn a_message_that_panics_the_decoder_is_an_error() {
        let datagram: &[u8] = &[
            0x58, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x07, 0x10, 0x00, 0x00, 0x00, 0x92,
            0x00, 0x00, 0x02, 0x18, 0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x06, 0x00, 0x1c, 0x00,
            0x02, 0x64, 0x08, 0x00, 0x09, 0x00, 0x01, 0x01, 0x00, 0x00, 0x80, 0x00, 0x08, 0x01,
            0x00, 0x00, 0x10, 0x00, 0x06, 0x00, 0x00, 0x64, 0x08, 0x00, 0x09, 0x00, 0x01, 0x00,
            0x31, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x38,
            0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x0a, 0xff, 0xff, 0xff, 0xff,
            0x00, 0x00, 0x00, 0xbc, 0xbc, 0xbc, 0xbc, 0xbc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x02, 0x00, 0x00,
            0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x08, 0x00, 0x01, 0x00, 0xc0,
            0x00, 0x02, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x1c, 0x00,
            0x02, 0x00, 0x21, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x08,
        ];
        let r: Vec<_> = messages(datagram).collect();
        assert_eq!(r.len(), 1);
        let e = r[0].as_ref().unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
    }

    /// The walk every receive loop uses: messages in order, then the first one that
    /// does not parse, and nothing after it; a length of 0 ends the walk too.
    #[test]
    fn messages_walk_a_datagram_and_stop_at_a_bad_message() {
        let spec = |ifindex, addr: &str| AddressSpec {
            ifindex,
            addr: addr.parse().unwrap(),
            prefix_len: 24,
            brd: None,
            scope: 0,
            label: None,
            opts: AddressOptions::default(),
        };
        let mut buf = on_the_wire(RouteNetlinkMessage::NewAddress(address_message(
            &spec(3, "192.0.2.7"),
            true,
        )));
        buf.extend(on_the_wire(RouteNetlinkMessage::NewAddress(
            address_message(&spec(4, "2001:db8::7"), false),
        )));
        let good = buf.len();
        let addrs: Vec<KernelAddress> = messages(&buf)
            .map(|m| match m.unwrap().payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
                    kernel_address(&a).unwrap()
                }
                p => panic!("unexpected {p:?}"),
            })
            .collect();
        assert_eq!(
            addrs
                .iter()
                .map(|a| (a.ifindex, a.addr))
                .collect::<Vec<_>>(),
            [
                (3, "192.0.2.7".parse().unwrap()),
                (4, "2001:db8::7".parse().unwrap())
            ]
        );
        // A truncated header after them: reported once, and the walk ends.
        buf.extend_from_slice(&[0xff; 7]);
        let r: Vec<_> = messages(&buf).collect();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[1].is_ok() && r[2].is_err());
        // A header claiming length 0 ends the walk whatever follows.
        let mut zero = buf[..good].to_vec();
        zero.splice(0..4, 0u32.to_ne_bytes());
        assert!(messages(&zero).count() <= 1);
        assert_eq!(messages(&[]).count(), 0);
    }

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
    fn routes_and_rules() {
        in_private_netns(|| {
            let sh = |args: &[&str]| {
                let out = std::process::Command::new("ip")
                    .args(args)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            sh(&["link", "add", "r0", "type", "veth", "peer", "r1"]);
            sh(&["link", "set", "r0", "up"]);
            sh(&["link", "set", "r1", "up"]);
            sh(&["addr", "add", "192.0.2.1/24", "dev", "r0"]);
            let r0 = nix::net::if_::if_nametoindex("r0").unwrap();
            let idx = |n: &str| -> anyhow::Result<u32> { Ok(nix::net::if_::if_nametoindex(n)?) };
            let mut nl = Rtnetlink::open().unwrap();
            let (routes, rules) = crate::routes::tests::model(
                &[
                    "198.51.100.0/24 via 192.0.2.254 dev r0 table 100",
                    "203.0.113.0/24 dev r0 metric 7",
                    "blackhole 203.0.113.128/25",
                ],
                &[
                    "from 192.0.2.0/24 table 100 priority 1000",
                    "not from 198.51.100.0/24 priority 1001 prohibit",
                ],
            );
            let [via, direct, hole] =
                [0, 1, 2].map(|i| crate::routes::route_spec(&routes[i], &idx).unwrap());
            for r in [&via, &direct, &hole] {
                assert_eq!(nl.add_route(r).unwrap(), AddOutcome::Added);
            }
            assert_eq!(nl.add_route(&via).unwrap(), AddOutcome::AlreadyPresent);
            let t100 = sh(&["route", "show", "table", "100"]);
            assert!(
                t100.contains("198.51.100.0/24 via 192.0.2.254 dev r0 proto 118"),
                "{t100}"
            );
            let main = sh(&["route", "show"]);
            assert!(
                main.contains("203.0.113.0/24 dev r0 proto 118 scope link metric 7"),
                "{main}"
            );
            assert!(
                main.contains("blackhole 203.0.113.128/25 proto 118"),
                "{main}"
            );
            let [rule, not] = [0, 1].map(|i| crate::routes::rule_spec(&rules[i]));
            assert_eq!(nl.add_rule(&rule).unwrap(), AddOutcome::Added);
            assert_eq!(nl.add_rule(&not).unwrap(), AddOutcome::Added);
            let rules = sh(&["rule", "show"]);
            assert!(
                rules.contains("1000:\tfrom 192.0.2.0/24 lookup 100 proto 118"),
                "{rules}"
            );
            assert!(
                rules.contains("1001:\tnot from 198.51.100.0/24 prohibit proto 118"),
                "{rules}"
            );
            for r in [&via, &direct, &hole] {
                assert!(nl.delete_route(r).unwrap());
                assert!(!nl.delete_route(r).unwrap(), "already gone: fine");
            }
            // The same route added by someone else (another protocol) is never ours.
            sh(&[
                "route",
                "add",
                "blackhole",
                "203.0.113.128/25",
                "proto",
                "static",
            ]);
            assert!(!nl.delete_route(&hole).unwrap());
            assert!(
                sh(&["route", "show"]).contains("blackhole 203.0.113.128/25 proto static"),
                "a foreign route was removed"
            );
            sh(&["route", "del", "blackhole", "203.0.113.128/25"]);
            nl.delete_rule(&rule).unwrap();
            nl.delete_rule(&not).unwrap();
            assert!(!sh(&["route", "show"]).contains("proto 118"));
            assert!(!sh(&["rule", "show"]).contains("proto 118"));
            let _ = r0;
        });
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
                opts: AddressOptions::default(),
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
                opts: AddressOptions::default(),
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

    /// Many addresses in pipelined batches (more than one datagram's worth): each
    /// result belongs to its own address — one already there, one refused (a missing
    /// interface) in the middle of a datagram — and the others still go in and out.
    #[test]
    fn batched_adds_and_deletes_report_each_address() {
        in_private_netns(|| {
            let mut nl = Rtnetlink::open().unwrap();
            let spec = |k: usize, ifindex| AddressSpec {
                ifindex,
                addr: format!("2001:db8::1:{k:x}").parse().unwrap(),
                prefix_len: 128,
                brd: None,
                scope: 0,
                label: None,
                opts: AddressOptions::default(),
            };
            let n = 3 * BATCH + 5;
            let mut specs: Vec<AddressSpec> = (0..n).map(|k| spec(k, 1)).collect();
            specs[70].ifindex = 999_999; // no such interface
            assert_eq!(nl.add_address(&specs[100]).unwrap(), AddOutcome::Added);
            let r = nl.add_addresses(&specs);
            assert_eq!(r.len(), n);
            for (k, r) in r.iter().enumerate() {
                match k {
                    70 => {
                        let e = r.as_ref().unwrap_err().to_string();
                        assert!(e.contains("adding 2001:db8::1:46/128"), "{e}");
                    }
                    100 => assert_eq!(*r.as_ref().unwrap(), AddOutcome::AlreadyPresent),
                    _ => assert_eq!(*r.as_ref().unwrap(), AddOutcome::Added, "{k}"),
                }
            }
            let present = |nl: &mut Rtnetlink| {
                nl.dump_addresses()
                    .unwrap()
                    .iter()
                    .filter(|a| specs.iter().any(|s| s.addr == a.addr))
                    .count()
            };
            assert_eq!(present(&mut nl), n - 1);
            nl.delete_address(&specs[5]).unwrap();
            let r = nl.delete_addresses(&specs);
            assert_eq!(r.len(), n);
            assert!(
                r.iter().all(|r| r.is_ok()),
                "gone already / no interface: fine"
            );
            assert_eq!(present(&mut nl), 0);
            // The socket is still in step: a single request after the batches.
            assert_eq!(nl.add_address(&specs[0]).unwrap(), AddOutcome::Added);
        });
    }

    /// keepalived's address options reach the kernel: `ip -d -j addr` shows the flags,
    /// the peer and the lifetime; an address with a peer is found present by a second
    /// add and goes with its deletion.
    #[test]
    fn address_options_reach_the_kernel() {
        in_private_netns(|| {
            let ip = |args: &[&str]| {
                let o = std::process::Command::new("ip")
                    .args(args)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "ip {args:?}: {o:?}");
                String::from_utf8(o.stdout).unwrap()
            };
            ip(&["link", "add", "d0", "type", "veth", "peer", "d1"]);
            ip(&["link", "set", "d0", "up"]);
            ip(&["link", "set", "d1", "up"]);
            let d0 = nix::net::if_::if_nametoindex("d0").unwrap();
            let mut nl = Rtnetlink::open().unwrap();
            let spec = |addr: &str, prefix_len, opts| AddressSpec {
                ifindex: d0,
                addr: addr.parse().unwrap(),
                prefix_len,
                brd: None,
                scope: 0,
                label: None,
                opts,
            };
            let peer = spec(
                "192.0.2.1",
                32,
                AddressOptions {
                    peer: Some("192.0.2.2".parse().unwrap()),
                    flags: 0x200, // noprefixroute
                    ..Default::default()
                },
            );
            let v6 = spec(
                "2001:db8::1",
                64,
                AddressOptions {
                    flags: 0x10 | 0x100 | 0x200, // home mngtmpaddr noprefixroute
                    preferred_lft: Some(0),
                    ..Default::default()
                },
            );
            let dad = spec(
                "2001:db8::2",
                64,
                AddressOptions {
                    dad: true,
                    preferred_lft: Some(300),
                    ..Default::default()
                },
            );
            let mcast = spec(
                "233.252.0.1",
                32,
                AddressOptions {
                    flags: 0x400, // autojoin
                    ..Default::default()
                },
            );
            for s in [&peer, &v6, &dad, &mcast] {
                assert_eq!(nl.add_address(s).unwrap(), AddOutcome::Added, "{s:?}");
                assert_eq!(nl.add_address(s).unwrap(), AddOutcome::AlreadyPresent);
            }
            let show = ip(&["-d", "-j", "addr", "show", "dev", "d0"]);
            let v: serde_json::Value = serde_json::from_str(&show).unwrap();
            let info = v[0]["addr_info"].as_array().unwrap().clone();
            let find = |a: &str| {
                info.iter()
                    .find(|i| i["local"] == a)
                    .unwrap_or_else(|| panic!("{a} not in {show}"))
                    .clone()
            };
            let p = find("192.0.2.1");
            assert_eq!(
                (p["address"].as_str(), p["prefixlen"].as_u64()),
                (Some("192.0.2.2"), Some(32))
            );
            assert_eq!(p["noprefixroute"], true, "{p}");
            let a = find("2001:db8::1");
            for f in ["home", "mngtmpaddr", "noprefixroute", "nodad", "deprecated"] {
                assert_eq!(a[f], true, "{f}: {a}");
            }
            assert_eq!(a["preferred_life_time"], 0, "{a}");
            assert_eq!(a["valid_life_time"], u32::MAX, "{a}");
            let d = find("2001:db8::2");
            assert_eq!(d["nodad"], serde_json::Value::Null, "-nodad: DAD runs: {d}");
            assert_eq!(d["tentative"], true, "DAD runs: {d}");
            assert!(d["preferred_life_time"].as_u64().unwrap() <= 300, "{d}");
            assert_eq!(find("233.252.0.1")["autojoin"], true);
            assert!(ip(&["maddr", "show", "dev", "d0"]).contains("233.252.0.1"));
            // noprefixroute: no route for the /64 (nor for the peer) — the one with DAD has it.
            let routes =
                ip(&["-6", "route", "show", "dev", "d0"]) + &ip(&["route", "show", "dev", "d0"]);
            assert!(!routes.contains("192.0.2.2"), "{routes}");
            assert_eq!(routes.matches("2001:db8::/64").count(), 1, "{routes}");
            for s in [&peer, &v6, &dad, &mcast] {
                nl.delete_address(s).unwrap();
            }
            let left = ip(&["addr", "show", "dev", "d0"]);
            for a in ["192.0.2.1", "2001:db8::1", "2001:db8::2", "233.252.0.1"] {
                assert!(!left.contains(a), "{a} left: {left}");
            }
        });
    }
}
