//! Limits: an ImageShare as large as the CRD allows still writes its status through the real
//! apiserver, and a second writer that keeps reverting a managed status is not fought on
//! every pass.

use std::time::Duration;

use imageshare::api::MemberPhase;
use imageshare_testbed::*;
use serde_json::json;

#[tokio::test]
async fn a_thousand_members_on_three_selected_images_write_a_bounded_status() {
    let t = TestNs::new("bounded").await;
    let producer = Os::login("producer").await;
    let tag = unique("bounded");
    for i in 0..3 {
        producer
            .create_image(&unique(&format!("bounded{i}")), "shared", &[&tag])
            .await;
    }
    let members: Vec<_> = (0..1000)
        .map(|i| json!({"project": format!("{i:08x}{:024x}", fastrand::u128(..) >> 32)}))
        .collect();
    // Suspended: the operator observes all 3,000 pairs and reports them, changing nothing.
    t.create(
        "bounded",
        json!({"image": {"selector": {"tags": [tag]}}, "producer": creds("producer-cloud"),
            "members": members, "suspend": true}),
    )
    .await;
    let share = t.wait_reason("bounded", "Suspended", CONVERGE).await;
    let status = share.status.clone().unwrap();
    assert_eq!(status.images.len(), 3);
    assert_eq!(status.members.len(), 200, "rows are capped");
    assert!(
        status
            .members
            .iter()
            .all(|m| m.state == MemberPhase::Suspended)
    );
    assert_eq!(status.member_counts.get("Suspended"), Some(&3000));
    assert_eq!(status.members_in_sync.as_deref(), Some("0/3000"));
    let bytes = serde_json::to_vec(&share).unwrap().len();
    assert!(bytes < 512 * 1024, "object is {bytes} bytes");
}

#[tokio::test]
async fn a_status_another_client_keeps_reverting_is_held_back_then_retried() {
    let Scenario { t, producer, image } = Scenario::new("contest").await;
    let a = project_id("consumer-a");
    t.share("contest")
        .image(&image)
        .accepted(&a, "consumer-a-cloud")
        .in_sync()
        .await;

    // The consumer rejects the image whenever the operator accepts it again; each reject is
    // noticed at the next pass (poked here instead of waiting for a resync).
    let consumer = Os::login("consumer-a").await;
    let contested = wait_until(CONVERGE, || async {
        if producer.members(&image).await.get(&a).map(String::as_str) == Some("accepted") {
            consumer.set_status(&image, &a, "rejected").await;
            t.poke("contest").await;
        }
        let share = t.shares().get("contest").await.ok()?;
        let status = share.status?;
        status
            .members
            .iter()
            .any(|m| m.state == MemberPhase::Contested)
            .then_some(status)
    })
    .await
    .expect("the member becomes Contested");
    let ready = contested
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "Conflict");
    assert!(
        ready.message.contains("changed the status back"),
        "{}",
        ready.message
    );
    assert!(
        t.event_reasons("contest")
            .await
            .iter()
            .any(|r| r == "StatusContested")
    );

    // Held back: the operator leaves the consumer's answer alone for a while...
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        producer.members(&image).await.get(&a).map(String::as_str),
        Some("rejected")
    );
    // ...then tries again once the hold (30 s) is over, and with nobody fighting, it sticks.
    t.wait_reason("contest", "InSync", CONVERGE).await;
    assert_eq!(
        producer.members(&image).await.get(&a).map(String::as_str),
        Some("accepted")
    );
}
