//! How most tests begin, written once: a [`Scenario`] (a fresh namespace, the producer
//! logged in, a new shared image) and a [`Share`] builder for the ImageShare specs the tests
//! create (`t.share("name").image(&image).member(&a).in_sync().await`).

use imageshare::api::ImageShare;
use serde_json::{Value, json};

use crate::cloud::Os;
use crate::namespace::TestNs;
use crate::stack::unique;
use crate::wait::CONVERGE;

/// A `credentialsRef` source for the Secret `secret` of a [`TestNs`], cloud `openstack`.
pub fn creds(secret: &str) -> Value {
    json!({"credentialsRef": {"secretName": secret, "cloudName": "openstack"}})
}

/// A fresh test namespace, the producer logged in, and one new image of the producer with
/// visibility `shared` (no members yet). Taken apart where it is made:
/// `let Scenario { t, producer, image } = Scenario::new("drift").await;`.
pub struct Scenario {
    /// The namespace `e2e-<prefix>-…`, with its credentials Secrets.
    pub t: TestNs,
    /// The producer identity.
    pub producer: Os,
    /// The ID of the image `e2e-<prefix>-…`.
    pub image: String,
}

impl Scenario {
    /// Creates the namespace and the image, both named after `prefix`.
    pub async fn new(prefix: &str) -> Scenario {
        let t = TestNs::new(prefix).await;
        let producer = Os::login("producer").await;
        let image = producer.create_image(&unique(prefix), "shared", &[]).await;
        Scenario { t, producer, image }
    }
}

/// An ImageShare spec being written for a [`TestNs`] ([`TestNs::share`]). It starts with the
/// producer credentials in Secret `producer-cloud` and nothing else; each call adds one part
/// of the spec, and [`Share::create`], [`Share::reaches`] or [`Share::in_sync`] creates it.
#[must_use = "a Share is created by create, reaches or in_sync"]
pub struct Share<'a> {
    t: &'a TestNs,
    name: String,
    spec: Value,
}

impl TestNs {
    /// Starts the spec of ImageShare `name` in this namespace.
    pub fn share(&self, name: &str) -> Share<'_> {
        Share {
            t: self,
            name: name.to_string(),
            spec: json!({"producer": creds("producer-cloud")}),
        }
    }
}

impl Share<'_> {
    /// The image by ID (`spec.image.id`).
    pub fn image(self, id: &str) -> Self {
        self.with("image", json!({ "id": id }))
    }

    /// The image by exact name (`spec.image.name`).
    pub fn image_named(self, name: &str) -> Self {
        self.with("image", json!({ "name": name }))
    }

    /// Every image of the producer tagged `tag` (`spec.image.selector.tags`).
    pub fn tagged(self, tag: &str) -> Self {
        self.with("image", json!({"selector": {"tags": [tag]}}))
    }

    /// Producer credentials from Secret `secret` instead of `producer-cloud`.
    pub fn producer(self, secret: &str) -> Self {
        self.with("producer", creds(secret))
    }

    /// No producer credentials: a consumer-only ImageShare.
    pub fn consumer_only(mut self) -> Self {
        if let Some(spec) = self.spec.as_object_mut() {
            spec.remove("producer");
        }
        self
    }

    /// One more member, `project`, whose status is left to the consumer.
    pub fn member(self, project: &str) -> Self {
        self.with_member(json!({ "project": project }))
    }

    /// One more member, `project`, whose acceptance the operator manages with the consumer
    /// credentials in Secret `consumer` (`status: accepted`).
    pub fn accepted(self, project: &str, consumer: &str) -> Self {
        self.with_member(
            json!({"project": project, "status": "accepted", "consumer": creds(consumer)}),
        )
    }

    /// `membership: Exclusive`: members the spec does not declare are removed.
    pub fn exclusive(self) -> Self {
        self.with("membership", json!("Exclusive"))
    }

    /// `resyncPeriod: 30s`, the shortest: for what only a resync notices.
    pub fn resync_30s(self) -> Self {
        self.with("resyncPeriod", json!("30s"))
    }

    /// Any other part of the spec: `field` set to `value`.
    pub fn with(mut self, field: &str, value: Value) -> Self {
        self.spec[field] = value;
        self
    }

    /// One more member written out in full, e.g. a project name with its domain.
    pub fn with_member(mut self, member: Value) -> Self {
        match self.spec["members"].as_array_mut() {
            Some(members) => members.push(member),
            None => self.spec["members"] = json!([member]),
        }
        self
    }

    /// The spec as written so far.
    pub fn spec(&self) -> &Value {
        &self.spec
    }

    /// Creates the ImageShare.
    pub async fn create(self) -> ImageShare {
        self.t.create(&self.name, self.spec).await
    }

    /// Creates the ImageShare and waits (up to [`CONVERGE`]) until its Ready condition has
    /// `reason` for its generation; returns the object.
    pub async fn reaches(self, reason: &str) -> ImageShare {
        let (t, name) = (self.t, self.name.clone());
        self.create().await;
        t.wait_reason(&name, reason, CONVERGE).await
    }

    /// Creates the ImageShare and waits (up to [`CONVERGE`]) until it is InSync; returns the
    /// object.
    pub async fn in_sync(self) -> ImageShare {
        self.reaches("InSync").await
    }
}
