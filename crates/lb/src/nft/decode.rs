//! A small decoder for nf_tables netlink messages: reads counters back from element
//! dumps, extended-ack details from errors, and lets the unit tests take our own encoder
//! output apart.

use super::consts::*;

/// One attribute: type without flag bits, whether NLA_F_NESTED was set, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr<'a> {
    pub ty: u16,
    pub nested: bool,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The attributes inside a nested attribute.
    pub fn children(&self) -> Vec<Attr<'a>> {
        attrs(self.value)
    }
    /// First child of type `ty`.
    pub fn get(&self, ty: u16) -> Option<Attr<'a>> {
        get(self.value, ty)
    }
    /// A big-endian u32 value; `None` if the value is shorter than 4 bytes.
    pub fn be32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.value.get(..4)?.try_into().ok()?))
    }
    /// A big-endian u64 value; `None` if the value is shorter than 8 bytes.
    pub fn be64(&self) -> Option<u64> {
        Some(u64::from_be_bytes(self.value.get(..8)?.try_into().ok()?))
    }
    /// A NUL-terminated string value.
    pub fn str(&self) -> &'a str {
        let v = self.value;
        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
        std::str::from_utf8(&v[..end]).unwrap_or("<invalid utf-8>")
    }
}

/// All attributes of a region (stops at the first malformed one).
pub fn attrs(mut data: &[u8]) -> Vec<Attr<'_>> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let raw = u16::from_ne_bytes([data[2], data[3]]);
        if len < 4 || len > data.len() {
            break;
        }
        out.push(Attr {
            ty: raw & 0x3fff,
            nested: raw & crate::netlink::NLA_F_NESTED != 0,
            value: &data[4..len],
        });
        let next = (len + 3) & !3;
        data = &data[next.min(data.len())..];
    }
    out
}

/// First attribute of type `ty` in a region.
pub fn get(data: &[u8], ty: u16) -> Option<Attr<'_>> {
    attrs(data).into_iter().find(|a| a.ty == ty)
}

/// The `NFTA_DATA_VALUE` inside an nft_data nest (key, data, cmp data, ...).
pub fn data_value<'a>(nest: &Attr<'a>) -> Option<&'a [u8]> {
    nest.get(NFTA_DATA_VALUE).map(|a| a.value)
}

/// One element of an element dump: key, map data (empty for sets) and, when it carries
/// a counter, (packets, bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedElem {
    pub key: Vec<u8>,
    pub data: Vec<u8>,
    pub counter: Option<(u64, u64)>,
}

/// Decodes the elements of one NFT_MSG_NEWSETELEM message payload (after nfgenmsg).
pub fn set_elems(attrs_region: &[u8]) -> Vec<DumpedElem> {
    let mut out = Vec::new();
    let Some(list) = get(attrs_region, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return out;
    };
    for el in list.children() {
        if el.ty != NFTA_LIST_ELEM {
            continue;
        }
        let key = el
            .get(NFTA_SET_ELEM_KEY)
            .and_then(|k| data_value(&k))
            .unwrap_or_default()
            .to_vec();
        let data = el
            .get(NFTA_SET_ELEM_DATA)
            .and_then(|d| data_value(&d))
            .unwrap_or_default()
            .to_vec();
        let mut counter = None;
        let mut exprs = Vec::new();
        if let Some(e) = el.get(NFTA_SET_ELEM_EXPR) {
            exprs.push(e);
        }
        if let Some(list) = el.get(NFTA_SET_ELEM_EXPRESSIONS) {
            exprs.extend(list.children());
        }
        for e in exprs {
            if e.get(NFTA_EXPR_NAME).map(|n| n.str()) == Some("counter") {
                if let Some(d) = e.get(NFTA_EXPR_DATA) {
                    // A missing or short value counts as 0 (the kernel sends 8 bytes).
                    let read = |ty| d.get(ty).and_then(|a| a.be64()).unwrap_or(0);
                    let (packets, bytes) = (read(NFTA_COUNTER_PACKETS), read(NFTA_COUNTER_BYTES));
                    counter = Some((packets, bytes));
                }
            }
        }
        out.push(DumpedElem { key, data, counter });
    }
    out
}

/// Extended-ack details of an NLMSG_ERROR message: (message, offset of the offending
/// attribute in the request).
pub fn ext_ack(flags: u16, payload: &[u8]) -> (Option<String>, Option<u32>) {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 20 {
        return (None, None);
    }
    let orig_len = u32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes")) as usize;
    let skip = if flags & NLM_F_CAPPED != 0 {
        4 + 16
    } else {
        4 + ((orig_len + 3) & !3)
    };
    if skip > payload.len() {
        return (None, None);
    }
    let mut msg = None;
    let mut offs = None;
    for a in attrs(&payload[skip..]) {
        match a.ty {
            NLMSGERR_ATTR_MSG => msg = Some(a.str().to_string()),
            NLMSGERR_ATTR_OFFS if a.value.len() >= 4 => {
                offs = Some(u32::from_ne_bytes(a.value[..4].try_into().expect("4")))
            }
            _ => {}
        }
    }
    (msg, offs)
}

/// A decoded expression: its name and its data attributes.
#[derive(Debug, Clone)]
pub struct DecodedExpr<'a> {
    pub name: &'a str,
    pub data: Vec<Attr<'a>>,
}

impl<'a> DecodedExpr<'a> {
    pub fn get(&self, ty: u16) -> Option<&Attr<'a>> {
        self.data.iter().find(|a| a.ty == ty)
    }
    pub fn be32(&self, ty: u16) -> Option<u32> {
        self.get(ty).and_then(|a| a.be32())
    }
}

/// Decodes `NFTA_RULE_EXPRESSIONS` of a rule message's attribute region.
pub fn rule_exprs(attrs_region: &[u8]) -> Vec<DecodedExpr<'_>> {
    let Some(list) = get(attrs_region, NFTA_RULE_EXPRESSIONS) else {
        return Vec::new();
    };
    list.children()
        .into_iter()
        .filter(|e| e.ty == NFTA_LIST_ELEM)
        .map(|e| DecodedExpr {
            name: e.get(NFTA_EXPR_NAME).map(|n| n.str()).unwrap_or(""),
            data: e
                .get(NFTA_EXPR_DATA)
                .map(|d| d.children())
                .unwrap_or_default(),
        })
        .collect()
}
