//! HTTP tests of the Glance calls against the Keystone + Glance stand-in: pagination and
//! its bounds, classification of real Glance answers, and removals that believe a 404 only
//! once confirmed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::PageBounds;
use crate::openstack::stand_in::{Paging, config, start};
use crate::openstack::{Error, ImageQuery, Removal, Session, TerminalKind};

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
