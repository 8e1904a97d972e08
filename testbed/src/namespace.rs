//! Test namespaces on the stack's kube-apiserver: a fresh namespace per test with a Secret
//! for every local identity, and what the tests do there as cluster admin (create and edit
//! ImageShares, wait for their Ready reason, read their Events, delete them).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use imageshare::api::{ImageShare, ImageShareSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::stack::{clouds_yaml_for, state_dir};
use crate::wait::{CONVERGE, wait_until};

/// The finalizer a producer credentials Secret carries while an ImageShare with
/// deletionPolicy Delete may still need it to remove members (one, however many objects).
pub const CREDENTIALS_FINALIZER: &str = "imageshare.dev/credentials-in-use";

/// Admin kube client (cluster-admin through the stack's static token).
pub async fn admin() -> Client {
    let path = state_dir().join("kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

/// A test namespace with credentials Secrets `producer-cloud`, `consumer-{a,b,c}-cloud`.
pub struct TestNs {
    /// Namespace name.
    pub name: String,
    /// Admin client.
    pub client: Client,
}

impl TestNs {
    /// Creates `e2e-<prefix>-<random>` and its Secrets.
    pub async fn new(prefix: &str) -> TestNs {
        imageshare::openstack::install_crypto_provider();
        let client = admin().await;
        let name = format!("e2e-{prefix}-{:06x}", fastrand::u32(..0xff_ffff));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let t = TestNs { name, client };
        for identity in ["producer", "consumer-a", "consumer-b", "consumer-c"] {
            t.put_secret(
                &format!("{identity}-cloud"),
                &clouds_yaml_for(identity, None),
            )
            .await;
        }
        t
    }

    /// ImageShares in this namespace.
    pub fn shares(&self) -> Api<ImageShare> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Secrets in this namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates or replaces a Secret with key clouds.yaml.
    pub async fn put_secret(&self, name: &str, clouds_yaml: &str) {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"clouds.yaml": clouds_yaml},
        }))
        .expect("secret");
        let api = self.secrets();
        let pp = kube::api::PatchParams::apply("e2e").force();
        api.patch(name, &pp, &kube::api::Patch::Apply(&secret))
            .await
            .expect("apply secret");
    }

    /// Deletes a Secret.
    pub async fn delete_secret(&self, name: &str) {
        self.secrets()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete secret");
    }

    /// The Secret `name`, terminating or not; None once the apiserver no longer has it.
    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets().get_opt(name).await.expect("get secret")
    }

    /// Whether the Secret `name` carries the deletion guard [`CREDENTIALS_FINALIZER`] (false
    /// once the Secret is gone).
    pub async fn guarded(&self, name: &str) -> bool {
        self.secret(name)
            .await
            .and_then(|s| s.metadata.finalizers)
            .is_some_and(|f| f.iter().any(|f| f == CREDENTIALS_FINALIZER))
    }

    /// Creates an ImageShare from a JSON spec.
    pub async fn create(&self, name: &str, spec: Value) -> ImageShare {
        let spec: ImageShareSpec = serde_json::from_value(spec).expect("spec");
        self.shares()
            .create(&PostParams::default(), &ImageShare::new(name, spec))
            .await
            .expect("create imageshare")
    }

    /// Merge-patches an ImageShare's spec.
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.shares()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch imageshare");
    }

    /// Makes the operator run a pass of the ImageShare now (as a resync would) by changing an
    /// annotation: Glance has no watch API, so drift is otherwise noticed at the next resync.
    pub async fn poke(&self, name: &str) {
        let patch =
            json!({"metadata": {"annotations": {"e2e/poke": fastrand::u64(..).to_string()}}});
        self.shares()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .expect("annotate imageshare");
    }

    /// Waits until ImageShare `name`'s status describes its current generation, whatever
    /// the reason; returns the object.
    pub async fn wait_processed(&self, name: &str) -> ImageShare {
        wait_until(CONVERGE, || async {
            let s = self.shares().get(name).await.expect("get imageshare");
            let seen = s.status.as_ref().and_then(|st| st.observed_generation);
            (seen == s.metadata.generation).then_some(s)
        })
        .await
        .unwrap_or_else(|| panic!("{name}: its current generation was not processed"))
    }

    /// Waits until the ImageShare's Ready condition has `reason` for the current generation;
    /// returns the object. Panics with the last status seen on timeout.
    pub async fn wait_reason(&self, name: &str, reason: &str, timeout: Duration) -> ImageShare {
        let deadline = Instant::now() + timeout;
        loop {
            let share = self.shares().get(name).await.expect("get imageshare");
            let reached = share.ready_condition().is_some_and(|c| {
                c.reason == reason && c.observed_generation == share.metadata.generation
            });
            if reached {
                return share;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name}: Ready reason {reason} not reached in {timeout:?}; last status: {:#?}",
                    share.status
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deletes an ImageShare and waits until it is gone (finalizer released).
    pub async fn delete_and_wait_gone(&self, name: &str, timeout: Duration) {
        self.shares()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete imageshare");
        let gone = wait_until(timeout, || async {
            matches!(self.shares().get_opt(name).await, Ok(None)).then_some(())
        })
        .await;
        assert!(gone.is_some(), "{name} still exists after {timeout:?}");
    }

    /// Deletes the whole namespace and waits until the apiserver no longer has it (the
    /// namespace controller has deleted its content and every finalizer was released).
    /// Panics with the namespace's last status on timeout.
    pub async fn delete_namespace_and_wait_gone(&self, timeout: Duration) {
        let namespaces = Api::<Namespace>::all(self.client.clone());
        namespaces
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("delete namespace");
        let gone = wait_until(timeout, || async {
            matches!(namespaces.get_opt(&self.name).await, Ok(None)).then_some(())
        })
        .await;
        if gone.is_none() {
            let last = namespaces.get_opt(&self.name).await.ok().flatten();
            panic!(
                "namespace {} still exists after {timeout:?}; last status: {:#?}",
                self.name,
                last.and_then(|ns| ns.status)
            );
        }
    }

    /// Event reasons recorded for an object.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Whether ImageShare `name` gets an Event with `reason` within 10 s. Events follow the
    /// status write of a pass, so a test that saw the status must wait for them, not race.
    pub async fn has_event(&self, name: &str, reason: &str) -> bool {
        wait_until(Duration::from_secs(10), || async {
            let reasons = self.event_reasons(name).await;
            reasons.iter().any(|r| r == reason).then_some(())
        })
        .await
        .is_some()
    }

    /// The Events about ImageShare `name`.
    pub async fn events(&self, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.name);
        events
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }
}

/// The (image, project) pairs of an ImageShare's ledger.
pub fn ledger_pairs(share: &ImageShare) -> BTreeSet<(String, String)> {
    share
        .status
        .iter()
        .flat_map(|s| &s.ledger)
        .flat_map(|e| {
            e.images
                .iter()
                .flat_map(|i| e.projects.iter().map(move |p| (i.clone(), p.clone())))
        })
        .collect()
}

/// Waits until every ImageShare of `t` is Ready with reason InSync for its current
/// generation, looking every 50 ms; returns how long that took. Panics after `timeout`.
pub async fn all_in_sync(t: &TestNs, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(list) = t.shares().list(&Default::default()).await
            && list.items.iter().all(|s: &ImageShare| {
                s.ready_condition().is_some_and(|c| {
                    c.reason == "InSync" && c.observed_generation == s.metadata.generation
                })
            })
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "not all InSync within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
