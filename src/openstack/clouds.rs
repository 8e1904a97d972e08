//! clouds.yaml parsing (no I/O): turns the text of a Kubernetes Secret into a [`CloudConfig`],
//! the identity of one distinct credential.
//!
//! The accepted subset of the openstacksdk format, under `clouds.<name>`:
//! - `auth.auth_url` (with or without the trailing `/v3`);
//! - `auth_type`: `password` (default, also `v3password`) with `username`/`user_id`,
//!   `password`, `user_domain_name`/`user_domain_id`, `project_name`/`project_id`,
//!   `project_domain_name`/`project_domain_id` (`domain_name`/`domain_id` are the default
//!   for both domains); or `v3applicationcredential` with `application_credential_id`, or
//!   `application_credential_name` plus the user, and `application_credential_secret`;
//! - `region_name`, `interface` (`public` default; `internal`, `admin`, and the `publicURL`
//!   style aliases), `verify` (default true), `cacert`;
//! - `image_endpoint_override`: a Glance URL to use instead of the catalog's (as in
//!   openstacksdk; for clouds whose catalog lists addresses the operator cannot reach).
//!
//! A `cacert` path in clouds.yaml cannot be read from a Secret: the PEM must come from the
//! Secret's own `cacert` key. Unknown keys are ignored. Secrets are held in [`Secret`],
//! whose `Debug` prints `***`, and never appear in error messages.
//!
//! Values are text: a plain scalar YAML reads as a number is used as written when it is a
//! plain integer, or has leading zeros or underscores (`123`, `007`, `1_000`); other
//! numeric spellings (`1e3`, `0x1F`, `2024.10`, an integer beyond 64 bits) come back as
//! YAML's number (`1000.0`, `31`, `2024.1`), so such values must be quoted. A non-finite
//! number (`.inf`, `1e400`) anywhere in the document makes it invalid.

use std::fmt;

use serde_json::{Map, Value};

/// A password, token or application-credential secret. `Debug` prints `***`; there is no
/// `Display`. Use [`Secret::expose`] only to put the value on the wire.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A PEM CA bundle from the Secret's `cacert` key, validated at parse time.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CaCert(Vec<u8>);

impl CaCert {
    /// The PEM bytes.
    pub fn pem(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for CaCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaCert({} bytes of pem)", self.0.len())
    }
}

/// A Keystone domain, by ID or by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Domain ID.
    Id(String),
    /// Domain name.
    Name(String),
}

/// A Keystone user, by ID or by name within a domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum User {
    /// User ID (unique across domains).
    Id(String),
    /// User name and its domain.
    Name {
        /// User name.
        name: String,
        /// The user's domain.
        domain: Domain,
    },
}

/// What a password token is scoped to: a Keystone project, by ID or by name within a
/// domain, or (no project given, a domain given) a whole domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Project {
    /// Project ID (the Glance member ID).
    Id(String),
    /// Project name and its domain.
    Name {
        /// Project name.
        name: String,
        /// The project's domain.
        domain: Domain,
    },
    /// No project: the token is scoped to this domain. Such a credential may list the
    /// domain's projects (a domain reader: spec.projectReader) but cannot act on images.
    Domain(Domain),
}

/// How to authenticate to Keystone v3.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Password auth, scoped to a project.
    Password {
        /// Who.
        user: User,
        /// The password.
        password: Secret,
        /// The project the token is scoped to.
        project: Project,
    },
    /// Application credential by ID (it carries its own project scope).
    ApplicationCredentialId {
        /// Application credential ID.
        id: String,
        /// Application credential secret.
        secret: Secret,
    },
    /// Application credential by name, which needs its owner.
    ApplicationCredentialName {
        /// Application credential name.
        name: String,
        /// The user owning it.
        user: User,
        /// Application credential secret.
        secret: Secret,
    },
}

impl Auth {
    /// The secret sent to Keystone (password or application-credential secret).
    pub fn secret(&self) -> &Secret {
        match self {
            Auth::Password { password, .. } => password,
            Auth::ApplicationCredentialId { secret, .. }
            | Auth::ApplicationCredentialName { secret, .. } => secret,
        }
    }
}

/// Which catalog endpoint to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Interface {
    /// The public endpoint (default).
    #[default]
    Public,
    /// The internal endpoint.
    Internal,
    /// The admin endpoint.
    Admin,
}

impl Interface {
    /// The name Keystone's catalog uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }

    /// Parses `public`/`internal`/`admin`, case-insensitive, with or without a `URL` suffix.
    pub fn parse(text: &str) -> Option<Interface> {
        let lower = text.trim().to_ascii_lowercase();
        match lower.strip_suffix("url").unwrap_or(&lower) {
            "public" => Some(Interface::Public),
            "internal" => Some(Interface::Internal),
            "admin" => Some(Interface::Admin),
            _ => None,
        }
    }
}

/// One cloud from clouds.yaml: the identity of a distinct credential. Equal configs share one
/// Keystone session and token (see `Clouds`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloudConfig {
    /// The entry name under `clouds:` (used in messages).
    pub cloud_name: String,
    /// Keystone v3 base URL, normalised to end in `/v3` without a trailing slash.
    pub auth_url: String,
    /// How to authenticate.
    pub auth: Auth,
    /// Region of the image endpoint; `None` takes the first matching endpoint.
    pub region_name: Option<String>,
    /// Catalog interface of the image endpoint.
    pub interface: Interface,
    /// Glance URL to use instead of the catalog's image endpoint.
    pub image_endpoint_override: Option<String>,
    /// Whether to verify TLS certificates.
    pub verify: bool,
    /// CA bundle to trust instead of the platform roots.
    pub cacert: Option<CaCert>,
}

/// Why a clouds.yaml could not be turned into a [`CloudConfig`]. Never contains secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudsError {
    /// The text is not YAML.
    #[error("clouds.yaml is not valid yaml{location}")]
    InvalidYaml {
        /// ` at line L, column C` when known (the offending text is never quoted).
        location: String,
    },
    /// There is no `clouds:` mapping.
    #[error("clouds.yaml has no top-level clouds mapping")]
    NoClouds,
    /// The named cloud is not under `clouds:`.
    #[error("cloud {cloud} not found in clouds.yaml (clouds present: {present})")]
    CloudNotFound {
        /// Requested cloud name.
        cloud: String,
        /// Names that are present, comma-separated.
        present: String,
    },
    /// A required field is missing.
    #[error("cloud {cloud}: {field} is missing")]
    Missing {
        /// Cloud name.
        cloud: String,
        /// The field (or alternatives) that is needed.
        field: String,
    },
    /// A field has an unusable value.
    #[error("cloud {cloud}: {field} {problem}")]
    Invalid {
        /// Cloud name.
        cloud: String,
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The `auth_type` is not one we implement.
    #[error(
        "cloud {cloud}: auth_type {auth_type} is not supported (use password or v3applicationcredential)"
    )]
    UnsupportedAuthType {
        /// Cloud name.
        cloud: String,
        /// The given auth_type.
        auth_type: String,
    },
    /// clouds.yaml names a CA file, which cannot be read from a Secret.
    #[error(
        "cloud {cloud}: cacert names the file {path}, which cannot be read from a secret; put the pem bundle under the key cacert of the same secret"
    )]
    CacertPath {
        /// Cloud name.
        cloud: String,
        /// The path given in clouds.yaml.
        path: String,
    },
}

impl CloudConfig {
    /// Parses the cloud `cloud_name` from the text of a clouds.yaml. `cacert_pem` is the
    /// Secret's optional `cacert` key; when given it is the CA bundle, whatever clouds.yaml
    /// says.
    pub fn from_clouds_yaml(
        yaml: &str,
        cloud_name: &str,
        cacert_pem: Option<&[u8]>,
    ) -> Result<CloudConfig, CloudsError> {
        // Every value read here is text: plain scalars such as `007` or `1_000` stay as
        // written instead of becoming the numbers 7.0 and 1000.
        let options = serde_saphyr::options! {
            leading_zero_numbers_as_strings: true,
            underscored_numbers_as_strings: true,
        };
        let doc: Value = serde_saphyr::from_str_with_options(yaml, options).map_err(|e| {
            CloudsError::InvalidYaml {
                location: e
                    .location()
                    .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                    .unwrap_or_default(),
            }
        })?;
        let clouds = doc
            .get("clouds")
            .and_then(Value::as_object)
            .ok_or(CloudsError::NoClouds)?;
        let cloud = clouds
            .get(cloud_name)
            .ok_or_else(|| CloudsError::CloudNotFound {
                cloud: cloud_name.to_owned(),
                present: if clouds.is_empty() {
                    "none".to_owned()
                } else {
                    clouds.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
        Fields::new(cloud_name, cloud)?.config(cacert_pem)
    }

    /// A short description of who this credential is, for messages (no secrets).
    pub fn describe(&self) -> String {
        let who = |user: &User| match user {
            User::Id(id) => format!("user id {id}"),
            User::Name { name, domain } => format!("user {name} in {}", describe_domain(domain)),
        };
        let scope = match &self.auth {
            Auth::Password { user, project, .. } => {
                let project = match project {
                    Project::Id(id) => format!("project id {id}"),
                    Project::Domain(domain) => format!("scoped to {}", describe_domain(domain)),
                    Project::Name { name, domain } => {
                        format!("project {name} in {}", describe_domain(domain))
                    }
                };
                format!("{}, {project}", who(user))
            }
            Auth::ApplicationCredentialId { id, .. } => format!("application credential {id}"),
            Auth::ApplicationCredentialName { name, user, .. } => {
                format!("application credential {name} of {}", who(user))
            }
        };
        format!("cloud {} ({scope})", self.cloud_name)
    }
}

fn describe_domain(domain: &Domain) -> String {
    match domain {
        Domain::Id(id) => format!("domain id {id}"),
        Domain::Name(name) => format!("domain {name}"),
    }
}

/// Field access on one cloud entry, with errors that name the cloud and the field.
struct Fields<'a> {
    cloud: &'a str,
    top: &'a Map<String, Value>,
    auth: Option<&'a Map<String, Value>>,
}

impl<'a> Fields<'a> {
    fn new(cloud: &'a str, entry: &'a Value) -> Result<Fields<'a>, CloudsError> {
        let top = entry.as_object().ok_or_else(|| CloudsError::Invalid {
            cloud: cloud.to_owned(),
            field: "entry".to_owned(),
            problem: "must be a mapping".to_owned(),
        })?;
        let auth = match top.get("auth") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err(invalid(cloud, "auth", "must be a mapping")),
        };
        Ok(Fields { cloud, top, auth })
    }

    fn config(&self, cacert_pem: Option<&[u8]>) -> Result<CloudConfig, CloudsError> {
        if self.auth.is_none() {
            return Err(self.missing("auth"));
        }
        let auth_url = self.auth_url()?;
        let auth = self.auth_method()?;
        let region_name = self.top_str("region_name")?;
        let interface = match self.top_str("interface")? {
            None => Interface::Public,
            Some(text) => Interface::parse(&text).ok_or_else(|| {
                invalid(
                    self.cloud,
                    "interface",
                    &format!("{text} is not one of public, internal, admin"),
                )
            })?,
        };
        let image_endpoint_override = self.top_str("image_endpoint_override")?;
        if let Some(url) = &image_endpoint_override
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                self.cloud,
                "image_endpoint_override",
                "must be an http:// or https:// URL",
            ));
        }
        let verify = self.verify()?;
        let cacert = match (cacert_pem, self.top_str("cacert")?) {
            (Some(pem), _) => Some(self.ca_cert(pem)?),
            (None, Some(path)) if verify => {
                return Err(CloudsError::CacertPath {
                    cloud: self.cloud.to_owned(),
                    path,
                });
            }
            (None, _) => None,
        };
        Ok(CloudConfig {
            cloud_name: self.cloud.to_owned(),
            auth_url,
            auth,
            region_name,
            interface,
            image_endpoint_override,
            verify,
            cacert,
        })
    }

    fn auth_url(&self) -> Result<String, CloudsError> {
        let raw = self
            .auth_str("auth_url")?
            .ok_or_else(|| self.missing("auth.auth_url"))?;
        let field = "auth.auth_url";
        // The raw text is never echoed: it could carry credentials.
        let url = reqwest::Url::parse(raw.trim())
            .map_err(|e| invalid(self.cloud, field, &format!("not a url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(invalid(self.cloud, field, "not an http(s) url"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                self.cloud,
                field,
                "must not carry a user or password (put them under auth)",
            ));
        }
        let mut text = url.as_str().trim_end_matches('/').to_owned();
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                self.cloud,
                field,
                "must not have a query or fragment",
            ));
        }
        if text.ends_with("/v2.0") || text.ends_with("/v2") {
            return Err(invalid(
                self.cloud,
                field,
                "points at keystone v2; use the v3 (or unversioned) url",
            ));
        }
        if !text.ends_with("/v3") {
            text.push_str("/v3");
        }
        Ok(text)
    }

    fn auth_method(&self) -> Result<Auth, CloudsError> {
        let auth_type = match self.top_str("auth_type")? {
            Some(t) => Some(t),
            None => self.auth_str("auth_type")?,
        };
        match auth_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("password" | "v3password") => self.password(),
            Some("v3applicationcredential" | "applicationcredential") => {
                self.application_credential()
            }
            Some(_) => Err(CloudsError::UnsupportedAuthType {
                cloud: self.cloud.to_owned(),
                auth_type: auth_type.unwrap_or_default(),
            }),
        }
    }

    fn password(&self) -> Result<Auth, CloudsError> {
        let password = match self.auth_str("password")? {
            Some(p) => Secret::new(p),
            None if self.auth_str("application_credential_secret")?.is_some() => {
                return Err(self.missing(
                    "auth.password (the entry has an application credential: set auth_type: v3applicationcredential)",
                ));
            }
            None => return Err(self.missing("auth.password")),
        };
        let user = self.user()?;
        let project = match (self.auth_str("project_id")?, self.auth_str("project_name")?) {
            (Some(id), _) => Project::Id(id),
            (None, Some(name)) => Project::Name {
                name,
                domain: self.domain("project", "auth.project_name")?,
            },
            (None, None) => match (self.auth_str("domain_id")?, self.auth_str("domain_name")?) {
                (Some(id), _) => Project::Domain(Domain::Id(id)),
                (None, Some(name)) => Project::Domain(Domain::Name(name)),
                (None, None) => {
                    return Err(self.missing(
                        "auth.project_id or auth.project_name (or, for a domain reader, auth.domain_id or auth.domain_name)",
                    ));
                }
            },
        };
        Ok(Auth::Password {
            user,
            password,
            project,
        })
    }

    fn application_credential(&self) -> Result<Auth, CloudsError> {
        let secret = Secret::new(
            self.auth_str("application_credential_secret")?
                .ok_or_else(|| self.missing("auth.application_credential_secret"))?,
        );
        if let Some(id) = self.auth_str("application_credential_id")? {
            return Ok(Auth::ApplicationCredentialId { id, secret });
        }
        let name = self
            .auth_str("application_credential_name")?
            .ok_or_else(|| {
                self.missing("auth.application_credential_id or auth.application_credential_name")
            })?;
        Ok(Auth::ApplicationCredentialName {
            name,
            user: self.user()?,
            secret,
        })
    }

    fn user(&self) -> Result<User, CloudsError> {
        if let Some(id) = self.auth_str("user_id")? {
            return Ok(User::Id(id));
        }
        let name = self
            .auth_str("username")?
            .ok_or_else(|| self.missing("auth.username or auth.user_id"))?;
        Ok(User::Name {
            name,
            domain: self.domain("user", "auth.username")?,
        })
    }

    /// `<prefix>_domain_id`, `<prefix>_domain_name`, then `domain_id`, `domain_name`.
    fn domain(&self, prefix: &str, needed_by: &str) -> Result<Domain, CloudsError> {
        if let Some(id) = self.auth_str(&format!("{prefix}_domain_id"))? {
            return Ok(Domain::Id(id));
        }
        if let Some(name) = self.auth_str(&format!("{prefix}_domain_name"))? {
            return Ok(Domain::Name(name));
        }
        if let Some(id) = self.auth_str("domain_id")? {
            return Ok(Domain::Id(id));
        }
        if let Some(name) = self.auth_str("domain_name")? {
            return Ok(Domain::Name(name));
        }
        Err(self.missing(&format!(
            "auth.{prefix}_domain_name or auth.{prefix}_domain_id (needed with {needed_by}; \
             auth.domain_name/domain_id also work)"
        )))
    }

    fn verify(&self) -> Result<bool, CloudsError> {
        match self.top.get("verify") {
            None | Some(Value::Null) => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" => Ok(true),
                "false" | "no" => Ok(false),
                _ => Err(invalid(self.cloud, "verify", "must be true or false")),
            },
            Some(_) => Err(invalid(self.cloud, "verify", "must be true or false")),
        }
    }

    fn ca_cert(&self, pem: &[u8]) -> Result<CaCert, CloudsError> {
        match reqwest::Certificate::from_pem_bundle(pem) {
            Ok(certs) if !certs.is_empty() => Ok(CaCert(pem.to_vec())),
            _ => Err(invalid(
                self.cloud,
                "cacert (secret key)",
                "is not a pem bundle with at least one certificate",
            )),
        }
    }

    fn auth_str(&self, key: &str) -> Result<Option<String>, CloudsError> {
        match self.auth {
            Some(map) => scalar(self.cloud, "auth.", key, map.get(key)),
            None => Ok(None),
        }
    }

    fn top_str(&self, key: &str) -> Result<Option<String>, CloudsError> {
        scalar(self.cloud, "", key, self.top.get(key))
    }

    fn missing(&self, field: &str) -> CloudsError {
        CloudsError::Missing {
            cloud: self.cloud.to_owned(),
            field: field.to_owned(),
        }
    }
}

/// A scalar as text (YAML may type `project_name: 123` as a number); empty means unset.
fn scalar(
    cloud: &str,
    prefix: &str,
    key: &str,
    value: Option<&Value>,
) -> Result<Option<String>, CloudsError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => {
            return Err(invalid(
                cloud,
                &format!("{prefix}{key}"),
                "must be a string",
            ));
        }
    };
    Ok(if text.trim().is_empty() {
        None
    } else {
        Some(text)
    })
}

fn invalid(cloud: &str, field: &str, problem: &str) -> CloudsError {
    CloudsError::Invalid {
        cloud: cloud.to_owned(),
        field: field.to_owned(),
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed CA certificate (test data only; its key was thrown away).
    pub(crate) const TEST_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUJoAWMNT/ISqxwZalYPeLRVCJA18wCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSaW1hZ2VzaGFyZS10ZXN0LWNhMB4XDTI2MTEyMzEyMDkzOVoX
DTM2MTEyMDEyMDkzOVowHTEbMBkGA1UEAwwSaW1hZ2VzaGFyZS10ZXN0LWNhMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqNRgWjcbic+VXwtO4ImbnedXATFWDFOa
gum1uhe8Vo2bxzgC5zT96olJZWou2Pr8zzCjpFRqPXWxpCvXZPi2uaNTMFEwHQYD
VR0OBBYEFG1WZWT8mx1diiDJGdkCG3dbeKDXMB8GA1UdIwQYMBaAFG1WZWT8mx1d
iiDJGdkCG3dbeKDXMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh
AM4P00EwFBZIziXsOCj6wKzG+vkgAR1FDQSnu03jtMG8AiA4tu0Fh7xKrCsXkDS+
jmjwe9lorqTutyVDKMmldkWNdA==
-----END CERTIFICATE-----
";

    const PASSWORD_CLOUD: &str = "
clouds:
  openstack:
    auth:
      auth_url: https://keystone.example.com:5000
      username: alice
      password: s3cret-pass
      user_domain_name: Default
      project_name: golden
      project_domain_id: default
    region_name: RegionOne
";

    fn parse(yaml: &str) -> Result<CloudConfig, CloudsError> {
        CloudConfig::from_clouds_yaml(yaml, "openstack", None)
    }

    #[test]
    fn image_endpoint_override_must_be_an_http_url() {
        let with = |url: &str| {
            parse(&format!(
                "{PASSWORD_CLOUD}    image_endpoint_override: {url}\n"
            ))
        };
        let ok = with("https://glance.example.com:9292").expect("valid");
        assert_eq!(
            ok.image_endpoint_override.as_deref(),
            Some("https://glance.example.com:9292")
        );
        assert!(with("glance.example.com").is_err());
        assert_eq!(
            parse(PASSWORD_CLOUD)
                .expect("valid")
                .image_endpoint_override,
            None
        );
    }

    #[test]
    fn password_cloud_with_project_name_parses() {
        let cfg = parse(PASSWORD_CLOUD).expect("valid");
        assert_eq!(cfg.cloud_name, "openstack");
        assert_eq!(cfg.auth_url, "https://keystone.example.com:5000/v3");
        assert_eq!(cfg.region_name.as_deref(), Some("RegionOne"));
        assert_eq!(cfg.interface, Interface::Public);
        assert!(cfg.verify);
        assert_eq!(cfg.cacert, None);
        assert_eq!(
            cfg.auth,
            Auth::Password {
                user: User::Name {
                    name: "alice".into(),
                    domain: Domain::Name("Default".into())
                },
                password: Secret::new("s3cret-pass"),
                project: Project::Name {
                    name: "golden".into(),
                    domain: Domain::Id("default".into())
                },
            }
        );
    }

    #[test]
    fn ids_need_no_domains() {
        let cfg = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k/v3/', user_id: u1, password: p, project_id: p1}}}",
        )
        .expect("valid");
        assert_eq!(cfg.auth_url, "http://k/v3");
        assert!(matches!(
            cfg.auth,
            Auth::Password { user: User::Id(ref u), project: Project::Id(ref p), .. } if u == "u1" && p == "p1"
        ));
    }

    #[test]
    fn plain_domain_name_is_the_default_for_user_and_project() {
        let cfg = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k', username: a, password: p, project_name: x, domain_name: Corp}}}",
        )
        .expect("valid");
        let Auth::Password { user, project, .. } = cfg.auth else {
            panic!("password auth expected");
        };
        assert_eq!(
            user,
            User::Name {
                name: "a".into(),
                domain: Domain::Name("Corp".into())
            }
        );
        assert_eq!(
            project,
            Project::Name {
                name: "x".into(),
                domain: Domain::Name("Corp".into())
            }
        );
    }

    #[test]
    fn numeric_yaml_scalars_are_read_as_text() {
        let cfg = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k', user_id: 42, password: 1234, project_id: 123123}}}",
        )
        .expect("valid");
        assert_eq!(cfg.auth.secret().expose(), "1234");
    }

    #[test]
    fn numbers_with_leading_zeros_or_underscores_keep_their_text() {
        // Found by a property test: `password: 007` used to become the password "7.0".
        let cfg = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k', user_id: 00, password: 007, project_id: 1_000}}}",
        )
        .expect("valid");
        assert_eq!(cfg.auth.secret().expose(), "007");
        assert!(matches!(
            cfg.auth,
            Auth::Password { user: User::Id(ref u), project: Project::Id(ref p), .. } if u == "00" && p == "1_000"
        ));
    }

    #[test]
    fn application_credential_by_id_parses() {
        let cfg = parse(
            "
clouds:
  openstack:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://k.example.com/identity/v3
      application_credential_id: ac1
      application_credential_secret: shh
    interface: internalURL
",
        )
        .expect("valid");
        assert_eq!(cfg.auth_url, "https://k.example.com/identity/v3");
        assert_eq!(cfg.interface, Interface::Internal);
        assert_eq!(
            cfg.auth,
            Auth::ApplicationCredentialId {
                id: "ac1".into(),
                secret: Secret::new("shh")
            }
        );
    }

    #[test]
    fn application_credential_by_name_needs_its_user() {
        let yaml = "clouds: {openstack: {auth_type: v3applicationcredential, auth: {auth_url: 'http://k', application_credential_name: ci, application_credential_secret: shh}}}";
        let err = parse(yaml).expect_err("no user");
        assert_eq!(
            err.to_string(),
            "cloud openstack: auth.username or auth.user_id is missing"
        );
        let yaml = "clouds: {openstack: {auth_type: v3applicationcredential, auth: {auth_url: 'http://k', application_credential_name: ci, application_credential_secret: shh, username: bob, user_domain_id: default}}}";
        assert!(matches!(
            parse(yaml).expect("valid").auth,
            Auth::ApplicationCredentialName { ref name, .. } if name == "ci"
        ));
    }

    #[test]
    fn missing_cloud_name_is_a_clear_error() {
        let err = CloudConfig::from_clouds_yaml(PASSWORD_CLOUD, "prod", None).expect_err("absent");
        assert_eq!(
            err.to_string(),
            "cloud prod not found in clouds.yaml (clouds present: openstack)"
        );
    }

    #[test]
    fn missing_password_names_cloud_and_field() {
        let err = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k', username: a, user_domain_id: d, project_id: p}}}",
        )
        .expect_err("no password");
        assert_eq!(err.to_string(), "cloud openstack: auth.password is missing");
    }

    #[test]
    fn application_credential_without_auth_type_gets_a_hint() {
        let err = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k', application_credential_id: a, application_credential_secret: s}}}",
        )
        .expect_err("auth_type missing");
        assert!(
            err.to_string()
                .contains("set auth_type: v3applicationcredential"),
            "{err}"
        );
    }

    #[test]
    fn username_without_domain_is_a_clear_error() {
        let err = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k', username: a, password: p, project_id: x}}}",
        )
        .expect_err("no domain");
        assert!(
            err.to_string()
                .starts_with("cloud openstack: auth.user_domain_name or auth.user_domain_id"),
            "{err}"
        );
    }

    #[test]
    fn missing_project_is_a_clear_error() {
        let err =
            parse("clouds: {openstack: {auth: {auth_url: 'http://k', user_id: a, password: p}}}")
                .expect_err("unscoped");
        assert_eq!(
            err.to_string(),
            "cloud openstack: auth.project_id or auth.project_name (or, for a domain reader, \
             auth.domain_id or auth.domain_name) is missing"
        );
    }

    #[test]
    fn a_domain_without_a_project_scopes_the_token_to_the_domain() {
        let cfg = parse(
            "clouds: {openstack: {auth: {auth_url: 'http://k', username: r, password: p, user_domain_name: Default, domain_name: Corp}}}",
        )
        .expect("domain scope");
        let Auth::Password { project, .. } = &cfg.auth else {
            panic!("password auth expected: {:?}", cfg.auth);
        };
        assert_eq!(project, &Project::Domain(Domain::Name("Corp".into())));
        assert!(
            cfg.describe().ends_with("scoped to domain Corp)"),
            "{}",
            cfg.describe()
        );
        let body = crate::openstack::auth::auth_body(&cfg.auth);
        assert_eq!(
            body["auth"]["scope"],
            serde_json::json!({"domain": {"name": "Corp"}})
        );
    }

    #[test]
    fn unsupported_auth_type_is_named() {
        let err =
            parse("clouds: {openstack: {auth_type: v3oidcpassword, auth: {auth_url: 'http://k'}}}")
                .expect_err("unsupported");
        assert_eq!(
            err.to_string(),
            "cloud openstack: auth_type v3oidcpassword is not supported (use password or v3applicationcredential)"
        );
    }

    #[test]
    fn bad_auth_url_and_interface_are_rejected() {
        let base = |url: &str, extra: &str| {
            format!(
                "clouds: {{openstack: {{auth: {{auth_url: '{url}', user_id: u, password: p, project_id: x}}{extra}}}}}"
            )
        };
        let err = parse(&base("keystone:5000", "")).expect_err("not a url");
        assert!(
            err.to_string()
                .starts_with("cloud openstack: auth.auth_url"),
            "{err}"
        );
        let err = parse(&base("http://k/v2.0", "")).expect_err("v2");
        assert!(err.to_string().contains("keystone v2"), "{err}");
        let err = parse(&base("http://k", ", interface: private")).expect_err("interface");
        assert_eq!(
            err.to_string(),
            "cloud openstack: interface private is not one of public, internal, admin"
        );
        let err = parse("clouds: {openstack: {auth: {username: a}}}").expect_err("no url");
        assert_eq!(err.to_string(), "cloud openstack: auth.auth_url is missing");
    }

    #[test]
    fn invalid_yaml_reports_a_location_but_not_the_text() {
        let err =
            parse("clouds:\n  openstack:\n    auth: {password: \"hunter2\n").expect_err("bad");
        let text = err.to_string();
        assert!(text.starts_with("clouds.yaml is not valid yaml"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            parse("just text").expect_err("no clouds"),
            CloudsError::NoClouds
        );
    }

    #[test]
    fn cacert_path_without_pem_in_the_secret_is_an_error() {
        let yaml = format!("{PASSWORD_CLOUD}    cacert: /etc/ssl/corp.pem\n");
        let err = parse(&yaml).expect_err("path only");
        assert_eq!(
            err.to_string(),
            "cloud openstack: cacert names the file /etc/ssl/corp.pem, which cannot be read from a secret; put the pem bundle under the key cacert of the same secret"
        );
    }

    #[test]
    fn cacert_from_the_secret_wins_over_a_path() {
        let yaml = format!("{PASSWORD_CLOUD}    cacert: /etc/ssl/corp.pem\n");
        let cfg = CloudConfig::from_clouds_yaml(&yaml, "openstack", Some(TEST_PEM.as_bytes()))
            .expect("pem given");
        assert_eq!(cfg.cacert.map(|c| c.pem().len()), Some(TEST_PEM.len()));
    }

    #[test]
    fn cacert_that_is_not_pem_is_rejected() {
        let err = CloudConfig::from_clouds_yaml(PASSWORD_CLOUD, "openstack", Some(b"not a cert"))
            .expect_err("garbage");
        assert!(
            err.to_string().starts_with("cloud openstack: cacert"),
            "{err}"
        );
    }

    #[test]
    fn verify_false_is_read_and_ignores_a_cacert_path() {
        let yaml = format!("{PASSWORD_CLOUD}    verify: false\n    cacert: /x.pem\n");
        assert!(!parse(&yaml).expect("valid").verify);
        let yaml = format!("{PASSWORD_CLOUD}    verify: maybe\n");
        assert!(parse(&yaml).is_err());
    }

    #[test]
    fn debug_of_cloud_config_never_shows_the_secret() {
        let cfg =
            CloudConfig::from_clouds_yaml(PASSWORD_CLOUD, "openstack", Some(TEST_PEM.as_bytes()))
                .expect("valid");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cret-pass"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        assert!(!debug.contains("BEGIN CERTIFICATE"), "{debug}");
        assert!(!cfg.describe().contains("s3cret-pass"));
    }

    #[test]
    fn equal_texts_give_equal_configs_and_a_changed_password_does_not() {
        use std::collections::HashSet;
        let a = parse(PASSWORD_CLOUD).expect("valid");
        let b = parse(PASSWORD_CLOUD).expect("valid");
        let c = parse(&PASSWORD_CLOUD.replace("s3cret-pass", "other")).expect("valid");
        let set: HashSet<_> = [a, b, c].into_iter().collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn describe_names_user_and_project() {
        let cfg = parse(PASSWORD_CLOUD).expect("valid");
        assert_eq!(
            cfg.describe(),
            "cloud openstack (user alice in domain Default, project golden in domain id default)"
        );
    }

    #[test]
    fn auth_url_with_credentials_is_refused_without_echoing_them() {
        let yaml = "clouds:\n  c:\n    auth:\n      auth_url: https://bob:hunter2@keystone.example/v3\n      username: bob\n      password: pw\n      user_domain_name: Default\n      project_name: p\n      project_domain_name: Default\n";
        let err = CloudConfig::from_clouds_yaml(yaml, "c", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.auth_url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
