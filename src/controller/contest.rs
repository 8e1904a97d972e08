//! Two writers fighting over a member's status: when someone keeps changing a managed
//! status back after the operator set it, the operator stops rewriting it every pass and
//! waits longer before each new attempt, per (object, image, project). The decisions are
//! pure ([`Contest::observe`]); the book is in memory (a restart starts afresh).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use super::plan::Pair;
use crate::api::ImageShare;

/// Reverts seen before the operator starts waiting between attempts.
const REVERTS_BEFORE_HOLD: u32 = 2;
/// Wait after the first held revert; doubles with each further revert.
const HOLD_BASE: Duration = Duration::from_secs(30);
/// Longest wait between attempts.
const HOLD_MAX: Duration = Duration::from_secs(3600);

/// The history of one contested pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Contest {
    /// Times the status was found changed back after the operator set it.
    pub reverts: u32,
    /// The operator set the status in its last attempt and has not seen it since.
    pub set_last: bool,
    /// No new attempt before this instant.
    pub hold_until: Option<Instant>,
}

/// What one observation of a managed status means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing contested: the status is as desired, or was never set by the operator.
    Free,
    /// Another writer keeps reverting it; no attempt until the hold ends. `started` is true
    /// on the observation that began this hold (for one Event per hold).
    Held {
        /// Reverts seen so far.
        reverts: u32,
        /// Time left before the next attempt.
        left: Duration,
        /// This observation began the hold.
        started: bool,
    },
}

impl Contest {
    /// Updates the history with one observation of the pair (`in_sync`: the observed status
    /// equals the desired one) at `now`; returns the new history (None: forget the pair) and
    /// the verdict.
    pub fn observe(
        prev: Option<Contest>,
        in_sync: bool,
        now: Instant,
    ) -> (Option<Contest>, Verdict) {
        let Some(mut c) = prev.filter(|_| !in_sync) else {
            return (None, Verdict::Free);
        };
        let mut started = false;
        if c.set_last {
            c.set_last = false;
            c.reverts = c.reverts.saturating_add(1);
            if c.reverts >= REVERTS_BEFORE_HOLD {
                c.hold_until = Some(now + hold(c.reverts));
                started = true;
            }
        }
        let verdict = match c.hold_until {
            Some(until) if until > now => Verdict::Held {
                reverts: c.reverts,
                left: until - now,
                started,
            },
            _ => Verdict::Free,
        };
        (Some(c), verdict)
    }

    /// The history after the operator set the status again.
    pub fn set(prev: Option<Contest>) -> Contest {
        Contest {
            set_last: true,
            hold_until: None,
            ..prev.unwrap_or_default()
        }
    }
}

/// The wait after `reverts` reverts: 30 s after the second, doubling, at most an hour.
fn hold(reverts: u32) -> Duration {
    let doublings = reverts.saturating_sub(REVERTS_BEFORE_HOLD).min(16);
    HOLD_BASE.saturating_mul(2u32.pow(doublings)).min(HOLD_MAX)
}

/// Contest histories of every object's pairs.
#[derive(Default)]
pub struct Book {
    entries: Mutex<HashMap<(ObjectRef<ImageShare>, Pair), Contest>>,
}

impl Book {
    /// Applies [`Contest::observe`] to the stored history of `pair`.
    pub fn observe(
        &self,
        key: &ObjectRef<ImageShare>,
        pair: &Pair,
        in_sync: bool,
        now: Instant,
    ) -> Verdict {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let id = (key.clone(), pair.clone());
        let (next, verdict) = Contest::observe(entries.get(&id).copied(), in_sync, now);
        match next {
            Some(c) => entries.insert(id, c),
            None => entries.remove(&id),
        };
        verdict
    }

    /// Records that the operator set the status of `pair`.
    pub fn set(&self, key: &ObjectRef<ImageShare>, pair: &Pair) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let id = (key.clone(), pair.clone());
        let next = Contest::set(entries.get(&id).copied());
        entries.insert(id, next);
    }

    /// Forgets every pair of an object (it was deleted).
    pub fn forget(&self, key: &ObjectRef<ImageShare>) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(k, _), _| k != key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs rounds of (operator sets, someone reverts) and returns the last verdict.
    fn fight(rounds: u32, now: Instant) -> (Option<Contest>, Verdict) {
        let mut state = None;
        let mut verdict = Verdict::Free;
        for _ in 0..rounds {
            state = Some(Contest::set(state));
            (state, verdict) = Contest::observe(state, false, now);
        }
        (state, verdict)
    }

    #[test]
    fn one_revert_is_simply_corrected() {
        let (_, verdict) = fight(1, Instant::now());
        assert_eq!(verdict, Verdict::Free);
    }

    #[test]
    fn the_second_revert_starts_a_hold_that_doubles_with_each_further_one() {
        let now = Instant::now();
        let (_, second) = fight(2, now);
        assert_eq!(
            second,
            Verdict::Held {
                reverts: 2,
                left: Duration::from_secs(30),
                started: true
            }
        );
        let (state, fourth) = fight(4, now);
        assert!(matches!(fourth, Verdict::Held { left, .. } if left == Duration::from_secs(120)));
        // Seen again while held: still held, not a new hold.
        let (_, again) = Contest::observe(state, false, now + Duration::from_secs(10));
        assert!(matches!(again, Verdict::Held { started: false, .. }));
        assert!(matches!(fight(40, now).1, Verdict::Held { left, .. } if left == HOLD_MAX));
    }

    #[test]
    fn the_hold_ends_and_a_status_that_stays_set_forgets_the_fight() {
        let now = Instant::now();
        let (state, _) = fight(3, now);
        let (state, later) = Contest::observe(state, false, now + Duration::from_secs(61));
        assert_eq!(later, Verdict::Free, "time for a new attempt");
        let (state, settled) = Contest::observe(Some(Contest::set(state)), true, now);
        assert_eq!((state, settled), (None, Verdict::Free));
    }

    #[test]
    fn a_status_never_set_by_the_operator_is_not_contested() {
        let (state, verdict) = Contest::observe(None, false, Instant::now());
        assert_eq!((state, verdict), (None, Verdict::Free));
    }
}
