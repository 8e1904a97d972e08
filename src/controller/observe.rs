//! Observe step (I/O): read the referenced Secrets into OpenStack sessions, resolve the
//! image(s) as the producer, and read the current members. Produces a [`Report`] for the
//! planner, or the [`Failure`] that stops the pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use super::Failure;
use super::plan::{Claims, ObservedImage};
use super::status::Report;
use crate::api::{CredentialsRef, ImageRef, ImageShare, Reason};
use crate::openstack::{self, CloudConfig, Clouds, Image, ImageQuery, Session};

/// Key in the credentials Secret holding clouds.yaml.
pub const CLOUDS_KEY: &str = "clouds.yaml";
/// Optional key in the credentials Secret holding a PEM CA bundle.
pub const CACERT_KEY: &str = "cacert";

/// Sessions opened during one pass, so each Secret is read once per pass.
pub struct Sessions<'a> {
    clouds: &'a Clouds,
    secrets: Api<Secret>,
    namespace: String,
    opened: HashMap<CredentialsRef, Result<Arc<Session>, Failure>>,
}

impl<'a> Sessions<'a> {
    /// Sessions for Secrets in the namespace of `share`.
    pub fn new(client: &Client, clouds: &'a Clouds, share: &ImageShare) -> Self {
        let namespace = share.namespace().unwrap_or_default();
        Sessions {
            clouds,
            secrets: Api::namespaced(client.clone(), &namespace),
            namespace,
            opened: HashMap::new(),
        }
    }

    /// The session for a credentials reference (shared token cache per distinct credential).
    pub async fn get(&mut self, cref: &CredentialsRef) -> Result<Arc<Session>, Failure> {
        if let Some(found) = self.opened.get(cref) {
            return found.clone();
        }
        let result = self.open(cref).await;
        self.opened.insert(cref.clone(), result.clone());
        result
    }

    async fn open(&self, cref: &CredentialsRef) -> Result<Arc<Session>, Failure> {
        let name = &cref.secret_name;
        let ns = &self.namespace;
        let secret = match self.secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(Failure::new(
                    Reason::CredentialsMissing,
                    format!("secret {ns}/{name} not found"),
                ));
            }
            Err(e) => {
                return Err(Failure::transient(format!(
                    "reading secret {ns}/{name}: {e}"
                )));
            }
        };
        let data = secret.data.unwrap_or_default();
        let clouds = data.get(CLOUDS_KEY).ok_or_else(|| {
            Failure::new(
                Reason::CredentialsMissing,
                format!("secret {ns}/{name} has no key {CLOUDS_KEY}"),
            )
        })?;
        let clouds = std::str::from_utf8(&clouds.0).map_err(|_| {
            Failure::new(
                Reason::CredentialsInvalid,
                format!("secret {ns}/{name} key {CLOUDS_KEY} is not UTF-8 text"),
            )
        })?;
        let cacert = data.get(CACERT_KEY).map(|b| b.0.as_slice());
        let config =
            CloudConfig::from_clouds_yaml(clouds, &cref.cloud_name, cacert).map_err(|e| {
                Failure::new(
                    Reason::CredentialsInvalid,
                    format!("secret {ns}/{name}: {e}"),
                )
            })?;
        Ok(self.clouds.session(&config))
    }
}

/// Observes Glance for `share`. With a producer: resolve the image(s) and list members.
/// Without (consumer-only): read each declared member's own row as that consumer.
pub async fn observe(
    share: &ImageShare,
    sessions: &mut Sessions<'_>,
    claims: Claims,
) -> Result<Report, Failure> {
    let spec = &share.spec;
    let mut report = Report {
        claims,
        ..Report::default()
    };
    match &spec.producer {
        Some(producer) => {
            let session = sessions.get(&producer.credentials_ref).await?;
            for image in resolve(&session, &spec.image).await? {
                report.images.push(with_members(&session, image).await?);
            }
        }
        None => {
            let id = spec.image.id.clone().unwrap_or_default();
            let mut members = BTreeMap::new();
            for member in &spec.members {
                let Some(consumer) = &member.consumer else {
                    continue;
                };
                let row = match sessions.get(&consumer.credentials_ref).await {
                    Ok(session) => session.get_member(&id, &member.project).await,
                    Err(failure) => {
                        report
                            .member_failures
                            .insert(member.project.clone(), failure);
                        continue;
                    }
                };
                match row {
                    Ok(row) => {
                        members.insert(member.project.clone(), row.status);
                    }
                    Err(openstack::Error::NotFound { .. }) => {
                        report.member_failures.insert(
                            member.project.clone(),
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
                        report
                            .member_failures
                            .insert(member.project.clone(), e.into());
                    }
                }
            }
            report.images.push(ObservedImage {
                id,
                name: None,
                visibility: None,
                members,
            });
        }
    }
    Ok(report)
}

/// Observes what deletion must clean up, as the producer: the images the spec resolves to now
/// and every image the status says was shared, so a renamed, retagged or now-ambiguous image
/// still loses its members. Without a producer there is nothing to remove.
pub async fn observe_for_cleanup(
    share: &ImageShare,
    sessions: &mut Sessions<'_>,
    claims: Claims,
) -> Result<Report, Failure> {
    let mut report = Report {
        claims,
        ..Report::default()
    };
    let Some(producer) = &share.spec.producer else {
        return Ok(report);
    };
    let session = sessions.get(&producer.credentials_ref).await?;
    let mut images = match resolve(&session, &share.spec.image).await {
        Ok(images) => images,
        Err(failure) if failure.is_transient() => return Err(failure),
        Err(_) => Vec::new(),
    };
    let shared_before = share.status.iter().flat_map(|s| s.images.iter());
    for id in shared_before.map(|i| i.id.clone()).collect::<BTreeSet<_>>() {
        if images.iter().any(|i| i.id == id) {
            continue;
        }
        match session.get_image(&id).await {
            Ok(image) => images.push(image),
            Err(openstack::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for image in images {
        report.images.push(with_members(&session, image).await?);
    }
    Ok(report)
}

/// The image with its current members. Glance refuses to list members of an image that is
/// not shared (403); it has none, and the status reports ImageNotShared.
async fn with_members(session: &Session, image: Image) -> Result<ObservedImage, Failure> {
    let members = if image.visibility == "shared" {
        session
            .list_members(&image.id)
            .await?
            .into_iter()
            .map(|m| (m.member_id, m.status))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(ObservedImage {
        id: image.id,
        name: image.name,
        visibility: Some(image.visibility),
        members,
    })
}

/// Resolves spec.image to the images it names, as the producer.
async fn resolve(session: &Session, image: &ImageRef) -> Result<Vec<Image>, Failure> {
    if let Some(id) = &image.id {
        return match session.get_image(id).await {
            Ok(found) => Ok(vec![found]),
            Err(openstack::Error::NotFound { .. }) => Err(Failure::new(
                Reason::ImageNotFound,
                format!("image {id} not found, or not visible to the producer"),
            )),
            Err(e) => Err(e.into()),
        };
    }
    let owner = session.project_id().await?;
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
        (Some(name), 0) => Err(Failure::new(
            Reason::ImageNotFound,
            format!("no image named {name:?} owned by project {owner}"),
        )),
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
        (None, 0) => Err(Failure::new(
            Reason::ImageNotFound,
            format!("no image owned by project {owner} matches the selector"),
        )),
        _ => Ok(found),
    }
}
