//! Credentials stage (I/O): reads the credential Secrets an ImageShare references into
//! OpenStack sessions (each Secret once per pass), and keeps the deletion guard on the
//! producer Secret: the finalizer [`GUARD`] that keeps it readable until every ImageShare
//! that needs it to remove members is gone, whatever the order of deletion.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::{FINALIZER, Failure};
use crate::api::{CredentialsRef, DeletionPolicy, ImageShare, Reason};
use crate::openstack::{CloudConfig, Clouds, Session};

/// Key in the credentials Secret holding clouds.yaml.
pub const CLOUDS_KEY: &str = "clouds.yaml";
/// Optional key in the credentials Secret holding a PEM CA bundle.
pub const CACERT_KEY: &str = "cacert";
/// Finalizer on a producer Secret while an ImageShare may need it to remove members.
pub const GUARD: &str = "imageshare.dev/credentials-in-use";

/// Sessions opened during one pass, so each Secret is read once per pass.
pub struct Sessions<'a> {
    clouds: &'a Clouds,
    secrets: Api<Secret>,
    namespace: String,
    opened: HashMap<CredentialsRef, Result<Arc<Session>, Failure>>,
    /// Metadata of the Secrets read in this pass, by name (finalizers, resourceVersion).
    metadata: HashMap<String, ObjectMeta>,
}

impl<'a> Sessions<'a> {
    /// Sessions for Secrets in the namespace of `share`.
    pub fn new(client: &Client, clouds: &'a Clouds, share: &ImageShare) -> Self {
        let namespace = share.namespace().unwrap_or_default();
        Sessions {
            clouds,
            secrets: Api::namespaced(client.clone(), &namespace),
            namespace,
            opened: HashMap::new(),
            metadata: HashMap::new(),
        }
    }

    /// The session for a credentials reference (shared token cache per distinct credential).
    pub async fn get(&mut self, cref: &CredentialsRef) -> Result<Arc<Session>, Failure> {
        if let Some(found) = self.opened.get(cref) {
            return found.clone();
        }
        let result = self.open(cref).await;
        self.opened.insert(cref.clone(), result.clone());
        result
    }

    async fn open(&mut self, cref: &CredentialsRef) -> Result<Arc<Session>, Failure> {
        let name = &cref.secret_name;
        let ns = &self.namespace;
        let secret = match self.secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(Failure::new(
                    Reason::CredentialsMissing,
                    format!("secret {ns}/{name} not found"),
                ));
            }
            Err(e) => {
                return Err(Failure::transient(format!(
                    "reading secret {ns}/{name}: {e}"
                )));
            }
        };
        self.metadata.insert(name.clone(), secret.metadata.clone());
        let data = secret.data.unwrap_or_default();
        let clouds = data.get(CLOUDS_KEY).ok_or_else(|| {
            Failure::new(
                Reason::CredentialsMissing,
                format!("secret {ns}/{name} has no key {CLOUDS_KEY}"),
            )
        })?;
        let clouds = std::str::from_utf8(&clouds.0).map_err(|_| {
            Failure::new(
                Reason::CredentialsInvalid,
                format!("secret {ns}/{name} key {CLOUDS_KEY} is not UTF-8 text"),
            )
        })?;
        let cacert = data.get(CACERT_KEY).map(|b| b.0.as_slice());
        let config =
            CloudConfig::from_clouds_yaml(clouds, &cref.cloud_name, cacert).map_err(|e| {
                Failure::new(
                    Reason::CredentialsInvalid,
                    format!("secret {ns}/{name}: {e}"),
                )
            })?;
        Ok(self.clouds.session(&config))
    }

    /// Puts the deletion guard on Secret `name` (read in this pass) unless it is there, or
    /// the Secret is already being deleted (no finalizer can be added then). Returns whether
    /// the Secret carries the guard afterwards.
    pub async fn guard(&self, name: &str) -> Result<bool, kube::Error> {
        let Some(meta) = self.metadata.get(name) else {
            return Ok(false);
        };
        let mut finalizers = meta.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == GUARD) {
            return Ok(true);
        }
        if meta.deletion_timestamp.is_some() {
            return Ok(false);
        }
        finalizers.push(GUARD.to_string());
        self.set_finalizers(name, meta, finalizers).await?;
        Ok(true)
    }

    /// Takes the deletion guard off Secret `name` (a Secret that is gone needs nothing).
    pub async fn release(&self, name: &str) -> Result<(), kube::Error> {
        let Some(meta) = self.secrets.get_metadata_opt(name).await? else {
            return Ok(());
        };
        let meta = meta.metadata;
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == GUARD) {
            return Ok(());
        }
        let rest = finalizers.into_iter().filter(|f| f != GUARD).collect();
        self.set_finalizers(name, &meta, rest).await
    }

    /// Replaces the finalizer list, only if the Secret did not change since `meta` was
    /// read (resourceVersion precondition; a conflict is retried on the next pass).
    async fn set_finalizers(
        &self,
        name: &str,
        meta: &ObjectMeta,
        finalizers: Vec<String>,
    ) -> Result<(), kube::Error> {
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": meta.resource_version,
        }});
        self.secrets
            .patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
    }
}

/// The producer Secret `share` needs in order to remove its members when it is deleted:
/// with a producer, deletionPolicy Delete and not suspended.
pub fn needs_guard(share: &ImageShare) -> Option<&str> {
    let spec = &share.spec;
    let producer = spec.producer.as_ref()?;
    (spec.deletion_policy == DeletionPolicy::Delete && !spec.suspend)
        .then_some(producer.credentials_ref.secret_name.as_str())
}

/// Whether an ImageShare other than `share`, in its namespace and not yet cleaned up (it
/// still has the operator's finalizer), needs Secret `name` guarded.
pub fn needed_by_others(share: &ImageShare, name: &str, all: &[Arc<ImageShare>]) -> bool {
    all.iter().any(|other| {
        other.uid() != share.uid()
            && other.namespace() == share.namespace()
            && other.finalizers().iter().any(|f| f == FINALIZER)
            && needs_guard(other) == Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{self, SpecExt};

    fn share(name: &str, namespace: &str, finalized: bool) -> ImageShare {
        let mut s = ImageShare::new(name, fixtures::spec().member("a", None));
        s.metadata.namespace = Some(namespace.into());
        s.metadata.uid = Some(format!("{namespace}/{name}"));
        if finalized {
            s.metadata.finalizers = Some(vec![FINALIZER.into()]);
        }
        s
    }

    #[test]
    fn only_a_producer_with_delete_policy_that_is_not_suspended_needs_a_guard() {
        let live = share("x", "ns", true);
        assert_eq!(needs_guard(&live), Some("producer-cloud"));
        let mut orphan = live.clone();
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(needs_guard(&orphan), None);
        let mut suspended = live.clone();
        suspended.spec.suspend = true;
        assert_eq!(needs_guard(&suspended), None);
        let mut consumer = live;
        consumer.spec = consumer.spec.without_producer();
        assert_eq!(needs_guard(&consumer), None);
    }

    #[test]
    fn the_guard_stays_while_another_object_of_the_namespace_needs_the_secret() {
        let me = share("me", "ns", true);
        let all = |others: Vec<ImageShare>| -> Vec<Arc<ImageShare>> {
            std::iter::once(me.clone())
                .chain(others)
                .map(Arc::new)
                .collect()
        };
        assert!(!needed_by_others(&me, "producer-cloud", &all(vec![])));
        assert!(needed_by_others(
            &me,
            "producer-cloud",
            &all(vec![share("other", "ns", true)])
        ));
        assert!(
            !needed_by_others(
                &me,
                "producer-cloud",
                &all(vec![share("other", "elsewhere", true)])
            ),
            "another namespace's Secret of the same name is another Secret"
        );
        assert!(
            !needed_by_others(
                &me,
                "producer-cloud",
                &all(vec![share("other", "ns", false)])
            ),
            "an object already cleaned up needs nothing"
        );
        assert!(!needed_by_others(
            &me,
            "other-secret",
            &all(vec![share("other", "ns", true)])
        ));
    }
}
