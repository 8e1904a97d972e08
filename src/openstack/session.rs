//! Sessions (I/O): one [`Session`] per distinct credential, holding its HTTP client, its
//! cached token and its concurrency limit; [`Clouds`], the process-wide cache of sessions.
//!
//! Password auth costs ~350 ms on a real Keystone, so tokens are cached and shared by every
//! ImageShare using the same credential: concurrent callers trigger ONE authentication. A
//! token is renewed shortly before it expires (see [`needs_refresh`](super::auth::needs_refresh))
//! and once after an answer of 401. A failed authentication is remembered briefly so a wrong
//! password does not turn into a storm of attempts (and a locked account). Requests go
//! through the transport within the session's limit; Glance and Keystone calls are methods
//! on [`Session`] in `glance` and `identity`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

use super::auth::{Token, request_token};
use super::clouds::{CloudConfig, Secret};
use super::error::Error;
use super::metrics::RequestMetrics;
use super::policy::CloudPolicy;
use super::transport::{self, Call, Channel, build_client};

/// How long a refused authentication (bad credentials, forbidden) is answered from memory.
const HOLD_TERMINAL_FAILURE: Duration = Duration::from_secs(60);
/// How long a transient authentication failure is answered from memory.
const HOLD_TRANSIENT_FAILURE: Duration = Duration::from_secs(5);
/// Sessions nobody holds and nobody asked for this long are dropped from [`Clouds`].
const IDLE_EVICTION: Duration = Duration::from_secs(2 * 60 * 60);

/// Token state of a session, behind one async mutex so one caller authenticates and the
/// others wait for its result.
#[derive(Default)]
struct AuthState {
    token: Option<Arc<Token>>,
    failure: Option<(Instant, Error)>,
}

/// A Keystone session for one [`CloudConfig`]: HTTP client, cached token, and a limit on
/// concurrent requests to that cloud. Glance and Keystone calls are methods on it (see
/// `glance.rs` and `identity.rs`).
pub struct Session {
    config: CloudConfig,
    client: Result<reqwest::Client, String>,
    state: Mutex<AuthState>,
    permits: Semaphore,
    auth_counter: Arc<AtomicU64>,
    metrics: RequestMetrics,
    /// Rows at which a Keystone list may have been cut silently (`max_db_limit`).
    pub(super) list_cap: usize,
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
    /// A session with its own authentication counter and request metrics (exported
    /// nowhere), allowing `concurrency` requests at a time (at least one). Never fails: a
    /// client that cannot be built makes every call return a
    /// [`TerminalKind::Config`](super::TerminalKind::Config) error.
    pub fn new(config: CloudConfig, concurrency: usize) -> Session {
        Session::shared(
            config,
            concurrency,
            Arc::new(AtomicU64::new(0)),
            RequestMetrics::default(),
            super::policy::KEYSTONE_MAX_DB_LIMIT,
        )
    }

    /// A session counting authentications in `counter` and recording requests in `metrics`,
    /// both shared with the other sessions of a [`Clouds`].
    fn shared(
        config: CloudConfig,
        concurrency: usize,
        counter: Arc<AtomicU64>,
        metrics: RequestMetrics,
        list_cap: usize,
    ) -> Session {
        Session {
            client: build_client(&config),
            config,
            state: Mutex::new(AuthState::default()),
            permits: Semaphore::new(concurrency.max(1)),
            auth_counter: counter,
            metrics,
            list_cap,
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
                self.metrics.count_token();
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

    /// One of the session's request slots.
    async fn permit(&self) -> Result<SemaphorePermit<'_>, Error> {
        self.permits.acquire().await.map_err(|_| {
            Error::transient(format!("cloud {}: session closed", self.config.cloud_name))
        })
    }

    /// Asks Keystone for a new token (counted in the authentication counter).
    async fn authenticate(&self) -> Result<Token, Error> {
        let client = self.client()?;
        self.auth_counter.fetch_add(1, Ordering::Relaxed);
        request_token(client, &self.config, &self.metrics).await
    }

    /// Sends one request of `call` within the session's concurrency limit, with the
    /// session's token, to the URL `url` gives for that token (see [`transport::send`]),
    /// and returns the body of its 2xx answer.
    pub(super) async fn send(
        &self,
        call: &Call<'_>,
        body: Option<&Value>,
        url: impl Fn(&Token) -> Result<Url, Error>,
    ) -> Result<String, Error> {
        let _permit = self.permit().await?;
        transport::send(self, call, body, url).await
    }
}

impl Channel for Session {
    type Token = Token;

    fn client(&self) -> Result<&reqwest::Client, Error> {
        self.client.as_ref().map_err(|e| Error::config(e.clone()))
    }

    fn metrics(&self) -> &RequestMetrics {
        &self.metrics
    }

    async fn token(&self) -> Result<Arc<Token>, Error> {
        Session::token(self).await
    }

    /// Drops the cached token only if it is still `stale` (so concurrent 401s on the same
    /// token cause one re-authentication, not one each).
    async fn invalidate(&self, stale: &Arc<Token>) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, stale))
        {
            state.token = None;
        }
    }

    fn secret(token: &Token) -> &Secret {
        token.secret()
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
    policy: CloudPolicy,
    metrics: RequestMetrics,
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
            policy: CloudPolicy::default(),
            metrics: RequestMetrics::default(),
        }
    }

    /// The same cache, allowing only the clouds `policy` allows.
    pub fn with_policy(mut self, policy: CloudPolicy) -> Clouds {
        self.policy = policy;
        self
    }

    /// The same cache, its sessions recording every request and token in `metrics`
    /// (registered by the operator; see [`RequestMetrics::register`]).
    pub fn with_metrics(mut self, metrics: RequestMetrics) -> Clouds {
        self.metrics = metrics;
        self
    }

    /// Which clouds credentials may use (checked before a session is opened).
    pub fn policy(&self) -> &CloudPolicy {
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
            session: Arc::new(Session::shared(
                cfg.clone(),
                self.per_cloud_limit,
                self.auth_count.clone(),
                self.metrics.clone(),
                self.policy.list_cap(),
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
mod http_tests;
#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::openstack::auth::parse_token;
    use crate::openstack::auth::tests::config;

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

    #[test]
    fn session_debug_shows_no_secret() {
        let session = Session::new(config(""), 1);
        assert!(!format!("{session:?}").contains("pw-secret"));
    }
}
