//! Test fixtures: builders for specs and observed images, so tests read as sentences.

use std::collections::BTreeMap;

use super::model::{MemberKey, ObservedImage, Visibility};
use super::overlap::Claims;
pub use super::overlap::Declarer;
use crate::api::{
    CredentialsRef, CredentialsSource, ImageRef, ImageShareSpec, MemberSpec, MemberStatus,
    Membership,
};

/// A spec sharing image `img` as producer `producer-cloud`, with no members yet.
pub fn spec() -> ImageShareSpec {
    ImageShareSpec {
        image: ImageRef {
            id: Some("img".into()),
            ..ImageRef::default()
        },
        producer: Some(credentials("producer-cloud")),
        members: Vec::new(),
        project_selector: None,
        project_reader: None,
        membership: Membership::Additive,
        deletion_policy: Default::default(),
        resync_period: None,
        suspend: false,
    }
}

fn credentials(secret: &str) -> CredentialsSource {
    CredentialsSource {
        credentials_ref: CredentialsRef {
            secret_name: secret.into(),
            cloud_name: "openstack".into(),
        },
    }
}

/// Builder methods on the fixture spec.
pub trait SpecExt {
    /// Adds a member without consumer credentials.
    fn member(self, project: &str, status: Option<MemberStatus>) -> Self;
    /// Adds a member with a managed status and consumer credentials from `secret`.
    fn member_with_consumer(self, project: &str, status: MemberStatus, secret: &str) -> Self;
    /// Makes the membership Exclusive.
    fn exclusive(self) -> Self;
    /// Removes the producer (consumer-only use).
    fn without_producer(self) -> Self;
    /// Sets suspend.
    fn suspended(self) -> Self;
}

impl SpecExt for ImageShareSpec {
    fn member(mut self, project: &str, status: Option<MemberStatus>) -> Self {
        self.members.push(MemberSpec {
            project: project.into(),
            domain: None,
            status,
            consumer: None,
        });
        self
    }
    fn member_with_consumer(mut self, project: &str, status: MemberStatus, secret: &str) -> Self {
        self.members.push(MemberSpec {
            project: project.into(),
            domain: None,
            status: Some(status),
            consumer: Some(credentials(secret)),
        });
        self
    }
    fn exclusive(mut self) -> Self {
        self.membership = Membership::Exclusive;
        self
    }
    fn without_producer(mut self) -> Self {
        self.producer = None;
        self
    }
    fn suspended(mut self) -> Self {
        self.suspend = true;
        self
    }
}

/// A shared image `id` with the given members.
pub fn image(id: &str, members: &[(&str, MemberStatus)]) -> ObservedImage {
    ObservedImage {
        id: id.into(),
        name: None,
        visibility: Some(Visibility::Shared),
        members: members
            .iter()
            .map(|(p, s)| ((*p).into(), *s))
            .collect::<BTreeMap<_, _>>(),
        ..ObservedImage::default()
    }
}

/// An earlier, active producer ImageShare `key` on the same cloud that declares a pair
/// with no status and holds it in its ledger; change the fields for other cases.
pub fn declarer(key: &str) -> Declarer {
    Declarer {
        key: key.into(),
        producer: true,
        status: None,
        earlier: true,
        active: true,
        holds: true,
    }
}

/// Claims where `declarer` declares `pairs`.
pub fn claims_of(declarer: &Declarer, pairs: &[(&str, &str)]) -> Claims {
    let mut claims = Claims::default();
    for (image, project) in pairs {
        let pair = MemberKey::new(*image, *project);
        claims
            .declared
            .entry(pair)
            .or_default()
            .push(declarer.clone());
    }
    claims
}

/// Claims where an earlier trusted producer ImageShare `owner` adds `pairs`.
pub fn earlier_claim(owner: &str, pairs: &[(&str, &str)]) -> Claims {
    claims_of(&declarer(owner), pairs)
}
