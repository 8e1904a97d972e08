//! HTTP tests of the Keystone project and domain lookups against the stand-in: a truncated
//! list is an error, never a shorter list.

use crate::openstack::stand_in::{config, start};
use crate::openstack::{Error, Session, TerminalKind};

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
