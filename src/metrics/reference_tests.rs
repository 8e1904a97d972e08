//! The Grafana dashboard, the example alerts and docs/metrics.md name only metrics the
//! operator exports: every `imageshare_*` identifier in them is checked against the names
//! the registry encodes (with the `_total`, `_bucket`, `_sum`, `_count` and `_info` suffixes
//! of its families), so a renamed or misspelt metric fails `make unit`.

use std::collections::BTreeSet;

use super::Metrics;

const DASHBOARD: (&str, &str) = (
    "deploy/grafana/imageshare-dashboard.json",
    include_str!("../../deploy/grafana/imageshare-dashboard.json"),
);
const ALERTS: (&str, &str) = (
    "deploy/prometheus/imageshare-alerts.yaml",
    include_str!("../../deploy/prometheus/imageshare-alerts.yaml"),
);
const DOCS: (&str, &str) = ("docs/metrics.md", include_str!("../../docs/metrics.md"));

/// The sample names a family of `kind` exports, as the OpenMetrics text names them.
fn samples(family: &str, kind: &str) -> Vec<String> {
    let with = |suffixes: &[&str]| suffixes.iter().map(|s| format!("{family}{s}")).collect();
    match kind {
        "counter" => with(&["_total"]),
        "histogram" => with(&["_bucket", "_sum", "_count"]),
        "info" => with(&["_info"]),
        _ => with(&[""]),
    }
}

/// The families in OpenMetrics `text` (its `# TYPE` lines), as (family, type).
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// Every `imageshare_*` identifier in `text` (a PromQL metric name can hold `:` too).
fn referenced(text: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    text.match_indices("imageshare_")
        .filter(|(at, _)| !text[..*at].ends_with(ident))
        .map(|(at, _)| text[at..].chars().take_while(|c| ident(*c)).collect())
        .collect()
}

/// The identifiers of `text` that are not in `known`.
fn unknown(text: &str, known: &BTreeSet<String>) -> Vec<String> {
    referenced(text)
        .into_iter()
        .filter(|name| !known.contains(name))
        .collect()
}

/// The metrics with a sample in every family: a family without any series is not encoded
/// at all, so its name would look unknown.
fn sampled() -> Metrics {
    let metrics = Metrics::default();
    metrics.count_error("update_status");
    let request = crate::openstack::metrics::Operation::ListMembers;
    let ok = Some(reqwest::StatusCode::OK);
    metrics
        .openstack()
        .record(request, ok, std::time::Duration::ZERO);
    metrics
}

/// Exported sample names, and the family names (which prose may name, never a query).
fn exported() -> (BTreeSet<String>, BTreeSet<String>) {
    let found = families(&sampled().encode());
    let all = found.iter().map(|(f, k)| (f.as_str(), k.as_str()));
    let samples: BTreeSet<String> = all.clone().flat_map(|(f, k)| samples(f, k)).collect();
    let families = all.map(|(f, _)| f.to_string()).collect();
    (samples, families)
}

/// Checks that the brackets and quotes of each PromQL expression in the dashboard match, so
/// a query cut short is caught too.
fn balanced(expr: &str) -> bool {
    let mut open = Vec::new();
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '(' | '[' | '{' => open.push(c),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop() != Some(want) {
                    return false;
                }
            }
            _ => {}
        }
    }
    open.is_empty() && !quoted
}

/// The PromQL of the dashboard: every `expr`, and the variable queries.
fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    _ => queries(child, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_and_the_alerts_query_only_exported_metrics() {
    let (samples, _) = exported();
    let mut wrong = Vec::new();
    for (path, text) in [DASHBOARD, ALERTS] {
        assert!(!referenced(text).is_empty(), "{path} names no metric");
        let missing = unknown(text, &samples);
        if !missing.is_empty() {
            wrong.push(format!("{path}: {missing:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "metrics the operator does not export: {wrong:?}\nexported: {samples:?}"
    );
}

#[test]
fn the_docs_name_only_exported_metrics_and_families() {
    let (samples, families) = exported();
    let known = samples.union(&families).cloned().collect();
    let missing = unknown(DOCS.1, &known);
    assert!(missing.is_empty(), "{} names {missing:?}", DOCS.0);
}

#[test]
fn the_dashboard_is_grafana_json_with_well_formed_queries() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD.1).expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"].as_array().cloned();
    assert!(
        variables
            .into_iter()
            .flatten()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let mut found = Vec::new();
    queries(&dashboard, &mut found);
    assert!(found.len() >= 10, "{found:?}");
    for query in &found {
        assert!(balanced(query), "unbalanced brackets or quotes: {query}");
    }
}

#[test]
fn the_check_finds_wrong_names() {
    let (samples, _) = exported();
    let query = r#"sum(rate(imageshare_reconcile_passes[5m])) + imageshare_imageshares_total + imageshare_members"#;
    assert_eq!(
        unknown(query, &samples),
        [
            "imageshare_imageshares_total",
            "imageshare_reconcile_passes"
        ]
    );
    // Part of a longer identifier, or a label value: not a metric name.
    assert!(referenced(r#"x_imageshare_y{job="imageshare-system/imageshare"}"#).is_empty());
    assert!(samples.contains("imageshare_reconcile_duration_seconds_bucket"));
    assert!(samples.contains("imageshare_build_info"));
    assert!(!balanced("sum(rate(x[5m])"));
    assert!(balanced(r#"sum by (le) (rate(x{a=~"(b"}[5m]))"#));
}
