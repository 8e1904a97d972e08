//! Gauges of the ImageShares this replica reconciles, computed at each scrape from the
//! controller's reflector cache (no Kubernetes request, never stale by a pass): ImageShares
//! by Ready reason and member rows by state. The cache holds every ImageShare (overlaps need
//! them); only those of this installation's shard are counted. No I/O.

use std::sync::{Arc, Mutex, PoisonError};

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::ReasonLabel;
use crate::api::{ImageShare, MemberPhase, Reason};

/// The `reason` label of ImageShares whose status has no Ready condition with a known reason
/// yet (just created, not processed).
pub const NO_REASON: &str = "Unknown";

/// Label set of the member gauge: a member row state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// A member row state ([`MemberPhase`], bounded set).
    pub state: &'static str,
}

/// Which of the cached ImageShares this replica reconciles (its shard).
pub type Handles = Box<dyn Fn(&ImageShare) -> bool + Send + Sync>;

/// Which cache the gauges count: the controller's while it runs, none otherwise (a standby
/// replica, or between two leader terms), so only the replica that reconciles counts; and
/// of that cache only the objects of its shard.
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<Slot>>);

/// The cache counted now with its shard, and the number of caches handed in so far.
#[derive(Default)]
struct Slot {
    counted: Option<(Store<ImageShare>, Handles)>,
    term: u64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Cache")
            .field("counting", &slot.counted.is_some())
            .field("term", &slot.term)
            .finish()
    }
}

impl Cache {
    /// Counts the objects of `store` that `handles` until the returned guard is dropped.
    pub fn count(&self, store: Store<ImageShare>, handles: Handles) -> Counting {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.term += 1;
        slot.counted = Some((store, handles));
        Counting {
            cache: self.clone(),
            term: slot.term,
        }
    }

    /// The cached ImageShares of the shard (none when no cache is counted).
    fn shares(&self) -> Vec<Arc<ImageShare>> {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &slot.counted {
            Some((store, handles)) => store.state_filter(|s| handles(s)),
            None => Vec::new(),
        }
    }
}

/// While alive, the gauges count the cache it was made for; dropping it (the controller
/// stopped, or lost the Lease) sets them to 0.
#[must_use = "the cache is counted only while this guard lives"]
#[derive(Debug)]
pub struct Counting {
    cache: Cache,
    term: u64,
}

impl Drop for Counting {
    fn drop(&mut self) {
        let mut slot = self.cache.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A later cache, handed in before this guard went, stays.
        if slot.term == self.term {
            slot.counted = None;
        }
    }
}

/// ImageShares by Ready reason (every reason, then [`NO_REASON`]) and member rows by state
/// (every state, from `status.memberCounts`, which counts the rows left out of
/// `status.members` too).
#[derive(Debug, PartialEq, Eq)]
pub struct Counts {
    /// (reason, ImageShares).
    pub objects: Vec<(&'static str, u64)>,
    /// (state, member rows).
    pub members: Vec<(&'static str, u64)>,
}

/// Counts `shares`. A status count under a state this version does not know is left out.
pub fn count(shares: &[Arc<ImageShare>]) -> Counts {
    let mut objects: Vec<(&'static str, u64)> = Reason::ALL
        .iter()
        .map(|r| (r.as_str(), 0))
        .chain([(NO_REASON, 0)])
        .collect();
    let mut members: Vec<(&'static str, u64)> =
        MemberPhase::ALL.iter().map(|p| (p.as_str(), 0)).collect();
    for share in shares {
        let reason = share
            .ready_condition()
            .and_then(|c| Reason::parse(&c.reason))
            .map_or(NO_REASON, Reason::as_str);
        if let Some((_, n)) = objects.iter_mut().find(|(r, _)| *r == reason) {
            *n += 1;
        }
        let Some(status) = &share.status else {
            continue;
        };
        for (state, n) in &mut members {
            *n += u64::from(status.member_counts.get(*state).copied().unwrap_or(0));
        }
    }
    Counts { objects, members }
}

/// The collector of `imageshare_imageshares{reason}` and `imageshare_members{state}`.
#[derive(Debug)]
pub struct ObjectGauges {
    /// The cache counted.
    pub cache: Cache,
}

impl Collector for ObjectGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = count(&self.cache.shares());
        let objects = Family::<ReasonLabel, Gauge>::default();
        for (reason, n) in counts.objects {
            objects
                .get_or_create(&ReasonLabel { reason })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let members = Family::<StateLabel, Gauge>::default();
        for (state, n) in counts.members {
            members
                .get_or_create(&StateLabel { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        objects.encode(encoder.encode_descriptor(
            "imageshares",
            "ImageShares this replica reconciles, by the reason of their Ready condition \
             (Unknown: no status yet)",
            None,
            objects.metric_type(),
        )?)?;
        members.encode(encoder.encode_descriptor(
            "members",
            "Member rows (image, project) of the ImageShares this replica reconciles, by state",
            None,
            members.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ImageShareStatus;
    use crate::controller::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn share(reason: Option<&str>, counts: &[(&str, u32)]) -> Arc<ImageShare> {
        let mut share = ImageShare::new("x", fixtures::spec());
        share.status = reason.map(|reason| ImageShareStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            }],
            member_counts: counts.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            ..Default::default()
        });
        Arc::new(share)
    }

    fn get(list: &[(&'static str, u64)], label: &str) -> u64 {
        list.iter()
            .find(|(l, _)| *l == label)
            .map_or(u64::MAX, |(_, n)| *n)
    }

    #[test]
    fn objects_count_by_ready_reason_and_members_by_state_over_all_rows() {
        let shares = [
            share(Some("InSync"), &[("InSync", 250)]),
            share(Some("InSync"), &[("InSync", 1)]),
            share(
                Some("AwaitingConsumer"),
                &[("InSync", 2), ("AwaitingConsumer", 3), ("Retired", 9)],
            ),
            share(None, &[]),
            share(Some("SomethingNew"), &[]),
        ];
        let counts = count(&shares);
        assert_eq!(counts.objects.len(), Reason::ALL.len() + 1);
        assert_eq!(get(&counts.objects, "InSync"), 2);
        assert_eq!(get(&counts.objects, "AwaitingConsumer"), 1);
        assert_eq!(get(&counts.objects, "TransientError"), 0);
        assert_eq!(
            get(&counts.objects, NO_REASON),
            2,
            "no status, unknown reason"
        );
        assert_eq!(counts.members.len(), MemberPhase::ALL.len());
        assert_eq!(get(&counts.members, "InSync"), 253);
        assert_eq!(get(&counts.members, "AwaitingConsumer"), 3);
        assert_eq!(get(&counts.members, "Contested"), 0);
        assert_eq!(counts.members.iter().map(|(_, n)| n).sum::<u64>(), 256);
    }

    #[test]
    fn only_the_cache_of_a_running_controller_is_counted() {
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(
            (*share(Some("InSync"), &[("InSync", 2)])).clone(),
        ));
        let cache = Cache::default();
        assert!(
            cache.shares().is_empty(),
            "nothing counted before a controller runs"
        );
        let first = cache.count(store.clone(), Box::new(|_| true));
        assert_eq!(cache.shares().len(), 1);
        let other_shard = cache.count(store.clone(), Box::new(|_| false));
        assert!(cache.shares().is_empty(), "another installation's objects");
        drop(other_shard);
        // A new term's cache handed in before the old guard went: the old guard leaves it.
        let second = cache.count(store, Box::new(|_| true));
        drop(first);
        assert_eq!(cache.shares().len(), 1);
        drop(second);
        assert!(cache.shares().is_empty(), "lost the Lease or stopped: 0");
    }
}
