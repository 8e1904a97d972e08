//! The one HTTP path to Keystone and Glance (I/O), shared by the token request and every
//! Glance and Keystone call: the HTTP client a session builds (`build_client`), one
//! request sent, read and recorded (`exchange`), a request sent with the session's token
//! and sent once more with a new token after a 401 (`send`), the handoff of a non-success
//! answer (status, `Retry-After`, body) to the one classifier (`Answer::classify`), and
//! the decoding of a 2xx JSON body (`decode`).
//!
//! Every request is logged at debug (cloud, operation, method, path, status, elapsed time)
//! and counted in the [`RequestMetrics`]. The token is sent as a sensitive header and never
//! logged. URLs are the caller's: this module knows no Keystone or Glance paths.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::clouds::{CloudConfig, Secret};
use super::error::{Error, TerminalKind, classify};
use super::metrics::{Operation, RequestMetrics};

/// TCP connect timeout for Keystone and Glance.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout for Keystone and Glance.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client for `config`: timeouts, no redirects, and the TLS trust `config` asks
/// for. The error is a message for a [`TerminalKind::Config`] error.
pub(super) fn build_client(config: &CloudConfig) -> Result<reqwest::Client, String> {
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

/// `base` with `segments` appended, each percent-encoded as one path segment. A segment
/// that cannot travel as itself is refused ([`TerminalKind::BadRequest`]): an empty one,
/// `.` and `..` (the URL parser drops them or removes the segment before) and one with a
/// tab, CR or LF (the URL parser strips these, so `.\t.` would become `..`). Glance accepts
/// such member ids, but a request for one would address another resource: member `a\nb`
/// would act on member `ab`, and removing `.\t.` would send `DELETE /v2/images/{id}/`,
/// whose 404 reads as "already removed" while the member stays.
pub(super) fn join(mut base: Url, segments: &[&str], what: &str) -> Result<Url, Error> {
    if let Some(bad) = segments
        .iter()
        .find(|s| matches!(**s, "" | "." | "..") || s.contains(['\t', '\n', '\r']))
    {
        return Err(Error::Terminal {
            kind: TerminalKind::BadRequest,
            message: format!("{what}: the id {bad:?} cannot be sent as one url path segment"),
        });
    }
    let text = base.to_string();
    base.path_segments_mut()
        .map_err(|()| Error::config(format!("image endpoint {text} cannot have a path")))?
        .extend(segments);
    Ok(base)
}

/// Decodes the body of a 2xx answer (no I/O). A body that is not the documented JSON is
/// [`Error::unexpected`] (transient).
pub(super) fn decode<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::unexpected(what, e))
}

/// One request, as messages, logs and metrics name it.
pub(super) struct Call<'a> {
    /// Which request (metric labels, method).
    pub(super) operation: Operation,
    /// What it does, with the ids, for error messages (`add member p2 to image i1`).
    pub(super) what: &'a str,
    /// The cloud it goes to (`cloud_name`), for logs.
    pub(super) cloud: &'a str,
    /// A secret the request carries in its body, removed from any error message.
    pub(super) secret: Option<&'a str>,
}

impl Call<'_> {
    /// The error for a request that got no (whole) answer.
    fn failed(&self, err: &reqwest::Error) -> Error {
        let err = Error::transport(self.what, err);
        match self.secret {
            Some(secret) => err.redact(secret),
            None => err,
        }
    }
}

/// A whole answer: status, headers and body.
pub(super) struct Answer {
    /// The HTTP status.
    pub(super) status: StatusCode,
    /// The answer's headers.
    pub(super) headers: HeaderMap,
    /// The body, read in full.
    pub(super) text: String,
}

impl Answer {
    /// The error a non-success answer stands for: the one classifier, given the status,
    /// the `Retry-After` header and the body.
    pub(super) fn classify(&self, what: &str) -> Error {
        classify(self.status, self.headers.get(RETRY_AFTER), &self.text, what)
    }
}

/// Sends `request` once and reads the whole answer, recording it: one debug line and the
/// request metrics (with its status, or `error` when none came). A request that gets no
/// whole answer is a transport error ([`Error::transport`], transient).
pub(super) async fn exchange(
    request: RequestBuilder,
    call: &Call<'_>,
    metrics: &RequestMetrics,
) -> Result<Answer, Error> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| call.failed(&e))?;
    let (method, url) = (request.method().clone(), request.url().clone());
    let (cloud, operation) = (call.cloud, call.operation.as_str());
    let started = Instant::now();
    let response = match client.execute(request).await {
        Ok(response) => response,
        Err(err) => {
            let elapsed = started.elapsed();
            metrics.record(call.operation, None, elapsed);
            let err = call.failed(&err);
            tracing::debug!(cloud, operation, method = %method, path = url.path(),
                elapsed_ms = elapsed.as_millis() as u64, error = %err, "openstack call failed");
            return Err(err);
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await;
    let elapsed = started.elapsed();
    metrics.record(call.operation, Some(status), elapsed);
    tracing::debug!(cloud, operation, method = %method, path = url.path(),
        status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "openstack call");
    Ok(Answer {
        status,
        headers,
        text: text.map_err(|e| call.failed(&e))?,
    })
}

/// What [`send`] needs from the session a request is sent for: its client, its token, and
/// where to record the request.
pub(super) trait Channel {
    /// The session's token.
    type Token;

    /// The HTTP client, or the config error that prevented building it.
    fn client(&self) -> Result<&reqwest::Client, Error>;

    /// Where requests are recorded.
    fn metrics(&self) -> &RequestMetrics;

    /// A valid token (the cached one, or a new one).
    async fn token(&self) -> Result<Arc<Self::Token>, Error>;

    /// Drops `stale` unless it was already replaced: an answer refused it.
    async fn invalidate(&self, stale: &Arc<Self::Token>);

    /// The value of the `X-Auth-Token` header for `token`.
    fn secret(token: &Self::Token) -> &Secret;
}

/// Sends one request with `channel`'s token to the URL `url` gives for that token (with
/// `body` as JSON when given). A 401 drops that token and the request is sent once more
/// with a new one. Returns the body of a 2xx answer; any other answer is classified.
pub(super) async fn send<C: Channel>(
    channel: &C,
    call: &Call<'_>,
    body: Option<&Value>,
    url: impl Fn(&C::Token) -> Result<Url, Error>,
) -> Result<String, Error> {
    let client = channel.client()?;
    let mut retried = false;
    loop {
        let token = channel.token().await?;
        let url = url(&token)?;
        let mut auth = HeaderValue::from_str(C::secret(&token).expose())
            .map_err(|_| Error::unexpected(call.what, "keystone token is not a valid header"))?;
        auth.set_sensitive(true);
        let mut request = client
            .request(call.operation.method(), url)
            .header("X-Auth-Token", auth)
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = exchange(request, call, channel.metrics()).await?;
        if answer.status == StatusCode::UNAUTHORIZED && !retried {
            retried = true;
            channel.invalidate(&token).await;
            continue;
        }
        return if answer.status.is_success() {
            Ok(answer.text)
        } else {
            Err(answer.classify(call.what))
        };
    }
}
