//! Choosing the image: by exact name (and an ambiguous name), by a tag selector that picks
//! up images created later, and a private image, which cannot be shared until it is made
//! `shared`.

use imageshare_testbed::*;
use serde_json::json;

#[tokio::test]
async fn image_by_exact_name_is_shared() {
    let t = TestNs::new("byname").await;
    let producer = Os::login("producer").await;
    let name = unique("named");
    let image = producer.create_image(&name, "shared", &[]).await;
    let a = project_id("consumer-a");
    let share = t
        .share("byname")
        .image_named(&name)
        .member(&a)
        .in_sync()
        .await;
    let status = share.status.unwrap();
    assert_eq!(status.images.len(), 1);
    assert_eq!(status.images[0].id, image);
    assert_eq!(status.image.as_deref(), Some(name.as_str()));
    assert!(producer.members(&image).await.contains_key(&a));

    // A second image with the same name makes the name ambiguous.
    producer.create_image(&name, "shared", &[]).await;
    t.patch_spec("byname", json!({"resyncPeriod": "30s"})).await;
    t.wait_reason("byname", "ImageAmbiguous", RESYNC).await;
}

#[tokio::test]
async fn selector_shares_every_match_including_images_created_later() {
    let t = TestNs::new("selector").await;
    let producer = Os::login("producer").await;
    let tag = unique("tag");
    let first = producer
        .create_image(&unique("sel1"), "shared", &[&tag])
        .await;
    producer.create_image(&unique("other"), "shared", &[]).await;
    let a = project_id("consumer-a");
    let share = t
        .share("sel")
        .tagged(&tag)
        .resync_30s()
        .member(&a)
        .in_sync()
        .await;
    assert_eq!(share.status.unwrap().images.len(), 1);
    assert!(producer.members(&first).await.contains_key(&a));

    let second = producer
        .create_image(&unique("sel2"), "shared", &[&tag])
        .await;
    let picked_up = producer.wait_member_added(&second, &a, RESYNC).await;
    assert!(
        picked_up.is_some(),
        "image created later was not picked up on resync"
    );
    let share = t.wait_reason("sel", "InSync", CONVERGE).await;
    let status = share.status.unwrap();
    assert_eq!(status.images.len(), 2);
    assert_eq!(status.image.as_deref(), Some("2 images"));
}

#[tokio::test]
async fn private_image_is_image_not_shared_until_its_visibility_is_shared() {
    let t = TestNs::new("private").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("priv"), "private", &[]).await;
    let a = project_id("consumer-a");
    t.share("private")
        .image(&image)
        .resync_30s()
        .member(&a)
        .reaches("ImageNotShared")
        .await;

    producer.set_visibility(&image, "shared").await;
    t.wait_reason("private", "InSync", RESYNC).await;
    assert!(producer.members(&image).await.contains_key(&a));
}
