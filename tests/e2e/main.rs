//! End-to-end tests on the real local stack: kube-apiserver + etcd, Keystone + Glance, and the
//! operator running as its ServiceAccount with the RBAC from deploy/ (`make e2e` starts all of
//! it). Each test works in its own namespace and its own images, so tests run in parallel.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod doubt;
mod fault_proxy;
mod faults;
mod guard;
mod hostile_glance;
mod leader;
mod limits;
mod overlaps;
mod projects;
mod revocation;
mod tenancy;
// Some helpers serve only the chaos suite and the benchmarks, which include this file too.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use imageshare::api::{MemberPhase, MemberStatus};
use serde_json::json;
use support::*;

#[tokio::test]
async fn two_consumers_one_accepted_with_its_credentials_one_left_to_the_consumer() {
    let t = TestNs::new("share").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("share"), "shared", &[]).await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    t.create(
        "share",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"), "members": [
            {"project": a, "status": "accepted", "consumer": creds("consumer-a-cloud")},
            {"project": b},
        ]}),
    )
    .await;

    let share = t.wait_reason("share", "InSync", CONVERGE).await;
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
    let t = TestNs::new("event-notes").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("notes"), "shared", &[]).await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    t.create(
        "share",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": a}]}),
    )
    .await;
    t.wait_reason("share", "InSync", CONVERGE).await;
    t.patch_spec(
        "share",
        json!({"members": [{"project": a}, {"project": b}]}),
    )
    .await;
    t.wait_reason("share", "InSync", CONVERGE).await;
    let notes: Vec<String> = t
        .events("share")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MemberAdded"))
        .filter_map(|e| e.note)
        .collect();
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

/// Runs `imageshare plan` with the stack's clouds.yaml; returns the exit code and stdout.
fn plan_from_files(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imageshare"))
        .arg("plan")
        .args(args)
        .arg("--clouds")
        .arg(state_dir().join("clouds.yaml"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn plan_from_files_shows_the_changes_without_a_cluster_and_exits_two_then_zero() {
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("planf"), "shared", &[]).await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    let dir = std::env::temp_dir().join(unique("plan-files"));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = format!(
        "apiVersion: imageshare.dev/v1alpha1
kind: ImageShare
metadata: {{name: golden, namespace: platform}}
spec:
  image: {{id: {image}}}
  producer: {{credentialsRef: {{secretName: producer-cloud, cloudName: openstack}}}}
  members:
    - project: {a}
    - project: {b}
      status: accepted
      consumer: {{credentialsRef: {{secretName: team-b, cloudName: openstack}}}}
"
    );
    std::fs::write(dir.join("share.yaml"), &manifest).unwrap();
    let file = dir.join("share.yaml");
    let file = file.to_str().unwrap();
    let map = [
        "--cloud",
        "producer-cloud=producer",
        "--cloud",
        "team-b=consumer-b",
    ];
    // A consumer Secret with no local cloud: the plan is incomplete, exit code 1.
    let (code, out) = plan_from_files(&["-f", file, "--cloud", "producer-cloud=producer"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--cloud team-b=NAME"), "{out}");

    let (code, out) = plan_from_files(&[&["-f", file, "-o", "json"][..], &map].concat());
    assert_eq!(code, 2, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let changes: Vec<(String, String, String)> = report["objects"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (field("action"), field("project"), field("as"))
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("add".into(), a.clone(), "producer".into()),
            ("add".into(), b.clone(), "producer".into()),
            ("setStatus".into(), b.clone(), "secret team-b".into()),
        ],
        "{out}"
    );
    assert!(
        producer.members(&image).await.is_empty(),
        "plan changed Glance"
    );

    // Done by hand: nothing left to change.
    producer.add_member(&image, &a).await;
    producer.add_member(&image, &b).await;
    Os::login("consumer-b")
        .await
        .set_status(&image, &b, "accepted")
        .await;
    let (code, out) = plan_from_files(&[&["-f", file][..], &map].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to change"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn consumer_drift_is_corrected_when_managed_and_left_alone_when_not() {
    let t = TestNs::new("drift").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("drift"), "shared", &[]).await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    t.create(
        "drift",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"), "resyncPeriod": "30s",
        "members": [
            {"project": a, "status": "accepted", "consumer": creds("consumer-a-cloud")},
            {"project": b},
        ]}),
    )
    .await;
    t.wait_reason("drift", "InSync", CONVERGE).await;

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
async fn hand_added_member_is_left_alone_in_additive_and_removed_in_exclusive() {
    let t = TestNs::new("exclusive").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("excl"), "shared", &[]).await;
    let (a, c) = (project_id("consumer-a"), project_id("consumer-c"));
    producer.add_member(&image, &c).await;
    t.create(
        "excl",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": a}]}),
    )
    .await;
    t.wait_reason("excl", "InSync", CONVERGE).await;
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
        t.create(
            name,
            json!({"image": {"id": image}, "producer": creds("producer-cloud"),
                "deletionPolicy": policy, "members": [{"project": a}]}),
        )
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
    t.create(
        "renamed",
        json!({"image": {"name": name}, "producer": creds("producer-cloud"),
            "members": [{"project": a}]}),
    )
    .await;
    t.wait_reason("renamed", "InSync", CONVERGE).await;
    producer
        .replace_image_field(&image, "name", &unique("after"))
        .await;
    t.delete_and_wait_gone("renamed", CONVERGE).await;
    assert!(producer.members(&image).await.is_empty());
}

#[tokio::test]
async fn consumer_only_share_waits_for_the_producer_and_splits_the_work_with_its_share() {
    let t = TestNs::new("split").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("split"), "shared", &[]).await;
    let a = project_id("consumer-a");
    // The consumer side first: the project is not a member yet.
    t.create(
        "consumer-side",
        json!({"image": {"id": image}, "resyncPeriod": "30s",
            "members": [{"project": a, "status": "accepted", "consumer": creds("consumer-a-cloud")}]}),
    )
    .await;
    let waiting = t
        .wait_reason("consumer-side", "ImageNotFound", CONVERGE)
        .await;
    assert_eq!(
        waiting.status.unwrap().members[0].state,
        MemberPhase::Failed
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation second
    // The producer side shares without managing the status: no conflict, both succeed.
    t.create(
        "producer-side",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": a}]}),
    )
    .await;
    t.wait_reason("producer-side", "InSync", CONVERGE).await;
    t.wait_reason("consumer-side", "InSync", RESYNC).await;
    assert_eq!(
        producer.members(&image).await.get(&a).map(String::as_str),
        Some("accepted")
    );
}

#[tokio::test]
async fn missing_image_or_secret_does_not_block_deletion() {
    let t = TestNs::new("nodeps").await;
    let a = project_id("consumer-a");
    t.create(
        "no-image",
        json!({"image": {"id": "00000000-0000-0000-0000-000000000000"},
            "producer": creds("producer-cloud"), "members": [{"project": a}]}),
    )
    .await;
    t.create(
        "no-secret",
        json!({"image": {"id": "00000000-0000-0000-0000-000000000001"},
            "producer": creds("does-not-exist"), "members": [{"project": a}]}),
    )
    .await;
    t.wait_reason("no-image", "ImageNotFound", CONVERGE).await;
    t.wait_reason("no-secret", "CredentialsMissing", CONVERGE)
        .await;
    t.delete_and_wait_gone("no-image", CONVERGE).await;
    t.delete_and_wait_gone("no-secret", CONVERGE).await;
}

#[tokio::test]
async fn image_by_exact_name_is_shared() {
    let t = TestNs::new("byname").await;
    let producer = Os::login("producer").await;
    let name = unique("named");
    let image = producer.create_image(&name, "shared", &[]).await;
    let a = project_id("consumer-a");
    t.create(
        "byname",
        json!({"image": {"name": name}, "producer": creds("producer-cloud"),
            "members": [{"project": a}]}),
    )
    .await;
    let share = t.wait_reason("byname", "InSync", CONVERGE).await;
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
    t.create(
        "sel",
        json!({"image": {"selector": {"tags": [tag]}}, "producer": creds("producer-cloud"),
            "resyncPeriod": "30s", "members": [{"project": a}]}),
    )
    .await;
    let share = t.wait_reason("sel", "InSync", CONVERGE).await;
    assert_eq!(share.status.unwrap().images.len(), 1);
    assert!(producer.members(&first).await.contains_key(&a));

    let second = producer
        .create_image(&unique("sel2"), "shared", &[&tag])
        .await;
    let picked_up = wait_until(RESYNC, || async {
        producer
            .members(&second)
            .await
            .contains_key(&a)
            .then_some(())
    })
    .await;
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
async fn wrong_password_is_credentials_invalid_and_recovers_when_the_secret_is_fixed() {
    let t = TestNs::new("badpass").await;
    let producer = Os::login("producer").await;
    let image = producer
        .create_image(&unique("badpass"), "shared", &[])
        .await;
    let wrong = format!("wrong-{:08x}", fastrand::u32(..));
    t.put_secret("producer-cloud", &clouds_yaml_for("producer", Some(&wrong)))
        .await;
    t.create(
        "badpass",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": project_id("consumer-a")}]}),
    )
    .await;
    t.wait_reason("badpass", "CredentialsInvalid", CONVERGE)
        .await;

    t.put_secret("producer-cloud", &clouds_yaml_for("producer", None))
        .await;
    t.wait_reason("badpass", "InSync", CONVERGE).await;

    assert!(
        !operator_log().contains(&wrong),
        "a password appeared in the operator log"
    );
    assert!(!operator_log().contains("stack-user-secret"));
}

#[tokio::test]
async fn malformed_secret_and_unreachable_cloud_are_reported_clearly() {
    let t = TestNs::new("badcloud").await;
    let a = project_id("consumer-a");
    t.put_secret("garbled", "clouds: [this is: not, a mapping")
        .await;
    let unreachable = clouds_yaml_for("producer", None).replace(
        clouds()["clouds"]["producer"]["auth"]["auth_url"]
            .as_str()
            .unwrap(),
        "http://127.0.0.1:9/v3",
    );
    t.put_secret("unreachable", &unreachable).await;
    let id = "1c779bec-127f-47eb-8356-140d685991dd";
    for (name, secret) in [("garbled", "garbled"), ("unreachable", "unreachable")] {
        t.create(
            name,
            json!({"image": {"id": id}, "producer": creds(secret), "members": [{"project": a}]}),
        )
        .await;
    }
    let garbled = t
        .wait_reason("garbled", "CredentialsInvalid", CONVERGE)
        .await;
    let message = &garbled.ready_condition().unwrap().message;
    assert!(message.contains("garbled"), "{message}");
    let unreachable = t
        .wait_reason("unreachable", "TransientError", CONVERGE)
        .await;
    let message = &unreachable.ready_condition().unwrap().message;
    assert!(message.contains("127.0.0.1:9"), "{message}");
    assert!(!message.contains("stack-user-secret"));
}

#[tokio::test]
async fn private_image_is_image_not_shared_until_its_visibility_is_shared() {
    let t = TestNs::new("private").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("priv"), "private", &[]).await;
    let a = project_id("consumer-a");
    t.create(
        "private",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "resyncPeriod": "30s", "members": [{"project": a}]}),
    )
    .await;
    t.wait_reason("private", "ImageNotShared", CONVERGE).await;

    producer.set_visibility(&image, "shared").await;
    t.wait_reason("private", "InSync", RESYNC).await;
    assert!(producer.members(&image).await.contains_key(&a));
}

#[tokio::test]
async fn missing_secret_is_credentials_missing_and_recovers_when_created() {
    let t = TestNs::new("nosecret").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("nosec"), "shared", &[]).await;
    t.delete_secret("producer-cloud").await;
    t.create(
        "nosecret",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": project_id("consumer-a")}]}),
    )
    .await;
    t.wait_reason("nosecret", "CredentialsMissing", CONVERGE)
        .await;
    assert!(t.has_event("nosecret", "CredentialsMissing").await);

    t.put_secret("producer-cloud", &clouds_yaml_for("producer", None))
        .await;
    t.wait_reason("nosecret", "InSync", CONVERGE).await;
}

#[tokio::test]
async fn status_without_consumer_credentials_awaits_the_consumer() {
    let t = TestNs::new("await").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("await"), "shared", &[]).await;
    let a = project_id("consumer-a");
    t.create(
        "await",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": a, "status": "accepted"}]}),
    )
    .await;
    let share = t.wait_reason("await", "AwaitingConsumer", CONVERGE).await;
    let row = &share.status.unwrap().members[0];
    assert_eq!(row.state, MemberPhase::AwaitingConsumer);
    assert_eq!(row.status, Some(MemberStatus::Pending));
}

#[tokio::test]
async fn consumer_only_share_sets_the_status_with_consumer_credentials() {
    let t = TestNs::new("consumer").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("cons"), "shared", &[]).await;
    let a = project_id("consumer-a");
    producer.add_member(&image, &a).await;
    t.create(
        "consumer",
        json!({"image": {"id": image},
            "members": [{"project": a, "status": "accepted", "consumer": creds("consumer-a-cloud")}]}),
    )
    .await;
    t.wait_reason("consumer", "InSync", CONVERGE).await;
    assert_eq!(
        producer.members(&image).await.get(&a).map(String::as_str),
        Some("accepted")
    );
}

#[tokio::test]
async fn suspended_share_changes_nothing() {
    let t = TestNs::new("suspend").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("susp"), "shared", &[]).await;
    t.create(
        "suspended",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"), "suspend": true,
            "members": [{"project": project_id("consumer-a")}]}),
    )
    .await;
    let share = t.wait_reason("suspended", "Suspended", CONVERGE).await;
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
    let a = project_id("consumer-a");
    assert!(
        text.contains(&format!("would add project {a} to image {image}")),
        "{text}"
    );
    assert!(producer.members(&image).await.is_empty());

    t.patch_spec("suspended", json!({"suspend": false})).await;
    t.wait_reason("suspended", "InSync", CONVERGE).await;
    assert_eq!(producer.members(&image).await.len(), 1);
}

#[tokio::test]
async fn exclusive_share_keeps_members_another_imageshare_declares() {
    let t = TestNs::new("shared-excl").await;
    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("sx"), "shared", &[]).await;
    let (a, c) = (project_id("consumer-a"), project_id("consumer-c"));
    t.create(
        "exclusive",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "membership": "Exclusive", "members": [{"project": c}]}),
    )
    .await;
    t.wait_reason("exclusive", "InSync", CONVERGE).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation second
    t.create(
        "additive",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": a}]}),
    )
    .await;
    t.wait_reason("additive", "InSync", CONVERGE).await;
    // Make the Exclusive one pass again: it must not remove the other object's member, and
    // it says why it cannot be exclusive (a contradiction: a Conflict naming the other).
    t.patch_spec("exclusive", json!({"resyncPeriod": "30s"}))
        .await;
    let share = t.wait_reason("exclusive", "Conflict", CONVERGE).await;
    let message = &share.ready_condition().unwrap().message;
    assert!(
        message.contains(&format!("{}/additive", t.name)),
        "{message}"
    );
    let members = producer.members(&image).await;
    assert!(
        members.contains_key(&a) && members.contains_key(&c),
        "{members:?}"
    );
    assert!(
        !t.event_reasons("exclusive")
            .await
            .iter()
            .any(|r| r == "MemberRemoved")
    );
}

/// Each entry: a spec that breaks one rule, and text the apiserver's answer must contain.
#[tokio::test]
async fn every_validation_rule_rejects_an_invalid_spec_with_a_readable_message() {
    let t = TestNs::new("cel").await;
    let id = "1c779bec-127f-47eb-8356-140d685991dd";
    let p = creds("producer-cloud");
    let cases = [
        (
            json!({"image": {"id": id, "name": "x"}, "producer": p}),
            "exactly one of image.id, image.name or image.selector must be set",
        ),
        (
            json!({"image": {}, "producer": p}),
            "exactly one of image.id, image.name or image.selector must be set",
        ),
        (
            json!({"image": {"selector": {}}, "producer": p}),
            "image.selector needs at least one tag or a non-empty namePrefix",
        ),
        (
            json!({"image": {"id": id}, "membership": "Exclusive"}),
            "membership Exclusive needs spec.producer",
        ),
        (
            json!({"image": {"name": "x"}}),
            "the image must be given by spec.image.id",
        ),
        (
            json!({"image": {"id": id}, "members": [{"project": "a", "status": "accepted"}]}),
            "every member needs consumer credentials and a status",
        ),
        (
            json!({"image": {"id": id}, "producer": p, "members": [{"project": "a/b"}]}),
            "spec.members[0].project",
        ),
        (
            json!({"image": {"id": id}, "projectSelector": {"domain": "Default", "tags": ["gpu"]}}),
            "projectSelector and project names (members[].domain) need spec.producer",
        ),
        (
            json!({"image": {"id": id}, "producer": p, "members": [{"project": ".."}]}),
            "spec.members[0].project",
        ),
        (
            json!({"image": {"id": id}, "producer": p,
                "projectSelector": {"domain": "Default"}}),
            "projectSelector needs tags, or allProjects: true",
        ),
        (
            json!({"image": {"id": id}, "producer": p, "resyncPeriod": "5s"}),
            "resyncPeriod must be between 30s and 24h",
        ),
        (
            json!({"image": {"id": id}, "producer": p, "resyncPeriod": "25h"}),
            "resyncPeriod must be between 30s and 24h",
        ),
        (
            json!({"image": {"id": id}, "producer": p, "resyncPeriod": "soon"}),
            "spec.resyncPeriod",
        ),
        (
            json!({"image": {"id": id}, "producer": p,
                "members": [{"project": "a"}, {"project": "a"}]}),
            "Duplicate value",
        ),
        (
            json!({"image": {"id": id}, "producer": p,
                "members": [{"project": "a", "status": "maybe"}]}),
            "Unsupported value: \"maybe\"",
        ),
        (
            json!({"image": {"id": "not-a-uuid"}, "producer": p}),
            "spec.image.id",
        ),
    ];
    let resource = kube::core::ApiResource::erase::<imageshare::api::ImageShare>(&());
    let api: kube::Api<kube::core::DynamicObject> =
        kube::Api::namespaced_with(t.client.clone(), &t.name, &resource);
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let obj: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "imageshare.dev/v1alpha1", "kind": "ImageShare",
            "metadata": {"name": format!("bad-{i}")}, "spec": spec}))
        .unwrap();
        let err = api
            .create(&Default::default(), &obj)
            .await
            .expect_err(&format!("case {i} ({expected}) must be rejected"));
        let text = err.to_string();
        assert!(
            text.contains(expected),
            "case {i}: expected {expected:?} in {text}"
        );
    }
}

#[tokio::test]
async fn operator_service_account_has_no_rights_beyond_deploy_rbac() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let client = admin().await;
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(client);
    let can = |verb: &str, group: &str, resource: &str| {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some("system:serviceaccount:imageshare-system:imageshare".into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api = api.clone();
        async move {
            api.create(&Default::default(), &review)
                .await
                .unwrap()
                .status
                .unwrap()
                .allowed
        }
    };
    assert!(can("watch", "imageshare.dev", "imageshares").await);
    assert!(can("get", "", "secrets").await);
    // patch sets the deletion-guard finalizer; nothing else may change a Secret.
    assert!(can("patch", "", "secrets").await);
    assert!(!can("update", "", "secrets").await);
    assert!(!can("delete", "", "secrets").await);
    assert!(!can("create", "", "secrets").await);
    assert!(!can("delete", "imageshare.dev", "imageshares").await);
    assert!(!can("list", "", "pods").await);
    assert!(!can("delete", "coordination.k8s.io", "leases").await);
}

#[tokio::test]
async fn a_second_replica_waits_while_the_running_operator_holds_the_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: kube::Api<Lease> = kube::Api::namespaced(admin().await, "imageshare-system");
    let holder = || async {
        let lease = leases.get("imageshare-operator").await.unwrap();
        lease.spec.and_then(|s| s.holder_identity)
    };
    assert_eq!(holder().await.as_deref(), Some("local-operator"));

    let log = state_dir().join("logs/standby-operator.log");
    let mut standby = std::process::Command::new(env!("CARGO_BIN_EXE_imageshare"))
        .args([
            "operator",
            "--log-format",
            "text",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--leader-election", "--leader-election-identity", "standby"])
        .arg("--kubeconfig")
        .arg(state_dir().join("operator.kubeconfig"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let still_running = standby.try_wait().unwrap().is_none();
    standby.kill().unwrap();
    standby.wait().unwrap();
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(still_running, "the standby exited: {output}");
    assert!(output.contains("waiting for the leader lease"), "{output}");
    assert!(!output.contains("holding the leader lease"), "{output}");
    assert_eq!(holder().await.as_deref(), Some("local-operator"));
}
