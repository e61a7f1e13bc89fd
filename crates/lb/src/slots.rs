//! Slot tables: how a weighted set of destinations is laid out in the `numgen`/`jhash`
//! maps of the nftables backend.
//!
//! - [`round_robin`] for `rr`/`wrr` behind conntrack (NAT): a smooth weighted sequence,
//!   indexed by `numgen inc mod len`, so consecutive connections alternate exactly as
//!   IPVS' wrr would hand them out.
//! - [`consistent`] for hash schedulers and for a new flow's server under DR (a flow
//!   table keeps established flows where they are): a Maglev-style
//!   table, indexed by `jhash(...) mod len`, where each destination owns slots in
//!   proportion to its weight and removing one destination only moves the flows that were
//!   on it.

/// Smooth weighted round robin (the sequence nginx and IPVS' wrr converge to): returns
/// destination indices, one per slot; `weights[i] == 0` never appears. The period is
/// `sum(weights) / gcd`, scaled down proportionally when it would exceed `max_len`.
pub fn round_robin(weights: &[u32], max_len: usize) -> Vec<usize> {
    use std::cmp::Ordering;
    use std::collections::BinaryHeap;
    let w = scaled(weights, max_len);
    let total: u64 = w.iter().map(|&x| x as u64).sum();
    if total == 0 {
        return Vec::new();
    }
    // Equal (after scaling: 1 each): every turn is due at once, lowest index first,
    // which is just the order of the destinations — skip the heap.
    if w.iter().all(|&x| x <= 1) {
        return (0..w.len()).filter(|&i| w[i] == 1).collect();
    }
    // Destination i's k-th turn (k = 0, 1, ...) is due at virtual time (2k + 1) / (2 w_i):
    // turns spread evenly over the period, each weight in proportion. A min-heap of the
    // next due turn makes this O(total × log n) (10,000 servers in milliseconds).
    #[derive(PartialEq, Eq)]
    struct Due {
        num: u64,
        den: u64,
        index: usize,
    }
    impl Ord for Due {
        fn cmp(&self, o: &Self) -> Ordering {
            // Smallest time first (BinaryHeap is a max-heap), then lowest index.
            let a = self.num as u128 * o.den as u128;
            let b = o.num as u128 * self.den as u128;
            b.cmp(&a).then(o.index.cmp(&self.index))
        }
    }
    impl PartialOrd for Due {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    let mut heap: BinaryHeap<Due> = w
        .iter()
        .enumerate()
        .filter(|(_, &wi)| wi > 0)
        .map(|(index, &wi)| Due {
            num: 1,
            den: 2 * wi as u64,
            index,
        })
        .collect();
    let mut out = Vec::with_capacity(total as usize);
    while out.len() < total as usize {
        let mut d = heap.pop().expect("total > 0");
        out.push(d.index);
        d.num += 2;
        heap.push(d);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights divided by their gcd and, if their sum still exceeds `max_len`, scaled to fit
/// (every non-zero weight keeps at least 1).
fn scaled(weights: &[u32], max_len: usize) -> Vec<u32> {
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, w as u64));
    if g == 0 {
        return vec![0; weights.len()];
    }
    let w: Vec<u64> = weights.iter().map(|&x| x as u64 / g).collect();
    let total: u64 = w.iter().sum();
    let max = max_len.max(weights.iter().filter(|&&x| x > 0).count()) as u64;
    if total <= max {
        return w.into_iter().map(|x| x as u32).collect();
    }
    quotas(weights, max as usize, &[])
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

/// Splits `len` slots over `weights` by largest remainder; every non-zero weight gets at
/// least one slot when `len` allows.
fn quotas(weights: &[u32], len: usize, tie: &[u64]) -> Vec<usize> {
    let total: u64 = weights.iter().map(|&x| x as u64).sum();
    if total == 0 || len == 0 {
        return vec![0; weights.len()];
    }
    let live = weights.iter().filter(|&&x| x > 0).count();
    let mut q: Vec<usize> = weights.iter().map(|&x| if x > 0 { 1 } else { 0 }).collect();
    let rest = len.saturating_sub(live);
    let mut rem: Vec<(u64, u64, usize)> = Vec::new();
    let mut given = 0usize;
    for (i, &x) in weights.iter().enumerate() {
        if x == 0 {
            continue;
        }
        let share = x as u64 * rest as u64;
        q[i] += (share / total) as usize;
        given += (share / total) as usize;
        rem.push((share % total, tie.get(i).copied().unwrap_or(i as u64), i));
    }
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, i) in rem.into_iter().take(rest - given) {
        q[i] += 1;
    }
    q
}

/// Default size of a consistent table: prime, so every skip walks all slots.
pub const CONSISTENT_SIZE: usize = 1021;

/// Smallest prime table size >= `max(CONSISTENT_SIZE, 8 * destinations)`.
pub fn consistent_size(destinations: usize) -> usize {
    let mut n = CONSISTENT_SIZE.max(destinations.saturating_mul(8));
    while !is_prime(n) {
        n += 1;
    }
    n
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Maglev-style table of `size` slots (`size` prime). `dests[i] = (stable key, weight)`;
/// the key (e.g. a hash of the address and port) fixes each destination's preference
/// order so the layout does not depend on list order. Returns one index per slot, or an
/// empty table when every weight is 0.
pub fn consistent(dests: &[(u64, u32)], size: usize) -> Vec<usize> {
    assert!(is_prime(size), "consistent table size must be prime");
    let weights: Vec<u32> = dests.iter().map(|d| d.1).collect();
    let keys: Vec<u64> = dests.iter().map(|d| d.0).collect();
    let mut quota = quotas(&weights, size, &keys);
    if quota.iter().all(|&q| q == 0) {
        return Vec::new();
    }
    let prefs: Vec<(usize, usize)> = dests
        .iter()
        .map(|&(key, _)| {
            let h1 = mix(key);
            let h2 = mix(key ^ 0x9e37_79b9_7f4a_7c15);
            (
                (h1 % size as u64) as usize,
                (h2 % (size as u64 - 1)) as usize + 1,
            )
        })
        .collect();
    let mut next = vec![0usize; dests.len()];
    let mut table = vec![usize::MAX; size];
    let mut filled = 0;
    // Process destinations in key order so the result is independent of list order.
    let mut order: Vec<usize> = (0..dests.len()).collect();
    order.sort_by_key(|&i| (dests[i].0, i));
    while filled < size {
        for &i in &order {
            if quota[i] == 0 {
                continue;
            }
            let (offset, skip) = prefs[i];
            loop {
                let slot = (offset + next[i] * skip) % size;
                next[i] += 1;
                if table[slot] == usize::MAX {
                    table[slot] = i;
                    quota[i] -= 1;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                break;
            }
        }
    }
    table
}

/// splitmix64 finaliser.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable key for a destination address and port.
pub fn dest_key(addr: &std::net::IpAddr, port: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes: Vec<u8> = match addr {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    for b in bytes.iter().chain(port.to_be_bytes().iter()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(t: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &i in t {
            c[i] += 1;
        }
        c
    }

    #[test]
    fn rr_alternates_and_wrr_interleaves() {
        assert_eq!(round_robin(&[1, 1, 1], 1000), vec![0, 1, 2]);
        assert_eq!(round_robin(&[2, 2], 1000), vec![0, 1]);
        let s = round_robin(&[3, 1], 1000);
        assert_eq!(counts(&s, 2), vec![3, 1]);
        let s = round_robin(&[5, 1, 1], 1000);
        assert_eq!(s, vec![0, 0, 0, 1, 2, 0, 0]);
        // Turns interleave: a weight-3 server next to a weight-1 one never runs 4 in a row.
        let s = round_robin(&[3, 1], 1000);
        assert_eq!(s, vec![0, 0, 1, 0]);
        assert_eq!(round_robin(&[0, 4], 1000), vec![1]);
        assert!(round_robin(&[0, 0], 1000).is_empty());
    }

    #[test]
    fn rr_is_fast_for_ten_thousand_servers() {
        let mut w = vec![1u32; 10_000];
        w[17] = 3;
        let t = std::time::Instant::now();
        let s = round_robin(&w, 20_000);
        assert_eq!(s.len(), 10_002);
        assert_eq!(counts(&s, 10_000)[17], 3);
        // Capped below the number of servers: each still gets its one turn.
        let s = round_robin(&w, 4096);
        assert_eq!(s.len(), 10_000);
        assert!(counts(&s, 10_000).iter().all(|&c| c == 1));
        assert!(
            t.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn rr_scales_huge_weights_keeping_every_server() {
        let s = round_robin(&[65535, 1, 7], 100);
        assert_eq!(s.len(), 100);
        let c = counts(&s, 3);
        assert!(c[1] >= 1 && c[2] >= 1 && c[0] >= 95, "{c:?}");
    }

    #[test]
    fn consistent_honours_weights() {
        let dests: Vec<(u64, u32)> = (0..4u64)
            .map(|i| (mix(i), [1, 1, 2, 4][i as usize]))
            .collect();
        let t = consistent(&dests, 1021);
        let c = counts(&t, 4);
        assert_eq!(c.iter().sum::<usize>(), 1021);
        for (i, w) in [1, 1, 2, 4].iter().enumerate() {
            let want = 1021.0 * *w as f64 / 8.0;
            assert!((c[i] as f64 - want).abs() <= 1.0, "{c:?}");
        }
    }

    #[test]
    fn consistent_moves_only_the_removed_servers_slots() {
        let keys: Vec<u64> = (0..10u64)
            .map(|i| dest_key(&format!("192.0.2.{}", 10 + i).parse().unwrap(), 80))
            .collect();
        let all: Vec<(u64, u32)> = keys.iter().map(|&k| (k, 1)).collect();
        let before = consistent(&all, 1021);
        let mut without = all.clone();
        without[3].1 = 0;
        let after = consistent(&without, 1021);
        let moved_elsewhere = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 3 && b != a)
            .count();
        // Maglev is not perfectly minimal-disruption; a few percent churn is its bound.
        assert!(
            moved_elsewhere < 1021 / 10,
            "{moved_elsewhere} slots of live servers moved"
        );
        assert!(after.iter().all(|&i| i != 3));
    }

    #[test]
    fn consistent_is_independent_of_list_order() {
        let a = [(mix(1), 1), (mix(2), 3), (mix(3), 1)];
        let b = [a[2], a[0], a[1]];
        let ta = consistent(&a, 1021);
        let tb = consistent(&b, 1021);
        let map = [1usize, 2, 0]; // index in a -> index in b
        assert!(ta.iter().zip(&tb).all(|(x, y)| map[*x] == *y));
    }

    #[test]
    fn sizes_are_prime_and_grow_with_servers() {
        assert_eq!(consistent_size(3), 1021);
        let n = consistent_size(10_000);
        assert!(n >= 80_000 && is_prime(n));
    }
}
