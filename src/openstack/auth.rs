//! Keystone v3 authentication (no state): the token request body for each kind of
//! credential ([`auth_body`]), the token request itself (`request_token`, sent through the
//! transport), reading its answer into a [`Token`] ([`parse_token`]), the image endpoint
//! chosen from the token's catalog ([`select_endpoint`]), and when a token is renewed
//! ([`needs_refresh`]). Caching and sharing tokens is the session's part.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clouds::{Auth, CloudConfig, Domain, Interface, Project, Secret, User};
use super::error::Error;
use super::metrics::{Operation, RequestMetrics};
use super::transport::{self, Call};

/// Renew a token this long before it expires (or at half its lifetime if that is shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// A token is still used (when renewal fails) until this long before it expires.
const EXPIRY_SAFETY: Duration = Duration::from_secs(30);

/// A Keystone token with what was learnt with it. `Debug` never shows the token.
#[derive(Debug)]
pub struct Token {
    value: Secret,
    project_id: String,
    image_endpoint: String,
    /// For a domain-scoped token: the domain's ID and name (and no project or endpoint).
    pub(super) domain: Option<(String, String)>,
    lifetime: Duration,
    obtained: Instant,
}

impl Token {
    /// The project the token is scoped to (the producer's project = Glance image owner).
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The image endpoint URL from the token's catalog, as listed (no `/v2` added).
    pub fn image_endpoint(&self) -> &str {
        &self.image_endpoint
    }

    /// Whether this token should be renewed now.
    pub fn needs_refresh(&self, now: Instant) -> bool {
        needs_refresh(now.saturating_duration_since(self.obtained), self.lifetime)
    }

    /// Whether the token can still be used (renewal failed but it has not expired).
    pub(super) fn still_valid(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.obtained) + EXPIRY_SAFETY < self.lifetime
    }

    /// The token value, for the `X-Auth-Token` header only.
    pub(super) fn secret(&self) -> &Secret {
        &self.value
    }
}

/// The refresh decision: renew when `age` is within [`REFRESH_MARGIN`] of `lifetime`, or
/// past half of it for tokens shorter than twice the margin. Measured on the local monotonic
/// clock from the moment the token was requested, with the lifetime Keystone gave
/// (`expires_at - issued_at`), so clock skew between us and Keystone does not matter.
pub fn needs_refresh(age: Duration, lifetime: Duration) -> bool {
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    age.saturating_add(margin) >= lifetime
}

/// One service of the Keystone catalog.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct CatalogService {
    /// Service type, e.g. `image`.
    #[serde(rename = "type")]
    pub service_type: String,
    /// Its endpoints.
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

/// One endpoint of a catalog service.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct CatalogEndpoint {
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// Region ID (current Keystone).
    #[serde(default)]
    pub region_id: Option<String>,
    /// Region name (older Keystone; same value as `region_id` today).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL.
    pub url: String,
}

/// The URL of the first endpoint of `service_type` with `interface`, in `region` when one is
/// given (matched against `region_id` or `region`).
pub fn select_endpoint<'a>(
    catalog: &'a [CatalogService],
    service_type: &str,
    interface: Interface,
    region: Option<&str>,
) -> Option<&'a str> {
    catalog
        .iter()
        .filter(|s| s.service_type == service_type)
        .flat_map(|s| &s.endpoints)
        .find(|e| {
            Interface::parse(&e.interface) == Some(interface)
                && region.is_none_or(|r| {
                    e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r)
                })
        })
        .map(|e| e.url.as_str())
}

/// What the catalog offers for `service_type`, for error messages.
fn describe_endpoints(catalog: &[CatalogService], service_type: &str) -> String {
    let found: Vec<String> = catalog
        .iter()
        .filter(|s| s.service_type == service_type)
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            let region = e.region_id.as_deref().or(e.region.as_deref());
            format!("{} in {}", e.interface, region.unwrap_or("no region"))
        })
        .collect();
    if found.is_empty() {
        "none".to_owned()
    } else {
        found.join(", ")
    }
}

/// The JSON body of `POST /v3/auth/tokens` for `auth` (contains the secret: never log it).
pub fn auth_body(auth: &Auth) -> Value {
    fn domain(d: &Domain) -> Value {
        match d {
            Domain::Id(id) => json!({ "id": id }),
            Domain::Name(name) => json!({ "name": name }),
        }
    }
    fn user(u: &User) -> Value {
        match u {
            User::Id(id) => json!({ "id": id }),
            User::Name { name, domain: d } => json!({ "name": name, "domain": domain(d) }),
        }
    }
    match auth {
        Auth::Password {
            user: u,
            password,
            project,
        } => {
            let mut user = user(u);
            if let Some(map) = user.as_object_mut() {
                map.insert("password".into(), password.expose().into());
            }
            let scope = match project {
                Project::Id(id) => json!({ "project": { "id": id } }),
                Project::Name { name, domain: d } => {
                    json!({ "project": { "name": name, "domain": domain(d) } })
                }
                Project::Domain(d) => json!({ "domain": domain(d) }),
            };
            json!({ "auth": {
                "identity": { "methods": ["password"], "password": { "user": user } },
                "scope": scope,
            }})
        }
        Auth::ApplicationCredentialId { id, secret } => json!({ "auth": { "identity": {
            "methods": ["application_credential"],
            "application_credential": { "id": id, "secret": secret.expose() },
        }}}),
        Auth::ApplicationCredentialName {
            name,
            user: u,
            secret,
        } => {
            json!({ "auth": { "identity": {
                "methods": ["application_credential"],
                "application_credential": { "name": name, "user": user(u), "secret": secret.expose() },
            }}})
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: String,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    project: Option<ProjectRef>,
    #[serde(default)]
    domain: Option<DomainRef>,
    #[serde(default)]
    catalog: Option<Vec<CatalogService>>,
}

#[derive(Deserialize)]
struct ProjectRef {
    id: String,
}

#[derive(Deserialize)]
struct DomainRef {
    id: String,
    #[serde(default)]
    name: String,
}

/// Builds a [`Token`] from a successful `POST /v3/auth/tokens` answer. `obtained` is when
/// the request was sent (the conservative start of the token's life).
pub fn parse_token(
    subject_token: Option<&HeaderValue>,
    body: &str,
    config: &CloudConfig,
    obtained: Instant,
) -> Result<Token, Error> {
    let what = format!("keystone authentication for cloud {}", config.cloud_name);
    let value = subject_token
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::unexpected(&what, "no x-subject-token header"))?;
    let parsed: TokenResponse =
        serde_json::from_str(body).map_err(|e| Error::unexpected(&what, e))?;
    let token = parsed.token;
    let (expires_at, issued_at) = (token.expires_at.clone(), token.issued_at.clone());
    let lifetime = || lifetime(&expires_at, issued_at.as_deref(), &what);
    if let (None, Some(domain)) = (&token.project, &token.domain) {
        // A domain reader's token: it lists projects, it never reaches Glance.
        return Ok(Token {
            value: Secret::new(value),
            project_id: String::new(),
            image_endpoint: String::new(),
            domain: Some((domain.id.clone(), domain.name.clone())),
            lifetime: lifetime()?,
            obtained,
        });
    }
    let project_id = token.project.map(|p| p.id).ok_or_else(|| {
        Error::config(format!(
            "{what}: the token is not scoped to a project; glance needs a project-scoped token"
        ))
    })?;
    let catalog = token.catalog.unwrap_or_default();
    let region = config.region_name.as_deref();
    let from_catalog = || select_endpoint(&catalog, "image", config.interface, region);
    let image_endpoint = config
        .image_endpoint_override
        .as_deref()
        .or_else(from_catalog)
        .ok_or_else(|| {
            Error::config(format!(
                "cloud {}: the service catalog has no image endpoint for interface {} in {} \
                 (image endpoints listed: {})",
                config.cloud_name,
                config.interface.as_str(),
                region.map_or("any region".to_owned(), |r| format!("region {r}")),
                describe_endpoints(&catalog, "image"),
            ))
        })?
        .to_owned();
    Ok(Token {
        value: Secret::new(value),
        project_id,
        image_endpoint,
        domain: None,
        lifetime: lifetime()?,
        obtained,
    })
}

/// How long the token lives, from its issued_at (now when absent) to its expires_at.
fn lifetime(expires_at: &str, issued_at: Option<&str>, what: &str) -> Result<Duration, Error> {
    let expires: jiff::Timestamp = expires_at
        .parse()
        .map_err(|e| Error::unexpected(what, format!("expires_at: {e}")))?;
    let issued = issued_at
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let millis = expires
        .as_millisecond()
        .saturating_sub(issued.as_millisecond());
    Ok(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

/// Asks Keystone for a token for `config` (`POST /v3/auth/tokens`) with `client`, recorded
/// in `metrics` as operation `token`. The password or secret never appears in an error.
/// A 404 means `auth_url` is not Keystone (a config error); a 409 is transient.
pub(super) async fn request_token(
    client: &reqwest::Client,
    config: &CloudConfig,
    metrics: &RequestMetrics,
) -> Result<Token, Error> {
    let secret = config.auth.secret().expose();
    let what = format!("keystone authentication for {}", config.describe());
    let url = format!("{}/auth/tokens", config.auth_url);
    let call = Call {
        operation: Operation::Token,
        what: &what,
        cloud: &config.cloud_name,
        secret: Some(secret),
    };
    let started = Instant::now();
    let request = client
        .post(&url)
        .header(ACCEPT, "application/json")
        .json(&auth_body(&config.auth));
    let answer = transport::exchange(request, &call, metrics).await?;
    if !answer.status.is_success() {
        let err = match answer.classify(&what) {
            Error::NotFound { .. } => Error::config(format!(
                "{what}: {url} answered 404; check auth_url points at keystone"
            )),
            Error::Conflict { .. } => Error::transient(format!("{what}: conflict (http 409)")),
            other => other,
        };
        return Err(err.redact(secret));
    }
    let subject = answer.headers.get("x-subject-token");
    parse_token(subject, &answer.text, config, started)
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Config `c1`: password auth of alice, scoped to project golden, with `extra` fields.
    pub(in crate::openstack) fn config(extra: &str) -> CloudConfig {
        let yaml = format!(
            "clouds: {{c1: {{auth: {{auth_url: 'http://k:5000', username: alice, password: pw-secret, user_domain_id: default, project_name: golden, project_domain_id: default}}{extra}}}}}"
        );
        CloudConfig::from_clouds_yaml(&yaml, "c1", None).expect("valid config")
    }

    const CATALOG: &str = r#"[
        {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": "http://k:5000/v3"}]},
        {"type": "image", "name": "glance", "endpoints": [
            {"interface": "internal", "region_id": "RegionOne", "region": "RegionOne", "url": "http://glance-int:9292"},
            {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "https://glance.one:9292"},
            {"interface": "public", "region_id": "RegionTwo", "url": "https://glance.two/image"},
            {"interface": "admin", "region": "RegionThree", "url": "https://glance.three"}
        ]}
    ]"#;

    fn catalog() -> Vec<CatalogService> {
        serde_json::from_str(CATALOG).expect("catalog json")
    }

    #[test]
    fn endpoint_is_selected_by_interface_and_region() {
        let c = catalog();
        assert_eq!(
            select_endpoint(&c, "image", Interface::Public, Some("RegionTwo")),
            Some("https://glance.two/image")
        );
        assert_eq!(
            select_endpoint(&c, "image", Interface::Internal, Some("RegionOne")),
            Some("http://glance-int:9292")
        );
        assert_eq!(
            select_endpoint(&c, "image", Interface::Public, None),
            Some("https://glance.one:9292")
        );
    }

    #[test]
    fn older_region_field_is_matched_too() {
        assert_eq!(
            select_endpoint(&catalog(), "image", Interface::Admin, Some("RegionThree")),
            Some("https://glance.three")
        );
    }

    #[test]
    fn no_matching_endpoint_is_none() {
        let c = catalog();
        assert_eq!(
            select_endpoint(&c, "image", Interface::Internal, Some("RegionTwo")),
            None
        );
        assert_eq!(
            select_endpoint(&c, "compute", Interface::Public, None),
            None
        );
    }

    fn token_body(catalog: &str) -> String {
        format!(
            r#"{{"token": {{"expires_at": "2026-11-23T13:06:06.000000Z", "issued_at": "2026-11-23T12:06:06.000000Z",
                "project": {{"id": "p-123", "name": "golden"}}, "catalog": {catalog}}}}}"#
        )
    }

    #[test]
    fn token_answer_is_parsed_with_endpoint_project_and_lifetime() {
        let header = HeaderValue::from_static("gAAAA-token");
        let token = parse_token(
            Some(&header),
            &token_body(CATALOG),
            &config(", region_name: RegionTwo"),
            Instant::now(),
        )
        .expect("parsed");
        assert_eq!(token.project_id(), "p-123");
        assert_eq!(token.image_endpoint(), "https://glance.two/image");
        assert_eq!(token.lifetime, Duration::from_secs(3600));
        assert_eq!(token.secret().expose(), "gAAAA-token");
    }

    #[test]
    fn no_image_endpoint_is_a_terminal_config_error_saying_what_exists() {
        let header = HeaderValue::from_static("t");
        let err = parse_token(
            Some(&header),
            &token_body(CATALOG),
            &config(", region_name: Mars, interface: internal"),
            Instant::now(),
        )
        .expect_err("no endpoint");
        assert_eq!(
            err,
            Error::Terminal {
                kind: super::super::TerminalKind::Config,
                message: "cloud c1: the service catalog has no image endpoint for interface \
                          internal in region Mars (image endpoints listed: internal in RegionOne, \
                          public in RegionOne, public in RegionTwo, admin in RegionThree)"
                    .into()
            }
        );
    }

    #[test]
    fn an_image_endpoint_override_wins_over_the_catalog() {
        let header = HeaderValue::from_static("t");
        let token = parse_token(
            Some(&header),
            &token_body("[]"),
            &config(", image_endpoint_override: 'http://127.0.0.1:9999'"),
            Instant::now(),
        )
        .expect("parsed without any catalog entry");
        assert_eq!(token.image_endpoint(), "http://127.0.0.1:9999");
    }

    #[test]
    fn missing_subject_token_is_transient() {
        let err = parse_token(None, &token_body(CATALOG), &config(""), Instant::now())
            .expect_err("no header");
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn token_is_kept_until_five_minutes_before_expiry() {
        let hour = Duration::from_secs(3600);
        assert!(!needs_refresh(Duration::ZERO, hour));
        assert!(!needs_refresh(Duration::from_secs(54 * 60), hour));
        assert!(needs_refresh(Duration::from_secs(55 * 60), hour));
        assert!(needs_refresh(Duration::from_secs(2 * 3600), hour));
    }

    #[test]
    fn short_token_is_renewed_at_half_its_lifetime() {
        let six_minutes = Duration::from_secs(360);
        assert!(!needs_refresh(Duration::from_secs(179), six_minutes));
        assert!(needs_refresh(Duration::from_secs(180), six_minutes));
        assert!(needs_refresh(Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn debug_of_token_never_shows_the_value() {
        let header = HeaderValue::from_static("gAAAA-very-secret");
        let token = parse_token(
            Some(&header),
            &token_body(CATALOG),
            &config(""),
            Instant::now(),
        )
        .expect("parsed");
        let debug = format!("{token:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }

    #[test]
    fn password_body_is_scoped_to_the_project() {
        let body = auth_body(&config("").auth);
        assert_eq!(
            body,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "alice", "domain": {"id": "default"}, "password": "pw-secret"}}},
                "scope": {"project": {"name": "golden", "domain": {"id": "default"}}}
            }})
        );
    }

    #[test]
    fn application_credential_body_has_no_scope() {
        let body = auth_body(&Auth::ApplicationCredentialId {
            id: "ac".into(),
            secret: Secret::new("s"),
        });
        assert_eq!(
            body,
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "ac", "secret": "s"}}}})
        );
    }
}
