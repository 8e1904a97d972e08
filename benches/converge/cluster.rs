//! The `cluster` part (`BENCH_ONLY=cluster`): one ImageShare whose members come from a
//! Keystone project selector, at the scale of a cluster-wide rollout, next to the
//! direct-call limit measured in the same run at the same concurrency (8):
//!
//! 1. one image shared with the 2,000 projects carrying one tag;
//! 2. 20 images (an image tag) shared with the 500 projects carrying another;
//! 3. a family of 10 builds shared with those 500 (`keepNewest: 10`), when an 11th is
//!    published: the new build gains 500 members and the oldest loses its 500.
//!
//! The limit is given the project and image IDs: it makes one member list per image it
//! touches and one write per difference, and no Keystone or image-list call. For each
//! scenario the operator's time, its Glance calls (counted by the forwarding proxy both go
//! through), its peak RSS over the scenario, the size of the ImageShare's status and the
//! Keystone requests it made (its own `imageshare_openstack_requests_total`) are printed as
//! a `bench-cluster:` row, the calls by kind as `bench-cluster-calls:`; the bars are drawn
//! in docs/bench/cluster.svg. Asserts only that Glance ends as each scenario wants.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use imageshare::openstack::Session;
use imageshare_testbed::fault_proxy::FaultProxy;
use imageshare_testbed::*;
use serde_json::{Value, json};

use super::{
    CONCURRENCY, RELEASE_BIN, TIMEOUT, calls, direct, limit_add, limit_remove, list_all, retry,
    scrape, total, usage,
};

/// Projects the first scenario shares with (all carrying one tag).
const ALL: usize = 2_000;
/// Of those, the projects the other two scenarios share with (carrying a second tag too).
const PART: usize = 500;
/// Images of the second scenario.
const IMAGES: usize = 20;
/// Builds of the rotated family (`keepNewest`), before the new one.
const BUILDS: usize = 10;
/// Keystone requests at a time while creating and deleting the projects.
const KEYSTONE_CONCURRENCY: usize = 16;

/// Creates `count` projects `PREFIX-NNNN` in the Default domain, each with the tags
/// `tags(i)`, 16 at a time; returns their IDs in that order.
async fn create_projects(
    keystone: &KeystoneAdmin,
    prefix: &str,
    count: usize,
    tags: impl Fn(usize) -> Vec<String>,
) -> Vec<String> {
    let mut made: Vec<(usize, String)> = futures::stream::iter(0..count)
        .map(|i| {
            let (name, tags) = (format!("{prefix}-{i:04}"), tags(i));
            async move {
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                (i, keystone.create_project("default", &name, &tags).await)
            }
        })
        .buffer_unordered(KEYSTONE_CONCURRENCY)
        .collect()
        .await;
    made.sort();
    made.into_iter().map(|(_, id)| id).collect()
}

/// How many enabled projects of the Default domain carry `tag`, in Keystone's answer to a
/// list without `limit` (as the operator asks).
async fn tagged(keystone: &KeystoneAdmin, tag: &str) -> usize {
    let answer = keystone.list("default", Some(tag)).await;
    answer["projects"].as_array().map_or(0, Vec::len)
}

/// Deletes projects, 16 at a time.
async fn delete_projects(keystone: &KeystoneAdmin, ids: &[String]) {
    futures::stream::iter(ids)
        .for_each_concurrent(KEYSTONE_CONCURRENCY, |id| keystone.delete_project(id))
        .await;
}

/// Keystone requests of the running operator by operation, from its /metrics.
async fn keystone_requests() -> BTreeMap<String, u64> {
    scrape(r#"imageshare_openstack_requests_total{service="identity","#)
        .await
        .expect("the operator answers /metrics")
}

/// Resets the operator's resident memory high-water mark to its current RSS (Linux
/// `clear_refs` 5), so that VmHWM is then the peak of what follows.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the operator's VmHWM");
}

/// The 1-minute load average of the machine.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// What the operator did while a measured piece of work ran.
struct OperatorRun {
    elapsed: Duration,
    glance: BTreeMap<String, usize>,
    keystone: BTreeMap<String, u64>,
    peak_kib: u64,
}

/// Runs `work` (a change and the wait for the operator to converge on it) and records the
/// operator's time, Glance calls (seen by `proxy`), Keystone requests and peak RSS.
async fn operator_run(proxy: &FaultProxy, work: impl Future<Output = ()>) -> OperatorRun {
    let pid = operator_pid();
    reset_peak(pid);
    let before = keystone_requests().await;
    let from = proxy.seen().len();
    let start = Instant::now();
    work.await;
    let elapsed = start.elapsed();
    let glance = calls(proxy, from);
    let mut keystone = keystone_requests().await;
    for (operation, count) in &mut keystone {
        *count -= before.get(operation).copied().unwrap_or(0);
    }
    keystone.retain(|_, count| *count > 0);
    OperatorRun {
        elapsed,
        glance,
        keystone,
        peak_kib: usage(pid).0,
    }
}

/// One scenario's figures: the operator's run, the limit's time and calls, the status size
/// and the load average before and after.
struct Measured {
    scenario: &'static str,
    label: &'static str,
    ours: OperatorRun,
    limit: Duration,
    limit_calls: usize,
    status_bytes: usize,
    load: (f64, f64),
}

/// Prints the scenario's row and its calls by kind.
fn row(m: &Measured) {
    let (ours, limit) = (m.ours.elapsed.as_secs_f64(), m.limit.as_secs_f64());
    let ours_calls = total(&m.ours.glance);
    println!(
        "bench-cluster: | {} | {ours:.2} | {limit:.2} | {:.2} | {ours_calls} / {} ({:.2}) | {:.1} | {} | {} | {:.1} / {:.1} |",
        m.scenario,
        ours / limit.max(0.001),
        m.limit_calls,
        ours_calls as f64 / m.limit_calls.max(1) as f64,
        m.ours.peak_kib as f64 / 1024.0,
        m.status_bytes,
        m.ours.keystone.values().sum::<u64>(),
        m.load.0,
        m.load.1,
    );
    println!(
        "bench-cluster-calls: {}: Glance {:?}; Keystone {:?}",
        m.label, m.ours.glance, m.ours.keystone
    );
}

/// A namespace for one scenario: Secret `producer-cloud` reaching Glance through a fresh
/// proxy, Secret `reader-cloud` (the domain reader that lists projects), the direct client.
async fn setup(producer: &Os) -> (TestNs, FaultProxy, std::sync::Arc<Session>) {
    let t = TestNs::new("bench-cluster").await;
    let proxy = FaultProxy::start(producer.glance_url()).await;
    t.put_secret("producer-cloud", &clouds_yaml_via("producer", &proxy.url))
        .await;
    t.put_secret("reader-cloud", &clouds_yaml_for("project-reader", None))
        .await;
    let session = direct("producer", &proxy);
    (t, proxy, session)
}

/// The spec of a scenario: `image` shared with the projects of the Default domain tagged
/// `tag`. deletionPolicy Orphan: the scenario deletes its images itself afterwards, which
/// is quicker than the operator removing every member first.
fn spec(image: Value, tag: &str) -> Value {
    json!({"image": image, "producer": creds("producer-cloud"),
        "projectReader": creds("reader-cloud"),
        "projectSelector": {"domain": "Default", "tags": [tag]},
        "deletionPolicy": "Orphan"})
}

/// The serialized size of ImageShare `name`'s status, in bytes.
async fn status_bytes(t: &TestNs, name: &str) -> usize {
    let share = t.shares().get(name).await.expect("get imageshare");
    serde_json::to_vec(&share.status).expect("status").len()
}

/// Asserts that `image`'s members are exactly `projects`.
async fn assert_members(producer: &Os, image: &str, projects: &[String], what: &str) {
    let members: BTreeSet<String> = producer.members(image).await.into_keys().collect();
    let wanted: BTreeSet<String> = projects.iter().cloned().collect();
    assert!(
        members == wanted,
        "{what}: {} members, wanted {}",
        members.len(),
        wanted.len()
    );
}

/// Deletes the scenario's namespace, then its images.
async fn clean_up(producer: &Os, t: &TestNs, images: &[String]) {
    t.delete_namespace_and_wait_gone(TIMEOUT).await;
    for image in images {
        producer.delete_image(image).await;
    }
}

/// Scenario 1: one image, shared with the `all` projects tagged `tag`.
async fn one_image(producer: &Os, all: &[String], tag: &str) -> Measured {
    let (t, proxy, session) = setup(producer).await;
    let images = vec![
        producer
            .create_image(&unique("cluster-one"), "shared", &[])
            .await,
    ];
    let load_before = load();
    let from = proxy.seen().len();
    let limit = limit_add(&session, &images, all).await;
    let limit_calls = total(&calls(&proxy, from));
    limit_remove(&session, &images).await;

    let ours = operator_run(&proxy, async {
        t.create("s", spec(json!({"id": images[0]}), tag)).await;
        all_in_sync(&t, TIMEOUT).await;
    })
    .await;
    let load_after = load();
    assert_members(producer, &images[0], all, "one image").await;
    let status_bytes = status_bytes(&t, "s").await;
    clean_up(producer, &t, &images).await;
    Measured {
        scenario: "1 image, projectSelector of 2,000 tagged projects",
        label: "1 image x 2,000 projects",
        ours,
        limit,
        limit_calls,
        status_bytes,
        load: (load_before, load_after),
    }
}

/// Scenario 2: the images tagged with a fresh tag, shared with the `part` projects tagged
/// `tag`.
async fn many_images(producer: &Os, part: &[String], tag: &str) -> Measured {
    let (t, proxy, session) = setup(producer).await;
    let image_tag = unique("cluster-images");
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let name = unique(&format!("cluster-image{i:02}"));
        images.push(producer.create_image(&name, "shared", &[&image_tag]).await);
    }
    let load_before = load();
    let from = proxy.seen().len();
    let limit = limit_add(&session, &images, part).await;
    let limit_calls = total(&calls(&proxy, from));
    limit_remove(&session, &images).await;

    let ours = operator_run(&proxy, async {
        let selector = json!({"selector": {"tags": [image_tag]}});
        t.create("s", spec(selector, tag)).await;
        all_in_sync(&t, TIMEOUT).await;
    })
    .await;
    let load_after = load();
    for image in &images {
        assert_members(producer, image, part, "20 images").await;
    }
    let status_bytes = status_bytes(&t, "s").await;
    clean_up(producer, &t, &images).await;
    Measured {
        scenario: "20 images (image tag) x projectSelector of 500",
        label: "20 images x 500 projects",
        ours,
        limit,
        limit_calls,
        status_bytes,
        load: (load_before, load_after),
    }
}

/// The limit for a rotation: one member list of the new build and one of the oldest, then
/// `projects` added to the new one and every member of the oldest removed, 8 writes at a
/// time.
async fn limit_rotate(session: &Session, new: &str, old: &str, projects: &[String]) -> Duration {
    let start = Instant::now();
    let images = [new.to_string(), old.to_string()];
    let mut writes: Vec<(bool, String, String)> = Vec::new();
    for (image, members) in list_all(session, &images).await {
        if image == new {
            let present: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
            writes.extend(
                projects
                    .iter()
                    .filter(|p| !present.contains(p.as_str()))
                    .map(|p| (true, image.clone(), p.clone())),
            );
        } else {
            writes.extend(
                members
                    .into_iter()
                    .map(|m| (false, image.clone(), m.member_id)),
            );
        }
    }
    futures::stream::iter(writes)
        .for_each_concurrent(CONCURRENCY, |(add, image, project)| async move {
            if add {
                retry(|| session.create_member(&image, &project)).await;
            } else {
                retry(|| session.delete_member(&image, &project)).await;
            }
        })
        .await;
    start.elapsed()
}

/// Publishes build `number` of `family`: named so that names sort in creation order, after
/// a pause of more than a second, as Glance's created_at counts whole seconds.
async fn publish(producer: &Os, family: &str, number: usize) -> String {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    producer
        .create_image(&format!("{family}-b{number:02}"), "shared", &[family])
        .await
}

/// Waits until ImageShare `name` is InSync for its generation with a ledger that holds
/// `count` projects on `new` and none on `old`, looking every 50 ms: a poke does not change
/// the generation, and the ledger written before the adds already names the new build.
async fn rotated(t: &TestNs, name: &str, new: &str, old: &str, count: usize) {
    let start = Instant::now();
    loop {
        let share = t.shares().get(name).await.expect("get imageshare");
        let in_sync = share.ready_condition().is_some_and(|c| {
            c.reason == "InSync" && c.observed_generation == share.metadata.generation
        });
        let pairs = ledger_pairs(&share);
        if in_sync
            && pairs.iter().filter(|(image, _)| image == new).count() == count
            && !pairs.iter().any(|(image, _)| image == old)
        {
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "not rotated within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scenario 3: a family of 10 builds shared with the `part` projects tagged `tag`
/// (`keepNewest: 10`), then an 11th build published: from the publish to the new build
/// shared with all and the oldest with none. The limit runs on two images of its own (one
/// with the members, one without), as only those two change.
async fn rotation(producer: &Os, part: &[String], tag: &str) -> Measured {
    let (t, proxy, session) = setup(producer).await;
    let old = producer
        .create_image(&unique("cluster-old"), "shared", &[])
        .await;
    limit_add(&session, std::slice::from_ref(&old), part).await;
    let new = producer
        .create_image(&unique("cluster-new"), "shared", &[])
        .await;
    let load_before = load();
    let from = proxy.seen().len();
    let limit = limit_rotate(&session, &new, &old, part).await;
    let limit_calls = total(&calls(&proxy, from));
    for image in [old, new] {
        producer.delete_image(&image).await;
    }

    let family = unique("cluster-family");
    let mut builds = Vec::new();
    for number in 1..=BUILDS {
        builds.push(publish(producer, &family, number).await);
    }
    let selector = json!({"selector": {"tags": [family], "keepNewest": BUILDS}});
    t.create("s", spec(selector, tag)).await;
    all_in_sync(&t, TIMEOUT).await;
    for build in &builds {
        assert_members(producer, build, part, "the first builds").await;
    }

    // The measured window opens once the new build exists: the operator learns of it at
    // its next resync, brought forward by an annotation.
    let newest = publish(producer, &family, BUILDS + 1).await;
    let ours = operator_run(&proxy, async {
        t.poke("s").await;
        rotated(&t, "s", &newest, &builds[0], part.len()).await;
    })
    .await;
    let load_after = load();
    assert_members(producer, &newest, part, "the new build").await;
    assert_members(producer, &builds[0], &[], "the oldest build").await;
    let status_bytes = status_bytes(&t, "s").await;
    builds.push(newest);
    clean_up(producer, &t, &builds).await;
    Measured {
        scenario: "rotation: 11th build of 10 (keepNewest 10) x 500 projects",
        label: "rotation: 11th build x 500 projects",
        ours,
        limit,
        limit_calls,
        status_bytes,
        load: (load_before, load_after),
    }
}

/// Draws the operator's and the limit's time per scenario as pairs of bars, each labelled
/// with its seconds, the scenario named under its pair.
fn plot(results: &[Measured], path: &std::path::Path) {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let root = SVGBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let top = results
        .iter()
        .flat_map(|m| [m.ours.elapsed, m.limit])
        .map(|d| d.as_secs_f64())
        .fold(1.0, f64::max)
        * 1.15;
    // Three slots per scenario: the operator's bar, the limit's, a gap.
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "A cluster-wide selection: operator vs direct-call limit",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..(results.len() * 3) as f64 - 1.0, 0f64..top)
        .unwrap();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc("seconds")
        .draw()
        .unwrap();
    let centred = |size: u32, v: VPos| {
        TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, v))
    };
    type Pick = fn(&Measured) -> Duration;
    let series: [(&str, RGBColor, f64, Pick); 2] = [
        ("operator", RED, 0.5, |m| m.ours.elapsed),
        ("limit", RGBColor(255, 160, 160), 1.5, |m| m.limit),
    ];
    for (name, color, offset, pick) in series {
        let bars = results.iter().enumerate().map(|(i, m)| {
            let x = i as f64 * 3.0 + offset;
            (x, pick(m).as_secs_f64())
        });
        chart
            .draw_series(bars.clone().map(|(x, secs)| {
                Rectangle::new([(x - 0.45, 0.0), (x + 0.45, secs)], color.filled())
            }))
            .unwrap()
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
        chart
            .draw_series(bars.map(|(x, secs)| {
                Text::new(format!("{secs:.1}"), (x, secs), centred(13, VPos::Bottom))
            }))
            .unwrap();
    }
    for (i, m) in results.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 * 3.0 + 1.0, 0.0));
        root.draw(&Text::new(m.label, (x, y + 8), centred(14, VPos::Top)))
            .unwrap();
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}

/// The whole part: a fresh operator process (its peak RSS is then about this part), the
/// projects, the three scenarios, the plot, and the projects deleted again.
pub async fn cluster(producer: &Os) {
    crash_and_restart_operator(Some(RELEASE_BIN));
    let keystone = KeystoneAdmin::login().await;
    let (tag_all, tag_part) = (unique("cluster-all"), unique("cluster-part"));
    let prefix = unique("cluster");
    let projects = create_projects(&keystone, &prefix, ALL, |i| {
        let mut tags = vec![tag_all.clone()];
        if i < PART {
            tags.push(tag_part.clone());
        }
        tags
    })
    .await;
    // Keystone cuts a list asked without `limit` at its max_db_limit (1,000 by default)
    // without saying so; `make bench` raises it (stack/lib.sh, KEYSTONE_MAX_DB_LIMIT).
    let answered = tagged(&keystone, &tag_all).await;
    assert_eq!(
        answered, ALL,
        "Keystone lists {answered} of the {ALL} tagged projects: raise its max_db_limit"
    );
    let part = &projects[..PART];
    let one = one_image(producer, &projects, &tag_all).await;
    row(&one);
    let many = many_images(producer, part, &tag_part).await;
    row(&many);
    let rotated = rotation(producer, part, &tag_part).await;
    row(&rotated);
    let results = [one, many, rotated];
    plot(
        &results,
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench/cluster.svg"),
    );
    delete_projects(&keystone, &projects).await;
}
