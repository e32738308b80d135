//! Medians and latency summaries for the benchmarks.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

pub use muster_core::stats::median;

/// Latency recorder: microseconds, or nanoseconds once [`Latencies::record_ns`] is used.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>, u64);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid histogram bounds"),
            1000,
        )
    }
}

impl Latencies {
    /// Records one latency, in microseconds.
    pub fn record(&mut self, d: Duration) {
        self.1 = 1000;
        self.0.saturating_record((d.as_micros() as u64).max(1));
    }
    /// Records one latency, in nanoseconds (for sub-millisecond work).
    pub fn record_ns(&mut self, d: Duration) {
        self.1 = 1_000_000;
        self.0.saturating_record((d.as_nanos() as u64).max(1));
    }
    /// Adds another recorder's values.
    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }
    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }
    /// The quantile, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / self.1 as f64
    }
}

/// One measured figure over several runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The median.
    pub median: f64,
    /// Every run's value.
    pub runs: Vec<f64>,
}

impl Summary {
    /// Summarises runs.
    pub fn of(runs: Vec<f64>) -> Self {
        Self {
            median: median(&runs),
            runs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn latency_quantiles_come_from_the_recorded_values() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.count(), 100);
        let p50 = l.quantile_ms(0.5);
        let p99 = l.quantile_ms(0.99);
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        assert!((98.0..=100.5).contains(&p99), "p99 {p99}");
    }
}
