//! The metrics people build dashboards and alerts on, scraped from the running operator
//! after it shared an image: objects by Ready reason, members by state, OpenStack requests
//! by service and operation, Keystone tokens, the leader and the build.

use imageshare_testbed::*;

/// The operator's /metrics text.
async fn scrape() -> String {
    let port = std::env::var("OPERATOR_PORT").unwrap_or_else(|_| "28080".into());
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics endpoint");
    answer.text().await.expect("metrics text")
}

/// The sum of the samples whose line starts with `series` and has every one of `labels`.
fn sum(text: &str, series: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_metrics_dashboards_use_are_exported_after_a_share() {
    let Scenario { t, image, .. } = Scenario::new("metrics").await;
    t.share("share")
        .image(&image)
        .member(&project_id("consumer-a"))
        .in_sync()
        .await;
    // The gauges are read from the operator's cache, which sees the status a moment later.
    let text = wait_until(CONVERGE, || async {
        let text = scrape().await;
        (sum(&text, "imageshare_imageshares{", &[r#"reason="InSync""#]) >= 1.0).then_some(text)
    })
    .await
    .expect("an InSync object counted");
    assert!(sum(&text, "imageshare_members{", &[]) >= 1.0, "{text}");
    let added = ["service=\"image\"", "operation=\"create_member\""];
    assert!(
        sum(&text, "imageshare_openstack_requests_total{", &added) >= 1.0,
        "{text}"
    );
    let durations = "imageshare_openstack_request_duration_seconds_count{";
    assert!(
        sum(&text, durations, &["service=\"image\""]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "imageshare_keystone_token_refreshes_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "imageshare_reconcile_passes_total{", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(sum(&text, "imageshare_leader", &[]), 1.0, "{text}");
    assert_eq!(
        sum(&text, "imageshare_build_info{", &["version=\""]),
        1.0,
        "{text}"
    );
}
