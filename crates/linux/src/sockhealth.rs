//! What the protocol thread does when a VRRP socket keeps failing (issue 13: a vipd
//! that loses its raw socket recovers or fails over deliberately, never hangs on to a
//! VIP it cannot defend). Plain bookkeeping, no I/O: the runtime feeds it outcomes and
//! acts on its verdicts; the engine only ever sees the resulting fault through
//! `Instance::set_fault`, the input tracking uses.
//!
//! * **Sending** ([`SendHealth`], one per instance): a *round* is the adverts one engine
//!   step asked for (one per unicast peer, or one to the group). A round fails when none
//!   of its adverts left the host. [`FAILED_ROUNDS_FOR_FAULT`] failed rounds in a row
//!   while MASTER raise a send fault: the instance goes FAULT (releasing its VIPs,
//!   `notify_fault`), since its backups stop hearing it about then and take over.
//!   Every errno counts — `ENOBUFS` for three advert intervals is as silent on the wire
//!   as `EPERM` — but `EINTR` and the errors that only report an earlier ICMP message
//!   ([`is_icmp_report`]) are retried once first. While faulted, the runtime sends a
//!   probe (a VRRP header with VRID 0, which no router can own, so every receiver drops
//!   it as an unknown VRID) the same way as the adverts, with [`Backoff`]; the first
//!   probe that leaves the host clears the fault and the instance comes back through
//!   BACKUP.
//! * **Receiving** ([`RxHealth`], one per socket): an error that reports an ICMP
//!   message is not the socket's fault and is only counted. Errors that say the socket
//!   itself is unusable ([`is_fatal_for_socket`]) or [`RX_ERRORS_FOR_REOPEN`] other
//!   errors in a row (no packet and no empty queue in between) make the runtime reopen
//!   the socket; so does a multicast membership the interface no longer has (see
//!   [`missing_groups`]). While a reopen fails, the socket is *broken*: its instances are
//!   FAULT (an instance that cannot hear its peers would take over from a live master),
//!   and the reopen is tried again with [`Backoff`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Failed advert rounds in a row, while MASTER, that make an instance FAULT.
pub const FAILED_ROUNDS_FOR_FAULT: u32 = 3;
/// Receive errors in a row that make the runtime reopen a socket.
pub const RX_ERRORS_FOR_REOPEN: u32 = 8;
/// First and longest wait between probes of a faulted instance's sends.
pub const PROBE_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(4));
/// First and longest wait between attempts to reopen a broken socket.
pub const REOPEN_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(2));
/// How often the multicast memberships of the sockets are checked.
pub const MEMBERSHIP_AUDIT: Duration = Duration::from_secs(1);

/// Errors by which the kernel reports an ICMP error about an earlier packet (raw
/// sockets deliver a "hard" one, e.g. protocol unreachable from a unicast peer that
/// runs no VRRP, as the next receive's — or an `IP_HDRINCL` send's — error). The
/// socket is fine and the report is consumed by the call that returned it.
pub fn is_icmp_report(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOPROTOOPT
            | libc::ECONNREFUSED
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::EMSGSIZE
            | libc::EPROTO
    )
}

/// Errors that say the socket itself is unusable: reopen at once.
pub fn is_fatal_for_socket(errno: i32) -> bool {
    matches!(errno, libc::EBADF | libc::ENOTSOCK | libc::EINVAL)
}

/// Exponential backoff between attempts: `min`, doubling, at most `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Instant,
    delay: Duration,
    max: Duration,
}

impl Backoff {
    /// The first attempt `min` after `now`.
    pub fn new(now: Instant, (min, max): (Duration, Duration)) -> Backoff {
        Backoff {
            next: now + min,
            delay: min,
            max,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    pub fn next(&self) -> Instant {
        self.next
    }

    /// An attempt failed at `now`: the next one after twice the last wait (capped).
    pub fn failed(&mut self, now: Instant) {
        self.delay = (self.delay * 2).min(self.max);
        self.next = now + self.delay;
    }

    /// Try at once (something changed, e.g. the interface came back).
    pub fn hurry(&mut self, now: Instant) {
        self.next = self.next.min(now);
    }
}

/// Why an instance is in a send fault, and when it is probed next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFault {
    /// The errno name of the last failure (`EPERM`, `ENODEV`, …).
    pub reason: String,
    pub since: Instant,
    pub probe: Backoff,
}

/// One instance's advert sends (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendHealth {
    failed_rounds: u32,
    fault: Option<SendFault>,
    /// Send faults raised so far (status, metrics).
    pub faults: u64,
}

impl SendHealth {
    /// The outcome of one round: `Ok` if at least one advert left the host, else the
    /// errno name of the last failure. `master`: the instance is MASTER after the
    /// round. `true` when this round raises the send fault.
    pub fn round(&mut self, now: Instant, master: bool, outcome: Result<(), String>) -> bool {
        match outcome {
            Ok(()) => {
                self.failed_rounds = 0;
                false
            }
            // Only a master defends its VIPs with adverts; a priority-0 advert on the
            // way out is not a round of one.
            Err(_) if !master || self.fault.is_some() => {
                self.failed_rounds = 0;
                false
            }
            Err(reason) => {
                self.failed_rounds += 1;
                if self.failed_rounds < FAILED_ROUNDS_FOR_FAULT {
                    return false;
                }
                self.failed_rounds = 0;
                self.faults += 1;
                self.fault = Some(SendFault {
                    reason,
                    since: now,
                    probe: Backoff::new(now, PROBE_BACKOFF),
                });
                true
            }
        }
    }

    pub fn fault(&self) -> Option<&SendFault> {
        self.fault.as_ref()
    }

    /// When the next probe is due, while faulted.
    pub fn next_probe(&self) -> Option<Instant> {
        self.fault.as_ref().map(|f| f.probe.next())
    }

    /// A probe's outcome (as for [`SendHealth::round`]). `true` when it clears the fault.
    pub fn probed(&mut self, now: Instant, outcome: Result<(), String>) -> bool {
        let Some(f) = self.fault.as_mut() else {
            return false;
        };
        match outcome {
            Ok(()) => {
                self.fault = None;
                true
            }
            Err(reason) => {
                f.reason = reason;
                f.probe.failed(now);
                false
            }
        }
    }
}

/// What to do after a receive error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxVerdict {
    /// Counted; read on.
    Continue,
    /// Counted; the socket must be reopened.
    Reopen,
}

/// A socket whose reopen failed: its instances are FAULT until a reopen succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub reason: String,
    pub since: Instant,
    pub retry: Backoff,
}

/// One VRRP socket's receive side (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxHealth {
    errors_in_a_row: u32,
    broken: Option<Broken>,
    /// Successful reopens so far.
    pub reopens: u64,
}

impl RxHealth {
    /// A packet was read, or the queue was found empty: the socket works.
    pub fn ok(&mut self) {
        self.errors_in_a_row = 0;
    }

    /// A receive failed with `errno` (not `EAGAIN` / `EINTR`).
    pub fn error(&mut self, errno: Option<i32>) -> RxVerdict {
        let errno = errno.unwrap_or(0);
        if is_icmp_report(errno) {
            return RxVerdict::Continue;
        }
        self.errors_in_a_row += 1;
        if is_fatal_for_socket(errno) || self.errors_in_a_row >= RX_ERRORS_FOR_REOPEN {
            self.errors_in_a_row = 0;
            RxVerdict::Reopen
        } else {
            RxVerdict::Continue
        }
    }

    /// A reopen succeeded. `true` if the socket was broken until now.
    pub fn reopened(&mut self) -> bool {
        self.errors_in_a_row = 0;
        self.reopens += 1;
        self.broken.take().is_some()
    }

    /// A reopen failed with `reason`. `true` if the socket is newly broken.
    pub fn reopen_failed(&mut self, now: Instant, reason: String) -> bool {
        match self.broken.as_mut() {
            Some(b) => {
                b.reason = reason;
                b.retry.failed(now);
                false
            }
            None => {
                self.broken = Some(Broken {
                    reason,
                    since: now,
                    retry: Backoff::new(now, REOPEN_BACKOFF),
                });
                true
            }
        }
    }

    pub fn broken(&self) -> Option<&Broken> {
        self.broken.as_ref()
    }

    /// Retry a broken socket's reopen at once (its interface came back).
    pub fn hurry(&mut self, now: Instant) {
        if let Some(b) = self.broken.as_mut() {
            b.retry.hurry(now);
        }
    }
}

/// The multicast groups each interface has joined, from `/proc/net/igmp` (IPv4) and
/// `/proc/net/igmp6` (IPv6) text.
pub fn memberships(igmp: &str, igmp6: &str) -> Vec<(u32, IpAddr)> {
    let mut out = Vec::new();
    // IPv4: an interface line "Idx\tDevice : Count Querier", then one indented line per
    // group, the address as the kernel's __be32 printed with %08X (host byte order).
    let mut ifindex = None;
    for line in igmp.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !line.starts_with(char::is_whitespace) {
            ifindex = fields.first().and_then(|f| f.parse::<u32>().ok());
        } else if let (Some(i), Some(g)) = (ifindex, fields.first()) {
            if let Ok(v) = u32::from_str_radix(g, 16) {
                out.push((i, IpAddr::V4(Ipv4Addr::from(v.to_ne_bytes()))));
            }
        }
    }
    // IPv6: "ifindex name group(32 hex digits) users flags timer".
    for line in igmp6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(i), Some(g)) = (
            fields.first().and_then(|f| f.parse::<u32>().ok()),
            fields.get(2),
        ) else {
            continue;
        };
        if let Ok(v) = u128::from_str_radix(g, 16) {
            out.push((i, IpAddr::V6(Ipv6Addr::from(v))));
        }
    }
    out
}

/// The groups of `wanted` that interface `ifindex` has not joined (per [`memberships`]).
pub fn missing_groups(ifindex: u32, wanted: &[IpAddr], joined: &[(u32, IpAddr)]) -> Vec<IpAddr> {
    wanted
        .iter()
        .filter(|g| !joined.contains(&(ifindex, **g)))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(e: &str) -> Result<(), String> {
        Err(e.to_string())
    }

    #[test]
    fn three_failed_rounds_as_master_raise_the_fault_and_a_success_resets() {
        let t0 = Instant::now();
        let mut h = SendHealth::default();
        assert!(!h.round(t0, true, err("EPERM")));
        assert!(!h.round(t0, true, err("EPERM")));
        // A round that got out starts the count again.
        assert!(!h.round(t0, true, Ok(())));
        assert!(!h.round(t0, true, err("ENOBUFS")));
        assert!(!h.round(t0, true, err("EPERM")));
        assert!(h.fault().is_none());
        assert!(h.round(t0, true, err("EPERM")), "third in a row");
        assert_eq!(h.fault().unwrap().reason, "EPERM");
        assert_eq!(h.faults, 1);
        // Already faulted: the priority-0 advert on the way out changes nothing.
        assert!(!h.round(t0, false, err("EPERM")));
        assert_eq!(h.faults, 1);
    }

    #[test]
    fn failures_outside_master_never_count() {
        let t0 = Instant::now();
        let mut h = SendHealth::default();
        for _ in 0..10 {
            assert!(!h.round(t0, false, err("ENODEV")));
        }
        assert!(h.fault().is_none());
        // Nor do they carry over into a later mastership.
        assert!(!h.round(t0, true, err("ENODEV")));
        assert!(!h.round(t0, true, err("ENODEV")));
        assert!(!h.round(t0, false, err("ENODEV")));
        assert!(!h.round(t0, true, err("ENODEV")));
        assert!(h.fault().is_none());
    }

    #[test]
    fn probes_back_off_exponentially_and_the_first_success_clears() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = SendHealth::default();
        for _ in 0..FAILED_ROUNDS_FOR_FAULT {
            h.round(t0, true, err("EPERM"));
        }
        assert_eq!(h.next_probe(), Some(t0 + PROBE_BACKOFF.0));
        let mut now = t0 + PROBE_BACKOFF.0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(!h.probed(now, err("EPERM")));
            let next = h.next_probe().unwrap();
            waits.push(next - now);
            now = next;
        }
        assert_eq!(
            waits,
            [200, 400, 800, 1600, 3200, 4000, 4000, 4000].map(ms),
            "doubling from 100 ms, at most 4 s"
        );
        assert!(h.probed(now, Ok(())));
        assert!(h.fault().is_none() && h.next_probe().is_none());
        assert!(!h.probed(now, Ok(())), "nothing to clear");
        // A new fault starts the backoff from the beginning.
        for _ in 0..FAILED_ROUNDS_FOR_FAULT {
            h.round(now, true, err("ENODEV"));
        }
        assert_eq!(h.next_probe(), Some(now + PROBE_BACKOFF.0));
        assert_eq!(h.faults, 2);
    }

    #[test]
    fn receive_errors_reopen_when_fatal_or_repeated_but_never_for_icmp_reports() {
        let mut h = RxHealth::default();
        for _ in 0..100 {
            assert_eq!(h.error(Some(libc::ENOPROTOOPT)), RxVerdict::Continue);
            assert_eq!(h.error(Some(libc::ECONNREFUSED)), RxVerdict::Continue);
        }
        assert_eq!(h.error(Some(libc::EBADF)), RxVerdict::Reopen);
        for _ in 1..RX_ERRORS_FOR_REOPEN {
            assert_eq!(h.error(Some(libc::ENOMEM)), RxVerdict::Continue);
        }
        assert_eq!(h.error(Some(libc::ENOMEM)), RxVerdict::Reopen);
        // Sporadic errors with working reads in between never add up.
        for _ in 0..100 {
            assert_eq!(h.error(Some(libc::ENOMEM)), RxVerdict::Continue);
            h.ok();
        }
    }

    #[test]
    fn a_broken_socket_is_retried_with_backoff_until_it_reopens() {
        let t0 = Instant::now();
        let mut h = RxHealth::default();
        assert!(h.reopen_failed(t0, "ENODEV".into()), "newly broken");
        let b = h.broken().unwrap().clone();
        assert_eq!(b.retry.next(), t0 + REOPEN_BACKOFF.0);
        let t1 = b.retry.next();
        assert!(!h.reopen_failed(t1, "ENODEV".into()), "still broken");
        assert_eq!(h.broken().unwrap().retry.next(), t1 + 2 * REOPEN_BACKOFF.0);
        assert_eq!(h.broken().unwrap().since, t0);
        h.hurry(t1);
        assert!(h.broken().unwrap().retry.due(t1));
        assert!(h.reopened(), "was broken");
        assert!(h.broken().is_none());
        assert!(!h.reopened());
        assert_eq!(h.reopens, 2);
    }

    #[test]
    fn memberships_read_both_proc_files() {
        let igmp = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                    1\tlo        :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                    7\teth0      :     2      V3\n\
                    \t\t\t\t120000E0     1 0:00000000\t\t0\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        let igmp6 = "1    lo              ff020000000000000000000000000001     1 0000000C 0\n\
                     7    eth0            ff020000000000000000000000000012     1 00000004 0\n";
        let m = memberships(igmp, igmp6);
        let v4: IpAddr = "224.0.0.18".parse().unwrap();
        let v6: IpAddr = "ff02::12".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert!(m.contains(&(7, v4)), "{m:?}");
            assert!(m.contains(&(1, "224.0.0.1".parse().unwrap())), "{m:?}");
        }
        assert!(m.contains(&(7, v6)), "{m:?}");
        assert_eq!(m.len(), 5);
        assert!(missing_groups(7, &[v6], &m).is_empty());
        assert_eq!(missing_groups(8, &[v6], &m), vec![v6]);
    }

    #[test]
    fn this_hosts_proc_files_parse() {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let m = memberships(&read("/proc/net/igmp"), &read("/proc/net/igmp6"));
        // Every interface with IPv4 joins the all-systems group.
        if !read("/proc/net/igmp").is_empty() {
            assert!(
                m.iter()
                    .any(|(_, g)| *g == IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1))),
                "{m:?}"
            );
        }
    }
}
