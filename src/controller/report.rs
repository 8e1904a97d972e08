//! What one pass returns ([`PassResult`]): the spec it worked on and what it observed and
//! did ([`Report`]), or the failure that stopped it. Everything after the pass derives from
//! it, each by one pure function: the status ([`super::status::build`]), the Events
//! ([`super::events::of_pass`]), the metric (the Ready reason), the requeue ([`next`]) and
//! the `plan` output ([`crate::dryrun::object_plan`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::contest::Held;
use super::ledger::Ledger;
use super::model::{Failure, MemberKey, Outcome, Step};
use super::observe::Observed;
use super::overlap::Claims;
use crate::api::{ImageShareSpec, ResolvedProject};

/// Everything one pass learned and did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// What the observe stage saw.
    pub observed: Observed,
    /// What other ImageShares claim (taken after the members were read).
    pub claims: Claims,
    /// Removals waited for another ImageShare to be processed (or a second sighting).
    pub deferred: bool,
    /// Removals held back (counted when `deferred`).
    pub waiting: usize,
    /// Members no longer declared that stay in the ledger until the object that still
    /// declares them holds them or lets go ([`super::plan::Plan::kept`]).
    pub kept: usize,
    /// Steps applied in this pass with their outcomes (empty when suspended).
    pub outcomes: Vec<(Step, Outcome)>,
    /// Managed statuses held back because another client keeps reverting them.
    pub held: BTreeMap<MemberKey, Held>,
    /// The ledger after this pass.
    pub ledger: Ledger,
    /// The projects resolved through Keystone for this pass.
    pub projects: Vec<ResolvedProject>,
}

impl Report {
    /// Whether any step changed something in Glance.
    pub fn changed_anything(&self) -> bool {
        self.outcomes.iter().any(|(_, o)| *o == Outcome::Done)
    }

    /// The first transient failure of the pass, if any (it decides the retry).
    pub fn transient_failure(&self) -> Option<&Failure> {
        self.outcomes
            .iter()
            .find_map(|(_, o)| match o {
                Outcome::Failed(f) if f.is_transient() => Some(f),
                _ => None,
            })
            .or_else(|| {
                self.observed
                    .member_failures
                    .values()
                    .find(|f| f.is_transient())
            })
    }
}

/// What a pass returns.
#[derive(Clone, Debug)]
pub struct PassResult {
    /// The spec the pass worked on: names and the project selector resolved to project IDs
    /// (the spec as written when it stopped before resolving them).
    pub spec: ImageShareSpec,
    /// What it observed and did, or the failure that stopped it before it observed anything.
    pub outcome: Result<Report, Failure>,
}

impl PassResult {
    /// The report, or the failure, by reference.
    pub fn pass(&self) -> Result<&Report, &Failure> {
        self.outcome.as_ref()
    }
}

/// How soon an object that keeps members for another object that declares them (without
/// holding them yet) looks again: that object may have let go, or taken them over.
pub const KEPT_RETRY: Duration = Duration::from_secs(30);

/// Requeue delay when removals wait for another ImageShare to be processed.
pub const DEFERRED_RETRY: Duration = Duration::from_secs(5);

/// When to come back after a pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// A passing fault: the per-object backoff decides (at least `retry_after`); when the pass
    /// also made progress, the backoff starts over.
    Backoff {
        /// The server's Retry-After.
        retry_after: Option<Duration>,
        /// Something changed in Glance despite the fault.
        progressed: bool,
    },
    /// Come back after this long.
    After(Duration),
}

/// Chooses when to come back: transient faults back off (honouring Retry-After); removals
/// waiting for another object (or a second sighting) retry soon; a held status comes back
/// when its hold ends, a build in grace when its grace ends; otherwise the (jittered) resync period. A pass whose writes Glance
/// accepted needs no confirming pass: Glance's answers are the confirmation.
pub fn next(pass: Result<&Report, &Failure>, resync: Duration) -> Next {
    let report = match pass {
        Err(f) if f.is_transient() => {
            return Next::Backoff {
                retry_after: f.retry_after,
                progressed: false,
            };
        }
        Err(_) => return Next::After(resync),
        Ok(report) => report,
    };
    if let Some(f) = report.transient_failure() {
        return Next::Backoff {
            retry_after: f.retry_after,
            progressed: report.changed_anything(),
        };
    }
    if report.deferred {
        return Next::After(DEFERRED_RETRY);
    }
    let hold = report.held.values().map(|h| h.left).min();
    let kept = (report.kept > 0).then_some(KEPT_RETRY);
    // A build's grace period ends: its members go then, not at the next resync.
    let grace = report.observed.grace_ends_in;
    let soonest = hold.into_iter().chain(kept).chain(grace).min();
    Next::After(soonest.map_or(resync, |h| h.min(resync)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemberStatus, Reason};
    use crate::controller::fixtures::image;

    const RESYNC: Duration = Duration::from_secs(600);

    fn report(outcomes: Vec<Outcome>) -> Report {
        Report {
            observed: Observed {
                images: vec![image("img", &[("a", MemberStatus::Pending)])],
                ..Observed::default()
            },
            outcomes: outcomes
                .into_iter()
                .map(|o| (Step::remove(MemberKey::new("img", "a")), o))
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn a_quiet_pass_comes_back_at_the_resync_period() {
        assert_eq!(next(Ok(&report(vec![])), RESYNC), Next::After(RESYNC));
    }

    #[test]
    fn a_pass_whose_writes_succeeded_needs_no_confirming_pass() {
        let done = report(vec![Outcome::Done]);
        assert_eq!(next(Ok(&done), RESYNC), Next::After(RESYNC));
    }

    #[test]
    fn a_transient_fault_backs_off_with_the_servers_retry_after() {
        let mut failure = Failure::transient("429");
        failure.retry_after = Some(Duration::from_secs(42));
        let mixed = report(vec![Outcome::Done, Outcome::Failed(failure.clone())]);
        assert_eq!(
            next(Ok(&mixed), RESYNC),
            Next::Backoff {
                retry_after: Some(Duration::from_secs(42)),
                progressed: true
            }
        );
        assert_eq!(
            next(Err(&failure), RESYNC),
            Next::Backoff {
                retry_after: Some(Duration::from_secs(42)),
                progressed: false
            }
        );
    }

    #[test]
    fn a_terminal_failure_waits_for_the_resync_not_a_hot_loop() {
        let failure = Failure::new(Reason::CredentialsInvalid, "refused");
        assert_eq!(next(Err(&failure), RESYNC), Next::After(RESYNC));
    }

    #[test]
    fn deferred_removals_retry_soon() {
        let mut deferred = report(vec![]);
        deferred.deferred = true;
        assert_eq!(next(Ok(&deferred), RESYNC), Next::After(DEFERRED_RETRY));
    }

    #[test]
    fn kept_members_are_looked_at_again_soon() {
        let mut kept = report(vec![]);
        kept.kept = 1;
        assert_eq!(next(Ok(&kept), RESYNC), Next::After(KEPT_RETRY));
    }

    #[test]
    fn a_build_in_grace_is_looked_at_again_when_its_grace_ends() {
        let mut rotating = report(vec![]);
        rotating.observed.grace_ends_in = Some(Duration::from_secs(90));
        assert_eq!(
            next(Ok(&rotating), RESYNC),
            Next::After(Duration::from_secs(90))
        );
    }

    #[test]
    fn a_held_status_comes_back_when_its_hold_ends() {
        let mut held = report(vec![]);
        held.held.insert(
            MemberKey::new("img", "a"),
            Held {
                reverts: 2,
                wait: Duration::from_secs(30),
                left: Duration::from_secs(30),
                started: false,
            },
        );
        assert_eq!(
            next(Ok(&held), RESYNC),
            Next::After(Duration::from_secs(30))
        );
    }
}
