//! The deletion guard on producer Secrets is the operator's to remove, whoever added it and
//! whichever field manager owns it: a Secret copied with `kubectl get -o json | ... |
//! kubectl create -f -` carries the finalizer under kubectl's field manager, and once no
//! ImageShare needs the Secret the operator must still take it off, or its namespace stays
//! Terminating forever.

use std::time::Duration;

use imageshare_testbed::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::json;

/// The field manager `kubectl create` writes under.
const KUBECTL_CREATE: &str = "kubectl-create";

#[tokio::test]
async fn a_copied_secret_whose_guard_kubectl_owns_is_released_and_its_namespace_goes() {
    let Scenario { t, producer, image } = Scenario::new("guard-copied").await;
    let a = project_id("consumer-a");
    // The copy as `kubectl create` makes it: the guard is in the metadata it was given, so
    // kubectl's field manager owns it and the operator's own manager owns nothing.
    let copy: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "copied-cloud", "finalizers": [CREDENTIALS_FINALIZER]},
        "stringData": {"clouds.yaml": clouds_yaml_for("producer", None)},
    }))
    .expect("secret");
    let created = t
        .secrets()
        .create(
            &PostParams {
                field_manager: Some(KUBECTL_CREATE.into()),
                ..PostParams::default()
            },
            &copy,
        )
        .await
        .expect("create the copied secret");
    let managers: Vec<String> = created
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert_eq!(managers, [KUBECTL_CREATE], "only kubectl owns the copy");

    t.share("share")
        .image(&image)
        .producer("copied-cloud")
        .member(&a)
        .in_sync()
        .await;
    assert!(t.guarded("copied-cloud").await);
    assert!(producer.members(&image).await.contains_key(&a));

    // No ImageShare needs the Secret any more: the guard goes, although kubectl owns it.
    t.delete_and_wait_gone("share", CONVERGE).await;
    assert!(
        producer.members(&image).await.is_empty(),
        "the member was removed on deletion"
    );
    let released = wait_until(Duration::from_secs(30), || async {
        (!t.guarded("copied-cloud").await).then_some(())
    })
    .await;
    assert!(
        released.is_some(),
        "copied-cloud still carries {CREDENTIALS_FINALIZER} 30 s after its last ImageShare went"
    );
    let secret = t.secrets().get("copied-cloud").await.expect("secret");
    assert!(
        secret.metadata.deletion_timestamp.is_none(),
        "only the finalizer changed"
    );
    // And the namespace goes (kube-controller-manager's namespace controller).
    t.delete_namespace_and_wait_gone(Duration::from_secs(90))
        .await;
}
