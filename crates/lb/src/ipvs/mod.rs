//! IPVS backend: the kernel's IP Virtual Server, programmed over generic netlink
//! (family "IPVS"), the way `ipvsadm` and keepalived do it.
//!
//! - [`consts`]: the uapi constants (`linux/ip_vs.h`, `linux/genetlink.h`).
//! - [`encode`]: pure message encoders and dump decoders, over the kernel's view of a
//!   service ([`SvcAttrs`]) and destination ([`DestAttrs`]).
//! - [`diff`](mod@diff): [`lower`] (table → kernel view) and [`diff()`] (old, new →
//!   ordered operations).
//! - [`check`]: what IPVS cannot express.
//! - [`syncd`]: the kernel's connection sync daemon (`lvs_sync_daemon`).
//! - [`sysctl`]: `expire_nodest_conn` / `expire_quiescent_template`, set while vipd runs.
//! - [`Ipvs`]: the [`DataPlane`]: holds what vipd programmed and sends the differences.
//!
//! IPVS is not transactional: `apply` sends one request per change, ordered so that no
//! service loses its last destination before the replacements are in (see
//! [`diff::diff`]). vipd touches only the services its table names; it flushes the whole
//! table only when told (`lvs_flush` at open, `lvs_flush_on_stop` at [`DataPlane::clear`]:
//! see [`Options`]).
//! A service that already exists when vipd first wants it (left by a previous run, or
//! by ipvsadm) is adopted: `apply` reads it back from a dump taken then (not at `open`,
//! so the copy is fresh) and corrects it to the desired state. Services vipd's table
//! does not name are never touched, which also means a service a previous vipd run
//! created and the configuration has since dropped stays in the kernel.
//! When a request fails, the rest are still sent; afterwards vipd re-reads the services
//! it manages from the kernel so the next `apply` diffs against the truth.

pub mod check;
pub mod consts;
pub mod diff;
pub mod encode;
pub mod syncd;
pub mod sysctl;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;

use anyhow::{anyhow, Context};
use tracing::{debug, info, warn};

pub use check::check_table;
pub use diff::{diff, lower, KernelService, Op};
pub use encode::{DestAttrs, Stats, SvcAttrs};

use crate::model::{ServiceKey, Table, Timeouts};
use crate::netlink::{KernelErrno, NlError, NlSocket};
use crate::netns::{self, Netns};
use crate::{DataPlane, Unsupported};

/// `Ipvs::open` on a kernel without IPVS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this kernel has no IPVS (generic netlink family IPVS not found); load ip_vs or use the nftables backend")]
pub struct NoIpvs;

/// Largest batch of requests written in one `sendmsg` (the kernel refuses a netlink
/// message buffer above the socket's send buffer, ~200 KiB by default; the acks of a
/// batch must also fit the receive buffer).
const BATCH_BYTES: usize = 32 * 1024;

/// `lvs_flush_on_stop [VS]`: how [`DataPlane::clear`] removes the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOnStop {
    /// One `IPVS_CMD_FLUSH`: every service in the namespace goes, vipd's or not.
    All,
    /// One `IPVS_CMD_DEL_SERVICE` per service vipd manages; the kernel drops their
    /// destinations with them.
    Services,
}

/// How the IPVS backend starts and stops.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Set the [`sysctl::TUNED`] values while running (in `netns` when given).
    pub tune_sysctls: bool,
    /// `lvs_flush`: delete every IPVS service at open, vipd's or not.
    pub flush: bool,
    /// `lvs_flush_on_stop`; `None`: destinations, then services, one by one (vipd's
    /// services only).
    pub flush_on_stop: Option<FlushOnStop>,
    /// `lvs_timeouts`, set at open.
    pub timeouts: Timeouts,
    /// `net_namespace_ipvs`: the namespace whose IPVS is programmed.
    pub netns: Option<Netns>,
}

/// The IPVS data plane.
pub struct Ipvs {
    sock: NlSocket,
    family: u16,
    netns: Option<Netns>,
    flush_on_stop: Option<FlushOnStop>,
    /// What the kernel has for the services vipd manages, as far as vipd knows: what it
    /// programmed, or adopted from a dump.
    programmed: Vec<KernelService>,
    /// A failed request left `programmed` unsure and re-reading the kernel failed too:
    /// re-read before the next diff.
    stale: bool,
    /// The sysctls vipd set, held only to be put back when this is dropped (in their
    /// namespace).
    tuned: Option<sysctl::Tuned>,
}

impl Drop for Ipvs {
    fn drop(&mut self) {
        if let (Some(ns), Some(tuned)) = (&self.netns, self.tuned.take()) {
            if let Err(e) = ns.run(move || drop(tuned)) {
                warn!("restoring the IPVS sysctls: {e:#}");
            }
        }
    }
}

fn open_socket_in(netns: Option<&Netns>) -> anyhow::Result<NlSocket> {
    netns::within(netns, || NlSocket::open(libc::NETLINK_GENERIC as isize))?
        .context("opening a generic netlink socket")
}

/// The id of generic netlink family `name`, `None` if the kernel has no such family.
fn resolve_family(sock: &mut NlSocket, name: &str) -> anyhow::Result<Option<u16>> {
    let seq = sock.next_seq();
    let replies = sock
        .dump(encode::get_family_named(name, seq).as_bytes())
        .context("listing generic netlink families")?;
    Ok(encode::family_id(&replies, name))
}

/// Every IPVS service in the kernel that vipd's model can name (see
/// [`encode::decode_service`]).
fn dump_services(sock: &mut NlSocket, family: u16) -> anyhow::Result<Vec<SvcAttrs>> {
    let seq = sock.next_seq();
    let replies = sock
        .dump(encode::get_services(family, seq).as_bytes())
        .context("reading the IPVS services")?;
    let mut out = Vec::with_capacity(replies.len());
    for m in &replies {
        if let Some(s) = encode::decode_service(m).context("decoding an IPVS service")? {
            out.push(s);
        }
    }
    Ok(out)
}

fn dump_dests(
    sock: &mut NlSocket,
    family: u16,
    key: &ServiceKey,
) -> anyhow::Result<Vec<DestAttrs>> {
    dump_dests_with(sock, family, key, |m| encode::decode_dest(m, key.family()))
}

/// The destinations of service `key` with their statistics and connections now.
fn dump_dest_stats(
    sock: &mut NlSocket,
    family: u16,
    key: &ServiceKey,
) -> anyhow::Result<Vec<(DestAttrs, encode::Stats, [u32; 3])>> {
    dump_dests_with(sock, family, key, |m| {
        let stats = encode::decode_msg_stats(
            m,
            consts::IPVS_CMD_ATTR_DEST,
            consts::IPVS_DEST_ATTR_STATS,
            consts::IPVS_DEST_ATTR_STATS64,
        )?;
        let conns = encode::decode_dest_conns(m)?;
        Ok((encode::decode_dest(m, key.family())?, stats, conns))
    })
}

/// Each destination of service `key` in the kernel, decoded by `decode`.
fn dump_dests_with<T>(
    sock: &mut NlSocket,
    family: u16,
    key: &ServiceKey,
    decode: impl Fn(&crate::netlink::Msg) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let seq = sock.next_seq();
    let replies = sock
        .dump(encode::get_dests(family, key, seq).as_bytes())
        .with_context(|| format!("reading the destinations of IPVS service {key}"))?;
    replies
        .iter()
        .map(decode)
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("decoding a destination of IPVS service {key}"))
}

/// Requests cut into `sendmsg`-sized batches.
#[derive(Debug)]
struct Batch {
    bytes: Vec<u8>,
    /// Sequence number of each request, in order.
    seqs: Vec<u32>,
    /// The operations it carries (indices into the op list).
    ops: Range<usize>,
}

/// Encodes `ops` with sequence numbers from `next_seq` into batches of at most
/// `limit` bytes (a single larger request gets a batch of its own).
fn batches(ops: &[Op], family: u16, mut next_seq: impl FnMut() -> u32, limit: usize) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let seq = next_seq();
        let msg = op.encode(family, seq);
        let fits = out
            .last()
            .is_some_and(|b| b.bytes.len() + msg.len() <= limit);
        if !fits {
            out.push(Batch {
                bytes: Vec::with_capacity(limit.min(64 * 1024)),
                seqs: Vec::new(),
                ops: i..i,
            });
        }
        let b = out.last_mut().expect("a batch was just pushed");
        b.bytes.extend_from_slice(msg.as_bytes());
        b.seqs.push(seq);
        b.ops.end = i + 1;
    }
    out
}

/// A hint for the errors whose cause is not obvious from the errno.
fn hint(op: &Op, err: KernelErrno) -> String {
    match (op, err.0) {
        (Op::NewService(s) | Op::SetService(s), libc::ENOENT) => format!(
            " (is the scheduler module ip_vs_{}{} available in this kernel?)",
            s.sched,
            s.pe_name
                .as_ref()
                .map(|p| format!(" or persistence engine ip_vs_pe_{p}"))
                .unwrap_or_default()
        ),
        (Op::NewService(_), libc::EEXIST) => " (the service exists already)".into(),
        (Op::NewDest(..) | Op::SetDest(..) | Op::DelDest { .. }, libc::ESRCH) => {
            " (the service is missing)".into()
        }
        (Op::SetService(_) | Op::DelService(_), libc::ESRCH) => " (the service is missing)".into(),
        _ => String::new(),
    }
}

impl Ipvs {
    /// Finds the IPVS family and checks that vipd may read the IPVS table (needs
    /// CAP_NET_ADMIN). Errors with [`NoIpvs`] when the kernel has no IPVS (the ip_vs
    /// module is not loaded: `open` does not load it). With `tune_sysctls`, sets the
    /// [`sysctl::TUNED`] values in the caller's network namespace until dropped.
    pub fn open(tune_sysctls: bool) -> anyhow::Result<Ipvs> {
        Ipvs::open_with(Options {
            tune_sysctls,
            ..Options::default()
        })
    }

    /// [`Ipvs::open`] with every start and stop setting. Errors with [`NoIpvs`] when the
    /// kernel (of `options.netns`) has no IPVS.
    pub fn open_with(options: Options) -> anyhow::Result<Ipvs> {
        let ns = options.netns.as_ref();
        let mut sock = open_socket_in(ns)?;
        let family = resolve_family(&mut sock, consts::IPVS_GENL_NAME)?.ok_or(NoIpvs)?;
        let existing = dump_services(&mut sock, family)
            .context("IPVS is there but reading its table failed (vipd needs CAP_NET_ADMIN)")?;
        let tuned = if options.tune_sysctls {
            Some(netns::within(ns, || {
                sysctl::Tuned::apply(std::path::Path::new(sysctl::PROC_DIR))
            })??)
        } else {
            None
        };
        let mut me = Ipvs {
            sock,
            family,
            netns: options.netns.clone(),
            flush_on_stop: options.flush_on_stop,
            programmed: Vec::new(),
            stale: false,
            tuned,
        };
        if options.flush && !existing.is_empty() {
            me.flush().context("lvs_flush: flushing the IPVS table")?;
            info!(
                services = existing.len(),
                "lvs_flush: removed every IPVS service that was in the kernel"
            );
        }
        me.set_timeouts(&options.timeouts)?;
        info!(
            family,
            services = if options.flush { 0 } else { existing.len() },
            netns = ns.map(|n| n.path().display().to_string()),
            "IPVS backend ready (services already in the kernel are adopted when the configuration names them)"
        );
        Ok(me)
    }

    /// `IPVS_CMD_FLUSH`: every service goes, vipd's or not.
    fn flush(&mut self) -> anyhow::Result<()> {
        let seq = self.sock.next_seq();
        self.sock
            .transact(encode::flush(self.family, seq).as_bytes(), &[seq])?;
        self.programmed.clear();
        self.stale = false;
        Ok(())
    }

    /// Whether this kernel has IPVS (the generic netlink family is registered), for the
    /// automatic backend choice. Any error counts as "no".
    pub fn available() -> bool {
        Ipvs::available_in(None)
    }

    /// [`Ipvs::available`] for the IPVS of `netns` (`net_namespace_ipvs`).
    pub fn available_in(netns: Option<&Netns>) -> bool {
        open_socket_in(netns)
            .and_then(|mut s| resolve_family(&mut s, consts::IPVS_GENL_NAME))
            .is_ok_and(|id| id.is_some())
    }

    /// The generic netlink family id the kernel gave IPVS.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    /// What vipd believes the kernel has for the services it manages.
    pub fn programmed(&self) -> &[KernelService] {
        &self.programmed
    }

    /// Reads service `key` (with destinations) from the kernel if it is in `present`.
    fn read_service(
        &mut self,
        present: &HashMap<ServiceKey, SvcAttrs>,
        key: &ServiceKey,
    ) -> anyhow::Result<Option<KernelService>> {
        let Some(svc) = present.get(key) else {
            return Ok(None);
        };
        let dests = dump_dests(&mut self.sock, self.family, key)?;
        Ok(Some(KernelService {
            svc: svc.clone(),
            dests,
        }))
    }

    /// Adopts the services `want` names that vipd does not manage yet but the kernel
    /// already has, so the diff corrects them instead of failing to add them.
    fn adopt(&mut self, want: &[KernelService]) -> anyhow::Result<()> {
        let managed: HashSet<ServiceKey> = self.programmed.iter().map(|s| s.svc.key).collect();
        let unknown: Vec<ServiceKey> = want
            .iter()
            .map(|s| s.svc.key)
            .filter(|k| !managed.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let present: HashMap<ServiceKey, SvcAttrs> = dump_services(&mut self.sock, self.family)?
            .into_iter()
            .map(|s| (s.key, s))
            .collect();
        for key in unknown {
            if let Some(k) = self.read_service(&present, &key)? {
                info!(service = %key, dests = k.dests.len(), "adopting an IPVS service that was already in the kernel");
                self.programmed.push(k);
            }
        }
        Ok(())
    }

    /// Replaces `programmed` with what the kernel has for every service vipd manages or
    /// wants.
    fn resync(&mut self, want: &[KernelService]) -> anyhow::Result<()> {
        let mut keys: Vec<ServiceKey> = Vec::new();
        let mut seen = BTreeSet::new();
        for k in self
            .programmed
            .iter()
            .map(|s| s.svc.key)
            .chain(want.iter().map(|s| s.svc.key))
        {
            if seen.insert(k) {
                keys.push(k);
            }
        }
        let present: HashMap<ServiceKey, SvcAttrs> = dump_services(&mut self.sock, self.family)?
            .into_iter()
            .map(|s| (s.key, s))
            .collect();
        let mut fresh = Vec::new();
        for key in keys {
            if let Some(k) = self.read_service(&present, &key)? {
                fresh.push(k);
            }
        }
        self.programmed = fresh;
        self.stale = false;
        Ok(())
    }

    /// Sends `ops` in batches. A failed request does not stop the rest (IPVS applies
    /// every request on its own); returns how many failed and the first failure.
    fn send(&mut self, ops: &[Op]) -> Result<(), (usize, anyhow::Error)> {
        let sock = &mut self.sock;
        let batches = batches(ops, self.family, || sock.next_seq(), BATCH_BYTES);
        let mut failed = 0usize;
        let mut first: Option<anyhow::Error> = None;
        for b in batches {
            let Err(e) = self.sock.transact(&b.bytes, &b.seqs) else {
                continue;
            };
            failed += 1;
            let err = match e.downcast_ref::<NlError>() {
                Some(nl) => match b.seqs.iter().position(|s| *s == nl.seq) {
                    Some(i) => {
                        let op = &ops[b.ops.start + i];
                        anyhow!("IPVS: {op}: {}{}", nl.err, hint(op, nl.err))
                    }
                    None => e.context("IPVS request"),
                },
                None => e.context(format!(
                    "IPVS: sending requests {}..{} of {}",
                    b.ops.start + 1,
                    b.ops.end,
                    ops.len()
                )),
            };
            warn!("{err:#}");
            first.get_or_insert(err);
            // After an error `transact` stops reading, but the kernel goes on with the
            // rest of the batch and acks it: start over on a fresh socket so those late
            // acks cannot be mistaken for answers to the next batch.
            match open_socket_in(self.netns.as_ref()) {
                Ok(s) => self.sock = s,
                Err(e) => {
                    return Err((
                        failed,
                        e.context("reopening the netlink socket after a failed IPVS request"),
                    ));
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => Err((failed, e)),
        }
    }
}

impl DataPlane for Ipvs {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn check(&self, table: &Table) -> Result<(), Unsupported> {
        check_table(table)
    }

    fn apply(&mut self, desired: &Table) -> anyhow::Result<()> {
        check_table(desired)?;
        let want = lower(desired);
        if self.stale {
            self.resync(&want)
                .context("re-reading IPVS after an earlier failure")?;
        } else {
            self.adopt(&want)
                .context("reading existing IPVS services")?;
        }
        let ops = diff(&self.programmed, &want);
        if ops.is_empty() {
            return Ok(());
        }
        debug!(requests = ops.len(), "applying IPVS changes");
        for op in &ops {
            debug!("IPVS: {op}");
        }
        match self.send(&ops) {
            Ok(()) => {
                self.programmed = want;
                Ok(())
            }
            Err((failed, first)) => {
                self.stale = true;
                if let Err(e) = self.resync(&want) {
                    warn!("re-reading IPVS after a failed change: {e:#}");
                }
                Err(first.context(format!(
                    "applying {} IPVS changes: requests failed in {failed} batch(es); the first failure",
                    ops.len()
                )))
            }
        }
    }

    fn set_timeouts(&mut self, t: &Timeouts) -> anyhow::Result<()> {
        if t.is_empty() {
            return Ok(());
        }
        let seq = self.sock.next_seq();
        self.sock
            .transact(encode::set_config(self.family, t, seq).as_bytes(), &[seq])
            .context("lvs_timeouts: setting the IPVS connection timeouts")?;
        info!(
            tcp = t.tcp,
            tcpfin = t.tcpfin,
            udp = t.udp,
            "IPVS connection timeouts set (0: unchanged)"
        );
        Ok(())
    }

    /// Every destination of the services vipd manages, with the kernel's totals.
    fn counters(&mut self) -> anyhow::Result<Vec<crate::DestCounters>> {
        let keys: Vec<ServiceKey> = self.programmed.iter().map(|s| s.svc.key).collect();
        let mut out = Vec::new();
        for key in keys {
            for (d, st, [active, inactive, persistent]) in
                dump_dest_stats(&mut self.sock, self.family, &key)?
            {
                out.push(crate::DestCounters {
                    service: key,
                    addr: d.addr,
                    port: d.port,
                    counters: crate::Counters {
                        conns: st.conns,
                        in_packets: st.inpkts,
                        in_bytes: st.inbytes,
                        out_packets: st.outpkts,
                        out_bytes: st.outbytes,
                        active_conns: active as u64,
                        inactive_conns: inactive as u64,
                        persistent_conns: persistent as u64,
                    },
                });
            }
        }
        Ok(out)
    }

    fn clear(&mut self) -> anyhow::Result<()> {
        match self.flush_on_stop {
            None => self.apply(&Table::default()),
            Some(FlushOnStop::All) => self.flush().context("lvs_flush_on_stop: flushing IPVS"),
            Some(FlushOnStop::Services) => {
                let ops: Vec<Op> = self
                    .programmed
                    .iter()
                    .map(|s| Op::DelService(s.svc.key))
                    .collect();
                let result = self.send(&ops);
                self.programmed.clear();
                result.map_err(|(failed, first)| {
                    first.context(format!(
                        "lvs_flush_on_stop VS: deleting {} IPVS services: {failed} batch(es) failed",
                        ops.len()
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Proto;
    use crate::netlink::parse_msgs;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn availability_and_open_error_on_this_kernel() {
        let available = Ipvs::available();
        // The ip_vs module creates /proc/net/ip_vs in every namespace once loaded: an
        // independent witness for the generic netlink lookup.
        let proc_entry = std::path::Path::new("/proc/net/ip_vs").exists();
        assert_eq!(
            available, proc_entry,
            "genl lookup and /proc/net/ip_vs disagree"
        );
        if !available {
            let err = Ipvs::open(false)
                .err()
                .expect("open must fail without IPVS");
            assert!(err.downcast_ref::<NoIpvs>().is_some(), "{err:#}");
            assert_eq!(
                err.to_string(),
                "this kernel has no IPVS (generic netlink family IPVS not found); load ip_vs or use the nftables backend"
            );
        }
    }

    #[test]
    fn family_lookup_finds_the_controller_itself() {
        // The same code path `available` uses, against a family every kernel has: shows
        // that "IPVS not found" above is the kernel's answer, not a broken lookup.
        let mut sock = open_socket_in(None).unwrap();
        assert_eq!(resolve_family(&mut sock, "nlctrl").unwrap(), Some(0x10));
        assert_eq!(resolve_family(&mut sock, "no-such-family").unwrap(), None);
    }

    fn ops(n: u8) -> Vec<Op> {
        let key = ServiceKey::Addr {
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
            port: 80,
            proto: Proto::Tcp,
        };
        (0..n)
            .map(|i| {
                Op::NewDest(
                    key,
                    DestAttrs {
                        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                        port: 80,
                        fwd: consts::IP_VS_CONN_F_DROUTE,
                        weight: 1,
                        u_thresh: 0,
                        l_thresh: 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn batches_respect_the_size_limit_and_keep_every_request_in_order() {
        let ops = ops(100);
        let mut seq = 1000;
        // A NEW_DEST for an IPv4 TCP service is 140 bytes: 7 fit in 1000.
        let bs = batches(
            &ops,
            0x20,
            || {
                seq += 1;
                seq
            },
            1000,
        );
        assert_eq!(bs.len(), 15);
        let mut next_op = 0;
        let mut next_seq = 1001;
        for b in &bs {
            assert!(b.bytes.len() <= 1000);
            assert_eq!(b.ops.start, next_op);
            let msgs = parse_msgs(&b.bytes);
            assert_eq!(msgs.len(), b.ops.len());
            assert_eq!(msgs.len(), b.seqs.len());
            for (m, s) in msgs.iter().zip(&b.seqs) {
                assert_eq!(m.seq, *s);
                assert_eq!(*s, next_seq);
                assert_eq!(
                    encode::decode_dest(m, crate::Family::V4).unwrap(),
                    match &ops[next_op] {
                        Op::NewDest(_, d) => *d,
                        _ => unreachable!(),
                    }
                );
                next_seq += 1;
                next_op += 1;
            }
        }
        assert_eq!(next_op, 100);
        // A limit below one message still sends every message, one per batch.
        assert_eq!(batches(&ops[..3], 0x20, || 1, 10).len(), 3);
        assert!(batches(&[], 0x20, || 1, 10).is_empty());
    }

    // The kernel path end to end (apply, adopt, change behind vipd's back, clear) is
    // tests/ipvs_kernel.rs: it runs here when this kernel has IPVS and in the bench/vm
    // guest when it has not (CI), so no copy of it lives here where CI could not run it.

    #[test]
    fn error_hints() {
        let svc = SvcAttrs {
            key: ServiceKey::Fwmark {
                mark: 1,
                family: crate::Family::V4,
            },
            sched: "twos".into(),
            flags: 0,
            timeout: 0,
            netmask: u32::MAX,
            pe_name: None,
        };
        assert_eq!(
            hint(&Op::NewService(svc.clone()), KernelErrno(libc::ENOENT)),
            " (is the scheduler module ip_vs_twos available in this kernel?)"
        );
        assert_eq!(hint(&Op::NewService(svc), KernelErrno(libc::EINVAL)), "");
    }
}
