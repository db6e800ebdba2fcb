//! Latency statistics: exact percentiles over every sample (nearest-rank), and a few
//! throughput helpers. Samples are milliseconds as `f64`, so sub-millisecond latencies keep
//! their precision; a run keeps at most a few million of them, which is cheap to sort.

use serde::Serialize;

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of samples sorted ascending: the
/// smallest value such that at least `p` % of the samples are at or below it. `None` for no
/// samples. p50 of 1..=100 is 50, p99 is 99, p100 is the maximum.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let n = sorted.len();
    // ceil(p/100 · n) as a 1-based rank, at least 1. Computed in integers where we can, so
    // that 0.99 · 100 lands on rank 99 and not on 100 through rounding error.
    let scaled = p * n as f64 / 100.0;
    let mut rank = scaled.ceil() as usize;
    if (scaled - scaled.round()).abs() < 1e-9 {
        rank = scaled.round() as usize;
    }
    let rank = rank.clamp(1, n);
    Some(sorted[rank - 1])
}

/// A distribution of samples, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises the samples (in any order); `None` when there are none. NaNs are ignored.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let pct = |p| percentile_sorted(&v, p).expect("not empty");
        Some(Summary {
            count: v.len(),
            min: v[0],
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            p999: pct(99.9),
            max: v[v.len() - 1],
        })
    }

    /// One line for people: `p50 1.20 ms · p99 4.00 ms · max 9.10 ms (n=1000)`.
    pub fn line(&self) -> String {
        format!(
            "p50 {} ms · p99 {} ms · max {} ms (min {}, mean {}, n={})",
            fmt_ms(self.p50),
            fmt_ms(self.p99),
            fmt_ms(self.max),
            fmt_ms(self.min),
            fmt_ms(self.mean),
            self.count
        )
    }
}

/// Milliseconds with precision that suits their size.
pub fn fmt_ms(ms: f64) -> String {
    if ms.abs() >= 100.0 {
        format!("{ms:.0}")
    } else if ms.abs() >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Events per second over an elapsed time; 0 for an empty interval.
pub fn rate(count: u64, elapsed: std::time::Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        count as f64 / s
    }
}

/// Median of a few numbers (e.g. of several runs); `None` for none. With an even count, the
/// mean of the middle two.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to_hundred() -> Vec<f64> {
        (1..=100).map(f64::from).collect()
    }

    #[test]
    fn percentiles_of_one_to_hundred() {
        let v = one_to_hundred();
        assert_eq!(percentile_sorted(&v, 50.0), Some(50.0));
        assert_eq!(percentile_sorted(&v, 99.0), Some(99.0));
        assert_eq!(percentile_sorted(&v, 90.0), Some(90.0));
        assert_eq!(percentile_sorted(&v, 100.0), Some(100.0));
        assert_eq!(percentile_sorted(&v, 1.0), Some(1.0));
        // Rank 0 does not exist: the lowest percentile is the minimum.
        assert_eq!(percentile_sorted(&v, 0.0), Some(1.0));
        // 99.9 % of 100 samples needs rank 99.9 → 100.
        assert_eq!(percentile_sorted(&v, 99.9), Some(100.0));
    }

    #[test]
    fn summary_ignores_order() {
        let mut v = one_to_hundred();
        v.reverse();
        v.swap(3, 71);
        let s = Summary::of(&v).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p90, 90.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.p999, 100.0);
        assert_eq!(s.max, 100.0);
        assert!((s.mean - 50.5).abs() < 1e-12);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(percentile_sorted(&[], 50.0), None);
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!(
            (s.count, s.min, s.p50, s.p99, s.max, s.mean),
            (1, 7.5, 7.5, 7.5, 7.5, 7.5)
        );
    }

    #[test]
    fn small_and_uneven_sets() {
        // Nearest rank on 1..=10: p50 is the 5th, p99 the 10th, p90 the 9th.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(5.0));
        assert_eq!(percentile_sorted(&v, 90.0), Some(9.0));
        assert_eq!(percentile_sorted(&v, 99.0), Some(10.0));
        // Two samples: the median rank is 1.
        assert_eq!(percentile_sorted(&[1.0, 2.0], 50.0), Some(1.0));
        // 1000 samples, heavy tail: the last 1 % decides p99 only past rank 990.
        let mut t = vec![1.0; 990];
        t.extend(std::iter::repeat_n(500.0, 10));
        let s = Summary::of(&t).unwrap();
        assert_eq!(s.p99, 1.0);
        assert_eq!(s.p999, 500.0);
        assert_eq!(s.max, 500.0);
        t.push(500.0); // 1001 samples: rank ceil(990.99) = 991 is in the tail
        assert_eq!(Summary::of(&t).unwrap().p99, 500.0);
    }

    #[test]
    fn negative_values_are_kept() {
        // Lateness can be negative (an early arrival); it must not be clipped.
        let s = Summary::of(&[-2.0, 1.0, 3.0]).unwrap();
        assert_eq!(s.min, -2.0);
        assert_eq!(s.p50, 1.0);
    }

    #[test]
    fn median_and_rate() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(rate(500, std::time::Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, std::time::Duration::ZERO), 0.0);
    }
}
