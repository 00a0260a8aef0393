//! Kiln's retry policy for transient failures: exponential backoff with jitter (AWS
//! Architecture Blog, "Exponential Backoff And Jitter", 2015). The delay is drawn uniformly from
//! the upper half of the exponential ceiling ("equal jitter") rather than from all of it ("full
//! jitter"): retries of many uploads still spread out, but no retry fires at once against a
//! dependency that just failed, and the gaps between attempts reliably grow. Kiln counts
//! attempts itself in the upload row; apalis-redis's built-in reschedule (a hard-coded 25
//! attempts, apalis#503) is never used.

use std::time::Duration;

use crate::config::WorkerSettings;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Base delay.
    pub base: Duration,
    /// Cap on any one delay.
    pub cap: Duration,
}

impl RetryPolicy {
    /// From `worker.max_attempts`, `worker.retry_base_delay_ms` and `worker.retry_max_delay_ms`.
    pub fn from_settings(w: &WorkerSettings) -> Self {
        Self {
            max_attempts: w.max_attempts,
            base: Duration::from_millis(w.retry_base_delay_ms),
            cap: Duration::from_millis(w.retry_max_delay_ms),
        }
    }

    /// Whether a transient failure of attempt `attempt` (1-based) may be retried.
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The ceiling of the delay after attempt `attempt` (1-based): `min(cap, base × 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay after attempt `attempt`: uniform in `ceiling/2 ..= ceiling`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_delays_stay_under_them() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        };
        let ceilings: Vec<u64> = (1..=6).map(|a| p.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 10, 10]);
        for a in 1..=6 {
            for _ in 0..100 {
                let d = p.delay(a);
                assert!(d <= p.ceiling(a) && d >= p.ceiling(a) / 2, "{d:?}");
            }
        }
        assert!(p.may_retry(4));
        assert!(!p.may_retry(5));
    }
}
