//! Pacing of gratuitous ARPs and unsolicited NAs (keepalived's `garp_group`,
//! `vrrp_garp_interval`, `vrrp_gna_interval`).
//!
//! Every announcement waits in a lane until the lane's previous one of the same family
//! is at least the lane's interval old, whichever instance sent them. A `garp_group`
//! is one lane for all its interfaces (they share a switch that must not be flooded);
//! an interface in no group is a lane of its own, paced by the sending instance's
//! `garp_interval` / `gna_interval` (else the global `vrrp_garp_interval` /
//! `vrrp_gna_interval`). In a group, an interval the group does not set means no
//! pacing of that family there (keepalived: the global intervals apply only to
//! interfaces in no group).
//!
//! Pure: the protocol thread asks [`Pacer::due`] what to send now and
//! [`Pacer::next_due`] when to wake up.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use vipd_vrrp::wire::Family;

/// The `garp_group`s, their interfaces resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacingPlan {
    pub groups: Vec<GroupPacing>,
}

/// One `garp_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPacing {
    pub ifindexes: Vec<u32>,
    pub garp_interval: Duration,
    pub gna_interval: Duration,
}

/// Announcements that share one pacing clock (per family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The n-th `garp_group`.
    Group(usize),
    /// An interface in no group.
    Interface(u32),
}

impl PacingPlan {
    /// The lane and interval of an announcement of `family` leaving from `base` (the
    /// physical interface: a VMAC's base), sent by an instance whose own interval for
    /// that family is `own`.
    pub fn lane(&self, base: u32, family: Family, own: Duration) -> (Lane, Duration) {
        match self.groups.iter().position(|g| g.ifindexes.contains(&base)) {
            Some(i) => {
                let g = &self.groups[i];
                let interval = match family {
                    Family::V4 => g.garp_interval,
                    Family::V6 => g.gna_interval,
                };
                (Lane::Group(i), interval)
            }
            None => (Lane::Interface(base), own),
        }
    }
}

/// The family of an announcement frame (Ethernet: ARP or IPv6).
pub fn frame_family(frame: &[u8]) -> Family {
    match frame.get(12..14) {
        Some([0x86, 0xdd]) => Family::V6,
        _ => Family::V4,
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// When the lane may send its next announcement.
    next_free: Option<Instant>,
    /// (when, ifindex, frame), in sending order.
    frames: VecDeque<(Instant, u32, Vec<u8>)>,
}

/// The waiting announcements of every lane.
#[derive(Debug, Default)]
pub struct Pacer {
    queues: HashMap<(Lane, Family), Queue>,
}

impl Pacer {
    /// Queue `frame` (to leave from `ifindex`) on `lane`, `interval` after the lane's
    /// previous announcement of the same family; returns when it will leave.
    pub fn push(
        &mut self,
        lane: Lane,
        interval: Duration,
        ifindex: u32,
        frame: Vec<u8>,
        now: Instant,
    ) -> Instant {
        let q = self.queues.entry((lane, frame_family(&frame))).or_default();
        let at = q.next_free.map_or(now, |t| t.max(now));
        q.next_free = Some(at + interval);
        q.frames.push_back((at, ifindex, frame));
        at
    }

    /// The announcements due by `now`, (ifindex, frame), removed from their queues.
    pub fn due(&mut self, now: Instant) -> Vec<(u32, Vec<u8>)> {
        self.due_at_most(now, usize::MAX)
    }

    /// Like [`Self::due`], but at most `limit` of them (the rest stay due): the protocol
    /// thread sends a burst of tens of thousands (a take-over of 10,000 VIPs, five
    /// rounds) in slices, with its adverts and timers in between.
    pub fn due_at_most(&mut self, now: Instant, limit: usize) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            while out.len() < limit && q.frames.front().is_some_and(|f| f.0 <= now) {
                let (_, ifindex, frame) = q.frames.pop_front().unwrap();
                out.push((ifindex, frame));
            }
        }
        out
    }

    /// When the next waiting announcement is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(|q| q.frames.front().map(|f| f.0))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: [u8; 14] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
    ];
    const NA: [u8; 14] = [0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn plan() -> PacingPlan {
        PacingPlan {
            groups: vec![GroupPacing {
                ifindexes: vec![2, 3],
                garp_interval: ms(300),
                gna_interval: Duration::ZERO,
            }],
        }
    }

    #[test]
    fn interfaces_of_a_group_share_its_interval_others_keep_their_own() {
        let p = plan();
        assert_eq!(p.lane(2, Family::V4, ms(50)), (Lane::Group(0), ms(300)));
        assert_eq!(p.lane(3, Family::V4, ms(50)), (Lane::Group(0), ms(300)));
        // The group sets no gna_interval: no pacing of NAs there, whatever the instance says.
        assert_eq!(
            p.lane(3, Family::V6, ms(50)),
            (Lane::Group(0), Duration::ZERO)
        );
        assert_eq!(p.lane(4, Family::V4, ms(50)), (Lane::Interface(4), ms(50)));
    }

    #[test]
    fn a_group_paces_announcements_across_its_interfaces() {
        let p = plan();
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        let mut send = |ifindex: u32, frame: &[u8], now: Instant| {
            let (lane, interval) = p.lane(ifindex, frame_family(frame), ms(10));
            pacer.push(lane, interval, ifindex, frame.to_vec(), now)
        };
        // Two instances, one on each interface of the group: one clock.
        assert_eq!(send(2, &ARP, t0), t0);
        assert_eq!(send(3, &ARP, t0), t0 + ms(300));
        assert_eq!(send(2, &ARP, t0 + ms(100)), t0 + ms(600));
        // NAs have their own clock (here unpaced), ARPs elsewhere theirs.
        assert_eq!(send(3, &NA, t0), t0);
        assert_eq!(send(3, &NA, t0), t0);
        assert_eq!(send(4, &ARP, t0), t0);
        assert_eq!(send(4, &ARP, t0), t0 + ms(10));
        // A lane that went quiet starts again at once.
        assert_eq!(send(4, &ARP, t0 + ms(500)), t0 + ms(500));

        assert_eq!(pacer.due(t0).len(), 4);
        assert_eq!(pacer.next_due(), Some(t0 + ms(10)));
        assert_eq!(pacer.due(t0 + ms(299)).len(), 1);
        assert_eq!(pacer.due(t0 + ms(300)), vec![(3, ARP.to_vec())]);
        assert_eq!(pacer.due(t0 + ms(599)).len(), 1);
        assert_eq!(pacer.next_due(), Some(t0 + ms(600)));
        assert_eq!(pacer.due(t0 + ms(600)), vec![(2, ARP.to_vec())]);
        assert_eq!(pacer.next_due(), None);
    }

    #[test]
    fn a_large_burst_leaves_in_slices_in_order() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        for k in 0..1000u32 {
            let mut f = ARP.to_vec();
            f.extend(k.to_be_bytes());
            pacer.push(Lane::Interface(2), Duration::ZERO, 2, f, t0);
        }
        let mut seen = Vec::new();
        loop {
            let slice = pacer.due_at_most(t0, 300);
            assert!(slice.len() <= 300);
            if slice.is_empty() {
                break;
            }
            assert_eq!(
                pacer.next_due(),
                (seen.len() + slice.len() < 1000).then_some(t0)
            );
            seen.extend(slice);
        }
        let order: Vec<u32> = seen
            .iter()
            .map(|(_, f)| u32::from_be_bytes(f[14..18].try_into().unwrap()))
            .collect();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn frame_family_reads_the_ethertype() {
        assert_eq!(frame_family(&ARP), Family::V4);
        assert_eq!(frame_family(&NA), Family::V6);
    }
}
