//! The engine's timers: one deadline slot per [`Timer`], as `quinn-proto`'s
//! `TimerTable`. [`Instance::handle_timeout`](super::Instance::handle_timeout) stops
//! every expired timer *before* dispatching it, and the dispatch is an exhaustive
//! `match` over (timer, state), so a timer can never stay expired: it is handled or
//! dropped in every state, and `poll_timeout` cannot return the same past deadline
//! twice (issue 13: the shutdown hold used to outlive a fault and spin the loop).

use std::time::Instant;

/// Every deadline the engine can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// MASTER: the next advert (Adver_Timer).
    Advert,
    /// MASTER: the second gratuitous ARP / NA burst (`garp_master_delay`).
    GarpSecond,
    /// MASTER: the one-round follow-up after a burst (`GarpTiming::followup`).
    GarpFollowup,
    /// MASTER: the periodic refresh (`garp_master_refresh`).
    GarpRefresh,
    /// BACKUP: Master_Down_Timer (also Skew_Time after priority 0, and preempt_delay).
    MasterDown,
    /// After a graceful shutdown of a master: drop the addresses still held.
    Release,
}

impl Timer {
    /// Dispatch order when several expire at once: the advert first (take-over speed
    /// and `timer_expired_backup`), then the announcements, then the BACKUP and
    /// shutdown timers.
    pub const ALL: [Timer; 6] = [
        Timer::Advert,
        Timer::GarpSecond,
        Timer::GarpFollowup,
        Timer::GarpRefresh,
        Timer::MasterDown,
        Timer::Release,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    slots: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.slots[t.index()] = Some(at);
    }

    /// Set, or stop when `at` is `None`.
    pub fn set_opt(&mut self, t: Timer, at: Option<Instant>) {
        self.slots[t.index()] = at;
    }

    pub fn stop(&mut self, t: Timer) {
        self.slots[t.index()] = None;
    }

    /// Stop `t` and return its deadline if it was running.
    pub fn take(&mut self, t: Timer) -> Option<Instant> {
        self.slots[t.index()].take()
    }

    /// Stop `t` and return its deadline if it has expired at `now`.
    pub fn take_expired(&mut self, t: Timer, now: Instant) -> Option<Instant> {
        let slot = &mut self.slots[t.index()];
        slot.filter(|at| *at <= now).inspect(|_| *slot = None)
    }

    /// The earliest deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_keeps_one_slot_per_timer_and_take_expired_stops_it() {
        let t0 = Instant::now();
        let mut tt = TimerTable::default();
        assert_eq!(tt.next_timeout(), None);
        tt.set(Timer::Release, t0 + Duration::from_millis(5));
        tt.set(Timer::Advert, t0 + Duration::from_millis(9));
        assert_eq!(tt.next_timeout(), Some(t0 + Duration::from_millis(5)));
        assert_eq!(
            tt.take_expired(Timer::Advert, t0 + Duration::from_millis(6)),
            None
        );
        assert_eq!(tt.next_timeout(), Some(t0 + Duration::from_millis(5)));
        assert_eq!(
            tt.take_expired(Timer::Release, t0 + Duration::from_millis(6)),
            Some(t0 + Duration::from_millis(5))
        );
        assert_eq!(tt.next_timeout(), Some(t0 + Duration::from_millis(9)));
        // Every timer has its own slot.
        for (i, t) in Timer::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }
}
