//! Leader election on the real apiserver: a second replica of the operator waits while the
//! running one holds its Lease; two extra replicas, with a Lease of their own and watching an
//! empty namespace (so they never touch what the running operator manages), take over from
//! each other after a crash (kill -9) and after a shutdown (SIGTERM, which releases the
//! Lease). The takeover times are printed.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;

use imageshare_testbed::*;

/// The operator binary the replicas run.
const BIN: &str = env!("CARGO_BIN_EXE_imageshare");

/// The holder of `lease` once it is `want`, and how long that took; panics after 40 s.
async fn wait_holder(leases: &kube::Api<Lease>, lease: &str, want: &str) -> Duration {
    let start = Instant::now();
    let held = wait_until(Duration::from_secs(40), || async {
        let holder = leases
            .get_opt(lease)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        (holder.as_deref() == Some(want)).then_some(())
    })
    .await;
    assert!(held.is_some(), "{want} never held {lease}");
    start.elapsed()
}

#[tokio::test]
async fn a_standby_takes_over_after_a_crash_within_twenty_seconds_and_at_once_after_a_shutdown() {
    let t = TestNs::new("leader").await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(t.client.clone(), "imageshare-system");
    let lease = format!("e2e-{}", t.name);

    let mut first = replica(BIN, "first", &lease, &t.name, None, "text");
    wait_holder(&leases, &lease, "first").await;
    let mut second = replica(BIN, "second", &lease, &t.name, None, "text");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(second.try_wait().unwrap().is_none(), "the standby waits");

    // Crash: the Lease is not released; the standby waits out the lease duration (15 s).
    first.kill().unwrap();
    first.wait().unwrap();
    let after_crash = wait_holder(&leases, &lease, "second").await;
    assert!(after_crash < Duration::from_secs(20), "{after_crash:?}");

    // Shutdown: SIGTERM finishes in-flight passes and releases the Lease.
    let mut third = replica(BIN, "third", &lease, &t.name, None, "text");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = None;
    while exited.is_none() && Instant::now() < deadline {
        exited = second.try_wait().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.is_some(), "the leader stops on SIGTERM");
    let after_shutdown = wait_holder(&leases, &lease, "third").await;
    row(
        "two replicas: the leader killed (kill -9), then the next one stopped (SIGTERM)",
        "the standby takes over when the 15 s lease expires; on SIGTERM the leader finishes its passes and releases the Lease",
        &format!(
            "takeover {:.1}s after kill -9, {:.1}s after SIGTERM",
            after_crash.as_secs_f64(),
            after_shutdown.as_secs_f64()
        ),
    );
    assert!(
        after_shutdown < Duration::from_secs(5),
        "{after_shutdown:?}"
    );
    third.kill().unwrap();
    third.wait().unwrap();
}

#[tokio::test]
async fn a_second_replica_waits_while_the_running_operator_holds_the_lease() {
    let leases: kube::Api<Lease> = kube::Api::namespaced(admin().await, "imageshare-system");
    let holder = || async {
        let lease = leases.get("imageshare-operator").await.unwrap();
        lease.spec.and_then(|s| s.holder_identity)
    };
    assert_eq!(holder().await.as_deref(), Some("local-operator"));

    let log = state_dir().join("logs/standby-operator.log");
    let mut standby = std::process::Command::new(env!("CARGO_BIN_EXE_imageshare"))
        .args([
            "operator",
            "--log-format",
            "text",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--leader-election", "--leader-election-identity", "standby"])
        .arg("--kubeconfig")
        .arg(state_dir().join("operator.kubeconfig"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let still_running = standby.try_wait().unwrap().is_none();
    standby.kill().unwrap();
    standby.wait().unwrap();
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(still_running, "the standby exited: {output}");
    assert!(output.contains("waiting for the leader lease"), "{output}");
    assert!(!output.contains("holding the leader lease"), "{output}");
    assert_eq!(holder().await.as_deref(), Some("local-operator"));
}
