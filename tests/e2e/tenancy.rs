//! Tenancy: a namespace user controls its own ImageShares, Secrets and the endpoints they
//! name, and may be hostile. Whatever it does, it cannot keep access the image's owner
//! withdrew, and doubt never revokes. The adversary is a tenant of the same cloud (a real
//! Keystone user) with its own fake Glance endpoint ([`HostileGlance`]).

use std::collections::BTreeMap;
use std::time::Duration;

use imageshare::api::ImageShare;
use imageshare_testbed::hostile_glance::{HostileGlance, Lie};
use imageshare_testbed::*;
use serde_json::json;

/// The ledger pairs of an ImageShare's status, as (image, project).
fn ledger(share: &ImageShare) -> Vec<(String, String)> {
    ledger_pairs(share).into_iter().collect()
}

#[tokio::test]
async fn a_tenants_own_endpoint_does_not_shield_a_member_the_owner_removes() {
    let Scenario { t, producer, image } = Scenario::new("shield-owner").await;
    let owner_ns = t;
    let tenant = TestNs::new("shield-tenant").await;
    let b = project_id("consumer-b");
    owner_ns
        .share("golden")
        .image(&image)
        .member(&b)
        .in_sync()
        .await;
    assert!(producer.members(&image).await.contains_key(&b));

    // The tenant (consumer-a, a real Keystone user) points its credentials at its own
    // endpoint, which says the image is consumer-a's and shared with consumer-b.
    let hostile = HostileGlance::start(Lie::Owns {
        image: image.clone(),
        owner: project_id("consumer-a"),
        members: BTreeMap::from([(b.clone(), "accepted".to_string())]),
    })
    .await;
    tenant
        .put_secret("tenant-cloud", &clouds_yaml_via("consumer-a", &hostile.url))
        .await;
    let shield = tenant
        .share("shield")
        .image(&image)
        .producer("tenant-cloud")
        .member(&b)
        .in_sync()
        .await;
    let golden = owner_ns.shares().get("golden").await.unwrap();
    let cloud = |s: &ImageShare| s.status.as_ref().and_then(|s| s.cloud.clone());
    assert!(cloud(&shield).is_some_and(|c| c.contains(&hostile.url)));
    assert_ne!(cloud(&shield), cloud(&golden), "another cloud");

    // The owner withdraws consumer-b: it loses the image, the shield notwithstanding.
    owner_ns.patch_spec("golden", json!({"members": []})).await;
    let removed = producer.wait_member_gone(&image, &b, CONVERGE).await;
    assert!(
        removed.is_some(),
        "consumer-b kept the image behind a tenant's fake endpoint"
    );
    let golden = owner_ns.wait_reason("golden", "InSync", CONVERGE).await;
    assert!(ledger(&golden).is_empty(), "{:?}", ledger(&golden));
    assert!(
        hostile.requests().iter().any(|r| r.contains("/members")),
        "the tenant's object did talk to its endpoint"
    );
}

#[tokio::test]
async fn endpoints_and_keystones_the_cluster_operator_did_not_allow_get_no_request() {
    let t = TestNs::new("refused").await;
    let hostile = HostileGlance::start(Lie::Owns {
        image: "1c779bec-127f-47eb-8356-140d685991dd".into(),
        owner: project_id("consumer-a"),
        members: BTreeMap::new(),
    })
    .await;
    // The test bed allows http://127.0.0.1: only; localhost is another spelling, refused.
    let elsewhere = format!("http://localhost:{}", hostile.port);
    t.put_secret("override-cloud", &clouds_yaml_via("consumer-a", &elsewhere))
        .await;
    let mut entry = clouds()["clouds"]["consumer-a"].clone();
    entry["auth"]["auth_url"] = json!(format!("{elsewhere}/v3"));
    t.put_secret("keystone-cloud", &as_clouds_yaml(entry)).await;
    for (name, secret, flag) in [
        ("override", "override-cloud", "--allowed-endpoint-override"),
        ("keystone", "keystone-cloud", "--allowed-auth-url"),
    ] {
        let share = t
            .share(name)
            .image("1c779bec-127f-47eb-8356-140d685991dd")
            .producer(secret)
            .member(&project_id("consumer-b"))
            .reaches("CredentialsInvalid")
            .await;
        let message = &share.ready_condition().unwrap().message;
        assert!(message.contains(flag), "{name}: {message}");
        assert!(
            !message.contains("stack-user-secret"),
            "no secret in status"
        );
    }
    assert!(hostile.requests().is_empty(), "{:?}", hostile.requests());
}

#[tokio::test]
async fn a_suspended_object_defers_a_removal_and_never_inherits_it() {
    let Scenario { t, producer, image } = Scenario::new("susp-shield").await;
    let other = TestNs::new("susp-other").await;
    let b = project_id("consumer-b");
    t.share("granted").image(&image).member(&b).in_sync().await;
    other
        .share("suspended")
        .image(&image)
        .member(&b)
        .with("suspend", json!(true))
        .reaches("Suspended")
        .await;

    // The granting object lets go while the suspended one still declares the member: the
    // member stays (it is declared), and so does the duty to revoke it.
    t.patch_spec("granted", json!({"members": []})).await;
    let share = t.wait_processed("granted").await;
    assert_eq!(ledger(&share), vec![(image.clone(), b.clone())]);
    assert!(producer.members(&image).await.contains_key(&b));

    // The suspended object goes: nobody declares the member any more, and it is removed.
    other.delete_and_wait_gone("suspended", CONVERGE).await;
    let removed = producer
        .wait_member_gone(&image, &b, Duration::from_secs(90))
        .await;
    assert!(removed.is_some(), "the member outlived every declaration");
    let share = t.shares().get("granted").await.unwrap();
    assert!(ledger(&share).is_empty() || !producer.members(&image).await.contains_key(&b));
}

#[tokio::test]
async fn an_image_id_in_another_spelling_changes_nothing() {
    let Scenario { t, producer, image } = Scenario::new("id-case").await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    t.share("golden")
        .image(&image)
        .member(&a)
        .member(&b)
        .in_sync()
        .await;
    let shouted = image.replace('-', "").to_uppercase();
    t.patch_spec("golden", json!({"image": {"id": shouted}}))
        .await;
    let share = t.wait_processed("golden").await;
    assert_eq!(share.ready_condition().unwrap().reason, "InSync");
    let members = producer.members(&image).await;
    assert!(
        members.contains_key(&a) && members.contains_key(&b),
        "{members:?}"
    );
    assert!(
        !t.event_reasons("golden")
            .await
            .iter()
            .any(|r| r == "MemberRemoved")
    );
}

#[tokio::test]
async fn an_object_stuck_on_a_slow_endpoint_holds_back_removals_only_until_its_deadline() {
    let Scenario { t, producer, image } = Scenario::new("stuck-owner").await;
    let other = TestNs::new("stuck-other").await;
    let b = project_id("consumer-b");
    t.share("golden").image(&image).member(&b).in_sync().await;

    // Another object that declares consumer-b, whose endpoint pages slowly without end.
    let slow = HostileGlance::start(Lie::EndlessPages {
        delay: Duration::from_secs(2),
    })
    .await;
    other
        .put_secret("slow-cloud", &clouds_yaml_via("producer", &slow.url))
        .await;
    other
        .share("slow")
        .tagged(&unique("endless"))
        .producer("slow-cloud")
        .member(&b)
        .resync_30s()
        .create()
        .await;
    let paging = wait_until(CONVERGE, || async {
        (slow.requests().len() >= 2).then_some(())
    })
    .await;
    assert!(paging.is_some(), "the slow object is listing pages");
    t.patch_spec("golden", json!({"members": []})).await;
    // Held back while the other object may still declare the member...
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(producer.members(&image).await.contains_key(&b));
    // ... until its pass hits its deadline (its resync period, 30 s) and it is reported.
    let stuck = other
        .wait_reason("slow", "TransientError", Duration::from_secs(90))
        .await;
    let message = &stuck.ready_condition().unwrap().message;
    assert!(message.contains("did not finish within 30s"), "{message}");
    let removed = producer
        .wait_member_gone(&image, &b, Duration::from_secs(60))
        .await;
    assert!(
        removed.is_some(),
        "the stuck object held the removal back for good"
    );
}
