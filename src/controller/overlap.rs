//! Overlaps between ImageShares, and whom the operator trusts with them. Pure over the
//! controller's cache of ImageShares; no I/O.
//!
//! The trust model (see docs/decisions.md):
//! - Only an object with a `producer` that has resolved the image (its status lists the
//!   image; the producer must own it) protects an (image, project) pair it declares from
//!   removal by another object.
//! - A consumer-only object never protects a pair and never blocks an add.
//! - An object whose current generation has not been processed yet protects nothing; if it
//!   has a producer, removals of its projects wait until it is processed (seconds), so a
//!   member it is about to add is not removed and re-added (which resets an acceptance).
//! - Conflicts are per aspect: when two producer objects declare the same pair, the earlier
//!   one (creation time, then namespace/name) adds it; when two objects declare a status
//!   for the same pair, the earlier one sets it. The later one leaves that aspect alone and
//!   reports Conflict; the other aspect still proceeds, so nothing deadlocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;

use super::plan::Pair;
use crate::api::ImageShare;

/// What the other ImageShares claim, as seen by one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// Pairs whose add an earlier producer object owns, to its `namespace/name`.
    pub add: BTreeMap<Pair, String>,
    /// Pairs whose status an earlier object sets, to its `namespace/name`.
    pub status: BTreeMap<Pair, String>,
    /// Pairs a trusted object declares: never removed by this one.
    pub protected: BTreeSet<Pair>,
    /// Members of producer objects not processed for their current generation, as (image,
    /// project): removals of them wait. The image is known when the object names it by ID;
    /// otherwise (None) it may be any image.
    pub waiting: BTreeSet<(Option<String>, String)>,
}

impl Claims {
    /// Whether removing `pair` must wait for an object that may declare it.
    pub fn waits_for(&self, (image, project): &Pair) -> bool {
        self.waiting.contains(&(None, project.clone()))
            || self
                .waiting
                .contains(&(Some(image.clone()), project.clone()))
    }

    /// The object that owns some aspect of `pair`, if any (for Conflict reports).
    pub fn owner(&self, pair: &Pair) -> Option<&String> {
        self.add.get(pair).or_else(|| self.status.get(pair))
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

/// The claims of every object in `all` but `share` itself, as `share` must respect them.
/// Objects being deleted claim nothing (their cleanup removes their members).
pub fn claims(share: &ImageShare, all: &[Arc<ImageShare>]) -> Claims {
    let order = |s: &ImageShare| {
        (
            s.metadata.creation_timestamp.clone().map(|t| t.0),
            s.namespace().unwrap_or_default(),
            s.name_any(),
        )
    };
    let mine = order(share);
    let mut claims = Claims::default();
    for other in all {
        if other.uid() == share.uid() || other.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let producer = other.spec.producer.is_some();
        let status = other.status.as_ref();
        let processed = status.is_some_and(|s| s.observed_generation == other.metadata.generation);
        let theirs_all = super::projects::declared(other);
        if producer && !processed {
            // An image given by ID (as Glance writes it) is the only one it can resolve to.
            let image = other
                .spec
                .image
                .id
                .as_ref()
                .filter(|id| id.len() == 36)
                .map(|id| id.to_ascii_lowercase());
            claims.waiting.extend(
                theirs_all
                    .iter()
                    .map(|m| (image.clone(), m.project.clone())),
            );
        }
        // A suspended object changes nothing, so it owns no aspect (it still protects).
        let earlier = order(other) < mine && !other.spec.suspend;
        let images = status.iter().flat_map(|s| s.images.iter().map(|i| &i.id));
        for image in images {
            for theirs in &theirs_all {
                let pair = (image.clone(), theirs.project.clone());
                if producer {
                    claims.protected.insert(pair.clone());
                }
                if !earlier {
                    continue;
                }
                let Some(ours) = share
                    .spec
                    .members
                    .iter()
                    .find(|m| m.project == theirs.project)
                else {
                    continue;
                };
                if producer && share.spec.producer.is_some() {
                    claims.add.entry(pair.clone()).or_insert_with(|| key(other));
                }
                if ours.status.is_some() && theirs.status.is_some() {
                    claims.status.entry(pair).or_insert_with(|| key(other));
                }
            }
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageShareStatus, ImageStatus, MemberStatus};
    use crate::controller::fixtures::{self, SpecExt};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// How the other object in a row of the table is set up.
    #[derive(Clone, Copy, Debug)]
    struct Other {
        producer: bool,
        resolved: bool,
        processed: bool,
        earlier: bool,
        deleting: bool,
        with_status: bool,
        suspended: bool,
    }

    const TRUSTED: Other = Other {
        producer: true,
        resolved: true,
        processed: true,
        earlier: true,
        deleting: false,
        with_status: false,
        suspended: false,
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

    #[test]
    fn an_unprocessed_object_naming_its_image_by_id_holds_back_removals_on_that_image_only() {
        let id = "1C779BEC-127F-47EB-8356-140D685991DD";
        let mut spec = fixtures::spec().member("p", None);
        spec.image.id = Some(id.into());
        let unprocessed = Arc::new(object("other", 100, spec));
        let mine = object("mine", 200, fixtures::spec());
        let c = claims(&mine, &[unprocessed]);
        let pair = |image: &str| (image.to_string(), "p".to_string());
        assert!(c.waits_for(&pair(&id.to_ascii_lowercase())));
        assert!(!c.waits_for(&pair("another-image")));
    }

    fn other(o: Other) -> ImageShare {
        let spec = if o.producer {
            fixtures::spec()
        } else {
            fixtures::spec().without_producer()
        };
        let spec = if o.with_status {
            spec.member_with_consumer("p", MemberStatus::Accepted, "team-p")
        } else {
            spec.member("p", None)
        };
        let mut s = object("other", if o.earlier { 100 } else { 300 }, spec);
        s.spec.suspend = o.suspended;
        s.status = Some(ImageShareStatus {
            observed_generation: Some(if o.processed { 2 } else { 1 }),
            images: if o.resolved {
                vec![ImageStatus {
                    id: "img".into(),
                    ..ImageStatus::default()
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

    fn mine(producer: bool, with_status: bool) -> ImageShare {
        let status = with_status.then_some(MemberStatus::Accepted);
        let mut spec = fixtures::spec().member("p", status);
        if !producer {
            spec = spec.without_producer();
        }
        object("mine", 200, spec)
    }

    fn pair() -> Pair {
        ("img".to_string(), "p".to_string())
    }

    /// (case, other object, mine has producer, mine sets status,
    ///  expected: protected, add owned by other, status owned by other, waiting)
    #[test]
    fn trust_and_conflict_table() {
        let table: Vec<(&str, Other, bool, bool, [bool; 4])> = vec![
            (
                "trusted producer protects and owns the add",
                TRUSTED,
                true,
                false,
                [true, true, false, false],
            ),
            (
                "later producer protects but owns nothing",
                Other {
                    earlier: false,
                    ..TRUSTED
                },
                true,
                false,
                [true, false, false, false],
            ),
            (
                "consumer-only object never protects",
                Other {
                    producer: false,
                    with_status: true,
                    ..TRUSTED
                },
                true,
                false,
                [false, false, false, false],
            ),
            (
                "consumer-only object never blocks an add, only a status",
                Other {
                    producer: false,
                    with_status: true,
                    ..TRUSTED
                },
                true,
                true,
                [false, false, true, false],
            ),
            (
                "earlier consumer-only without status claims nothing",
                Other {
                    producer: false,
                    ..TRUSTED
                },
                true,
                true,
                [false, false, false, false],
            ),
            (
                "unresolved producer protects nothing",
                Other {
                    resolved: false,
                    processed: false,
                    ..TRUSTED
                },
                true,
                false,
                [false, false, false, true],
            ),
            (
                "resolved to nothing protects nothing and does not hold removals",
                Other {
                    resolved: false,
                    ..TRUSTED
                },
                true,
                false,
                [false, false, false, false],
            ),
            (
                "unprocessed edit of a resolved producer protects and holds removals",
                Other {
                    processed: false,
                    ..TRUSTED
                },
                true,
                false,
                [true, true, false, true],
            ),
            (
                "object being deleted claims nothing",
                Other {
                    deleting: true,
                    ..TRUSTED
                },
                true,
                false,
                [false, false, false, false],
            ),
            (
                "suspended object protects but blocks no add nor status",
                Other {
                    suspended: true,
                    with_status: true,
                    ..TRUSTED
                },
                true,
                true,
                [true, false, false, false],
            ),
            (
                "both set the status: the earlier sets it",
                Other {
                    with_status: true,
                    ..TRUSTED
                },
                true,
                true,
                [true, true, true, false],
            ),
            (
                "consumer-only mine: the producer's add is not mine to conflict with",
                TRUSTED,
                false,
                true,
                [true, false, false, false],
            ),
        ];
        for (case, o, producer, with_status, [protected, add, status, waiting]) in table {
            let me = mine(producer, with_status);
            let all = vec![Arc::new(me.clone()), Arc::new(other(o))];
            let c = claims(&me, &all);
            assert_eq!(
                c.protected.contains(&pair()),
                protected,
                "{case}: protected"
            );
            assert_eq!(c.add.contains_key(&pair()), add, "{case}: add owned");
            assert_eq!(
                c.status.contains_key(&pair()),
                status,
                "{case}: status owned"
            );
            let any_image = |i: &str| c.waits_for(&(i.to_string(), "p".to_string()));
            assert_eq!(any_image("img"), waiting, "{case}: waiting");
        }
    }

    #[test]
    fn an_object_never_claims_against_itself() {
        let me = other(TRUSTED);
        let c = claims(&me, &[Arc::new(me.clone())]);
        assert_eq!(c, Claims::default());
    }

    #[test]
    fn conflicts_name_the_earlier_object() {
        let me = mine(true, false);
        let all = vec![Arc::new(me.clone()), Arc::new(other(TRUSTED))];
        assert_eq!(
            claims(&me, &all).owner(&pair()),
            Some(&"other/other".to_string())
        );
    }
}
