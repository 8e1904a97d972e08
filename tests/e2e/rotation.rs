//! Rotation (`image.selector.keepNewest`, `gracePeriod`): a new build is shared, the build it
//! displaces keeps its members for the grace period and then loses them, and deleting the
//! newest build promotes the next.

use std::time::Duration;

use imageshare::api::Rotation;
use imageshare_testbed::*;
use serde_json::json;

/// Creates build `n` of a family: its name sorts after the earlier ones, and Glance's
/// creation time (whole seconds) is later too.
async fn publish(producer: &Os, family: &str, tag: &str, n: u32) -> String {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    producer
        .create_image(&format!("{family}-build{n}"), "shared", &[tag])
        .await
}

#[tokio::test]
async fn a_new_build_is_shared_the_displaced_one_goes_after_its_grace_and_deleting_the_newest_promotes_the_next()
 {
    let t = TestNs::new("rotation").await;
    let producer = Os::login("producer").await;
    let (family, tag) = (unique("golden"), unique("family"));
    let old = publish(&producer, &family, &tag, 1).await;
    let current = publish(&producer, &family, &tag, 2).await;
    let a = project_id("consumer-a");
    let selector = json!({"selector": {"tags": [tag], "keepNewest": 1, "gracePeriod": "20s"}});
    let share = t
        .share("golden")
        .with("image", selector)
        .resync_30s()
        .member(&a)
        .in_sync()
        .await;
    // A new object shares the newest build only.
    let status = share.status.unwrap();
    let images: Vec<_> = status
        .images
        .iter()
        .map(|i| (i.id.as_str(), i.rotation))
        .collect();
    assert_eq!(images, [(current.as_str(), Some(Rotation::Current))]);
    assert!(producer.members(&current).await.contains_key(&a));
    assert!(!producer.members(&old).await.contains_key(&a));

    // A new build: shared; the one it displaces keeps its member during the grace period.
    let newest = publish(&producer, &family, &tag, 3).await;
    t.poke("golden").await;
    let shared = producer.wait_member_added(&newest, &a, CONVERGE).await;
    assert!(shared.is_some(), "the new build was not shared");
    let in_grace = wait_until(CONVERGE, || async {
        let share = t.shares().get("golden").await.ok()?;
        let status = share.status?;
        let displaced = status.images.iter().find(|i| i.id == current)?;
        (displaced.rotation == Some(Rotation::Grace)).then(|| displaced.grace_until.clone())
    })
    .await
    .flatten();
    assert!(
        in_grace.is_some(),
        "status shows the displaced build in grace, with its end"
    );
    assert!(
        producer.members(&current).await.contains_key(&a),
        "kept during its grace"
    );

    // Its grace ends: the member goes (the object comes back then, not at the resync).
    let gone = producer
        .wait_member_gone(&current, &a, Duration::from_secs(45))
        .await;
    assert!(
        gone.is_some(),
        "the displaced build kept its member after its grace"
    );
    assert!(producer.members(&newest).await.contains_key(&a));
    let share = t.wait_reason("golden", "InSync", CONVERGE).await;
    assert_eq!(share.status.unwrap().images.len(), 1);

    // Deleting the newest build promotes the next one, which is shared again; the oldest,
    // withdrawn long ago, stays withdrawn.
    producer.delete_image(&newest).await;
    t.poke("golden").await;
    let promoted = producer.wait_member_added(&current, &a, CONVERGE).await;
    assert!(promoted.is_some(), "the next build was not promoted");
    assert!(!producer.members(&old).await.contains_key(&a));
}
