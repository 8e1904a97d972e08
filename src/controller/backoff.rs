//! Timing: the exponential backoff for failed passes (kube-runtime has none built in; the
//! count lives in [`super::memory`]), honouring a server's Retry-After; resync jitter; and
//! the duration syntax of resyncPeriod. Pure.

use std::time::Duration;

/// First retry delay.
const BASE: Duration = Duration::from_secs(2);
/// Longest delay between retries.
const MAX: Duration = Duration::from_secs(300);

/// The delay for the `attempt`-th consecutive failure; `random` in [0, 1) spreads retries.
pub fn delay(attempt: u32, retry_after: Option<Duration>, random: f64) -> Duration {
    let exp = BASE.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)));
    let capped = exp.min(MAX);
    let jittered = capped.mul_f64(1.0 + 0.1 * random.clamp(0.0, 1.0));
    jittered.max(retry_after.unwrap_or_default())
}

/// A resync period stretched by up to 10% so objects do not all resync at once.
pub fn jitter(period: Duration) -> Duration {
    period.mul_f64(1.0 + 0.1 * fastrand::f64())
}

/// Parses durations like `90s`, `10m`, `1h30m` or `1.5m` (the CRD's pattern) with jiff's
/// duration parser. None if malformed, zero or negative.
pub fn parse_duration(text: &str) -> Option<Duration> {
    // jiff also reads ISO 8601 (`PT10M`) and unit-less forms the CRD does not allow.
    if !text.ends_with(['s', 'm', 'h']) || text.starts_with(['-', '+']) {
        return None;
    }
    let parsed: jiff::SignedDuration = text.parse().ok()?;
    Duration::try_from(parsed).ok().filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_durations_parse_like_the_crd_pattern() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("abc"), None);
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("-5m"), None);
        assert_eq!(parse_duration(&format!("{}h", "9".repeat(400))), None);
    }

    #[test]
    fn delay_doubles_per_failure_up_to_the_cap() {
        assert_eq!(delay(1, None, 0.0), Duration::from_secs(2));
        assert_eq!(delay(2, None, 0.0), Duration::from_secs(4));
        assert_eq!(delay(5, None, 0.0), Duration::from_secs(32));
        assert_eq!(delay(50, None, 0.0), MAX);
    }

    #[test]
    fn retry_after_from_the_server_wins_when_longer() {
        assert_eq!(
            delay(1, Some(Duration::from_secs(30)), 0.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            delay(8, Some(Duration::from_secs(30)), 0.0),
            Duration::from_secs(256)
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = jitter(Duration::from_secs(100));
        assert!(d >= Duration::from_secs(100) && d <= Duration::from_secs(110));
    }
}
