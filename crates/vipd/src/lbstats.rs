//! Virtual and real servers' traffic statistics: the kernel's totals, read at most every
//! `snmp_vs_stats_update_interval` / `snmp_rs_stats_update_interval`, with rates worked
//! out from the difference between two reads.

// FxHash: the keys are indices (40,000 real servers hashed several times a sync).
use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};
use vipd_lb::Counters;
use vipd_linux::status::TrafficStats;

/// keepalived's default for both intervals.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The statistics of a set of servers (keyed by `K`), refreshed every `interval`.
#[derive(Debug)]
pub struct StatsCache<K> {
    interval: Duration,
    /// When the totals were last read, and what they were.
    last: Option<(Instant, HashMap<K, Counters>)>,
    current: HashMap<K, TrafficStats>,
}

impl<K: Eq + Hash + Clone> StatsCache<K> {
    pub fn new(interval: Duration) -> StatsCache<K> {
        StatsCache {
            interval,
            last: None,
            current: HashMap::default(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the cached statistics are older than the interval (or there are none).
    pub fn due(&self, now: Instant) -> bool {
        match &self.last {
            None => true,
            Some((at, _)) => now.saturating_duration_since(*at) >= self.interval,
        }
    }

    /// Takes the totals read at `now`: rates are the growth since the previous read per
    /// second (0 on the first read, and for a total that went down: its destination was
    /// installed again).
    pub fn update(&mut self, now: Instant, totals: HashMap<K, Counters>) {
        let previous = self.last.take();
        let mut current = HashMap::with_capacity_and_hasher(totals.len(), Default::default());
        for (k, c) in &totals {
            let mut s = TrafficStats {
                conns: c.conns,
                in_packets: c.in_packets,
                in_bytes: c.in_bytes,
                out_packets: c.out_packets,
                out_bytes: c.out_bytes,
                active_conns: c.active_conns,
                inactive_conns: c.inactive_conns,
                persistent_conns: c.persistent_conns,
                ..Default::default()
            };
            if let Some((at, before)) = &previous {
                let secs = now.saturating_duration_since(*at).as_secs_f64();
                if let (Some(b), true) = (before.get(k), secs > 0.0) {
                    let rate = |new: u64, old: u64| {
                        new.checked_sub(old)
                            .map_or(0, |d| (d as f64 / secs).round() as u64)
                    };
                    s.cps = rate(c.conns, b.conns);
                    s.in_pps = rate(c.in_packets, b.in_packets);
                    s.in_bps = rate(c.in_bytes, b.in_bytes);
                    s.out_pps = rate(c.out_packets, b.out_packets);
                    s.out_bps = rate(c.out_bytes, b.out_bytes);
                }
            }
            current.insert(k.clone(), s);
        }
        self.current = current;
        self.last = Some((now, totals));
    }

    /// The cache under a reloaded configuration: every server still there (`key` maps its
    /// old key to its new one) keeps its last read and its rates, and the next read is
    /// due when it would have been (a reload does not read the kernel's counters again:
    /// at 40,000 destinations that is thousands of set dumps). A server the reload added
    /// reads zero until then, as a destination just installed counts from zero.
    ///
    /// Where `key` maps two old keys to one new key, one of their entries is kept (the
    /// balancer maps by name and by address and port: only two real servers of one
    /// virtual server at the same address and port could do that).
    pub fn carry(self, interval: Duration, key: impl Fn(&K) -> Option<K>) -> StatsCache<K> {
        // In place: most servers keep their key (a reload at 2,000 × 20 moved 40,000
        // entries of two maps into new ones, ~4 % of its CPU); only the others move.
        fn remap<K: Eq + Hash, V: Default>(
            mut m: HashMap<K, V>,
            key: &impl Fn(&K) -> Option<K>,
        ) -> HashMap<K, V> {
            let mut moved = Vec::new();
            m.retain(|k, v| match key(k) {
                Some(k2) if k2 == *k => true,
                Some(k2) => {
                    moved.push((k2, std::mem::take(v)));
                    false
                }
                None => false,
            });
            m.extend(moved);
            m
        }
        StatsCache {
            interval,
            last: self.last.map(|(at, totals)| (at, remap(totals, &key))),
            current: remap(self.current, &key),
        }
    }

    /// The statistics of `k` as of the last read (zero when it was not there).
    pub fn get(&self, k: &K) -> TrafficStats {
        self.current.get(k).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(conns: u64, in_packets: u64, in_bytes: u64) -> Counters {
        Counters {
            conns,
            in_packets,
            in_bytes,
            out_packets: 2 * in_packets,
            out_bytes: 3 * in_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn rates_from_the_growth_between_two_reads() {
        let t0 = Instant::now();
        let mut cache = StatsCache::new(Duration::from_secs(5));
        cache.update(t0, HashMap::from_iter([(1, c(10, 100, 5000))]));
        let s = cache.get(&1);
        assert_eq!((s.conns, s.in_packets, s.in_bytes), (10, 100, 5000));
        assert_eq!((s.out_packets, s.out_bytes), (200, 15000));
        assert_eq!(
            (s.cps, s.in_pps, s.in_bps),
            (0, 0, 0),
            "first read: no rate"
        );
        cache.update(
            t0 + Duration::from_secs(5),
            HashMap::from_iter([(1, c(20, 150, 10000)), (2, c(1, 1, 1))]),
        );
        let s = cache.get(&1);
        assert_eq!((s.cps, s.in_pps, s.in_bps), (2, 10, 1000));
        assert_eq!((s.out_pps, s.out_bps), (20, 3000));
        assert_eq!(cache.get(&2).in_pps, 0, "new key: no rate yet");
        assert_eq!(cache.get(&3), TrafficStats::default());
        // Totals that went down (the destination was installed again): no rate, the new
        // totals.
        cache.update(
            t0 + Duration::from_secs(10),
            HashMap::from_iter([(1, c(1, 5, 50))]),
        );
        let s = cache.get(&1);
        assert_eq!((s.conns, s.in_packets, s.cps, s.in_pps), (1, 5, 0, 0));
        // 2.5 s: rounded rates.
        cache.update(
            t0 + Duration::from_millis(12_500),
            HashMap::from_iter([(1, c(1, 10, 51))]),
        );
        assert_eq!(cache.get(&1).in_pps, 2);
        assert_eq!(cache.get(&1).in_bps, 0);
    }

    #[test]
    fn a_reload_carries_the_servers_still_there() {
        let t0 = Instant::now();
        let mut cache = StatsCache::new(Duration::from_secs(30));
        cache.update(
            t0,
            HashMap::from_iter([(1, c(10, 100, 5000)), (2, c(1, 1, 1))]),
        );
        // 1 became 7; 2 is gone.
        let mut cache = cache.carry(Duration::from_secs(10), |k| (*k == 1).then_some(7));
        assert_eq!(cache.get(&7).in_packets, 100);
        assert_eq!(cache.get(&1), TrafficStats::default());
        assert_eq!(cache.get(&2), TrafficStats::default());
        assert!(
            !cache.due(t0 + Duration::from_secs(9)),
            "not read again at once"
        );
        assert!(cache.due(t0 + Duration::from_secs(10)), "the new interval");
        // The rate runs on from the read before the reload.
        cache.update(
            t0 + Duration::from_secs(10),
            HashMap::from_iter([(7, c(20, 200, 5000))]),
        );
        assert_eq!(cache.get(&7).in_pps, 10);
        // Nothing read yet: due at once after the reload too.
        let fresh: StatsCache<u8> = StatsCache::new(Duration::from_secs(30));
        assert!(fresh.carry(Duration::from_secs(30), |k| Some(*k)).due(t0));
    }

    #[test]
    fn a_reload_that_swaps_servers_swaps_their_statistics() {
        let t0 = Instant::now();
        let mut cache = StatsCache::new(Duration::from_secs(30));
        cache.update(
            t0,
            HashMap::from_iter([(1, c(1, 1, 1)), (2, c(2, 2, 2)), (3, c(3, 3, 3))]),
        );
        // 1 and 2 trade places, 3 stays.
        let mut cache = cache.carry(Duration::from_secs(30), |k| {
            Some(match *k {
                1 => 2,
                2 => 1,
                k => k,
            })
        });
        assert_eq!(cache.get(&1).in_packets, 2);
        assert_eq!(cache.get(&2).in_packets, 1);
        assert_eq!(cache.get(&3).in_packets, 3);
        // The totals before the reload moved with them: rates run on.
        cache.update(
            t0 + Duration::from_secs(30),
            HashMap::from_iter([(1, c(2, 62, 2)), (2, c(1, 31, 1)), (3, c(3, 3, 3))]),
        );
        assert_eq!(cache.get(&1).in_pps, 2);
        assert_eq!(cache.get(&2).in_pps, 1);
        assert_eq!(cache.get(&3).in_pps, 0);
    }

    #[test]
    fn read_again_only_once_the_interval_has_passed() {
        let t0 = Instant::now();
        let mut cache: StatsCache<u8> = StatsCache::new(Duration::from_secs(30));
        assert!(cache.due(t0), "nothing read yet");
        cache.update(t0, HashMap::default());
        assert!(!cache.due(t0));
        assert!(!cache.due(t0 + Duration::from_secs(29)));
        assert!(cache.due(t0 + Duration::from_secs(30)));
        cache.update(t0 + Duration::from_secs(31), HashMap::default());
        assert!(!cache.due(t0 + Duration::from_secs(60)));
        assert!(cache.due(t0 + Duration::from_secs(61)));
    }
}
