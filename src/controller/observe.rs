//! Observe stage (I/O): resolve the image(s) as the producer and read their current members
//! (consumer-only: each declared member's own row as that consumer). Produces an
//! [`Observed`] for the planner, or the [`Failure`] that stops the pass.

use std::collections::BTreeMap;

use super::model::{Failure, ImageId, ObservedImage, ProjectId, Visibility};
use super::ports::{Connect, Glance, Keystone};
use super::rotation::{Rotated, next_grace_end, rotate};
use crate::api::{CredentialsRef, ImageRef, ImageShare, ImageStatus, Reason, canonical_image_id};
use crate::openstack::{self, Image, ImageQuery};
use k8s_openapi::jiff::Timestamp;

/// What one pass saw in Glance.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The cloud of each region the pass worked on (None: the credential's own region):
    /// its Keystone URL and Glance endpoint ([`Glance::cloud`]).
    pub clouds: BTreeMap<Option<String>, String>,
    /// Regions (of spec.regions) that could not be observed, with why: nothing is changed
    /// in them this pass.
    pub region_failures: BTreeMap<String, Failure>,
    /// The images with their members (with a producer: every image spec.image resolves to).
    pub images: Vec<ObservedImage>,
    /// With a producer: why spec.image resolved to no image at all. That is an observation,
    /// not a failed pass: the members recorded on images no longer named are still removed.
    pub missing: Option<Failure>,
    /// Per-project failures not tied to one step (e.g. a consumer's Secret is missing).
    pub member_failures: BTreeMap<ProjectId, Failure>,
    /// With rotation: how soon the first grace period of a build ends.
    pub grace_ends_in: Option<std::time::Duration>,
}

/// What one region showed.
struct RegionSeen {
    region: Option<String>,
    cloud: String,
    images: Vec<ObservedImage>,
    missing: Option<Failure>,
    grace_ends_in: Option<std::time::Duration>,
}

impl Observed {
    /// Adds what one region showed.
    fn add(&mut self, seen: RegionSeen) {
        self.clouds.insert(seen.region, seen.cloud);
        self.images.extend(seen.images);
        self.missing = self.missing.take().or(seen.missing);
        self.grace_ends_in = self
            .grace_ends_in
            .into_iter()
            .chain(seen.grace_ends_in)
            .min();
    }

    /// The cloud of the credential's own region (no spec.regions).
    pub fn cloud(&self) -> Option<&str> {
        self.clouds.get(&None).map(String::as_str)
    }

    /// The clouds of the regions of spec.regions.
    pub fn region_clouds(&self) -> BTreeMap<String, String> {
        let regional = self.clouds.iter();
        regional
            .filter_map(|(r, c)| Some((r.clone()?, c.clone())))
            .collect()
    }
}

/// Resolves the image(s) in one region as the producer and reads their members.
async fn in_region<C: Connect>(
    share: &ImageShare,
    sessions: &mut C,
    producer: &CredentialsRef,
    region: Option<&str>,
) -> Result<RegionSeen, Failure> {
    let session = sessions.session(producer, region).await?;
    let mut seen = RegionSeen {
        region: region.map(String::from),
        cloud: session.cloud().await?,
        images: Vec::new(),
        missing: None,
        grace_ends_in: None,
    };
    let in_region = |message: String| match region {
        Some(region) => format!("region {region}: {message}"),
        None => message,
    };
    match resolve(&*session, &share.spec.image).await {
        Ok(Resolved::Images(found)) => {
            let now = Timestamp::now();
            let previous: Vec<ImageStatus> = share
                .status
                .iter()
                .flat_map(|s| &s.images)
                .filter(|i| i.region.as_deref() == region)
                .cloned()
                .collect();
            let builds = rotate(found, share.spec.image.selector.as_ref(), &previous, now);
            seen.grace_ends_in = next_grace_end(&builds, now);
            for build in builds {
                let mut image = with_members(&*session, build).await?;
                image.region = seen.region.clone();
                seen.images.push(image);
            }
        }
        Ok(Resolved::Missing(mut missing)) => {
            missing.message = in_region(missing.message);
            seen.missing = Some(missing);
        }
        Err(mut failure) => {
            failure.message = in_region(failure.message);
            return Err(failure);
        }
    }
    Ok(seen)
}

/// What spec.image resolved to.
enum Resolved {
    /// The images it names.
    Images(Vec<Image>),
    /// No image matches (an answer, not a fault): why.
    Missing(Failure),
}

/// Observes Glance for `share`. With a producer: resolve the image(s) and list members.
/// Without (consumer-only): read each declared member's own row as that consumer.
pub async fn observe<C: Connect>(
    share: &ImageShare,
    sessions: &mut C,
) -> Result<Observed, Failure> {
    let spec = &share.spec;
    let mut report = Observed::default();
    match &spec.producer {
        Some(producer) => {
            let regions: Vec<Option<&str>> = match spec.regions.as_deref() {
                Some(regions) if !regions.is_empty() => {
                    regions.iter().map(|r| Some(r.as_str())).collect()
                }
                _ => vec![None],
            };
            let several = regions.len() > 1;
            for region in regions {
                let seen = in_region(share, sessions, &producer.credentials_ref, region).await;
                match (seen, region) {
                    (Ok(seen), _) => report.add(seen),
                    // One region failing stops nothing in the others.
                    (Err(failure), Some(region)) if several => {
                        report.region_failures.insert(region.to_string(), failure);
                    }
                    (Err(failure), _) => return Err(failure),
                }
            }
            if report.clouds.is_empty()
                && let Some((region, failure)) = report.region_failures.pop_first()
            {
                // Every region failed: the pass stops, as it does without regions.
                return Err(Failure {
                    message: format!("region {region}: {}", failure.message),
                    ..failure
                });
            }
        }
        None => {
            let id = spec.image.id.as_deref().map(canonical_image_id);
            let id = ImageId::from(id.unwrap_or_default());
            // Consumer-only names the image by ID, so one region at most.
            let region = spec.regions.iter().flatten().next();
            let mut members = BTreeMap::new();
            for member in &spec.members {
                let Some(consumer) = &member.consumer else {
                    continue;
                };
                let project = ProjectId::from(&member.project);
                let row = match sessions
                    .session(&consumer.credentials_ref, region.map(String::as_str))
                    .await
                {
                    Ok(session) => {
                        if report.clouds.is_empty()
                            && let Ok(cloud) = session.cloud().await
                        {
                            report.clouds.insert(region.cloned(), cloud);
                        }
                        session.get_member(id.as_str(), project.as_str()).await
                    }
                    Err(failure) => {
                        report.member_failures.insert(project, failure);
                        continue;
                    }
                };
                match row {
                    Ok(row) => {
                        members.insert(project, row.status);
                    }
                    Err(openstack::Error::NotFound { .. }) => {
                        report.member_failures.insert(
                            project,
                            Failure::new(
                                Reason::ImageNotFound,
                                format!(
                                    "project {} is not a member of image {id}; the image owner must share it first",
                                    member.project
                                ),
                            ),
                        );
                    }
                    Err(e) => {
                        report.member_failures.insert(project, e.into());
                    }
                }
            }
            report.images.push(ObservedImage {
                id,
                region: region.cloned(),
                members,
                ..ObservedImage::default()
            });
        }
    }
    Ok(report)
}

/// The image with its current members. Glance refuses to list members of an image that is
/// not shared (403); it has none, and the status reports ImageNotShared.
async fn with_members(session: &impl Glance, build: Rotated) -> Result<ObservedImage, Failure> {
    let Rotated {
        image,
        created_at,
        rotation,
        grace_until,
    } = build;
    let visibility = Visibility::parse(&image.visibility);
    let members = if visibility == Visibility::Shared {
        session
            .list_members(&image.id)
            .await?
            .into_iter()
            .map(|m| (ProjectId::from(m.member_id), m.status))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(ObservedImage {
        id: image.id.into(),
        name: image.name,
        visibility: Some(visibility),
        members,
        created_at,
        rotation,
        grace_until,
        ..ObservedImage::default()
    })
}

/// Resolves spec.image to the images it names, as the producer; `Err` when the pass cannot
/// go on (ambiguous name, an image the producer does not own, credentials, transient
/// faults).
async fn resolve<S: Glance + Keystone>(session: &S, image: &ImageRef) -> Result<Resolved, Failure> {
    let owner = session.project_id().await?;
    if let Some(id) = &image.id {
        let id = &canonical_image_id(id);
        return match session.get_image(id).await {
            Ok(found) if found.owner.as_deref() == Some(owner.as_str()) => {
                Ok(Resolved::Images(vec![found]))
            }
            Ok(found) => Err(Failure::new(
                Reason::Forbidden,
                format!(
                    "image {id} is owned by project {}, not by the producer's project {owner}; \
                     spec.producer must be credentials of the image owner",
                    found.owner.as_deref().unwrap_or("unknown")
                ),
            )),
            Err(openstack::Error::NotFound { .. }) => Ok(Resolved::Missing(Failure::new(
                Reason::ImageNotFound,
                format!("image {id} not found, or not visible to the producer"),
            ))),
            Err(e) => Err(e.into()),
        };
    }
    let query = ImageQuery {
        name: image.name.clone(),
        tags: image
            .selector
            .as_ref()
            .map(|s| s.tags.clone())
            .unwrap_or_default(),
        owner: Some(owner.clone()),
        name_prefix: image.selector.as_ref().and_then(|s| s.name_prefix.clone()),
    };
    let mut found = session.list_images(&query).await?;
    found.sort_by(|a, b| a.id.cmp(&b.id));
    match (&image.name, found.len()) {
        (Some(name), 0) => Ok(Resolved::Missing(Failure::new(
            Reason::ImageNotFound,
            format!("no image named {name:?} owned by project {owner}"),
        ))),
        (Some(name), n) if n > 1 => Err(Failure::new(
            Reason::ImageAmbiguous,
            format!(
                "{n} images named {name:?} owned by project {owner}: {}",
                found
                    .iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        (None, 0) => Ok(Resolved::Missing(Failure::new(
            Reason::ImageNotFound,
            format!("no image owned by project {owner} matches the selector"),
        ))),
        _ => Ok(Resolved::Images(found)),
    }
}
