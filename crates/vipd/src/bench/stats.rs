//! Small order statistics over durations.

use std::time::Duration;

/// Median (mean of the two middle values for an even count).
pub fn median(v: &[Duration]) -> Option<Duration> {
    median_by(v.to_vec(), Ord::cmp, |a, b| (a + b) / 2)
}

/// Median of (signed) milliseconds.
pub fn median_ms(v: Vec<f64>) -> Option<f64> {
    median_by(v, f64::total_cmp, |a, b| (a + b) / 2.0)
}

/// Largest of (signed) milliseconds.
pub fn max_ms(v: impl Iterator<Item = f64>) -> Option<f64> {
    v.fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
}

fn median_by<T: Copy>(
    mut s: Vec<T>,
    cmp: impl FnMut(&T, &T) -> std::cmp::Ordering,
    mean: impl Fn(T, T) -> T,
) -> Option<T> {
    if s.is_empty() {
        return None;
    }
    s.sort_by(cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        mean(s[n / 2 - 1], s[n / 2])
    })
}

/// Nearest-rank percentile of a sorted slice (`p` in 0..=100).
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&ms(&[3, 1, 2])), Some(Duration::from_millis(2)));
        assert_eq!(
            median(&ms(&[4, 1, 2, 3])),
            Some(Duration::from_micros(2500))
        );
        assert_eq!(median(&[]), None);
        assert_eq!(median_ms(vec![-1.0, 4.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median_ms(vec![]), None);
        assert_eq!(max_ms([-1.0, 4.0, 2.0].into_iter()), Some(4.0));
        let s = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&s, 0.0), Some(Duration::from_millis(1)));
    }
}
