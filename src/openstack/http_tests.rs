//! Tests of the HTTP layer against a small in-process Keystone + Glance stand-in (axum on
//! loopback): one shared authentication for concurrent callers, one retry on 401, the
//! per-cloud concurrency limit, pagination, and classification of real answers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};

use super::glance::PageBounds;
use super::{CloudConfig, Clouds, Error, ImageQuery, Removal, Session, TerminalKind};

/// The stand-in's state and what it observed.
#[derive(Default)]
struct Mock {
    base: String,
    /// Authentications answered (the n-th issues token `tok-n`).
    auths: AtomicU64,
    /// Glance accepts tokens `tok-n` with n at least this (0 = all).
    accept_from: AtomicU64,
    /// Keystone refuses every password.
    refuse_auth: AtomicBool,
    /// Glance requests in flight now, and the most seen at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Query strings of `GET /v2/images`.
    image_queries: Mutex<Vec<String>>,
    /// How `GET /v2/images` pages link to the next one.
    paging: Mutex<Paging>,
    /// Every request to Glance and Keystone's lists: `METHOD path?query`.
    requests: Mutex<Vec<String>>,
    /// Answer 404 to every Glance request (a proxy's default backend during an outage).
    outage: AtomicBool,
    /// The body of `GET /v3/projects` and `GET /v3/domains`.
    keystone_list: Mutex<String>,
}

/// The `next` links of the image pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Paging {
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

async fn start() -> Arc<Mock> {
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

fn config(mock: &Mock) -> CloudConfig {
    let yaml = format!(
        "clouds: {{test: {{auth: {{auth_url: '{}', user_id: u1, password: pw, project_id: p1}}, region_name: RegionOne}}}}",
        mock.base
    );
    CloudConfig::from_clouds_yaml(&yaml, "test", None).expect("config")
}

#[tokio::test]
async fn concurrent_callers_share_one_authentication() {
    let mock = start().await;
    let clouds = Clouds::new(8);
    let cfg = config(&mock);
    let calls = (0..20).map(|i| {
        let session = clouds.session(&cfg);
        tokio::spawn(async move { session.get_image(&format!("img-{i}")).await })
    });
    for call in futures::future::join_all(calls).await {
        let image = call.expect("task").expect("image");
        assert!(image.id.starts_with("img-"));
    }
    assert_eq!(mock.auths.load(Ordering::SeqCst), 1);
    assert_eq!(clouds.auth_count(), 1);
    assert_eq!(clouds.session_count(), 1);
}

#[tokio::test]
async fn a_401_from_glance_reauthenticates_and_retries_once() {
    let mock = start().await;
    let session = Session::new(config(&mock), 4);
    session.get_image("i1").await.expect("first token works");
    // Keystone revoked tok-1: Glance now wants a newer token.
    mock.accept_from.store(2, Ordering::SeqCst);
    let image = session.get_image("i1").await.expect("retried with tok-2");
    assert_eq!(image.id, "i1");
    assert_eq!(mock.auths.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_second_401_is_credentials_invalid_without_more_retries() {
    let mock = start().await;
    mock.accept_from.store(u64::MAX, Ordering::SeqCst);
    let session = Session::new(config(&mock), 4);
    let err = session.get_image("i1").await.expect_err("always 401");
    assert!(
        matches!(
            err,
            Error::Terminal {
                kind: TerminalKind::CredentialsInvalid,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "get image i1: credentials rejected (http 401): This server could not verify that you are authorized."
    );
    assert_eq!(mock.auths.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refused_credentials_are_not_retried_against_keystone_at_once() {
    let mock = start().await;
    mock.refuse_auth.store(true, Ordering::SeqCst);
    let session = Session::new(config(&mock), 4);
    for _ in 0..3 {
        let err = session.get_image("i1").await.expect_err("refused");
        assert_eq!(
            err.to_string(),
            "keystone authentication for cloud test (user id u1, project id p1): credentials \
             rejected (http 401): The request you have made requires authentication."
        );
    }
    assert_eq!(mock.auths.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn requests_to_one_cloud_respect_the_concurrency_limit() {
    let mock = start().await;
    let clouds = Clouds::new(2);
    let session = clouds.session(&config(&mock));
    session.project_id().await.expect("token first");
    let calls = (0..10).map(|i| {
        let session = session.clone();
        tokio::spawn(async move { session.get_image(&format!("i{i}")).await })
    });
    for call in futures::future::join_all(calls).await {
        call.expect("task").expect("image");
    }
    assert_eq!(mock.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn image_listing_follows_next_links_and_filters_the_prefix() {
    let mock = start().await;
    let session = Session::new(config(&mock), 4);
    let query = ImageQuery {
        name: None,
        tags: vec!["golden".into()],
        owner: Some("p1".into()),
        name_prefix: Some("ubuntu-".into()),
    };
    let images = session.list_images(&query).await.expect("listed");
    let ids: HashSet<_> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, HashSet::from(["a", "c"]));
    let queries = mock.image_queries.lock().expect("lock").clone();
    assert_eq!(
        queries,
        vec![
            "limit=100&tag=golden&owner=p1".to_owned(),
            "limit=100&tag=golden&owner=p1&marker=b".to_owned(),
        ]
    );
}

#[tokio::test]
async fn glance_answers_are_classified() {
    let mock = start().await;
    let session = Session::new(config(&mock), 4);
    let err = session.list_members("busy").await.expect_err("503");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        err.to_string(),
        "list members of image busy: server error (http 503): 503 Service Unavailable"
    );
    let err = session.create_member("full", "p2").await.expect_err("413");
    assert!(
        matches!(
            err,
            Error::Terminal {
                kind: TerminalKind::MemberQuotaExceeded,
                ..
            }
        ),
        "{err:?}"
    );
    let err = session.delete_member("i1", "gone").await.expect_err("404");
    assert_eq!(
        err,
        Error::NotFound {
            what: "remove member gone from image i1".into()
        }
    );
}

#[tokio::test]
async fn an_unreachable_keystone_is_transient() {
    // Bind then drop a listener so the port is (almost certainly) closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let yaml = format!(
        "clouds: {{test: {{auth: {{auth_url: 'http://{addr}', user_id: u1, password: pw, project_id: p1}}}}}}"
    );
    let session = Session::new(
        CloudConfig::from_clouds_yaml(&yaml, "test", None).expect("config"),
        1,
    );
    let err = session.get_image("i1").await.expect_err("no keystone");
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
}

fn golden_query() -> ImageQuery {
    ImageQuery {
        name: None,
        tags: vec!["golden".into()],
        owner: Some("p1".into()),
        name_prefix: None,
    }
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused_without_following_it() {
    let mock = start().await;
    *mock.paging.lock().expect("lock") = Paging::OtherHost;
    let session = Session::new(config(&mock), 4);
    let err = session
        .list_images(&golden_query())
        .await
        .expect_err("refused");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("another host"), "{err}");
    assert_eq!(mock.image_queries.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn a_next_link_back_to_a_page_already_read_is_refused() {
    let mock = start().await;
    *mock.paging.lock().expect("lock") = Paging::Loop;
    let session = Session::new(config(&mock), 4);
    let err = session
        .list_images(&golden_query())
        .await
        .expect_err("loop");
    assert!(err.to_string().contains("already read"), "{err}");
    // The first page, the second, and the second again is where it stops.
    assert_eq!(mock.image_queries.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn an_endless_chain_of_pages_stops_at_the_page_bound_and_the_time_bound() {
    let mock = start().await;
    *mock.paging.lock().expect("lock") = Paging::Endless;
    let session = Session::new(config(&mock), 4);
    let pages = PageBounds {
        pages: 5,
        time: Duration::from_secs(60),
    };
    let err = session
        .list_images_within(&golden_query(), pages)
        .await
        .expect_err("bounded");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("more than 5 pages"), "{err}");
    assert_eq!(mock.image_queries.lock().expect("lock").len(), 5);

    let before = mock.image_queries.lock().expect("lock").len();
    let time = PageBounds {
        pages: 1000,
        time: Duration::from_millis(200),
    };
    let err = session
        .list_images_within(&golden_query(), time)
        .await
        .expect_err("bounded");
    assert!(err.to_string().contains("took longer than"), "{err}");
    let read = mock.image_queries.lock().expect("lock").len() - before;
    assert!((2..100).contains(&read), "{read} pages read in 200 ms");
}

#[tokio::test]
async fn a_404_on_removal_counts_as_gone_only_once_a_member_list_confirms_it() {
    let mock = start().await;
    let session = Session::new(config(&mock), 4);
    assert_eq!(
        session.remove_member("i1", "p2").await,
        Ok(Removal::Removed)
    );
    // 404, and the member list (200) does not have it: gone.
    assert_eq!(
        session.remove_member("i1", "gone").await,
        Ok(Removal::AlreadyGone)
    );
    // 404, but the member list still has it: doubt.
    let err = session
        .remove_member("stale", "gone")
        .await
        .expect_err("doubt");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("still has it"), "{err}");
    // 404 on the members too, and a 200 image list without the image: the image is gone,
    // and its members with it.
    assert_eq!(
        session.remove_member("deleted", "gone").await,
        Ok(Removal::AlreadyGone)
    );
    let requests = mock.requests.lock().expect("lock").clone();
    let asked: Vec<_> = requests
        .iter()
        .filter(|r| r.contains("/deleted"))
        .cloned()
        .collect();
    assert_eq!(
        asked,
        [
            "DELETE /v2/images/deleted/members/gone",
            "GET /v2/images/deleted/members",
        ]
    );
    let lists: Vec<_> = requests
        .iter()
        .filter(|r| r.contains("id=in%3Adeleted"))
        .collect();
    assert_eq!(
        lists.len(),
        2,
        "visible and hidden images are both looked at: {lists:?}"
    );
    // 404 on the members while the image is still listed: doubt.
    let err = session
        .remove_member("listed", "gone")
        .await
        .expect_err("doubt");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("still listed"), "{err}");
}

#[tokio::test]
async fn a_default_backend_answering_404_to_everything_is_doubt_not_removal() {
    let mock = start().await;
    let session = Session::new(config(&mock), 4);
    session.project_id().await.expect("token first");
    mock.outage.store(true, Ordering::SeqCst);
    let err = session.remove_member("i1", "p2").await.expect_err("doubt");
    assert!(err.is_transient(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("404"), "{text}");
    assert!(text.contains("retried"), "{text}");
    assert!(!text.contains("default backend"), "no raw body: {text}");
    let requests = mock.requests.lock().expect("lock").clone();
    assert_eq!(
        requests,
        [
            "DELETE /v2/images/i1/members/p2",
            "GET /v2/images/i1/members",
            "GET /v2/images?id=in%3Ai1&visibility=all&os_hidden=false",
        ]
    );
}

#[tokio::test]
async fn a_truncated_keystone_list_is_an_error_not_a_shorter_list() {
    let mock = start().await;
    *mock.keystone_list.lock().expect("lock") = r#"{"projects": [
        {"id": "t1", "name": "tenant-1", "domain_id": "d1", "enabled": true, "tags": ["gpu"]}],
        "links": {"self": "x", "previous": null, "next": null}, "truncated": true}"#
        .to_owned();
    let session = Session::new(config(&mock), 4);
    let err = session
        .list_projects("d1", None, &["gpu".to_owned()])
        .await
        .expect_err("truncated");
    assert!(
        matches!(
            err,
            Error::Terminal {
                kind: TerminalKind::BadRequest,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("list_limit"), "{err}");
    let requests = mock.requests.lock().expect("lock").clone();
    assert_eq!(
        requests,
        ["GET /v3/projects?domain_id=d1&enabled=true&tags=gpu"]
    );
    *mock.keystone_list.lock().expect("lock") =
        r#"{"domains": [{"id": "d1", "name": "Corp"}], "truncated": true}"#.to_owned();
    let err = session.domain_id("Corp").await.expect_err("truncated");
    assert!(err.to_string().contains("list_limit"), "{err}");
}
