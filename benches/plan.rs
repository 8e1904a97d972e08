//! Benchmark of the pure decision path (plan + status build) for large ImageShares. Prints
//! numbers; asserts nothing about time. Run: `cargo bench --bench plan`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use imageshare::api::{ImageRef, ImageShareSpec, MemberSpec, MemberStatus};
use imageshare::controller::ledger::Ledger;
use imageshare::controller::model::{ObservedImage, Outcome, Visibility};
use imageshare::controller::observe::Observed;
use imageshare::controller::overlap::Claims;
use imageshare::controller::plan::plan;
use imageshare::controller::report::Report;
use imageshare::controller::status::build;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn spec(members: usize) -> ImageShareSpec {
    serde_json::from_value::<ImageShareSpec>(serde_json::json!({
        "image": {"selector": {"tags": ["golden"]}},
        "producer": {"credentialsRef": {"secretName": "p", "cloudName": "openstack"}},
    }))
    .map(|mut s| {
        s.image = ImageRef {
            selector: s.image.selector,
            ..Default::default()
        };
        s.members = (0..members)
            .map(|i| MemberSpec {
                project: format!("{i:032x}"),
                domain: None,
                status: Some(MemberStatus::Accepted),
                consumer: None,
            })
            .collect();
        s
    })
    .unwrap()
}

fn images(count: usize, members: usize, present: usize) -> Vec<ObservedImage> {
    (0..count)
        .map(|i| ObservedImage {
            id: format!("image-{i}").into(),
            name: Some(format!("golden-{i}")),
            visibility: Some(Visibility::Shared),
            members: (0..present)
                .chain(members..members + 10)
                .map(|m| (format!("{m:032x}").into(), MemberStatus::Pending))
                .collect::<BTreeMap<_, _>>(),
            ..ObservedImage::default()
        })
        .collect()
}

fn main() {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    println!(
        "{:>8} {:>8} {:>12} {:>14} {:>14}",
        "images", "members", "steps", "plan_us", "status_us"
    );
    for (image_count, members) in [(1, 100), (1, 1000), (10, 100), (50, 200)] {
        let spec = spec(members);
        let observed = images(image_count, members, members / 2);
        let claims = Claims::default();
        // The ledger of the previous pass: the members present, plus ten per image that
        // have since left the spec (removed in this pass).
        let ledger: Ledger = observed
            .iter()
            .flat_map(|i| i.members.keys().map(|p| i.key(p.clone())))
            .collect();
        let history = Default::default();
        let rounds = 20;
        let start = Instant::now();
        let mut steps = 0;
        for _ in 0..rounds {
            steps = black_box(plan(&spec, &observed, &ledger, &claims, &history))
                .steps
                .len();
        }
        let plan_us = start.elapsed().as_micros() / rounds;
        // Status after a pass that applied every step (the heaviest report).
        let planned = plan(&spec, &observed, &ledger, &claims, &history);
        let outcomes: Vec<_> = planned
            .steps
            .iter()
            .cloned()
            .map(|s| (s, Outcome::Done))
            .collect();
        let report = Report {
            ledger: planned.ledger_after(&outcomes),
            observed: Observed {
                images: observed.clone(),
                ..Observed::default()
            },
            outcomes,
            ..Report::default()
        };
        let start = Instant::now();
        for _ in 0..rounds {
            black_box(build(&spec, Some(1), Ok(&report), None, &now));
        }
        let status_us = start.elapsed().as_micros() / rounds;
        println!("{image_count:>8} {members:>8} {steps:>12} {plan_us:>14} {status_us:>14}");
    }
}
