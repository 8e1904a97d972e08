//! HTTP tests of sessions against the Keystone + Glance stand-in: one shared authentication
//! for concurrent callers, one new token and retry after a 401, refused credentials held,
//! the per-cloud concurrency limit, an unreachable Keystone, and every request recorded in
//! the request metrics.

use std::sync::atomic::Ordering;

use crate::openstack::metrics::tests::exported;
use crate::openstack::stand_in::{config, start};
use crate::openstack::{CloudConfig, Clouds, Error, RequestMetrics, Session, TerminalKind};

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

/// A config whose Keystone is a loopback port nobody listens on (bound, then dropped).
async fn unreachable_config() -> CloudConfig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let yaml = format!(
        "clouds: {{test: {{auth: {{auth_url: 'http://{addr}', user_id: u1, password: pw, project_id: p1}}}}}}"
    );
    CloudConfig::from_clouds_yaml(&yaml, "test", None).expect("config")
}

#[tokio::test]
async fn an_unreachable_keystone_is_transient() {
    let session = Session::new(unreachable_config().await, 1);
    let err = session.get_image("i1").await.expect_err("no keystone");
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
}

#[tokio::test]
async fn every_request_is_recorded_by_service_operation_and_status() {
    let mock = start().await;
    let metrics = RequestMetrics::default();
    let clouds = Clouds::new(4).with_metrics(metrics.clone());
    let session = clouds.session(&config(&mock));
    session.list_members("i1").await.expect("listed");
    session.list_members("i1").await.expect("listed");
    session.create_member("full", "p2").await.expect_err("413");
    // Keystone revoked tok-1: a 401, a new token, the same call again.
    mock.accept_from.store(2, Ordering::SeqCst);
    session.get_image("i1").await.expect("retried");
    let text = exported(&metrics);
    for line in [
        r#"imageshare_openstack_requests_total{service="identity",operation="token",code="201"} 2"#,
        r#"imageshare_openstack_requests_total{service="image",operation="list_members",code="200"} 2"#,
        r#"imageshare_openstack_requests_total{service="image",operation="create_member",code="413"} 1"#,
        r#"imageshare_openstack_requests_total{service="image",operation="get_image",code="401"} 1"#,
        r#"imageshare_openstack_requests_total{service="image",operation="get_image",code="200"} 1"#,
        r#"imageshare_openstack_request_duration_seconds_count{service="image",operation="list_members"} 2"#,
        r#"imageshare_openstack_request_duration_seconds_count{service="identity",operation="token"} 2"#,
        "imageshare_keystone_token_refreshes_total 2",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    assert!(!text.contains("i1"), "no ids in labels:\n{text}");
}

#[tokio::test]
async fn a_request_without_an_answer_is_recorded_as_error() {
    let metrics = RequestMetrics::default();
    let clouds = Clouds::new(1).with_metrics(metrics.clone());
    let session = clouds.session(&unreachable_config().await);
    session.get_image("i1").await.expect_err("no keystone");
    let text = exported(&metrics);
    for line in [
        r#"imageshare_openstack_requests_total{service="identity",operation="token",code="error"} 1"#,
        "imageshare_keystone_token_refreshes_total 0",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    assert!(!text.contains("get_image"), "never sent:\n{text}");
}
