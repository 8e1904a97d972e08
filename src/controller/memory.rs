//! What the operator remembers about each object between its passes, in one place with one
//! [`Memory::forget`]: the retry backoff, contested statuses, the undeclared members an
//! Exclusive object has seen, and when an unprocessed object began holding back removals.
//! In memory only: a restart starts afresh, which costs at most one more pass or wait. The
//! decisions over it are pure and live with their topic ([`super::backoff`],
//! [`super::contest`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::backoff;
use super::contest::{Contest, Verdict};
use super::model::MemberKey;
use crate::api::{ImageShare, MemberStatus};

/// Time between the first sighting of an undeclared member and its removal, at least: by
/// then a member another object has just added (after recording its claim) is known from
/// the cache as that object's, instead of being removed and re-added (which resets an
/// acceptance).
pub const SIGHTING_GAP: Duration = Duration::from_secs(2);

/// How long an unprocessed object holds back removals of the projects it declares. A pass
/// has a deadline, so an object is normally processed (successfully or not) well before.
pub const HOLD_LIMIT: Duration = Duration::from_secs(5 * 60);

/// The memory of every object, by object.
#[derive(Default)]
pub struct Memory(Mutex<HashMap<ObjectRef<ImageShare>, Recall>>);

/// What is remembered about one object.
#[derive(Default)]
struct Recall {
    /// Consecutive failed passes, and until when a server's Retry-After holds every trigger.
    failures: u32,
    /// No pass before this instant, whatever triggers it (a server's Retry-After).
    wait_until: Option<Instant>,
    /// Contest histories of its members, each for the status the spec asked for then (a new
    /// desired status starts afresh).
    contests: HashMap<MemberKey, (MemberStatus, Contest)>,
    /// Undeclared members (Exclusive) and when each was first seen.
    sightings: BTreeMap<MemberKey, Instant>,
    /// The unprocessed generation (by object UID) it was first seen at, and when.
    unprocessed: Option<(String, i64, Instant)>,
}

impl Memory {
    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectRef<ImageShare>, Recall>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(&self, key: &ObjectRef<ImageShare>, f: impl FnOnce(&mut Recall) -> T) -> T {
        f(self.lock().entry(key.clone()).or_default())
    }

    /// Forgets everything about an object (it was deleted).
    pub fn forget(&self, key: &ObjectRef<ImageShare>) {
        self.lock().remove(key);
    }

    /// Records one more failed pass of `key` and returns how long to wait
    /// ([`backoff::delay`]: doubling, at least `retry_after`). Only a server's Retry-After
    /// makes other triggers wait too; the operator's own backoff lets an event (a fixed
    /// Secret, `kubectl annotate`) through.
    pub fn failed(&self, key: &ObjectRef<ImageShare>, retry_after: Option<Duration>) -> Duration {
        self.with(key, |r| {
            r.failures = r.failures.saturating_add(1);
            let wait = backoff::delay(r.failures, retry_after, fastrand::f64());
            r.wait_until = retry_after.map(|_| Instant::now() + wait);
            wait
        })
    }

    /// Failed passes of `key` in a row so far.
    pub fn failures(&self, key: &ObjectRef<ImageShare>) -> u32 {
        self.lock().get(key).map_or(0, |r| r.failures)
    }

    /// How long `key` still waits because a server said so (Retry-After), if it does.
    pub fn waiting(&self, key: &ObjectRef<ImageShare>) -> Option<Duration> {
        let until = self.lock().get(key)?.wait_until?;
        let left = until.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// Forgets the failures of `key` (a pass succeeded or made progress).
    pub fn succeeded(&self, key: &ObjectRef<ImageShare>) {
        self.with(key, |r| {
            r.failures = 0;
            r.wait_until = None;
        });
    }

    /// Applies [`Contest::observe`] to the history of `member` of `key` for `desired`.
    pub fn observe_status(
        &self,
        key: &ObjectRef<ImageShare>,
        member: &MemberKey,
        desired: MemberStatus,
        in_sync: bool,
        now: Instant,
    ) -> Verdict {
        self.with(key, |r| {
            let prev = history(&r.contests, member, desired);
            let (next, verdict) = Contest::observe(prev, in_sync, now);
            match next {
                Some(c) => r.contests.insert(member.clone(), (desired, c)),
                None => r.contests.remove(member),
            };
            verdict
        })
    }

    /// Records that the operator set the status of `member` of `key` to `desired` at `now`.
    pub fn status_set(
        &self,
        key: &ObjectRef<ImageShare>,
        member: &MemberKey,
        desired: MemberStatus,
        now: Instant,
    ) {
        self.with(key, |r| {
            let prev = history(&r.contests, member, desired);
            r.contests
                .insert(member.clone(), (desired, Contest::set(prev, now)));
        });
    }

    /// The undeclared members of `key` first seen at least [`SIGHTING_GAP`] before `now`.
    pub fn confirmed_sightings(
        &self,
        key: &ObjectRef<ImageShare>,
        now: Instant,
    ) -> BTreeSet<MemberKey> {
        let all = self.lock();
        let seen = all.get(key).map(|r| &r.sightings);
        seen.into_iter()
            .flatten()
            .filter(|(_, first)| now.saturating_duration_since(**first) >= SIGHTING_GAP)
            .map(|(member, _)| member.clone())
            .collect()
    }

    /// Replaces the sightings of `key` with this pass's, keeping the first-seen time of
    /// members seen before.
    pub fn record_sightings(
        &self,
        key: &ObjectRef<ImageShare>,
        members: &BTreeSet<MemberKey>,
        now: Instant,
    ) {
        self.with(key, |r| {
            let before = std::mem::take(&mut r.sightings);
            r.sightings = members
                .iter()
                .map(|m| (m.clone(), before.get(m).copied().unwrap_or(now)))
                .collect();
        });
    }

    /// Whether `other`, unprocessed at its current generation, has held back removals for
    /// [`HOLD_LIMIT`] since this operator first saw that generation.
    pub fn hold_expired(&self, other: &ImageShare, now: Instant) -> bool {
        let uid = other.uid().unwrap_or_default();
        let generation = other.metadata.generation.unwrap_or(0);
        self.with(&ObjectRef::from_obj(other), |r| {
            let first = match &r.unprocessed {
                Some((u, g, at)) if *u == uid && *g == generation => *at,
                _ => {
                    r.unprocessed = Some((uid, generation, now));
                    now
                }
            };
            now.saturating_duration_since(first) >= HOLD_LIMIT
        })
    }
}

/// The stored history of `member`, if it is about the status `desired`.
fn history(
    contests: &HashMap<MemberKey, (MemberStatus, Contest)>,
    member: &MemberKey,
    desired: MemberStatus,
) -> Option<Contest> {
    contests
        .get(member)
        .filter(|(d, _)| *d == desired)
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures;

    fn key() -> ObjectRef<ImageShare> {
        ObjectRef::new("x").within("ns")
    }

    #[test]
    fn success_resets_the_backoff_and_only_retry_after_holds_other_triggers() {
        let memory = Memory::default();
        memory.failed(&key(), None);
        memory.failed(&key(), None);
        assert!(memory.failed(&key(), None) >= Duration::from_secs(8));
        assert_eq!(memory.failures(&key()), 3);
        assert_eq!(
            memory.waiting(&key()),
            None,
            "our own backoff lets events through"
        );
        memory.failed(&key(), Some(Duration::from_secs(30)));
        assert!(
            memory.waiting(&key()).is_some(),
            "the server's Retry-After holds"
        );
        memory.succeeded(&key());
        assert_eq!(memory.waiting(&key()), None);
        assert!(memory.failed(&key(), None) < Duration::from_secs(3));
    }

    #[test]
    fn a_new_desired_status_starts_the_contest_afresh() {
        let memory = Memory::default();
        let member = MemberKey::new("img", "a");
        let now = Instant::now();
        for round in 0..3 {
            let at = now + Duration::from_secs(round);
            memory.status_set(&key(), &member, MemberStatus::Accepted, at);
            memory.observe_status(&key(), &member, MemberStatus::Accepted, false, at);
        }
        let held = memory.observe_status(&key(), &member, MemberStatus::Accepted, false, now);
        assert!(matches!(held, Verdict::Held(_)));
        let fresh = memory.observe_status(&key(), &member, MemberStatus::Rejected, false, now);
        assert_eq!(
            fresh,
            Verdict::Free,
            "the spec changed: try the new status at once"
        );
    }

    #[test]
    fn a_member_is_confirmed_only_when_seen_again_after_the_gap() {
        let memory = Memory::default();
        let seen = BTreeSet::from([MemberKey::new("img", "p")]);
        let now = Instant::now();
        memory.record_sightings(&key(), &seen, now);
        let soon = now + Duration::from_millis(500);
        assert!(memory.confirmed_sightings(&key(), soon).is_empty());
        memory.record_sightings(&key(), &seen, now + Duration::from_secs(1));
        assert_eq!(memory.confirmed_sightings(&key(), now + SIGHTING_GAP), seen);
        // Gone from a pass: forgotten, and a new sighting starts over.
        memory.record_sightings(&key(), &BTreeSet::new(), now + SIGHTING_GAP);
        memory.record_sightings(&key(), &seen, now + SIGHTING_GAP * 2);
        assert!(
            memory
                .confirmed_sightings(&key(), now + SIGHTING_GAP * 2)
                .is_empty()
        );
    }

    #[test]
    fn an_unprocessed_generation_holds_for_a_bounded_time_and_an_edit_starts_over() {
        let memory = Memory::default();
        let mut other = ImageShare::new("x", fixtures::spec());
        other.metadata.namespace = Some("ns".into());
        other.metadata.uid = Some("u1".into());
        other.metadata.generation = Some(1);
        let start = Instant::now();
        assert!(!memory.hold_expired(&other, start));
        assert!(!memory.hold_expired(&other, start + HOLD_LIMIT / 2));
        assert!(memory.hold_expired(&other, start + HOLD_LIMIT));
        other.metadata.generation = Some(2);
        assert!(!memory.hold_expired(&other, start + HOLD_LIMIT));
    }

    #[test]
    fn forgetting_an_object_forgets_all_it_remembered() {
        let memory = Memory::default();
        let member = MemberKey::new("img", "p");
        let now = Instant::now();
        memory.failed(&key(), Some(Duration::from_secs(30)));
        memory.record_sightings(&key(), &BTreeSet::from([member.clone()]), now);
        memory.forget(&key());
        assert_eq!(memory.failures(&key()), 0);
        assert_eq!(memory.waiting(&key()), None);
        assert!(
            memory
                .confirmed_sightings(&key(), now + HOLD_LIMIT)
                .is_empty()
        );
    }
}
