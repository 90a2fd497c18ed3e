//! How long a reconcile that failed on a transient fault waits before it runs again.
//!
//! Exponential per object: 1 s, 2 s, 4 s ... capped at 5 minutes, so a flapping API server is
//! not hammered and a fixed one is noticed within minutes. Each delay is spread by ±25%
//! (`jitter`, drawn by the caller in `[0, 1)`), so that objects which failed together do not
//! all retry in the same instant. Only the first failure of a streak raises a Warning Event;
//! the rest are counted and logged.

use std::time::Duration;

/// The first delay.
pub const BASE: Duration = Duration::from_secs(1);
/// The longest delay, jitter included.
pub const MAX: Duration = Duration::from_secs(300);

/// The delay after the `attempts`-th failure in a row (1 for the first), with `jitter` in
/// `[0, 1)`: the nominal `BASE * 2^(attempts-1)`, capped at `MAX`, times `0.75 + 0.5 * jitter`,
/// and never above `MAX`.
pub fn delay(attempts: u32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    let nominal = BASE.saturating_mul(1 << doublings).min(MAX);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.5
    };
    nominal.mul_f64(0.75 + 0.5 * jitter).min(MAX)
}

/// Whether the `attempts`-th failure in a row is announced with a Warning Event: the first
/// of a streak only.
pub fn announces(attempts: u32) -> bool {
    attempts == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_five_minutes() {
        let cases = [
            ("first failure", 1, 1_000),
            ("second", 2, 2_000),
            ("fourth", 4, 8_000),
            ("ninth", 9, 256_000),
            ("tenth is capped", 10, 300_000),
            ("far later stays capped", 1_000, 300_000),
            ("zero attempts counts as the first", 0, 1_000),
        ];
        for (name, attempts, millis) in cases {
            assert_eq!(
                delay(attempts, 0.5),
                Duration::from_millis(millis),
                "{name}"
            );
        }
    }

    #[test]
    fn jitter_spreads_the_delay_by_a_quarter_each_way() {
        assert_eq!(delay(3, 0.0), Duration::from_millis(3_000));
        assert_eq!(delay(3, 0.999_999).as_millis(), 4_999);
        assert_eq!(delay(20, 0.999), MAX, "never above the cap");
        assert_eq!(
            delay(3, f64::NAN),
            Duration::from_secs(4),
            "a bad draw is ignored"
        );
        assert_eq!(delay(3, 7.0), Duration::from_secs(5), "clamped into range");
    }

    #[test]
    fn only_the_first_failure_of_a_streak_is_announced() {
        assert!(announces(1));
        assert!(!announces(2));
        assert!(!announces(0));
    }
}
