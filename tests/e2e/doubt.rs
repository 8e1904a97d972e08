//! Doubt never revokes: when the operator cannot know the whole truth — Keystone cut a list
//! short, or Glance (or what stands in front of it) answers 404 without a 200 to back it —
//! the pass stops with a reason and no member leaves the ledger or Glance.
//!
//! Keystone's `list_limit` is global, and these tests share one Keystone with every other test
//! running at the same time. Keystone applies a project tag filter after the limit, to the
//! enabled projects of the domain, so a limit only cuts the lists of domains with more
//! projects than it. The truncation test therefore uses a domain of its own holding more
//! projects than [`LIST_LIMIT`], a limit far above the projects of the domain the other tests
//! list (checked before the limit is set), and restores the setting even when it fails.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use imageshare_testbed::fault_proxy::FaultProxy;
use imageshare_testbed::*;
use serde_json::{Value, json};

/// The `[resource] list_limit` the truncation test sets in Keystone.
const LIST_LIMIT: usize = 50;
/// Most projects the domain the other tests use (Default) may hold when the limit is set: far
/// enough under [`LIST_LIMIT`] that tests creating projects meanwhile stay under it too.
const OTHERS_AT_MOST: usize = 30;
/// Projects the selector of the truncation test chooses.
const TAGGED: usize = 5;

/// Keystone's `[resource] list_limit` set for as long as this lives; removed again when it
/// is dropped, also when the test fails.
struct ListLimit;

impl ListLimit {
    fn set(limit: usize) -> ListLimit {
        stack("keystone-list-limit.sh", &[&limit.to_string()], &[]);
        ListLimit
    }
}

impl Drop for ListLimit {
    fn drop(&mut self) {
        // Never a panic here (it would abort every test of the run during an unwind).
        let script = format!(
            "{}/stack/keystone-list-limit.sh",
            env!("CARGO_MANIFEST_DIR")
        );
        match std::process::Command::new("bash").arg(script).output() {
            Ok(out) if out.status.success() => {}
            other => eprintln!("removing keystone's list_limit failed: {other:?}"),
        }
    }
}

/// The projects that are members of `image` now.
async fn member_ids(producer: &Os, image: &str) -> BTreeSet<String> {
    producer.members(image).await.into_keys().collect()
}

/// Whether Keystone's answer to the selector's list is cut short.
fn truncated(list: &Value) -> bool {
    list["truncated"].as_bool() == Some(true)
}

#[tokio::test]
async fn a_truncated_keystone_list_stops_the_pass_and_revokes_nothing() {
    let t = TestNs::new("truncated").await;
    // The admin may list the projects of any domain, the test's own included.
    t.put_secret("admin-cloud", &clouds_yaml_for("admin", None))
        .await;
    let ks = KeystoneAdmin::login().await;
    let others = ks.list("default", None).await["projects"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        others <= OTHERS_AT_MOST,
        "domain Default holds {others} projects: a list_limit of {LIST_LIMIT} could cut the \
         lists of other tests running now"
    );

    // A domain of the test's own with more projects than the limit, TAGGED of them tagged.
    let domain_name = unique("trunc");
    let domain = ks.create_domain(&domain_name).await;
    let tag = unique("tag");
    let names: Vec<(String, bool)> = (0..LIST_LIMIT)
        .map(|i| (format!("{domain_name}-filler-{i}"), false))
        .chain((0..TAGGED).map(|i| (format!("{domain_name}-tagged-{i}"), true)))
        .collect();
    let created: Vec<(String, bool)> = futures::stream::iter(&names)
        .map(|(name, tagged)| {
            let (ks, domain, tag) = (&ks, &domain, &tag);
            async move {
                let tags: &[&str] = if *tagged { &[tag.as_str()] } else { &[] };
                (ks.create_project(domain, name, tags).await, *tagged)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let tagged: BTreeSet<String> = created
        .into_iter()
        .filter(|(_, tagged)| *tagged)
        .map(|(id, _)| id)
        .collect();
    assert!(!truncated(&ks.list(&domain, Some(&tag)).await));

    let producer = Os::login("producer").await;
    let image = producer.create_image(&unique("trunc"), "shared", &[]).await;
    let share = t
        .share("selected")
        .image(&image)
        .with("projectReader", creds("admin-cloud"))
        .with(
            "projectSelector",
            json!({"domain": domain_name, "tags": [tag]}),
        )
        .in_sync()
        .await;
    let members = || member_ids(&producer, &image);
    assert_eq!(members().await, tagged);
    let recorded = ledger_pairs(&share);
    assert_eq!(recorded.len(), TAGGED, "{recorded:?}");

    {
        let _limit = ListLimit::set(LIST_LIMIT);
        // The selector's list is now cut short by Keystone; Default's lists are not.
        let cut = wait_until(CONVERGE, || async {
            truncated(&ks.list(&domain, Some(&tag)).await).then_some(())
        })
        .await;
        assert!(
            cut.is_some(),
            "keystone did not truncate after list_limit was set"
        );
        assert!(!truncated(&ks.list("default", Some(&tag)).await));

        t.poke("selected").await;
        let share = t.wait_reason("selected", "Forbidden", CONVERGE).await;
        let ready = share.ready_condition().unwrap();
        assert_eq!(ready.status, "False");
        assert!(ready.message.contains("truncated"), "{}", ready.message);
        assert!(ready.message.contains("list_limit"), "{}", ready.message);
        assert!(
            !ready.message.contains("spec.projectReader"),
            "a truncated list is not a missing permission: {}",
            ready.message
        );
        // Another pass changes nothing either.
        t.poke("selected").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(members().await, tagged, "a truncated list removed members");
        let share = t.shares().get("selected").await.unwrap();
        assert_eq!(
            ledger_pairs(&share),
            recorded,
            "a truncated list changed the ledger"
        );
    }

    // The limit is gone: the full list again, and the object is back in sync.
    let whole = wait_until(CONVERGE, || async {
        (!truncated(&ks.list(&domain, Some(&tag)).await)).then_some(())
    })
    .await;
    assert!(
        whole.is_some(),
        "keystone still truncates after list_limit was removed"
    );
    t.poke("selected").await;
    let share = t.wait_reason("selected", "InSync", CONVERGE).await;
    assert_eq!(members().await, tagged);
    assert_eq!(ledger_pairs(&share), recorded);

    t.delete_and_wait_gone("selected", CONVERGE).await;
    assert!(members().await.is_empty());
    ks.delete_domain(&domain).await;
}

#[tokio::test]
async fn a_default_backend_answering_404_never_releases_the_finalizer() {
    let t = TestNs::new("proxy-404").await;
    let producer = Os::login("producer").await;
    let proxy = FaultProxy::start(producer.glance_url()).await;
    t.put_secret(
        "producer-via-proxy",
        &clouds_yaml_via("producer", &proxy.url),
    )
    .await;
    let image = producer.create_image(&unique("p404"), "shared", &[]).await;
    let (a, b) = (project_id("consumer-a"), project_id("consumer-b"));
    let share = t
        .share("shared")
        .image(&image)
        .producer("producer-via-proxy")
        .member(&a)
        .member(&b)
        .in_sync()
        .await;
    let recorded = ledger_pairs(&share);
    let both: BTreeSet<String> = [a.clone(), b.clone()].into();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let members = || member_ids(&producer, &image);
    assert_eq!(members().await, both);

    // Glance "goes away" behind a load balancer whose default backend answers 404 to all.
    let since = proxy.seen().len();
    proxy.outage(404);
    let answered = |method: &'static str, part: &'static str| {
        let proxy = &proxy;
        move || async move {
            proxy.seen()[since..]
                .iter()
                .any(|s| s.method == method && s.path.contains(part))
                .then_some(())
        }
    };

    // A live pass: the image "is not found" and its members' removals answer 404 too; none
    // is confirmed by a 200, so none leaves the ledger.
    t.poke("shared").await;
    let tried = wait_until(CONVERGE, answered("GET", "/v2/images")).await;
    assert!(tried.is_some(), "no pass reached the proxy");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let share = t.shares().get("shared").await.unwrap();
    assert_eq!(
        ledger_pairs(&share),
        recorded,
        "a 404 from a default backend emptied the ledger"
    );
    assert_eq!(members().await, both);

    // Deleted during the outage: the removals answer 404, which nothing confirms, so the
    // finalizer stays and the members stay recorded.
    t.shares()
        .delete("shared", &Default::default())
        .await
        .unwrap();
    let deleted = wait_until(CONVERGE, answered("DELETE", "/members/")).await;
    assert!(
        deleted.is_some(),
        "the cleanup never tried to remove a member"
    );
    let confirmed = wait_until(CONVERGE, answered("GET", "id=in")).await;
    assert!(
        confirmed.is_some(),
        "a 404 on removal was not checked against a listing"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let share = t
        .shares()
        .get_opt("shared")
        .await
        .unwrap()
        .expect("the finalizer was released while Glance answered only 404");
    assert!(share.metadata.deletion_timestamp.is_some());
    assert_eq!(ledger_pairs(&share), recorded);
    assert_eq!(
        members().await,
        both,
        "members left Glance during the outage"
    );

    // Glance is back: the members are removed for real and the object goes away.
    proxy.heal();
    t.poke("shared").await;
    let gone = wait_until(CONVERGE, || async {
        matches!(t.shares().get_opt("shared").await, Ok(None)).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the object was not deleted once Glance answered again"
    );
    assert!(members().await.is_empty(), "members were left behind");
}
