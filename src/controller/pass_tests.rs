//! In-process tests of a whole pass ([`super::pass::sync`]) through the seams of
//! [`super::ports`]: a recorded Glance and Keystone and a recording writer share one call
//! log, so a test states what happened in which order. The real stack proves the same
//! behaviour end to end (tests/e2e); these pin the properties a refactoring must keep.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::error::{Error, Operation};
use super::memory::Memory;
use super::pass::{Deps, sync};
use super::ports::{Connect, Glance, Keystone, Note, OsResult, Writer};
use crate::api::{
    CredentialsRef, ImageShare, ImageShareSpec, ImageShareStatus, LedgerEntry, MemberStatus,
};
use crate::controller::fixtures::{self, SpecExt};
use crate::controller::model::Failure;
use crate::leader::Fence;
use crate::metrics::Metrics;
use crate::openstack::keystone::ProjectEntry;
use crate::openstack::{self, Image, ImageQuery, Member, Removal, TerminalKind};

const OWNER: &str = "owner-project";
const IMAGE: &str = "0b0e8a2e-4d43-4f39-9c39-0d0b3c5a7c11";

/// Glance and Keystone as one credential sees them, with the calls made and the answers
/// to give instead of the real ones.
#[derive(Default)]
struct Cloud {
    /// Members per image.
    members: Mutex<BTreeMap<String, BTreeMap<String, MemberStatus>>>,
    /// Failures to answer, by operation, every time.
    failing: Mutex<HashMap<&'static str, openstack::Error>>,
    /// Every call and write, in order (shared with the writer).
    log: Arc<Mutex<Vec<String>>>,
}

impl Cloud {
    fn with_image(members: &[&str]) -> Arc<Cloud> {
        let cloud = Cloud::default();
        let rows = members
            .iter()
            .map(|p| (p.to_string(), MemberStatus::Pending))
            .collect();
        cloud.lock_members().insert(IMAGE.into(), rows);
        Arc::new(cloud)
    }

    fn lock_members(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, MemberStatus>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, operation: &'static str, error: openstack::Error) {
        self.failing.lock().unwrap().insert(operation, error);
    }

    /// Logs the call and returns the failure scripted for it, if any.
    fn call(&self, operation: &'static str, args: &str) -> OsResult<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{operation} {args}").trim().to_string());
        match self.failing.lock().unwrap().get(operation) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn member(image: &str, project: &str, status: MemberStatus) -> Member {
        Member {
            image_id: image.into(),
            member_id: project.into(),
            status,
        }
    }
}

impl Glance for Cloud {
    async fn cloud(&self) -> OsResult<String> {
        Ok("http://keystone.test/v3 http://glance.test".into())
    }
    async fn get_image(&self, id: &str) -> OsResult<Image> {
        self.call("get_image", id)?;
        match self.lock_members().contains_key(id) {
            true => Ok(Image {
                id: id.into(),
                name: Some("golden".into()),
                visibility: "shared".into(),
                owner: Some(OWNER.into()),
                created_at: None,
            }),
            false => Err(openstack::Error::NotFound { what: id.into() }),
        }
    }
    async fn list_images(&self, _: &ImageQuery) -> OsResult<Vec<Image>> {
        unreachable!("the tests name the image by ID")
    }
    async fn list_members(&self, image: &str) -> OsResult<Vec<Member>> {
        self.call("list_members", image)?;
        let members = self.lock_members();
        let rows = members.get(image).into_iter().flatten();
        Ok(rows.map(|(p, s)| Cloud::member(image, p, *s)).collect())
    }
    async fn get_member(&self, _: &str, _: &str) -> OsResult<Member> {
        unreachable!("the tests have a producer")
    }
    async fn create_member(&self, image: &str, project: &str) -> OsResult<Member> {
        self.call("create_member", &format!("{image} {project}"))?;
        let mut members = self.lock_members();
        let rows = members.entry(image.into()).or_default();
        rows.insert(project.into(), MemberStatus::Pending);
        Ok(Cloud::member(image, project, MemberStatus::Pending))
    }
    async fn remove_member(&self, image: &str, project: &str) -> OsResult<Removal> {
        self.call("remove_member", &format!("{image} {project}"))?;
        let mut members = self.lock_members();
        let gone = members.entry(image.into()).or_default().remove(project);
        Ok(gone.map_or(Removal::AlreadyGone, |_| Removal::Removed))
    }
    async fn update_member_status(
        &self,
        image: &str,
        project: &str,
        status: MemberStatus,
    ) -> OsResult<Member> {
        self.call(
            "update_member_status",
            &format!("{image} {project} {status}"),
        )?;
        let mut members = self.lock_members();
        members
            .entry(image.into())
            .or_default()
            .insert(project.into(), status);
        Ok(Cloud::member(image, project, status))
    }
}

impl Keystone for Cloud {
    async fn project_id(&self) -> OsResult<String> {
        Ok(OWNER.into())
    }
    async fn list_projects(
        &self,
        domain_id: &str,
        name: Option<&str>,
        _: &[String],
    ) -> OsResult<Vec<ProjectEntry>> {
        self.call(
            "list_projects",
            &format!("{domain_id} {}", name.unwrap_or_default()),
        )?;
        Ok(Vec::new())
    }
    async fn domain_id(&self, name_or_id: &str) -> OsResult<Option<String>> {
        Ok(Some(name_or_id.to_lowercase()))
    }
    fn describe(&self) -> String {
        "the test credential".into()
    }
}

/// Every credential opens the same cloud.
struct Clouds(Arc<Cloud>);

impl Connect for Clouds {
    type Session = Cloud;
    async fn session(&mut self, _: &CredentialsRef) -> Result<Arc<Cloud>, Failure> {
        Ok(self.0.clone())
    }
}

/// Records status writes (into the cloud's log too) and Events.
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    statuses: Mutex<Vec<ImageShareStatus>>,
    events: Mutex<Vec<Note>>,
}

impl Recorder {
    fn new(cloud: &Cloud) -> Recorder {
        Recorder {
            log: cloud.log.clone(),
            statuses: Mutex::default(),
            events: Mutex::default(),
        }
    }

    fn last_status(&self) -> Option<ImageShareStatus> {
        self.statuses.lock().unwrap().last().cloned()
    }
}

impl Writer for Recorder {
    async fn status(
        &self,
        _: &ImageShare,
        status: &ImageShareStatus,
        version: Option<String>,
        operation: Operation,
    ) -> Result<Option<String>, Error> {
        self.log
            .lock()
            .unwrap()
            .push(format!("status {}", operation.as_str()));
        self.statuses.lock().unwrap().push(status.clone());
        let next = version.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
        Ok(Some(next.to_string()))
    }
    async fn event(&self, _: &ImageShare, note: &Note) {
        self.events.lock().unwrap().push(note.clone());
    }
}

/// An object at generation 1, with `status` as the operator last wrote it.
fn object(spec: ImageShareSpec, status: Option<ImageShareStatus>) -> ImageShare {
    let mut share = ImageShare::new("web", spec);
    share.metadata.namespace = Some("team".into());
    share.metadata.uid = Some("uid-web".into());
    share.metadata.generation = Some(1);
    share.metadata.resource_version = Some("7".into());
    share.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    share.status = status;
    share
}

fn spec() -> ImageShareSpec {
    let mut spec = fixtures::spec();
    spec.image.id = Some(IMAGE.into());
    spec
}

/// One operator pass of `share` with `memory`; returns the requeue delay.
async fn pass(
    share: &ImageShare,
    cloud: &Arc<Cloud>,
    writer: &Recorder,
    memory: &Memory,
) -> Duration {
    let deps = Deps {
        connect: Clouds(cloud.clone()),
        writer,
        memory,
        others: &[],
        fence: &Fence::unfenced(),
    };
    let resync = Duration::from_secs(600);
    match sync(share, deps, &Metrics::default(), resync).await {
        Ok(delay) => delay,
        Err(e) => panic!("the pass failed: {e}"),
    }
}

#[tokio::test]
async fn the_ledger_is_written_before_the_first_add() {
    let cloud = Cloud::with_image(&[]);
    let writer = Recorder::new(&cloud);
    let share = object(spec().member("a", None), None);
    pass(&share, &cloud, &writer, &Memory::default()).await;
    let log = cloud.log();
    let ledger = log.iter().position(|l| l == "status record_ledger");
    let add = log
        .iter()
        .position(|l| l == &format!("create_member {IMAGE} a"));
    assert!(
        matches!((ledger, add), (Some(l), Some(a)) if l < a),
        "{log:?}"
    );
    let first = writer.statuses.lock().unwrap()[0].clone();
    let recorded = vec![LedgerEntry {
        images: vec![IMAGE.into()],
        projects: vec!["a".into()],
    }];
    assert_eq!(
        first.ledger, recorded,
        "the write before the add records it"
    );
    assert_eq!(log.last().map(String::as_str), Some("status update_status"));
}

#[tokio::test]
async fn a_pass_that_changes_nothing_writes_no_status() {
    let cloud = Cloud::with_image(&[]);
    let writer = Recorder::new(&cloud);
    let memory = Memory::default();
    let first = object(spec().member("a", None), None);
    pass(&first, &cloud, &writer, &memory).await;
    let written = writer.last_status();
    assert!(written.is_some());
    let calls = cloud.log().len();
    let second = object(spec().member("a", None), written);
    let delay = pass(&second, &cloud, &writer, &memory).await;
    let log = cloud.log();
    let since: Vec<_> = log[calls..].to_vec();
    assert_eq!(
        since,
        vec![
            format!("get_image {IMAGE}"),
            format!("list_members {IMAGE}")
        ]
    );
    assert!(
        delay >= Duration::from_secs(600),
        "back at the resync: {delay:?}"
    );
}

#[tokio::test]
async fn a_servers_retry_after_holds_every_trigger() {
    let cloud = Cloud::with_image(&[]);
    cloud.fail(
        "create_member",
        openstack::Error::Transient {
            message: "glance answered 429".into(),
            retry_after: Some(Duration::from_secs(60)),
        },
    );
    let writer = Recorder::new(&cloud);
    let memory = Memory::default();
    let share = object(spec().member("a", None), None);
    let delay = pass(&share, &cloud, &writer, &memory).await;
    assert!(delay >= Duration::from_secs(60), "{delay:?}");
    // One attempt: a Retry-After beyond what a pass waits for goes to the backoff.
    let adds = |log: &[String]| {
        log.iter()
            .filter(|l| l.starts_with("create_member"))
            .count()
    };
    assert_eq!(adds(&cloud.log()), 1);
    // A Secret change or an annotation triggers another pass of the same spec: it waits.
    let calls = cloud.log().len();
    let again = object(spec().member("a", None), writer.last_status());
    let left = pass(&again, &cloud, &writer, &memory).await;
    assert_eq!(cloud.log().len(), calls, "no call before the server's time");
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(66),
        "{left:?}"
    );
    // A new spec does not wait.
    let mut edited = again.clone();
    edited.metadata.generation = Some(2);
    pass(&edited, &cloud, &writer, &memory).await;
    assert!(cloud.log().len() > calls);
}

#[tokio::test]
async fn doubt_stops_the_pass_and_revokes_nothing() {
    let cloud = Cloud::with_image(&["a", "old"]);
    cloud.fail(
        "list_projects",
        openstack::Error::Terminal {
            kind: TerminalKind::Forbidden,
            message: "keystone truncated the project list (list_limit)".into(),
        },
    );
    let writer = Recorder::new(&cloud);
    // "old" is in the ledger and no longer declared; "team-b" must be resolved by name.
    let ledger = vec![LedgerEntry {
        images: vec![IMAGE.into()],
        projects: vec!["a".into(), "old".into()],
    }];
    let before = ImageShareStatus {
        observed_generation: Some(1),
        ledger: ledger.clone(),
        ..ImageShareStatus::default()
    };
    let mut spec = spec().member("a", None);
    let mut named = spec.members[0].clone();
    named.project = "team-b".into();
    named.domain = Some("Default".into());
    spec.members.push(named);
    let share = object(spec, Some(before));
    pass(&share, &cloud, &writer, &Memory::default()).await;
    let log = cloud.log();
    assert!(
        !log.iter()
            .any(|l| l.starts_with("remove_member") || l.starts_with("create_member")),
        "{log:?}"
    );
    let status = writer.last_status().unwrap_or_default();
    assert_eq!(status.ledger, ledger, "the ledger is kept");
    let ready = status.conditions.first().map(|c| c.reason.as_str());
    assert_eq!(ready, Some("Forbidden"));
    // And a Glance answer the pass cannot trust (an unconfirmed 404 on remove) keeps it too.
    let cloud = Cloud::with_image(&["old"]);
    cloud.fail(
        "remove_member",
        openstack::Error::Transient {
            message: "404 that neither the member list nor the image list confirms".into(),
            retry_after: None,
        },
    );
    let writer = Recorder::new(&cloud);
    let before = ImageShareStatus {
        observed_generation: Some(1),
        ledger: vec![LedgerEntry {
            images: vec![IMAGE.into()],
            projects: vec!["old".into()],
        }],
        ..ImageShareStatus::default()
    };
    let share = object(self::spec(), Some(before.clone()));
    pass(&share, &cloud, &writer, &Memory::default()).await;
    let status = writer.last_status().unwrap_or_default();
    assert_eq!(status.ledger, before.ledger, "still to be revoked");
    assert_eq!(
        status.conditions.first().map(|c| c.reason.as_str()),
        Some("TransientError")
    );
}
