//! Members chosen through Keystone: project names with their domain, and a project
//! selector (every project of a domain carrying given tags), resolved at every pass with a
//! project reader's credentials. Projects are created and tagged with the openstack CLI.

use imageshare::api::ImageShare;
use serde_json::json;

use crate::support::*;

/// The projects `share` resolved, as (name, id, selected).
fn resolved(share: &ImageShare) -> Vec<(String, String, bool)> {
    share
        .status
        .iter()
        .flat_map(|s| &s.projects)
        .map(|p| (p.name.clone(), p.id.clone(), p.selected))
        .collect()
}

#[tokio::test]
async fn tagged_projects_get_the_image_and_lose_it_when_untagged() {
    let t = TestNs::new("selector").await;
    // A domain reader (domain-scoped token, role reader on Default): the least privilege.
    t.put_secret("reader-cloud", &clouds_yaml_for("project-reader", None))
        .await;
    let producer = Os::login("producer").await;
    let image = producer
        .create_image(&unique("select"), "shared", &[])
        .await;
    let tag = unique("gpu");
    let create = |name: &str| {
        openstack(
            "admin",
            &[
                "project", "create", "--domain", "Default", "--tag", &tag, name, "-f", "value",
                "-c", "id",
            ],
        )
    };
    let (first_name, second_name) = (unique("tenant-1"), unique("tenant-2"));
    let first = create(&first_name);
    t.create(
        "gpu",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "projectReader": creds("reader-cloud"),
            "projectSelector": {"domain": "Default", "tags": [tag]}}),
    )
    .await;
    let share = t.wait_reason("gpu", "InSync", CONVERGE).await;
    assert_eq!(
        resolved(&share),
        [(first_name.clone(), first.clone(), true)]
    );
    assert_eq!(
        producer.members(&image).await.keys().collect::<Vec<_>>(),
        [&first]
    );

    // A project created later joins at the next resync (forced here by a poke).
    let second = create(&second_name);
    t.poke("gpu").await;
    let joined = wait_until(CONVERGE, || async {
        producer
            .members(&image)
            .await
            .contains_key(&second)
            .then_some(())
    })
    .await;
    assert!(joined.is_some(), "{second_name} did not get the image");

    // Untagged: it leaves the selection and loses access; the other keeps it.
    openstack("admin", &["project", "set", "--remove-tag", &tag, &first]);
    t.poke("gpu").await;
    let gone = wait_until(CONVERGE, || async {
        (!producer.members(&image).await.contains_key(&first)).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "{first_name} kept the image after leaving the selection"
    );
    let share = t.wait_reason("gpu", "InSync", CONVERGE).await;
    assert_eq!(resolved(&share), [(second_name, second.clone(), true)]);
    assert_eq!(
        producer.members(&image).await.keys().collect::<Vec<_>>(),
        [&second]
    );
    for project in [first, second] {
        openstack("admin", &["project", "delete", &project]);
    }
}

#[tokio::test]
async fn a_project_given_by_name_is_shared_and_an_unknown_name_changes_nothing() {
    let t = TestNs::new("by-name").await;
    // A domain reader (domain-scoped token, role reader on Default): the least privilege.
    t.put_secret("reader-cloud", &clouds_yaml_for("project-reader", None))
        .await;
    let producer = Os::login("producer").await;
    let image = producer
        .create_image(&unique("byname"), "shared", &[])
        .await;
    let c = project_id("consumer-c");
    t.create(
        "named",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "projectReader": creds("reader-cloud"),
            "members": [{"project": "consumer-c", "domain": "Default"}]}),
    )
    .await;
    let share = t.wait_reason("named", "InSync", CONVERGE).await;
    assert_eq!(resolved(&share), [("consumer-c".into(), c.clone(), false)]);
    assert_eq!(share.status.unwrap().members[0].project, c);
    assert_eq!(
        producer.members(&image).await.keys().collect::<Vec<_>>(),
        [&c]
    );

    // A name that matches nothing: ProjectNotFound, and the member it stood for stays.
    t.patch_spec(
        "named",
        json!({"members": [{"project": "no-such-project", "domain": "Default"}]}),
    )
    .await;
    let share = t.wait_reason("named", "ProjectNotFound", CONVERGE).await;
    let message = &share.ready_condition().unwrap().message;
    assert!(message.contains("no-such-project"), "{message}");
    assert_eq!(
        producer.members(&image).await.keys().collect::<Vec<_>>(),
        [&c]
    );

    // The producer's own credential may not list projects: Forbidden, said clearly.
    t.create(
        "no-reader",
        json!({"image": {"id": image}, "producer": creds("producer-cloud"),
            "members": [{"project": "consumer-a", "domain": "Default"}]}),
    )
    .await;
    let share = t.wait_reason("no-reader", "Forbidden", CONVERGE).await;
    let message = &share.ready_condition().unwrap().message;
    assert!(message.contains("spec.projectReader"), "{message}");
}
