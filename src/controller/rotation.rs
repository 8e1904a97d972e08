//! Rotation (`image.selector.keepNewest`): which builds of an image family are shared. The
//! newest N (by Glance's created_at, ties by name) are current; a build that leaves them
//! keeps its members for the grace period, counted from the pass that first saw it leave
//! (recorded in status.images, so a restart or a deleted build does not move it); then it
//! is no longer one of the images the spec resolves to, and its members leave through the
//! ledger like any other removal. A build already withdrawn is never shared again unless it
//! becomes one of the newest N. Pure.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{ImageSelector, ImageStatus, Rotation};
use crate::controller::backoff::parse_duration;
use crate::openstack::Image;

/// A build the spec resolves to, with its place in the rotation.
#[derive(Clone, Debug, PartialEq)]
pub struct Rotated {
    /// The image.
    pub image: Image,
    /// When Glance created it, if it said (and it parsed).
    pub created_at: Option<Timestamp>,
    /// Current or in grace (None without rotation).
    pub rotation: Option<Rotation>,
    /// The end of its grace period.
    pub grace_until: Option<Timestamp>,
}

/// The builds of `found` that stay shared, by image ID, given the selector, the images of
/// the previous status and `now`.
pub fn rotate(
    found: Vec<Image>,
    selector: Option<&ImageSelector>,
    previous: &[ImageStatus],
    now: Timestamp,
) -> Vec<Rotated> {
    let created = |i: &Image| {
        i.created_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    let mut builds: Vec<Rotated> = found
        .into_iter()
        .map(|image| Rotated {
            created_at: created(&image),
            image,
            rotation: None,
            grace_until: None,
        })
        .collect();
    if let Some(keep) = selector.and_then(|s| s.keep_newest) {
        let grace = selector
            .and_then(|s| s.grace_period.as_deref())
            .and_then(parse_duration)
            .unwrap_or_default();
        // Newest first; a build without a creation time counts as the oldest.
        builds.sort_by(|a, b| (b.created_at, &b.image.name).cmp(&(a.created_at, &a.image.name)));
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        for (rank, build) in builds.iter_mut().enumerate() {
            if rank < keep {
                build.rotation = Some(Rotation::Current);
                continue;
            }
            let before = previous.iter().find(|p| p.id == build.image.id);
            let until = match before {
                // Its grace began on an earlier pass.
                Some(p) if p.rotation == Some(Rotation::Grace) => {
                    p.grace_until.as_ref().map(|t| t.0)
                }
                // It was shared until now: its grace begins.
                Some(_) => now.checked_add(grace).ok(),
                // Withdrawn before, or never shared: it stays out.
                None => None,
            };
            build.rotation = Some(Rotation::Grace);
            build.grace_until = until.filter(|u| *u > now);
        }
        builds.retain(|b| b.rotation == Some(Rotation::Current) || b.grace_until.is_some());
    }
    builds.sort_by(|a, b| a.image.id.cmp(&b.image.id));
    builds
}

/// How long until the first grace period of `builds` ends, if one is running.
pub fn next_grace_end(builds: &[Rotated], now: Timestamp) -> Option<Duration> {
    builds
        .iter()
        .filter_map(|b| b.grace_until)
        .map(|u| Duration::try_from(u.duration_since(now)).unwrap_or_default())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap_or_default()
    }

    fn build(id: &str, created: i64) -> Image {
        Image {
            id: id.into(),
            name: Some(format!("golden-{id}")),
            visibility: "shared".into(),
            owner: Some("owner".into()),
            created_at: Some(at(created).to_string()),
        }
    }

    fn selector(keep: u32, grace: Option<&str>) -> ImageSelector {
        ImageSelector {
            tags: vec!["golden".into()],
            keep_newest: Some(keep),
            grace_period: grace.map(Into::into),
            ..ImageSelector::default()
        }
    }

    /// The status entries a pass would record for `builds`.
    fn recorded(builds: &[Rotated]) -> Vec<ImageStatus> {
        builds
            .iter()
            .map(|b| ImageStatus {
                id: b.image.id.clone(),
                rotation: b.rotation,
                grace_until: b.grace_until.map(Time),
                ..ImageStatus::default()
            })
            .collect()
    }

    fn ids(builds: &[Rotated]) -> Vec<(&str, Option<Rotation>)> {
        builds
            .iter()
            .map(|b| (b.image.id.as_str(), b.rotation))
            .collect()
    }

    #[test]
    fn without_keep_newest_every_match_is_shared() {
        let found = vec![build("b", 2), build("a", 1)];
        let all = rotate(found, None, &[], at(10));
        assert_eq!(ids(&all), [("a", None), ("b", None)]);
    }

    #[test]
    fn a_new_object_shares_the_newest_builds_only() {
        let found = vec![build("a", 1), build("b", 2), build("c", 3)];
        let shared = rotate(found, Some(&selector(2, Some("1h"))), &[], at(10));
        let current = Some(Rotation::Current);
        assert_eq!(ids(&shared), [("b", current), ("c", current)]);
    }

    #[test]
    fn a_displaced_build_keeps_its_members_for_the_grace_period_then_goes() {
        let rule = selector(1, Some("1h"));
        let first = rotate(vec![build("a", 1)], Some(&rule), &[], at(10));
        // A new build appears: "a" enters its grace, counted from this pass.
        let found = || vec![build("a", 1), build("b", 100)];
        let second = rotate(found(), Some(&rule), &recorded(&first), at(200));
        assert_eq!(
            ids(&second),
            [("a", Some(Rotation::Grace)), ("b", Some(Rotation::Current))]
        );
        assert_eq!(second[0].grace_until, Some(at(200 + 3600)));
        assert_eq!(
            next_grace_end(&second, at(300)),
            Some(Duration::from_secs(3500))
        );
        // Later passes keep the same end.
        let third = rotate(found(), Some(&rule), &recorded(&second), at(1000));
        assert_eq!(third[0].grace_until, Some(at(3800)));
        // Once it has passed, "a" is withdrawn, and stays withdrawn.
        let fourth = rotate(found(), Some(&rule), &recorded(&third), at(3800));
        assert_eq!(ids(&fourth), [("b", Some(Rotation::Current))]);
        let fifth = rotate(found(), Some(&rule), &recorded(&fourth), at(5000));
        assert_eq!(ids(&fifth), [("b", Some(Rotation::Current))]);
    }

    #[test]
    fn without_grace_a_displaced_build_goes_at_once() {
        let rule = selector(1, None);
        let first = rotate(vec![build("a", 1)], Some(&rule), &[], at(10));
        let found = vec![build("a", 1), build("b", 100)];
        let second = rotate(found, Some(&rule), &recorded(&first), at(200));
        assert_eq!(ids(&second), [("b", Some(Rotation::Current))]);
    }

    #[test]
    fn deleting_the_newest_promotes_the_next_and_a_deleted_build_moves_no_grace() {
        let rule = selector(1, Some("1h"));
        let previous = vec![
            ImageStatus {
                id: "a".into(),
                rotation: Some(Rotation::Grace),
                grace_until: Some(Time(at(500))),
                ..ImageStatus::default()
            },
            ImageStatus {
                id: "b".into(),
                rotation: Some(Rotation::Current),
                ..ImageStatus::default()
            },
        ];
        // "b" deleted: "a" is the newest again, current.
        let promoted = rotate(vec![build("a", 1)], Some(&rule), &previous, at(600));
        assert_eq!(ids(&promoted), [("a", Some(Rotation::Current))]);
        // "a" deleted while in grace: "b" stays current; nothing else changes.
        let kept = rotate(vec![build("b", 100)], Some(&rule), &previous, at(300));
        assert_eq!(ids(&kept), [("b", Some(Rotation::Current))]);
    }

    #[test]
    fn ties_in_creation_time_go_by_name_and_unknown_times_count_as_oldest() {
        let mut undated = build("x", 0);
        undated.created_at = None;
        let mut later_name = build("n2", 5);
        later_name.name = Some("ubuntu-2026-11-29".into());
        let mut earlier_name = build("n1", 5);
        earlier_name.name = Some("ubuntu-2026-11-22".into());
        let found = vec![undated, earlier_name, later_name];
        let shared = rotate(found, Some(&selector(1, None)), &[], at(10));
        assert_eq!(ids(&shared), [("n2", Some(Rotation::Current))]);
    }
}
