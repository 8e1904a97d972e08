//! Keystone v3 (I/O): one [`Session`] per distinct credential, holding its HTTP client, its
//! cached token and its concurrency limit; [`Clouds`], the process-wide cache of sessions.
//!
//! Password auth costs ~350 ms on a real Keystone, so tokens are cached and shared by every
//! ImageShare using the same credential: concurrent callers trigger ONE authentication. A
//! token is renewed shortly before it expires (see [`needs_refresh`]) and once after Glance
//! answers 401. A failed authentication is remembered briefly so a wrong password does not
//! turn into a storm of attempts (and a locked account). The pure parts (request body,
//! token parsing, endpoint selection, refresh decision) are separate functions.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

use super::clouds::{Auth, CloudConfig, Domain, Interface, Project, Secret, User};
use super::error::{Error, TerminalKind, classify};
use super::glance::Target;

/// TCP connect timeout for Keystone and Glance.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout for Keystone and Glance.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Renew a token this long before it expires (or at half its lifetime if that is shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// A token is still used (when renewal fails) until this long before it expires.
const EXPIRY_SAFETY: Duration = Duration::from_secs(30);
/// How long a refused authentication (bad credentials, forbidden) is answered from memory.
const HOLD_TERMINAL_FAILURE: Duration = Duration::from_secs(60);
/// How long a transient authentication failure is answered from memory.
const HOLD_TRANSIENT_FAILURE: Duration = Duration::from_secs(5);
/// Sessions nobody holds and nobody asked for this long are dropped from [`Clouds`].
const IDLE_EVICTION: Duration = Duration::from_secs(2 * 60 * 60);

/// A Keystone token with what was learnt with it. `Debug` never shows the token.
#[derive(Debug)]
pub struct Token {
    value: Secret,
    project_id: String,
    image_endpoint: String,
    /// For a domain-scoped token: the domain's ID and name (and no project or endpoint).
    domain: Option<(String, String)>,
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
    fn still_valid(&self, now: Instant) -> bool {
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

/// Token state of a session, behind one async mutex so one caller authenticates and the
/// others wait for its result.
#[derive(Default)]
struct AuthState {
    token: Option<Arc<Token>>,
    failure: Option<(Instant, Error)>,
}

/// A Keystone session for one [`CloudConfig`]: HTTP client, cached token, and a limit on
/// concurrent requests to that cloud. Glance calls are methods on it (see `glance.rs`).
pub struct Session {
    config: CloudConfig,
    client: Result<reqwest::Client, String>,
    state: Mutex<AuthState>,
    permits: Semaphore,
    auth_counter: Arc<AtomicU64>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("cloud", &self.config.cloud_name)
            .field("auth_url", &self.config.auth_url)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session with its own authentication counter, allowing `concurrency` requests at a
    /// time (at least one). Never fails: a client that cannot be built makes every call
    /// return a [`TerminalKind::Config`](super::TerminalKind::Config) error.
    pub fn new(config: CloudConfig, concurrency: usize) -> Session {
        Session::with_counter(config, concurrency, Arc::new(AtomicU64::new(0)))
    }

    fn with_counter(config: CloudConfig, concurrency: usize, counter: Arc<AtomicU64>) -> Session {
        Session {
            client: build_client(&config),
            config,
            state: Mutex::new(AuthState::default()),
            permits: Semaphore::new(concurrency.max(1)),
            auth_counter: counter,
        }
    }

    /// The configuration this session authenticates with.
    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    /// A valid token: the cached one, or a new one (one authentication for all concurrent
    /// callers). When renewal fails but the old token has not expired, the old one is used.
    pub async fn token(&self) -> Result<Arc<Token>, Error> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let cached = state.token.clone();
        if let Some(token) = &cached
            && !token.needs_refresh(now)
        {
            return Ok(token.clone());
        }
        let usable = cached.filter(|t| t.still_valid(now));
        if let Some((at, err)) = &state.failure {
            let hold = if err.is_transient() {
                HOLD_TRANSIENT_FAILURE.max(err.retry_after().unwrap_or_default())
            } else {
                HOLD_TERMINAL_FAILURE
            };
            if now.saturating_duration_since(*at) < hold {
                return usable.ok_or_else(|| err.clone());
            }
        }
        match self.authenticate().await {
            Ok(token) => {
                let token = Arc::new(token);
                state.token = Some(token.clone());
                state.failure = None;
                Ok(token)
            }
            Err(err) => {
                state.failure = Some((Instant::now(), err.clone()));
                match usable {
                    Some(old) => {
                        tracing::warn!(cloud = %self.config.cloud_name, error = %err,
                            "keystone token renewal failed; using the current token until it expires");
                        Ok(old)
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// The project ID the credential is scoped to (authenticates if needed).
    pub async fn project_id(&self) -> Result<String, Error> {
        let token = self.token().await?;
        self.project_scoped(&token)?;
        Ok(token.project_id().to_owned())
    }

    /// Refuses a domain-scoped token where a project is needed (images, members).
    pub(super) fn project_scoped(&self, token: &Token) -> Result<(), Error> {
        match &token.domain {
            Some((_, name)) => Err(Error::config(format!(
                "cloud {} is scoped to domain {name}: such a credential can list projects \
                 (spec.projectReader) but not act on images; scope it to a project",
                self.config.cloud_name
            ))),
            None => Ok(()),
        }
    }

    /// Drops the cached token only if it is still `stale` (so concurrent 401s on the same
    /// token cause one re-authentication, not one each).
    pub(super) async fn invalidate_token(&self, stale: &Arc<Token>) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, stale))
        {
            state.token = None;
        }
    }

    /// The HTTP client, or the config error that prevented building it.
    pub(super) fn client(&self) -> Result<&reqwest::Client, Error> {
        self.client.as_ref().map_err(|e| Error::config(e.clone()))
    }

    /// One of the session's request slots.
    pub(super) async fn permit(&self) -> Result<SemaphorePermit<'_>, Error> {
        self.permits.acquire().await.map_err(|_| {
            Error::transient(format!("cloud {}: session closed", self.config.cloud_name))
        })
    }

    async fn authenticate(&self) -> Result<Token, Error> {
        let client = self.client()?;
        let config = &self.config;
        let secret = config.auth.secret().expose();
        let what = format!("keystone authentication for {}", config.describe());
        let url = format!("{}/auth/tokens", config.auth_url);
        self.auth_counter.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let sent = client
            .post(&url)
            .header(ACCEPT, "application/json")
            .json(&auth_body(&config.auth))
            .send()
            .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                let err = Error::transport(&what, &err).redact(secret);
                tracing::debug!(cloud = %config.cloud_name, method = "POST", url = %url,
                    elapsed_ms, error = %err, "keystone authentication failed");
                return Err(err);
            }
        };
        let status = response.status();
        tracing::debug!(cloud = %config.cloud_name, method = "POST", url = %url,
            status = status.as_u16(), elapsed_ms, "keystone authentication");
        let subject = response.headers().get("x-subject-token").cloned();
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body = response
            .text()
            .await
            .map_err(|e| Error::transport(&what, &e).redact(secret))?;
        if !status.is_success() {
            let err = match classify(status, retry_after.as_ref(), &body, &what) {
                Error::NotFound { .. } => Error::config(format!(
                    "{what}: {url} answered 404; check auth_url points at keystone"
                )),
                Error::Conflict { .. } => Error::transient(format!("{what}: conflict (http 409)")),
                other => other,
            };
            return Err(err.redact(secret));
        }
        parse_token(subject.as_ref(), &body, config, started)
    }
}

fn build_client(config: &CloudConfig) -> Result<reqwest::Client, String> {
    super::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // X-Auth-Token is not a header reqwest strips on cross-host redirects: never follow.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("imageshare/", env!("CARGO_PKG_VERSION")));
    if !config.verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    } else if let Some(ca) = &config.cacert {
        let certs = reqwest::Certificate::from_pem_bundle(ca.pem())
            .map_err(|e| format!("cloud {}: cacert: {e}", config.cloud_name))?;
        // Same meaning as openstacksdk's cacert: trust this bundle, not the system roots.
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| {
        format!(
            "cloud {}: cannot build the http client: {e}",
            config.cloud_name
        )
    })
}

/// A Keystone project, as `GET /v3/projects` lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ProjectEntry {
    /// Project ID (the Glance member ID).
    pub id: String,
    /// Project name (unique in its domain).
    pub name: String,
}

/// The `links` object of a Keystone v3 collection.
#[derive(Default, Deserialize)]
struct Links {
    /// A further page. Keystone v3 does not paginate projects or domains: a link here
    /// means the answer is not the whole collection.
    #[serde(default)]
    next: Option<String>,
}

/// A project row as listed, with the fields that show whether the filters were applied.
#[derive(Deserialize)]
struct ProjectRow {
    id: String,
    name: String,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The answer of `GET /v3/projects`.
#[derive(Deserialize)]
struct ProjectList {
    projects: Vec<ProjectRow>,
    /// Set (to true) by Keystone when its `list_limit` cut the list short.
    #[serde(default)]
    truncated: Option<bool>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct DomainEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

/// The answer of `GET /v3/domains`.
#[derive(Deserialize)]
struct DomainList {
    domains: Vec<DomainEntry>,
    #[serde(default)]
    truncated: Option<bool>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct OneDomain {
    domain: DomainEntry,
}

/// Whether two Keystone names are the same name as Keystone may match them: Keystone filters
/// names in its database, case-insensitively on MySQL (the common production backend) and
/// exactly on PostgreSQL or SQLite. Compared by Unicode lowercase.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// The refusal of a partial Keystone list: `truncated` set, or a `next` link (Keystone v3
/// does not paginate these lists, so either means the answer is not the whole set, and
/// acting on part of a selection would revoke the rest). A truncated list is terminal
/// ([`TerminalKind::BadRequest`]: the request cannot be answered in full as asked): retrying
/// gives the same partial answer until the cloud operator changes `list_limit`.
fn refuse_partial(truncated: Option<bool>, links: Option<&Links>, what: &str) -> Result<(), Error> {
    if truncated == Some(true) {
        return Err(Error::Terminal {
            kind: TerminalKind::BadRequest,
            message: format!(
                "{what}: keystone truncated the list (\"truncated\": true; its list_limit is \
                 lower than the number of entries it had to consider), so the full set is \
                 unknown and nothing was changed; the cloud operator can raise list_limit in \
                 keystone.conf ([resource] list_limit, or [DEFAULT] list_limit) above the \
                 number of projects in the domain"
            ),
        });
    }
    if links.and_then(|l| l.next.as_deref()).is_some() {
        return Err(Error::unexpected(
            what,
            "keystone answered with a next page, which keystone v3 does not use for this \
             list; the full set is unknown and nothing was changed",
        ));
    }
    Ok(())
}

/// The projects of a `GET /v3/projects` answer, refused when the list is partial or when
/// a row shows that a filter was not applied (another domain, a disabled project, another
/// name, a missing tag): the answer would then not be the set asked for.
fn checked_projects(
    list: ProjectList,
    domain_id: &str,
    name: Option<&str>,
    tags: &[String],
    what: &str,
) -> Result<Vec<ProjectEntry>, Error> {
    refuse_partial(list.truncated, list.links.as_ref(), what)?;
    let mut projects = Vec::with_capacity(list.projects.len());
    for row in list.projects {
        let odd = |detail: String| Error::unexpected(what, format!("project {}: {detail}", row.id));
        if let Some(other) = row.domain_id.as_deref().filter(|d| *d != domain_id) {
            return Err(odd(format!("in domain {other}, not the one asked for")));
        }
        if row.enabled == Some(false) {
            return Err(odd(
                "disabled, though only enabled projects were asked for".into()
            ));
        }
        if let Some(name) = name.filter(|n| !same_name(n, &row.name)) {
            return Err(odd(format!(
                "named {:?}, which is not {name:?} even ignoring letter case",
                row.name
            )));
        }
        if !tags.is_empty() {
            let Some(has) = &row.tags else {
                return Err(odd(
                    "listed without its tags, so the tag filter cannot be checked (a \
                     keystone without project tags ignores that filter)"
                        .into(),
                ));
            };
            if let Some(missing) = tags.iter().find(|t| !has.iter().any(|h| same_name(h, t))) {
                return Err(odd(format!("does not carry tag {missing:?}")));
            }
        }
        projects.push(ProjectEntry {
            id: row.id,
            name: row.name,
        });
    }
    Ok(projects)
}

impl Session {
    /// The enabled projects of domain `domain_id` named `name` (when given; matched as
    /// Keystone matches names, see [`same_name`]) and carrying every tag of `tags`
    /// (`GET /v3/projects`). A truncated or otherwise partial list is an error, never a
    /// shorter answer.
    pub async fn list_projects(
        &self,
        domain_id: &str,
        name: Option<&str>,
        tags: &[String],
    ) -> Result<Vec<ProjectEntry>, Error> {
        let mut query = vec![
            ("domain_id", domain_id.to_string()),
            ("enabled", "true".to_string()),
        ];
        query.extend(name.map(|n| ("name", n.to_string())));
        if !tags.is_empty() {
            query.push(("tags", tags.join(",")));
        }
        let what = match (name, tags.is_empty()) {
            (Some(name), _) => format!("list projects named {name:?} in domain {domain_id}"),
            (None, false) => format!(
                "list projects of domain {domain_id} tagged {}",
                tags.join(", ")
            ),
            (None, true) => format!("list projects of domain {domain_id}"),
        };
        let target = Target::Identity(&["projects"], query);
        let list: ProjectList = self.json(Method::GET, target, None, &what).await?;
        checked_projects(list, domain_id, name, tags, &what)
    }

    /// The ID of the domain `name_or_id`: looked up by name (`GET /v3/domains?name=`, which
    /// only admins and system readers may do), else read as an ID (`GET /v3/domains/{id}`,
    /// which a domain reader may do for its own domain). None when neither finds it. A
    /// partial list, or more than one domain of that name, is an error.
    pub async fn domain_id(&self, name_or_id: &str) -> Result<Option<String>, Error> {
        let token = self.token().await?;
        if let Some((id, name)) = &token.domain
            && (name_or_id == id || name_or_id == name)
        {
            return Ok(Some(id.clone()));
        }
        let what = format!("find domain {name_or_id}");
        let by_name = Target::Identity(&["domains"], vec![("name", name_or_id.to_string())]);
        match self
            .json::<DomainList>(Method::GET, by_name, None, &what)
            .await
        {
            Ok(list) => {
                if let Some(id) = checked_domain(list, name_or_id, &what)? {
                    return Ok(Some(id));
                }
            }
            Err(Error::Terminal {
                kind: TerminalKind::Forbidden,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        let by_id = Target::Identity(&["domains", name_or_id], vec![]);
        match self
            .json::<OneDomain>(Method::GET, by_id, None, &what)
            .await
        {
            Ok(one) if one.domain.id == name_or_id => Ok(Some(one.domain.id)),
            Ok(one) => Err(Error::unexpected(
                &what,
                format!("asked for domain ID {name_or_id}, got {}", one.domain.id),
            )),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The one domain of a `GET /v3/domains?name=` answer (None when empty). A partial list,
/// a domain of another name, or two domains are errors: which one was meant is unknown.
fn checked_domain(list: DomainList, name: &str, what: &str) -> Result<Option<String>, Error> {
    refuse_partial(list.truncated, list.links.as_ref(), what)?;
    if let Some(other) = list
        .domains
        .iter()
        .find(|d| d.name.as_deref().is_some_and(|n| !same_name(n, name)))
    {
        return Err(Error::unexpected(
            what,
            format!(
                "domain {} is not named {name:?} even ignoring letter case",
                other.id
            ),
        ));
    }
    match list.domains.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.id.clone())),
        more => Err(Error::Terminal {
            kind: TerminalKind::BadRequest,
            message: format!(
                "{what}: {} domains match that name (ignoring letter case): {}; name the \
                 domain by its ID",
                more.len(),
                more.iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

struct Entry {
    session: Arc<Session>,
    last_used: Instant,
}

/// The process-wide cache of sessions: equal [`CloudConfig`]s get the same [`Session`], so
/// every ImageShare using a credential shares its token and its concurrency limit.
pub struct Clouds {
    sessions: std::sync::Mutex<HashMap<CloudConfig, Entry>>,
    per_cloud_limit: usize,
    auth_count: Arc<AtomicU64>,
    policy: super::CloudPolicy,
}

impl fmt::Debug for Clouds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clouds")
            .field("sessions", &self.session_count())
            .field("per_cloud_limit", &self.per_cloud_limit)
            .field("auth_count", &self.auth_count())
            .finish()
    }
}

impl Clouds {
    /// An empty cache whose sessions allow `per_cloud_limit` concurrent requests each.
    pub fn new(per_cloud_limit: usize) -> Clouds {
        Clouds {
            sessions: std::sync::Mutex::new(HashMap::new()),
            per_cloud_limit: per_cloud_limit.max(1),
            auth_count: Arc::new(AtomicU64::new(0)),
            policy: super::CloudPolicy::default(),
        }
    }

    /// The same cache, allowing only the clouds `policy` allows.
    pub fn with_policy(mut self, policy: super::CloudPolicy) -> Clouds {
        self.policy = policy;
        self
    }

    /// Which clouds credentials may use (checked before a session is opened).
    pub fn policy(&self) -> &super::CloudPolicy {
        &self.policy
    }

    /// The session for `cfg`: the same `Arc` for equal configs. Sessions no one holds and
    /// no one asked for in two hours are dropped here (a changed Secret leaves its old
    /// credential behind).
    pub fn session(&self, cfg: &CloudConfig) -> Arc<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|key, e| {
            key == cfg
                || Arc::strong_count(&e.session) > 1
                || now.saturating_duration_since(e.last_used) < IDLE_EVICTION
        });
        let entry = sessions.entry(cfg.clone()).or_insert_with(|| Entry {
            session: Arc::new(Session::with_counter(
                cfg.clone(),
                self.per_cloud_limit,
                self.auth_count.clone(),
            )),
            last_used: now,
        });
        entry.last_used = now;
        entry.session.clone()
    }

    /// Keystone authentication attempts made by all sessions so far (monotonic).
    pub fn auth_count(&self) -> u64 {
        self.auth_count.load(Ordering::Relaxed)
    }

    /// Number of cached sessions (distinct credentials).
    pub fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> CloudConfig {
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
    fn a_domain_scoped_token_lists_projects_but_is_refused_for_images() {
        let header = HeaderValue::from_static("gAAAA-token");
        let body = r#"{"token": {"expires_at": "2026-11-23T13:06:06.000000Z",
            "issued_at": "2026-11-23T12:06:06.000000Z",
            "domain": {"id": "d-1", "name": "Corp"}, "catalog": []}}"#;
        let token = parse_token(Some(&header), body, &config(""), Instant::now())
            .expect("a domain token parses without project or image endpoint");
        assert_eq!(token.domain, Some(("d-1".into(), "Corp".into())));
        let session = Session::new(config(""), 1);
        let refused = session.project_scoped(&token).expect_err("no project");
        assert!(
            refused.to_string().contains("scoped to domain Corp"),
            "{refused}"
        );
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

    #[test]
    fn equal_configs_share_one_session() {
        let clouds = Clouds::new(4);
        let a = clouds.session(&config(""));
        let b = clouds.session(&config(""));
        let c = clouds.session(&config(", region_name: RegionTwo"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(clouds.session_count(), 2);
        assert_eq!(clouds.auth_count(), 0);
    }

    fn projects(body: &str, name: Option<&str>, tags: &[&str]) -> Result<Vec<ProjectEntry>, Error> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let list: ProjectList = super::super::glance::decode(body, "list projects")?;
        checked_projects(list, "d1", name, &tags, "list projects")
    }

    #[test]
    fn a_truncated_project_list_is_a_terminal_error_saying_what_to_raise() {
        // Keystone with [resource] list_limit = 3 and more projects in the domain.
        let body = r#"{"projects": [
            {"id": "p1", "name": "a", "domain_id": "d1", "enabled": true, "tags": ["gpu"]},
            {"id": "p2", "name": "b", "domain_id": "d1", "enabled": true, "tags": ["gpu"]}],
            "links": {"self": "http://k/v3/projects", "previous": null, "next": null},
            "truncated": true}"#;
        let err = projects(body, None, &["gpu"]).expect_err("truncated");
        let Error::Terminal { kind, message } = &err else {
            panic!("not terminal: {err:?}");
        };
        assert_eq!(*kind, TerminalKind::BadRequest);
        assert!(message.contains("truncated"), "{message}");
        assert!(message.contains("list_limit"), "{message}");
        assert!(message.contains("nothing was changed"), "{message}");
    }

    #[test]
    fn a_complete_project_list_is_read_with_or_without_links() {
        let body = r#"{"projects": [
            {"id": "p1", "name": "a", "domain_id": "d1", "enabled": true, "tags": ["GPU", "x"]}],
            "links": {"self": "http://k/v3/projects", "previous": null, "next": null}}"#;
        let found = projects(body, None, &["gpu"]).expect("complete");
        assert_eq!(
            found,
            [ProjectEntry {
                id: "p1".into(),
                name: "a".into()
            }]
        );
        let found = projects(r#"{"projects": [], "truncated": false}"#, None, &[]).expect("empty");
        assert!(found.is_empty());
        let found = projects(r#"{"projects": [{"id": "p1", "name": "a"}]}"#, None, &[])
            .expect("rows without the filtered fields are taken as listed");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_partial_or_odd_project_list_is_refused() {
        let transient = |body: &str, name: Option<&str>, tags: &[&str]| {
            let err = projects(body, name, tags).expect_err(body);
            assert!(err.is_transient(), "{body}: {err:?}");
            err.to_string()
        };
        // Keystone v3 does not paginate projects: a next link means a partial answer.
        let message = transient(
            r#"{"projects": [], "links": {"next": "http://k/v3/projects?marker=p9"}}"#,
            None,
            &[],
        );
        assert!(message.contains("next page"), "{message}");
        // Filters that were not applied: another domain, a disabled project, another name,
        // tags missing or not reported (a keystone without project tags ignores the filter).
        transient(
            r#"{"projects": [{"id": "p1", "name": "a", "domain_id": "d2"}]}"#,
            None,
            &[],
        );
        transient(
            r#"{"projects": [{"id": "p1", "name": "a", "enabled": false}]}"#,
            None,
            &[],
        );
        let message = transient(
            r#"{"projects": [{"id": "p1", "name": "team-b"}]}"#,
            Some("team-a"),
            &[],
        );
        assert!(message.contains("letter case"), "{message}");
        transient(
            r#"{"projects": [{"id": "p1", "name": "a", "tags": ["x"]}]}"#,
            None,
            &["gpu"],
        );
        transient(
            r#"{"projects": [{"id": "p1", "name": "a"}]}"#,
            None,
            &["gpu"],
        );
        // Shapes that are not a project list at all.
        transient(r#"{"projects": [], "truncated": "yes"}"#, None, &[]);
        transient(r#"{"projects": {"id": "p1"}}"#, None, &[]);
        transient(r#"{"items": []}"#, None, &[]);
    }

    #[test]
    fn names_match_ignoring_letter_case_as_a_mysql_backed_keystone_does() {
        let body = r#"{"projects": [{"id": "p1", "name": "Team-A", "domain_id": "d1"}]}"#;
        let found = projects(body, Some("team-a"), &[]).expect("same name, other case");
        assert_eq!(found[0].name, "Team-A");
        assert!(same_name("Ärzte", "äRZTE"));
        assert!(!same_name("team-a", "team-b"));
    }

    fn domain(body: &str, name: &str) -> Result<Option<String>, Error> {
        let list: DomainList = super::super::glance::decode(body, "find domain")?;
        checked_domain(list, name, "find domain")
    }

    #[test]
    fn a_domain_list_must_be_complete_and_name_one_domain() {
        assert_eq!(
            domain(r#"{"domains": [{"id": "d1", "name": "Corp"}]}"#, "corp").expect("one"),
            Some("d1".into())
        );
        assert_eq!(domain(r#"{"domains": []}"#, "corp").expect("none"), None);
        let err = domain(r#"{"domains": [], "truncated": true}"#, "corp").expect_err("cut");
        assert!(err.to_string().contains("list_limit"), "{err}");
        let err = domain(
            r#"{"domains": [{"id": "d1", "name": "Corp"}, {"id": "d2", "name": "CORP"}]}"#,
            "corp",
        )
        .expect_err("two");
        assert!(err.to_string().contains("2 domains"), "{err}");
        let err = domain(r#"{"domains": [{"id": "d1", "name": "Other"}]}"#, "corp")
            .expect_err("not filtered");
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn session_debug_shows_no_secret() {
        let session = Session::new(config(""), 1);
        assert!(!format!("{session:?}").contains("pw-secret"));
    }
}
