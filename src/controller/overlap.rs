//! Overlaps between ImageShares, and whom the operator trusts with them. Pure over the
//! controller's cache of ImageShares; no I/O.
//!
//! The trust model (DESIGN.md "Ownership and revocation", docs/tenancy.md):
//! - Claims count only between objects on the same *cloud*: the same Keystone and the same
//!   Glance endpoint (`status.cloud`, written by the operator from the session a pass used).
//!   An object whose cloud is unknown claims nothing (but may hold back removals, below).
//! - Only an object with a `producer` that has resolved the image (its status lists it; the
//!   producer must own it) protects an (image, project) pair it declares from removal by
//!   another object. A consumer-only object never protects a pair and never blocks an add.
//! - A pair leaves an object's ledger without a removal only when another object holds it
//!   in *its own* ledger and can revoke it (a producer, neither suspended nor stalled). A
//!   protector that never granted it (suspended, failing, not yet processed) defers the
//!   removal; the remover keeps the pair in its ledger.
//! - A producer object that has not processed its current spec yet holds back removals of
//!   the projects it declares on its cloud (or any cloud, while its cloud is unknown), for
//!   [`super::memory::HOLD_LIMIT`] at most.
//! - Objects that want the same thing agree: the earlier one (creation time, then
//!   namespace/name) makes the add and sets the status, the later ones report InSync. Only a
//!   contradiction is a Conflict: a different status for the same member (on the later
//!   object), or an Exclusive object that would remove what another object declares.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;

use super::ledger::Ledger;
use super::model::{ImageId, MemberKey, ProjectId};
use crate::api::{ImageShare, ImageShareStatus, MemberStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Another object that declares a pair, as one object must respect it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declarer {
    /// Its `namespace/name`.
    pub key: String,
    /// It has a producer (and resolved the image as its owner): it protects the pair.
    pub producer: bool,
    /// The status it sets, if it manages one.
    pub status: Option<MemberStatus>,
    /// It was created before the object looking at it (it makes the writes both want).
    pub earlier: bool,
    /// It changes things: not suspended, and not stalled on a failure that needs a person
    /// (its credentials refused, its image gone...).
    pub active: bool,
    /// It holds the pair in its own ledger and can revoke it (active, with a producer): it
    /// takes over the duty to revoke.
    pub holds: bool,
}

/// What the other ImageShares claim, as seen by one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// Per pair, the other objects on the same cloud that declare it, earliest first.
    pub declared: BTreeMap<MemberKey, Vec<Declarer>>,
    /// Members of producer objects not processed for their current generation, as (image,
    /// project): removals of them wait. The image is known when the object names it by ID;
    /// otherwise (None) it may be any image.
    pub waiting: BTreeSet<(Option<ImageId>, ProjectId)>,
}

impl Claims {
    /// The other objects that declare `pair`.
    pub fn declarers(&self, pair: &MemberKey) -> &[Declarer] {
        self.declared.get(pair).map_or(&[], Vec::as_slice)
    }

    /// The first object that protects `pair` from removal by this one.
    pub fn protector(&self, pair: &MemberKey) -> Option<&Declarer> {
        self.declarers(pair).iter().find(|d| d.producer)
    }

    /// Whether another object holds `pair` in its own ledger and will revoke it.
    pub fn held_elsewhere(&self, pair: &MemberKey) -> bool {
        self.declarers(pair).iter().any(|d| d.holds)
    }

    /// The earlier object that adds `pair` (this object then leaves the add to it).
    pub fn adder(&self, pair: &MemberKey) -> Option<&Declarer> {
        self.declarers(pair)
            .iter()
            .find(|d| d.producer && d.earlier && d.active)
    }

    /// The earlier object that sets the status of `pair`, with the status it sets.
    pub fn status_setter(&self, pair: &MemberKey) -> Option<(&Declarer, MemberStatus)> {
        self.declarers(pair)
            .iter()
            .filter(|d| d.earlier && d.active)
            .find_map(|d| d.status.map(|s| (d, s)))
    }

    /// Whether removing `pair` must wait for an object that may declare it.
    pub fn waits_for(&self, key: &MemberKey) -> bool {
        let project = key.project.clone();
        self.waiting.contains(&(None, project.clone()))
            || self.waiting.contains(&(Some(key.image.clone()), project))
    }

    /// The other objects declaring `pair`, for messages (at most three named).
    pub fn names(&self, pair: &MemberKey) -> Option<String> {
        let all = self.declarers(pair);
        let mut names: Vec<&str> = all.iter().take(3).map(|d| d.key.as_str()).collect();
        if all.is_empty() {
            return None;
        }
        let more = all.len().saturating_sub(names.len());
        let more = (more > 0).then(|| format!("{more} more"));
        names.extend(more.as_deref());
        Some(names.join(", "))
    }
}

/// `namespace/name` of an object.
pub fn key(share: &ImageShare) -> String {
    format!(
        "{}/{}",
        share.namespace().unwrap_or_default(),
        share.name_any()
    )
}

/// The cloud an object's status says it resolved an image of `region` on (None: the
/// credential's own region).
fn cloud<'a>(status: &'a ImageShareStatus, region: Option<&str>) -> Option<&'a str> {
    match region {
        Some(region) => status.region_clouds.get(region).map(String::as_str),
        None => status.cloud.as_deref(),
    }
}

/// The claims of every object in `all` but `share` itself, as `share` must respect them,
/// `share` being on the clouds `mine` (one per region, from this pass's sessions). An
/// image's claims count when the other object resolved it on one of them (image IDs are
/// unique per Glance). Objects being deleted
/// claim nothing (their cleanup removes their members). `hold_expired` says whether an
/// unprocessed object has held back removals for long enough ([`super::memory::Memory::hold_expired`]).
pub fn claims(
    share: &ImageShare,
    mine: &BTreeSet<&str>,
    all: &[Arc<ImageShare>],
    hold_expired: &dyn Fn(&ImageShare) -> bool,
) -> Claims {
    let order = |s: &ImageShare| {
        (
            s.metadata.creation_timestamp.clone().map(|t| t.0),
            s.namespace().unwrap_or_default(),
            s.name_any(),
        )
    };
    let me = order(share);
    let mut claims = Claims::default();
    // In creation order, so each pair's declarers come earliest first.
    let mut others: Vec<&Arc<ImageShare>> = all.iter().collect();
    others.sort_by_cached_key(|s| order(s));
    for other in others {
        if other.uid() == share.uid() || other.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let status = other.status.as_ref();
        let theirs: BTreeSet<&str> = status.map_or_else(BTreeSet::new, |s| {
            s.cloud
                .iter()
                .chain(s.region_clouds.values())
                .map(String::as_str)
                .collect()
        });
        let same_cloud = !theirs.is_disjoint(mine);
        let producer = other.spec.producer.is_some();
        let processed = status.is_some_and(|s| s.observed_generation == other.metadata.generation);
        let resolved = status.is_some_and(|s| !s.images.is_empty());
        let declared = super::projects::declared(other);
        let unsure = !processed || (theirs.is_empty() && resolved);
        if producer && unsure && (theirs.is_empty() || same_cloud) && !hold_expired(other) {
            // An image given by ID is the only one it can resolve to.
            let image = other
                .spec
                .image
                .id
                .as_deref()
                .map(|id| ImageId::from(crate::api::canonical_image_id(id)));
            claims.waiting.extend(
                declared
                    .iter()
                    .map(|m| (image.clone(), ProjectId::from(&m.project))),
            );
        }
        if !same_cloud {
            continue;
        }
        let ledger = Ledger::from_entries(status.map_or(&[], |s| &s.ledger));
        // Stalled on a failure that needs a person (not a conflict of its own): it cannot
        // make writes now, so it neither makes them for others nor takes over a removal.
        let stalled = status.is_some_and(|s| {
            let has = |type_: &str, field: &dyn Fn(&Condition) -> bool| {
                s.conditions.iter().any(|c| c.type_ == type_ && field(c))
            };
            has("Stalled", &|c| c.status == "True") && !has("Ready", &|c| c.reason == "Conflict")
        });
        let active = !other.spec.suspend && !stalled;
        let revokes = producer && active;
        let images = status
            .iter()
            .flat_map(|s| s.images.iter().map(move |i| (s, i)));
        for (status, image) in images {
            let on_mine = cloud(status, image.region.as_deref()).is_some_and(|c| mine.contains(c));
            if !on_mine {
                continue;
            }
            for member in &declared {
                let pair = MemberKey::new(&image.id, &member.project);
                let declarer = Declarer {
                    key: key(other),
                    producer,
                    status: member.status,
                    earlier: order(other) < me,
                    active,
                    holds: revokes && ledger.contains(&pair),
                };
                claims.declared.entry(pair).or_default().push(declarer);
            }
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageShareStatus, ImageStatus, LedgerEntry};
    use crate::controller::fixtures::{self, SpecExt};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const CLOUD: &str = "https://keystone.example/v3 https://glance.example";

    /// How the other object in a row of the table is set up.
    #[derive(Clone, Copy, Debug)]
    struct Other {
        producer: bool,
        resolved: bool,
        processed: bool,
        earlier: bool,
        deleting: bool,
        status: Option<MemberStatus>,
        suspended: bool,
        in_ledger: bool,
        cloud: Option<&'static str>,
        stalled: bool,
        orphan: bool,
    }

    const TRUSTED: Other = Other {
        producer: true,
        resolved: true,
        processed: true,
        earlier: true,
        deleting: false,
        status: None,
        suspended: false,
        in_ledger: true,
        cloud: Some(CLOUD),
        stalled: false,
        orphan: false,
    };

    fn object(name: &str, created: i64, spec: crate::api::ImageShareSpec) -> ImageShare {
        let mut s = ImageShare::new(name, spec);
        s.metadata.namespace = Some(name.into());
        s.metadata.uid = Some(name.into());
        s.metadata.generation = Some(2);
        s.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or_default(),
        ));
        s
    }

    fn other(o: Other) -> ImageShare {
        let spec = if o.producer {
            fixtures::spec()
        } else {
            fixtures::spec().without_producer()
        };
        let spec = match o.status {
            Some(status) => spec.member_with_consumer("p", status, "team-p"),
            None => spec.member("p", None),
        };
        let mut s = object("other", if o.earlier { 100 } else { 300 }, spec);
        s.spec.suspend = o.suspended;
        if o.orphan {
            s.spec.deletion_policy = crate::api::DeletionPolicy::Orphan;
        }
        s.status = Some(ImageShareStatus {
            observed_generation: Some(if o.processed { 2 } else { 1 }),
            cloud: o.cloud.map(str::to_string),
            images: if o.resolved {
                vec![ImageStatus {
                    id: "img".into(),
                    ..ImageStatus::default()
                }]
            } else {
                Vec::new()
            },
            ledger: if o.in_ledger && o.producer {
                vec![LedgerEntry {
                    region: None,
                    images: vec!["img".into()],
                    projects: vec!["p".into()],
                }]
            } else {
                Vec::new()
            },
            conditions: if o.stalled {
                vec![Condition {
                    type_: "Stalled".into(),
                    status: "True".into(),
                    reason: "CredentialsInvalid".into(),
                    message: String::new(),
                    observed_generation: Some(2),
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                }]
            } else {
                Vec::new()
            },
            ..ImageShareStatus::default()
        });
        if o.deleting {
            s.metadata.deletion_timestamp = s.metadata.creation_timestamp.clone();
        }
        s
    }

    fn mine() -> ImageShare {
        object("mine", 200, fixtures::spec().member("p", None))
    }

    fn pair() -> MemberKey {
        MemberKey::new("img", "p")
    }

    fn never_expired(_: &ImageShare) -> bool {
        false
    }

    /// What `mine` must respect about pair (img, p): [protected, handed over when it lets
    /// go, the add is the other's, the status is the other's, removals wait].
    fn verdict(o: Other) -> [bool; 5] {
        let me = mine();
        let all = vec![Arc::new(me.clone()), Arc::new(other(o))];
        let c = claims(&me, &BTreeSet::from([CLOUD]), &all, &never_expired);
        [
            c.protector(&pair()).is_some(),
            c.held_elsewhere(&pair()),
            c.adder(&pair()).is_some(),
            c.status_setter(&pair()).is_some(),
            c.waits_for(&pair()),
        ]
    }

    #[test]
    fn trust_and_overlap_table() {
        let accepted = Some(MemberStatus::Accepted);
        let table: Vec<(&str, Other, [bool; 5])> = vec![
            (
                "trusted producer: protects, takes over, adds",
                TRUSTED,
                [true, true, true, false, false],
            ),
            (
                "later producer protects and takes over but leaves the add to this one",
                Other {
                    earlier: false,
                    ..TRUSTED
                },
                [true, true, false, false, false],
            ),
            (
                "another cloud claims nothing (a tenant's own endpoint)",
                Other {
                    cloud: Some("https://keystone.example/v3 http://127.0.0.1:9999"),
                    ..TRUSTED
                },
                [false, false, false, false, false],
            ),
            (
                "a processed object of unknown cloud claims nothing",
                Other {
                    cloud: None,
                    resolved: false,
                    ..TRUSTED
                },
                [false, false, false, false, false],
            ),
            (
                "consumer-only object never protects nor adds, only sets its status",
                Other {
                    producer: false,
                    status: accepted,
                    ..TRUSTED
                },
                [false, false, false, true, false],
            ),
            (
                "suspended producer protects but never takes over, adds nor sets",
                Other {
                    suspended: true,
                    status: accepted,
                    ..TRUSTED
                },
                [true, false, false, false, false],
            ),
            (
                "stalled producer (credentials refused) protects, neither takes over nor writes",
                Other {
                    stalled: true,
                    status: accepted,
                    ..TRUSTED
                },
                [true, false, false, false, false],
            ),
            (
                "an Orphan producer that holds the pair takes it over too",
                Other {
                    orphan: true,
                    ..TRUSTED
                },
                [true, true, true, false, false],
            ),
            (
                "producer that has not recorded the pair protects without taking over",
                Other {
                    in_ledger: false,
                    ..TRUSTED
                },
                [true, false, true, false, false],
            ),
            (
                "unresolved new producer holds back removals only",
                Other {
                    resolved: false,
                    processed: false,
                    cloud: None,
                    ..TRUSTED
                },
                [false, false, false, false, true],
            ),
            (
                "unprocessed producer on another cloud holds nothing back",
                Other {
                    processed: false,
                    cloud: Some("https://other/v3 https://g"),
                    ..TRUSTED
                },
                [false, false, false, false, false],
            ),
            (
                "unprocessed edit of a resolved producer protects and holds removals",
                Other {
                    processed: false,
                    ..TRUSTED
                },
                [true, true, true, false, true],
            ),
            (
                "a status from before clouds were recorded holds removals until its next pass",
                Other {
                    cloud: None,
                    ..TRUSTED
                },
                [false, false, false, false, true],
            ),
            (
                "object being deleted claims nothing",
                Other {
                    deleting: true,
                    ..TRUSTED
                },
                [false, false, false, false, false],
            ),
            (
                "both manage the status: the earlier sets it",
                Other {
                    status: accepted,
                    ..TRUSTED
                },
                [true, true, true, true, false],
            ),
        ];
        for (case, o, expected) in table {
            assert_eq!(verdict(o), expected, "{case}");
        }
    }

    #[test]
    fn an_unprocessed_object_naming_its_image_by_id_holds_back_removals_on_that_image_only() {
        let id = "1C779BEC127F47EB8356140D685991DD";
        let mut spec = fixtures::spec().member("p", None);
        spec.image.id = Some(id.into());
        let unprocessed = Arc::new(object("other", 100, spec));
        let c = claims(
            &mine(),
            &BTreeSet::from([CLOUD]),
            &[unprocessed],
            &never_expired,
        );
        let pair = |image: &str| MemberKey::new(image, "p");
        assert!(c.waits_for(&pair("1c779bec-127f-47eb-8356-140d685991dd")));
        assert!(!c.waits_for(&pair("another-image")));
    }

    #[test]
    fn an_unprocessed_object_holds_back_removals_for_a_bounded_time() {
        let o = Other {
            resolved: false,
            processed: false,
            cloud: None,
            ..TRUSTED
        };
        let all = vec![Arc::new(other(o))];
        let memory = crate::controller::memory::Memory::default();
        let start = std::time::Instant::now();
        let at = |t| {
            claims(&mine(), &BTreeSet::from([CLOUD]), &all, &|s| {
                memory.hold_expired(s, t)
            })
        };
        assert!(at(start).waits_for(&pair()));
        assert!(at(start + crate::controller::memory::HOLD_LIMIT / 2).waits_for(&pair()));
        assert!(
            !at(start + crate::controller::memory::HOLD_LIMIT).waits_for(&pair()),
            "the hold ends"
        );
    }

    #[test]
    fn a_regional_claim_counts_only_on_the_cloud_of_its_region() {
        const TWO: &str = "https://keystone.example/v3 https://glance-two.example";
        let mut regional = other(TRUSTED);
        let status = regional.status.as_mut().map(|s| {
            s.cloud = None;
            s.region_clouds = [("RegionTwo".to_string(), TWO.to_string())].into();
            s.images[0].region = Some("RegionTwo".into());
        });
        assert!(status.is_some());
        let all = [Arc::new(regional)];
        let on = |clouds: &[&str]| {
            let clouds: BTreeSet<&str> = clouds.iter().copied().collect();
            claims(&mine(), &clouds, &all, &never_expired)
                .protector(&pair())
                .is_some()
        };
        assert!(on(&[TWO]), "same Glance as RegionTwo's");
        assert!(on(&[CLOUD, TWO]), "one of this object's regions");
        assert!(
            !on(&[CLOUD]),
            "another Glance: the image ID means nothing there"
        );
    }

    #[test]
    fn an_object_never_claims_against_itself() {
        let me = other(TRUSTED);
        let c = claims(
            &me,
            &BTreeSet::from([CLOUD]),
            &[Arc::new(me.clone())],
            &never_expired,
        );
        assert_eq!(c, Claims::default());
    }

    #[test]
    fn declarers_come_earliest_first_and_are_named_in_messages() {
        let late = Arc::new(object("late", 300, fixtures::spec().member("p", None)));
        let mut early = other(TRUSTED);
        early.metadata.uid = Some("early".into());
        early.metadata.name = Some("early".into());
        early.metadata.namespace = Some("early".into());
        let mut late_obj = (*late).clone();
        late_obj.status = early.status.clone();
        let all = vec![Arc::new(late_obj), Arc::new(early)];
        let c = claims(&mine(), &BTreeSet::from([CLOUD]), &all, &never_expired);
        let keys: Vec<&str> = c
            .declarers(&pair())
            .iter()
            .map(|d| d.key.as_str())
            .collect();
        assert_eq!(keys, ["early/early", "late/late"]);
        assert_eq!(
            c.adder(&pair()).map(|d| d.key.as_str()),
            Some("early/early")
        );
        assert_eq!(c.names(&pair()).as_deref(), Some("early/early, late/late"));
    }
}
