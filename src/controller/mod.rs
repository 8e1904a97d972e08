//! The controller: watches ImageShares (and the Secrets they reference), and runs one pass
//! per object: read credentials, resolve images, observe members, plan, apply, write status.
//!
//! `reconcile` is a finalizer dispatch; the decisions are pure ([`plan`], [`status`]); I/O
//! sits in [`observe`], [`apply`] and the status writer here.

pub mod apply;
pub mod backoff;
pub mod observe;
pub mod plan;
pub mod status;

#[cfg(test)]
pub mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::api::{DeletionPolicy, ImageShare, ImageShareStatus, Reason};
use crate::metrics::Metrics;
use crate::openstack::{self, Clouds};
use backoff::Backoff;
use observe::Sessions;
use plan::{Step, cleanup_plan, plan};
use status::{Outcome, Report};

/// Finalizer that lets the operator remove members before the object goes away.
pub const FINALIZER: &str = "imageshare.dev/cleanup";
/// Field manager for status writes.
pub const MANAGER: &str = "imageshare-operator";
/// How long a Delete cleanup may keep failing transiently before the finalizer is released.
const CLEANUP_GIVE_UP: Duration = Duration::from_secs(15 * 60);
/// Requeue delay when removals waited for another ImageShare to resolve its images.
const DEFERRED_RETRY: Duration = Duration::from_secs(5);
/// Requeue delay after a pass that changed Glance, to confirm the result.
const CONFIRM_AFTER: Duration = Duration::from_secs(2);

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

/// Errors that make a reconcile fail (and be retried with backoff): Kubernetes API trouble.
/// OpenStack problems are not errors here: they are reported in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Removing members on deletion failed transiently; the finalizer stays and it is retried
    /// (after the server's Retry-After, if it sent one).
    #[error("cleanup not finished, retrying: {0}")]
    CleanupPending(String, Option<Duration>),
    /// The object has no namespace (ImageShare is namespaced, so this is a bug elsewhere).
    #[error("imageshare {0} has no namespace")]
    NoNamespace(String),
}

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// OpenStack sessions, one per distinct credential.
    pub clouds: Clouds,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Per-object backoff.
    pub backoff: Backoff,
    /// Resync period when the spec sets none.
    pub default_resync: Duration,
    /// The controller's cache of all ImageShares (for overlap detection).
    pub store: Store<ImageShare>,
}

/// Options of the controller loop.
pub struct Options {
    /// Watch only this namespace (all when None).
    pub namespace: Option<String>,
    /// Objects reconciled at once.
    pub concurrency: u16,
    /// Resync period when the spec sets none.
    pub default_resync: Duration,
    /// Concurrent requests per cloud credential.
    pub per_cloud_limit: usize,
    /// Marked ready once the ImageShare cache is filled.
    pub readiness: crate::http::Readiness,
}

/// Runs the controller until shutdown is requested (SIGTERM/ctrl-c).
pub async fn run(client: Client, options: Options, metrics: Arc<Metrics>) {
    let (shares, secrets): (Api<ImageShare>, Api<PartialObjectMeta<Secret>>) =
        match &options.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let controller = Controller::new(shares, watcher::Config::default().any_semantic());
    let store = controller.store();
    let mapper_store = store.clone();
    let ready_store = store.clone();
    let readiness = options.readiness.clone();
    tokio::spawn(async move {
        // The store's readiness signal wakes only one waiter (the controller itself), so ask
        // again every second instead of waiting once.
        loop {
            let wait = tokio::time::timeout(Duration::from_secs(1), ready_store.wait_until_ready());
            match wait.await {
                Ok(Ok(())) => break readiness.set_ready(),
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        clouds: Clouds::new(options.per_cloud_limit),
        recorder: Recorder::new(client.clone(), Reporter::from(MANAGER)),
        metrics,
        backoff: Backoff::default(),
        default_resync: options.default_resync,
        store,
    });
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(options.concurrency))
        .watches(secrets, watcher::Config::default(), move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            mapper_store
                .state()
                .into_iter()
                .filter(|s| s.namespace() == ns && references_secret(s, &name))
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Whether the ImageShare refers to the Secret `name` (same namespace assumed).
fn references_secret(share: &ImageShare, name: &str) -> bool {
    let spec = &share.spec;
    spec.producer
        .iter()
        .chain(spec.members.iter().filter_map(|m| m.consumer.as_ref()))
        .any(|c| c.credentials_ref.secret_name == name)
}

async fn reconcile(share: Arc<ImageShare>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = share
        .namespace()
        .ok_or_else(|| Error::NoNamespace(share.name_any()))?;
    let api: Api<ImageShare> = Api::namespaced(ctx.client.clone(), &ns);
    let started = std::time::Instant::now();
    let result = finalizer(&api, FINALIZER, share, |event| async {
        match event {
            Finalizer::Apply(share) => sync(&share, &api, &ctx).await,
            Finalizer::Cleanup(share) => cleanup(&share, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe_reconcile(started.elapsed());
    ctx.metrics
        .set_keystone_authentications(ctx.clouds.auth_count());
    result
}

fn error_policy(share: Arc<ImageShare>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(imageshare = %share.name_any(), namespace = ?share.namespace(), error = %error, "reconcile failed; retrying with backoff");
    let retry_after = match error {
        Error::CleanupPending(_, retry_after) => *retry_after,
        _ => None,
    };
    Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(&*share), retry_after))
}

/// One pass for a live object: observe, plan, apply, report.
async fn sync(share: &ImageShare, api: &Api<ImageShare>, ctx: &Context) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(share);
    let claims = overlap::claims(share, &ctx.store.state());
    let mut sessions = Sessions::new(&ctx.client, &ctx.clouds, share);
    let report = match observe::observe(share, &mut sessions, claims).await {
        Err(failure) => Report::failed(failure),
        Ok(mut report) => {
            let plan = plan(&share.spec, &report.images, &report.claims);
            report.deferred = plan.deferred;
            if !share.spec.suspend {
                report.outcomes = apply::apply(share, &mut sessions, plan.steps).await;
            }
            report
        }
    };
    let status = write_status(share, api, ctx, &report).await?;
    publish_step_events(share, ctx, &report).await;

    let reason = status
        .conditions
        .first()
        .and_then(|c| Reason::parse(&c.reason))
        .unwrap_or(Reason::TransientError);
    ctx.metrics.count_pass(reason);
    let transient = report
        .failure
        .as_ref()
        .filter(|f| f.is_transient())
        .or_else(|| {
            report
                .outcomes
                .iter()
                .find_map(|(_, o)| match o {
                    Outcome::Failed(f) if f.is_transient() => Some(f),
                    _ => None,
                })
                .or_else(|| report.member_failures.values().find(|f| f.is_transient()))
        });
    if let Some(f) = transient {
        if report.changed_anything() {
            // Progress was made: retry soon rather than backing off further.
            ctx.backoff.reset(&key);
        }
        return Ok(Action::requeue(ctx.backoff.next(&key, f.retry_after)));
    }
    ctx.backoff.reset(&key);
    if report.changed_anything() {
        return Ok(Action::requeue(CONFIRM_AFTER));
    }
    if report.deferred {
        return Ok(Action::requeue(DEFERRED_RETRY));
    }
    Ok(Action::requeue(backoff::jitter(resync_period(share, ctx))))
}

/// A dry run of one pass (the `plan` command): resolves the image(s), reads the members and
/// returns what a pass would observe and do, given all ImageShares (for overlaps). Changes
/// nothing; `Err` is the failure that would stop the pass.
pub async fn preview(
    client: &Client,
    clouds: &Clouds,
    share: &ImageShare,
    all: &[Arc<ImageShare>],
) -> Result<(Report, plan::Plan), Failure> {
    let mut sessions = Sessions::new(client, clouds, share);
    let report = observe::observe(share, &mut sessions, overlap::claims(share, all)).await?;
    let plan = plan(&share.spec, &report.images, &report.claims);
    Ok((report, plan))
}

/// The object's resync period (spec, else the operator default), kept within 30s..24h even
/// if the CRD's validation was bypassed.
fn resync_period(share: &ImageShare, ctx: &Context) -> Duration {
    share
        .spec
        .resync_period
        .as_deref()
        .and_then(parse_duration)
        .unwrap_or(ctx.default_resync)
        .clamp(Duration::from_secs(30), Duration::from_secs(24 * 3600))
}

/// Parses durations like `90s`, `10m`, `1h30m` (the CRD's pattern). None if malformed.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut number = String::new();
    for ch in text.chars() {
        match ch {
            '0'..='9' | '.' => number.push(ch),
            's' | 'm' | 'h' => {
                let value: f64 = number.parse().ok()?;
                total += value
                    * match ch {
                        's' => 1.0,
                        'm' => 60.0,
                        _ => 3600.0,
                    };
                number.clear();
            }
            _ => return None,
        }
    }
    if !number.is_empty() || total <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Builds and (only if changed) writes the status; emits an Event when Ready's reason changes.
async fn write_status(
    share: &ImageShare,
    api: &Api<ImageShare>,
    ctx: &Context,
    report: &Report,
) -> Result<ImageShareStatus, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let previous = share.status.as_ref();
    let mut new = status::build(
        &share.spec,
        share.metadata.generation,
        report,
        previous,
        &now,
    );
    if !status::needs_write(previous, &new) {
        return Ok(new);
    }
    new.last_sync_time = Some(now);
    let patch = serde_json::json!({
        "apiVersion": ImageShare::api_version(&()),
        "kind": ImageShare::kind(&()),
        "status": new,
    });
    api.patch_status(
        &share.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;

    let old_reason = share.ready_condition().map(|c| c.reason.clone());
    if let Some(ready) = new.conditions.first()
        && old_reason.as_deref() != Some(ready.reason.as_str())
    {
        let warning = Reason::parse(&ready.reason).is_none_or(Reason::needs_attention);
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        info!(imageshare = %share.name_any(), namespace = ?share.namespace(), reason = %ready.reason, message = %ready.message, "ready changed");
        publish(share, ctx, type_, &ready.reason, &ready.message).await;
    }
    Ok(new)
}

/// One Event per change made in Glance, and one per step OpenStack refused.
async fn publish_step_events(share: &ImageShare, ctx: &Context, report: &Report) {
    for (step, outcome) in &report.outcomes {
        let (reason, note) = match (step, outcome) {
            (Step::Add { image, project }, Outcome::Done) => (
                "MemberAdded",
                format!("added project {project} to image {image}"),
            ),
            (Step::Remove { image, project }, Outcome::Done) => (
                "MemberRemoved",
                format!("removed project {project} from image {image}"),
            ),
            (
                Step::SetStatus {
                    image,
                    project,
                    status,
                    ..
                },
                Outcome::Done,
            ) => (
                "MemberStatusSet",
                format!("set project {project} on image {image} to {status}"),
            ),
            (_, Outcome::AwaitingConsumer | Outcome::Unchanged) => continue,
            // Passing faults are retried; the log and the Ready condition tell about them.
            (_, Outcome::Failed(f)) if f.is_transient() => continue,
            (_, Outcome::Failed(f)) => (f.reason.as_str(), f.message.clone()),
        };
        let type_ = match outcome {
            Outcome::Done => EventType::Normal,
            _ => EventType::Warning,
        };
        info!(imageshare = %share.name_any(), namespace = ?share.namespace(), reason, note = %note, "event");
        publish(share, ctx, type_, reason, &note).await;
    }
}

async fn publish(share: &ImageShare, ctx: &Context, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &share.object_ref(&())).await {
        warn!(imageshare = %share.name_any(), error = %e, "could not publish event");
    }
}

/// Deletion: with Delete, remove the declared members (never blocking forever), then let the
/// finalizer go.
async fn cleanup(share: &ImageShare, ctx: &Context) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(share);
    // Orphan keeps the members; so does a suspended object (it changes nothing); without a
    // producer there is nothing this object may remove.
    if share.spec.deletion_policy == DeletionPolicy::Orphan
        || share.spec.suspend
        || share.spec.producer.is_none()
    {
        ctx.backoff.reset(&key);
        return Ok(Action::await_change());
    }
    let claims = overlap::claims(share, &ctx.store.state());
    let mut sessions = Sessions::new(&ctx.client, &ctx.clouds, share);
    let failure = match observe::observe_for_cleanup(share, &mut sessions, claims).await {
        Err(failure) => Some(failure),
        Ok(report) => {
            let steps = cleanup_plan(&share.spec, &report.images, &report.claims).steps;
            let mut cleaned = report;
            cleaned.outcomes = apply::apply(share, &mut sessions, steps).await;
            publish_step_events(share, ctx, &cleaned).await;
            cleaned.outcomes.into_iter().find_map(|(_, o)| match o {
                Outcome::Failed(f) => Some(f),
                _ => None,
            })
        }
    };
    let Some(failure) = failure else {
        ctx.backoff.reset(&key);
        return Ok(Action::await_change());
    };
    let deleting_for = share
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| {
            let secs = k8s_openapi::jiff::Timestamp::now()
                .duration_since(t.0)
                .as_secs();
            Duration::from_secs(secs.max(0) as u64)
        })
        .unwrap_or_default();
    if failure.is_transient() && deleting_for < CLEANUP_GIVE_UP {
        return Err(Error::CleanupPending(failure.message, failure.retry_after));
    }
    let note = format!(
        "members may be left in Glance; finalizer released: {}",
        failure.message
    );
    warn!(imageshare = %share.name_any(), reason = %failure.reason, note = %note, "cleanup gave up");
    publish(
        share,
        ctx,
        EventType::Warning,
        failure.reason.as_str(),
        &note,
    )
    .await;
    ctx.backoff.reset(&key);
    Ok(Action::await_change())
}

/// Overlap detection between ImageShares: which (image, project) pairs an earlier object
/// already declares. Pure over the cached objects.
pub mod overlap {
    use super::*;
    use crate::controller::plan::Claims;

    /// What the other ImageShares declare, as seen by `share`:
    /// - every (image, project) pair they declare (protected from removal);
    /// - projects of objects whose images are not resolved yet (protected on every image);
    /// - pairs `share` also declares that an object created earlier (creation time, then
    ///   namespace/name) manages the same way: both add members (both have a producer), or
    ///   both set the member's status. A producer object and a consumer-only object that only
    ///   sets the status split the work and do not conflict.
    pub fn claims(share: &ImageShare, all: &[Arc<ImageShare>]) -> Claims {
        let order = |s: &ImageShare| {
            (
                s.metadata.creation_timestamp.clone().map(|t| t.0),
                s.namespace().unwrap_or_default(),
                s.name_any(),
            )
        };
        let mine = order(share);
        let mut claims = Claims::default();
        for other in all {
            if other.uid() == share.uid() || other.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let earlier = order(other) < mine;
            let owner = format!(
                "{}/{}",
                other.namespace().unwrap_or_default(),
                other.name_any()
            );
            let status = other.status.as_ref();
            // Not processed yet for its current spec: its images are unknown. (One that was
            // processed and found no image protects nothing.)
            let resolved = other.spec.image.id.is_some()
                || status.is_some_and(|s| s.observed_generation == other.metadata.generation);
            if !resolved {
                claims
                    .unresolved_projects
                    .extend(other.spec.members.iter().map(|m| m.project.clone()));
            }
            let images = status
                .iter()
                .flat_map(|s| s.images.iter().map(|i| i.id.clone()))
                .chain(other.spec.image.id.clone());
            for image in images {
                for theirs in &other.spec.members {
                    let pair = (image.clone(), theirs.project.clone());
                    let ours = share
                        .spec
                        .members
                        .iter()
                        .find(|m| m.project == theirs.project);
                    let clash = ours.is_some_and(|ours| {
                        (share.spec.producer.is_some() && other.spec.producer.is_some())
                            || (ours.status.is_some() && theirs.status.is_some())
                    });
                    if earlier && clash {
                        claims
                            .earlier
                            .entry(pair.clone())
                            .or_insert_with(|| owner.clone());
                    }
                    claims.others.insert(pair);
                }
            }
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_durations_parse_like_the_crd_pattern() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("abc"), None);
        assert_eq!(parse_duration(&format!("{}h", "9".repeat(400))), None);
    }

    fn share(name: &str, created: i64, projects: &[&str]) -> Arc<ImageShare> {
        let mut spec = fixtures::spec();
        for p in projects {
            spec = fixtures::SpecExt::member(spec, p, None);
        }
        let mut s = ImageShare::new(name, spec);
        s.metadata.namespace = Some("team".into());
        s.metadata.uid = Some(name.into());
        s.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or_default(),
        ));
        Arc::new(s)
    }

    #[test]
    fn only_the_later_imageshare_conflicts_and_only_on_shared_projects() {
        let first = share("first", 100, &["a", "b"]);
        let second = share("second", 200, &["b", "c"]);
        let all = vec![first.clone(), second.clone()];
        let claims = overlap::claims(&second, &all);
        assert_eq!(claims.earlier.len(), 1);
        assert!(
            claims
                .others
                .contains(&("img".to_string(), "a".to_string()))
        );
        assert_eq!(
            claims.earlier.get(&("img".to_string(), "b".to_string())),
            Some(&"team/first".to_string())
        );
        let of_first = overlap::claims(&first, &all);
        assert!(of_first.earlier.is_empty());
        assert!(
            of_first
                .others
                .contains(&("img".to_string(), "c".to_string())),
            "the later one's members are protected too"
        );
    }

    #[test]
    fn a_secret_change_maps_to_the_imageshares_that_use_it() {
        let mut s = (*share("x", 1, &[])).clone();
        assert!(references_secret(&s, "producer-cloud"));
        assert!(!references_secret(&s, "other"));
        s.spec = fixtures::SpecExt::member_with_consumer(
            s.spec,
            "a",
            crate::api::MemberStatus::Accepted,
            "team-a",
        );
        assert!(references_secret(&s, "team-a"));
    }
}
