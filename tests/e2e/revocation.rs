//! Revocation: access to an image is revoked only by deleting the member, so every way a
//! declared (image, project) pair can leave an ImageShare's ledger must delete it from Glance
//! — in Additive mode too — and no order of deletion (Secret first, whole namespace) may leak
//! a member. Consumer-only ImageShares never shield a member from another object's removal.

use std::time::Duration;

use imageshare_testbed::*;
use serde_json::json;

/// How long a namespace may take to go away: the namespace controller's sweep, the
/// operator's cleanup of each ImageShare, then the release of the Secrets' finalizers.
const NAMESPACE_GONE: Duration = Duration::from_secs(150);

#[tokio::test]
async fn consumer_only_imageshare_in_another_namespace_does_not_shield_a_member_from_exclusive() {
    let Scenario { t, producer, image } = Scenario::new("shield").await;
    let other = TestNs::new("shield-other").await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    // Shared by hand; consumer-b accepted it, and manages its acceptance declaratively.
    producer.add_member(&image, &b).await;
    Os::login("consumer-b")
        .await
        .set_status(&image, &b, "accepted")
        .await;
    other
        .share("accept")
        .consumer_only()
        .image(&image)
        .accepted(&b, "consumer-b-cloud")
        .in_sync()
        .await;

    t.share("exclusive")
        .image(&image)
        .exclusive()
        .member(&a)
        .create()
        .await;
    let removed = producer.wait_member_gone(&image, &b, CONVERGE).await;
    assert!(
        removed.is_some(),
        "a consumer-only ImageShare shielded consumer-b from Exclusive: {:?}",
        producer.members(&image).await
    );
    let share = t.wait_reason("exclusive", "InSync", CONVERGE).await;
    assert_eq!(
        share.status.unwrap().members_in_sync.as_deref(),
        Some("1/1")
    );
    let members = producer.members(&image).await;
    assert_eq!(
        members.keys().collect::<Vec<_>>(),
        [&a],
        "only the declared member stays: {members:?}"
    );
    assert!(t.has_event("exclusive", "MemberRemoved").await);
}

#[tokio::test]
async fn secret_deleted_first_then_the_imageshare_still_removes_the_members() {
    let Scenario { t, producer, image } = Scenario::new("secret-first").await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    t.share("share")
        .image(&image)
        .member(&a)
        .member(&b)
        .in_sync()
        .await;
    assert_eq!(producer.members(&image).await.len(), 2);
    // Guarded before the first member was added, so it is there once the object is InSync.
    let guarded = t.secret("producer-cloud").await.expect("secret exists");
    let finalizers = guarded.metadata.finalizers.unwrap_or_default();
    assert!(
        finalizers.iter().any(|f| f == CREDENTIALS_FINALIZER),
        "producer-cloud lacks {CREDENTIALS_FINALIZER}: {finalizers:?}"
    );
    let unused = t.secret("consumer-a-cloud").await.expect("secret exists");
    let unused_finalizers = unused.metadata.finalizers.unwrap_or_default();
    assert!(
        unused_finalizers.is_empty(),
        "a Secret no ImageShare references must not be guarded: {unused_finalizers:?}"
    );

    t.delete_secret("producer-cloud").await;
    // A full pass of the ImageShare with the Secret terminating: it still works with it, and
    // keeps the Secret for its cleanup.
    t.patch_spec("share", json!({"resyncPeriod": "30s"})).await;
    t.wait_reason("share", "InSync", CONVERGE).await;
    let terminating = t
        .secret("producer-cloud")
        .await
        .expect("the Secret must stay while the ImageShare needs it");
    assert!(terminating.metadata.deletion_timestamp.is_some());

    t.delete_and_wait_gone("share", CONVERGE).await;
    let members = producer.members(&image).await;
    assert!(members.is_empty(), "members leaked: {members:?}");
    let released = wait_until(CONVERGE, || async {
        t.secret("producer-cloud").await.is_none().then_some(())
    })
    .await;
    assert!(
        released.is_some(),
        "producer-cloud was not released after its last ImageShare went: {:?}",
        t.secret("producer-cloud")
            .await
            .and_then(|s| s.metadata.finalizers)
    );
}

#[tokio::test]
async fn deleting_the_namespace_removes_the_members() {
    let t = TestNs::new("ns-delete").await;
    let producer = Os::login("producer").await;
    let a = project_id("consumer-a");
    // Three objects share one producer Secret, and are deleted together with it.
    let mut images = Vec::new();
    for name in ["one", "two", "three"] {
        let image = producer.create_image(&unique("nsdel"), "shared", &[]).await;
        t.share(name).image(&image).member(&a).create().await;
        images.push(image);
    }
    for name in ["one", "two", "three"] {
        t.wait_reason(name, "InSync", CONVERGE).await;
    }
    let guards = t
        .secret("producer-cloud")
        .await
        .expect("secret exists")
        .metadata
        .finalizers
        .unwrap_or_default();
    assert_eq!(
        guards,
        [CREDENTIALS_FINALIZER],
        "one guard, shared by the three ImageShares: {guards:?}"
    );

    t.delete_namespace_and_wait_gone(NAMESPACE_GONE).await;
    for image in &images {
        let members = producer.members(image).await;
        assert!(members.is_empty(), "members leaked on {image}: {members:?}");
    }
}

#[tokio::test]
async fn the_guard_stays_while_any_object_needs_the_secret_and_goes_with_the_last() {
    let t = TestNs::new("guard-follows").await;
    let producer = Os::login("producer").await;
    let a = project_id("consumer-a");
    for name in ["one", "two"] {
        let image = producer.create_image(&unique("guard"), "shared", &[]).await;
        t.share(name).image(&image).member(&a).create().await;
    }
    for name in ["one", "two"] {
        t.wait_reason(name, "InSync", CONVERGE).await;
    }
    assert!(t.guarded("producer-cloud").await);
    // "one" no longer needs it for cleanup; "two" still does.
    t.patch_spec("one", json!({"deletionPolicy": "Orphan"}))
        .await;
    t.wait_reason("one", "InSync", CONVERGE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        t.guarded("producer-cloud").await,
        "released while another ImageShare needs it"
    );
    // Neither needs it: released, without any other change.
    t.patch_spec("two", json!({"suspend": true})).await;
    let released = wait_until(CONVERGE, || async {
        (!t.guarded("producer-cloud").await).then_some(())
    })
    .await;
    assert!(released.is_some(), "kept with no ImageShare needing it");
    // Needed again: guarded again.
    t.patch_spec("one", json!({"deletionPolicy": "Delete"}))
        .await;
    let again = wait_until(CONVERGE, || async {
        t.guarded("producer-cloud").await.then_some(())
    })
    .await;
    assert!(again.is_some(), "not guarded again once needed");
}

#[tokio::test]
async fn member_removed_from_the_spec_loses_access_in_additive_mode() {
    let Scenario { t, producer, image } = Scenario::new("spec-remove").await;
    let (a, b, c) = (
        project_id("consumer-a"),
        project_id("consumer-b"),
        project_id("consumer-c"),
    );
    t.share("share")
        .image(&image)
        .member(&a)
        .member(&b)
        .in_sync()
        .await;
    producer.add_member(&image, &c).await;

    t.patch_spec("share", json!({"members": [{"project": a}]}))
        .await;
    let revoked = producer.wait_member_gone(&image, &b, CONVERGE).await;
    assert!(
        revoked.is_some(),
        "consumer-b kept access after leaving spec.members: {:?}",
        producer.members(&image).await
    );
    let members = producer.members(&image).await;
    assert!(members.contains_key(&a), "{members:?}");
    assert!(
        members.contains_key(&c),
        "a member added by hand must stay in Additive mode: {members:?}"
    );
    let share = t.wait_reason("share", "InSync", CONVERGE).await;
    let status = share.status.unwrap();
    assert_eq!(status.members_in_sync.as_deref(), Some("1/1"));
    assert!(status.members.iter().all(|m| m.project == a), "{status:?}");
    assert!(
        !status.ledger.is_empty() && status.ledger.iter().all(|e| e.projects == [a.as_str()]),
        "the ledger must hold only what the spec still declares: {:?}",
        status.ledger
    );
    assert!(t.has_event("share", "MemberRemoved").await);
}

#[tokio::test]
async fn changing_spec_image_revokes_the_old_image() {
    let t = TestNs::new("image-change").await;
    let producer = Os::login("producer").await;
    let (old, new) = (
        producer.create_image(&unique("old"), "shared", &[]).await,
        producer.create_image(&unique("new"), "shared", &[]).await,
    );
    let a = project_id("consumer-a");
    t.share("share").image(&old).member(&a).in_sync().await;
    assert!(producer.members(&old).await.contains_key(&a));

    t.patch_spec("share", json!({"image": {"id": new}})).await;
    let moved = wait_until(CONVERGE, || async {
        (producer.members(&old).await.is_empty() && producer.members(&new).await.contains_key(&a))
            .then_some(())
    })
    .await;
    assert!(
        moved.is_some(),
        "old image members {:?}, new image members {:?}",
        producer.members(&old).await,
        producer.members(&new).await
    );
    let share = t.wait_reason("share", "InSync", CONVERGE).await;
    let status = share.status.unwrap();
    assert_eq!(
        status
            .images
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        [new.as_str()]
    );
    assert!(status.members.iter().all(|m| m.image == new), "{status:?}");
    assert!(
        !status.ledger.is_empty() && status.ledger.iter().all(|e| e.images == [new.as_str()]),
        "the ledger must forget the old image once revoked: {:?}",
        status.ledger
    );
}

#[tokio::test]
async fn image_retagged_out_of_the_selector_loses_its_members() {
    let t = TestNs::new("retag").await;
    let producer = Os::login("producer").await;
    let tag = unique("tag");
    let (leaving, staying) = (
        producer
            .create_image(&unique("leaving"), "shared", &[&tag])
            .await,
        producer
            .create_image(&unique("staying"), "shared", &[&tag])
            .await,
    );
    let a = project_id("consumer-a");
    let share = t
        .share("sel")
        .tagged(&tag)
        .resync_30s()
        .member(&a)
        .in_sync()
        .await;
    assert_eq!(share.status.unwrap().images.len(), 2);
    assert!(producer.members(&leaving).await.contains_key(&a));
    assert!(producer.members(&staying).await.contains_key(&a));

    // Glance has no watch API: only the resync notices the image left the selection.
    producer.remove_tag(&leaving, &tag).await;
    let revoked = producer.wait_no_members(&leaving, RESYNC).await;
    assert!(
        revoked.is_some(),
        "the image that left the selector kept its members: {:?}",
        producer.members(&leaving).await
    );
    assert!(producer.members(&staying).await.contains_key(&a));
    let reported = wait_until(CONVERGE, || async {
        let share = t.shares().get("sel").await.expect("get imageshare");
        let status = share.status?;
        (status.images.len() == 1 && status.images[0].id == staying).then_some(())
    })
    .await;
    assert!(
        reported.is_some(),
        "status still lists the image that left the selector: {:?}",
        t.shares().get("sel").await.unwrap().status
    );
    let share = t.wait_reason("sel", "InSync", CONVERGE).await;
    assert!(t.has_event("sel", "MemberRemoved").await);
    assert_eq!(
        share.status.unwrap().members_in_sync.as_deref(),
        Some("1/1")
    );
}

#[tokio::test]
async fn renaming_spec_image_name_to_an_image_that_does_not_exist_revokes_the_old_one() {
    let t = TestNs::new("rename-missing").await;
    let producer = Os::login("producer").await;
    let name = unique("named");
    let image = producer.create_image(&name, "shared", &[]).await;
    let a = project_id("consumer-a");
    t.share("share")
        .image_named(&name)
        .member(&a)
        .in_sync()
        .await;
    assert!(producer.members(&image).await.contains_key(&a));

    t.patch_spec("share", json!({"image": {"name": unique("missing")}}))
        .await;
    t.wait_reason("share", "ImageNotFound", CONVERGE).await;
    let revoked = producer.wait_no_members(&image, CONVERGE).await;
    assert!(
        revoked.is_some(),
        "the image no longer named kept its members: {:?}",
        producer.members(&image).await
    );
}
