//! Credentials stage (I/O): reads the credential Secrets an ImageShare references into
//! OpenStack sessions (each Secret once per pass, and again only once the metadata watch
//! shows a new resourceVersion: [`SecretCache`]), and puts the deletion guard
//! ([`super::guard`]) on the producer Secret before the pass changes anything. Without a
//! cluster (`imageshare plan -f`), a local clouds.yaml stands in for the Secrets
//! ([`LocalClouds`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::guard;
use super::model::Failure;
use super::ports::Connect;
use crate::api::{CredentialsRef, ImageShare, Reason};
use crate::openstack::{CloudConfig, Clouds, CloudsError, Session};

/// Key in the credentials Secret holding clouds.yaml.
pub const CLOUDS_KEY: &str = "clouds.yaml";
/// Optional key in the credentials Secret holding a PEM CA bundle.
pub const CACERT_KEY: &str = "cacert";
/// A local clouds.yaml standing in for the credential Secrets: a credentialsRef uses the
/// cloud mapped to its Secret's name, else the cloud named like the Secret, else the one
/// named like its cloudName.
#[derive(Clone, Debug, Default)]
pub struct LocalClouds {
    /// The text of the clouds.yaml.
    pub yaml: String,
    /// Cloud to use per Secret name.
    pub map: BTreeMap<String, String>,
}

impl LocalClouds {
    /// The cloud configuration a credentialsRef stands for.
    pub fn config(&self, cref: &CredentialsRef) -> Result<CloudConfig, Failure> {
        let secret = &cref.secret_name;
        let candidates = match self.map.get(secret) {
            Some(mapped) => vec![mapped],
            None => vec![secret, &cref.cloud_name],
        };
        for cloud in &candidates {
            match CloudConfig::from_clouds_yaml(&self.yaml, cloud, None) {
                Err(CloudsError::CloudNotFound { .. }) => continue,
                Err(e) => {
                    let message = format!("local cloud {cloud} (for secret {secret}): {e}");
                    return Err(Failure::new(Reason::CredentialsInvalid, message));
                }
                Ok(config) => return Ok(config),
            }
        }
        let tried = candidates.iter().map(|c| c.as_str()).collect::<Vec<_>>();
        Err(Failure::new(
            Reason::CredentialsMissing,
            format!(
                "no cloud {} in the local clouds.yaml for secret {secret}; map one with --cloud {secret}=NAME",
                tried.join(" or ")
            ),
        ))
    }
}

/// Where the credentials come from.
enum Source {
    /// The Secrets of the object's namespace.
    Cluster(Box<Api<Secret>>),
    /// A local clouds.yaml.
    Local(LocalClouds),
}

/// The Secrets passes have read, by namespace and name. A pass reads a Secret again only
/// when the operator's watch of Secret metadata shows another resourceVersion: in the
/// steady state a pass makes no Kubernetes request for its credentials.
#[derive(Default)]
pub struct SecretCache(Mutex<HashMap<(String, String), Secret>>);

impl SecretCache {
    /// The Secret as read at `version`, if it was.
    fn at(&self, namespace: &str, name: &str, version: &str) -> Option<Secret> {
        let key = (namespace.to_string(), name.to_string());
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let secret = cache.get(&key)?;
        (secret.resource_version().as_deref() == Some(version)).then(|| secret.clone())
    }

    fn keep(&self, namespace: &str, secret: &Secret) {
        let key = (namespace.to_string(), secret.name_any());
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.insert(key, secret.clone());
    }
}

/// What a pass knows of Secrets without reading them: the metadata watch, and the Secrets
/// read before.
#[derive(Clone, Copy)]
pub struct Known<'a> {
    /// The operator's cache of Secret metadata.
    pub metadata: &'a Store<PartialObjectMeta<Secret>>,
    /// The Secrets read before.
    pub read: &'a SecretCache,
}

/// Sessions opened during one pass, so each Secret is read once per pass.
pub struct Sessions<'a> {
    clouds: &'a Clouds,
    known: Option<Known<'a>>,
    source: Source,
    namespace: String,
    opened: HashMap<CredentialsRef, Result<CloudConfig, Failure>>,
    /// Metadata of the Secrets read in this pass, by name (finalizers, resourceVersion).
    metadata: HashMap<String, ObjectMeta>,
}

impl<'a> Sessions<'a> {
    /// Sessions for Secrets in the namespace of `share`.
    pub fn new(client: &Client, clouds: &'a Clouds, share: &ImageShare) -> Self {
        let namespace = share.namespace().unwrap_or_default();
        Sessions {
            clouds,
            known: None,
            source: Source::Cluster(Box::new(Api::namespaced(client.clone(), &namespace))),
            namespace,
            opened: HashMap::new(),
            metadata: HashMap::new(),
        }
    }

    /// Reads a Secret only when `known` does not have its current version.
    pub fn knowing(mut self, known: Known<'a>) -> Self {
        self.known = Some(known);
        self
    }

    /// Sessions from a local clouds.yaml instead of Secrets (no cluster needed).
    pub fn local(clouds: &'a Clouds, local: LocalClouds) -> Self {
        Sessions {
            clouds,
            known: None,
            source: Source::Local(local),
            namespace: String::new(),
            opened: HashMap::new(),
            metadata: HashMap::new(),
        }
    }

    async fn open(&mut self, cref: &CredentialsRef) -> Result<CloudConfig, Failure> {
        let secrets = match &self.source {
            Source::Cluster(secrets) => secrets,
            Source::Local(local) => return local.config(cref),
        };
        let name = &cref.secret_name;
        let ns = &self.namespace;
        let read_before = self.known.and_then(|known| {
            let meta = known.metadata.get(&ObjectRef::new(name).within(ns))?;
            known.read.at(ns, name, meta.resource_version().as_deref()?)
        });
        let read = match read_before {
            Some(secret) => Ok(Some(secret)),
            None => secrets.get_opt(name).await,
        };
        let secret = match read {
            Ok(Some(secret)) => {
                if let Some(known) = self.known {
                    known.read.keep(ns, &secret);
                }
                secret
            }
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
        if let Some(why) = self.clouds.policy().refusal(&config) {
            return Err(Failure::new(
                Reason::CredentialsInvalid,
                format!("secret {ns}/{name}: {why}"),
            ));
        }
        Ok(config)
    }

    /// Puts the deletion guard on Secret `name` (read in this pass) unless it is there, or
    /// the Secret is already being deleted (no finalizer can be added then).
    pub async fn guard(&self, name: &str, own: &guard::OwnWrites) -> Result<(), kube::Error> {
        match (&self.source, self.metadata.get(name)) {
            (Source::Cluster(secrets), Some(meta))
                if !guard::is_guarded(meta) && meta.deletion_timestamp.is_none() =>
            {
                guard::set(secrets, name, own).await
            }
            _ => Ok(()),
        }
    }
}

/// `config` for the Glance of `region` (a region of spec.regions) instead of its own. An
/// endpoint override names one Glance, so it cannot serve a region chosen by the spec.
fn in_region(mut config: CloudConfig, region: Option<&str>) -> Result<CloudConfig, Failure> {
    let Some(region) = region else {
        return Ok(config);
    };
    if config.image_endpoint_override.is_some() {
        return Err(Failure::new(
            Reason::CredentialsInvalid,
            format!(
                "cloud {}: image_endpoint_override names one Glance; it cannot be combined with \
                 spec.regions",
                config.cloud_name
            ),
        ));
    }
    config.region_name = Some(region.to_string());
    Ok(config)
}

/// The session for a credentials reference (shared token cache per distinct credential).
impl Connect for Sessions<'_> {
    type Session = Session;
    async fn session(
        &mut self,
        cref: &CredentialsRef,
        region: Option<&str>,
    ) -> Result<Arc<Session>, Failure> {
        let config = match self.opened.get(cref) {
            Some(found) => found.clone(),
            None => {
                let opened = self.open(cref).await;
                self.opened.insert(cref.clone(), opened.clone());
                opened
            }
        }?;
        Ok(self.clouds.session(&in_region(config, region)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_read_again_only_at_another_version() {
        let cache = SecretCache::default();
        let mut secret = Secret::default();
        secret.metadata.name = Some("producer-cloud".into());
        secret.metadata.resource_version = Some("7".into());
        cache.keep("team", &secret);
        assert!(cache.at("team", "producer-cloud", "7").is_some());
        assert!(
            cache.at("team", "producer-cloud", "8").is_none(),
            "changed since"
        );
        assert!(
            cache.at("other", "producer-cloud", "7").is_none(),
            "another namespace"
        );
    }

    fn local(map: &[(&str, &str)]) -> LocalClouds {
        let cloud = |user: &str| {
            format!(
                "{{auth: {{auth_url: 'http://k/v3', user_id: {user}, password: p, project_id: x}}}}"
            )
        };
        LocalClouds {
            yaml: format!(
                "clouds: {{openstack: {}, producer-cloud: {}, prod: {}}}",
                cloud("generic"),
                cloud("by-secret"),
                cloud("mapped")
            ),
            map: map
                .iter()
                .map(|(s, c)| (s.to_string(), c.to_string()))
                .collect(),
        }
    }

    fn who(local: &LocalClouds, secret: &str) -> Result<String, Failure> {
        let cref = CredentialsRef {
            secret_name: secret.into(),
            cloud_name: "openstack".into(),
        };
        local.config(&cref).map(|c| c.describe())
    }

    #[test]
    fn a_local_cloud_is_the_mapped_one_else_named_like_the_secret_else_like_cloud_name() {
        let plain = local(&[]);
        assert!(who(&plain, "producer-cloud").unwrap().contains("by-secret"));
        assert!(who(&plain, "team-a").unwrap().contains("generic"));
        let mapped = local(&[("producer-cloud", "prod")]);
        assert!(who(&mapped, "producer-cloud").unwrap().contains("mapped"));
    }

    #[test]
    fn a_missing_local_cloud_says_how_to_map_one() {
        let mapped = local(&[("team-a", "nowhere")]);
        let failure = who(&mapped, "team-a").unwrap_err();
        assert_eq!(failure.reason, Reason::CredentialsMissing);
        assert!(
            failure.message.contains("--cloud team-a=NAME"),
            "{}",
            failure.message
        );
    }
}
