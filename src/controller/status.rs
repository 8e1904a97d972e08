//! The status builder: a pure function from what one pass observed and did to the
//! `ImageShare` status (per-member state, Ready condition). No I/O; the one writer lives in
//! the controller and only writes when [`needs_write`] says so.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Failure;
use super::plan::{Claims, ObservedImage, Pair, Step};
use crate::api::{
    ImageShareSpec, ImageShareStatus, ImageStatus, MemberPhase, MemberState, MemberStatus, Reason,
};

/// What happened to one step of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Glance made the change.
    Done,
    /// Glance already was as planned (409 on add, 404 on remove): success, no change.
    Unchanged,
    /// The producer may not set this status and no consumer credentials were given.
    AwaitingConsumer,
    /// The call failed.
    Failed(Failure),
}

/// Everything one pass learned, the input of [`build`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Images observed in this pass (empty when `failure` stopped the pass first).
    pub images: Vec<ObservedImage>,
    /// Steps applied in this pass with their outcomes (empty when suspended).
    pub outcomes: Vec<(Step, Outcome)>,
    /// What other ImageShares declare.
    pub claims: Claims,
    /// Per-project failures that are not tied to one step (e.g. missing consumer Secret).
    pub member_failures: BTreeMap<String, Failure>,
    /// A failure that stopped the whole pass (credentials, image resolution, transient).
    pub failure: Option<Failure>,
    /// Exclusive removals waited for another ImageShare to resolve its images.
    pub deferred: bool,
}

impl Report {
    /// A report for a pass stopped by `failure` before observing anything.
    pub fn failed(failure: Failure) -> Self {
        Report {
            failure: Some(failure),
            ..Report::default()
        }
    }

    /// Whether any step changed something in Glance.
    pub fn changed_anything(&self) -> bool {
        self.outcomes.iter().any(|(_, o)| *o == Outcome::Done)
    }
}

/// Reasons a member can fail with, most urgent first; the Ready reason is the first present.
/// A failed member whose reason is not listed counts as the last one.
const MEMBER_FAILURE_ORDER: [Reason; 7] = [
    Reason::CredentialsMissing,
    Reason::CredentialsInvalid,
    Reason::Forbidden,
    Reason::MemberQuotaExceeded,
    Reason::ImageNotShared,
    Reason::ImageNotFound,
    Reason::TransientError,
];

/// One member row plus the reason behind it (reasons are not part of the row).
struct Row {
    state: MemberState,
    reason: Option<Reason>,
}

/// Builds the status for `spec` at `generation` from a pass `report`. `previous` provides the
/// condition's lastTransitionTime, lastSyncTime, and the member rows kept when the pass failed
/// before observing; `now` stamps a Ready transition.
pub fn build(
    spec: &ImageShareSpec,
    generation: Option<i64>,
    report: &Report,
    previous: Option<&ImageShareStatus>,
    now: &Time,
) -> ImageShareStatus {
    let (images, members, reason, message) = match (&report.failure, previous) {
        // Keep what was last observed, for members that are still declared.
        (Some(failure), prev) => (
            prev.map(|p| p.images.clone()).unwrap_or_default(),
            prev.iter()
                .flat_map(|p| &p.members)
                .filter(|row| spec.members.iter().any(|m| m.project == row.project))
                .cloned()
                .collect(),
            failure.reason,
            Some(failure.message.clone()),
        ),
        (None, _) => {
            let rows = member_rows(spec, report);
            let reason = summary_reason(spec, report, &rows);
            let images = report
                .images
                .iter()
                .map(|i| ImageStatus {
                    id: i.id.clone(),
                    name: i.name.clone(),
                    visibility: i.visibility.clone(),
                })
                .collect();
            let waiting =
                (reason == Reason::Progressing && report.deferred && !report.changed_anything())
                    .then(|| {
                        "undeclared members stay until the other ImageShares on these images have \
                         resolved theirs; retrying shortly"
                            .to_string()
                    });
            let members: Vec<MemberState> = rows.into_iter().map(|r| r.state).collect();
            (images, members, reason, waiting)
        }
    };
    let in_sync = members.iter().filter(|m| satisfied(m)).count();
    let message = message.unwrap_or_else(|| ready_message(reason, in_sync, &members, images.len()));
    let status = if reason.is_ready() { "True" } else { "False" };
    let condition = |type_: &str, status: &str, message: String| {
        let last_transition_time = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.as_str().into(),
            message,
            observed_generation: generation,
            last_transition_time,
        }
    };
    // kstatus conventions: Ready summarises; Reconciling (work under way) and Stalled (needs a
    // person) appear only while true, so GitOps tools tell progress from failure.
    let mut conditions = vec![condition("Ready", status, message.clone())];
    match reason {
        Reason::Progressing | Reason::TransientError => {
            conditions.push(condition("Reconciling", "True", message));
        }
        r if r.needs_attention() && r != Reason::AwaitingConsumer => {
            conditions.push(condition("Stalled", "True", message));
        }
        _ => {}
    }
    ImageShareStatus {
        observed_generation: generation,
        image: Some(image_display(spec, &images)),
        members_in_sync: Some(format!("{in_sync}/{}", members.len())),
        images,
        members,
        conditions,
        last_sync_time: previous.and_then(|p| p.last_sync_time.clone()),
    }
}

/// Whether the status must be written: anything but lastSyncTime differs.
pub fn needs_write(previous: Option<&ImageShareStatus>, new: &ImageShareStatus) -> bool {
    match previous {
        None => true,
        Some(prev) => {
            let mut prev = prev.clone();
            prev.last_sync_time = new.last_sync_time.clone();
            prev != *new
        }
    }
}

/// A member row counts as in sync when the spec asks nothing more of it.
fn satisfied(m: &MemberState) -> bool {
    m.state == MemberPhase::InSync
        || (m.state == MemberPhase::AwaitingConsumer && m.desired_status.is_none())
}

fn member_rows(spec: &ImageShareSpec, report: &Report) -> Vec<Row> {
    let mut outcomes: BTreeMap<Pair, Vec<&(Step, Outcome)>> = BTreeMap::new();
    for entry in &report.outcomes {
        outcomes.entry(entry.0.pair()).or_default().push(entry);
    }
    let mut rows = Vec::new();
    for image in &report.images {
        for member in &spec.members {
            let pair = (image.id.clone(), member.project.clone());
            let mut current = image.members.get(&member.project).copied();
            let mut changed = false;
            let mut awaiting = false;
            let mut failed: Option<&Failure> = report.member_failures.get(&member.project);
            for (step, outcome) in outcomes.get(&pair).into_iter().flatten().copied() {
                match (step, outcome) {
                    (Step::Add { .. }, Outcome::Done) => {
                        current = current.or(Some(MemberStatus::Pending));
                        changed = true;
                    }
                    (Step::Add { .. }, Outcome::Unchanged) => {
                        current = current.or(Some(MemberStatus::Pending));
                    }
                    (Step::SetStatus { status, .. }, Outcome::Done) => {
                        current = Some(*status);
                        changed = true;
                    }
                    (_, Outcome::AwaitingConsumer) => awaiting = true,
                    (_, Outcome::Failed(f)) => failed = failed.or(Some(f)),
                    (Step::Remove { .. }, Outcome::Done | Outcome::Unchanged)
                    | (Step::SetStatus { .. }, Outcome::Unchanged) => {}
                }
            }
            let (state, reason, message) = if let Some(owner) = report.claims.earlier.get(&pair) {
                (
                    MemberPhase::Conflict,
                    Some(Reason::Conflict),
                    Some(format!(
                        "ImageShare {owner} already declares project {} on image {}",
                        member.project, image.id
                    )),
                )
            } else if let Some(f) = failed {
                (MemberPhase::Failed, Some(f.reason), Some(f.message.clone()))
            } else if awaiting {
                (
                    MemberPhase::AwaitingConsumer,
                    Some(Reason::AwaitingConsumer),
                    Some("the producer may not set this status; the consumer must set it, or give consumer credentials".into()),
                )
            } else if current.is_none() && spec.suspend {
                (
                    MemberPhase::Suspended,
                    None,
                    Some("not a member; suspended".into()),
                )
            } else if current.is_none() && spec.producer.is_some() && !image.accepts_members() {
                (
                    MemberPhase::Failed,
                    Some(Reason::ImageNotShared),
                    Some(format!(
                        "image {} has visibility {}; members need visibility shared",
                        image.id,
                        image.visibility.as_deref().unwrap_or("unknown")
                    )),
                )
            } else if current.is_none() {
                (
                    MemberPhase::Failed,
                    Some(Reason::Forbidden),
                    Some("not a member, and no producer to add it".into()),
                )
            } else if changed {
                (MemberPhase::Progressing, Some(Reason::Progressing), None)
            } else if member.status.is_some() && current != member.status {
                (
                    MemberPhase::Suspended,
                    None,
                    Some("status differs; suspended".into()),
                )
            } else if member.status.is_none() && current == Some(MemberStatus::Pending) {
                (
                    MemberPhase::AwaitingConsumer,
                    None,
                    Some("shared; the consumer has not accepted yet".into()),
                )
            } else {
                (MemberPhase::InSync, None, None)
            };
            rows.push(Row {
                state: MemberState {
                    image: image.id.clone(),
                    project: member.project.clone(),
                    status: current,
                    desired_status: member.status,
                    state,
                    message,
                },
                reason,
            });
        }
    }
    rows
}

fn summary_reason(spec: &ImageShareSpec, report: &Report, rows: &[Row]) -> Reason {
    let has = |r: Reason| rows.iter().any(|row| row.reason == Some(r));
    let failed = rows.iter().filter(|r| r.state.state == MemberPhase::Failed);
    if let Some(worst) = failed
        .map(|row| {
            let reason = row.reason.unwrap_or(Reason::TransientError);
            let rank = MEMBER_FAILURE_ORDER
                .iter()
                .position(|r| *r == reason)
                .unwrap_or(MEMBER_FAILURE_ORDER.len());
            (rank, reason)
        })
        .min()
    {
        return worst.1;
    }
    if has(Reason::Conflict) {
        Reason::Conflict
    } else if spec.suspend {
        Reason::Suspended
    } else if has(Reason::Progressing) || report.changed_anything() || report.deferred {
        Reason::Progressing
    } else if has(Reason::AwaitingConsumer) {
        Reason::AwaitingConsumer
    } else {
        Reason::InSync
    }
}

fn ready_message(reason: Reason, in_sync: usize, members: &[MemberState], images: usize) -> String {
    let counts = format!(
        "{in_sync}/{} members in sync on {images} image{}",
        members.len(),
        if images == 1 { "" } else { "s" }
    );
    let first_problem = members
        .iter()
        .find(|m| !satisfied(m) && m.message.is_some())
        .map(|m| {
            format!(
                "; project {} on image {}: {}",
                m.project,
                m.image,
                m.message.as_deref().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    match reason {
        Reason::InSync => counts,
        Reason::Progressing => format!("changes applied, confirming on the next pass; {counts}"),
        _ => format!("{counts}{first_problem}"),
    }
}

fn image_display(spec: &ImageShareSpec, images: &[ImageStatus]) -> String {
    match images {
        [one] => one.name.clone().unwrap_or_else(|| one.id.clone()),
        [] => spec
            .image
            .id
            .clone()
            .or_else(|| spec.image.name.clone())
            .unwrap_or_else(|| "(selector)".into()),
        many => format!("{} images", many.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{SpecExt, image, spec};
    use crate::controller::plan::{Identity, plan};

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn ready(status: &ImageShareStatus) -> (&str, &str) {
        let c = &status.conditions[0];
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn accepted_member_and_unanswered_member_are_ready_in_sync() {
        let spec = spec()
            .member_with_consumer("a", MemberStatus::Accepted, "team-a")
            .member("b", None);
        let report = Report {
            images: vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("b", MemberStatus::Pending)],
            )],
            ..Report::default()
        };
        let status = build(&spec, Some(3), &report, None, &now());
        assert_eq!(ready(&status), ("True", "InSync"));
        assert_eq!(status.members[0].state, MemberPhase::InSync);
        assert_eq!(status.members[1].state, MemberPhase::AwaitingConsumer);
        assert_eq!(status.members_in_sync.as_deref(), Some("2/2"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions[0].observed_generation, Some(3));
    }

    #[test]
    fn a_pass_that_changed_glance_is_progressing() {
        let spec = spec().member_with_consumer("a", MemberStatus::Accepted, "team-a");
        let images = vec![image("img", &[])];
        let steps = plan(&spec, &images, &Claims::default()).steps;
        let report = Report {
            images,
            outcomes: steps.into_iter().map(|s| (s, Outcome::Done)).collect(),
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "Progressing"));
        assert_eq!(status.members[0].status, Some(MemberStatus::Accepted));
        assert_eq!(status.members[0].state, MemberPhase::Progressing);
    }

    #[test]
    fn an_add_glance_already_had_is_in_sync_not_progressing() {
        let spec = spec().member("a", None);
        let report = Report {
            images: vec![image("img", &[])],
            outcomes: vec![(
                Step::Add {
                    image: "img".into(),
                    project: "a".into(),
                },
                Outcome::Unchanged,
            )],
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("True", "InSync"));
        assert!(!report.changed_anything());
    }

    #[test]
    fn terminal_reasons_stall_and_passing_ones_reconcile() {
        let spec = spec().member("a", None);
        let types = |failure: Failure| {
            build(&spec, Some(1), &Report::failed(failure), None, &now())
                .conditions
                .into_iter()
                .map(|c| (c.type_, c.status))
                .collect::<Vec<_>>()
        };
        let pair = |t: &str, s: &str| (t.to_string(), s.to_string());
        assert_eq!(
            types(Failure::new(Reason::CredentialsInvalid, "refused")),
            vec![pair("Ready", "False"), pair("Stalled", "True")]
        );
        assert_eq!(
            types(Failure::transient("503")),
            vec![pair("Ready", "False"), pair("Reconciling", "True")]
        );
    }

    #[test]
    fn deferred_removals_keep_the_share_progressing() {
        let spec = spec().member("a", None).exclusive();
        let report = Report {
            images: vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("x", MemberStatus::Accepted)],
            )],
            deferred: true,
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "Progressing"));
        assert!(
            status.conditions[0]
                .message
                .contains("undeclared members stay")
        );
    }

    #[test]
    fn refused_producer_status_update_awaits_the_consumer() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let report = Report {
            images: vec![image("img", &[("a", MemberStatus::Pending)])],
            outcomes: vec![(
                Step::SetStatus {
                    image: "img".into(),
                    project: "a".into(),
                    status: MemberStatus::Accepted,
                    identity: Identity::Producer,
                },
                Outcome::AwaitingConsumer,
            )],
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "AwaitingConsumer"));
        assert_eq!(status.members[0].state, MemberPhase::AwaitingConsumer);
        assert_eq!(status.members_in_sync.as_deref(), Some("0/1"));
    }

    #[test]
    fn private_image_reports_image_not_shared() {
        let spec = spec().member("a", None);
        let mut private = image("img", &[]);
        private.visibility = Some("private".into());
        let report = Report {
            images: vec![private],
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "ImageNotShared"));
        assert!(
            status.conditions[0]
                .message
                .contains("has visibility private")
        );
    }

    #[test]
    fn failed_consumer_credentials_outrank_transient_errors() {
        let spec = spec()
            .member_with_consumer("a", MemberStatus::Accepted, "team-a")
            .member_with_consumer("b", MemberStatus::Accepted, "team-b");
        let report = Report {
            images: vec![image(
                "img",
                &[("a", MemberStatus::Pending), ("b", MemberStatus::Pending)],
            )],
            member_failures: BTreeMap::from([
                ("a".to_string(), Failure::transient("glance answered 503")),
                (
                    "b".to_string(),
                    Failure::new(Reason::CredentialsMissing, "secret team-b not found"),
                ),
            ]),
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "CredentialsMissing"));
    }

    #[test]
    fn a_member_that_is_not_shared_yet_in_consumer_only_use_is_not_ready() {
        let spec = spec()
            .member_with_consumer("a", MemberStatus::Accepted, "team-a")
            .without_producer();
        let mut observed = image("img", &[]);
        observed.visibility = None;
        let report = Report {
            images: vec![observed],
            member_failures: BTreeMap::from([(
                "a".to_string(),
                Failure::new(
                    Reason::ImageNotFound,
                    "project a is not a member of image img",
                ),
            )]),
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "ImageNotFound"));
        assert_eq!(status.members[0].state, MemberPhase::Failed);
    }

    #[test]
    fn pass_failure_drops_rows_of_members_no_longer_declared() {
        let before_spec = spec().member("a", None).member("b", None);
        let ok = Report {
            images: vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("b", MemberStatus::Accepted)],
            )],
            ..Report::default()
        };
        let before = build(&before_spec, Some(1), &ok, None, &now());
        let failed = Report::failed(Failure::transient("glance answered 503"));
        let after = build(
            &spec().member("a", None),
            Some(2),
            &failed,
            Some(&before),
            &now(),
        );
        assert_eq!(after.members.len(), 1);
        assert_eq!(after.members[0].project, "a");
        assert_eq!(after.members_in_sync.as_deref(), Some("1/1"));
    }

    #[test]
    fn pass_failure_keeps_previous_member_rows_and_reports_the_reason() {
        let spec = spec().member("a", None);
        let ok = Report {
            images: vec![image("img", &[("a", MemberStatus::Accepted)])],
            ..Report::default()
        };
        let before = build(&spec, Some(1), &ok, None, &now());
        let failed = Report::failed(Failure::new(
            Reason::CredentialsInvalid,
            "keystone refused the credentials of cloud openstack",
        ));
        let after = build(&spec, Some(1), &failed, Some(&before), &now());
        assert_eq!(ready(&after), ("False", "CredentialsInvalid"));
        assert_eq!(after.members, before.members);
        assert!(after.conditions[0].message.contains("keystone refused"));
    }

    #[test]
    fn conflicting_member_is_reported_on_the_later_imageshare() {
        let spec = spec().member("a", None);
        let report = Report {
            images: vec![image("img", &[("a", MemberStatus::Accepted)])],
            claims: crate::controller::fixtures::earlier_claim("team/first", &[("img", "a")]),
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "Conflict"));
        assert!(status.conditions[0].message.contains("team/first"));
    }

    #[test]
    fn suspended_share_reports_suspended_even_when_in_sync() {
        let spec = spec().member("a", None).suspended();
        let report = Report {
            images: vec![image("img", &[("a", MemberStatus::Accepted)])],
            ..Report::default()
        };
        let status = build(&spec, Some(1), &report, None, &now());
        assert_eq!(ready(&status), ("False", "Suspended"));
    }

    #[test]
    fn unchanged_pass_needs_no_status_write() {
        let spec = spec().member("a", None);
        let report = Report {
            images: vec![image("img", &[("a", MemberStatus::Accepted)])],
            ..Report::default()
        };
        let mut first = build(&spec, Some(1), &report, None, &now());
        first.last_sync_time = Some(now());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap_or_default());
        let second = build(&spec, Some(1), &report, Some(&first), &later);
        assert!(!needs_write(Some(&first), &second));
        assert_eq!(second.conditions, first.conditions);
    }

    #[test]
    fn ready_transition_time_changes_only_with_the_ready_status() {
        let spec = spec().member("a", None);
        let synced = Report {
            images: vec![image("img", &[("a", MemberStatus::Accepted)])],
            ..Report::default()
        };
        let first = build(&spec, Some(1), &synced, None, &now());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap_or_default());
        let failed = Report::failed(Failure::transient("connection refused"));
        let second = build(&spec, Some(1), &failed, Some(&first), &later);
        assert!(needs_write(Some(&first), &second));
        assert_eq!(second.conditions[0].last_transition_time, later);
    }
}
