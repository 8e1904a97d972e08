//! Two writers fighting over a member's status: when someone keeps changing a managed
//! status back after the operator set it, the operator stops rewriting it every pass and
//! waits longer before each new attempt, per (object, image, project). The decisions are
//! pure ([`Contest::observe`]); the histories are kept in [`super::memory`].

use std::time::{Duration, Instant};

/// Reverts seen before the operator starts waiting between attempts.
const REVERTS_BEFORE_HOLD: u32 = 2;
/// Wait after the first held revert; doubles with each further revert.
const HOLD_BASE: Duration = Duration::from_secs(30);
/// Longest wait between attempts.
const HOLD_MAX: Duration = Duration::from_secs(3600);
/// A status seen as desired this long after the operator set it ends the fight.
const SETTLED_AFTER: Duration = Duration::from_secs(30);

/// The history of one contested pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Contest {
    /// Times the status was found changed back after the operator set it.
    pub reverts: u32,
    /// When the operator last set the status, until a revert is seen.
    pub set_at: Option<Instant>,
    /// No new attempt before this instant.
    pub hold_until: Option<Instant>,
}

/// What one observation of a managed status means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing contested: the status is as desired, or was never set by the operator.
    Free,
    /// Another writer keeps reverting it; no attempt until the hold ends.
    Held(Held),
}

/// A member whose status another client keeps changing back, as a pass reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Reverts seen so far.
    pub reverts: u32,
    /// The length of the current hold (stable across passes, unlike `left`).
    pub wait: Duration,
    /// Time left before the next attempt.
    pub left: Duration,
    /// This pass began the hold (one Event per hold).
    pub started: bool,
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
        let Some(mut c) = prev else {
            return (None, Verdict::Free);
        };
        if in_sync {
            // Right after a set (the pass that confirms it) the other writer may not have
            // acted yet: the fight is over only once the status held for a while.
            let recent = c
                .set_at
                .is_some_and(|t| now.saturating_duration_since(t) < SETTLED_AFTER);
            return (recent.then_some(c), Verdict::Free);
        }
        let mut started = false;
        if c.set_at.take().is_some() {
            c.reverts = c.reverts.saturating_add(1);
            if c.reverts >= REVERTS_BEFORE_HOLD {
                c.hold_until = Some(now + hold(c.reverts));
                started = true;
            }
        }
        let verdict = match c.hold_until {
            Some(until) if until > now => Verdict::Held(Held {
                reverts: c.reverts,
                wait: hold(c.reverts),
                left: until - now,
                started,
            }),
            _ => Verdict::Free,
        };
        (Some(c), verdict)
    }

    /// The history after the operator set the status (again) at `now`.
    pub fn set(prev: Option<Contest>, now: Instant) -> Contest {
        Contest {
            set_at: Some(now),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs rounds of (operator sets, someone reverts) and returns the last verdict.
    fn fight(rounds: u32, now: Instant) -> (Option<Contest>, Verdict) {
        let mut state = None;
        let mut verdict = Verdict::Free;
        for _ in 0..rounds {
            state = Some(Contest::set(state, now));
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
            Verdict::Held(Held {
                reverts: 2,
                wait: Duration::from_secs(30),
                left: Duration::from_secs(30),
                started: true
            })
        );
        let (state, fourth) = fight(4, now);
        assert!(
            matches!(fourth, Verdict::Held(Held { left, .. }) if left == Duration::from_secs(120))
        );
        // Seen again while held: still held, not a new hold.
        let (_, again) = Contest::observe(state, false, now + Duration::from_secs(10));
        assert!(matches!(again, Verdict::Held(Held { started: false, .. })));
        assert!(matches!(fight(40, now).1, Verdict::Held(Held { left, .. }) if left == HOLD_MAX));
    }

    #[test]
    fn the_hold_ends_and_a_status_that_stays_set_forgets_the_fight() {
        let now = Instant::now();
        let (state, _) = fight(3, now);
        let later = now + Duration::from_secs(61);
        let (state, verdict) = Contest::observe(state, false, later);
        assert_eq!(verdict, Verdict::Free, "time for a new attempt");
        let state = Some(Contest::set(state, later));
        // The pass right after the set sees it in sync: not over yet.
        let (state, verdict) = Contest::observe(state, true, later + Duration::from_secs(1));
        assert_eq!(verdict, Verdict::Free);
        assert_eq!(state.map(|c| c.reverts), Some(3));
        // Still as desired half a minute later: the fight is forgotten.
        let (state, _) = Contest::observe(state, true, later + SETTLED_AFTER);
        assert_eq!(state, None);
    }

    #[test]
    fn a_revert_after_a_confirming_pass_still_counts() {
        let now = Instant::now();
        let state = Some(Contest::set(None, now));
        let (state, _) = Contest::observe(state, true, now + Duration::from_millis(30));
        let (state, _) = Contest::observe(state, false, now + Duration::from_secs(5));
        assert_eq!(state.map(|c| c.reverts), Some(1));
    }

    #[test]
    fn a_status_never_set_by_the_operator_is_not_contested() {
        let (state, verdict) = Contest::observe(None, false, Instant::now());
        assert_eq!((state, verdict), (None, Verdict::Free));
    }
}
