//! A forwarding HTTP proxy with fault injection, for the fault tests. It forwards every
//! request to the real Glance and answers with the real answer; a rule makes it answer some
//! requests with a fault instead (an HTTP status with an optional `Retry-After`, a delay
//! before forwarding, or a connection cut mid-answer), or answers every request with one
//! status as a load balancer's default backend does while the service behind it is down
//! ([`FaultProxy::outage`]). It is not a fake server: without rules it is transparent. It
//! records every request it saw, with the time, so tests can measure gaps and rates.
//! [`behind_proxy`] gives a test namespace whose credentials reach Glance through one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use crate::cloud::Os;
use crate::namespace::TestNs;
use crate::server::{Served, serve};
use crate::stack::clouds_yaml_via;

/// What to do instead of (or before) forwarding.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and, if given, this `Retry-After` header value.
    Status(u16, Option<String>),
    /// Wait this long, then forward.
    Delay(Duration),
    /// Send the headers of a 200, then cut the connection.
    Reset,
}

/// Injects `fault` into the next `times` requests whose method is `method` and whose path
/// contains `path`.
#[derive(Clone, Debug)]
pub struct Rule {
    /// HTTP method, e.g. "GET".
    pub method: &'static str,
    /// A part of the path, e.g. "/members".
    pub path: String,
    /// The fault.
    pub fault: Fault,
    /// How many matching requests get it.
    pub times: usize,
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The fault injected, if any.
    pub fault: Option<String>,
}

#[derive(Default)]
struct Book {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    /// While set, every request gets this status from the "default backend".
    outage: Option<u16>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    book: Mutex<Book>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// Its base URL, e.g. http://127.0.0.1:41234.
    pub url: String,
    shared: Arc<Shared>,
    _server: Served,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of `upstream` (a base URL).
    pub async fn start(upstream: &str) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            book: Mutex::default(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (port, server) = serve(app).await;
        FaultProxy {
            url: format!("http://127.0.0.1:{port}"),
            shared,
            _server: server,
        }
    }

    /// Adds a rule (rules are tried in the order they were added).
    pub fn inject(&self, rule: Rule) {
        self.shared.book.lock().unwrap().rules.push(rule);
    }

    /// Answers every request with `status` and a default backend's page (as ingress-nginx
    /// does with 404 while no backend is ready), without forwarding, until [`heal`].
    ///
    /// [`heal`]: FaultProxy::heal
    pub fn outage(&self, status: u16) {
        self.shared.book.lock().unwrap().outage = Some(status);
    }

    /// Drops every rule that is left and ends an outage.
    pub fn heal(&self) {
        let mut book = self.shared.book.lock().unwrap();
        book.rules.clear();
        book.outage = None;
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.book.lock().unwrap().seen.clone()
    }

    /// When each request of `method` on exactly `path` (no query) arrived.
    pub fn calls_to(&self, method: &str, path: &str) -> Vec<Instant> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path == path)
            .map(|s| s.at)
            .collect()
    }

    /// When each request of `method` whose path and query contain `part` arrived.
    pub fn calls_containing(&self, method: &str, part: &str) -> Vec<Instant> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path.contains(part))
            .map(|s| s.at)
            .collect()
    }
}

/// A test namespace `e2e-<prefix>-…` whose credentials Secrets of `identities` (e.g.
/// `producer-cloud` for "producer") reach Glance through a new proxy (image_endpoint_override),
/// the proxy, and the producer identity (which reaches Glance directly).
pub async fn behind_proxy(prefix: &str, identities: &[&str]) -> (TestNs, FaultProxy, Os) {
    let t = TestNs::new(prefix).await;
    let producer = Os::login("producer").await;
    let proxy = FaultProxy::start(producer.glance_url()).await;
    for identity in identities {
        t.put_secret(
            &format!("{identity}-cloud"),
            &clouds_yaml_via(identity, &proxy.url),
        )
        .await;
    }
    (t, proxy, producer)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let fault = {
        let mut book = shared.book.lock().unwrap();
        if let Some(code) = book.outage {
            book.seen.push(Seen {
                at: Instant::now(),
                method: method.clone(),
                path: path.clone(),
                fault: Some(format!("outage {code}")),
            });
            let page = format!("<html><body><h1>default backend - {code}</h1></body></html>");
            let mut response = Response::new(Body::from(page));
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            return response;
        }
        let rule = book
            .rules
            .iter_mut()
            .find(|r| r.times > 0 && r.method == method && path.contains(&r.path));
        let fault = rule.map(|r| {
            r.times -= 1;
            r.fault.clone()
        });
        book.seen.push(Seen {
            at: Instant::now(),
            method: method.clone(),
            path: path.clone(),
            fault: fault.as_ref().map(|f| format!("{f:?}")),
        });
        fault
    };
    match fault {
        Some(Fault::Status(code, retry_after)) => {
            let mut response = Response::new(Body::from(format!("injected {code}")));
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            if let Some(value) = retry_after {
                response.headers_mut().insert(
                    HeaderName::from_static("retry-after"),
                    HeaderValue::from_str(&value).unwrap(),
                );
            }
            return response;
        }
        Some(Fault::Reset) => {
            let cut = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("injected reset"))
            });
            return Response::new(Body::from_stream(cut));
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    forward(&shared, request, &path).await
}

/// Sends the request on to the upstream and returns its answer.
async fn forward(shared: &Shared, request: Request, path: &str) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut outgoing = shared
        .http
        .request(parts.method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(answer) = outgoing.send().await else {
        let mut response = Response::new(Body::from("proxy: upstream unreachable"));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        return response;
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "transfer-encoding" && name != "connection" && name != "content-length" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
