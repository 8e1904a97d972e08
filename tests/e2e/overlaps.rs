//! Overlapping ImageShares: objects that want the same thing agree (one makes the writes,
//! all report InSync and name each other); only a contradiction is a Conflict (an Exclusive
//! object never removes a member another object declares); a member goes when the last
//! object that holds it lets go. `plan` gives the verdict the operator then reports.

use std::time::Duration;

use imageshare_testbed::*;
use serde_json::json;

/// `imageshare plan -A` on one object of the cluster (overlaps span namespaces): its exit
/// code and text.
fn plan(t: &TestNs, name: &str) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imageshare"))
        .args(["plan", "-A", "-n", &t.name, name, "--kubeconfig"])
        .arg(state_dir().join("kubeconfig"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

/// The Ready reason `plan` predicts ("then Ready REASON: ...").
fn predicted(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("then Ready "))?;
    let rest = line.trim_start().trim_start_matches("then Ready ");
    rest.split(':').next().map(str::to_string)
}

/// How many `reason` Events an object has.
async fn count(t: &TestNs, name: &str, reason: &str) -> usize {
    t.event_reasons(name)
        .await
        .iter()
        .filter(|r| *r == reason)
        .count()
}

#[tokio::test]
async fn two_objects_declaring_the_same_member_both_report_in_sync_and_the_last_to_go_revokes() {
    let Scenario { t, producer, image } = Scenario::new("agree").await;
    let c = project_id("consumer-c");
    t.share("platform").image(&image).member(&c).in_sync().await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation second
    let team = t.share("team").image(&image).member(&c).in_sync().await;
    let row = &team.status.as_ref().unwrap().members[0];
    let message = row.message.as_deref().unwrap_or_default();
    assert!(
        message.contains(&format!("also declared by {}/platform", t.name)),
        "{message}"
    );
    // One set of writes: the earlier object added it; the later one made no call.
    assert!(t.has_event("platform", "MemberAdded").await);
    assert_eq!(count(&t, "platform", "MemberAdded").await, 1);
    assert_eq!(count(&t, "team", "MemberAdded").await, 0);
    let (code, text) = plan(&t, "team");
    assert_eq!(code, 0, "{text}");
    assert_eq!(predicted(&text).as_deref(), Some("InSync"), "{text}");
    assert!(text.contains("also declared by"), "{text}");

    // Either one going leaves the member while the other declares it...
    t.delete_and_wait_gone("platform", CONVERGE).await;
    assert!(producer.members(&image).await.contains_key(&c));
    t.poke("team").await;
    t.wait_reason("team", "InSync", CONVERGE).await;
    assert!(producer.members(&image).await.contains_key(&c));
    // ... and the last one revokes it.
    t.delete_and_wait_gone("team", CONVERGE).await;
    assert!(!producer.members(&image).await.contains_key(&c));
}

#[tokio::test]
async fn the_same_status_from_two_namespaces_agrees_and_a_different_one_conflicts_on_the_later() {
    let first = TestNs::new("agree-first").await;
    let second = TestNs::new("agree-second").await;
    let third = TestNs::new("agree-third").await;
    let producer = Os::login("producer").await;
    let image = producer
        .create_image(&unique("agrees"), "shared", &[])
        .await;
    let a = project_id("consumer-a");
    let with = |status: &str| {
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": a, "status": status, "consumer": creds("consumer-a-cloud")}]})
    };
    first.create("accept", with("accepted")).await;
    first.wait_reason("accept", "InSync", CONVERGE).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    second.create("accept", with("accepted")).await;
    let agreed = second.wait_reason("accept", "InSync", CONVERGE).await;
    let message = agreed.status.as_ref().unwrap().members[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        message.contains(&format!("{}/accept", first.name)),
        "{message}"
    );
    assert_eq!(count(&second, "accept", "MemberStatusSet").await, 0);
    let (_, text) = plan(&second, "accept");
    assert_eq!(predicted(&text).as_deref(), Some("InSync"), "{text}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    third.create("reject", with("rejected")).await;
    let conflict = third.wait_reason("reject", "Conflict", CONVERGE).await;
    let message = &conflict.ready_condition().unwrap().message;
    assert!(
        message.contains(&format!("{}/accept", first.name)),
        "{message}"
    );
    let (code, text) = plan(&third, "reject");
    assert_eq!(predicted(&text).as_deref(), Some("Conflict"), "{text}");
    assert_eq!(code, 0, "a conflict changes nothing: {text}");
    // The earlier objects are not disturbed: still accepted.
    assert_eq!(
        producer.members(&image).await.get(&a).map(String::as_str),
        Some("accepted")
    );
    first.wait_reason("accept", "InSync", CONVERGE).await;
}

#[tokio::test]
async fn exclusive_share_keeps_members_another_imageshare_declares() {
    let Scenario { t, producer, image } = Scenario::new("shared-excl").await;
    let (a, c) = (project_id("consumer-a"), project_id("consumer-c"));
    t.share("exclusive")
        .image(&image)
        .exclusive()
        .member(&c)
        .in_sync()
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation second
    t.share("additive").image(&image).member(&a).in_sync().await;
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
