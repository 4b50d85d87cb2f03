//! Latency samples summed up as percentiles.

use serde_json::json;

/// Percentiles of a set of latency samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Summarises samples given in nanoseconds; `None` when there are none.
    pub fn from_ns(mut samples: Vec<u64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        // Nearest-rank percentile: the smallest sample at or above the given share.
        let rank = |pct: usize| {
            let index = (samples.len() * pct).div_ceil(100).max(1) - 1;
            samples[index] as f64 / 1_000.0
        };
        Some(Latency {
            samples: samples.len(),
            p50_us: rank(50),
            p99_us: rank(99),
            max_us: *samples.last().expect("not empty, checked above") as f64 / 1_000.0,
        })
    }

    /// "p50 41.2 us, p99 180.4 us (12,345 samples)".
    pub fn describe(&self) -> String {
        format!(
            "p50 {} / p99 {} / max {} ({} samples)",
            micros(self.p50_us),
            micros(self.p99_us),
            micros(self.max_us),
            thousands(self.samples as u64)
        )
    }

    pub fn to_json(self) -> serde_json::Value {
        json!({ "samples": self.samples, "p50_us": round1(self.p50_us), "p99_us": round1(self.p99_us), "max_us": round1(self.max_us) })
    }
}

/// A duration in microseconds, switching to milliseconds when large.
pub fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else {
        format!("{us:.1} us")
    }
}

/// Rounds to one decimal, for JSON output.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// 12345678 as "12,345,678".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let l = Latency::from_ns((1..=100).map(|i| i * 1_000).collect()).unwrap();
        assert_eq!((l.samples, l.p50_us, l.p99_us, l.max_us), (100, 50.0, 99.0, 100.0));
        let one = Latency::from_ns(vec![5_000]).unwrap();
        assert_eq!((one.p50_us, one.p99_us), (5.0, 5.0));
        assert!(Latency::from_ns(Vec::new()).is_none());
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(19_900), "19,900");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(micros(41.25), "41.2 us");
        assert_eq!(micros(12_500.0), "12.5 ms");
    }
}
