//! The domain types every stage of a pass shares, so the stages depend on this module
//! instead of on each other: typed IDs, the [`MemberKey`] a step acts on, what Glance showed
//! of an image ([`ObservedImage`]), the calls a plan makes ([`Step`]) and what became of
//! them ([`Outcome`]), and why something did not work ([`Failure`]). No I/O.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{CredentialsRef, ImageStatus, MemberStatus, Reason, Rotation};
use crate::openstack;

/// A string ID of one kind; its own type so an image ID is never passed as a project ID.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The ID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl From<&String> for $name {
            fn from(id: &String) -> Self {
                $name(id.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A Glance image ID (canonical: lower-case, hyphenated).
    ImageId
);
id_type!(
    /// A Keystone project ID.
    ProjectId
);

/// One member of one image: what a step, a ledger entry, a claim and a status row are about.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey {
    /// The image.
    pub image: ImageId,
    /// The member project.
    pub project: ProjectId,
}

impl MemberKey {
    /// The key of `project` on `image`.
    pub fn new(image: impl Into<ImageId>, project: impl Into<ProjectId>) -> MemberKey {
        MemberKey {
            image: image.into(),
            project: project.into(),
        }
    }
}

impl fmt::Display for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "project {} on image {}", self.project, self.image)
    }
}

/// Glance image visibility. Only `shared` images have members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Members can be added.
    Shared,
    /// Any other visibility (`private`, `public`, `community`), as Glance spells it.
    Other(String),
}

impl Visibility {
    /// Reads Glance's spelling.
    pub fn parse(text: &str) -> Visibility {
        match text {
            "shared" => Visibility::Shared,
            other => Visibility::Other(other.to_string()),
        }
    }

    /// Glance's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Visibility::Shared => "shared",
            Visibility::Other(other) => other,
        }
    }
}

/// One image as observed in Glance in this pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedImage {
    /// Glance image ID.
    pub id: ImageId,
    /// Image name, when known.
    pub name: Option<String>,
    /// Glance visibility, when known (unknown in consumer-only use).
    pub visibility: Option<Visibility>,
    /// Current members and their statuses. In consumer-only use only the declared members'
    /// own rows are known.
    pub members: BTreeMap<ProjectId, MemberStatus>,
    /// When Glance created it, when known.
    pub created_at: Option<Timestamp>,
    /// Its place in a rotation (`image.selector.keepNewest`).
    pub rotation: Option<Rotation>,
    /// The end of its grace period, for a build that left the newest ones.
    pub grace_until: Option<Timestamp>,
}

impl ObservedImage {
    /// The image as reported in status.images.
    pub fn status(&self) -> ImageStatus {
        ImageStatus {
            id: self.id.to_string(),
            name: self.name.clone(),
            visibility: self.visibility.as_ref().map(|v| v.as_str().to_string()),
            created_at: self.created_at.map(Time),
            rotation: self.rotation,
            grace_until: self.grace_until.map(Time),
        }
    }

    /// Whether Glance accepts new members on this image (visibility `shared`).
    pub fn accepts_members(&self) -> bool {
        self.visibility == Some(Visibility::Shared)
    }

    /// The key of `project` on this image.
    pub fn key(&self, project: impl Into<ProjectId>) -> MemberKey {
        MemberKey::new(self.id.clone(), project)
    }
}

/// Whose credentials a status update uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The member's own consumer credentials.
    Consumer(CredentialsRef),
    /// The producer's credentials (works only if the producer may set member status, e.g. admin).
    Producer,
}

/// What one call does to a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add the project as a member of the image (as producer).
    Add,
    /// Set the member's status (as `identity`).
    SetStatus {
        /// Status to set.
        status: MemberStatus,
        /// Whose credentials to use.
        identity: Identity,
    },
    /// Remove the project from the image (as producer).
    Remove,
}

/// One call to make against Glance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The member it acts on.
    pub key: MemberKey,
    /// What it does.
    pub action: Action,
}

impl Step {
    /// Adds `key`.
    pub fn add(key: MemberKey) -> Step {
        Step {
            key,
            action: Action::Add,
        }
    }

    /// Removes `key`.
    pub fn remove(key: MemberKey) -> Step {
        Step {
            key,
            action: Action::Remove,
        }
    }

    /// Sets the status of `key` as `identity`.
    pub fn set_status(key: MemberKey, status: MemberStatus, identity: Identity) -> Step {
        Step {
            key,
            action: Action::SetStatus { status, identity },
        }
    }

    /// Whose credentials the step uses.
    pub fn identity(&self) -> &Identity {
        match &self.action {
            Action::SetStatus { identity, .. } => identity,
            Action::Add | Action::Remove => &Identity::Producer,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let MemberKey { image, project } = &self.key;
        match &self.action {
            Action::Add => write!(f, "add project {project} to image {image}"),
            Action::Remove => write!(f, "remove project {project} from image {image}"),
            Action::SetStatus { status, identity } => {
                write!(f, "set project {project} on image {image} to {status} as ")?;
                match identity {
                    Identity::Consumer(c) => write!(f, "the consumer (secret {})", c.secret_name),
                    Identity::Producer => f.write_str("the producer"),
                }
            }
        }
    }
}

/// What happened to one step of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Glance made the change.
    Done,
    /// Glance already was as planned (409 on add, a confirmed 404 on remove): success, no
    /// change.
    Unchanged,
    /// The producer may not set this status and no consumer credentials were given.
    AwaitingConsumer,
    /// The call failed.
    Failed(Failure),
}

/// Why a pass (or one member of it) did not reach the desired state: a Ready reason and a
/// readable message, never a secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Bounded reason (condition reason, Event reason, metric label).
    pub reason: Reason,
    /// Readable detail with the ids involved.
    pub message: String,
    /// Server-requested delay before retrying (429/503 Retry-After).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure with a reason and message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A passing fault, retried with backoff.
    pub fn transient(message: impl Into<String>) -> Self {
        Failure::new(Reason::TransientError, message)
    }

    /// Whether retrying soon may help.
    pub fn is_transient(&self) -> bool {
        self.reason == Reason::TransientError
    }
}

impl From<openstack::Error> for Failure {
    fn from(err: openstack::Error) -> Self {
        use openstack::{Error, TerminalKind};
        let message = err.to_string();
        match err {
            Error::NotFound { .. } => Failure::new(Reason::ImageNotFound, message),
            Error::Conflict { .. } => Failure::new(Reason::Conflict, message),
            Error::Terminal { kind, .. } => Failure::new(
                match kind {
                    TerminalKind::CredentialsInvalid | TerminalKind::Config => {
                        Reason::CredentialsInvalid
                    }
                    TerminalKind::Forbidden | TerminalKind::BadRequest => Reason::Forbidden,
                    TerminalKind::MemberQuotaExceeded => Reason::MemberQuotaExceeded,
                },
                message,
            ),
            Error::Transient { retry_after, .. } => Failure {
                reason: Reason::TransientError,
                message,
                retry_after,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_reads_as_the_call_it_makes() {
        let key = MemberKey::new("img", "p");
        assert_eq!(
            Step::add(key.clone()).to_string(),
            "add project p to image img"
        );
        assert_eq!(
            Step::remove(key.clone()).to_string(),
            "remove project p from image img"
        );
        let cref = CredentialsRef {
            secret_name: "team-p".into(),
            cloud_name: "team-p".into(),
        };
        let set = Step::set_status(key, MemberStatus::Accepted, Identity::Consumer(cref));
        assert_eq!(
            set.to_string(),
            "set project p on image img to accepted as the consumer (secret team-p)"
        );
    }

    #[test]
    fn only_shared_images_accept_members() {
        let mut image = ObservedImage {
            id: "img".into(),
            visibility: Some(Visibility::parse("shared")),
            ..ObservedImage::default()
        };
        assert!(image.accepts_members());
        image.visibility = Some(Visibility::parse("private"));
        assert!(!image.accepts_members());
        assert_eq!(image.status().visibility.as_deref(), Some("private"));
        image.visibility = None;
        assert!(!image.accepts_members());
    }
}
