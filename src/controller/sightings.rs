//! Sightings: the undeclared members an Exclusive object found on its last pass, with when
//! each was first seen. Exclusive removes a member only once a later pass sees it again at
//! least [`GAP`] after the first sighting, so a member another object has just added (after
//! recording its claim) is known to be that object's from the cache by then, instead of
//! being removed and re-added (which resets an acceptance). In memory; no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use super::plan::Pair;
use crate::api::ImageShare;

/// Time between the first sighting of an undeclared member and its removal, at least.
pub const GAP: Duration = Duration::from_secs(2);

/// First sightings per object.
#[derive(Default)]
pub struct Sightings {
    seen: Mutex<HashMap<ObjectRef<ImageShare>, BTreeMap<Pair, Instant>>>,
}

impl Sightings {
    /// The members of `key` first seen at least [`GAP`] before `now`.
    pub fn confirmed(&self, key: &ObjectRef<ImageShare>, now: Instant) -> BTreeSet<Pair> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(key)
            .into_iter()
            .flatten()
            .filter(|(_, first)| now.saturating_duration_since(**first) >= GAP)
            .map(|(pair, _)| pair.clone())
            .collect()
    }

    /// Replaces the sightings of `key` with this pass's, keeping the first-seen time of
    /// members seen before.
    pub fn record(&self, key: &ObjectRef<ImageShare>, pairs: &BTreeSet<Pair>, now: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let before = seen.remove(key).unwrap_or_default();
        if pairs.is_empty() {
            return;
        }
        let next = pairs
            .iter()
            .map(|p| (p.clone(), before.get(p).copied().unwrap_or(now)))
            .collect();
        seen.insert(key.clone(), next);
    }

    /// Forgets an object (it was deleted).
    pub fn forget(&self, key: &ObjectRef<ImageShare>) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_confirmed_only_when_seen_again_after_the_gap() {
        let book = Sightings::default();
        let key = ObjectRef::new("x").within("ns");
        let pair = ("img".to_string(), "p".to_string());
        let now = Instant::now();
        book.record(&key, &BTreeSet::from([pair.clone()]), now);
        assert!(
            book.confirmed(&key, now + Duration::from_millis(500))
                .is_empty()
        );
        book.record(
            &key,
            &BTreeSet::from([pair.clone()]),
            now + Duration::from_secs(1),
        );
        assert_eq!(
            book.confirmed(&key, now + GAP),
            BTreeSet::from([pair.clone()])
        );
        // Gone from a pass: forgotten, and a new sighting starts over.
        book.record(&key, &BTreeSet::new(), now + GAP);
        book.record(&key, &BTreeSet::from([pair]), now + GAP * 2);
        assert!(book.confirmed(&key, now + GAP * 2).is_empty());
    }
}
