//! Deletion guard on producer Secrets. A Secret carries the one finalizer [`FINALIZER`]
//! exactly while some ImageShare in the cache may need it to remove members
//! ([`needs_guard`]), so deleting the Secret first, or the whole namespace, never leaks a
//! member. All objects share the finalizer, put on under one field manager ([`MANAGER`]):
//! a pass puts it on before its first Glance write ([`set`]), and the keeper ([`keep`])
//! sweeps the caches after every change (and every minute), putting it where it is missing
//! and taking it off once no cached object needs the Secret ([`release`]). The decision
//! ([`changes`]) is pure and looks at the cache as a whole, never at one deleted object, so
//! objects deleted together never wait for each other: the Secret is released when the last
//! one is gone. The finalizer is the operator's to remove whoever added it: a Secret copied
//! with its metadata carries it under another field manager, so the release is a JSON patch
//! on the list, not a server-side apply (which would only drop the operator's own claim on
//! the entry).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::api::{DeletionPolicy, ImageShare};

/// The finalizer on a producer Secret some ImageShare may still need.
pub const FINALIZER: &str = "imageshare.dev/credentials-in-use";
/// The field manager that owns [`FINALIZER`] (server-side apply touches nothing else).
pub const MANAGER: &str = "imageshare.dev-credentials-in-use";
/// A sweep waits this long after a change, so a burst of changes makes one sweep.
const SETTLE: Duration = Duration::from_millis(200);
/// Sweeps also run this often without a change (and sooner after a failed write).
const RESWEEP: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(5);

/// The producer Secret `share` needs in order to remove its members when it is deleted:
/// with a producer, deletionPolicy Delete and not suspended.
pub fn needs_guard(share: &ImageShare) -> Option<&str> {
    let spec = &share.spec;
    let producer = spec.producer.as_ref()?;
    (spec.deletion_policy == DeletionPolicy::Delete && !spec.suspend)
        .then_some(producer.credentials_ref.secret_name.as_str())
}

/// The resourceVersions of the Secret writes the guard made, so that their watch events
/// trigger no pass (one Secret shared by N objects would otherwise make all N pass again).
#[derive(Clone, Default)]
pub struct OwnWrites(Arc<Mutex<HashSet<String>>>);

impl OwnWrites {
    /// At most this many are remembered (a write whose event never came is forgotten).
    const MAX: usize = 10_000;

    fn record(&self, version: Option<String>) {
        let mut versions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if versions.len() >= Self::MAX {
            versions.clear();
        }
        versions.extend(version);
    }

    /// Whether this Secret version is one the guard wrote (forgotten once asked).
    pub fn take(&self, version: Option<&str>) -> bool {
        let mut versions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        version.is_some_and(|v| versions.remove(v))
    }
}

/// Whether the Secret carries the guard.
pub fn is_guarded(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// One Secret whose guard must be put on (`guard`) or taken off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// Put the guard on (true) or take it off (false).
    pub guard: bool,
}

/// What makes the Secrets' guards match the ImageShares: on for a needed Secret that lacks
/// it (unless the Secret is being deleted: no finalizer can be added then), off for a
/// guarded Secret no ImageShare needs. Both lists must be complete caches.
pub fn changes(
    shares: &[Arc<ImageShare>],
    secrets: &[Arc<PartialObjectMeta<Secret>>],
) -> Vec<Change> {
    let needed: HashSet<(String, &str)> = shares
        .iter()
        .filter_map(|s| Some((s.namespace()?, needs_guard(s)?)))
        .collect();
    secrets
        .iter()
        .filter_map(|secret| {
            let namespace = secret.namespace()?;
            let name = secret.name_any();
            let need = needed.contains(&(namespace.clone(), name.as_str()));
            let has = is_guarded(&secret.metadata);
            let deleting = secret.metadata.deletion_timestamp.is_some();
            (need != has && !(need && deleting)).then_some(Change {
                namespace,
                name,
                guard: need,
            })
        })
        .collect()
}

/// Puts the guard on Secret `name` by server-side apply under [`MANAGER`]: other
/// finalizers and fields are untouched, and no read-modify-write race exists (an entry
/// another manager already added is shared, not duplicated). A Secret that is gone needs
/// nothing. The version written is recorded in `own`.
pub async fn set(secrets: &Api<Secret>, name: &str, own: &OwnWrites) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "finalizers": [FINALIZER]},
    });
    match secrets
        .patch_metadata(name, &PatchParams::apply(MANAGER), &Patch::Apply(&patch))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
        Ok(written) => {
            own.record(written.metadata.resource_version);
            Ok(())
        }
    }
}

/// Attempts of a release before it is left to the next sweep (each one reads the Secret
/// again after the finalizer list changed under it).
const RELEASE_ATTEMPTS: usize = 5;

/// The position of the guard in the Secret's finalizer list.
pub fn guard_index(meta: &ObjectMeta) -> Option<usize> {
    meta.finalizers
        .iter()
        .flatten()
        .position(|f| f == FINALIZER)
}

/// The JSON patch that removes the guard at `index`, only if it is still there: a `test` of
/// the entry, then its `remove`. If the list changed meanwhile, the test fails and nothing
/// is changed.
pub fn release_patch(index: usize) -> serde_json::Value {
    let path = format!("/metadata/finalizers/{index}");
    serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ])
}

/// Takes the guard off Secret `name`, whoever added it and whichever field manager owns it:
/// reads the Secret, removes the entry by [`release_patch`], and reads the answer. When the
/// list changed under the patch (its test fails) or the guard is somehow still listed, it
/// reads again and retries, [`RELEASE_ATTEMPTS`] times at most. Returns whether the guard
/// is gone (a Secret that is gone counts); versions written are recorded in `own`.
pub async fn release(
    secrets: &Api<Secret>,
    name: &str,
    own: &OwnWrites,
) -> Result<bool, kube::Error> {
    let patch_params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    for _ in 0..RELEASE_ATTEMPTS {
        let Some(current) = secrets.get_metadata_opt(name).await? else {
            return Ok(true);
        };
        let Some(index) = guard_index(&current.metadata) else {
            return Ok(true);
        };
        let patch: Patch<()> = Patch::Json(
            serde_json::from_value(release_patch(index)).map_err(kube::Error::SerdeError)?,
        );
        match secrets.patch_metadata(name, &patch_params, &patch).await {
            Ok(written) => {
                own.record(written.metadata.resource_version.clone());
                if guard_index(&written.metadata).is_none() {
                    return Ok(true);
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(true),
            // The test failed (the list changed since it was read) or a conflict: read again.
            Err(kube::Error::Api(e)) if matches!(e.code, 400 | 409 | 422) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Keeps the guards matching the caches until dropped (it runs with the controller, so
/// only on the leader). Sweeps once both caches are filled, then after every change
/// `wake` reports.
pub async fn keep(
    client: Client,
    shares: Store<ImageShare>,
    secrets: Store<PartialObjectMeta<Secret>>,
    wake: Arc<Notify>,
    own: OwnWrites,
) {
    super::filled(&shares).await;
    super::filled(&secrets).await;
    loop {
        let mut failed = false;
        for change in changes(&shares.state(), &secrets.state()) {
            let api = Api::namespaced(client.clone(), &change.namespace);
            let (namespace, secret) = (&change.namespace, &change.name);
            let result = if change.guard {
                set(&api, secret, &own).await.map(|()| true)
            } else {
                release(&api, secret, &own).await
            };
            match result {
                Ok(true) if change.guard => info!(%namespace, %secret, "deletion guard set"),
                Ok(true) => {
                    info!(%namespace, %secret, "deletion guard released: no ImageShare needs the secret")
                }
                Ok(false) => {
                    failed = true;
                    warn!(%namespace, %secret, attempts = RELEASE_ATTEMPTS, "deletion guard still on the secret (its finalizers kept changing); retrying");
                }
                Err(error) => {
                    failed = true;
                    warn!(%namespace, %secret, %error, guard = change.guard, "could not change the deletion guard; retrying");
                }
            }
        }
        let idle = if failed { RETRY } else { RESWEEP };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(idle) => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{self, SpecExt};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn share(ns: &str, name: &str) -> Arc<ImageShare> {
        let mut s = ImageShare::new(name, fixtures::spec().member("a", None));
        s.metadata.namespace = Some(ns.into());
        Arc::new(s)
    }

    fn secret(ns: &str, name: &str, guarded: bool) -> Arc<PartialObjectMeta<Secret>> {
        let mut meta = PartialObjectMeta::<Secret>::default();
        meta.metadata.namespace = Some(ns.into());
        meta.metadata.name = Some(name.into());
        if guarded {
            meta.metadata.finalizers = Some(vec!["other/keep".into(), FINALIZER.into()]);
        }
        Arc::new(meta)
    }

    fn change(ns: &str, name: &str, guard: bool) -> Change {
        Change {
            namespace: ns.into(),
            name: name.into(),
            guard,
        }
    }

    #[test]
    fn the_release_patch_tests_the_entry_at_its_index_before_removing_it() {
        let meta = secret("ns", "s", true).metadata.clone();
        assert_eq!(guard_index(&meta), Some(1));
        assert_eq!(guard_index(&ObjectMeta::default()), None);
        let patch = release_patch(1);
        assert_eq!(
            patch,
            serde_json::json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ])
        );
        // It parses as the JSON patch the client sends.
        let parsed: Result<kube::api::Patch<()>, _> =
            serde_json::from_value(patch).map(kube::api::Patch::Json);
        assert!(parsed.is_ok());
    }

    #[test]
    fn a_version_the_guard_wrote_is_recognised_once() {
        let own = OwnWrites::default();
        own.record(Some("42".into()));
        own.record(None);
        assert!(!own.take(Some("41")));
        assert!(own.take(Some("42")));
        assert!(!own.take(Some("42")), "forgotten once seen");
        assert!(!own.take(None));
    }

    #[test]
    fn only_a_producer_with_delete_policy_that_is_not_suspended_needs_a_guard() {
        let live = share("ns", "x");
        assert_eq!(needs_guard(&live), Some("producer-cloud"));
        let mut orphan = (*live).clone();
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(needs_guard(&orphan), None);
        let mut suspended = (*live).clone();
        suspended.spec.suspend = true;
        assert_eq!(needs_guard(&suspended), None);
        let mut consumer = (*live).clone();
        consumer.spec = consumer.spec.without_producer();
        assert_eq!(needs_guard(&consumer), None);
    }

    #[test]
    fn a_needed_secret_gets_the_guard_and_keeps_it_while_any_object_needs_it() {
        let (one, two) = (share("ns", "one"), share("ns", "two"));
        let bare = [secret("ns", "producer-cloud", false)];
        assert_eq!(
            changes(&[one.clone(), two.clone()], &bare),
            [change("ns", "producer-cloud", true)]
        );
        let guarded = [secret("ns", "producer-cloud", true)];
        assert!(changes(&[one.clone(), two.clone()], &guarded).is_empty());
        // One of the two deleted: the other still needs it.
        assert!(changes(&[two], &guarded).is_empty());
    }

    #[test]
    fn the_guard_goes_once_no_object_needs_the_secret_whatever_the_order() {
        let guarded = [secret("ns", "producer-cloud", true)];
        assert_eq!(
            changes(&[], &guarded),
            [change("ns", "producer-cloud", false)]
        );
        let mut orphan = (*share("ns", "x")).clone();
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(
            changes(&[Arc::new(orphan)], &guarded),
            [change("ns", "producer-cloud", false)]
        );
        // An object of the same name in another namespace does not hold it.
        assert_eq!(
            changes(&[share("elsewhere", "x")], &guarded),
            [change("ns", "producer-cloud", false)]
        );
    }

    #[test]
    fn unrelated_or_terminating_secrets_are_left_as_they_are() {
        let objects = [share("ns", "x")];
        let mut deleting = (*secret("ns", "producer-cloud", false)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let mut deleting_guarded = (*secret("ns", "producer-cloud", true)).clone();
        deleting_guarded.metadata.deletion_timestamp = deleting.metadata.deletion_timestamp.clone();
        let unrelated = secret("ns", "consumer-a-cloud", false);
        assert!(changes(&objects, &[Arc::new(deleting), unrelated.clone()]).is_empty());
        assert!(changes(&objects, &[Arc::new(deleting_guarded)]).is_empty());
        assert!(changes(&[], &[unrelated]).is_empty());
    }
}
