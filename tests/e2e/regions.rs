//! Several regions in one ImageShare (`spec.regions`): the image is resolved by name in each
//! region's Glance and shared in both; a region whose Glance is down is reported and keeps
//! what it had, while the other converges; once it is back, it converges too.

use std::time::Duration;

use imageshare_testbed::*;
use serde_json::json;

/// Starts RegionTwo's Glance again when dropped (also when the test fails).
struct RegionTwoDown;

impl RegionTwoDown {
    fn stop() -> RegionTwoDown {
        stack("region-two.sh", &["stop"], &[]);
        RegionTwoDown
    }
}

impl Drop for RegionTwoDown {
    fn drop(&mut self) {
        stack("region-two.sh", &["start"], &[]);
    }
}

#[tokio::test]
async fn shared_in_both_regions_and_a_stopped_region_stops_nothing_in_the_other() {
    let t = TestNs::new("regions").await;
    let one = Os::login_in("producer", "RegionOne").await;
    let two = Os::login_in("producer", "RegionTwo").await;
    let name = unique("regional");
    let image_one = one.create_image(&name, "shared", &[]).await;
    let image_two = two.create_image(&name, "shared", &[]).await;
    assert_ne!(image_one, image_two, "each region has its own Glance");
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    let share = t
        .share("regional")
        .image_named(&name)
        .with("regions", json!(["RegionOne", "RegionTwo"]))
        .resync_30s()
        .member(&a)
        .in_sync()
        .await;
    assert!(one.members(&image_one).await.contains_key(&a));
    assert!(two.members(&image_two).await.contains_key(&a));
    let status = share.status.unwrap();
    let regions: Vec<_> = status
        .images
        .iter()
        .map(|i| (i.id.as_str(), i.region.as_deref()))
        .collect();
    assert!(
        regions.contains(&(image_one.as_str(), Some("RegionOne"))),
        "{regions:?}"
    );
    assert!(
        regions.contains(&(image_two.as_str(), Some("RegionTwo"))),
        "{regions:?}"
    );
    assert_eq!(status.region_clouds.len(), 2, "{:?}", status.region_clouds);

    // RegionTwo's Glance stops; the members change: RegionOne follows at once.
    let down = RegionTwoDown::stop();
    t.patch_spec("regional", json!({"members": [{"project": b}]}))
        .await;
    let added = one.wait_member_added(&image_one, &b, CONVERGE).await;
    let removed = one.wait_member_gone(&image_one, &a, CONVERGE).await;
    assert!(
        added.is_some() && removed.is_some(),
        "RegionOne did not converge"
    );
    let share = t.wait_reason("regional", "TransientError", CONVERGE).await;
    let status = share.status.clone().unwrap();
    let ready = status.conditions.first().map(|c| c.message.clone());
    assert!(
        ready
            .as_deref()
            .is_some_and(|m| m.contains("region RegionTwo")),
        "{ready:?}"
    );
    // What RegionTwo still has is kept in the ledger, to be revoked once it answers.
    let ledger = ledger_pairs(&share);
    assert!(
        ledger.contains(&(image_two.clone(), a.clone())),
        "{ledger:?}"
    );
    assert!(
        !ledger.contains(&(image_one.clone(), a.clone())),
        "{ledger:?}"
    );
    assert!(
        status.images.iter().any(|i| i.id == image_two),
        "RegionTwo's image kept"
    );

    // Back: RegionTwo converges too.
    drop(down);
    t.poke("regional").await;
    let added = two
        .wait_member_added(&image_two, &b, Duration::from_secs(90))
        .await;
    let removed = two
        .wait_member_gone(&image_two, &a, Duration::from_secs(90))
        .await;
    assert!(
        added.is_some() && removed.is_some(),
        "RegionTwo did not converge"
    );
    t.wait_reason("regional", "InSync", CONVERGE).await;
}
