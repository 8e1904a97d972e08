//! `imageshare plan` from files, without a cluster: the changes a manifest would make with
//! the local clouds it is mapped to, an incomplete plan when a Secret has no local cloud, and
//! nothing to change once Glance matches. (`plan` on the cluster is in `basics` and
//! `overlaps`.)

use imageshare_testbed::*;

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
