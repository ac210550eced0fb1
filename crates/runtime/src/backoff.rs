//! How long a loop waits after its n-th failure in a row (a store away, NATS unreachable): the
//! job loop and the sinks share one curve, so an outage is retried alike everywhere.

use std::time::Duration;

/// Exponential backoff from 100 ms, capped at 10 s.
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(7);
    Duration::from_millis(100u64 << exponent).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(10));
    }
}
