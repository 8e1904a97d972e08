//! A small in-process Keystone + Glance stand-in (axum on loopback) for the HTTP tests of
//! `session`, `glance` and `identity`: it issues numbered tokens, refuses old ones on
//! demand, pages image lists in several ways, answers with real Glance error shapes, and
//! records what it was asked.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};

use super::CloudConfig;

/// The stand-in's state and what it observed.
#[derive(Default)]
pub(super) struct Mock {
    pub(super) base: String,
    /// Authentications answered (the n-th issues token `tok-n`).
    pub(super) auths: AtomicU64,
    /// Glance accepts tokens `tok-n` with n at least this (0 = all).
    pub(super) accept_from: AtomicU64,
    /// Keystone refuses every password.
    pub(super) refuse_auth: AtomicBool,
    /// Glance requests in flight now, and the most seen at once.
    pub(super) in_flight: AtomicUsize,
    pub(super) max_in_flight: AtomicUsize,
    /// Query strings of `GET /v2/images`.
    pub(super) image_queries: Mutex<Vec<String>>,
    /// How `GET /v2/images` pages link to the next one.
    pub(super) paging: Mutex<Paging>,
    /// Every request to Glance and Keystone's lists: `METHOD path?query`.
    pub(super) requests: Mutex<Vec<String>>,
    /// Answer 404 to every Glance request (a proxy's default backend during an outage).
    pub(super) outage: AtomicBool,
    /// The body of `GET /v3/projects` and `GET /v3/domains`.
    pub(super) keystone_list: Mutex<String>,
}

/// The `next` links of the image pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Paging {
    /// Two pages, as Glance links them.
    #[default]
    Glance,
    /// The first page links to another host.
    OtherHost,
    /// Every page links to the second one again.
    Loop,
    /// Every page links to a new one, forever.
    Endless,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).expect("response")
}

fn image_json(id: &str, name: &str) -> String {
    format!(
        r#"{{"id": "{id}", "name": "{name}", "owner": "p1", "visibility": "shared", "tags": ["golden"], "status": "active"}}"#
    )
}

async fn handle(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let path = uri.path();
    if method == Method::POST && path == "/v3/auth/tokens" {
        let n = mock.auths.fetch_add(1, Ordering::SeqCst) + 1;
        // Password hashing on a real Keystone takes ~350 ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if mock.refuse_auth.load(Ordering::SeqCst) {
            return reply(
                401,
                &[],
                r#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#,
            );
        }
        let body = format!(
            r#"{{"token": {{"expires_at": "2030-01-01T01:00:00.000000Z", "issued_at": "2030-01-01T00:00:00.000000Z",
                "project": {{"id": "p1"}}, "catalog": [{{"type": "image", "endpoints": [
                {{"interface": "public", "region_id": "RegionOne", "url": "{}"}}]}}]}}}}"#,
            mock.base
        );
        let token = format!("tok-{n}");
        return reply(201, &[("x-subject-token", token.as_str())], &body);
    }
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("tok-"))
        .and_then(|n| n.parse::<u64>().ok());
    if token.is_none_or(|n| n < mock.accept_from.load(Ordering::SeqCst)) {
        return reply(
            401,
            &[],
            r#"{"message": "This server could not verify that you are authorized.<br /><br />", "code": "401 Unauthorized", "title": "Unauthorized"}"#,
        );
    }
    let line = match uri.query() {
        Some(query) => format!("{method} {path}?{query}"),
        None => format!("{method} {path}"),
    };
    mock.requests.lock().expect("lock").push(line);
    if method == Method::GET && (path == "/v3/projects" || path == "/v3/domains") {
        return reply(200, &[], &mock.keystone_list.lock().expect("lock"));
    }
    if mock.outage.load(Ordering::SeqCst) {
        return reply(404, &[], "<html><body>default backend - 404</body></html>");
    }
    let now = mock.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    mock.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    mock.in_flight.fetch_sub(1, Ordering::SeqCst);
    match (method.as_str(), path) {
        ("GET", "/v2/images") if uri.query().unwrap_or_default().contains("id=in%3A") => {
            // Only image `listed` exists among those the removal tests ask about.
            let query = uri.query().unwrap_or_default();
            if query.contains("id=in%3Alisted&") {
                reply(
                    200,
                    &[],
                    &format!(r#"{{"images": [{}]}}"#, image_json("listed", "x")),
                )
            } else {
                reply(200, &[], r#"{"images": []}"#)
            }
        }
        ("GET", "/v2/images") => {
            let query = uri.query().unwrap_or_default().to_owned();
            mock.image_queries.lock().expect("lock").push(query.clone());
            let paging = *mock.paging.lock().expect("lock");
            let page = |next: &str| {
                let images = format!(
                    "{}, {}",
                    image_json("a", "ubuntu-1"),
                    image_json("b", "debian-12")
                );
                reply(
                    200,
                    &[],
                    &format!(r#"{{"images": [{images}], "next": "{next}"}}"#),
                )
            };
            match paging {
                Paging::Glance => {}
                Paging::OtherHost => return page("http://elsewhere.invalid/v2/images?marker=b"),
                Paging::Loop => return page("/v2/images?limit=100&marker=b"),
                Paging::Endless => {
                    let n = mock.image_queries.lock().expect("lock").len();
                    return page(&format!("/v2/images?limit=100&marker=m{n}"));
                }
            }
            if query.contains("marker=b") {
                reply(
                    200,
                    &[],
                    &format!(r#"{{"images": [{}]}}"#, image_json("c", "ubuntu-2")),
                )
            } else {
                reply(
                    200,
                    &[],
                    &format!(
                        r#"{{"images": [{}, {}], "next": "/v2/images?limit=100&tag=golden&owner=p1&marker=b"}}"#,
                        image_json("a", "ubuntu-1"),
                        image_json("b", "debian-12")
                    ),
                )
            }
        }
        ("GET", "/v2/images/busy/members") => reply(
            503,
            &[("retry-after", "7")],
            "<html><body><h1>503 Service Unavailable</h1></body></html>",
        ),
        ("POST", "/v2/images/full/members") => reply(
            413,
            &[],
            r#"{"message": "The limit has been exceeded on the number of allowed image members for this image. Attempted: 129, Maximum: 128<br /><br />", "code": "413 Request Entity Too Large", "title": "Request Entity Too Large"}"#,
        ),
        ("DELETE", "/v2/images/i1/members/gone") => reply(404, &[], r#"{"message": "gone"}"#),
        ("DELETE", "/v2/images/i1/members/p2") => reply(204, &[], ""),
        // Removal tests: `i1` lists no member `gone`; `stale` still lists it; the image
        // `deleted` is gone (its member list 404, the image list without it); `listed`
        // answers 404 for its members but is still listed.
        ("DELETE", p) if p.ends_with("/members/gone") => reply(404, &[], r#"{"message": "gone"}"#),
        ("GET", "/v2/images/i1/members") => reply(200, &[], r#"{"members": []}"#),
        ("GET", "/v2/images/stale/members") => reply(
            200,
            &[],
            r#"{"members": [{"image_id": "stale", "member_id": "gone", "status": "accepted"}]}"#,
        ),
        ("GET", "/v2/images/deleted/members" | "/v2/images/listed/members") => {
            reply(404, &[], r#"{"message": "not found"}"#)
        }
        ("GET", p) if p.starts_with("/v2/images/") => {
            let id = p.trim_start_matches("/v2/images/");
            reply(200, &[], &image_json(id, "ubuntu-1"))
        }
        _ => reply(404, &[], "{}"),
    }
}

/// Starts a stand-in on a free loopback port.
pub(super) async fn start() -> Arc<Mock> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let mock = Arc::new(Mock {
        base: format!("http://{addr}"),
        ..Mock::default()
    });
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(mock.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    mock
}

/// Config `test`: user u1, project p1, in RegionOne, at the stand-in's Keystone.
pub(super) fn config(mock: &Mock) -> CloudConfig {
    let yaml = format!(
        "clouds: {{test: {{auth: {{auth_url: '{}', user_id: u1, password: pw, project_id: p1}}, region_name: RegionOne}}}}",
        mock.base
    );
    CloudConfig::from_clouds_yaml(&yaml, "test", None).expect("config")
}
