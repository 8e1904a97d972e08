//! The seams of a pass: what it needs from OpenStack ([`Glance`], [`Keystone`], opened per
//! credential by a [`Connect`]) and from Kubernetes ([`Writer`]: status and Events). The
//! operator plugs in the real clients; `plan` the same clients with Glance writes and the
//! writer turned into no-ops ([`Preview`], [`NoWrites`]); in-process tests record calls.
//! Each trait is only what a pass calls; nothing here decides anything.

use std::future::Future;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use super::error::{Error, Operation};
use super::model::Failure;
use crate::api::{CredentialsRef, ImageShare, ImageShareStatus, MemberStatus};
use crate::openstack::ProjectEntry;
use crate::openstack::{self, Image, ImageQuery, Member, Removal, Session};

/// Result of an OpenStack call.
pub type OsResult<T> = Result<T, openstack::Error>;

/// The Glance calls of a pass, as one credential.
pub trait Glance: Send + Sync {
    /// The cloud this session works on: its Keystone URL and the Glance endpoint it uses
    /// (from the catalog, or an override the cluster operator allowed), normalised. The
    /// region is implied by the endpoint.
    fn cloud(&self) -> impl Future<Output = OsResult<String>> + Send;
    /// One image by ID.
    fn get_image(&self, id: &str) -> impl Future<Output = OsResult<Image>> + Send;
    /// The images a query matches.
    fn list_images(&self, query: &ImageQuery) -> impl Future<Output = OsResult<Vec<Image>>> + Send;
    /// An image's members (the owner's view).
    fn list_members(&self, image: &str) -> impl Future<Output = OsResult<Vec<Member>>> + Send;
    /// One member's row (the member's own view).
    fn get_member(
        &self,
        image: &str,
        project: &str,
    ) -> impl Future<Output = OsResult<Member>> + Send;
    /// Adds a member.
    fn create_member(
        &self,
        image: &str,
        project: &str,
    ) -> impl Future<Output = OsResult<Member>> + Send;
    /// Removes a member; a 404 counts as gone only once Glance confirms it.
    fn remove_member(
        &self,
        image: &str,
        project: &str,
    ) -> impl Future<Output = OsResult<Removal>> + Send;
    /// Sets a member's status.
    fn update_member_status(
        &self,
        image: &str,
        project: &str,
        status: MemberStatus,
    ) -> impl Future<Output = OsResult<Member>> + Send;
}

/// The Keystone calls of a pass, as one credential.
pub trait Keystone: Send + Sync {
    /// The project the credential is scoped to.
    fn project_id(&self) -> impl Future<Output = OsResult<String>> + Send;
    /// The projects of a domain, by exact name or by tags; refuses a partial list.
    fn list_projects(
        &self,
        domain_id: &str,
        name: Option<&str>,
        tags: &[String],
    ) -> impl Future<Output = OsResult<Vec<ProjectEntry>>> + Send;
    /// A domain's ID from its name or ID, if visible.
    fn domain_id(&self, name_or_id: &str) -> impl Future<Output = OsResult<Option<String>>> + Send;
    /// Who the credential is, for messages (never a secret).
    fn describe(&self) -> String;
}

/// Opens the session of a credential reference (each Secret read once per pass).
pub trait Connect: Send {
    /// The session type.
    type Session: Glance + Keystone + 'static;
    /// The session for `cref` in `region` (None: the credential's own region), or why
    /// there is none.
    fn session(
        &mut self,
        cref: &CredentialsRef,
        region: Option<&str>,
    ) -> impl Future<Output = Result<Arc<Self::Session>, Failure>> + Send;
}

/// An Event about an object, as the pass decided it (see [`super::events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning (needs attention) or Normal.
    pub warning: bool,
    /// Bounded reason.
    pub reason: &'static str,
    /// Readable note with the ids involved.
    pub note: String,
}

/// The Kubernetes writes of a pass.
pub trait Writer: Sync {
    /// Writes the whole status with the resourceVersion it was computed from as a
    /// precondition; returns the new resourceVersion.
    fn status(
        &self,
        share: &ImageShare,
        status: &ImageShareStatus,
        version: Option<String>,
        operation: Operation,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// Publishes one Event; a failure is logged, never fatal.
    fn event(&self, share: &ImageShare, note: &Note) -> impl Future<Output = ()> + Send;
}

impl Glance for Session {
    async fn cloud(&self) -> OsResult<String> {
        let token = self.token().await?;
        Ok(cloud_identity(
            &self.config().auth_url,
            token.image_endpoint(),
        ))
    }
    async fn get_image(&self, id: &str) -> OsResult<Image> {
        Session::get_image(self, id).await
    }
    async fn list_images(&self, query: &ImageQuery) -> OsResult<Vec<Image>> {
        Session::list_images(self, query).await
    }
    async fn list_members(&self, image: &str) -> OsResult<Vec<Member>> {
        Session::list_members(self, image).await
    }
    async fn get_member(&self, image: &str, project: &str) -> OsResult<Member> {
        Session::get_member(self, image, project).await
    }
    async fn create_member(&self, image: &str, project: &str) -> OsResult<Member> {
        Session::create_member(self, image, project).await
    }
    async fn remove_member(&self, image: &str, project: &str) -> OsResult<Removal> {
        Session::remove_member(self, image, project).await
    }
    async fn update_member_status(
        &self,
        image: &str,
        project: &str,
        status: MemberStatus,
    ) -> OsResult<Member> {
        Session::update_member_status(self, image, project, status).await
    }
}

impl Keystone for Session {
    async fn project_id(&self) -> OsResult<String> {
        Session::project_id(self).await
    }
    async fn list_projects(
        &self,
        domain_id: &str,
        name: Option<&str>,
        tags: &[String],
    ) -> OsResult<Vec<ProjectEntry>> {
        Session::list_projects(self, domain_id, name, tags).await
    }
    async fn domain_id(&self, name_or_id: &str) -> OsResult<Option<String>> {
        Session::domain_id(self, name_or_id).await
    }
    fn describe(&self) -> String {
        self.config().describe()
    }
}

/// A cloud's identity from its Keystone URL and the Glance endpoint a session uses: both
/// normalised (no trailing slash; the endpoint as a URL writes it). Pure.
pub fn cloud_identity(auth_url: &str, endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    let endpoint = match reqwest::Url::parse(endpoint) {
        Ok(url) => url.as_str().trim_end_matches('/').to_string(),
        Err(_) => endpoint.to_string(),
    };
    format!("{auth_url} {endpoint}")
}

/// Sessions that read for real and write nothing: a Glance write answers as if Glance had
/// made it. `plan` runs the operator's pass through these.
pub struct Preview<C>(pub C);

/// A session of [`Preview`].
pub struct Previewed<S>(Arc<S>);

impl<C: Connect> Connect for Preview<C> {
    type Session = Previewed<C::Session>;
    async fn session(
        &mut self,
        cref: &CredentialsRef,
        region: Option<&str>,
    ) -> Result<Arc<Self::Session>, Failure> {
        Ok(Arc::new(Previewed(self.0.session(cref, region).await?)))
    }
}

/// The member row Glance would answer after a write.
fn member(image: &str, project: &str, status: MemberStatus) -> Member {
    Member {
        image_id: image.to_string(),
        member_id: project.to_string(),
        status,
    }
}

impl<S: Glance> Glance for Previewed<S> {
    fn cloud(&self) -> impl Future<Output = OsResult<String>> + Send {
        self.0.cloud()
    }
    fn get_image(&self, id: &str) -> impl Future<Output = OsResult<Image>> + Send {
        self.0.get_image(id)
    }
    fn list_images(&self, query: &ImageQuery) -> impl Future<Output = OsResult<Vec<Image>>> + Send {
        self.0.list_images(query)
    }
    fn list_members(&self, image: &str) -> impl Future<Output = OsResult<Vec<Member>>> + Send {
        self.0.list_members(image)
    }
    fn get_member(
        &self,
        image: &str,
        project: &str,
    ) -> impl Future<Output = OsResult<Member>> + Send {
        self.0.get_member(image, project)
    }
    async fn create_member(&self, image: &str, project: &str) -> OsResult<Member> {
        Ok(member(image, project, MemberStatus::Pending))
    }
    async fn remove_member(&self, _image: &str, _project: &str) -> OsResult<Removal> {
        Ok(Removal::Removed)
    }
    async fn update_member_status(
        &self,
        image: &str,
        project: &str,
        status: MemberStatus,
    ) -> OsResult<Member> {
        Ok(member(image, project, status))
    }
}

impl<S: Keystone> Keystone for Previewed<S> {
    fn project_id(&self) -> impl Future<Output = OsResult<String>> + Send {
        self.0.project_id()
    }
    fn list_projects(
        &self,
        domain_id: &str,
        name: Option<&str>,
        tags: &[String],
    ) -> impl Future<Output = OsResult<Vec<ProjectEntry>>> + Send {
        self.0.list_projects(domain_id, name, tags)
    }
    fn domain_id(&self, name_or_id: &str) -> impl Future<Output = OsResult<Option<String>>> + Send {
        self.0.domain_id(name_or_id)
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// The writer of `plan`: writes nothing, publishes nothing.
pub struct NoWrites;

impl Writer for NoWrites {
    async fn status(
        &self,
        _: &ImageShare,
        _: &ImageShareStatus,
        version: Option<String>,
        _: Operation,
    ) -> Result<Option<String>, Error> {
        Ok(version)
    }
    async fn event(&self, _: &ImageShare, _: &Note) {}
}

/// The operator's writer: server-side apply of the whole status under the operator's field
/// manager, and Events.
pub struct KubeWriter {
    /// The client.
    pub client: Client,
}

/// Field manager for status writes (and the Events' reporter).
pub const MANAGER: &str = "imageshare-operator";

impl Writer for KubeWriter {
    async fn status(
        &self,
        share: &ImageShare,
        status: &ImageShareStatus,
        version: Option<String>,
        operation: Operation,
    ) -> Result<Option<String>, Error> {
        let api: Api<ImageShare> =
            Api::namespaced(self.client.clone(), &share.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "apiVersion": ImageShare::api_version(&()),
            "kind": ImageShare::kind(&()),
            "metadata": {"resourceVersion": version},
            "status": status,
        });
        let written = api
            .patch_status(
                &share.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
            .map_err(|source| Error::Kube { operation, source })?;
        Ok(written.metadata.resource_version)
    }

    async fn event(&self, share: &ImageShare, note: &Note) {
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        // A recorder per Event: kube's recorder folds Events of the same reason about the
        // same object within 6 minutes into a series that keeps the first note (a later
        // MemberAdded would show the ids of the first), and caches every Event it published
        // (10,000 objects: 10,000 Events held for 6 minutes, each publish scanning them all).
        let recorder = Recorder::new(self.client.clone(), Reporter::from(MANAGER));
        if let Err(e) = recorder.publish(&event, &share.object_ref(&())).await {
            warn!(error = %e, "could not publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_is_named_by_its_keystone_and_normalised_glance_endpoint() {
        assert_eq!(
            cloud_identity("https://k/v3", "HTTPS://Glance.example:443/"),
            "https://k/v3 https://glance.example"
        );
        assert_eq!(
            cloud_identity("https://k/v3", "not a url/"),
            "https://k/v3 not a url"
        );
    }
}
