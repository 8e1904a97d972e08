//! The main paths: members shared with and without their acceptance managed, Additive and
//! Exclusive membership, a suspended ImageShare, and the Events that name each change.

use imageshare::api::{MemberPhase, MemberStatus};
use imageshare_testbed::*;
use serde_json::json;

#[tokio::test]
async fn two_consumers_one_accepted_with_its_credentials_one_left_to_the_consumer() {
    let Scenario { t, producer, image } = Scenario::new("share").await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    let share = t
        .share("share")
        .image(&image)
        .accepted(&a, "consumer-a-cloud")
        .member(&b)
        .in_sync()
        .await;
    let status = share.status.unwrap();
    assert_eq!(status.members_in_sync.as_deref(), Some("2/2"));
    let row = |p: &str| status.members.iter().find(|m| m.project == p).unwrap();
    assert_eq!(row(&a).status, Some(MemberStatus::Accepted));
    assert_eq!(row(&a).state, MemberPhase::InSync);
    assert_eq!(row(&b).status, Some(MemberStatus::Pending));
    assert_eq!(row(&b).state, MemberPhase::AwaitingConsumer);

    let members = producer.members(&image).await;
    assert_eq!(members.get(&a).map(String::as_str), Some("accepted"));
    assert_eq!(members.get(&b).map(String::as_str), Some("pending"));
    assert!(
        Os::login("consumer-a")
            .await
            .listed_images()
            .await
            .contains(&image)
    );
    assert!(
        !Os::login("consumer-b")
            .await
            .listed_images()
            .await
            .contains(&image)
    );

    assert!(t.has_event("share", "MemberAdded").await);
    assert!(t.has_event("share", "MemberStatusSet").await);
}

#[tokio::test]
async fn every_change_gets_an_event_naming_it_also_when_one_of_its_kind_came_before() {
    let Scenario { t, image, .. } = Scenario::new("event-notes").await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    t.share("share").image(&image).member(&a).in_sync().await;
    t.patch_spec(
        "share",
        json!({"members": [{"project": a}, {"project": b}]}),
    )
    .await;
    t.wait_reason("share", "InSync", CONVERGE).await;
    // Events follow the status write: wait for the second one rather than race it.
    let added = || async {
        let notes: Vec<String> = t
            .events("share")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("MemberAdded"))
            .filter_map(|e| e.note)
            .collect();
        (notes.len() >= 2).then_some(notes)
    };
    let notes = wait_until(std::time::Duration::from_secs(10), added)
        .await
        .unwrap_or_default();
    for project in [&a, &b] {
        assert_eq!(
            notes
                .iter()
                .filter(|n| n.contains(project.as_str()))
                .count(),
            1,
            "one MemberAdded Event naming {project}: {notes:?}"
        );
    }
}

#[tokio::test]
async fn hand_added_member_is_left_alone_in_additive_and_removed_in_exclusive() {
    let Scenario { t, producer, image } = Scenario::new("exclusive").await;
    let (a, c) = (project_id("consumer-a"), project_id("consumer-c"));
    producer.add_member(&image, &c).await;
    t.share("excl").image(&image).member(&a).in_sync().await;
    let members = producer.members(&image).await;
    assert!(
        members.contains_key(&a) && members.contains_key(&c),
        "{members:?}"
    );

    t.patch_spec("excl", json!({"membership": "Exclusive"}))
        .await;
    t.wait_reason("excl", "InSync", CONVERGE).await;
    let members = producer.members(&image).await;
    assert!(members.contains_key(&a), "{members:?}");
    assert!(
        !members.contains_key(&c),
        "undeclared member must go: {members:?}"
    );
    assert!(t.has_event("excl", "MemberRemoved").await);

    // Removing a member from the spec deletes it.
    t.patch_spec("excl", json!({"members": []})).await;
    t.wait_reason("excl", "InSync", CONVERGE).await;
    assert!(producer.members(&image).await.is_empty());
}

#[tokio::test]
async fn suspended_share_changes_nothing() {
    let Scenario { t, producer, image } = Scenario::new("suspend").await;
    let a = project_id("consumer-a");
    let share = t
        .share("suspended")
        .image(&image)
        .with("suspend", json!(true))
        .member(&a)
        .reaches("Suspended")
        .await;
    assert_eq!(
        share.status.unwrap().members[0].state,
        MemberPhase::Suspended
    );
    assert!(producer.members(&image).await.is_empty());

    // The plan command shows what a pass would do, and changes nothing either.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imageshare"))
        .args(["plan", "-n", &t.name, "suspended", "--kubeconfig"])
        .arg(state_dir().join("kubeconfig"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("would add project {a} to image {image}")),
        "{text}"
    );
    assert!(producer.members(&image).await.is_empty());

    t.patch_spec("suspended", json!({"suspend": false})).await;
    t.wait_reason("suspended", "InSync", CONVERGE).await;
    assert_eq!(producer.members(&image).await.len(), 1);
}
