//! Benchmark on the real local stack (`make bench` starts it and the operator): the operator
//! next to the limit, measured in the same run against the same Glance. The limit is a
//! direct client on the same HTTP stack (this crate's OpenStack client) that makes exactly
//! the minimum calls (one member list per image, one write per difference) at the same
//! concurrency as the operator (8 requests at a time per credential). Glance calls are
//! counted on the way in by a forwarding proxy both go through. Prints a Markdown table
//! (`bench-row:` lines, collected into BENCHMARKS.md); asserts only that both reached the
//! same Glance state. The `cluster` part ([`cluster`]) does the same for one ImageShare
//! selecting thousands of projects through Keystone. `BENCH_ONLY=PART` runs one part.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

#[path = "converge/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use imageshare::api::ImageShare;
use imageshare::openstack::{CloudConfig, Clouds, Session};
use imageshare_testbed::fault_proxy::FaultProxy;
use imageshare_testbed::*;
use serde_json::json;

/// Requests at a time per credential, as the operator's default --per-cloud-limit.
const CONCURRENCY: usize = 8;
/// The operator binary the benchmark runs.
const RELEASE_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/imageshare");
/// Longest wait for one measurement.
const TIMEOUT: Duration = Duration::from_secs(900);

/// Glance calls by kind seen by the proxy since `from`.
fn calls(proxy: &FaultProxy, from: usize) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for seen in proxy.seen().into_iter().skip(from) {
        let kind = match (seen.method.as_str(), seen.path.matches('/').count()) {
            ("GET", 3) => "get image",
            ("GET", 4) => "list members",
            ("GET", _) => "other get",
            ("POST", _) => "add",
            ("PUT", _) => "set status",
            ("DELETE", _) => "remove",
            _ => "other",
        };
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
    }
    kinds
}

fn total(kinds: &BTreeMap<String, usize>) -> usize {
    kinds.values().sum()
}

/// The direct client: a session of `identity` that reaches Glance through the proxy.
fn direct(identity: &str, proxy: &FaultProxy) -> Arc<Session> {
    let config =
        CloudConfig::from_clouds_yaml(&clouds_yaml_via(identity, &proxy.url), "openstack", None)
            .unwrap();
    Clouds::new(CONCURRENCY).session(&config)
}

/// One member list per image, 8 at a time.
async fn list_all<'a>(
    session: &Session,
    images: &'a [String],
) -> Vec<(&'a String, Vec<imageshare::openstack::Member>)> {
    futures::stream::iter(images)
        .map(|image| async move { (image, session.list_members(image).await.unwrap()) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// The limit for adding `projects` to `images`: one list per image, one add per missing.
async fn limit_add(session: &Session, images: &[String], projects: &[String]) -> Duration {
    let start = Instant::now();
    let lists = list_all(session, images).await;
    let writes: Vec<(String, String)> = lists
        .into_iter()
        .flat_map(|(image, members)| {
            projects
                .iter()
                .filter(move |p| !members.iter().any(|m| &m.member_id == *p))
                .map(move |p| (image.clone(), p.clone()))
        })
        .collect();
    futures::stream::iter(writes)
        .for_each_concurrent(CONCURRENCY, |(image, project)| async move {
            retry(|| session.create_member(&image, &project)).await;
        })
        .await;
    start.elapsed()
}

/// The limit for removing every member of `images`: one list per image, one delete each.
async fn limit_remove(session: &Session, images: &[String]) -> Duration {
    let start = Instant::now();
    let lists = list_all(session, images).await;
    let writes: Vec<(String, String)> = lists
        .into_iter()
        .flat_map(|(image, members)| {
            members
                .into_iter()
                .map(move |m| (image.clone(), m.member_id))
        })
        .collect();
    futures::stream::iter(writes)
        .for_each_concurrent(CONCURRENCY, |(image, project)| async move {
            retry(|| session.delete_member(&image, &project)).await;
        })
        .await;
    start.elapsed()
}

/// The limit for `consumer` accepting `images`: one status write each, as that consumer.
async fn limit_accept(consumer: &Session, images: &[String], project: &str) -> Duration {
    let start = Instant::now();
    futures::stream::iter(images)
        .for_each_concurrent(CONCURRENCY, |image| async move {
            retry(|| {
                consumer.update_member_status(
                    image,
                    project,
                    imageshare::openstack::MemberStatus::Accepted,
                )
            })
            .await;
        })
        .await;
    start.elapsed()
}

/// Retries a call on transient faults (the operator does too), a few times.
async fn retry<T, F, Fut>(call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, imageshare::openstack::Error>>,
{
    for attempt in 0..5 {
        match call().await {
            Ok(_) => return,
            Err(e) if e.is_transient() && attempt < 4 => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(imageshare::openstack::Error::Conflict { .. })
            | Err(imageshare::openstack::Error::NotFound { .. }) => return,
            Err(e) => panic!("direct client: {e}"),
        }
    }
}

/// Creates one ImageShare per image (`s0`, `s1`, ...), 16 requests at a time, as an apply
/// of a folder of manifests would.
async fn create_all(t: &TestNs, images: &[String], members: &[serde_json::Value]) {
    futures::stream::iter(images.iter().enumerate())
        .for_each_concurrent(16, |(i, image)| async move {
            t.create(&format!("s{i}"), spec(image, members)).await;
        })
        .await;
}

fn spec(image: &str, members: &[serde_json::Value]) -> serde_json::Value {
    json!({"image": {"id": image}, "producer": creds("producer-cloud"), "members": members})
}

/// One row: operation, N x M, operator seconds, limit seconds, ratio, calls.
fn row(
    op: &str,
    n: usize,
    m: usize,
    ours: Duration,
    limit: Duration,
    ours_calls: usize,
    min_calls: usize,
) {
    println!(
        "bench-row: | {op} | {n} x {m} | {:.2} | {:.2} | {:.2} | {ours_calls} | {min_calls} | {:.2} |",
        ours.as_secs_f64(),
        limit.as_secs_f64(),
        ours.as_secs_f64() / limit.as_secs_f64().max(0.001),
        ours_calls as f64 / min_calls.max(1) as f64
    );
}

/// One measured combination of the matrix: (images, members, operator add, limit add,
/// operator remove, limit remove).
type Measured = (usize, usize, Duration, Duration, Duration, Duration);

/// Draws the matrix as an SVG: seconds (log scale) per images x members, operator and limit,
/// for adding and removing.
fn plot(results: &[Measured], path: &std::path::Path) {
    use plotters::prelude::*;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let root = SVGBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let secs = |d: &Duration| d.as_secs_f64().max(0.01);
    let top = results
        .iter()
        .flat_map(|r| [r.2, r.3, r.4, r.5])
        .map(|d| secs(&d))
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Converge time: operator vs direct-call limit",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0..results.len(), (0.01f64..top).log_scale())
        .unwrap();
    let labels: Vec<String> = results.iter().map(|r| format!("{}x{}", r.0, r.1)).collect();
    chart
        .configure_mesh()
        .x_labels(results.len())
        .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
        .x_desc("images x members")
        .y_desc("seconds")
        .draw()
        .unwrap();
    type Pick = fn(&Measured) -> Duration;
    let series: [(&str, RGBColor, Pick); 4] = [
        ("add, operator", RED, |r| r.2),
        ("add, limit", RGBColor(255, 160, 160), |r| r.3),
        ("remove, operator", BLUE, |r| r.4),
        ("remove, limit", RGBColor(150, 150, 255), |r| r.5),
    ];
    for (name, color, pick) in series {
        chart
            .draw_series(LineSeries::new(
                results.iter().enumerate().map(|(i, r)| (i, secs(&pick(r)))),
                color.stroke_width(2),
            ))
            .unwrap()
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}

async fn matrix(producer: &Os) {
    let mut results: Vec<Measured> = Vec::new();
    for (n, m) in [
        (1, 1),
        (1, 10),
        (1, 100),
        (10, 1),
        (10, 10),
        (10, 100),
        (100, 1),
        (100, 10),
        (100, 100),
    ] {
        let t = TestNs::new("bench").await;
        let proxy = FaultProxy::start(producer.glance_url()).await;
        t.put_secret("producer-cloud", &clouds_yaml_via("producer", &proxy.url))
            .await;
        let session = direct("producer", &proxy);
        let mut images = Vec::new();
        for i in 0..n {
            images.push(
                producer
                    .create_image(&unique(&format!("bench{i}")), "shared", &[])
                    .await,
            );
        }
        let projects: Vec<String> = (0..m)
            .map(|_| format!("{:032x}", fastrand::u128(..)))
            .collect();
        let members: Vec<_> = projects.iter().map(|p| json!({"project": p})).collect();

        // The limit first (add, then remove), then the operator on the same images.
        let from = proxy.seen().len();
        let limit_in = limit_add(&session, &images, &projects).await;
        let limit_in_calls = total(&calls(&proxy, from));
        let from = proxy.seen().len();
        let limit_out = limit_remove(&session, &images).await;
        let limit_out_calls = total(&calls(&proxy, from));

        let from = proxy.seen().len();
        let start = Instant::now();
        create_all(&t, &images, &members).await;
        all_in_sync(&t, TIMEOUT).await;
        let ours_in = start.elapsed();
        let ours_in_calls = calls(&proxy, from);
        for image in &images {
            assert_eq!(
                producer.members(image).await.len(),
                m,
                "operator shared all"
            );
        }
        let from = proxy.seen().len();
        let start = Instant::now();
        futures::stream::iter(0..n)
            .for_each_concurrent(16, |i| {
                let t = &t;
                async move { t.patch_spec(&format!("s{i}"), json!({"members": []})).await }
            })
            .await;
        all_in_sync(&t, TIMEOUT).await;
        let ours_out = start.elapsed();
        let ours_out_calls = calls(&proxy, from);
        for image in &images {
            assert!(
                producer.members(image).await.is_empty(),
                "operator removed all"
            );
        }
        results.push((n, m, ours_in, limit_in, ours_out, limit_out));
        row(
            "add",
            n,
            m,
            ours_in,
            limit_in,
            total(&ours_in_calls),
            limit_in_calls,
        );
        row(
            "remove",
            n,
            m,
            ours_out,
            limit_out,
            total(&ours_out_calls),
            limit_out_calls,
        );
        println!("bench-calls: add {n} x {m}: {ours_in_calls:?}; remove: {ours_out_calls:?}");
        t.delete_namespace_and_wait_gone(TIMEOUT).await;
    }
    plot(
        &results,
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench/converge.svg"),
    );
}

/// Sharing with the three real consumers and keeping them accepted with their own
/// credentials, on N images.
async fn statuses(producer: &Os) {
    let consumers = ["consumer-a", "consumer-b", "consumer-c"];
    for n in [1, 10, 100] {
        let t = TestNs::new("bench-status").await;
        let proxy = FaultProxy::start(producer.glance_url()).await;
        for identity in ["producer"].iter().chain(&consumers) {
            t.put_secret(
                &format!("{identity}-cloud"),
                &clouds_yaml_via(identity, &proxy.url),
            )
            .await;
        }
        let mut images = Vec::new();
        for i in 0..n {
            images.push(
                producer
                    .create_image(&unique(&format!("status{i}")), "shared", &[])
                    .await,
            );
        }
        let projects: Vec<String> = consumers.iter().map(|c| project_id(c)).collect();
        // The limit: add the three, then each consumer accepts every image.
        let session = direct("producer", &proxy);
        let from = proxy.seen().len();
        let mut limit = limit_add(&session, &images, &projects).await;
        for (consumer, project) in consumers.iter().zip(&projects) {
            limit += limit_accept(&direct(consumer, &proxy), &images, project).await;
        }
        let min_calls = total(&calls(&proxy, from));
        limit_remove(&session, &images).await;

        let members: Vec<_> = consumers
            .iter()
            .zip(&projects)
            .map(|(c, p)| json!({"project": p, "status": "accepted", "consumer": creds(&format!("{c}-cloud"))}))
            .collect();
        let from = proxy.seen().len();
        let start = Instant::now();
        create_all(&t, &images, &members).await;
        all_in_sync(&t, TIMEOUT).await;
        let ours = start.elapsed();
        let ours_calls = calls(&proxy, from);
        row(
            "add + accept as consumer",
            n,
            3,
            ours,
            limit,
            total(&ours_calls),
            min_calls,
        );
        println!("bench-calls: add + accept {n} x 3: {ours_calls:?}");
        t.delete_namespace_and_wait_gone(TIMEOUT).await;
    }
}

/// One member added to an ImageShare that has 100 (and the one added before removed): from
/// the apply to the Glance add, and to Ready, over 50 tries.
async fn incremental(producer: &Os) {
    let t = TestNs::new("bench-incr").await;
    let proxy = FaultProxy::start(producer.glance_url()).await;
    t.put_secret("producer-cloud", &clouds_yaml_via("producer", &proxy.url))
        .await;
    let image = producer.create_image(&unique("incr"), "shared", &[]).await;
    let mut members: Vec<_> = (0..100)
        .map(|_| json!({"project": format!("{:032x}", fastrand::u128(..))}))
        .collect();
    t.create("s", spec(&image, &members)).await;
    all_in_sync(&t, TIMEOUT).await;
    let (mut to_call, mut to_ready) = (Vec::new(), Vec::new());
    // Glance's default member quota is 128 per image: each try replaces the one extra
    // member of the try before (one add, one removal), so the object stays at 101.
    members.push(json!({"project": format!("{:032x}", fastrand::u128(..))}));
    for _ in 0..50 {
        let project = format!("{:032x}", fastrand::u128(..));
        members.pop();
        members.push(json!({"project": project}));
        let start = Instant::now();
        t.patch_spec("s", json!({"members": members})).await;
        // Polled every few milliseconds: the test helpers' half-second polls would be most
        // of what is measured here.
        let called = loop {
            let seen = proxy.seen();
            if let Some(s) = seen.iter().find(|s| s.method == "POST" && s.at > start) {
                break s.at;
            }
            assert!(start.elapsed() < TIMEOUT, "no add within {TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        to_call.push(called - start);
        loop {
            let share = t.shares().get("s").await.expect("get imageshare");
            let ready = share.ready_condition().is_some_and(|c| {
                c.reason == "InSync" && c.observed_generation == share.metadata.generation
            });
            if ready {
                break;
            }
            assert!(start.elapsed() < TIMEOUT, "not InSync within {TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        to_ready.push(start.elapsed());
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "bench-incr: | one member added to 100 (50 tries) | {:.0} | {:.0} | {:.0} | {:.0} |",
        pct(&mut to_call, 0.5),
        pct(&mut to_call, 0.99),
        pct(&mut to_ready, 0.5),
        pct(&mut to_ready, 0.99)
    );
    t.delete_namespace_and_wait_gone(TIMEOUT).await;
}

/// Steady state: ImageShares (one image each, three consumers accepting it with their own
/// credentials) left alone for BENCH_STEADY_SECONDS (600) at a one-minute resync. Counted
/// by proxies in front of Glance and Keystone, and from the objects themselves: writes to
/// Glance, member lists per image per resync, Keystone authentications, and changes of the
/// ImageShares (status writes) or new Events.
async fn steady(producer: &Os) {
    const IMAGES: usize = 10;
    const RESYNC: u64 = 60;
    let seconds: u64 = std::env::var("BENCH_STEADY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let t = TestNs::new("bench-steady").await;
    let glance = FaultProxy::start(producer.glance_url()).await;
    let auth_url = clouds()["clouds"]["producer"]["auth"]["auth_url"]
        .as_str()
        .expect("auth_url")
        .to_string();
    let keystone = FaultProxy::start(auth_url.trim_end_matches("/v3")).await;
    let consumers = ["consumer-a", "consumer-b", "consumer-c"];
    for identity in ["producer"].iter().chain(&consumers) {
        let mut entry = clouds()["clouds"][*identity].clone();
        entry["image_endpoint_override"] = json!(glance.url);
        entry["auth"]["auth_url"] = json!(format!("{}/v3", keystone.url));
        t.put_secret(&format!("{identity}-cloud"), &as_clouds_yaml(entry))
            .await;
    }
    let members: Vec<_> = consumers
        .iter()
        .map(|c| json!({"project": project_id(c), "status": "accepted", "consumer": creds(&format!("{c}-cloud"))}))
        .collect();
    for i in 0..IMAGES {
        let image = producer
            .create_image(&unique(&format!("steady{i}")), "shared", &[])
            .await;
        let mut spec = spec(&image, &members);
        spec["resyncPeriod"] = json!(format!("{RESYNC}s"));
        t.create(&format!("s{i:03}"), spec).await;
    }
    all_in_sync(&t, TIMEOUT).await;
    let tokens = |k: &FaultProxy| {
        k.seen()
            .iter()
            .filter(|s| s.method == "POST" && s.path.starts_with("/v3/auth/tokens"))
            .count()
    };
    let setup_auths = tokens(&keystone);
    let versions = |list: Vec<ImageShare>| -> BTreeMap<String, String> {
        list.into_iter()
            .map(|s| {
                (
                    s.metadata.name.unwrap(),
                    s.metadata.resource_version.unwrap(),
                )
            })
            .collect()
    };
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(admin().await, &t.name);
    let events_before = events.list(&Default::default()).await.unwrap().items.len();
    let before = versions(t.shares().list(&Default::default()).await.unwrap().items);
    let (from_glance, from_keystone) = (glance.seen().len(), keystone.seen().len());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = versions(t.shares().list(&Default::default()).await.unwrap().items);
    let events_after = events.list(&Default::default()).await.unwrap().items.len();
    let kinds = calls(&glance, from_glance);
    let writes: usize = ["add", "set status", "remove"]
        .iter()
        .filter_map(|k| kinds.get(*k))
        .sum();
    let lists = kinds.get("list members").copied().unwrap_or(0);
    let resyncs = seconds as f64 / RESYNC as f64;
    let auths = keystone.seen().len() - from_keystone;
    let changed = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .count();
    println!(
        "bench-steady: | {IMAGES} ImageShares x 3 consumers, {:.0} min at a {RESYNC} s resync | {writes} | {changed} | {} | {:.2} | {setup_auths} for 4 credentials | {auths} |",
        seconds as f64 / 60.0,
        events_after - events_before,
        lists as f64 / (IMAGES as f64 * resyncs),
    );
    println!("bench-calls: steady state, {seconds} s: {kinds:?}");
    t.delete_namespace_and_wait_gone(TIMEOUT).await;
}

/// Resident memory high-water mark (KiB) and CPU seconds of a process, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    (hwm, ticks / 100.0)
}

/// The samples of the running operator's /metrics whose line starts with `prefix`, by their
/// `operation` label (all under "" when they have none); None while it is not answering.
async fn scrape(prefix: &str) -> Option<BTreeMap<String, u64>> {
    let port = std::env::var("OPERATOR_PORT").unwrap_or_else(|_| "28080".into());
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?;
    let text = answer.text().await.ok()?;
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(prefix)) {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let operation = line
            .split_once("operation=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("", |(operation, _)| operation);
        *samples.entry(operation.to_string()).or_insert(0) += value as u64;
    }
    Some(samples)
}

/// Passes the running operator has made (its /metrics), 0 while it is not answering.
async fn passes() -> u64 {
    scrape("imageshare_reconcile_passes_total{")
        .await
        .map_or(0, |samples| samples.values().sum())
}

/// Waits until `count` ImageShares of `t` have a status for their generation.
async fn all_reported(t: &TestNs, count: usize) -> Duration {
    let start = Instant::now();
    let done = wait_until(TIMEOUT, || async {
        let list = t.shares().list(&Default::default()).await.ok()?;
        let reported = list
            .items
            .iter()
            .filter(|s: &&ImageShare| {
                s.status
                    .as_ref()
                    .is_some_and(|st| st.observed_generation == s.metadata.generation)
            })
            .count();
        (reported >= count).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "{count} objects not reported within {TIMEOUT:?}"
    );
    start.elapsed()
}

/// 1,000 and then 10,000 ImageShares whose Secret is missing (no OpenStack call at all):
/// time to report them all, the operator's peak RSS and CPU; then a restart with 10,000:
/// time to the first pass and until the cache holds them all (/readyz).
async fn scale() {
    // A fresh operator process, so its peak RSS is about these objects only.
    crash_and_restart_operator(Some(RELEASE_BIN));
    let t = TestNs::new("bench-scale").await;
    let pid = operator_pid();
    let (_, cpu_before) = usage(pid);
    let mut made = 0;
    for target in [1_000usize, 10_000] {
        let start = Instant::now();
        futures::stream::iter(made..target)
            .for_each_concurrent(32, |i| {
                let t = &t;
                async move {
                    let spec = json!({"image": {"id": "1c779bec-127f-47eb-8356-140d685991dd"},
                        "producer": creds("missing-cloud"),
                        "members": [{"project": format!("{i:032x}")}]});
                    t.create(&format!("s{i:05}"), spec).await;
                }
            })
            .await;
        made = target;
        all_reported(&t, target).await;
        let (hwm, cpu) = usage(pid);
        println!(
            "bench-scale: | {target} ImageShares (Secret missing) | {:.0} | {:.1} | {:.1} |",
            start.elapsed().as_secs_f64(),
            hwm as f64 / 1024.0,
            cpu - cpu_before
        );
    }
    // Restart with 10,000 in the cluster: from the kill to the first pass (the passes
    // counter of /metrics), and to /readyz (the cache holds every object).
    let start = Instant::now();
    let restart = tokio::task::spawn_blocking(|| crash_and_restart_operator(Some(RELEASE_BIN)));
    let first_pass = loop {
        if passes().await > 0 {
            break start.elapsed();
        }
        assert!(start.elapsed() < TIMEOUT, "no pass after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    restart.await.unwrap();
    let ready = start.elapsed();
    println!(
        "bench-startup: | restart with 10,000 ImageShares | {:.1} | {:.1} |",
        first_pass.as_secs_f64(),
        ready.as_secs_f64()
    );
    t.delete_namespace_and_wait_gone(TIMEOUT).await;
}

#[tokio::main]
async fn main() {
    imageshare::openstack::install_crypto_provider();
    let producer = Os::login("producer").await;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "incremental" {
        incremental(&producer).await;
    }
    if only.is_empty() || only == "statuses" {
        statuses(&producer).await;
    }
    if only.is_empty() || only == "matrix" {
        matrix(&producer).await;
    }
    if only.is_empty() || only == "cluster" {
        cluster::cluster(&producer).await;
    }
    if only.is_empty() || only == "scale" {
        scale().await;
    }
    if only.is_empty() || only == "steady" {
        steady(&producer).await;
    }
}
