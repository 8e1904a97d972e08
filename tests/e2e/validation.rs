//! The CRD's validation rules, enforced by the apiserver before the operator sees an object:
//! every rule rejects a spec that breaks it, with a message a user can act on.

use imageshare_testbed::*;
use serde_json::json;

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
