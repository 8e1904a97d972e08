//! Credentials stage (I/O): reads the credential Secrets an ImageShare references into
//! OpenStack sessions (each Secret once per pass), and puts the deletion guard
//! ([`super::guard`]) on the producer Secret before the pass changes anything.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Api, Client, ResourceExt};

use super::Failure;
use super::guard;
use crate::api::{CredentialsRef, ImageShare, Reason};
use crate::openstack::{CloudConfig, Clouds, Session};

/// Key in the credentials Secret holding clouds.yaml.
pub const CLOUDS_KEY: &str = "clouds.yaml";
/// Optional key in the credentials Secret holding a PEM CA bundle.
pub const CACERT_KEY: &str = "cacert";
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
    /// the Secret is already being deleted (no finalizer can be added then).
    pub async fn guard(&self, name: &str) -> Result<(), kube::Error> {
        match self.metadata.get(name) {
            Some(meta) if !guard::is_guarded(meta) && meta.deletion_timestamp.is_none() => {
                guard::set(&self.secrets, name, true).await
            }
            _ => Ok(()),
        }
    }
}
