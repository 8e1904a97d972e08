//! The operator's ServiceAccount has exactly the rights deploy/ grants it, asked of the
//! apiserver (SubjectAccessReview) rather than read from the manifests.

use imageshare_testbed::*;

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
