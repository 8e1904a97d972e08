//! Timing: per-object exponential backoff for transient failures (kube-runtime has none
//! built in), honouring a server's Retry-After, reset on success; resync jitter; and the
//! duration syntax of resyncPeriod. No I/O.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use crate::api::ImageShare;

/// First retry delay.
const BASE: Duration = Duration::from_secs(2);
/// Longest delay between retries.
const MAX: Duration = Duration::from_secs(300);

/// Consecutive failures per object, and until when the object waits.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<ObjectRef<ImageShare>, Failures>>,
}

/// The failure record of one object.
#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
}

impl Backoff {
    /// Records one more failure of `key` and returns how long to wait: BASE doubling per
    /// consecutive failure up to MAX, at least `retry_after`, with up to 10% jitter.
    pub fn next(&self, key: &ObjectRef<ImageShare>, retry_after: Option<Duration>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = failures.entry(key.clone()).or_insert(Failures {
            count: 0,
            until: now,
        });
        entry.count = entry.count.saturating_add(1);
        let wait = delay(entry.count, retry_after, fastrand::f64());
        // Only a server's Retry-After makes other triggers wait too; our own backoff lets an
        // event (a fixed Secret, `kubectl annotate`) through.
        entry.until = if retry_after.is_some() {
            now + wait
        } else {
            now
        };
        wait
    }

    /// Consecutive failures of `key` so far.
    pub fn count(&self, key: &ObjectRef<ImageShare>) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map_or(0, |f| f.count)
    }

    /// How long `key` still waits because the server said so (Retry-After), if it does: a
    /// pass triggered meanwhile by something other than a spec change comes back then.
    pub fn waiting(&self, key: &ObjectRef<ImageShare>) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let left = failures
            .get(key)?
            .until
            .checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// Forgets the failures of `key` after a successful pass.
    pub fn reset(&self, key: &ObjectRef<ImageShare>) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

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
    fn success_resets_the_backoff() {
        let backoff = Backoff::default();
        let key = ObjectRef::new("x").within("ns");
        backoff.next(&key, None);
        backoff.next(&key, None);
        assert!(backoff.next(&key, None) >= Duration::from_secs(8));
        assert_eq!(
            backoff.waiting(&key),
            None,
            "our own backoff lets events through"
        );
        backoff.next(&key, Some(Duration::from_secs(30)));
        assert!(
            backoff.waiting(&key).is_some(),
            "the server's Retry-After holds"
        );
        backoff.reset(&key);
        assert_eq!(backoff.waiting(&key), None);
        assert!(backoff.next(&key, None) < Duration::from_secs(3));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = jitter(Duration::from_secs(100));
        assert!(d >= Duration::from_secs(100) && d <= Duration::from_secs(110));
    }
}
