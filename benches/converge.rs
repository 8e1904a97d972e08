//! Benchmark on the real local stack (`make up operator` first): how long the operator takes
//! to share one image with N projects and to remove them again, and how many Keystone
//! authentications that cost. Prints numbers; asserts nothing about time.
//! Run: `make bench` (or `cargo bench --bench converge`).
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs, dead_code)]

#[path = "../tests/e2e/support.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Os, TestNs};

async fn keystone_authentications() -> u64 {
    let port = std::env::var("OPERATOR_PORT").unwrap_or_else(|_| "28080".into());
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("operator metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("imageshare_keystone_authentications_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let timeout = Duration::from_secs(300);
    println!(
        "{:>8} {:>12} {:>12} {:>16}",
        "members", "share_s", "remove_s", "keystone_auths"
    );
    for members in [10usize, 50, 100] {
        let t = TestNs::new("bench").await;
        let producer = Os::login("producer").await;
        let image = producer
            .create_image(&format!("bench-{members}-{}", t.name), "shared", &[])
            .await;
        let projects: Vec<_> = (0..members)
            .map(|i| json!({"project": format!("{:08x}{i:024x}", fastrand::u32(..))}))
            .collect();
        let auths = keystone_authentications().await;
        let start = Instant::now();
        t.create(
            "bench",
            json!({"image": {"id": image}, "producer": {"credentialsRef":
                {"secretName": "producer-cloud", "cloudName": "openstack"}},
                "membership": "Exclusive", "members": projects}),
        )
        .await;
        t.wait_reason("bench", "InSync", timeout).await;
        let share = start.elapsed();
        assert_eq!(producer.members(&image).await.len(), members);

        let start = Instant::now();
        t.patch_spec("bench", json!({"members": []})).await;
        t.wait_reason("bench", "InSync", timeout).await;
        let remove = start.elapsed();
        assert!(producer.members(&image).await.is_empty());
        let auths = keystone_authentications().await - auths;
        println!(
            "{members:>8} {:>12.2} {:>12.2} {auths:>16}",
            share.as_secs_f64(),
            remove.as_secs_f64()
        );
    }
}
