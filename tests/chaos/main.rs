//! Chaos scenarios on the real local stack (`make chaos`): the operator killed at random
//! moments while specs change, the control plane (kube-apiserver, etcd) killed and restarted
//! during a run, and a leader cut off from the apiserver while a standby waits. Each ends by
//! comparing Glance with the specs exactly, and prints one `chaos-row:` line (scenario, what
//! the operator did, figures) that `stack/chaos.sh` collects into docs/reliability.md.
//! Run one at a time: they kill and restart shared processes.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs, dead_code)]

#[path = "../e2e/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// A synthetic Keystone project ID (Glance accepts any ID; it simply stays pending).
fn synthetic() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// One ImageShare of a scenario: its image and the members it declares.
struct Share {
    name: String,
    image: String,
    exclusive: bool,
    managed: bool,
    synthetic: Vec<String>,
}

impl Share {
    /// The members Glance must have: the real consumers and the synthetic projects.
    fn desired(&self) -> BTreeSet<String> {
        ["consumer-a", "consumer-b", "consumer-c"]
            .iter()
            .map(|c| project_id(c))
            .chain(self.synthetic.iter().cloned())
            .collect()
    }

    fn spec(&self) -> Value {
        let mut members = vec![
            if self.managed {
                json!({"project": project_id("consumer-a"), "status": "accepted",
                    "consumer": creds("consumer-a-cloud")})
            } else {
                json!({"project": project_id("consumer-a")})
            },
            json!({"project": project_id("consumer-b")}),
            json!({"project": project_id("consumer-c")}),
        ];
        members.extend(self.synthetic.iter().map(|p| json!({"project": p})));
        json!({"image": {"id": self.image}, "producer": creds("producer-cloud"),
            "membership": if self.exclusive { "Exclusive" } else { "Additive" },
            "members": members})
    }
}

/// Creates `count` ImageShares of ten members each (every third Exclusive with a member
/// added by hand to remove, every second with consumer-a's acceptance managed).
async fn shares(t: &TestNs, producer: &Os, count: usize) -> Vec<Share> {
    let mut all = Vec::new();
    for i in 0..count {
        let image = producer
            .create_image(&unique(&format!("chaos{i}")), "shared", &[])
            .await;
        let share = Share {
            name: format!("share-{i:02}"),
            image,
            exclusive: i % 3 == 0,
            managed: i % 2 == 0,
            synthetic: (0..7).map(|_| synthetic()).collect(),
        };
        if share.exclusive {
            producer.add_member(&share.image, &synthetic()).await;
        }
        t.create(&share.name, share.spec()).await;
        all.push(share);
    }
    all
}

/// Compares Glance with the specs: (missing, extra, acceptances reset) over all shares.
/// consumer-b accepted every image by hand before the chaos; its status is not managed, so a
/// `pending` there means the member was removed and added again.
async fn compare(producer: &Os, all: &[Share]) -> (usize, usize, usize) {
    let (mut missing, mut extra, mut reset) = (0, 0, 0);
    let b = project_id("consumer-b");
    for share in all {
        let members: BTreeMap<String, String> = producer.members(&share.image).await;
        let have: BTreeSet<String> = members.keys().cloned().collect();
        let want = share.desired();
        missing += want.difference(&have).count();
        extra += have.difference(&want).count();
        reset += usize::from(members.get(&b).map(String::as_str) != Some("accepted"));
    }
    (missing, extra, reset)
}

/// consumer-b accepts every image (its status is left to it by the specs).
async fn accept_as_consumer_b(all: &[Share]) {
    let consumer = Os::login("consumer-b").await;
    let b = project_id("consumer-b");
    for share in all {
        consumer.set_status(&share.image, &b, "accepted").await;
    }
}

/// Deletes every ImageShare and returns (seconds until all are gone, members left).
async fn delete_all(t: &TestNs, producer: &Os, all: &[Share]) -> (f64, usize) {
    let start = Instant::now();
    for share in all {
        t.shares()
            .delete(&share.name, &Default::default())
            .await
            .unwrap();
    }
    let gone = wait_until(Duration::from_secs(120), || async {
        let list = t.shares().list(&Default::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "finalizers were not all released");
    let elapsed = start.elapsed().as_secs_f64();
    let mut left = 0;
    for share in all {
        left += producer.members(&share.image).await.len();
    }
    (elapsed, left)
}

#[tokio::test]
async fn crash_rounds() {
    const ROUNDS: usize = 20;
    let t = TestNs::new("chaos-crash").await;
    let producer = Os::login("producer").await;
    let mut all = shares(&t, &producer, 20).await;
    all_in_sync(&t, Duration::from_secs(120)).await;
    accept_as_consumer_b(&all).await;

    let start = Instant::now();
    for _ in 0..ROUNDS {
        // Specs keep changing: a synthetic member leaves one share, one joins another.
        let leaving = fastrand::usize(..all.len());
        all[leaving].synthetic.pop();
        let joining = fastrand::usize(..all.len());
        all[joining].synthetic.push(synthetic());
        for i in [leaving, joining] {
            t.patch_spec(&all[i].name, all[i].spec()).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1500))).await;
        crash_and_restart_operator(None);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
    }
    let converge = all_in_sync(&t, Duration::from_secs(180)).await;
    let (missing, extra, reset) = compare(&producer, &all).await;
    let (deleted_in, left) = delete_all(&t, &producer, &all).await;
    row(
        "operator killed (kill -9) at random moments, 20 rounds, 20 ImageShares x 10 members, specs changing",
        "every round restarts and resumes; Glance ends equal to the specs; deleting everything releases every finalizer",
        &format!(
            "{ROUNDS} rounds in {:.0}s, converged {:.1}s after the last; missing {missing}, extra {extra}, acceptances reset {reset}; deleted in {deleted_in:.1}s, {left} members left",
            start.elapsed().as_secs_f64(),
            converge.as_secs_f64()
        ),
    );
    assert_eq!((missing, extra, reset, left), (0, 0, 0, 0));
}

#[tokio::test]
async fn control_plane_restarts() {
    let t = TestNs::new("chaos-restart").await;
    let producer = Os::login("producer").await;
    let pid = operator_pid();
    let mut all = shares(&t, &producer, 10).await;
    let mut outages = Vec::new();
    for what in ["kube-apiserver", "etcd"] {
        // A restart while the operator works: 2 s down on top of the start-up.
        let seconds = stack("restart.sh", &[what, "2"], &[]);
        outages.push(format!("{what} down {}s", seconds.trim()));
        // Updates made right after the restart must not be lost.
        for share in all.iter_mut().take(5) {
            share.synthetic.pop();
            share.synthetic.push(synthetic());
            t.patch_spec(&share.name, share.spec()).await;
        }
    }
    let converge = all_in_sync(&t, Duration::from_secs(120)).await;
    let (missing, extra, _) = compare(&producer, &all).await;
    let same_process = operator_pid() == pid
        && Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap()
            .success();
    let (_, left) = delete_all(&t, &producer, &all).await;
    row(
        "kube-apiserver killed and restarted, then etcd, during a run (10 ImageShares, 5 edited after each restart)",
        "watches resume, the Lease is re-acquired in the same process (no crash loop), no update is lost",
        &format!(
            "{}; converged {:.1}s after; missing {missing}, extra {extra}; operator process kept: {same_process}",
            outages.join(", "),
            converge.as_secs_f64()
        ),
    );
    assert!(same_process, "the operator process exited");
    assert_eq!((missing, extra, left), (0, 0, 0));
}

/// A TCP proxy to the apiserver that can cut every connection, for one replica.
struct Cuttable {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Cuttable {
    async fn start(target: u16) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, state) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut state = state.clone();
                if *state.borrow() {
                    continue; // dropped: connection refused in effect
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Cuttable { port, cut }
    }
}

/// The time of the first JSON log line of `lease`/`name` whose message contains `text`.
fn logged_at(lease: &str, name: &str, text: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    let log = std::fs::read_to_string(state_dir().join(format!("logs/{lease}-{name}.log"))).ok()?;
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
        .and_then(|v| v["timestamp"].as_str()?.parse().ok())
}

#[tokio::test]
async fn a_leader_cut_off_from_the_apiserver_stops_before_the_standby_takes_over() {
    let t = TestNs::new("chaos-fence").await;
    let lease = format!("chaos-{}", t.name);
    let proxy = Cuttable::start(26443).await;
    let text = std::fs::read_to_string(state_dir().join("operator.kubeconfig")).unwrap();
    let via_proxy = state_dir().join(format!("{lease}.kubeconfig"));
    std::fs::write(
        &via_proxy,
        text.replace("127.0.0.1:26443", &format!("127.0.0.1:{}", proxy.port)),
    )
    .unwrap();

    let mut leader = replica("leader", &lease, &t.name, Some(&via_proxy), "json");
    let started = wait_until(Duration::from_secs(30), || async {
        logged_at(&lease, "leader", "holding the leader lease")
    })
    .await;
    assert!(started.is_some(), "the first replica leads");
    let mut standby = replica("standby", &lease, &t.name, None, "json");
    tokio::time::sleep(Duration::from_secs(3)).await;

    proxy.cut.send(true).unwrap();
    let cut_at = k8s_openapi::jiff::Timestamp::now();
    let took_over = wait_until(Duration::from_secs(40), || async {
        logged_at(&lease, "standby", "holding the leader lease")
    })
    .await
    .expect("the standby takes over");
    let stopped = logged_at(
        &lease,
        "leader",
        "no renewal of the leader lease within the deadline",
    )
    .expect("the cut-off leader stops");
    let margin = took_over.duration_since(stopped).as_secs_f64();
    row(
        "leader cut off from the apiserver (its connections dropped) while a standby waits",
        "the leader stops reconciling when it cannot renew for 10 s; the standby takes over only after the 15 s lease",
        &format!(
            "leader stopped {:.1}s after the cut; standby took over {:.1}s after the cut; {margin:.1}s with no leader in between",
            stopped.duration_since(cut_at).as_secs_f64(),
            took_over.duration_since(cut_at).as_secs_f64()
        ),
    );
    leader.kill().unwrap();
    standby.kill().unwrap();
    let _ = (leader.wait(), standby.wait());
    assert!(
        margin > 0.0,
        "the standby started {margin}s before the leader stopped"
    );
}
