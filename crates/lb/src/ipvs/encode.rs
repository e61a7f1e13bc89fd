//! IPVS generic-netlink messages: pure encoders (one [`MsgBuf`] per request, no socket)
//! and decoders for the kernel's dump replies.
//!
//! The kernel representation vipd works with is [`SvcAttrs`] + [`DestAttrs`]: exactly
//! the values that go into (and come back out of) the netlink attributes, so that what
//! vipd programmed and what a dump reports compare directly.
//!
//! Attribute encoding, per `linux/ip_vs.h` and the kernel's IPVS netlink policy:
//! - service key: `AF` (u16) and either `FWMARK` (u32) or `PROTOCOL` (u16) + `ADDR`
//!   (16-byte `union nf_inet_addr`; IPv4 in the first 4 bytes, the rest zero) + `PORT`
//!   (be16);
//! - service options (NEW/SET must carry all four): `SCHED_NAME` (NUL-terminated),
//!   `FLAGS` (`struct ip_vs_flags { u32 flags; u32 mask; }`), `TIMEOUT` (u32 seconds),
//!   `NETMASK` (4 bytes: IPv4 the mask in network byte order; IPv6 the prefix length as a
//!   native u32, which is how the kernel reads it back); optional `PE_NAME`;
//! - destination: `ADDR` (16 bytes), `PORT` (be16), `FWD_METHOD`, `WEIGHT`, `U_THRESH`,
//!   `L_THRESH` (u32 each), `ADDR_FAMILY` (u16; lets an IPv4 service tunnel to an IPv6
//!   destination and vice versa). `TUN_TYPE`/`TUN_PORT`/`TUN_FLAGS` are not sent: the
//!   kernel default is IPIP.
//!
//! Native-endian fields are written with `to_ne_bytes` like every netlink user; the byte
//! layout tests are therefore little-endian only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail, Context};

use super::consts::*;
use crate::model::{Family, Proto, ServiceKey, Timeouts};
use crate::netlink::{attrs, Msg, MsgBuf, Open, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

/// A virtual service's settings as the kernel holds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SvcAttrs {
    pub key: ServiceKey,
    /// Scheduler name (`wrr`, ...; a dump may say `none`).
    pub sched: String,
    /// `IP_VS_SVC_F_*` bits, limited to [`SVC_FLAGS_USER_MASK`].
    pub flags: u32,
    /// Persistence timeout in seconds (0 when not persistent).
    pub timeout: u32,
    /// Persistence granularity. IPv4: the mask as a number (`0xffff_ffff` = /32).
    /// IPv6: the prefix length (1..=128).
    pub netmask: u32,
    /// Persistence engine (`sip`), if any.
    pub pe_name: Option<String>,
}

/// A destination (real server) as the kernel holds it. Identified within its service by
/// (`addr`, `port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DestAttrs {
    pub addr: IpAddr,
    pub port: u16,
    /// `IP_VS_CONN_F_MASQ` / `_TUNNEL` / `_DROUTE` (`_LOCALNODE` can appear in dumps of
    /// services someone else configured; the 6.1 kernel keeps a local destination's
    /// Masq/Route method as given).
    pub fwd: u32,
    pub weight: u32,
    pub u_thresh: u32,
    pub l_thresh: u32,
}

/// Starts a generic netlink message: nlmsghdr + genlmsghdr.
fn genl_begin(buf: &mut MsgBuf, ty: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> Open {
    let m = buf.begin_msg(ty, flags, seq);
    buf.put_raw(&[cmd, version, 0, 0]);
    m
}

pub(super) fn ipvs_msg(
    family: u16,
    cmd: u8,
    flags: u16,
    seq: u32,
    body: impl FnOnce(&mut MsgBuf),
) -> MsgBuf {
    let mut buf = MsgBuf::new();
    let m = genl_begin(&mut buf, family, flags, seq, cmd, IPVS_GENL_VERSION);
    body(&mut buf);
    buf.end_msg(m);
    buf
}

/// `union nf_inet_addr` as 16 bytes.
fn inet_addr(addr: &IpAddr) -> [u8; NF_INET_ADDR_LEN] {
    let mut v = [0u8; NF_INET_ADDR_LEN];
    match addr {
        IpAddr::V4(a) => v[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => v.copy_from_slice(&a.octets()),
    }
    v
}

fn put_svc_key(buf: &mut MsgBuf, key: &ServiceKey) {
    buf.attr_u16(IPVS_SVC_ATTR_AF, key.family().af());
    match key {
        ServiceKey::Addr { addr, port, proto } => {
            buf.attr_u16(IPVS_SVC_ATTR_PROTOCOL, proto.number() as u16);
            buf.attr(IPVS_SVC_ATTR_ADDR, &inet_addr(addr));
            buf.attr_u16_be(IPVS_SVC_ATTR_PORT, *port);
        }
        ServiceKey::Fwmark { mark, .. } => buf.attr_u32(IPVS_SVC_ATTR_FWMARK, *mark),
    }
}

fn put_svc_key_nest(buf: &mut MsgBuf, key: &ServiceKey) {
    let n = buf.nest_begin(IPVS_CMD_ATTR_SERVICE);
    put_svc_key(buf, key);
    buf.nest_end(n);
}

fn put_svc_full(buf: &mut MsgBuf, svc: &SvcAttrs) {
    let n = buf.nest_begin(IPVS_CMD_ATTR_SERVICE);
    put_svc_key(buf, &svc.key);
    buf.attr_str(IPVS_SVC_ATTR_SCHED_NAME, &svc.sched);
    if let Some(pe) = &svc.pe_name {
        buf.attr_str(IPVS_SVC_ATTR_PE_NAME, pe);
    }
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&(svc.flags & SVC_FLAGS_USER_MASK).to_ne_bytes());
    flags[4..].copy_from_slice(&SVC_FLAGS_USER_MASK.to_ne_bytes());
    buf.attr(IPVS_SVC_ATTR_FLAGS, &flags);
    buf.attr_u32(IPVS_SVC_ATTR_TIMEOUT, svc.timeout);
    match svc.key.family() {
        Family::V4 => buf.attr_u32_be(IPVS_SVC_ATTR_NETMASK, svc.netmask),
        Family::V6 => buf.attr_u32(IPVS_SVC_ATTR_NETMASK, svc.netmask),
    }
    buf.nest_end(n);
}

fn put_dest(buf: &mut MsgBuf, d: &DestAttrs) {
    let n = buf.nest_begin(IPVS_CMD_ATTR_DEST);
    buf.attr(IPVS_DEST_ATTR_ADDR, &inet_addr(&d.addr));
    buf.attr_u16_be(IPVS_DEST_ATTR_PORT, d.port);
    buf.attr_u32(IPVS_DEST_ATTR_FWD_METHOD, d.fwd & IP_VS_CONN_F_FWD_MASK);
    buf.attr_u32(IPVS_DEST_ATTR_WEIGHT, d.weight);
    buf.attr_u32(IPVS_DEST_ATTR_U_THRESH, d.u_thresh);
    buf.attr_u32(IPVS_DEST_ATTR_L_THRESH, d.l_thresh);
    buf.attr_u16(IPVS_DEST_ATTR_ADDR_FAMILY, Family::of(&d.addr).af());
    buf.nest_end(n);
}

pub(super) const DO: u16 = NLM_F_REQUEST | NLM_F_ACK;
pub(super) const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;

/// `CTRL_CMD_GETFAMILY` for "IPVS", sent as a dump request: the controller answers a
/// dump with every registered family (older kernels ignore the name filter), which
/// [`family_id`] searches, and the reply ends with NLMSG_DONE like every dump.
pub fn get_family(seq: u32) -> MsgBuf {
    get_family_named(IPVS_GENL_NAME, seq)
}

/// [`get_family`] for any family name (tests resolve `nlctrl`, which always exists).
pub fn get_family_named(name: &str, seq: u32) -> MsgBuf {
    let mut buf = MsgBuf::new();
    let m = genl_begin(
        &mut buf,
        GENL_ID_CTRL,
        DUMP,
        seq,
        CTRL_CMD_GETFAMILY,
        CTRL_REQUEST_VERSION,
    );
    buf.attr_str(CTRL_ATTR_FAMILY_NAME, name);
    buf.end_msg(m);
    buf
}

/// `IPVS_CMD_NEW_SERVICE`: add a virtual service (no destinations yet).
pub fn new_service(family: u16, svc: &SvcAttrs, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_NEW_SERVICE, DO, seq, |b| {
        put_svc_full(b, svc)
    })
}

/// `IPVS_CMD_SET_SERVICE`: change scheduler, flags, persistence of an existing service.
pub fn set_service(family: u16, svc: &SvcAttrs, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_SET_SERVICE, DO, seq, |b| {
        put_svc_full(b, svc)
    })
}

/// `IPVS_CMD_DEL_SERVICE`: remove a service and its destinations.
pub fn del_service(family: u16, key: &ServiceKey, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_DEL_SERVICE, DO, seq, |b| {
        put_svc_key_nest(b, key)
    })
}

/// `IPVS_CMD_NEW_DEST`: add a destination to the service `key`.
pub fn new_dest(family: u16, key: &ServiceKey, dest: &DestAttrs, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_NEW_DEST, DO, seq, |b| {
        put_svc_key_nest(b, key);
        put_dest(b, dest);
    })
}

/// `IPVS_CMD_SET_DEST`: change a destination's forwarding method, weight, thresholds.
pub fn set_dest(family: u16, key: &ServiceKey, dest: &DestAttrs, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_SET_DEST, DO, seq, |b| {
        put_svc_key_nest(b, key);
        put_dest(b, dest);
    })
}

/// `IPVS_CMD_DEL_DEST`: remove the destination `addr`:`port` from the service `key`.
pub fn del_dest(family: u16, key: &ServiceKey, addr: IpAddr, port: u16, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_DEL_DEST, DO, seq, |b| {
        put_svc_key_nest(b, key);
        let n = b.nest_begin(IPVS_CMD_ATTR_DEST);
        b.attr(IPVS_DEST_ATTR_ADDR, &inet_addr(&addr));
        b.attr_u16_be(IPVS_DEST_ATTR_PORT, port);
        b.attr_u16(IPVS_DEST_ATTR_ADDR_FAMILY, Family::of(&addr).af());
        b.nest_end(n);
    })
}

/// `IPVS_CMD_GET_SERVICE` dump: every virtual service.
pub fn get_services(family: u16, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_GET_SERVICE, DUMP, seq, |_| {})
}

/// `IPVS_CMD_GET_DEST` dump: the destinations of the service `key`.
pub fn get_dests(family: u16, key: &ServiceKey, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_GET_DEST, DUMP, seq, |b| {
        put_svc_key_nest(b, key)
    })
}

/// `IPVS_CMD_SET_CONFIG`: the connection timeouts. Only the non-zero ones are sent (the
/// kernel leaves a missing or zero one unchanged either way).
pub fn set_config(family: u16, t: &Timeouts, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_SET_CONFIG, DO, seq, |b| {
        for (ty, v) in [
            (IPVS_CMD_ATTR_TIMEOUT_TCP, t.tcp),
            (IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, t.tcpfin),
            (IPVS_CMD_ATTR_TIMEOUT_UDP, t.udp),
        ] {
            if v != 0 {
                b.attr_u32(ty, v);
            }
        }
    })
}

/// `IPVS_CMD_FLUSH`: delete every service in the network namespace, vipd's or not
/// (`lvs_flush`, `lvs_flush_on_stop`).
pub fn flush(family: u16, seq: u32) -> MsgBuf {
    ipvs_msg(family, IPVS_CMD_FLUSH, DO, seq, |_| {})
}

// ---------------------------------------------------------------------------------------
// Decoding

/// The id of the generic netlink family `name` in a controller dump, if listed.
pub fn family_id(replies: &[Msg], name: &str) -> Option<u16> {
    replies
        .iter()
        .filter(|m| m.ty == GENL_ID_CTRL && m.payload.len() >= GENL_HDRLEN)
        .filter(|m| m.payload[0] == CTRL_CMD_NEWFAMILY)
        .find_map(|m| {
            let mut id = None;
            let mut matches = false;
            for (ty, v) in attrs(&m.payload[GENL_HDRLEN..]) {
                match ty {
                    CTRL_ATTR_FAMILY_ID if v.len() >= 2 => {
                        id = Some(u16::from_ne_bytes([v[0], v[1]]))
                    }
                    CTRL_ATTR_FAMILY_NAME => matches = c_str(v) == name,
                    _ => {}
                }
            }
            if matches {
                id
            } else {
                None
            }
        })
}

pub(super) fn c_str(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

pub(super) fn get_u16(v: &[u8], what: &str) -> anyhow::Result<u16> {
    let a: [u8; 2] = v
        .get(..2)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| anyhow!("{what}: {} bytes, want 2", v.len()))?;
    Ok(u16::from_ne_bytes(a))
}

pub(super) fn get_u32(v: &[u8], what: &str) -> anyhow::Result<u32> {
    let a: [u8; 4] = v
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| anyhow!("{what}: {} bytes, want 4", v.len()))?;
    Ok(u32::from_ne_bytes(a))
}

fn get_addr(v: &[u8], af: u16, what: &str) -> anyhow::Result<IpAddr> {
    if af == libc::AF_INET as u16 {
        let a: [u8; 4] = v
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| anyhow!("{what}: {} bytes, want 4 or 16", v.len()))?;
        Ok(IpAddr::V4(Ipv4Addr::from(a)))
    } else {
        let a: [u8; 16] = v
            .get(..16)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| anyhow!("{what}: {} bytes, want 16", v.len()))?;
        Ok(IpAddr::V6(Ipv6Addr::from(a)))
    }
}

fn family_of_af(af: u16) -> Option<Family> {
    if af == libc::AF_INET as u16 {
        Some(Family::V4)
    } else if af == libc::AF_INET6 as u16 {
        Some(Family::V6)
    } else {
        None
    }
}

/// The first nested attribute `ty` after the genl header of `msg`.
pub(super) fn nested(msg: &Msg, ty: u16) -> anyhow::Result<&[u8]> {
    let body = msg
        .payload
        .get(GENL_HDRLEN..)
        .ok_or_else(|| anyhow!("message shorter than the genl header"))?;
    attrs(body)
        .find(|(t, _)| *t == ty)
        .map(|(_, v)| v)
        .ok_or_else(|| anyhow!("no nested attribute {ty}"))
}

/// Decodes one message of an `IPVS_CMD_GET_SERVICE` dump (or any message carrying a full
/// `IPVS_CMD_ATTR_SERVICE`). `Ok(None)`: a well-formed service vipd's table cannot name
/// (AH/ESP protocol, unknown family); vipd leaves those alone.
pub fn decode_service(msg: &Msg) -> anyhow::Result<Option<SvcAttrs>> {
    let nest = nested(msg, IPVS_CMD_ATTR_SERVICE)?;
    let mut af = None;
    let mut proto = None;
    let mut addr = None;
    let mut port = None;
    let mut fwmark = None;
    let mut sched = None;
    let mut flags = None;
    let mut timeout = None;
    let mut netmask = None;
    let mut pe_name = None;
    for (ty, v) in attrs(nest) {
        match ty {
            IPVS_SVC_ATTR_AF => af = Some(get_u16(v, "AF")?),
            IPVS_SVC_ATTR_PROTOCOL => proto = Some(get_u16(v, "PROTOCOL")?),
            IPVS_SVC_ATTR_ADDR => addr = Some(v),
            IPVS_SVC_ATTR_PORT => port = Some(u16::from_be(get_u16(v, "PORT")?)),
            IPVS_SVC_ATTR_FWMARK => fwmark = Some(get_u32(v, "FWMARK")?),
            IPVS_SVC_ATTR_SCHED_NAME => sched = Some(c_str(v)),
            IPVS_SVC_ATTR_FLAGS => {
                if v.len() < 8 {
                    bail!("FLAGS: {} bytes, want 8", v.len());
                }
                flags = Some(get_u32(&v[..4], "FLAGS")?);
            }
            IPVS_SVC_ATTR_TIMEOUT => timeout = Some(get_u32(v, "TIMEOUT")?),
            IPVS_SVC_ATTR_NETMASK => netmask = Some(get_u32(v, "NETMASK")?),
            IPVS_SVC_ATTR_PE_NAME => pe_name = Some(c_str(v)),
            _ => {} // stats, and attributes newer than this code
        }
    }
    let af = af.context("service without AF")?;
    let Some(family) = family_of_af(af) else {
        return Ok(None);
    };
    let key = match fwmark {
        Some(mark) if mark != 0 => ServiceKey::Fwmark { mark, family },
        _ => {
            let proto = match proto.context("service without PROTOCOL or FWMARK")? as u8 {
                6 => Proto::Tcp,
                17 => Proto::Udp,
                132 => Proto::Sctp,
                _ => return Ok(None),
            };
            ServiceKey::Addr {
                addr: get_addr(addr.context("service without ADDR")?, af, "ADDR")?,
                port: port.context("service without PORT")?,
                proto,
            }
        }
    };
    let netmask = netmask.context("service without NETMASK")?;
    Ok(Some(SvcAttrs {
        key,
        sched: sched.context("service without SCHED_NAME")?,
        flags: flags.context("service without FLAGS")? & SVC_FLAGS_USER_MASK,
        timeout: timeout.context("service without TIMEOUT")?,
        // The attribute's 4 bytes are the kernel's __be32 `netmask` verbatim: a real mask
        // for IPv4, a native-order prefix length for IPv6.
        netmask: match family {
            Family::V4 => u32::from_be(netmask),
            Family::V6 => netmask,
        },
        pe_name: pe_name.filter(|s| !s.is_empty()),
    }))
}

/// Decodes one message of an `IPVS_CMD_GET_DEST` dump. `svc_family` is the family of
/// the service, for kernels that do not report IPVS_DEST_ATTR_ADDR_FAMILY.
pub fn decode_dest(msg: &Msg, svc_family: Family) -> anyhow::Result<DestAttrs> {
    let nest = nested(msg, IPVS_CMD_ATTR_DEST)?;
    let mut addr = None;
    let mut port = None;
    let mut fwd = None;
    let mut weight = None;
    let mut u_thresh = None;
    let mut l_thresh = None;
    let mut af = svc_family.af();
    for (ty, v) in attrs(nest) {
        match ty {
            IPVS_DEST_ATTR_ADDR => addr = Some(v),
            IPVS_DEST_ATTR_PORT => port = Some(u16::from_be(get_u16(v, "PORT")?)),
            IPVS_DEST_ATTR_FWD_METHOD => fwd = Some(get_u32(v, "FWD_METHOD")?),
            IPVS_DEST_ATTR_WEIGHT => weight = Some(get_u32(v, "WEIGHT")?),
            IPVS_DEST_ATTR_U_THRESH => u_thresh = Some(get_u32(v, "U_THRESH")?),
            IPVS_DEST_ATTR_L_THRESH => l_thresh = Some(get_u32(v, "L_THRESH")?),
            IPVS_DEST_ATTR_ADDR_FAMILY => af = get_u16(v, "ADDR_FAMILY")?,
            _ => {} // connection counters, stats, tunnel settings
        }
    }
    if family_of_af(af).is_none() {
        bail!("destination with address family {af}");
    }
    Ok(DestAttrs {
        addr: get_addr(addr.context("destination without ADDR")?, af, "ADDR")?,
        port: port.context("destination without PORT")?,
        fwd: fwd.context("destination without FWD_METHOD")? & IP_VS_CONN_F_FWD_MASK,
        weight: weight.context("destination without WEIGHT")?,
        u_thresh: u_thresh.context("destination without U_THRESH")?,
        l_thresh: l_thresh.context("destination without L_THRESH")?,
    })
}

/// A destination's connections now (`IPVS_DEST_ATTR_ACTIVE_CONNS` / `INACT_CONNS` /
/// `PERSIST_CONNS`): `[active, inactive, persistent]`, 0 for one the kernel did not send.
pub fn decode_dest_conns(msg: &Msg) -> anyhow::Result<[u32; 3]> {
    let nest = nested(msg, IPVS_CMD_ATTR_DEST)?;
    let mut out = [0; 3];
    for (ty, v) in attrs(nest) {
        match ty {
            IPVS_DEST_ATTR_ACTIVE_CONNS => out[0] = get_u32(v, "ACTIVE_CONNS")?,
            IPVS_DEST_ATTR_INACT_CONNS => out[1] = get_u32(v, "INACT_CONNS")?,
            IPVS_DEST_ATTR_PERSIST_CONNS => out[2] = get_u32(v, "PERSIST_CONNS")?,
            _ => {}
        }
    }
    Ok(out)
}

/// A service's or destination's traffic statistics (`IPVS_STATS_ATTR_*` of
/// `IPVS_SVC_ATTR_STATS[64]` / `IPVS_DEST_ATTR_STATS[64]`): totals and the kernel's own
/// rate estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// Decodes a nested `IPVS_STATS_ATTR_*` list. The legacy `STATS` carries u32 counters and
/// rates (u64 bytes), `STATS64` u64 everything (with `PAD` attributes for alignment): each
/// value is read at the width it has.
pub fn decode_stats(nest: &[u8]) -> anyhow::Result<Stats> {
    let mut s = Stats::default();
    for (ty, v) in attrs(nest) {
        let n = match v.len() {
            4 => get_u32(v, "stats")? as u64,
            8 => u64::from_ne_bytes(v.try_into().expect("8 bytes")),
            _ if ty == IPVS_STATS_ATTR_PAD => continue,
            len => bail!("stats attribute {ty}: {len} bytes, want 4 or 8"),
        };
        match ty {
            IPVS_STATS_ATTR_CONNS => s.conns = n,
            IPVS_STATS_ATTR_INPKTS => s.inpkts = n,
            IPVS_STATS_ATTR_OUTPKTS => s.outpkts = n,
            IPVS_STATS_ATTR_INBYTES => s.inbytes = n,
            IPVS_STATS_ATTR_OUTBYTES => s.outbytes = n,
            IPVS_STATS_ATTR_CPS => s.cps = n,
            IPVS_STATS_ATTR_INPPS => s.inpps = n,
            IPVS_STATS_ATTR_OUTPPS => s.outpps = n,
            IPVS_STATS_ATTR_INBPS => s.inbps = n,
            IPVS_STATS_ATTR_OUTBPS => s.outbps = n,
            _ => {}
        }
    }
    Ok(s)
}

/// The statistics in a service (`IPVS_CMD_ATTR_SERVICE`, `nest_ty`) or destination
/// (`IPVS_CMD_ATTR_DEST`) message, from its `STATS64` (`stats64_ty`) when the kernel sent
/// one (4.x+), else its 32-bit `STATS` (`stats_ty`); zero when it has neither.
pub fn decode_msg_stats(
    msg: &Msg,
    nest_ty: u16,
    stats_ty: u16,
    stats64_ty: u16,
) -> anyhow::Result<Stats> {
    let nest = nested(msg, nest_ty)?;
    let pick = |want: u16| attrs(nest).find(|(t, _)| *t == want).map(|(_, v)| v);
    match pick(stats64_ty).or_else(|| pick(stats_ty)) {
        Some(v) => decode_stats(v),
        None => Ok(Stats::default()),
    }
}

#[cfg(test)]
mod tests;
