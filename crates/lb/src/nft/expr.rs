//! nf_tables expressions: a typed description of each expression vipd uses and its
//! netlink encoding (`NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }`).
//!
//! Byte order: every u32 attribute of the nf_tables expression policies is big endian
//! (the kernel reads them with `ntohl`); register numbers included. Data compared with or
//! loaded into registers (`NFTA_DATA_VALUE`) is raw register content: packet fields in
//! network order, `meta`/`numgen`/`hash` results in host order.

use super::consts::*;
use crate::netlink::MsgBuf;

/// 32-bit register `n` (`NFT_REG32_00 + n`).
pub const fn reg(n: u32) -> u32 {
    NFT_REG32_00 + n
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// Load `len` bytes at `base + offset` into `dreg` (`payload`).
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// Store `len` bytes from `sreg` at `base + offset` (`payload` write, no checksum fix:
    /// only used on the link-layer header).
    PayloadWrite {
        base: u32,
        offset: u32,
        len: u32,
        sreg: u32,
    },
    Meta {
        key: u32,
        dreg: u32,
    },
    /// Compare `sreg` with `data` (`cmp`).
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    /// `dreg = sreg & mask` (`bitwise`, xor 0), over `mask.len()` bytes.
    Mask {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
    },
    /// Load a constant into `dreg`.
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    /// Set the verdict (`immediate` into the verdict register).
    Verdict {
        code: i32,
        chain: Option<String>,
    },
    /// Set lookup; with `dreg` a map lookup. `invert`: match when absent.
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    /// Update a set from the packet path.
    Dynset {
        set: String,
        op: u32,
        sreg_key: u32,
        sreg_data: Option<u32>,
        timeout_ms: Option<u64>,
    },
    /// `numgen inc mod modulus`.
    Numgen {
        dreg: u32,
        modulus: u32,
    },
    /// `jhash <len bytes at sreg> mod modulus seed seed`.
    Jhash {
        sreg: u32,
        len: u32,
        dreg: u32,
        modulus: u32,
        seed: u32,
    },
    /// Conntrack key; `dir` for tuple keys.
    Ct {
        key: u32,
        dir: Option<u8>,
        dreg: u32,
    },
    /// Destination NAT to the address in `reg_addr` (and the port in `reg_proto`).
    Dnat {
        family: u8,
        reg_addr: u32,
        reg_proto: Option<u32>,
    },
    Reject {
        kind: u32,
        code: u8,
    },
    /// Forward to the interface whose index is in `sreg_dev` (netdev family).
    Fwd {
        sreg_dev: u32,
    },
    Counter,
    /// Apply the stateful object `name` of type `ty` (`ct timeout set "name"`).
    Objref {
        ty: u32,
        name: String,
    },
}

impl Expr {
    /// The kernel's name of the expression type.
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } | Expr::PayloadWrite { .. } => "payload",
            Expr::Meta { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Mask { .. } => "bitwise",
            Expr::Immediate { .. } | Expr::Verdict { .. } => "immediate",
            Expr::Lookup { .. } => "lookup",
            Expr::Dynset { .. } => "dynset",
            Expr::Numgen { .. } => "numgen",
            Expr::Jhash { .. } => "hash",
            Expr::Ct { .. } => "ct",
            Expr::Dnat { .. } => "nat",
            Expr::Reject { .. } => "reject",
            Expr::Fwd { .. } => "fwd",
            Expr::Counter => "counter",
            Expr::Objref { .. } => "objref",
        }
    }

    /// Writes `NFTA_EXPR_NAME` and `NFTA_EXPR_DATA` (the content of an expression nest).
    pub fn encode_body(&self, b: &mut MsgBuf) {
        b.attr_str(NFTA_EXPR_NAME, self.name());
        let data = b.nest_begin(NFTA_EXPR_DATA);
        match self {
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                b.attr_u32_be(NFTA_PAYLOAD_DREG, *dreg);
                b.attr_u32_be(NFTA_PAYLOAD_BASE, *base);
                b.attr_u32_be(NFTA_PAYLOAD_OFFSET, *offset);
                b.attr_u32_be(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::PayloadWrite {
                base,
                offset,
                len,
                sreg,
            } => {
                b.attr_u32_be(NFTA_PAYLOAD_SREG, *sreg);
                b.attr_u32_be(NFTA_PAYLOAD_BASE, *base);
                b.attr_u32_be(NFTA_PAYLOAD_OFFSET, *offset);
                b.attr_u32_be(NFTA_PAYLOAD_LEN, *len);
                b.attr_u32_be(NFTA_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_NONE);
                b.attr_u32_be(NFTA_PAYLOAD_CSUM_OFFSET, 0);
                b.attr_u32_be(NFTA_PAYLOAD_CSUM_FLAGS, 0);
            }
            Expr::Meta { key, dreg } => {
                b.attr_u32_be(NFTA_META_KEY, *key);
                b.attr_u32_be(NFTA_META_DREG, *dreg);
            }
            Expr::Cmp { sreg, op, data } => {
                b.attr_u32_be(NFTA_CMP_SREG, *sreg);
                b.attr_u32_be(NFTA_CMP_OP, *op);
                value(b, NFTA_CMP_DATA, data);
            }
            Expr::Mask { sreg, dreg, mask } => {
                b.attr_u32_be(NFTA_BITWISE_SREG, *sreg);
                b.attr_u32_be(NFTA_BITWISE_DREG, *dreg);
                b.attr_u32_be(NFTA_BITWISE_LEN, mask.len() as u32);
                b.attr_u32_be(NFTA_BITWISE_OP, NFT_BITWISE_MASK_XOR);
                value(b, NFTA_BITWISE_MASK, mask);
                value(b, NFTA_BITWISE_XOR, &vec![0u8; mask.len()]);
            }
            Expr::Immediate { dreg, data } => {
                b.attr_u32_be(NFTA_IMMEDIATE_DREG, *dreg);
                value(b, NFTA_IMMEDIATE_DATA, data);
            }
            Expr::Verdict { code, chain } => {
                b.attr_u32_be(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                let d = b.nest_begin(NFTA_IMMEDIATE_DATA);
                verdict(b, *code, chain.as_deref());
                b.nest_end(d);
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                b.attr_str(NFTA_LOOKUP_SET, set);
                b.attr_u32_be(NFTA_LOOKUP_SREG, *sreg);
                if let Some(d) = dreg {
                    b.attr_u32_be(NFTA_LOOKUP_DREG, *d);
                }
                if *invert {
                    b.attr_u32_be(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Expr::Dynset {
                set,
                op,
                sreg_key,
                sreg_data,
                timeout_ms,
            } => {
                b.attr_str(NFTA_DYNSET_SET_NAME, set);
                b.attr_u32_be(NFTA_DYNSET_OP, *op);
                b.attr_u32_be(NFTA_DYNSET_SREG_KEY, *sreg_key);
                if let Some(d) = sreg_data {
                    b.attr_u32_be(NFTA_DYNSET_SREG_DATA, *d);
                }
                if let Some(t) = timeout_ms {
                    b.attr_u64_be(NFTA_DYNSET_TIMEOUT, *t);
                }
            }
            Expr::Numgen { dreg, modulus } => {
                b.attr_u32_be(NFTA_NG_DREG, *dreg);
                b.attr_u32_be(NFTA_NG_MODULUS, *modulus);
                b.attr_u32_be(NFTA_NG_TYPE, NFT_NG_INCREMENTAL);
                b.attr_u32_be(NFTA_NG_OFFSET, 0);
            }
            Expr::Jhash {
                sreg,
                len,
                dreg,
                modulus,
                seed,
            } => {
                b.attr_u32_be(NFTA_HASH_SREG, *sreg);
                b.attr_u32_be(NFTA_HASH_DREG, *dreg);
                b.attr_u32_be(NFTA_HASH_LEN, *len);
                b.attr_u32_be(NFTA_HASH_MODULUS, *modulus);
                b.attr_u32_be(NFTA_HASH_SEED, *seed);
                b.attr_u32_be(NFTA_HASH_OFFSET, 0);
                b.attr_u32_be(NFTA_HASH_TYPE, NFT_HASH_JENKINS);
            }
            Expr::Ct { key, dir, dreg } => {
                b.attr_u32_be(NFTA_CT_DREG, *dreg);
                b.attr_u32_be(NFTA_CT_KEY, *key);
                if let Some(d) = dir {
                    b.attr_u8(NFTA_CT_DIRECTION, *d);
                }
            }
            Expr::Dnat {
                family,
                reg_addr,
                reg_proto,
            } => {
                b.attr_u32_be(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                b.attr_u32_be(NFTA_NAT_FAMILY, *family as u32);
                b.attr_u32_be(NFTA_NAT_REG_ADDR_MIN, *reg_addr);
                if let Some(p) = reg_proto {
                    b.attr_u32_be(NFTA_NAT_REG_PROTO_MIN, *p);
                }
            }
            Expr::Reject { kind, code } => {
                b.attr_u32_be(NFTA_REJECT_TYPE, *kind);
                b.attr_u8(NFTA_REJECT_ICMP_CODE, *code);
            }
            Expr::Fwd { sreg_dev } => {
                b.attr_u32_be(NFTA_FWD_SREG_DEV, *sreg_dev);
            }
            // Empty data nest, as nft sends it (the kernel refuses a counter without).
            Expr::Counter => {}
            Expr::Objref { ty, name } => {
                b.attr_u32_be(NFTA_OBJREF_IMM_TYPE, *ty);
                b.attr_str(NFTA_OBJREF_IMM_NAME, name);
            }
        }
        b.nest_end(data);
    }
}

/// `ty { NFTA_DATA_VALUE data }`.
pub fn value(b: &mut MsgBuf, ty: u16, data: &[u8]) {
    let n = b.nest_begin(ty);
    b.attr(NFTA_DATA_VALUE, data);
    b.nest_end(n);
}

/// `NFTA_DATA_VERDICT { CODE, [CHAIN] }` (inside an nft_data nest).
pub fn verdict(b: &mut MsgBuf, code: i32, chain: Option<&str>) {
    let v = b.nest_begin(NFTA_DATA_VERDICT);
    b.attr_u32_be(NFTA_VERDICT_CODE, code as u32);
    if let Some(c) = chain {
        b.attr_str(NFTA_VERDICT_CHAIN, c);
    }
    b.nest_end(v);
}

/// Writes `NFTA_RULE_EXPRESSIONS { NFTA_LIST_ELEM { ... } ... }`.
pub fn encode_list(b: &mut MsgBuf, exprs: &[Expr]) {
    let list = b.nest_begin(NFTA_RULE_EXPRESSIONS);
    for e in exprs {
        let el = b.nest_begin(NFTA_LIST_ELEM);
        e.encode_body(b);
        b.nest_end(el);
    }
    b.nest_end(list);
}

/// A prefix mask of `len` bytes with the first `prefix` bits set.
pub fn prefix_mask(len: usize, prefix: u8) -> Vec<u8> {
    let mut m = vec![0u8; len];
    let mut bits = prefix as usize;
    for byte in m.iter_mut() {
        let n = bits.min(8);
        *byte = if n == 0 { 0 } else { 0xffu8 << (8 - n) };
        bits -= n;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(4, 24), vec![255, 255, 255, 0]);
        assert_eq!(prefix_mask(4, 32), vec![255; 4]);
        assert_eq!(prefix_mask(4, 0), vec![0; 4]);
        assert_eq!(prefix_mask(4, 9), vec![255, 128, 0, 0]);
        assert_eq!(prefix_mask(16, 64), [[255u8; 8], [0u8; 8]].concat());
    }
}
