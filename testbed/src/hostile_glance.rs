//! A hostile "Glance" a tenant could run and point its own credentials at (through
//! `image_endpoint_override`): it claims that an image the tenant does not own is owned by
//! the tenant's project, with whatever members the tenant likes, or it serves an endless
//! chain of slow image pages. The tests use it as the adversary, never as a stand-in for the
//! real Glance: what they assert is what the operator does to the real one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::server::{Served, serve};

/// How the endpoint lies.
#[derive(Clone, Debug)]
pub enum Lie {
    /// Image `image` is owned by `owner` and shared with `members` (project → status).
    Owns {
        /// Image ID.
        image: String,
        /// The project it claims owns the image.
        owner: String,
        /// The members it claims, project to status.
        members: BTreeMap<String, String>,
    },
    /// Every image list answers after `delay` with one image and a `next` link to another
    /// page, without end.
    EndlessPages {
        /// Delay before each page.
        delay: Duration,
    },
}

struct Shared {
    lie: Lie,
    requests: Mutex<Vec<String>>,
}

/// A running hostile endpoint; stops when dropped.
pub struct HostileGlance {
    /// Its base URL, e.g. http://127.0.0.1:41234.
    pub url: String,
    /// Its port.
    pub port: u16,
    shared: Arc<Shared>,
    _server: Served,
}

impl HostileGlance {
    /// Starts one on a free loopback port.
    pub async fn start(lie: Lie) -> HostileGlance {
        let shared = Arc::new(Shared {
            lie,
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v2/images", get(list))
            .route("/v2/images/{id}", get(image))
            .route("/v2/images/{id}/members", get(members).post(ok))
            .route(
                "/v2/images/{id}/members/{project}",
                get(ok).put(ok).delete(ok),
            )
            .fallback(fallback)
            .with_state(shared.clone());
        let (port, server) = serve(app).await;
        HostileGlance {
            url: format!("http://127.0.0.1:{port}"),
            port,
            shared,
            _server: server,
        }
    }

    /// The requests it received (method and path), in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// A JSON answer.
fn answer(body: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn record(shared: &Shared, what: String) {
    shared.requests.lock().unwrap().push(what);
}

async fn image(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    record(&shared, format!("GET /v2/images/{id}"));
    let owner = match &shared.lie {
        Lie::Owns { image, owner, .. } if *image == id => owner.clone(),
        _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
    };
    answer(json!({"id": id, "name": "golden", "visibility": "shared", "owner": owner}))
}

async fn members(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    record(&shared, format!("GET /v2/images/{id}/members"));
    let rows: Vec<Value> = match &shared.lie {
        Lie::Owns { members, .. } => members
            .iter()
            .map(|(p, s)| json!({"image_id": id, "member_id": p, "status": s}))
            .collect(),
        Lie::EndlessPages { .. } => Vec::new(),
    };
    answer(json!({"members": rows}))
}

async fn list(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    record(
        &shared,
        format!("GET /v2/images?{}", query.unwrap_or_default()),
    );
    let Lie::EndlessPages { delay } = shared.lie else {
        return answer(json!({"images": []}));
    };
    tokio::time::sleep(delay).await;
    let n = shared.requests.lock().unwrap().len();
    answer(json!({
        "images": [{"id": format!("00000000-0000-0000-0000-{n:012}"), "visibility": "shared"}],
        "next": format!("/v2/images?limit=100&marker=00000000-0000-0000-0000-{n:012}"),
    }))
}

async fn ok(State(shared): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    record(&shared, format!("write {uri}"));
    answer(json!({}))
}

async fn fallback(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
) -> axum::http::StatusCode {
    record(&shared, format!("other {uri}"));
    axum::http::StatusCode::NOT_FOUND
}
