//! The consumer's side: a member's status set with the consumer's credentials, awaited
//! without them, corrected when it drifts only where the spec manages it, and consumer-only
//! ImageShares (no producer credentials) that wait for the producer's share.

use std::time::Duration;

use imageshare::api::{MemberPhase, MemberStatus};
use imageshare_testbed::*;
use serde_json::json;

#[tokio::test]
async fn consumer_drift_is_corrected_when_managed_and_left_alone_when_not() {
    let Scenario { t, producer, image } = Scenario::new("drift").await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    t.share("drift")
        .image(&image)
        .resync_30s()
        .accepted(&a, "consumer-a-cloud")
        .member(&b)
        .in_sync()
        .await;

    // Behind the operator's back: A rejects (managed), B accepts (not managed).
    Os::login("consumer-a")
        .await
        .set_status(&image, &a, "rejected")
        .await;
    Os::login("consumer-b")
        .await
        .set_status(&image, &b, "accepted")
        .await;

    let fixed = wait_until(RESYNC, || async {
        (producer.members(&image).await.get(&a).map(String::as_str) == Some("accepted"))
            .then_some(())
    })
    .await;
    assert!(fixed.is_some(), "consumer-a's drift was not corrected");
    assert_eq!(
        producer.members(&image).await.get(&b).map(String::as_str),
        Some("accepted"),
        "an unmanaged status must be left to the consumer"
    );
    let share = t.wait_reason("drift", "InSync", CONVERGE).await;
    let b_row = share
        .status
        .unwrap()
        .members
        .into_iter()
        .find(|m| m.project == b)
        .unwrap();
    assert_eq!(b_row.status, Some(MemberStatus::Accepted));
}

#[tokio::test]
async fn consumer_only_share_waits_for_the_producer_and_splits_the_work_with_its_share() {
    let Scenario { t, producer, image } = Scenario::new("split").await;
    let a = project_id("consumer-a");
    // The consumer side first: the project is not a member yet.
    let waiting = t
        .share("consumer-side")
        .consumer_only()
        .image(&image)
        .resync_30s()
        .accepted(&a, "consumer-a-cloud")
        .reaches("ImageNotFound")
        .await;
    assert_eq!(
        waiting.status.unwrap().members[0].state,
        MemberPhase::Failed
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation second
    // The producer side shares without managing the status: no conflict, both succeed.
    t.share("producer-side")
        .image(&image)
        .member(&a)
        .in_sync()
        .await;
    t.wait_reason("consumer-side", "InSync", RESYNC).await;
    assert_eq!(
        producer.members(&image).await.get(&a).map(String::as_str),
        Some("accepted")
    );
}

#[tokio::test]
async fn status_without_consumer_credentials_awaits_the_consumer() {
    let Scenario { t, image, .. } = Scenario::new("await").await;
    let a = project_id("consumer-a");
    let share = t
        .share("await")
        .image(&image)
        .with_member(json!({"project": a, "status": "accepted"}))
        .reaches("AwaitingConsumer")
        .await;
    let row = &share.status.unwrap().members[0];
    assert_eq!(row.state, MemberPhase::AwaitingConsumer);
    assert_eq!(row.status, Some(MemberStatus::Pending));
}

#[tokio::test]
async fn consumer_only_share_sets_the_status_with_consumer_credentials() {
    let Scenario { t, producer, image } = Scenario::new("consumer").await;
    let a = project_id("consumer-a");
    producer.add_member(&image, &a).await;
    t.share("consumer")
        .consumer_only()
        .image(&image)
        .accepted(&a, "consumer-a-cloud")
        .in_sync()
        .await;
    assert_eq!(
        producer.members(&image).await.get(&a).map(String::as_str),
        Some("accepted")
    );
}
