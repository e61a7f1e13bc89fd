//! The AgentX protocol (RFC 2741) as a subagent speaks it: the PDUs vipd sends (Open,
//! Register, Response, Notify, Ping, Close) and those it reads (Get, GetNext, GetBulk,
//! the Set phases it refuses, Close, Response). Pure encoding and decoding, no I/O;
//! [`Pdu::decode`] takes one whole PDU (header and payload), [`header_len`] tells how
//! long one is.
//!
//! Sent PDUs are in network byte order (`NETWORK_BYTE_ORDER` set); received ones are read
//! in the byte order their flag says.

/// The header's length.
pub const HEADER: usize = 20;

pub const FLAG_NON_DEFAULT_CONTEXT: u8 = 0x08;
pub const FLAG_NETWORK_BYTE_ORDER: u8 = 0x10;

/// PDU types.
pub mod ty {
    pub const OPEN: u8 = 1;
    pub const CLOSE: u8 = 2;
    pub const REGISTER: u8 = 3;
    pub const GET: u8 = 5;
    pub const GET_NEXT: u8 = 6;
    pub const GET_BULK: u8 = 7;
    pub const TEST_SET: u8 = 8;
    pub const COMMIT_SET: u8 = 9;
    pub const UNDO_SET: u8 = 10;
    pub const CLEANUP_SET: u8 = 11;
    pub const NOTIFY: u8 = 12;
    pub const PING: u8 = 13;
    pub const RESPONSE: u8 = 18;
}

/// `res.error` values vipd uses.
pub mod error {
    pub const NONE: u16 = 0;
    pub const GEN_ERR: u16 = 5;
    pub const NOT_WRITABLE: u16 = 17;
    pub const PROCESSING_ERROR: u16 = 268;
}

/// Close reasons.
pub mod reason {
    pub const SHUTDOWN: u8 = 5;
}

/// `1.3.6.1`: the prefix `prefix` stands for.
const INTERNET: [u32; 4] = [1, 3, 6, 1];

/// A value in a VarBind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i32),
    OctetString(Vec<u8>),
    Null,
    Oid(Vec<u32>),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl Value {
    fn tag(&self) -> u16 {
        match self {
            Value::Integer(_) => 2,
            Value::OctetString(_) => 4,
            Value::Null => 5,
            Value::Oid(_) => 6,
            Value::IpAddress(_) => 64,
            Value::Counter32(_) => 65,
            Value::Gauge32(_) => 66,
            Value::TimeTicks(_) => 67,
            Value::Counter64(_) => 70,
            Value::NoSuchObject => 128,
            Value::NoSuchInstance => 129,
            Value::EndOfMibView => 130,
        }
    }
}

/// One name and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarBind {
    pub name: Vec<u32>,
    pub value: Value,
}

/// A SearchRange: from `start` (itself included if `include`) up to `end` (excluded;
/// empty: no end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub start: Vec<u32>,
    pub include: bool,
    pub end: Vec<u32>,
}

/// The header's fields but the payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub ty: u8,
    pub flags: u8,
    pub session: u32,
    pub transaction: u32,
    pub packet: u32,
}

/// The PDUs vipd handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Open {
        timeout: u8,
        id: Vec<u32>,
        descr: Vec<u8>,
    },
    Close {
        reason: u8,
    },
    Register {
        timeout: u8,
        priority: u8,
        subtree: Vec<u32>,
    },
    Get(Vec<Range>),
    GetNext(Vec<Range>),
    GetBulk {
        non_repeaters: u16,
        max_repetitions: u16,
        ranges: Vec<Range>,
    },
    Notify(Vec<VarBind>),
    Ping,
    Response {
        uptime: u32,
        error: u16,
        index: u16,
        varbinds: Vec<VarBind>,
    },
    /// TestSet, CommitSet, UndoSet, CleanupSet and any other type: not read further.
    Other,
}

/// A whole PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub header: Header,
    /// The context of a PDU with `NON_DEFAULT_CONTEXT` (vipd serves the default one only).
    pub context: Option<Vec<u8>>,
    pub body: Body,
}

/// What is wrong with a received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentX parse error: {}", self.0)
    }
}

/// The whole length of the PDU whose header starts `buf` (at least [`HEADER`] bytes).
pub fn header_len(buf: &[u8]) -> Result<usize, ParseError> {
    if buf.len() < HEADER {
        return Err(ParseError("short header"));
    }
    if buf[0] != 1 {
        return Err(ParseError("not AgentX version 1"));
    }
    let n = [buf[16], buf[17], buf[18], buf[19]];
    let len = if buf[2] & FLAG_NETWORK_BYTE_ORDER != 0 {
        u32::from_be_bytes(n)
    } else {
        u32::from_le_bytes(n)
    } as usize;
    if !len.is_multiple_of(4) {
        return Err(ParseError("payload length not a multiple of 4"));
    }
    Ok(HEADER + len)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    be: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(ParseError("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        let b: [u8; 2] = self.take(2)?.try_into().unwrap_or([0; 2]);
        Ok(if self.be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        let b: [u8; 4] = self.take(4)?.try_into().unwrap_or([0; 4]);
        Ok(if self.be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&mut self) -> Result<u64, ParseError> {
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        Ok(hi << 32 | lo)
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// An OID and its `include` byte.
    fn oid(&mut self) -> Result<(Vec<u32>, bool), ParseError> {
        let n = self.u8()? as usize;
        let prefix = self.u8()?;
        let include = self.u8()? != 0;
        self.u8()?;
        if n > 128 {
            return Err(ParseError("OID longer than 128 sub-identifiers"));
        }
        let mut oid = Vec::with_capacity(n + 5);
        if prefix != 0 {
            oid.extend_from_slice(&INTERNET);
            oid.push(prefix as u32);
        }
        for _ in 0..n {
            oid.push(self.u32()?);
        }
        Ok((oid, include))
    }

    fn octets(&mut self) -> Result<Vec<u8>, ParseError> {
        let n = self.u32()? as usize;
        let s = self.take(n)?.to_vec();
        self.take((4 - n % 4) % 4)?;
        Ok(s)
    }

    fn ranges(&mut self) -> Result<Vec<Range>, ParseError> {
        let mut out = Vec::new();
        while !self.done() {
            let (start, include) = self.oid()?;
            let (end, _) = self.oid()?;
            out.push(Range {
                start,
                include,
                end,
            });
        }
        Ok(out)
    }

    fn varbinds(&mut self) -> Result<Vec<VarBind>, ParseError> {
        let mut out = Vec::new();
        while !self.done() {
            let tag = self.u16()?;
            self.u16()?;
            let (name, _) = self.oid()?;
            let value = match tag {
                2 => Value::Integer(self.u32()? as i32),
                4 => Value::OctetString(self.octets()?),
                5 => Value::Null,
                6 => Value::Oid(self.oid()?.0),
                64 => {
                    let o = self.octets()?;
                    Value::IpAddress(o.try_into().map_err(|_| ParseError("IpAddress length"))?)
                }
                65 => Value::Counter32(self.u32()?),
                66 => Value::Gauge32(self.u32()?),
                67 => Value::TimeTicks(self.u32()?),
                70 => Value::Counter64(self.u64()?),
                128 => Value::NoSuchObject,
                129 => Value::NoSuchInstance,
                130 => Value::EndOfMibView,
                _ => return Err(ParseError("unknown VarBind type")),
            };
            out.push(VarBind { name, value });
        }
        Ok(out)
    }
}

impl Pdu {
    /// Reads one whole PDU (`buf` as long as [`header_len`] said).
    pub fn decode(buf: &[u8]) -> Result<Pdu, ParseError> {
        let len = header_len(buf)?;
        if buf.len() != len {
            return Err(ParseError("length differs from the header's"));
        }
        let be = buf[2] & FLAG_NETWORK_BYTE_ORDER != 0;
        let mut r = Reader { buf, pos: 1, be };
        let ty = r.u8()?;
        let flags = r.u8()?;
        r.u8()?;
        let header = Header {
            ty,
            flags,
            session: r.u32()?,
            transaction: r.u32()?,
            packet: r.u32()?,
        };
        r.u32()?;
        let context = if flags & FLAG_NON_DEFAULT_CONTEXT != 0 {
            Some(r.octets()?)
        } else {
            None
        };
        let body = match ty {
            ty::OPEN => {
                let timeout = r.u8()?;
                r.take(3)?;
                let (id, _) = r.oid()?;
                Body::Open {
                    timeout,
                    id,
                    descr: r.octets()?,
                }
            }
            ty::CLOSE => {
                let reason = r.u8()?;
                r.take(3)?;
                Body::Close { reason }
            }
            ty::REGISTER => {
                let timeout = r.u8()?;
                let priority = r.u8()?;
                r.take(2)?;
                let (subtree, _) = r.oid()?;
                Body::Register {
                    timeout,
                    priority,
                    subtree,
                }
            }
            ty::GET => Body::Get(r.ranges()?),
            ty::GET_NEXT => Body::GetNext(r.ranges()?),
            ty::GET_BULK => {
                let non_repeaters = r.u16()?;
                let max_repetitions = r.u16()?;
                Body::GetBulk {
                    non_repeaters,
                    max_repetitions,
                    ranges: r.ranges()?,
                }
            }
            ty::NOTIFY => Body::Notify(r.varbinds()?),
            ty::PING => Body::Ping,
            ty::RESPONSE => {
                let uptime = r.u32()?;
                let error = r.u16()?;
                let index = r.u16()?;
                Body::Response {
                    uptime,
                    error,
                    index,
                    varbinds: r.varbinds()?,
                }
            }
            _ => Body::Other,
        };
        if !matches!(body, Body::Other) && !r.done() {
            return Err(ParseError("bytes after the payload"));
        }
        Ok(Pdu {
            header,
            context,
            body,
        })
    }

    /// The PDU in network byte order.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        let mut flags = self.header.flags | FLAG_NETWORK_BYTE_ORDER;
        if self.context.is_some() {
            flags |= FLAG_NON_DEFAULT_CONTEXT;
        }
        let ty = match &self.body {
            Body::Open { .. } => ty::OPEN,
            Body::Close { .. } => ty::CLOSE,
            Body::Register { .. } => ty::REGISTER,
            Body::Get(_) => ty::GET,
            Body::GetNext(_) => ty::GET_NEXT,
            Body::GetBulk { .. } => ty::GET_BULK,
            Body::Notify(_) => ty::NOTIFY,
            Body::Ping => ty::PING,
            Body::Response { .. } => ty::RESPONSE,
            Body::Other => self.header.ty,
        };
        w.extend_from_slice(&[1, ty, flags, 0]);
        w.extend_from_slice(&self.header.session.to_be_bytes());
        w.extend_from_slice(&self.header.transaction.to_be_bytes());
        w.extend_from_slice(&self.header.packet.to_be_bytes());
        w.extend_from_slice(&[0; 4]);
        // Register and Notify carry their context first; Open and Close none.
        let with_context = !matches!(
            self.body,
            Body::Open { .. } | Body::Close { .. } | Body::Response { .. }
        );
        if let (Some(c), true) = (&self.context, with_context) {
            put_octets(&mut w, c);
        }
        match &self.body {
            Body::Open { timeout, id, descr } => {
                w.extend_from_slice(&[*timeout, 0, 0, 0]);
                put_oid(&mut w, id, false);
                put_octets(&mut w, descr);
            }
            Body::Close { reason } => w.extend_from_slice(&[*reason, 0, 0, 0]),
            Body::Register {
                timeout,
                priority,
                subtree,
            } => {
                w.extend_from_slice(&[*timeout, *priority, 0, 0]);
                put_oid(&mut w, subtree, false);
            }
            Body::Get(ranges) | Body::GetNext(ranges) => put_ranges(&mut w, ranges),
            Body::GetBulk {
                non_repeaters,
                max_repetitions,
                ranges,
            } => {
                w.extend_from_slice(&non_repeaters.to_be_bytes());
                w.extend_from_slice(&max_repetitions.to_be_bytes());
                put_ranges(&mut w, ranges);
            }
            Body::Notify(vbs) => put_varbinds(&mut w, vbs),
            Body::Ping | Body::Other => {}
            Body::Response {
                uptime,
                error,
                index,
                varbinds,
            } => {
                w.extend_from_slice(&uptime.to_be_bytes());
                w.extend_from_slice(&error.to_be_bytes());
                w.extend_from_slice(&index.to_be_bytes());
                put_varbinds(&mut w, varbinds);
            }
        }
        let len = (w.len() - HEADER) as u32;
        w[16..20].copy_from_slice(&len.to_be_bytes());
        w
    }
}

/// An OID, `1.3.6.1.X.…` (X ≤ 255) compressed to the prefix byte.
fn put_oid(w: &mut Vec<u8>, oid: &[u32], include: bool) {
    let (prefix, rest) = match oid {
        [1, 3, 6, 1, x, rest @ ..] if *x > 0 && *x <= 255 => (*x as u8, rest),
        _ => (0, oid),
    };
    w.extend_from_slice(&[rest.len() as u8, prefix, include as u8, 0]);
    for s in rest {
        w.extend_from_slice(&s.to_be_bytes());
    }
}

fn put_octets(w: &mut Vec<u8>, s: &[u8]) {
    w.extend_from_slice(&(s.len() as u32).to_be_bytes());
    w.extend_from_slice(s);
    w.resize(w.len() + (4 - s.len() % 4) % 4, 0);
}

fn put_ranges(w: &mut Vec<u8>, ranges: &[Range]) {
    for r in ranges {
        put_oid(w, &r.start, r.include);
        put_oid(w, &r.end, false);
    }
}

fn put_varbinds(w: &mut Vec<u8>, vbs: &[VarBind]) {
    for vb in vbs {
        w.extend_from_slice(&vb.value.tag().to_be_bytes());
        w.extend_from_slice(&[0, 0]);
        put_oid(w, &vb.name, false);
        match &vb.value {
            Value::Integer(i) => w.extend_from_slice(&i.to_be_bytes()),
            Value::OctetString(s) => put_octets(w, s),
            Value::Oid(o) => put_oid(w, o, false),
            Value::IpAddress(a) => put_octets(w, a),
            Value::Counter32(n) | Value::Gauge32(n) | Value::TimeTicks(n) => {
                w.extend_from_slice(&n.to_be_bytes())
            }
            Value::Counter64(n) => w.extend_from_slice(&n.to_be_bytes()),
            Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {}
        }
    }
}

/// What the subagent answers to a Get / GetNext / GetBulk, from its sorted view of the
/// MIB: `next(oid, include)` gives the first object at or after (`include`) or strictly
/// after `oid`; `get(oid)` the object itself.
pub trait View {
    fn get(&self, oid: &[u32]) -> Option<Value>;
    fn next(&self, oid: &[u32], include: bool) -> Option<(Vec<u32>, Value)>;
}

/// Objects in OID order are a view as they are.
impl View for std::collections::BTreeMap<Vec<u32>, Value> {
    fn get(&self, oid: &[u32]) -> Option<Value> {
        std::collections::BTreeMap::get(self, oid).cloned()
    }

    fn next(&self, oid: &[u32], include: bool) -> Option<(Vec<u32>, Value)> {
        use std::ops::Bound;
        let lo = if include {
            Bound::Included(oid.to_vec())
        } else {
            Bound::Excluded(oid.to_vec())
        };
        self.range((lo, Bound::Unbounded))
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
    }
}

/// The VarBind a GetNext gives for `range`.
fn next_in(view: &dyn View, range: &Range) -> VarBind {
    match view.next(&range.start, range.include) {
        Some((name, value)) if range.end.is_empty() || name < range.end => VarBind { name, value },
        _ => VarBind {
            name: range.start.clone(),
            value: Value::EndOfMibView,
        },
    }
}

/// The Response's VarBinds to a request `body` (None for PDUs that are not a read).
pub fn answer(view: &dyn View, body: &Body) -> Option<Vec<VarBind>> {
    match body {
        Body::Get(ranges) => Some(
            ranges
                .iter()
                .map(|r| VarBind {
                    name: r.start.clone(),
                    value: view.get(&r.start).unwrap_or(Value::NoSuchObject),
                })
                .collect(),
        ),
        Body::GetNext(ranges) => Some(ranges.iter().map(|r| next_in(view, r)).collect()),
        Body::GetBulk {
            non_repeaters,
            max_repetitions,
            ranges,
        } => {
            let n = (*non_repeaters as usize).min(ranges.len());
            let mut out: Vec<VarBind> = ranges[..n].iter().map(|r| next_in(view, r)).collect();
            let mut cur: Vec<Range> = ranges[n..].to_vec();
            for _ in 0..*max_repetitions {
                if cur.is_empty() {
                    break;
                }
                let mut all_end = true;
                for r in cur.iter_mut() {
                    let vb = next_in(view, r);
                    if vb.value != Value::EndOfMibView {
                        all_end = false;
                        r.start = vb.name.clone();
                        r.include = false;
                    }
                    out.push(vb);
                }
                if all_end {
                    break;
                }
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pdu(body: Body) -> Pdu {
        Pdu {
            header: Header {
                ty: 0,
                flags: 0,
                session: 7,
                transaction: 8,
                packet: 9,
            },
            context: None,
            body,
        }
    }

    #[test]
    fn open_is_encoded_as_rfc_2741_says() {
        let p = pdu(Body::Open {
            timeout: 5,
            id: vec![1, 3, 6, 1, 4, 1, 9586, 100, 5],
            descr: b"vipd".to_vec(),
        });
        let b = p.encode();
        // Header: version 1, Open, network byte order, session/transaction/packet.
        assert_eq!(&b[..4], &[1, 1, 0x10, 0]);
        assert_eq!(&b[4..16], &[0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9]);
        assert_eq!(header_len(&b).unwrap(), b.len());
        // Timeout, then the OID compressed: 4 sub-ids after prefix 4 (1.3.6.1.4).
        assert_eq!(&b[20..24], &[5, 0, 0, 0]);
        assert_eq!(&b[24..28], &[4, 4, 0, 0]);
        assert_eq!(&b[28..32], &1u32.to_be_bytes());
        assert_eq!(&b[36..40], &100u32.to_be_bytes());
        // The description: length 4, no padding needed.
        assert_eq!(&b[44..52], &[0, 0, 0, 4, b'v', b'i', b'p', b'd']);
        assert_eq!(b.len(), 52);
        let back = Pdu::decode(&b).unwrap();
        assert_eq!(back.body, p.body);
        assert_eq!(back.header.flags, FLAG_NETWORK_BYTE_ORDER);
    }

    #[test]
    fn octet_strings_are_padded_and_oids_without_prefix_kept_whole() {
        let vbs = vec![
            VarBind {
                name: vec![1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0],
                value: Value::Oid(vec![1, 3, 6, 1, 2, 1, 68, 0, 1]),
            },
            VarBind {
                name: vec![1, 3, 6, 1, 4, 1, 9586, 100, 5, 2, 3, 1, 2],
                value: Value::OctetString(b"VI_1x".to_vec()),
            },
            VarBind {
                name: vec![2, 5],
                value: Value::IpAddress([192, 0, 2, 1]),
            },
            VarBind {
                name: vec![1, 3, 6, 1, 2, 1, 207, 1, 1],
                value: Value::Counter64(1 << 40 | 5),
            },
            VarBind {
                name: vec![1, 3, 6, 1, 0],
                value: Value::Integer(-2),
            },
        ];
        let b = pdu(Body::Notify(vbs.clone())).encode();
        assert_eq!(b.len() % 4, 0);
        let back = Pdu::decode(&b).unwrap();
        assert_eq!(back.body, Body::Notify(vbs));
        // `VI_1x` is 5 bytes, padded to 8: find it and its 3 zero bytes.
        let at = b.windows(5).position(|w| w == b"VI_1x").unwrap();
        assert_eq!(&b[at - 4..at], &[0, 0, 0, 5]);
        assert_eq!(&b[at + 5..at + 8], &[0, 0, 0]);
        // 1.3.6.1.0 is not compressed (prefix 0 means none), kept as 5 sub-ids.
        let tail = &b[b.len() - 4 - 20 - 4..];
        assert_eq!(&tail[..4], &[5, 0, 0, 0]);
    }

    /// A GetBulk from the master in little-endian order (net-snmp sends its host's).
    #[test]
    fn little_endian_requests_are_read() {
        let mut b = vec![1, ty::GET_BULK, 0, 0];
        for n in [1u32, 2, 3] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        let mut payload = vec![];
        payload.extend_from_slice(&1u16.to_le_bytes());
        payload.extend_from_slice(&10u16.to_le_bytes());
        // start 1.3.6.1.2.1.68 include, end null.
        payload.extend_from_slice(&[2, 2, 1, 0]);
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&68u32.to_le_bytes());
        payload.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&payload);
        assert_eq!(header_len(&b).unwrap(), b.len());
        let p = Pdu::decode(&b).unwrap();
        assert_eq!(p.header.session, 1);
        assert_eq!(p.header.packet, 3);
        assert_eq!(
            p.body,
            Body::GetBulk {
                non_repeaters: 1,
                max_repetitions: 10,
                ranges: vec![Range {
                    start: vec![1, 3, 6, 1, 2, 1, 68],
                    include: true,
                    end: vec![],
                }]
            }
        );
        // Truncated: an error, not a panic.
        assert!(Pdu::decode(&b[..b.len() - 4]).is_err());
        let mut bad = b.clone();
        bad[16] = 3;
        assert!(header_len(&bad).is_err());
    }

    #[test]
    fn register_response_close_round_trip() {
        for body in [
            Body::Register {
                timeout: 0,
                priority: 127,
                subtree: vec![1, 3, 6, 1, 2, 1, 207],
            },
            Body::Response {
                uptime: 12,
                error: error::NOT_WRITABLE,
                index: 1,
                varbinds: vec![VarBind {
                    name: vec![1, 3, 6, 1, 2, 1, 68, 1, 3, 1, 3, 2, 51],
                    value: Value::EndOfMibView,
                }],
            },
            Body::Close {
                reason: reason::SHUTDOWN,
            },
            Body::Ping,
            Body::GetNext(vec![Range {
                start: vec![1, 3, 6, 1, 4, 1, 9586],
                include: false,
                end: vec![1, 3, 6, 1, 4, 1, 9587],
            }]),
        ] {
            let b = pdu(body.clone()).encode();
            assert_eq!(Pdu::decode(&b).unwrap().body, body);
        }
        // A non-default context is read and its PDU answered as any other.
        let mut p = pdu(Body::Get(vec![]));
        p.context = Some(b"ctx".to_vec());
        let back = Pdu::decode(&p.encode()).unwrap();
        assert_eq!(back.context, Some(b"ctx".to_vec()));
    }

    #[test]
    fn get_next_and_bulk_walk_in_order_and_stop_at_the_range_end() {
        let m: BTreeMap<Vec<u32>, Value> = [
            (vec![1, 1], 1),
            (vec![1, 2], 2),
            (vec![1, 2, 5], 3),
            (vec![2], 4),
        ]
        .into_iter()
        .map(|(k, v)| (k, Value::Integer(v)))
        .collect();
        let r = |s: &[u32], inc: bool, e: &[u32]| Range {
            start: s.to_vec(),
            include: inc,
            end: e.to_vec(),
        };
        let got = answer(
            &m,
            &Body::Get(vec![r(&[1, 2], false, &[]), r(&[1, 3], false, &[])]),
        )
        .unwrap();
        assert_eq!(got[0].value, Value::Integer(2));
        assert_eq!(got[1].value, Value::NoSuchObject);
        let got = answer(
            &m,
            &Body::GetNext(vec![
                r(&[1, 2], false, &[]),
                r(&[1, 2], true, &[]),
                r(&[1, 2, 5], false, &[2]),
            ]),
        )
        .unwrap();
        assert_eq!(got[0].name, vec![1, 2, 5]);
        assert_eq!(got[1].name, vec![1, 2]);
        assert_eq!(got[2].value, Value::EndOfMibView);
        assert_eq!(got[2].name, vec![1, 2, 5]);
        // One non-repeater, then rounds of two repeaters until both reach the end.
        let got = answer(
            &m,
            &Body::GetBulk {
                non_repeaters: 1,
                max_repetitions: 10,
                ranges: vec![
                    r(&[0], false, &[]),
                    r(&[1], false, &[]),
                    r(&[1, 2], false, &[]),
                ],
            },
        )
        .unwrap();
        let names: Vec<_> = got.iter().map(|v| v.name.clone()).collect();
        assert_eq!(
            names,
            vec![
                vec![1, 1],
                // Round 1.
                vec![1, 1],
                vec![1, 2, 5],
                // Round 2.
                vec![1, 2],
                vec![2],
                // Round 3: the second is at the end.
                vec![1, 2, 5],
                vec![2],
                // Round 4.
                vec![2],
                vec![2],
                // Round 5: both at the end.
                vec![2],
                vec![2],
            ]
        );
        assert_eq!(got.last().unwrap().value, Value::EndOfMibView);
        assert_eq!(got[6].value, Value::EndOfMibView);
    }
}
