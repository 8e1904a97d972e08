//! Deleting an ImageShare: deletionPolicy Delete removes its members and Orphan keeps them,
//! an image renamed since it was shared still loses them, and a missing image or Secret
//! never blocks the deletion. (Deletion orders that could leak a member — the Secret first,
//! the whole namespace — are in `revocation`.)

use imageshare_testbed::*;
use serde_json::json;

#[tokio::test]
async fn deletion_removes_members_with_delete_and_keeps_them_with_orphan() {
    let t = TestNs::new("delete").await;
    let producer = Os::login("producer").await;
    let (img_delete, img_orphan) = (
        producer.create_image(&unique("del"), "shared", &[]).await,
        producer.create_image(&unique("orph"), "shared", &[]).await,
    );
    let a = project_id("consumer-a");
    for (name, image, policy) in [
        ("del", &img_delete, "Delete"),
        ("orphan", &img_orphan, "Orphan"),
    ] {
        t.share(name)
            .image(image)
            .with("deletionPolicy", json!(policy))
            .member(&a)
            .create()
            .await;
    }
    t.wait_reason("del", "InSync", CONVERGE).await;
    t.wait_reason("orphan", "InSync", CONVERGE).await;

    t.delete_and_wait_gone("del", CONVERGE).await;
    t.delete_and_wait_gone("orphan", CONVERGE).await;
    assert!(producer.members(&img_delete).await.is_empty());
    assert!(producer.members(&img_orphan).await.contains_key(&a));
}

#[tokio::test]
async fn deletion_removes_members_from_an_image_renamed_since_it_was_shared() {
    let t = TestNs::new("renamed").await;
    let producer = Os::login("producer").await;
    let name = unique("before");
    let image = producer.create_image(&name, "shared", &[]).await;
    let a = project_id("consumer-a");
    t.share("renamed")
        .image_named(&name)
        .member(&a)
        .in_sync()
        .await;
    producer
        .replace_image_field(&image, "name", &unique("after"))
        .await;
    t.delete_and_wait_gone("renamed", CONVERGE).await;
    assert!(producer.members(&image).await.is_empty());
}

#[tokio::test]
async fn missing_image_or_secret_does_not_block_deletion() {
    let t = TestNs::new("nodeps").await;
    let a = project_id("consumer-a");
    t.share("no-image")
        .image("00000000-0000-0000-0000-000000000000")
        .member(&a)
        .create()
        .await;
    t.share("no-secret")
        .image("00000000-0000-0000-0000-000000000001")
        .producer("does-not-exist")
        .member(&a)
        .create()
        .await;
    t.wait_reason("no-image", "ImageNotFound", CONVERGE).await;
    t.wait_reason("no-secret", "CredentialsMissing", CONVERGE)
        .await;
    t.delete_and_wait_gone("no-image", CONVERGE).await;
    t.delete_and_wait_gone("no-secret", CONVERGE).await;
}
