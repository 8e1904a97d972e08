//! The controller: watches ImageShares (and the Secrets they reference) and runs one pass
//! per object. This module only wires the stages together: `reconcile` is a finalizer
//! dispatch to [`pass::sync`] (live objects) or [`cleanup::cleanup`] (deleted ones).
//!
//! Stages, each in its own module: [`credentials`] (Secrets → sessions, deletion guard) →
//! [`observe`] (Glance) → [`overlap`] (other objects' claims, pure) → [`plan`] (pure) →
//! [`apply`] (Glance) → [`status`] (pure builder) → [`events`]. [`ledger`] is what an object
//! manages; [`contest`] holds back statuses another client keeps reverting; [`sightings`]
//! makes Exclusive see an undeclared member twice before removing it; [`backoff`] times
//! retries and resyncs. Next to the controller, [`guard`] keeps the deletion guard on the
//! producer Secrets that cached objects need.

pub mod apply;
pub mod backoff;
pub mod cleanup;
pub mod contest;
pub mod credentials;
pub mod events;
pub mod guard;
pub mod ledger;
pub mod observe;
pub mod overlap;
pub mod pass;
pub mod plan;
pub mod projects;
pub mod sightings;
pub mod status;

#[cfg(test)]
pub mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;
use tracing::{Instrument, info_span, warn};

use crate::api::{ImageShare, Reason};
use crate::metrics::Metrics;
use crate::openstack::{self, Clouds};
use backoff::Backoff;

pub use backoff::parse_duration;
pub use pass::{Preview, preview};

/// Finalizer that lets the operator remove members before the object goes away.
pub const FINALIZER: &str = "imageshare.dev/cleanup";
/// Field manager for status writes.
pub const MANAGER: &str = "imageshare-operator";
/// Requeue delay when removals wait for another ImageShare to be processed.
pub const DEFERRED_RETRY: Duration = Duration::from_secs(5);

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

/// Errors that make a reconcile fail (and be retried with backoff): Kubernetes API trouble,
/// and a cleanup that is not finished. OpenStack problems of a live object are not errors
/// here: they are reported in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer machinery failed, or the pass or cleanup inside it.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Removing members on deletion failed transiently or waits for another object; the
    /// finalizer stays and it is retried (after the server's Retry-After, if it sent one).
    #[error("cleanup not finished, retrying: {0}")]
    CleanupPending(String, Option<Duration>),
    /// The object has no namespace (ImageShare is namespaced, so this is a bug elsewhere).
    #[error("imageshare {0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// The delay the server asked for, also when the error comes wrapped by the finalizer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CleanupPending(_, retry_after) => *retry_after,
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.retry_after()
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// OpenStack sessions, one per distinct credential.
    pub clouds: Clouds,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Per-object backoff.
    pub backoff: Backoff,
    /// Statuses another client keeps reverting, per object and pair.
    pub contests: contest::Book,
    /// Undeclared members Exclusive objects saw, with when.
    pub sightings: sightings::Sightings,
    /// Resync period when the spec sets none.
    pub default_resync: Duration,
    /// The controller's cache of all ImageShares (for overlaps).
    pub store: Store<ImageShare>,
    /// When this operator started (cleanup retries count from here at the earliest).
    pub started: k8s_openapi::jiff::Timestamp,
    /// Secret versions the deletion guard wrote (their events trigger no pass).
    pub guard_writes: guard::OwnWrites,
    /// When unprocessed objects were first seen (their hold on removals is bounded).
    pub holds: overlap::HoldClock,
    /// Whether this replica may still write to Glance and to status (leader election).
    pub fence: crate::leader::Fence,
}

/// Options of the controller loop.
#[derive(Clone)]
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
    /// Which Keystones and Glance endpoint overrides credentials may use.
    pub policy: openstack::CloudPolicy,
    /// Whether this replica may still write ([`crate::leader::Fence::unfenced`] without
    /// leader election).
    pub fence: crate::leader::Fence,
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
    // Passes are triggered by changes that matter, not by the operator's own status writes
    // (each would trigger an immediate pass, defeating backoff and Retry-After).
    // Every change of either cache wakes the guard keeper (deletions included).
    let wake = Arc::new(Notify::new());
    let (store, writer) = reflector::store();
    let share_wake = wake.clone();
    let changes = watcher(shares, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .inspect(move |_| share_wake.notify_one())
        .applied_objects()
        .predicate_filter(changes_that_matter, Default::default());
    let controller = Controller::for_stream(changes, store.clone());
    let mapper_store = store.clone();
    let ready_store = store.clone();
    let readiness = options.readiness.clone();
    tokio::spawn(async move {
        filled(&ready_store).await;
        readiness.set_ready();
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        clouds: Clouds::new(options.per_cloud_limit)
            .with_policy(options.policy.clone())
            .with_metrics(metrics.openstack()),
        metrics,
        backoff: Backoff::default(),
        contests: contest::Book::default(),
        sightings: sightings::Sightings::default(),
        default_resync: options.default_resync,
        store,
        started: k8s_openapi::jiff::Timestamp::now(),
        guard_writes: guard::OwnWrites::default(),
        holds: overlap::HoldClock::default(),
        fence: options.fence.clone(),
    });
    // Secrets are watched as metadata only (an Api of PartialObjectMeta makes metadata-only
    // requests): a change triggers a pass of the objects that reference the Secret; its data
    // is read (get) only by the pass itself. The operator's own guard finalizer is not a
    // change that needs a pass (with one Secret shared by N objects, it would otherwise make
    // all N pass again).
    let (secret_store, secret_writer) = reflector::store();
    let keeper = guard::keep(
        client.clone(),
        ctx.store.clone(),
        secret_store,
        wake.clone(),
        ctx.guard_writes.clone(),
    );
    let own = ctx.guard_writes.clone();
    let secret_changes = watcher(secrets, watcher::Config::default())
        .default_backoff()
        .reflect(secret_writer)
        .inspect(move |_| wake.notify_one())
        .touched_objects();
    let controller = controller
        .with_config(kube::runtime::controller::Config::default().concurrency(options.concurrency))
        .watches_stream(secret_changes, move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            // Ours: a version the guard wrote, or (its event came before the write's
            // answer) the guard's managed-fields entry is the newest.
            let version = secret.metadata.resource_version.as_deref();
            let ours = own.take(version) || last_change_is_a_guard(&secret.metadata);
            mapper_store
                .state()
                .into_iter()
                .filter(|s| !ours && s.namespace() == ns && references_secret(s, &name))
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    // The keeper never ends by itself; it stops with the controller (shutdown, lost lease).
    tokio::select! {
        () = controller => {}
        () = keeper => {}
    }
}

/// Waits until the cache has been filled by its first list. The store's readiness signal
/// wakes only one waiter, so this asks again every second instead of waiting once.
async fn filled<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        let wait = tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready());
        if let Ok(result) = wait.await {
            if result.is_err() {
                // The writer is gone (the controller is stopping): nothing will fill it.
                std::future::pending::<()>().await;
            }
            return;
        }
    }
}

/// Drops from the cached copy what the controller never reads: managed fields and kubectl's
/// last-applied annotation (a copy of the spec), most of an object's size.
fn trim(share: &mut ImageShare) {
    share.managed_fields_mut().clear();
    if let Some(annotations) = share.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A hash of what makes a new pass worth running: the spec (generation), deletion,
/// finalizers (kube-runtime's finalizer helper waits for that event), labels and
/// annotations (`kubectl annotate` forces a pass). Status changes are left out.
fn changes_that_matter(share: &ImageShare) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = &share.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    Some(hasher.finish())
}

/// Whether the latest change of a Secret (by its managed fields' times) was the operator's
/// deletion guard being set or released, and it is not being deleted. The times have whole
/// seconds: another manager's change in the same second counts as newer, so a credential
/// fixed right after the guard was set still triggers a pass.
fn last_change_is_a_guard(meta: &kube::api::ObjectMeta) -> bool {
    let time = |f: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        f.time.as_ref().map(|t| t.0)
    };
    let entries = meta.managed_fields.iter().flatten();
    let (ours, others): (Vec<_>, Vec<_>) =
        entries.partition(|f| f.manager.as_deref() == Some(guard::MANAGER));
    let newest_other = others.iter().filter_map(|f| time(f)).max();
    meta.deletion_timestamp.is_none()
        && ours
            .iter()
            .filter_map(|f| time(f))
            .max()
            .is_some_and(|t| newest_other.is_none_or(|o| t > o))
}

/// Whether the ImageShare refers to the Secret `name` (same namespace assumed).
fn references_secret(share: &ImageShare, name: &str) -> bool {
    let spec = &share.spec;
    spec.producer
        .iter()
        .chain(&spec.project_reader)
        .chain(spec.members.iter().filter_map(|m| m.consumer.as_ref()))
        .any(|c| c.credentials_ref.secret_name == name)
}

/// One pass, in a span naming the object: the finalizer dispatch.
async fn reconcile(share: Arc<ImageShare>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = share
        .namespace()
        .ok_or_else(|| Error::NoNamespace(share.name_any()))?;
    let span = info_span!("pass", imageshare = %share.name_any(), namespace = %ns);
    let api: Api<ImageShare> = Api::namespaced(ctx.client.clone(), &ns);
    let started = std::time::Instant::now();
    let result = finalizer::finalizer(&api, FINALIZER, share, |event| async {
        match event {
            Finalizer::Apply(share) => pass::sync(&share, &api, &ctx).await,
            Finalizer::Cleanup(share) => cleanup::cleanup(&share, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe_reconcile(started.elapsed());
    ctx.metrics
        .set_keystone_authentications(ctx.clouds.auth_count());
    result
}

fn error_policy(share: Arc<ImageShare>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(imageshare = %share.name_any(), namespace = ?share.namespace(), error = %error, "reconcile failed; retrying with backoff");
    Action::requeue(retry_delay(
        &ctx.backoff,
        &ObjectRef::from_obj(&*share),
        error,
    ))
}

/// How long to wait after a failed reconcile: the object's backoff, at least the server's
/// Retry-After (also when the error comes through the finalizer).
fn retry_delay(backoff: &Backoff, key: &ObjectRef<ImageShare>, error: &Error) -> Duration {
    backoff.next(key, error.retry_after())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{self, SpecExt};

    #[test]
    fn a_cleanup_retry_honours_retry_after_through_the_finalizer() {
        let pending = || Error::CleanupPending("503".into(), Some(Duration::from_secs(120)));
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(pending())));
        let backoff = Backoff::default();
        let key = ObjectRef::new("x").within("ns");
        let delay = retry_delay(&backoff, &key, &wrapped);
        assert!(delay >= Duration::from_secs(120), "{delay:?}");
        assert_eq!(wrapped.retry_after(), pending().retry_after());
    }

    #[test]
    fn other_reconcile_errors_back_off_from_two_seconds() {
        let backoff = Backoff::default();
        let key = ObjectRef::new("x").within("ns");
        let error = Error::NoNamespace("x".into());
        let first = retry_delay(&backoff, &key, &error);
        let second = retry_delay(&backoff, &key, &error);
        assert!(first < Duration::from_secs(3) && second >= Duration::from_secs(4));
    }

    #[test]
    fn a_secret_change_that_was_only_a_guard_triggers_no_pass() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        let at = |secs: i64, manager: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default(),
            )),
            ..Default::default()
        };
        let guard = guard::MANAGER;
        let mut meta = kube::api::ObjectMeta {
            managed_fields: Some(vec![at(100, "kubectl-client-side-apply"), at(200, guard)]),
            ..Default::default()
        };
        assert!(last_change_is_a_guard(&meta));
        meta.managed_fields = Some(vec![at(300, "kubectl-client-side-apply"), at(200, guard)]);
        assert!(!last_change_is_a_guard(&meta), "new data after the guard");
        meta.managed_fields = Some(vec![at(200, guard), at(200, "kubectl-client-side-apply")]);
        assert!(
            !last_change_is_a_guard(&meta),
            "new data in the same second"
        );
        meta.managed_fields = Some(vec![at(200, guard)]);
        meta.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(!last_change_is_a_guard(&meta), "a deletion always counts");
    }

    #[test]
    fn the_cache_keeps_no_managed_fields_nor_last_applied_copy() {
        let mut share = ImageShare::new("x", fixtures::spec());
        share.metadata.managed_fields = Some(vec![Default::default()]);
        share.metadata.annotations = Some(
            [
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{}".to_string(),
                ),
                ("team".to_string(), "a".to_string()),
            ]
            .into(),
        );
        trim(&mut share);
        assert_eq!(share.metadata.managed_fields, Some(vec![]));
        assert_eq!(share.annotations().len(), 1);
    }

    #[test]
    fn status_writes_do_not_trigger_a_pass_but_spec_metadata_and_deletion_do() {
        let mut share = ImageShare::new("x", fixtures::spec());
        share.metadata.generation = Some(1);
        let base = changes_that_matter(&share);
        let mut written = share.clone();
        written.status = Some(crate::api::ImageShareStatus::default());
        written.metadata.resource_version = Some("42".into());
        assert_eq!(changes_that_matter(&written), base);
        let mut edited = share.clone();
        edited.metadata.generation = Some(2);
        let mut poked = share.clone();
        poked.metadata.annotations = Some([("a".to_string(), "1".to_string())].into());
        let mut finalized = share.clone();
        finalized.metadata.finalizers = Some(vec![FINALIZER.into()]);
        for changed in [edited, poked, finalized] {
            assert_ne!(changes_that_matter(&changed), base);
        }
    }

    #[test]
    fn a_secret_change_maps_to_the_imageshares_that_use_it() {
        let mut s = ImageShare::new("x", fixtures::spec());
        assert!(references_secret(&s, "producer-cloud"));
        assert!(!references_secret(&s, "other"));
        s.spec = s
            .spec
            .member_with_consumer("a", crate::api::MemberStatus::Accepted, "team-a");
        assert!(references_secret(&s, "team-a"));
        s.spec.project_reader = s.spec.producer.clone().map(|mut p| {
            p.credentials_ref.secret_name = "reader".into();
            p
        });
        assert!(references_secret(&s, "reader"));
    }
}
