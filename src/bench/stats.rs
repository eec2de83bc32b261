//! Order statistics over latency samples (nanoseconds in, milliseconds out).

use serde_json::{json, Value};

/// The usual summary of one distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// The `q` quantile (0..=1) of sorted samples, linearly interpolated.
pub fn quantile(sorted: &[u64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0] as f64,
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let frac = pos - lo as f64;
            sorted[lo] as f64 * (1.0 - frac) + sorted[hi] as f64 * frac
        }
    }
}

impl Summary {
    /// Summarise samples in nanoseconds (sorted here).
    pub fn of(samples_ns: &[u64]) -> Summary {
        let mut s = samples_ns.to_vec();
        s.sort_unstable();
        let ms = |ns: f64| ns / 1e6;
        let mean = if s.is_empty() { f64::NAN } else { s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64 };
        Summary {
            n: s.len(),
            min: ms(quantile(&s, 0.0)),
            p50: ms(quantile(&s, 0.5)),
            p90: ms(quantile(&s, 0.9)),
            p95: ms(quantile(&s, 0.95)),
            p99: ms(quantile(&s, 0.99)),
            max: ms(quantile(&s, 1.0)),
            mean: ms(mean),
        }
    }

    pub fn to_json(self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "n": self.n, "min_ms": r(self.min), "median_ms": r(self.p50), "p90_ms": r(self.p90),
            "p95_ms": r(self.p95), "p99_ms": r(self.p99), "max_ms": r(self.max), "mean_ms": r(self.mean),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp, reason = "interpolations between integers, exact in binary")]
    fn quantiles_interpolate() {
        let s = [10, 20, 30, 40, 50];
        assert_eq!(quantile(&s, 0.5), 30.0);
        assert_eq!(quantile(&s, 0.0), 10.0);
        assert_eq!(quantile(&s, 1.0), 50.0);
        assert_eq!(quantile(&s, 0.125), 15.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn summary_in_ms() {
        let s = Summary::of(&[3_000_000, 1_000_000, 2_000_000]);
        assert_eq!((s.n, s.min, s.p50, s.max, s.mean), (3, 1.0, 2.0, 3.0, 2.0));
    }
}
