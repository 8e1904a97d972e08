//! Members chosen through Keystone: project names with their domain, and a project
//! selector (every project of a domain carrying given tags), resolved at every pass with a
//! project reader's credentials. Projects are created and tagged with the openstack CLI.

use imageshare::api::ImageShare;
use imageshare_testbed::*;
use serde_json::json;

/// The projects `share` resolved, as (name, id, selected).
fn resolved(share: &ImageShare) -> Vec<(String, String, bool)> {
    share
        .status
        .iter()
        .flat_map(|s| &s.projects)
        .map(|p| (p.name.clone(), p.id.clone(), p.selected))
        .collect()
}

/// A [`Scenario`] whose namespace also has Secret `reader-cloud`: a domain reader
/// (domain-scoped token, role reader on Default), the least privilege to list projects.
async fn with_reader(prefix: &str) -> Scenario {
    let scenario = Scenario::new(prefix).await;
    scenario
        .t
        .put_secret("reader-cloud", &clouds_yaml_for("project-reader", None))
        .await;
    scenario
}

#[tokio::test]
async fn tagged_projects_get_the_image_and_lose_it_when_untagged() {
    let Scenario { t, producer, image } = with_reader("selector").await;
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
    let share = t
        .share("gpu")
        .image(&image)
        .with("projectReader", creds("reader-cloud"))
        .with(
            "projectSelector",
            json!({"domain": "Default", "tags": [tag]}),
        )
        .in_sync()
        .await;
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
    let joined = producer.wait_member_added(&image, &second, CONVERGE).await;
    assert!(joined.is_some(), "{second_name} did not get the image");

    // Untagged: it leaves the selection and loses access; the other keeps it.
    openstack("admin", &["project", "set", "--remove-tag", &tag, &first]);
    t.poke("gpu").await;
    let gone = producer.wait_member_gone(&image, &first, CONVERGE).await;
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
    let Scenario { t, producer, image } = with_reader("by-name").await;
    let c = project_id("consumer-c");
    let share = t
        .share("named")
        .image(&image)
        .with("projectReader", creds("reader-cloud"))
        .with_member(json!({"project": "consumer-c", "domain": "Default"}))
        .in_sync()
        .await;
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
    let share = t
        .share("no-reader")
        .image(&image)
        .with_member(json!({"project": "consumer-a", "domain": "Default"}))
        .reaches("Forbidden")
        .await;
    let message = &share.ready_condition().unwrap().message;
    assert!(message.contains("spec.projectReader"), "{message}");
}
