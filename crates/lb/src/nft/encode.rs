//! nfnetlink message encoders: one [`Batch`] (`NFNL_MSG_BATCH_BEGIN` … `BATCH_END`) of
//! nf_tables messages, built without touching a socket.
//!
//! Every message carries a `struct nfgenmsg` (family, `NFNETLINK_V0`, big-endian res_id)
//! after the netlink header. Content messages are sent with `NLM_F_ACK` so the kernel
//! answers each one, and with a sequence number the batch remembers together with a short
//! description for error messages.

use super::consts::*;
use super::expr::{encode_list, value, verdict, Expr};
use crate::netlink::{MsgBuf, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST};

/// Largest payload put in one element-list nest (attribute lengths are 16 bits).
pub const ELEMS_CHUNK: usize = 60_000;

/// Netlink message type of nf_tables message `msg`.
pub const fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// `struct nfgenmsg`.
pub fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, NFNETLINK_V0, r[0], r[1]]
}

/// A base chain's hook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hook {
    pub num: u32,
    pub priority: i32,
    /// `nat`, `filter` or `route`.
    pub kind: &'static str,
    /// Netdev family: the device.
    pub dev: Option<String>,
}

/// A set or map definition (everything `NFT_MSG_NEWSET` carries).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetDef {
    pub name: String,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    /// Maps: (data type, data length).
    pub data: Option<(u32, u32)>,
    /// Default element timeout (`NFT_SET_TIMEOUT`).
    pub timeout_ms: Option<u64>,
    /// Maximum number of elements (`NFTA_SET_DESC_SIZE`).
    pub size: Option<u32>,
    /// Every element carries a counter (`NFTA_SET_EXPR counter`).
    pub counter: bool,
    /// Keys are host-endian numbers (slot indices). Only tells `nft list` how to print
    /// them (nft's set userdata, `NFTNL_UDATA_SET_KEYBYTEORDER`).
    pub key_host_order: bool,
    /// Not sent: anything else that, when it changes, makes the old content meaningless
    /// (e.g. the persistence netmask of a map keyed by masked addresses).
    pub tag: u64,
}

/// A batch of nf_tables messages under construction.
#[derive(Debug, Clone)]
pub struct Batch {
    buf: MsgBuf,
    begin_seq: u32,
    next_seq: u32,
    /// (sequence number, description) of every content message, in order.
    msgs: Vec<(u32, String)>,
    /// NFTA_SET_ID of the next new set (the kernel wants one, unique in the batch).
    next_set_id: u32,
}

impl Batch {
    /// Starts a batch whose BATCH_BEGIN message gets sequence number `seq`.
    pub fn new(seq: u32) -> Batch {
        let mut buf = MsgBuf::new();
        let m = buf.begin_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq);
        buf.put_raw(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES));
        buf.end_msg(m);
        Batch {
            buf,
            begin_seq: seq,
            next_seq: seq.wrapping_add(1),
            msgs: Vec::new(),
            next_set_id: 1,
        }
    }

    /// No content message yet.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Number of content messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    pub fn begin_seq(&self) -> u32 {
        self.begin_seq
    }

    /// Closes the batch: appends BATCH_END. Returns the bytes, the BATCH_BEGIN sequence
    /// number and the content messages' (sequence, description).
    pub fn finish(mut self) -> (Vec<u8>, u32, Vec<(u32, String)>) {
        let seq = self.next_seq;
        let m = self.buf.begin_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq);
        self.buf
            .put_raw(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES));
        self.buf.end_msg(m);
        (self.buf.into_vec(), self.begin_seq, self.msgs)
    }

    fn msg(
        &mut self,
        msg: u16,
        family: u8,
        flags: u16,
        what: String,
        body: impl FnOnce(&mut MsgBuf),
    ) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let m = self
            .buf
            .begin_msg(nft_type(msg), NLM_F_REQUEST | NLM_F_ACK | flags, seq);
        self.buf.put_raw(&nfgenmsg(family, 0));
        body(&mut self.buf);
        self.buf.end_msg(m);
        self.msgs.push((seq, what));
    }

    /// `add table` (no error if it exists).
    pub fn new_table(&mut self, family: u8, name: &str) {
        self.msg(
            NFT_MSG_NEWTABLE,
            family,
            NLM_F_CREATE,
            format!("add table {} {name}", family_name(family)),
            |b| {
                b.attr_str(NFTA_TABLE_NAME, name);
                b.attr_u32_be(NFTA_TABLE_FLAGS, 0);
            },
        );
    }

    /// `delete table` (with everything in it).
    pub fn del_table(&mut self, family: u8, name: &str) {
        self.msg(
            NFT_MSG_DELTABLE,
            family,
            0,
            format!("delete table {} {name}", family_name(family)),
            |b| b.attr_str(NFTA_TABLE_NAME, name),
        );
    }

    /// `add chain`; with a hook a base chain (policy accept).
    pub fn new_chain(&mut self, family: u8, table: &str, name: &str, hook: Option<&Hook>) {
        self.msg(
            NFT_MSG_NEWCHAIN,
            family,
            NLM_F_CREATE,
            format!("add chain {} {table} {name}", family_name(family)),
            |b| {
                b.attr_str(NFTA_CHAIN_TABLE, table);
                b.attr_str(NFTA_CHAIN_NAME, name);
                if let Some(h) = hook {
                    let n = b.nest_begin(NFTA_CHAIN_HOOK);
                    b.attr_u32_be(NFTA_HOOK_HOOKNUM, h.num);
                    b.attr_u32_be(NFTA_HOOK_PRIORITY, h.priority as u32);
                    if let Some(dev) = &h.dev {
                        b.attr_str(NFTA_HOOK_DEV, dev);
                    }
                    b.nest_end(n);
                    b.attr_u32_be(NFTA_CHAIN_POLICY, NF_ACCEPT);
                    b.attr_str(NFTA_CHAIN_TYPE, h.kind);
                }
            },
        );
    }

    /// `delete chain` (its rules go with it; nothing may jump to it any more).
    pub fn del_chain(&mut self, family: u8, table: &str, name: &str) {
        self.msg(
            NFT_MSG_DELCHAIN,
            family,
            0,
            format!("delete chain {} {table} {name}", family_name(family)),
            |b| {
                b.attr_str(NFTA_CHAIN_TABLE, table);
                b.attr_str(NFTA_CHAIN_NAME, name);
            },
        );
    }

    /// `flush chain`: DELRULE without a handle removes every rule of the chain.
    pub fn flush_chain(&mut self, family: u8, table: &str, chain: &str) {
        self.msg(
            NFT_MSG_DELRULE,
            family,
            0,
            format!("flush chain {} {table} {chain}", family_name(family)),
            |b| {
                b.attr_str(NFTA_RULE_TABLE, table);
                b.attr_str(NFTA_RULE_CHAIN, chain);
            },
        );
    }

    /// `add rule` (appended).
    pub fn new_rule(&mut self, family: u8, table: &str, chain: &str, exprs: &[Expr]) {
        self.msg(
            NFT_MSG_NEWRULE,
            family,
            NLM_F_CREATE | NLM_F_APPEND,
            format!(
                "add rule {} {table} {chain} [{}]",
                family_name(family),
                exprs.iter().map(|e| e.name()).collect::<Vec<_>>().join(" ")
            ),
            |b| {
                b.attr_str(NFTA_RULE_TABLE, table);
                b.attr_str(NFTA_RULE_CHAIN, chain);
                encode_list(b, exprs);
            },
        );
    }

    /// `add set` / `add map`.
    pub fn new_set(&mut self, family: u8, table: &str, set: &SetDef) {
        let id = self.next_set_id;
        self.next_set_id += 1;
        self.msg(
            NFT_MSG_NEWSET,
            family,
            NLM_F_CREATE,
            format!("add set {} {table} {}", family_name(family), set.name),
            |b| {
                b.attr_str(NFTA_SET_TABLE, table);
                b.attr_str(NFTA_SET_NAME, &set.name);
                b.attr_u32_be(NFTA_SET_FLAGS, set.flags);
                b.attr_u32_be(NFTA_SET_KEY_TYPE, set.key_type);
                b.attr_u32_be(NFTA_SET_KEY_LEN, set.key_len);
                if let Some((ty, len)) = set.data {
                    b.attr_u32_be(NFTA_SET_DATA_TYPE, ty);
                    b.attr_u32_be(NFTA_SET_DATA_LEN, len);
                }
                b.attr_u32_be(NFTA_SET_ID, id);
                if let Some(t) = set.timeout_ms {
                    b.attr_u64_be(NFTA_SET_TIMEOUT, t);
                }
                if let Some(size) = set.size {
                    let d = b.nest_begin(NFTA_SET_DESC);
                    b.attr_u32_be(NFTA_SET_DESC_SIZE, size);
                    b.nest_end(d);
                }
                if set.key_host_order {
                    // libnftnl udata TLV: type u8, length u8, value (u32, host order)
                    let mut ud = vec![NFTNL_UDATA_SET_KEYBYTEORDER, 4];
                    ud.extend_from_slice(&NFT_BYTEORDER_HOST_ENDIAN.to_ne_bytes());
                    b.attr(NFTA_SET_USERDATA, &ud);
                }
                if set.counter {
                    let e = b.nest_begin(NFTA_SET_EXPR);
                    Expr::Counter.encode_body(b);
                    b.nest_end(e);
                }
            },
        );
    }

    /// `add ct timeout`: a conntrack timeout policy for protocol `l4proto`; `policy`
    /// holds (`CTA_TIMEOUT_*` attribute, seconds), the states not named keep the
    /// namespace's defaults.
    pub fn new_ct_timeout(
        &mut self,
        family: u8,
        table: &str,
        name: &str,
        l3proto: u16,
        l4proto: u8,
        policy: &[(u16, u32)],
    ) {
        self.msg(
            NFT_MSG_NEWOBJ,
            family,
            NLM_F_CREATE,
            format!("add ct timeout {} {table} {name}", family_name(family)),
            |b| {
                b.attr_str(NFTA_OBJ_TABLE, table);
                b.attr_str(NFTA_OBJ_NAME, name);
                b.attr_u32_be(NFTA_OBJ_TYPE, NFT_OBJECT_CT_TIMEOUT);
                let d = b.nest_begin(NFTA_OBJ_DATA);
                b.attr_u16_be(NFTA_CT_TIMEOUT_L3PROTO, l3proto);
                b.attr_u8(NFTA_CT_TIMEOUT_L4PROTO, l4proto);
                let p = b.nest_begin(NFTA_CT_TIMEOUT_DATA);
                for (ty, secs) in policy {
                    b.attr_u32_be(*ty, *secs);
                }
                b.nest_end(p);
                b.nest_end(d);
            },
        );
    }

    /// `delete ct timeout` (no rule may refer to it any more).
    pub fn del_ct_timeout(&mut self, family: u8, table: &str, name: &str) {
        self.msg(
            NFT_MSG_DELOBJ,
            family,
            0,
            format!("delete ct timeout {} {table} {name}", family_name(family)),
            |b| {
                b.attr_str(NFTA_OBJ_TABLE, table);
                b.attr_str(NFTA_OBJ_NAME, name);
                b.attr_u32_be(NFTA_OBJ_TYPE, NFT_OBJECT_CT_TIMEOUT);
            },
        );
    }

    /// `delete set`.
    pub fn del_set(&mut self, family: u8, table: &str, name: &str) {
        self.msg(
            NFT_MSG_DELSET,
            family,
            0,
            format!("delete set {} {table} {name}", family_name(family)),
            |b| {
                b.attr_str(NFTA_SET_TABLE, table);
                b.attr_str(NFTA_SET_NAME, name);
            },
        );
    }

    /// `add element`: `(key, data)`; `data` empty for plain sets. Split over as many
    /// messages as the 16-bit attribute length needs.
    pub fn new_elems<'a>(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
        elems: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        self.elems(NFT_MSG_NEWSETELEM, family, table, set, elems, false);
    }

    /// `add element` to a verdict map: `(key, chain)`, each element `goto chain`.
    pub fn new_goto_elems<'a>(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
        elems: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        self.elems(NFT_MSG_NEWSETELEM, family, table, set, elems, true);
    }

    /// `delete element` by key.
    pub fn del_elems<'a>(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) {
        self.elems(
            NFT_MSG_DELSETELEM,
            family,
            table,
            set,
            keys.into_iter().map(|k| (k, &[][..])),
            false,
        );
    }

    /// `destroy element` by key: like [`del_elems`](Self::del_elems), but keys that are
    /// not (or no longer) in the set are no error. Linux ≥ 6.3.
    pub fn destroy_elems<'a>(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) {
        self.elems(
            NFT_MSG_DESTROYSETELEM,
            family,
            table,
            set,
            keys.into_iter().map(|k| (k, &[][..])),
            false,
        );
    }

    fn elems<'a>(
        &mut self,
        msg: u16,
        family: u8,
        table: &str,
        set: &str,
        elems: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        goto_data: bool,
    ) {
        let mut it = elems.into_iter().peekable();
        let verb = match msg {
            NFT_MSG_NEWSETELEM => "add",
            NFT_MSG_DESTROYSETELEM => "destroy",
            _ => "delete",
        };
        while it.peek().is_some() {
            let mut n = 0usize;
            let it = &mut it;
            self.msg(
                msg,
                family,
                if msg == NFT_MSG_NEWSETELEM {
                    NLM_F_CREATE
                } else {
                    0
                },
                String::new(),
                |b| {
                    b.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
                    b.attr_str(NFTA_SET_ELEM_LIST_SET, set);
                    let list = b.nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
                    let start = b.len();
                    while b.len() - start < ELEMS_CHUNK {
                        let Some((key, data)) = it.next() else { break };
                        let el = b.nest_begin(NFTA_LIST_ELEM);
                        value(b, NFTA_SET_ELEM_KEY, key);
                        if goto_data && !data.is_empty() {
                            // A verdict map's data: `goto CHAIN` (the chain's name).
                            let d = b.nest_begin(NFTA_SET_ELEM_DATA);
                            verdict(b, NFT_GOTO, Some(&String::from_utf8_lossy(data)));
                            b.nest_end(d);
                        } else if !data.is_empty() {
                            value(b, NFTA_SET_ELEM_DATA, data);
                        }
                        b.nest_end(el);
                        n += 1;
                    }
                    b.nest_end(list);
                },
            );
            self.msgs.last_mut().expect("just pushed").1 =
                format!("{verb} {n} elements {} {table} {set}", family_name(family));
        }
    }
}

/// A dump request for the elements of one set (`nft list set`).
pub fn get_elems(seq: u32, family: u8, table: &str, set: &str) -> Vec<u8> {
    let mut b = MsgBuf::new();
    let m = b.begin_msg(
        nft_type(NFT_MSG_GETSETELEM),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    );
    b.put_raw(&nfgenmsg(family, 0));
    b.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
    b.attr_str(NFTA_SET_ELEM_LIST_SET, set);
    b.end_msg(m);
    b.into_vec()
}

/// nft's name of a family.
pub fn family_name(family: u8) -> &'static str {
    match family {
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        NFPROTO_NETDEV => "netdev",
        NFPROTO_INET => "inet",
        _ => "?",
    }
}
