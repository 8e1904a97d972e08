//! The `ImageShare` custom resource: what users write (spec) and what the operator reports
//! (status). Pure data and schema; no I/O. Every field's doc comment becomes `kubectl explain`
//! text, and the CEL rules here are enforced by the apiserver at apply time.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the ImageShare resource.
pub const GROUP: &str = "imageshare.dev";

/// Desired sharing of one or more Glance images with a list of member projects.
// Each printcolumn(...) repeats `type_`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "imageshare.dev",
    version = "v1alpha1",
    kind = "ImageShare",
    namespaced,
    shortname = "ishare",
    category = "openstack",
    status = "ImageShareStatus",
    derive = "PartialEq",
    doc = "ImageShare keeps the member list and member statuses of OpenStack Glance images equal to this object.",
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".status.image",
        description = "the image(s) resolved from spec.image"
    ),
    printcolumn(
        name = "Members",
        type_ = "string",
        json_path = ".status.membersInSync",
        description = "members in sync / members declared"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.membership != 'Exclusive' || has(self.producer)").message("membership Exclusive needs spec.producer: only the image owner can remove members"))]
#[x_kube(validation = Rule::new("has(self.producer) || has(self.image.id)").message("without spec.producer (consumer-only use) the image must be given by spec.image.id"))]
#[x_kube(validation = Rule::new("has(self.producer) || self.members.all(m, has(m.consumer) && has(m.status))").message("without spec.producer (consumer-only use) every member needs consumer credentials and a status"))]
#[x_kube(validation = Rule::new("has(self.producer) || (!has(self.projectSelector) && self.members.all(m, !has(m.domain)))").message("projectSelector and project names (members[].domain) need spec.producer"))]
#[x_kube(validation = Rule::new("!has(self.regions) || size(self.regions) <= 1 || !has(self.image.id)").message("an image ID names one image in one region: with several regions, give image.name or image.selector"))]
#[serde(rename_all = "camelCase")]
pub struct ImageShareSpec {
    /// The image(s) to share, owned by the producer: exactly one of id, name or selector.
    pub image: ImageRef,

    /// Regions of the producer's cloud to share in (Glance of each region, one Keystone):
    /// the image is resolved in each by name or selector (IDs differ per region), and
    /// members and statuses are kept in each. A region that fails is reported and retried;
    /// it never stops or revokes anything in the others. Unset: the region of the
    /// credentials (clouds.yaml `region_name`, else the catalog's first image endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(min = 1, max = 10))]
    pub regions: Option<Vec<String>>,

    /// Credentials of the image owner's project, used to resolve the image and to add and
    /// remove members. The image must be owned by that project. Omit it for consumer-only use: the object then only sets the status
    /// of the listed members with their own credentials (an image shared from elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<CredentialsSource>,

    /// Projects the image is shared with. Each project appears at most once. Taking a
    /// project out of this list removes it from the image(s) again.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["project"]), length(max = 1000))]
    pub members: Vec<MemberSpec>,

    /// Also share with every Keystone project this selects (resolved at every pass:
    /// projects that join the selection get the image, projects that leave it lose it).
    /// Members listed in spec.members keep their own settings. The image owner's project
    /// is never selected. Listing projects needs spec.projectReader (or a producer allowed
    /// to list projects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_selector: Option<ProjectSelector>,

    /// Credentials allowed to list the projects of the domains named in spec (a domain
    /// reader, or an admin), used to resolve project names (members[].domain) and
    /// spec.projectSelector. Defaults to the producer's. Without that right the object
    /// reports Forbidden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_reader: Option<CredentialsSource>,

    /// What happens to members of the image that this object never declared (added by hand
    /// or by other tools). Additive (the default) leaves them alone; Exclusive removes them
    /// (needs spec.producer), except members another ImageShare with a producer declares.
    /// Members this object declared and no longer declares are removed in both modes.
    #[serde(default)]
    pub membership: Membership,

    /// What deleting this ImageShare does to the members in its ledger (status.ledger: the
    /// members it declared and added). Delete (the default) removes them from Glance; Orphan
    /// leaves them as they are. Either way, taking a member out of spec.members, or an image
    /// out of spec.image, removes those members while the object lives.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// How often Glance is checked for drift (Glance has no watch API), as a duration such as
    /// 30s, 10m or 1h; between 30s and 24h. Defaults to the operator's --resync-period (10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(s|m|h))+$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('30s') && duration(self) <= duration('24h')").message("resyncPeriod must be between 30s and 24h"))]
    pub resync_period: Option<String>,

    /// When true, the operator observes and reports but changes nothing in Glance (deleting
    /// a suspended ImageShare leaves its members, whatever the deletionPolicy).
    #[serde(default)]
    pub suspend: bool,
}

/// Which image(s) to share: exactly one of id, name or selector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.id), has(self.name), has(self.selector)].filter(x, x).size() == 1").message("exactly one of image.id, image.name or image.selector must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// Glance image ID (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
    ))]
    pub id: Option<String>,

    /// Exact image name; it must match exactly one image owned by the producer's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,

    /// Every image owned by the producer's project that matches; images created later are
    /// picked up on the next resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<ImageSelector>,
}

/// Selects images owned by the producer by tags and/or name prefix (both must match).
/// With `keepNewest`, only the newest builds of the family are shared (rotation).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("size(self.tags) > 0 || (has(self.namePrefix) && size(self.namePrefix) > 0)").message("image.selector needs at least one tag or a non-empty namePrefix"))]
#[x_kube(validation = Rule::new("!has(self.gracePeriod) || has(self.keepNewest)").message("image.selector.gracePeriod needs keepNewest"))]
#[serde(rename_all = "camelCase")]
pub struct ImageSelector {
    /// Tags the image must all carry.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub tags: Vec<String>,

    /// Prefix the image name must start with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub name_prefix: Option<String>,

    /// Share only the newest N matching images (by Glance's created_at, ties by name: the
    /// later name counts as newer). An older build loses its members (through the ledger,
    /// like any removal) once it has been out of the newest N for `gracePeriod`. A build that
    /// has left the newest N is never shared again unless it becomes one of the newest N
    /// (the newer ones deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub keep_newest: Option<u32>,

    /// How long a build that left the newest `keepNewest` keeps its members, as a duration
    /// such as 30m, 72h; none (the default) withdraws it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(s|m|h))+$"))]
    pub grace_period: Option<String>,
}

/// Where to find an OpenStack identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSource {
    /// A Secret in the ImageShare's namespace holding clouds.yaml.
    pub credentials_ref: CredentialsRef,
}

/// Reference to a clouds.yaml entry inside a Secret of the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of a Secret in the same namespace with key `clouds.yaml` (and optionally `cacert`,
    /// a PEM bundle used to verify the cloud's TLS certificates).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// Entry under `clouds:` in that clouds.yaml.
    #[schemars(length(min = 1, max = 255))]
    pub cloud_name: String,
}

/// One project the image is shared with.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.domain) || self.project.matches(r'^[^\\s/]*[^\\s/.][^\\s/]*$')").message("project must be a Keystone project ID (no spaces or slashes, not just dots), or a project name with its domain").field_path(".project"))]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// Keystone project ID of the consumer (Glance's member_id), or, with domain, the
    /// project's name.
    #[schemars(length(min = 1, max = 255))]
    pub project: String,

    /// When set, project is a project name in this Keystone domain (the domain's name or
    /// ID), resolved to its ID through Keystone at every pass (status.projects shows it).
    /// An unknown name is reported as ProjectNotFound and nothing is changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub domain: Option<String>,

    /// Status to keep this member at: accepted, rejected or pending. Omitted: the status is
    /// left to the consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MemberStatus>,

    /// Credentials of the consumer project, used to set its status (only a member can set
    /// its own status). Without them the producer's credentials are tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<CredentialsSource>,
}

/// Selects Keystone projects of one domain, by tags.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("size(self.tags) > 0 || (has(self.allProjects) && self.allProjects)").message("projectSelector needs tags, or allProjects: true to share with every project of the domain"))]
#[serde(rename_all = "camelCase")]
pub struct ProjectSelector {
    /// The domain (name or ID) whose enabled projects are selected.
    #[schemars(length(min = 1, max = 255))]
    pub domain: String,

    /// Keystone tags a project must all carry. Empty needs `allProjects: true`.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub tags: Vec<String>,

    /// With no tags: share with every enabled project of the domain. An explicit opt-in, so
    /// a selector whose tags were left out by mistake does not share with a whole domain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_projects: bool,

    /// Status to keep each selected member at, as members[].status without consumer
    /// credentials (AwaitingConsumer until the consumer sets it). Omitted: left to each
    /// consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MemberStatus>,
}

/// Status of an image member in Glance.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = drop_description)]
pub enum MemberStatus {
    /// The consumer has not answered yet.
    Pending,
    /// The image shows in the consumer's image list.
    Accepted,
    /// The consumer declined; the image does not show in its list but stays usable by ID.
    Rejected,
}

impl MemberStatus {
    /// The status as Glance and the CRD spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keeps the field's own doc comment in the CRD: kube hoists an `Option<enum>`'s schema into
/// the field and would otherwise replace the field's description with the enum's.
fn drop_description(schema: &mut schemars::Schema) {
    schema.remove("description");
}

/// How undeclared members are treated.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Membership {
    /// Members not declared here are left alone.
    #[default]
    Additive,
    /// Members not declared here are removed.
    Exclusive,
}

/// What deleting the ImageShare does.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Remove the declared members from the image.
    #[default]
    Delete,
    /// Leave the members in Glance.
    Orphan,
}

/// What the operator observed and did, for people and for GitOps health checks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageShareStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Short display of the resolved image(s), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Declared members in sync over declared members (all images), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_in_sync: Option<String>,

    /// The images spec.image resolved to.
    #[serde(default)]
    pub images: Vec<ImageStatus>,

    /// The cloud the images were resolved on: the Keystone URL and the Glance endpoint the
    /// pass used. Other ImageShares' claims count only on the same cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,

    /// With spec.regions: the cloud (Keystone URL and Glance endpoint) of each region.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region_clouds: BTreeMap<String, String>,

    /// One row per declared member and image, at most 200: members that are not in sync
    /// come first; memberCounts counts every row.
    #[serde(default)]
    pub members: Vec<MemberState>,

    /// How many (image, member) pairs are in each state (InSync, AwaitingConsumer, ...), counting
    /// the rows left out of members too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub member_counts: BTreeMap<String, u32>,

    /// The ledger: the (image, project) pairs this object declared and added (or found and
    /// took over), grouped by identical project lists. Whatever leaves it is removed from
    /// Glance: a member taken out of spec.members, an image no longer named or selected,
    /// and everything when the object is deleted with deletionPolicy Delete. Members never
    /// in it (added by hand, or by another ImageShare) are left alone unless Exclusive.
    #[serde(default)]
    pub ledger: Vec<LedgerEntry>,

    /// The projects resolved through Keystone at the last pass: names in spec.members and
    /// the projects spec.projectSelector chose, with the IDs they stand for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<ResolvedProject>,

    /// Conditions; Ready summarises the object (kstatus conventions).
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// When this status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}

/// The canonical spelling of a Glance image ID: lowercase, with dashes (8-4-4-4-12), as
/// Glance writes it. The CRD accepts any case, with or without dashes; every call, the
/// ledger and every comparison use this form. Text that is not 32 hex digits (with or without
/// dashes) is returned lowercased as it is.
pub fn canonical_image_id(id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return id.to_ascii_lowercase();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A Keystone project found by name or by spec.projectSelector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedProject {
    /// Keystone project ID (the Glance member ID).
    pub id: String,
    /// Project name.
    pub name: String,
    /// The domain as the spec names it.
    pub domain: String,
    /// Chosen by spec.projectSelector (false: named in spec.members).
    #[serde(default)]
    pub selected: bool,
}

/// An image the spec resolved to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// Glance image ID.
    pub id: String,
    /// Its region (with spec.regions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Image name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Glance visibility (members can only be added while it is `shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,

    /// When Glance created it (rotation orders builds by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,

    /// With `image.selector.keepNewest`: `Current` (one of the newest builds) or `Grace`
    /// (left them; keeps its members until `graceUntil`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,

    /// A build in grace keeps its members until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<Time>,
}

/// Where a build stands in a rotation (`image.selector.keepNewest`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// One of the newest builds: shared.
    Current,
    /// Left the newest builds: shared until its grace period ends.
    Grace,
}

/// One group of the ledger: every listed project is managed on every listed image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// The region of the images (with spec.regions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Glance image IDs.
    pub images: Vec<String>,
    /// Keystone project IDs.
    pub projects: Vec<String>,
}

/// Observed state of one declared member on one image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberState {
    /// Glance image ID.
    pub image: String,
    /// The image's region (with spec.regions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Keystone project ID.
    pub project: String,
    /// Status observed in Glance; absent when the project is not a member (yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MemberStatus>,
    /// Status the spec asks for; absent when the status is left to the consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<MemberStatus>,
    /// Summary of this member: InSync, AwaitingConsumer, Conflict, Failed, Suspended or
    /// Contested.
    pub state: MemberPhase,
    /// Why the member is not in sync, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Summary state of one member.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberPhase {
    /// The member exists with the desired status (or any status, when not managed).
    InSync,
    /// The member is shared but its status waits for the consumer (no consumer credentials,
    /// or the status is left to the consumer and it has not answered).
    AwaitingConsumer,
    /// Another ImageShare contradicts this one about the member: it keeps a different
    /// status, or this one is Exclusive and the other declares a member this one does not.
    Conflict,
    /// Another ImageShare that declares the same member (created earlier) makes the change
    /// both want; it has not yet.
    Progressing,
    /// OpenStack refused or failed a change; see message.
    Failed,
    /// spec.suspend is true and the member differs from the spec.
    Suspended,
    /// Someone else keeps changing this member's status back; the operator waits longer
    /// before each new attempt (see message).
    Contested,
}

impl MemberPhase {
    /// The state as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberPhase::InSync => "InSync",
            MemberPhase::AwaitingConsumer => "AwaitingConsumer",
            MemberPhase::Conflict => "Conflict",
            MemberPhase::Progressing => "Progressing",
            MemberPhase::Failed => "Failed",
            MemberPhase::Suspended => "Suspended",
            MemberPhase::Contested => "Contested",
        }
    }

    /// Every state, for metrics initialisation and tests.
    pub const ALL: [MemberPhase; 7] = [
        MemberPhase::InSync,
        MemberPhase::AwaitingConsumer,
        MemberPhase::Conflict,
        MemberPhase::Progressing,
        MemberPhase::Failed,
        MemberPhase::Suspended,
        MemberPhase::Contested,
    ];
}

/// The bounded set of Ready reasons; also used as Event reasons and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Everything declared is in place.
    InSync,
    /// Removals wait a few seconds: for an undeclared member to be seen twice, or for another
    /// ImageShare that may declare it to process its spec.
    Progressing,
    /// A managed status could not be set: the consumer has to act or give credentials.
    AwaitingConsumer,
    /// spec.suspend is true.
    Suspended,
    /// No image matches spec.image.
    ImageNotFound,
    /// spec.image.name matches more than one image.
    ImageAmbiguous,
    /// The image's visibility is not `shared`, so it cannot have members.
    ImageNotShared,
    /// A referenced Secret or its clouds.yaml entry is missing.
    CredentialsMissing,
    /// Credentials are malformed or rejected by Keystone.
    CredentialsInvalid,
    /// OpenStack refused an operation (HTTP 403) or rejected it as invalid.
    Forbidden,
    /// Glance's member quota for the image is exhausted (HTTP 413).
    MemberQuotaExceeded,
    /// Another ImageShare contradicts this one (a different status for the same member, or
    /// this one is Exclusive and would remove a member the other declares), or another
    /// client keeps changing a managed status back. Agreeing objects are not in conflict.
    Conflict,
    /// A project name (members[].domain) or a domain matches no Keystone project or domain.
    ProjectNotFound,
    /// A passing fault (5xx, timeout, connection error, 429); retried with backoff.
    TransientError,
}

impl Reason {
    /// The reason as written in conditions, Events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InSync => "InSync",
            Reason::Progressing => "Progressing",
            Reason::AwaitingConsumer => "AwaitingConsumer",
            Reason::Suspended => "Suspended",
            Reason::ImageNotFound => "ImageNotFound",
            Reason::ImageAmbiguous => "ImageAmbiguous",
            Reason::ImageNotShared => "ImageNotShared",
            Reason::CredentialsMissing => "CredentialsMissing",
            Reason::CredentialsInvalid => "CredentialsInvalid",
            Reason::Forbidden => "Forbidden",
            Reason::MemberQuotaExceeded => "MemberQuotaExceeded",
            Reason::Conflict => "Conflict",
            Reason::ProjectNotFound => "ProjectNotFound",
            Reason::TransientError => "TransientError",
        }
    }

    /// Whether Ready is True with this reason.
    pub fn is_ready(self) -> bool {
        self == Reason::InSync
    }

    /// The reason named `text`, if it is one of ours.
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether the reason asks a person to look (a Warning Event) rather than reports normal
    /// progress.
    pub fn needs_attention(self) -> bool {
        !matches!(
            self,
            Reason::InSync | Reason::Progressing | Reason::Suspended
        )
    }

    /// Every reason, for metrics initialisation and tests.
    pub const ALL: [Reason; 14] = [
        Reason::InSync,
        Reason::Progressing,
        Reason::AwaitingConsumer,
        Reason::Suspended,
        Reason::ImageNotFound,
        Reason::ImageAmbiguous,
        Reason::ImageNotShared,
        Reason::CredentialsMissing,
        Reason::CredentialsInvalid,
        Reason::Forbidden,
        Reason::MemberQuotaExceeded,
        Reason::Conflict,
        Reason::ProjectNotFound,
        Reason::TransientError,
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ImageShare {
    /// The Ready condition, if the status has one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
    }
}

/// The CRD as YAML, exactly as committed under crds/. Doc comments are wrapped at 100
/// columns in the source; their single line breaks are joined so `kubectl explain` reflows
/// the text itself.
pub fn crd_yaml() -> Result<String, CrdError> {
    let mut crd = serde_json::to_value(ImageShare::crd())?;
    unwrap_descriptions(&mut crd);
    Ok(serde_saphyr::to_string(&crd)?)
}

/// Errors printing the CRD.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The CRD did not convert to JSON.
    #[error("crd to json: {0}")]
    Json(#[from] serde_json::Error),
    /// The CRD did not convert to YAML.
    #[error("crd to yaml: {0}")]
    Yaml(#[from] serde_saphyr::ser::Error),
}

fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "description"
                    && let serde_json::Value::String(text) = child
                {
                    *text = text
                        .split("\n\n")
                        .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                        .collect::<Vec<_>>()
                        .join("\n\n");
                } else {
                    unwrap_descriptions(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_are_compared_and_sent_in_glance_spelling() {
        let glance = "1c779bec-127f-47eb-8356-140d685991dd";
        for spelling in [
            glance,
            "1C779BEC-127F-47EB-8356-140D685991DD",
            "1c779bec127f47eb8356140d685991dd",
        ] {
            assert_eq!(canonical_image_id(spelling), glance, "{spelling}");
        }
        assert_eq!(canonical_image_id("Not-A-Uuid"), "not-a-uuid");
    }

    #[test]
    fn committed_crd_yaml_is_up_to_date() {
        let generated = crd_yaml().unwrap();
        for (path, committed) in [
            (
                "crds/imageshare.dev_imageshares.yaml",
                include_str!("../crds/imageshare.dev_imageshares.yaml"),
            ),
            (
                "deploy/base/crd.yaml",
                include_str!("../deploy/base/crd.yaml"),
            ),
            (
                "deploy/helm/imageshare/crds/imageshare.dev_imageshares.yaml",
                include_str!("../deploy/helm/imageshare/crds/imageshare.dev_imageshares.yaml"),
            ),
        ] {
            assert!(
                committed == generated,
                "{path} is stale: run `make crds` and commit the result"
            );
        }
    }

    #[test]
    fn every_reason_has_a_distinct_name_and_only_in_sync_is_ready() {
        let names: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        assert_eq!(
            Reason::ALL
                .iter()
                .filter(|r| r.is_ready())
                .collect::<Vec<_>>(),
            vec![&Reason::InSync]
        );
    }

    #[test]
    fn every_member_state_is_listed_once_as_status_spells_it() {
        // Every variant as the schema (and so status) spells it: `enum` lists or `const`s.
        fn spellings(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, child) in map {
                        match (key.as_str(), child) {
                            ("const", serde_json::Value::String(s)) => {
                                out.insert(s.clone());
                            }
                            ("enum", serde_json::Value::Array(items)) => out
                                .extend(items.iter().filter_map(|v| v.as_str().map(String::from))),
                            _ => spellings(child, out),
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|i| spellings(i, out)),
                _ => {}
            }
        }
        let schema = serde_json::to_value(schemars::schema_for!(MemberPhase)).unwrap();
        let mut spelled = std::collections::BTreeSet::new();
        spellings(&schema, &mut spelled);
        let listed: std::collections::BTreeSet<String> = MemberPhase::ALL
            .iter()
            .map(|p| p.as_str().to_string())
            .collect();
        assert_eq!(listed.len(), MemberPhase::ALL.len());
        assert_eq!(listed, spelled, "{schema}");
    }

    #[test]
    fn minimal_spec_gets_the_documented_defaults() {
        let spec: ImageShareSpec = serde_json::from_value(serde_json::json!({
            "image": {"id": "1c779bec-127f-47eb-8356-140d685991dd"},
        }))
        .unwrap();
        assert_eq!(spec.membership, Membership::Additive);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert!(!spec.suspend && spec.members.is_empty() && spec.producer.is_none());
    }
}
