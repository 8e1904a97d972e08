//! Observe stage (I/O): resolve the image(s) as the producer and read their current members
//! (consumer-only: each declared member's own row as that consumer). Produces an
//! [`Observed`] for the planner, or the [`Failure`] that stops the pass.

use std::collections::BTreeMap;

use super::model::{Failure, ImageId, ObservedImage, ProjectId, Visibility};
use super::ports::{Connect, Glance, Keystone};
use super::rotation::{Rotated, next_grace_end, rotate};
use crate::api::{ImageRef, ImageShare, Reason, canonical_image_id};
use crate::openstack::{self, Image, ImageQuery};
use k8s_openapi::jiff::Timestamp;

/// What one pass saw in Glance.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The images with their members (with a producer: every image spec.image resolves to).
    pub images: Vec<ObservedImage>,
    /// With a producer: why spec.image resolved to no image at all. That is an observation,
    /// not a failed pass: the members recorded on images no longer named are still removed.
    pub missing: Option<Failure>,
    /// Per-project failures not tied to one step (e.g. a consumer's Secret is missing).
    pub member_failures: BTreeMap<ProjectId, Failure>,
    /// The cloud the pass worked on ([`Glance::cloud`]): the producer's, or in consumer-only
    /// use the first consumer's that could be opened.
    pub cloud: Option<String>,
    /// With rotation: how soon the first grace period of a build ends.
    pub grace_ends_in: Option<std::time::Duration>,
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
            let session = sessions.session(&producer.credentials_ref).await?;
            report.cloud = Some(session.cloud().await?);
            match resolve(&*session, &spec.image).await? {
                Resolved::Images(found) => {
                    let now = Timestamp::now();
                    let previous = share.status.as_ref().map_or(&[][..], |s| &s.images);
                    let builds = rotate(found, spec.image.selector.as_ref(), previous, now);
                    report.grace_ends_in = next_grace_end(&builds, now);
                    for build in builds {
                        report.images.push(with_members(&*session, build).await?);
                    }
                }
                Resolved::Missing(missing) => report.missing = Some(missing),
            }
        }
        None => {
            let id = spec.image.id.as_deref().map(canonical_image_id);
            let id = ImageId::from(id.unwrap_or_default());
            let mut members = BTreeMap::new();
            for member in &spec.members {
                let Some(consumer) = &member.consumer else {
                    continue;
                };
                let project = ProjectId::from(&member.project);
                let row = match sessions.session(&consumer.credentials_ref).await {
                    Ok(session) => {
                        if report.cloud.is_none() {
                            report.cloud = session.cloud().await.ok();
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
