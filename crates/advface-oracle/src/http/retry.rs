//! When and how long to wait before asking a remote black box again.

use std::time::Duration;

/// Exponential backoff: try up to `tries` times, waiting `initial_delay`, then twice that,
/// and so on, never more than `max_delay` between two tries.
///
/// Only failures that may pass are retried (connection errors, HTTP 5xx); a refusal
/// (HTTP 4xx) is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (0 is taken as 1). Default 5.
    pub tries: u32,
    /// Wait before the second try. Default 100 ms.
    pub initial_delay: Duration,
    /// Longest wait between two tries. Default 5 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 tries, waits of 100, 200, 400 and 800 ms: a restarting local server gets 1.5 s.
    fn default() -> Self {
        Self {
            tries: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retry: one try.
    pub fn none() -> Self {
        Self {
            tries: 1,
            ..Self::default()
        }
    }

    /// Tries in all (at least 1).
    pub fn total_tries(&self) -> u32 {
        self.tries.max(1)
    }

    /// Wait after failed try number `failed` (0-based): `initial_delay * 2^failed`, capped
    /// at `max_delay`.
    pub fn delay(&self, failed: u32) -> Duration {
        let factor = 1u32.checked_shl(failed.min(31)).unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (0..8).map(|i| p.delay(i).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(p.delay(100), Duration::from_secs(5));
        assert_eq!(RetryPolicy { tries: 0, ..p }.total_tries(), 1);
    }
}
