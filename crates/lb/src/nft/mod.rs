//! nftables backend: programs the kernel's nf_tables over NETLINK_NETFILTER directly
//! (no `nft` binary, no libnftnl).
//!
//! Layers: [`consts`] (uapi constants) → [`expr`] (expressions) → [`encode`] (messages
//! and batches, pure) → [`plan`] (a [`Table`] as nf_tables objects, pure) → [`diff`]
//! (two plans → one batch, pure) → [`sock`] (sending) → [`Nftables`].
//!
//! # What vipd puts in the kernel
//!
//! One table named `vipd` per family in use:
//!
//! - `ip vipd` / `ip6 vipd` (NAT services): base chains `pre` (nat, prerouting, priority
//!   dstnat -100) and `out` (nat, output, -100) send a connection's first packet
//!   (`goto`) to its service's chain `svcN`, which picks a real server and DNATs; `post`
//!   (filter, postrouting, srcnat +100) sends every client→server packet to the
//!   service's chain `svcN_post`, which counts it per real server and records
//!   persistence. Services with an address and a port are found by one lookup in the
//!   verdict maps `dispatch` (`ip daddr . meta l4proto . th dport`, for `pre` and `out`)
//!   and `count` (the conntrack original tuple, for `post`), so a packet costs the same
//!   with 2 services or 2,000; fwmark services (before the map) and port-0 services
//!   (after it) keep a rule each.
//! - `netdev vipd` (DR services): one ingress chain `in_DEV` (filter, priority 0) per
//!   device; its rules make the director the frame's source MAC and send the frame to
//!   the service chain, which sets the real server's MAC as destination and forwards
//!   the frame out of the device it came in on: the server its flow is pinned to, else
//!   the one persistence or the hash picks, pinning the flow to it.
//!
//! Per service `svcN`: map `svcN_slots` (slot → real server: address[.port] for NAT,
//! MAC for DR), set `svcN_ctr` (the same keys, each with a counter), and with
//! persistence the dynamic map `svcN_pers` (masked client address → real server, with
//! timeout) plus set `svcN_live` (servers that take new clients; DR services always
//! have it). DR services also have the flow table `svcN_flows`, a dynamic map
//! (source address . destination address . source port . destination port → MAC, with
//! timeout). Register layout and the DR packet path: see [`plan`].
//!
//! Each [`DataPlane::apply`] is one nfnetlink batch (one transaction). Only what differs
//! from the previous apply is sent (changed elements; a changed service's rules), so
//! counters and persistence entries survive unrelated changes; an unchanged table sends
//! nothing. If an update fails (e.g. someone deleted or edited vipd's tables) the tables
//! are rebuilt from scratch in one batch. [`Nftables::open`] deletes `vipd` tables left
//! by a previous run; [`DataPlane::clear`] deletes them too.
//!
//! `nft list ruleset` can print everything vipd installs (checked with nft 1.0.6, which
//! aborts on a map result used as a lookup key or dynset data): that is why persistence
//! is recorded from the conntrack reply tuple (NAT) or from the rewritten frame (DR
//! persistence and flows), and why entries of departed servers are removed by vipd
//! after an update (in the packet path, a DR flow of a departed server is only replaced
//! when its next packet comes).
//!
//! # Differences from IPVS / keepalived
//!
//! - **Refused configurations** (`check`): the schedulers `lc`, `wlc`, `lblc`, `lblcr`,
//!   `sed`, `nq`, `fo`, `ovf` and `twos` need per-destination connection counts, which
//!   nftables does not keep; so do `uthreshold`/`lthreshold`. Also refused: one-packet
//!   scheduling (`ops`; nftables NAT always tracks connections), tunnelling
//!   (`lb_kind TUN`), real servers of one service with different forwarding methods,
//!   real servers of the other address family, DR without a known interface, DR for
//!   fwmark services (the mark is set after the netdev ingress hook where DR happens),
//!   and port-0/fwmark NAT services where some real servers have a port and some don't.
//! - **rr / wrr (NAT)** pick with `numgen inc` over a smooth weighted sequence
//!   ([`crate::slots::round_robin`], at most 4096 slots: very uneven weights are scaled,
//!   every live server keeps at least one slot). Consecutive new connections rotate like
//!   IPVS wrr; the rotation restarts when the sequence length changes.
//! - **sh / dh / mh** hash (jhash, fixed seed) the source address (plus source port with
//!   `sh-port`/`mh-port`) or, for `dh`, the destination address into a weighted
//!   Maglev-style table ([`crate::slots::consistent`]). Which client lands on which
//!   server differs from IPVS' `sh` bucket layout; removing a server moves only its
//!   clients (plus Maglev's few percent of churn). `sh-fallback`/`mh-fallback` are
//!   always in effect: servers with weight 0 are not in the table, so their clients hash
//!   to others (IPVS without the flag refuses them). The seed is fixed so flows keep
//!   their slot across rule rewrites and restarts; the mapping is therefore predictable.
//!   The table size (≥ 1021, prime) is kept across changes while it stays between 4 and
//!   32 slots per server, because resizing moves nearly every flow.
//! - **Weight 0** servers get no new connections; established ones continue (NAT:
//!   conntrack; DR: see below). For persistent services, clients remembered for a
//!   weight-0 or removed server are forgotten right after the apply and rescheduled on
//!   their next new connection (IPVS keeps sending them to a quiesced server unless
//!   `expire_quiescent_template` is set).
//! - **No server with weight > 0**: the service rejects new connections with a TCP
//!   reset, other protocols with ICMP port unreachable, so clients fail fast instead of
//!   reaching a local socket on the VIP (IPVS answers ICMP port unreachable for all
//!   protocols). Established connections to drained servers continue (DR: pinned flows).
//! - **NAT** is classic LVS-NAT: destination NAT only, no source NAT, so real servers
//!   must route replies back through the director (e.g. default route via it).
//!   Conntrack keeps established connections on their server whatever later applies
//!   change; removing a server does not cut its established connections (IPVS'
//!   `expire_nodest_conn=0` behaviour). Connections the director itself opens to a VIP
//!   are balanced too (output hook). Port-0/fwmark services forward to the client's
//!   destination port when the real servers have no port; when they have one, only TCP,
//!   UDP and SCTP match and the port is rewritten. A real server without a port in a
//!   service with a port gets the service's port.
//! - **Persistence** (`persistence_timeout`, `persistence_granularity`) remembers the
//!   client address under the granularity mask, per service, and sends the client's new
//!   connections to the same server. The entry expires `timeout` after the client's last
//!   packet to a live server of the service (IPVS: after the last connection controlled
//!   by the template has ended, plus the timeout), so a connection idle for longer than
//!   the timeout no longer pins the client. NAT records the choice in postrouting: two
//!   connections a new client opens at the same instant on different CPUs can be
//!   scheduled independently (the first to be recorded wins afterwards). Entries of a
//!   server that left are deleted right after the update that removed it; a client can
//!   get one more connection to it in those milliseconds. At most 131,072 clients are
//!   remembered per service; further ones are scheduled without being remembered.
//!   Changing the timeout or granularity forgets the service's clients. No persistence
//!   engines (`persistence_engine sip` is refused: it needs the IPVS backend).
//! - **Connection timeouts** (`lvs_timeouts`, [`DataPlane::set_timeouts`]): NAT
//!   connections get `ct timeout` policies ([`plan::ct_timeouts`]) named by the
//!   services' dispatch rules, which see a connection's first packet while its conntrack
//!   entry is unconfirmed; other connections of the host keep the kernel's timeouts. DR
//!   flows are pinned for those times instead of IPVS' defaults
//!   ([`plan::flow_timeouts_with`]).
//! - **DR** runs at the netdev ingress hook of `Service.device`. A new flow goes to the
//!   server persistence remembers for the client or, else, to the one its hash of
//!   (source address, destination address, source port, destination port) selects in a
//!   weighted consistent table, so `rr`/`wrr` become *weighted flow hashing* (per-packet
//!   round robin would scatter one TCP connection over servers); `sh`/`dh`/`mh` hash
//!   like for NAT. The flow is then pinned to that server in the service's flow table
//!   (`svcN_flows`, the counterpart of IPVS' connection table; keyed by addresses and
//!   ports, the protocol being the service's): later changes of the server set or of
//!   weights do not move established connections, and a drained server (weight 0,
//!   `inhibit_on_failure`) keeps its connections while new ones go elsewhere, as with
//!   IPVS. Every forwarded packet sets its flow's timeout again ([`plan::flow_timeouts`],
//!   IPVS' defaults for a director that sees only the client's half): TCP 900 s, 60 s
//!   for a flow seen only by its first packet (a SYN nobody answered, a spoofed one), 120
//!   s after the client's FIN, 10 s after its RST; UDP 300 s; SCTP 900 s (60 s after the
//!   first packet). When the client closes first its last ACK, after the server's FIN,
//!   looks like any other ACK: such entries linger for 900 s. A SYN never follows the
//!   table: a new connection reusing a pinned 4-tuple is scheduled afresh. When a server
//!   leaves the service (removed, or left out for lack of a MAC) nothing is forwarded to
//!   it any more from the commit on: the next packet of each of its flows is scheduled
//!   anew, and the server that gets it resets the connection, so the client reconnects
//!   instead of waiting on a dead server (IPVS with `expire_nodest_conn=1`). Its entries
//!   are deleted right after the apply when the flow table holds at most
//!   [`plan::FLOWS_PURGE_MAX`] (65,536) entries (listing a set costs the kernel time
//!   quadratic in its size); bigger tables leave them to expire, and a server that comes
//!   back with the same MAC meanwhile gets its idle connections back. At most
//!   [`plan::FLOWS_MAX`] (1,048,576) flows are pinned per service (some 130-170 bytes of
//!   kernel memory each); beyond that new flows are forwarded without being pinned, and a
//!   later change of the table can move them. Pinned flows are lost when vipd restarts
//!   (it rebuilds its tables): flows then follow the hash again (its seed is fixed), which
//!   moves those pinned against it by an earlier change of the table. The frame's
//!   destination MAC becomes the real server's (`Dest.mac`; servers without a known MAC
//!   are left out, reported by [`Nftables::unreachable`] and a warning), its source MAC
//!   the director's (the frame's original destination: the MAC the client resolved the
//!   VIP to), and it leaves by the device it came in on. IP fragments after the first
//!   carry no ports and are not forwarded (IPVS reassembles). The director's own
//!   connections to a DR VIP are not balanced. TTL is not decremented. Persistence
//!   works as for NAT, refreshed by every packet forwarded to a live server. Servers
//!   sharing one MAC share one counter and their pinned flows. This kernel (6.18)
//!   accepts the chain of a device that does not exist (yet); older kernels fail the
//!   apply with ENOENT.
//! - **Counters** ([`Nftables::counters`]): NAT counts client→server packets and bytes
//!   per real server after DNAT (IPVS' in-packets/in-bytes; replies and connections are
//!   not counted); DR counts forwarded packets and bytes. Counters survive applies that
//!   keep the server and its service's layout; a rebuild resets them.
//! - **Service precedence** on one address: fwmark services first, then services with a
//!   port, then port 0 — as IPVS looks them up.

pub mod consts;
pub mod decode;
pub mod diff;
pub mod elems;
pub mod encode;
pub mod expr;
pub mod nat_anchor;
pub mod no_accept;
pub mod plan;
pub mod sock;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::Context;

use crate::model::{Family, Forward, Sched, ServiceKey, Table};
use crate::{DataPlane, Unsupported};
use decode::DumpedElem;
use encode::{get_elems, nft_type, Batch};
pub use plan::UnreachableDest;
use plan::{Fam, Ids, Plan, TABLE};
use sock::NftSocket;

/// Counters of one destination, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestCounter {
    pub service: ServiceKey,
    pub addr: IpAddr,
    pub port: u16,
    /// Client → server packets (NAT) / forwarded packets (DR).
    pub packets: u64,
    pub bytes: u64,
}

/// The nftables [`DataPlane`].
pub struct Nftables {
    sock: NftSocket,
    ids: Ids,
    /// What the kernel holds (None: unknown, rebuild on the next apply).
    installed: Option<Plan>,
    unreachable: Vec<UnreachableDest>,
    /// The kernel knows NFT_MSG_DESTROYSETELEM (until it says otherwise).
    destroy_elems: bool,
    /// For dumps that may be abandoned half-way (see `purge`).
    dump_sock: Option<NftSocket>,
    /// The plan an apply replaced, until `tidy` forgets what departed with it.
    replaced: Option<Plan>,
    /// `net_namespace_ipvs`: where its sockets are made.
    netns: Option<crate::netns::Netns>,
}

fn open_socket(netns: Option<&crate::netns::Netns>) -> anyhow::Result<NftSocket> {
    crate::netns::within(netns, NftSocket::open)?.context("opening a NETLINK_NETFILTER socket")
}

impl Nftables {
    /// Opens the netlink socket and deletes `vipd` tables a previous (crashed) run left.
    /// Operates in the network namespace of the calling thread.
    pub fn open() -> anyhow::Result<Nftables> {
        Nftables::open_in(None)
    }

    /// [`Nftables::open`] for the network namespace `netns` (`net_namespace_ipvs`; None:
    /// the caller's).
    pub fn open_in(netns: Option<crate::netns::Netns>) -> anyhow::Result<Nftables> {
        let sock = open_socket(netns.as_ref())?;
        let mut me = Nftables {
            netns,
            sock,
            ids: Ids::default(),
            installed: None,
            unreachable: Vec::new(),
            destroy_elems: true,
            dump_sock: None,
            replaced: None,
        };
        me.remove_tables()
            .context("removing stale vipd nftables tables")?;
        Ok(me)
    }

    /// Destinations of the last applied table that could not be installed (DR without a
    /// known MAC address).
    pub fn unreachable(&self) -> &[UnreachableDest] {
        &self.unreachable
    }

    /// Reads every destination's counters back from the kernel: grouped by service,
    /// destinations in configuration order (those the kernel has: DR servers without a
    /// MAC are missing).
    pub fn counters(&mut self) -> anyhow::Result<Vec<DestCounter>> {
        let Nftables {
            sock, installed, ..
        } = self;
        let Some(plan) = installed else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (fam, t) in &plan.tables {
            for svc in t.services.values() {
                let packets: BTreeMap<Vec<u8>, (u64, u64)> =
                    dump_elems(sock, *fam, &svc.packets_set)?
                        .into_iter()
                        .filter_map(|e| e.counter.map(|c| (e.key, c)))
                        .collect();
                for d in &svc.dests {
                    let (p, b) = packets
                        .get(d.packets_key.as_slice())
                        .copied()
                        .unwrap_or((0, 0));
                    out.push(DestCounter {
                        service: svc.key,
                        addr: d.addr,
                        port: d.port,
                        packets: p,
                        bytes: b,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Forgets the flows and persistence entries of destinations the last apply removed.
    fn tidy_now(&mut self) {
        let Some(old) = self.replaced.take() else {
            return;
        };
        if let Some(new) = self.installed.take() {
            self.forget_departed(&old, &new);
            self.installed = Some(new);
        }
    }

    /// After an apply: deletes the persistence entries that point at destinations which
    /// no longer take new clients, and the DR flows pinned to destinations that left their
    /// service (drained ones keep their flows). Once the apply has committed no new entry
    /// can point at them, so one pass finds them all; meanwhile the packet path already
    /// ignores entries of destinations that are gone (their counter lookup fails).
    fn forget_departed(&mut self, old: &Plan, new: &Plan) {
        for (fam, t) in &new.tables {
            for (name, ns) in &t.services {
                let Some(os) = old.tables.get(fam).and_then(|t| t.services.get(name)) else {
                    continue;
                };
                if std::sync::Arc::ptr_eq(os, ns) {
                    continue; // unchanged
                }
                // A map that was (re)created is empty.
                let kept = |set: &Option<String>, old_set: &Option<String>| -> Option<String> {
                    let set = set.as_ref().filter(|s| old_set.as_ref() == Some(*s))?;
                    let same = os.sets.get(set).map(|s| &s.def) == ns.sets.get(set).map(|s| &s.def);
                    same.then(|| set.clone())
                };
                let gone = |before: BTreeSet<&[u8]>, now: BTreeSet<&[u8]>| -> BTreeSet<Vec<u8>> {
                    before
                        .into_iter()
                        .filter(|d| !now.contains(d))
                        .map(|d| d.to_vec())
                        .collect()
                };
                let mut work = Vec::new();
                if let Some(set) = kept(&ns.pers_set, &os.pers_set) {
                    work.push((set, gone(os.live(), ns.live()), "clients", None));
                }
                if let Some(set) = kept(&ns.flows_set, &os.flows_set) {
                    let limit = Some(plan::FLOWS_PURGE_MAX);
                    work.push((set, gone(os.reach(), ns.reach()), "connections", limit));
                }
                for (set, gone, what, limit) in work {
                    if gone.is_empty() {
                        continue;
                    }
                    match self.purge(*fam, &set, &gone, limit) {
                        Ok(Some(n)) => tracing::debug!(
                            "{}: forgot {n} {what} of departed real servers",
                            ns.key.config_name()
                        ),
                        Ok(None) => tracing::info!(
                            "{}: more than {} pinned connections; those of departed real \
                             servers are left to expire (their next packet is scheduled \
                             anew)",
                            ns.key.config_name(),
                            limit.unwrap_or_default()
                        ),
                        Err(e) => tracing::warn!(
                            "{}: could not forget the {what} of departed real servers: {e:#}",
                            ns.key.config_name()
                        ),
                    }
                }
            }
        }
    }

    /// Deletes the elements of map `set` whose data is in `gone`; returns how many, or
    /// None when the map holds more than `limit` elements (then nothing is deleted).
    fn purge(
        &mut self,
        fam: Fam,
        set: &str,
        gone: &BTreeSet<Vec<u8>>,
        limit: Option<usize>,
    ) -> anyhow::Result<Option<usize>> {
        for _ in 0..5 {
            let mut keys: Vec<Vec<u8>> = Vec::new();
            let mut seen = 0usize;
            let mut keep = |e: DumpedElem| {
                seen += 1;
                if gone.contains(&e.data) {
                    keys.push(e.key);
                }
                limit.is_none_or(|max| seen <= max)
            };
            let complete = if limit.is_some() {
                // An abandoned dump leaves the rest queued on its socket: use a second one,
                // closed (which ends the dump) when that happens.
                let sock = match &mut self.dump_sock {
                    Some(s) => s,
                    None => self.dump_sock.insert(open_socket(self.netns.as_ref())?),
                };
                let complete = each_elem(sock, fam, set, &mut keep);
                if !matches!(complete, Ok(true)) {
                    self.dump_sock = None;
                }
                complete?
            } else {
                each_elem(&mut self.sock, fam, set, &mut keep)?
            };
            if !complete {
                return Ok(None);
            }
            if keys.is_empty() {
                return Ok(Some(0));
            }
            let destroy = self.destroy_elems;
            let res = self.send(|b| {
                let keys = keys.iter().map(|k| k.as_slice());
                if destroy {
                    b.destroy_elems(fam.nfproto(), TABLE, set, keys)
                } else {
                    b.del_elems(fam.nfproto(), TABLE, set, keys)
                }
            });
            let errno = match &res {
                Ok(_) => return Ok(Some(keys.len())),
                Err(e) => e.downcast_ref::<sock::BatchError>().map(|b| b.err.0),
            };
            match errno {
                // A kernel older than 6.3 does not know "destroy": delete, and when an
                // entry expires between the dump and the delete (ENOENT, the batch is
                // rolled back), dump again.
                Some(libc::EINVAL | libc::EOPNOTSUPP) if destroy => self.destroy_elems = false,
                Some(libc::ENOENT) if !destroy => {}
                _ => return res.map(|_| Some(keys.len())),
            }
        }
        anyhow::bail!("entries kept expiring under us")
    }

    /// Sends one batch built by `f`; no-op when `f` adds nothing.
    fn send(&mut self, f: impl FnOnce(&mut Batch)) -> anyhow::Result<usize> {
        let mut b = Batch::new(self.sock.next_seq());
        f(&mut b);
        if b.is_empty() {
            return Ok(0);
        }
        let n = b.len();
        let (bytes, begin, msgs) = b.finish();
        self.sock.use_seqs(n as u32 + 2);
        self.sock.send_batch(&bytes, begin, &msgs)?;
        Ok(n)
    }

    fn remove_tables(&mut self) -> anyhow::Result<()> {
        self.send(|b| {
            for fam in Fam::ALL {
                b.new_table(fam.nfproto(), TABLE);
                b.del_table(fam.nfproto(), TABLE);
            }
        })?;
        self.installed = Some(Plan::default());
        Ok(())
    }

    fn note_unreachable(&mut self, mut list: Vec<UnreachableDest>) {
        list.sort();
        for u in &list {
            if !self.unreachable.contains(u) {
                tracing::warn!(
                    "{}: real server {} {} left out: {}",
                    u.service.config_name(),
                    u.addr,
                    u.port,
                    u.reason
                );
            }
        }
        self.unreachable = list;
    }
}

fn dump_elems(sock: &mut NftSocket, fam: Fam, set: &str) -> anyhow::Result<Vec<DumpedElem>> {
    let mut out = Vec::new();
    each_elem(sock, fam, set, |e| {
        out.push(e);
        true
    })?;
    Ok(out)
}

/// Hands every element of `set` to `f`, message by message, until `f` returns false;
/// returns whether the whole set was seen.
fn each_elem(
    sock: &mut NftSocket,
    fam: Fam,
    set: &str,
    mut f: impl FnMut(DumpedElem) -> bool,
) -> anyhow::Result<bool> {
    let seq = sock.next_seq();
    sock.use_seqs(1);
    sock.dump_each(&get_elems(seq, fam.nfproto(), TABLE, set), |m| {
        if m.ty == nft_type(consts::NFT_MSG_NEWSETELEM) && m.payload.len() >= 4 {
            decode::set_elems(&m.payload[4..]).into_iter().all(&mut f)
        } else {
            true
        }
    })
    .with_context(|| format!("listing set {set}"))
}

fn forward_name(f: Forward) -> &'static str {
    match f {
        Forward::Nat => "NAT",
        Forward::Dr => "DR",
        Forward::Tun => "TUN",
    }
}

/// Why `table` cannot be expressed by this backend (first problem found).
pub fn check_table(table: &Table) -> Result<(), Unsupported> {
    for svc in &table.services {
        let fail = |reason: String| Unsupported {
            service: svc.key.config_name(),
            reason,
        };
        match svc.sched {
            Sched::Rr | Sched::Wrr | Sched::Sh | Sched::Dh | Sched::Mh => {}
            s => {
                return Err(fail(format!(
                    "scheduler {} needs per-destination connection counts, which nftables \
                     does not keep; use rr/wrr/sh/dh/mh or a kernel with IPVS",
                    s.name()
                )))
            }
        }
        if let Some(pe) = &svc.pe_name {
            return Err(fail(format!(
                "persistence_engine {pe} (IPVS' persistence by SIP Call-ID) cannot be \
                 expressed with nftables; run with `--lb-backend ipvs`"
            )));
        }
        if svc.flags.one_packet {
            return Err(fail(
                "one-packet scheduling (ops) is not supported by the nftables backend: \
                 its NAT always tracks connections; use a kernel with IPVS"
                    .into(),
            ));
        }
        let mut forwards: Vec<Forward> = svc.dests.iter().map(|d| d.forward).collect();
        forwards.push(plan::forward_of(svc));
        forwards.sort();
        forwards.dedup();
        if forwards.len() > 1 {
            return Err(fail(format!(
                "real servers mix forwarding methods ({}); the nftables backend needs one \
                 method per virtual server",
                forwards
                    .iter()
                    .map(|f| forward_name(*f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let forward = forwards[0];
        if forward == Forward::Tun {
            return Err(fail(
                "tunnel forwarding (lb_kind TUN) is not supported by the nftables backend; \
                 use NAT or DR, or a kernel with IPVS"
                    .into(),
            ));
        }
        let family = svc.key.family();
        for d in &svc.dests {
            if Family::of(&d.addr) != family {
                return Err(fail(format!(
                    "real server {} is not of the virtual server's address family",
                    d.addr
                )));
            }
            if d.upper_threshold != 0 || d.lower_threshold != 0 {
                return Err(fail(format!(
                    "real server {} {}: uthreshold/lthreshold need per-destination \
                     connection counts, which nftables does not keep",
                    d.addr, d.port
                )));
            }
        }
        if let Some(p) = &svc.persistence {
            let bits = if family == Family::V4 { 32 } else { 128 };
            if p.prefix_len > bits {
                return Err(fail(format!(
                    "persistence granularity /{} is longer than an address",
                    p.prefix_len
                )));
            }
        }
        match forward {
            Forward::Dr => {
                if matches!(svc.key, ServiceKey::Fwmark { .. }) {
                    return Err(fail(
                        "fwmark services cannot use direct routing with the nftables \
                         backend: DR happens at the netdev ingress hook, before the mark \
                         is set"
                            .into(),
                    ));
                }
                match &svc.device {
                    None => {
                        return Err(fail(
                            "direct routing needs the interface the virtual address is on \
                             (device), and none is known"
                                .into(),
                        ))
                    }
                    Some(d) if d.is_empty() || d.len() > 15 || d.contains('/') => {
                        return Err(fail(format!("invalid interface name {d:?}")))
                    }
                    Some(_) => {}
                }
            }
            Forward::Nat => {
                let port0 = !matches!(svc.key, ServiceKey::Addr { port, .. } if port != 0);
                if port0 {
                    let with = svc.dests.iter().filter(|d| d.port != 0).count();
                    if with != 0 && with != svc.dests.len() {
                        return Err(fail(
                            "some real servers have a port and some don't; for a port-0 or \
                             fwmark service the nftables backend needs all or none"
                                .into(),
                        ));
                    }
                }
            }
            Forward::Tun => unreachable!(),
        }
    }
    Ok(())
}

impl DataPlane for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn check(&self, table: &Table) -> Result<(), Unsupported> {
        check_table(table)
    }

    fn apply(&mut self, desired: &Table) -> anyhow::Result<()> {
        check_table(desired)?;
        let (new, unreachable) = plan::build(desired, &mut self.ids);
        self.note_unreachable(unreachable);
        // Two applies without a tidy in between: forget what the first one removed now.
        self.tidy_now();
        let old = self.installed.take();
        let first = self.send(|b| diff::diff(old.as_ref(), &new, b));
        match first {
            Ok(_) => {
                self.replaced = old;
                self.installed = Some(new);
                Ok(())
            }
            Err(e) if old.is_some() => {
                // Perhaps the kernel no longer holds what we installed (someone edited or
                // deleted vipd's tables): start over. The failed batch changed nothing.
                tracing::warn!(
                    "nftables: incremental update failed ({e:#}); rebuilding the vipd tables"
                );
                self.send(|b| diff::diff(None, &new, b)).with_context(|| {
                    format!(
                        "rebuilding the vipd nftables tables (after the incremental \
                         update failed: {e:#})"
                    )
                })?;
                self.installed = Some(new);
                Ok(())
            }
            Err(e) => Err(e.context("building the vipd nftables tables")),
        }
    }

    /// Taken into account by the next `apply`: NAT connections get `ct timeout`
    /// policies (see [`plan::ct_timeouts`]), DR flows these pinning timeouts
    /// ([`plan::flow_timeouts_with`]).
    fn set_timeouts(&mut self, timeouts: &crate::Timeouts) -> anyhow::Result<()> {
        self.ids.set_timeouts(timeouts);
        Ok(())
    }

    fn clear(&mut self) -> anyhow::Result<()> {
        self.installed = None;
        self.replaced = None;
        self.remove_tables()
    }

    fn tidy(&mut self) {
        self.tidy_now();
    }

    /// Client → server packets and bytes only: the rules count no connections and no
    /// replies (those stay 0).
    fn counters(&mut self) -> anyhow::Result<Vec<crate::DestCounters>> {
        Ok(Nftables::counters(self)?
            .into_iter()
            .map(|c| crate::DestCounters {
                service: c.service,
                addr: c.addr,
                port: c.port,
                counters: crate::Counters {
                    in_packets: c.packets,
                    in_bytes: c.bytes,
                    ..Default::default()
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
