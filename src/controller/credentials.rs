//! Credentials stage (I/O): reads the credential Secrets an ImageShare references into
//! OpenStack sessions (each Secret once per pass), and keeps the deletion guard on the
//! producer Secret: a finalizer per ImageShare ([`guard_finalizer`]) that keeps the Secret
//! readable until that object has removed its members, whatever the order of deletion.
//! Each object adds and removes only its own finalizer (server-side apply under its own
//! field manager), so objects sharing a Secret never have to agree on who releases it.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::Failure;
use crate::api::{CredentialsRef, DeletionPolicy, ImageShare, Reason};
use crate::openstack::{CloudConfig, Clouds, Session};

/// Key in the credentials Secret holding clouds.yaml.
pub const CLOUDS_KEY: &str = "clouds.yaml";
/// Optional key in the credentials Secret holding a PEM CA bundle.
pub const CACERT_KEY: &str = "cacert";
/// Prefix of the finalizer an ImageShare puts on its producer Secret while it may need it
/// to remove members; the object's uid completes it.
pub const GUARD_PREFIX: &str = "imageshare.dev/credentials-in-use-";

/// The deletion-guard finalizer of `share` (`imageshare.dev/credentials-in-use-<uid>`).
pub fn guard_finalizer(share: &ImageShare) -> String {
    format!("{GUARD_PREFIX}{}", share.uid().unwrap_or_default())
}

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

    /// Puts `finalizer` on Secret `name` (read in this pass) unless it is there, or the
    /// Secret is already being deleted (no finalizer can be added then). Returns whether the
    /// Secret carries it afterwards.
    pub async fn guard(&self, name: &str, finalizer: &str) -> Result<bool, kube::Error> {
        let Some(meta) = self.metadata.get(name) else {
            return Ok(false);
        };
        if meta.finalizers.iter().flatten().any(|f| f == finalizer) {
            return Ok(true);
        }
        if meta.deletion_timestamp.is_some() {
            return Ok(false);
        }
        self.apply_finalizers(name, finalizer, &[finalizer]).await?;
        Ok(true)
    }

    /// Takes `finalizer` off Secret `name` (a Secret that is gone needs nothing).
    pub async fn release(&self, name: &str, finalizer: &str) -> Result<(), kube::Error> {
        let Some(meta) = self.secrets.get_metadata_opt(name).await? else {
            return Ok(());
        };
        if !meta
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == finalizer)
        {
            return Ok(());
        }
        self.apply_finalizers(name, finalizer, &[]).await
    }

    /// Server-side applies the finalizers this object owns on the Secret (its own, or
    /// none), under a field manager named after the finalizer: other finalizers and fields
    /// are not touched, and no read-modify-write race exists.
    async fn apply_finalizers(
        &self,
        name: &str,
        finalizer: &str,
        finalizers: &[&str],
    ) -> Result<(), kube::Error> {
        let manager = finalizer.replace('/', "-");
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "finalizers": finalizers},
        });
        self.secrets
            .patch_metadata(name, &PatchParams::apply(&manager), &Patch::Apply(&patch))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{self, SpecExt};

    fn share(uid: &str) -> ImageShare {
        let mut s = ImageShare::new("x", fixtures::spec().member("a", None));
        s.metadata.namespace = Some("ns".into());
        s.metadata.uid = Some(uid.into());
        s
    }

    #[test]
    fn only_a_producer_with_delete_policy_that_is_not_suspended_needs_a_guard() {
        let live = share("u1");
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
    fn every_object_has_its_own_guard_finalizer() {
        let (one, two) = (share("3f2e-1"), share("3f2e-2"));
        assert_eq!(
            guard_finalizer(&one),
            "imageshare.dev/credentials-in-use-3f2e-1"
        );
        assert_ne!(guard_finalizer(&one), guard_finalizer(&two));
    }
}
