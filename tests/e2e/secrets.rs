//! Credentials Secrets: a wrong password, a malformed clouds.yaml, an unreachable cloud and a
//! missing Secret are each reported with their own reason and a readable message, recover
//! once the Secret is fixed, and never put a password in the status or the operator's log.

use imageshare_testbed::*;

#[tokio::test]
async fn wrong_password_is_credentials_invalid_and_recovers_when_the_secret_is_fixed() {
    let Scenario { t, image, .. } = Scenario::new("badpass").await;
    let wrong = format!("wrong-{:08x}", fastrand::u32(..));
    t.put_secret("producer-cloud", &clouds_yaml_for("producer", Some(&wrong)))
        .await;
    t.share("badpass")
        .image(&image)
        .member(&project_id("consumer-a"))
        .reaches("CredentialsInvalid")
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
        t.share(name)
            .image(id)
            .producer(secret)
            .member(&a)
            .create()
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
async fn missing_secret_is_credentials_missing_and_recovers_when_created() {
    let Scenario { t, image, .. } = Scenario::new("nosecret").await;
    t.delete_secret("producer-cloud").await;
    t.share("nosecret")
        .image(&image)
        .member(&project_id("consumer-a"))
        .reaches("CredentialsMissing")
        .await;
    assert!(t.has_event("nosecret", "CredentialsMissing").await);

    t.put_secret("producer-cloud", &clouds_yaml_for("producer", None))
        .await;
    t.wait_reason("nosecret", "InSync", CONVERGE).await;
}
