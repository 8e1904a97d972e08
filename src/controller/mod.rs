//! The controller: watches ImageShares (and the Secrets they reference) and runs one pass
//! per object. This module only wires things together: `reconcile` is a finalizer dispatch
//! to [`pass::sync`] (live objects, after the deletion guard) or [`cleanup::cleanup`]
//! (deleted ones). docs/architecture.md draws a pass.
//!
//! - Shared types: [`model`] (IDs, member keys, steps, outcomes, failures), [`error`].
//! - The pass ([`pass`]): [`projects`] (Keystone) → [`observe`] (Glance) → [`overlap`]
//!   (other objects' claims, pure) → [`plan`] (pure) → [`apply`] (Glance), returning a
//!   [`report::PassResult`] from which [`status`], [`events`] and the requeue are derived.
//! - Seams ([`ports`]): Glance, Keystone, the status/Event writer; [`credentials`] opens
//!   sessions from Secrets.
//! - State between passes: [`ledger`] (in status), [`memory`] (in memory: [`backoff`],
//!   [`contest`], sightings, holds).
//! - Next to the controller, [`guard`] keeps the deletion guard on the producer Secrets
//!   that cached objects need; [`context`] is what every reconcile shares.

pub mod apply;
pub mod backoff;
pub mod cleanup;
pub mod contest;
pub mod context;
pub mod credentials;
pub mod error;
pub mod events;
pub mod guard;
pub mod ledger;
pub mod memory;
pub mod model;
pub mod observe;
pub mod overlap;
pub mod pass;
pub mod plan;
pub mod ports;
pub mod projects;
pub mod report;
pub mod rotation;
pub mod shard;
pub mod status;

#[cfg(test)]
pub mod fixtures;
#[cfg(test)]
mod pass_tests;

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

use crate::api::ImageShare;
use crate::metrics::Metrics;
use crate::openstack::{self, Clouds};
use context::Context;
use credentials::Sessions;
use error::Error;
use memory::Memory;
use ports::{Connect, KubeWriter};

pub use backoff::parse_duration;
pub use model::Failure;
pub use pass::preview;
pub use ports::MANAGER;

/// Finalizer that lets the operator remove members before the object goes away.
pub const FINALIZER: &str = "imageshare.dev/cleanup";

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
    /// The ImageShares this installation reconciles (all of them are watched).
    pub shard: shard::Shard,
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
    // The state gauges count this cache (this shard's objects) while the controller runs.
    let counted = options.shard.clone();
    let _counting = metrics.count_cache(store.clone(), Box::new(move |s| counted.handles(s)));
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
    let (secret_store, secret_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        writer: KubeWriter {
            client: client.clone(),
        },
        clouds: Clouds::new(options.per_cloud_limit)
            .with_policy(options.policy.clone())
            .with_metrics(metrics.openstack()),
        metrics,
        memory: Memory::default(),
        default_resync: options.default_resync,
        store,
        started: k8s_openapi::jiff::Timestamp::now(),
        guard_writes: guard::OwnWrites::default(),
        fence: options.fence.clone(),
        shard: options.shard.clone(),
        secrets: secret_store.clone(),
        secret_cache: Default::default(),
    });
    // Secrets are watched as metadata only (an Api of PartialObjectMeta makes metadata-only
    // requests): a change triggers a pass of the objects that reference the Secret; its data
    // is read (get) only by a pass, once per resourceVersion (credentials::SecretCache). The
    // operator's own guard finalizer is not a
    // change that needs a pass (with one Secret shared by N objects, it would otherwise make
    // all N pass again).
    let keeper = guard::keep(
        client.clone(),
        ctx.store.clone(),
        secret_store,
        wake.clone(),
        ctx.guard_writes.clone(),
    );
    let own = ctx.guard_writes.clone();
    let shard = ctx.shard.clone();
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
                .filter(|s| shard.handles(s))
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
    if !ctx.shard.handles(&share) {
        // Another installation's (--shard-selector); watched only for overlaps.
        return Ok(Action::await_change());
    }
    let ns = share
        .namespace()
        .ok_or_else(|| Error::NoNamespace(share.name_any()))?;
    let span = info_span!("pass", imageshare = %share.name_any(), namespace = %ns);
    let api: Api<ImageShare> = Api::namespaced(ctx.client.clone(), &ns);
    let started = std::time::Instant::now();
    let result = finalizer::finalizer(&api, FINALIZER, share, |event| async {
        match event {
            Finalizer::Apply(share) => live(&share, &ctx).await,
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

/// The pass of a live object with the operator's own clients: the deletion guard first
/// (Kubernetes only), then [`pass::sync`].
async fn live(share: &ImageShare, ctx: &Context) -> Result<Action, Error> {
    let mut sessions = Sessions::new(&ctx.client, &ctx.clouds, share).knowing(ctx.known_secrets());
    guard(share, &mut sessions, &ctx.guard_writes).await;
    let others = ctx.store.state();
    let deps = pass::Deps {
        connect: sessions,
        writer: &ctx.writer,
        memory: &ctx.memory,
        others: &others,
        fence: &ctx.fence,
    };
    let delay = pass::sync(share, deps, &ctx.metrics, ctx.default_resync).await?;
    Ok(Action::requeue(delay))
}

/// Puts the deletion guard on the producer Secret this object needs, before any member is
/// added (the guard keeper would too, a moment later). Runs on every pass, also when the
/// rest of the pass fails; a failure is logged and retried by the keeper.
async fn guard(share: &ImageShare, sessions: &mut Sessions<'_>, own: &guard::OwnWrites) {
    let (Some(name), Some(producer)) = (guard::needs_guard(share), &share.spec.producer) else {
        return;
    };
    // Reads the Secret (the pass needs it anyway; a broken one still gets the guard).
    let _ = sessions.session(&producer.credentials_ref, None).await;
    if let Err(e) = sessions.guard(name, own).await {
        warn!(secret = name, error = %e, "could not put the deletion guard on the producer secret");
    }
}

fn error_policy(share: Arc<ImageShare>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(imageshare = %share.name_any(), namespace = ?share.namespace(), error = %error, "reconcile failed; retrying with backoff");
    ctx.metrics.count_error(error.metric_label());
    Action::requeue(retry_delay(
        &ctx.memory,
        &ObjectRef::from_obj(&*share),
        error,
    ))
}

/// How long to wait after a failed reconcile: the object's backoff, at least the server's
/// Retry-After (also when the error comes through the finalizer). A cleanup that only waits
/// for another object comes back soon, as a live pass that waits does: waiting is not a
/// failure, and a growing backoff would keep the object long after the wait ended.
fn retry_delay(memory: &Memory, key: &ObjectRef<ImageShare>, error: &Error) -> Duration {
    if error.is_deferral() {
        return report::DEFERRED_RETRY;
    }
    memory.failed(key, error.retry_after())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{self, SpecExt};

    #[test]
    fn a_cleanup_retry_honours_retry_after_through_the_finalizer() {
        let pending = || Error::CleanupPending("503".into(), Some(Duration::from_secs(120)));
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(pending())));
        let memory = Memory::default();
        let key = ObjectRef::new("x").within("ns");
        let delay = retry_delay(&memory, &key, &wrapped);
        assert!(delay >= Duration::from_secs(120), "{delay:?}");
        assert_eq!(wrapped.retry_after(), pending().retry_after());
    }

    #[test]
    fn a_cleanup_that_waits_for_another_object_comes_back_soon_without_backing_off() {
        let deferred = || Error::CleanupDeferred("waiting".into());
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(deferred())));
        let memory = Memory::default();
        let key = ObjectRef::new("x").within("ns");
        for _ in 0..6 {
            assert_eq!(retry_delay(&memory, &key, &wrapped), report::DEFERRED_RETRY);
        }
        assert_eq!(memory.failures(&key), 0);
    }

    #[test]
    fn other_reconcile_errors_back_off_from_two_seconds() {
        let memory = Memory::default();
        let key = ObjectRef::new("x").within("ns");
        let error = Error::NoNamespace("x".into());
        let first = retry_delay(&memory, &key, &error);
        let second = retry_delay(&memory, &key, &error);
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
