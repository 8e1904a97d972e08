//! The status builder: a pure function from what one pass observed and did to the
//! `ImageShare` status (per-member state, counts, ledger, Ready condition). No I/O; the one
//! writer lives in the pass and only writes when [`needs_write`] says so.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::model::{Action, Failure, MemberKey, ObservedImage, Outcome, Step};
use super::report::Report;
use crate::api::{
    ImageShareSpec, ImageShareStatus, ImageStatus, MemberPhase, MemberState, MemberStatus,
    Membership, Reason,
};

/// Most member rows written to status; memberCounts counts them all.
pub const MAX_ROWS: usize = 200;

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

/// One member row plus the reason behind it (reasons are not part of the row), and
/// whether it is a declared member (rows of failed removals are not).
struct Row {
    state: MemberState,
    reason: Option<Reason>,
    declared: bool,
}

/// A status and the Ready reason it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Built {
    /// The status.
    pub status: ImageShareStatus,
    /// Its Ready condition's reason.
    pub reason: Reason,
}

/// Builds the status for `spec` at `generation` from a pass: its report, or the failure that
/// stopped it before anything was observed. `previous` provides the condition's
/// lastTransitionTime, lastSyncTime, and (for a failed pass) the
/// images, rows and ledger kept from the last pass; `now` stamps a Ready transition.
pub fn build(
    spec: &ImageShareSpec,
    generation: Option<i64>,
    pass: Result<&Report, &Failure>,
    previous: Option<&ImageShareStatus>,
    now: &Time,
) -> Built {
    let (images, rows, reason, message, ledger) = match pass {
        Err(failure) => {
            let prev = previous.cloned().unwrap_or_default();
            let rows = prev
                .members
                .into_iter()
                .filter(|row| spec.members.iter().any(|m| m.project == row.project))
                .map(|state| Row {
                    state,
                    reason: None,
                    declared: true,
                })
                .collect();
            (
                prev.images,
                rows,
                failure.reason,
                Some(failure.message.clone()),
                prev.ledger,
            )
        }
        Ok(report) => {
            let mut rows = member_rows(spec, report);
            let reason = summary_reason(spec, report, &rows);
            let mut images: Vec<ImageStatus> = report
                .observed
                .images
                .iter()
                .map(ObservedImage::status)
                .collect();
            // A region not observed this pass keeps what the last pass saw there: its
            // images (other objects' claims, rotation) and its rows.
            let failed = &report.observed.region_failures;
            let unseen =
                |region: &Option<String>| region.as_ref().is_some_and(|r| failed.contains_key(r));
            if let Some(prev) = previous {
                images.extend(prev.images.iter().filter(|i| unseen(&i.region)).cloned());
                rows.extend(
                    prev.members
                        .iter()
                        .filter(|m| unseen(&m.region))
                        .map(|m| Row {
                            state: m.clone(),
                            reason: None,
                            declared: true,
                        }),
                );
            }
            let region_failure = failed.iter().find(|(_, f)| f.reason == reason);
            let message = match (&report.observed.missing, region_failure) {
                (_, Some((region, failure))) => Some(format!(
                    "region {region}: {} (nothing is changed or removed there until it \
                     answers; the other regions are kept in sync)",
                    failure.message
                )),
                (Some(missing), _) if reason == missing.reason => Some(missing.message.clone()),
                (_, None) => (reason == Reason::Progressing && report.deferred).then(|| {
                    "some removals wait a few seconds (an undeclared member is removed \
                         once seen twice, and members another ImageShare may declare once it \
                         has processed its spec); retrying shortly"
                        .to_string()
                }),
            };
            (images, rows, reason, message, report.ledger.to_entries())
        }
    };
    let mut member_counts: BTreeMap<String, u32> = BTreeMap::new();
    for row in &rows {
        *member_counts
            .entry(row.state.state.as_str().to_string())
            .or_default() += 1;
    }
    let declared = rows.iter().filter(|r| r.declared);
    let total = declared.clone().count();
    let in_sync = declared.filter(|r| satisfied(&r.state)).count();
    let mut members: Vec<MemberState> = rows.into_iter().map(|r| r.state).collect();
    // Rows that need attention first; the order is otherwise kept (by image, then spec).
    members.sort_by_key(satisfied);
    let mut message =
        message.unwrap_or_else(|| ready_message(reason, in_sync, total, &members, images.len()));
    let kept = pass.map_or(0, |r| r.kept);
    if kept > 0 {
        message.push_str(&format!(
            "; {kept} member(s) no longer declared here stay while another ImageShare that \
             declares them has not taken them over (suspended or not processed); removed once \
             it lets go"
        ));
    }
    let (member_counts, members_in_sync) = match (pass, previous) {
        // A failed pass keeps the counts of the last one when its rows were cut (the rows
        // left out are not known); otherwise it counts the rows it kept.
        (Err(_), Some(prev))
            if prev.member_counts.values().sum::<u32>() as usize > prev.members.len() =>
        {
            (prev.member_counts.clone(), prev.members_in_sync.clone())
        }
        _ => (member_counts, Some(format!("{in_sync}/{total}"))),
    };
    members.truncate(MAX_ROWS);
    let conditions = conditions(reason, message, generation, previous, now);
    let status = ImageShareStatus {
        observed_generation: generation,
        image: Some(image_display(spec, &images)),
        members_in_sync,
        images,
        members,
        member_counts,
        ledger,
        cloud: match pass {
            Ok(report) if report.observed.cloud().is_some() => {
                report.observed.cloud().map(String::from)
            }
            _ => previous.and_then(|p| p.cloud.clone()),
        },
        region_clouds: match pass {
            Ok(report) if !report.observed.clouds.is_empty() => {
                let mut clouds = previous
                    .map(|p| p.region_clouds.clone())
                    .unwrap_or_default();
                clouds.extend(report.observed.region_clouds());
                clouds
            }
            _ => previous
                .map(|p| p.region_clouds.clone())
                .unwrap_or_default(),
        },
        // This pass's resolution; a failed pass keeps the last one.
        projects: match pass {
            Ok(report) => report.projects.clone(),
            Err(_) => previous.map(|p| p.projects.clone()).unwrap_or_default(),
        },
        conditions,
        last_sync_time: previous.and_then(|p| p.last_sync_time.clone()),
    };
    Built { status, reason }
}

/// The conditions for a Ready `reason`, following kstatus: Ready summarises; Reconciling
/// (work under way) and Stalled (needs a person) appear only while true, so GitOps tools
/// tell progress from failure. A condition keeps its lastTransitionTime from `previous`
/// while its status stays.
fn conditions(
    reason: Reason,
    message: String,
    generation: Option<i64>,
    previous: Option<&ImageShareStatus>,
    now: &Time,
) -> Vec<Condition> {
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
    let status = if reason.is_ready() { "True" } else { "False" };
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
    conditions
}

/// The conditions of a new object's first status, the ledger written ahead of its first
/// adds: Progressing (Ready False, Reconciling True). Without them kstatus, and so Flux,
/// would read a status with neither conditions nor observedGeneration as Current.
pub fn first_conditions(generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let message = "adding the first members".to_string();
    conditions(Reason::Progressing, message, generation, None, now)
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

/// Transient failures in a row that leave a Ready=True status as it is.
const BLIPS_TOLERATED: u32 = 2;

/// Whether a pass whose only problem was a passing fault may leave a Ready=True status
/// unwritten: the first [`BLIPS_TOLERATED`] transient failures in a row (`streak` counts the
/// earlier ones) of an unchanged spec do not flip Ready, so GitOps health does not flap on
/// one dropped connection or one 503; the next one does.
pub fn hide_blip(previous: Option<&ImageShareStatus>, new: &ImageShareStatus, streak: u32) -> bool {
    let ready = |s: &ImageShareStatus| s.conditions.iter().find(|c| c.type_ == "Ready").cloned();
    let (Some(prev), Some(now)) = (previous.and_then(ready), ready(new)) else {
        return false;
    };
    prev.status == "True"
        && now.reason == Reason::TransientError.as_str()
        && prev.observed_generation == now.observed_generation
        && streak < BLIPS_TOLERATED
}

/// A member row counts as in sync when the spec asks nothing more of it.
fn satisfied(m: &MemberState) -> bool {
    m.state == MemberPhase::InSync
        || (m.state == MemberPhase::AwaitingConsumer && m.desired_status.is_none())
}

fn member_rows(spec: &ImageShareSpec, report: &Report) -> Vec<Row> {
    let mut outcomes: BTreeMap<&MemberKey, Vec<&(Step, Outcome)>> = BTreeMap::new();
    for entry in &report.outcomes {
        outcomes.entry(&entry.0.key).or_default().push(entry);
    }
    let mut rows = Vec::new();
    for image in &report.observed.images {
        for member in &spec.members {
            let pair = image.key(&member.project);
            let mut current = image.members.get(member.project.as_str()).copied();
            let mut awaiting = false;
            let mut failed: Option<&Failure> =
                report.observed.member_failures.get(member.project.as_str());
            for (step, outcome) in outcomes.remove(&pair).into_iter().flatten() {
                match (&step.action, outcome) {
                    (Action::Add, Outcome::Done | Outcome::Unchanged) => {
                        current = current.or(Some(MemberStatus::Pending));
                    }
                    (Action::SetStatus { status, .. }, Outcome::Done) => {
                        current = Some(*status);
                    }
                    (_, Outcome::AwaitingConsumer) => awaiting = true,
                    (_, Outcome::Failed(f)) => failed = failed.or(Some(f)),
                    (Action::Remove, Outcome::Done | Outcome::Unchanged)
                    | (Action::SetStatus { .. }, Outcome::Unchanged) => {}
                }
            }
            let claims = &report.claims;
            let adder = claims.adder(&pair).filter(|_| spec.producer.is_some());
            let setter = claims
                .status_setter(&pair)
                .filter(|_| member.status.is_some());
            let contradiction = setter.filter(|(_, theirs)| Some(*theirs) != member.status);
            let (state, reason, message) = if let Some((other, theirs)) = contradiction {
                (
                    MemberPhase::Conflict,
                    Some(Reason::Conflict),
                    Some(format!(
                        "ImageShare {} (created earlier) keeps project {} on image {} {theirs}; \
                         this one declares {}",
                        other.key,
                        member.project,
                        image.id,
                        member.status.map_or("no status".into(), |s| s.to_string())
                    )),
                )
            } else if let Some(f) = failed {
                (MemberPhase::Failed, Some(f.reason), Some(f.message.clone()))
            } else if let Some(held) = report.held.get(&pair) {
                (
                    MemberPhase::Contested,
                    Some(Reason::Conflict),
                    Some(format!(
                        "another client changed the status back {} times; the operator now \
                         waits {}s before each new attempt",
                        held.reverts,
                        held.wait.as_secs()
                    )),
                )
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
            } else if let (None, Some(other)) = (current, adder) {
                (
                    MemberPhase::Progressing,
                    Some(Reason::Progressing),
                    Some(format!(
                        "ImageShare {} adds it (both declare it)",
                        other.key
                    )),
                )
            } else if current.is_none() && spec.producer.is_some() && !image.accepts_members() {
                (
                    MemberPhase::Failed,
                    Some(Reason::ImageNotShared),
                    Some(format!(
                        "image {} has visibility {}; members need visibility shared",
                        image.id,
                        image.visibility.as_ref().map_or("unknown", |v| v.as_str())
                    )),
                )
            } else if current.is_none() {
                (
                    MemberPhase::Failed,
                    Some(Reason::Forbidden),
                    Some("not a member, and no producer to add it".into()),
                )
            } else if let Some((other, _)) = setter.filter(|_| current != member.status) {
                (
                    MemberPhase::Progressing,
                    Some(Reason::Progressing),
                    Some(format!(
                        "ImageShare {} sets this status (both declare it)",
                        other.key
                    )),
                )
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
            // A healthy row names the other objects that declare the member too.
            let message = match claims.names(&pair).filter(|_| reason.is_none()) {
                Some(names) => Some(match message {
                    Some(m) => format!("{m}; also declared by {names}"),
                    None => format!("also declared by {names}"),
                }),
                None => message,
            };
            rows.push(Row {
                state: MemberState {
                    image: image.id.to_string(),
                    region: image.region.clone(),
                    project: member.project.clone(),
                    status: current,
                    desired_status: member.status,
                    state,
                    message,
                },
                reason,
                declared: true,
            });
        }
    }
    // Exclusive: members nobody here declares that another object on the same cloud does.
    if spec.membership == Membership::Exclusive && spec.producer.is_some() {
        for image in &report.observed.images {
            for project in image.members.keys() {
                let pair = image.key(project.clone());
                let declared_here = spec.members.iter().any(|m| m.project == project.as_str());
                let Some(other) = report.claims.protector(&pair).filter(|_| !declared_here) else {
                    continue;
                };
                rows.push(Row {
                    state: MemberState {
                        image: image.id.to_string(),
                        region: image.region.clone(),
                        project: project.to_string(),
                        status: image.members.get(project).copied(),
                        desired_status: None,
                        state: MemberPhase::Conflict,
                        message: Some(format!(
                            "ImageShare {} declares it; membership Exclusive would remove it, \
                             so it stays",
                            other.key
                        )),
                    },
                    reason: Some(Reason::Conflict),
                    declared: false,
                });
            }
        }
    }
    // Removals that failed (the pair is no longer declared, so it has no row above).
    for (MemberKey { image, project }, entries) in outcomes {
        for (step, outcome) in entries {
            if let (Action::Remove, Outcome::Failed(f)) = (&step.action, outcome) {
                rows.push(Row {
                    state: MemberState {
                        image: image.to_string(),
                        region: report.ledger.region_of(image).map(String::from),
                        project: project.to_string(),
                        status: None,
                        desired_status: None,
                        state: MemberPhase::Failed,
                        message: Some(format!("could not remove it: {}", f.message)),
                    },
                    reason: Some(f.reason),
                    declared: false,
                });
            }
        }
    }
    rows
}

fn summary_reason(spec: &ImageShareSpec, report: &Report, rows: &[Row]) -> Reason {
    let has = |r: Reason| rows.iter().any(|row| row.reason == Some(r));
    let failed = rows
        .iter()
        .filter(|r| r.state.state == MemberPhase::Failed)
        .map(|row| row.reason.unwrap_or(Reason::TransientError))
        .chain(report.observed.missing.iter().map(|m| m.reason))
        .chain(report.observed.region_failures.values().map(|f| f.reason));
    if let Some(worst) = failed
        .map(|reason| {
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
    } else if report.deferred || has(Reason::Progressing) {
        Reason::Progressing
    } else if has(Reason::AwaitingConsumer) {
        Reason::AwaitingConsumer
    } else {
        Reason::InSync
    }
}

/// The Ready message: counts, and the first row that needs attention (rows come sorted so
/// that those are first).
fn ready_message(
    reason: Reason,
    in_sync: usize,
    total: usize,
    members: &[MemberState],
    images: usize,
) -> String {
    let counts = format!(
        "{in_sync}/{total} members in sync on {images} image{}",
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
        Reason::Progressing => format!("removals pending; {counts}"),
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
    use crate::controller::contest::Held;
    use crate::controller::fixtures::{SpecExt, image, spec};
    use crate::controller::ledger::Ledger;
    use crate::controller::model::{Identity, Visibility};
    use crate::controller::observe::Observed;
    use crate::controller::overlap::Claims;
    use crate::controller::plan::plan;
    use std::time::Duration;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn observed(images: Vec<ObservedImage>) -> Observed {
        Observed {
            images,
            ..Observed::default()
        }
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
            observed: observed(vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("b", MemberStatus::Pending)],
            )]),
            ..Report::default()
        };
        let status = build(&spec, Some(3), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("True", "InSync"));
        assert_eq!(status.members[0].state, MemberPhase::InSync);
        assert_eq!(status.members[1].state, MemberPhase::AwaitingConsumer);
        assert_eq!(status.members_in_sync.as_deref(), Some("2/2"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions[0].observed_generation, Some(3));
    }

    #[test]
    fn a_pass_whose_changes_glance_accepted_is_in_sync_at_once() {
        let spec = spec().member_with_consumer("a", MemberStatus::Accepted, "team-a");
        let images = vec![image("img", &[])];
        let steps = plan(
            &spec,
            &images,
            &Ledger::default(),
            &Claims::default(),
            &Default::default(),
        )
        .steps;
        let report = Report {
            observed: observed(images),
            outcomes: steps.into_iter().map(|s| (s, Outcome::Done)).collect(),
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("True", "InSync"));
        assert_eq!(status.members[0].status, Some(MemberStatus::Accepted));
        assert_eq!(status.members[0].state, MemberPhase::InSync);
    }

    #[test]
    fn an_add_glance_already_had_is_in_sync_not_progressing() {
        let spec = spec().member("a", None);
        let report = Report {
            observed: observed(vec![image("img", &[])]),
            outcomes: vec![(Step::add(MemberKey::new("img", "a")), Outcome::Unchanged)],
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("True", "InSync"));
        assert!(!report.changed_anything());
    }

    #[test]
    fn a_new_objects_first_status_says_it_is_reconciling() {
        let conditions = first_conditions(Some(1), &now());
        let summary: Vec<_> = conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("Ready", "False", "Progressing"),
                ("Reconciling", "True", "Progressing")
            ]
        );
        assert!(conditions.iter().all(|c| c.observed_generation == Some(1)));
    }

    #[test]
    fn terminal_reasons_stall_and_passing_ones_reconcile() {
        let spec = spec().member("a", None);
        let types = |failure: Failure| {
            build(&spec, Some(1), Err(&failure), None, &now())
                .status
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
            observed: observed(vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("x", MemberStatus::Accepted)],
            )]),
            deferred: true,
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "Progressing"));
        assert!(status.conditions[0].message.contains("some removals wait"));
    }

    #[test]
    fn refused_producer_status_update_awaits_the_consumer() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let report = Report {
            observed: observed(vec![image("img", &[("a", MemberStatus::Pending)])]),
            outcomes: vec![(
                Step::set_status(
                    MemberKey::new("img", "a"),
                    MemberStatus::Accepted,
                    Identity::Producer,
                ),
                Outcome::AwaitingConsumer,
            )],
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "AwaitingConsumer"));
        assert_eq!(status.members[0].state, MemberPhase::AwaitingConsumer);
        assert_eq!(status.members_in_sync.as_deref(), Some("0/1"));
    }

    #[test]
    fn private_image_reports_image_not_shared() {
        let spec = spec().member("a", None);
        let mut private = image("img", &[]);
        private.visibility = Some(Visibility::parse("private"));
        let report = Report {
            observed: observed(vec![private]),
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
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
            observed: Observed {
                images: vec![image(
                    "img",
                    &[("a", MemberStatus::Pending), ("b", MemberStatus::Pending)],
                )],
                member_failures: BTreeMap::from([
                    ("a".into(), Failure::transient("glance answered 503")),
                    (
                        "b".into(),
                        Failure::new(Reason::CredentialsMissing, "secret team-b not found"),
                    ),
                ]),
                ..Observed::default()
            },
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "CredentialsMissing"));
    }

    #[test]
    fn a_member_that_is_not_shared_yet_in_consumer_only_use_is_not_ready() {
        let spec = spec()
            .member_with_consumer("a", MemberStatus::Accepted, "team-a")
            .without_producer();
        let mut shared = image("img", &[]);
        shared.visibility = None;
        let report = Report {
            observed: Observed {
                images: vec![shared],
                member_failures: BTreeMap::from([(
                    "a".into(),
                    Failure::new(
                        Reason::ImageNotFound,
                        "project a is not a member of image img",
                    ),
                )]),
                ..Observed::default()
            },
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "ImageNotFound"));
        assert_eq!(status.members[0].state, MemberPhase::Failed);
    }

    #[test]
    fn pass_failure_drops_rows_of_members_no_longer_declared() {
        let before_spec = spec().member("a", None).member("b", None);
        let ok = Report {
            observed: observed(vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("b", MemberStatus::Accepted)],
            )]),
            ..Report::default()
        };
        let before = build(&before_spec, Some(1), Ok(&ok), None, &now()).status;
        let failed = Failure::transient("glance answered 503");
        let after = build(
            &spec().member("a", None),
            Some(2),
            Err(&failed),
            Some(&before),
            &now(),
        )
        .status;
        assert_eq!(after.members.len(), 1);
        assert_eq!(after.members[0].project, "a");
        assert_eq!(after.members_in_sync.as_deref(), Some("1/1"));
    }

    #[test]
    fn pass_failure_keeps_previous_member_rows_and_reports_the_reason() {
        let spec = spec().member("a", None);
        let ok = Report {
            observed: observed(vec![image("img", &[("a", MemberStatus::Accepted)])]),
            ..Report::default()
        };
        let before = build(&spec, Some(1), Ok(&ok), None, &now()).status;
        let failed = Failure::new(
            Reason::CredentialsInvalid,
            "keystone refused the credentials of cloud openstack",
        );
        let after = build(&spec, Some(1), Err(&failed), Some(&before), &now()).status;
        assert_eq!(ready(&after), ("False", "CredentialsInvalid"));
        assert_eq!(after.members, before.members);
        assert!(after.conditions[0].message.contains("keystone refused"));
    }

    /// (case, this object's spec, the observed member's status, the other object,
    ///  expected Ready reason, expected row state, text the row message contains)
    #[test]
    fn overlap_verdicts_agreement_is_in_sync_only_a_contradiction_conflicts() {
        use crate::controller::fixtures::{Declarer, claims_of, declarer};
        let accepted = Some(MemberStatus::Accepted);
        let sets = |status| Declarer {
            status,
            ..declarer("team/first")
        };
        type Case = (
            &'static str,
            ImageShareSpec,
            Option<MemberStatus>,
            Declarer,
            Reason,
            MemberPhase,
            &'static str,
        );
        let rows: Vec<Case> = vec![
            (
                "same member, present: both in sync, the other named",
                spec().member("a", None),
                accepted,
                declarer("team/first"),
                Reason::InSync,
                MemberPhase::InSync,
                "also declared by team/first",
            ),
            (
                "same member, pending, status left to the consumer: healthy, the other named",
                spec().member("a", None),
                Some(MemberStatus::Pending),
                declarer("team/first"),
                Reason::InSync,
                MemberPhase::AwaitingConsumer,
                "not accepted yet; also declared by team/first",
            ),
            (
                "same member and status, set: in sync",
                spec().member("a", accepted),
                accepted,
                sets(accepted),
                Reason::InSync,
                MemberPhase::InSync,
                "also declared by team/first",
            ),
            (
                "same member, not added yet: the earlier one adds it",
                spec().member("a", None),
                None,
                declarer("team/first"),
                Reason::Progressing,
                MemberPhase::Progressing,
                "team/first adds it",
            ),
            (
                "same status, not set yet: the earlier one sets it",
                spec().member("a", accepted),
                Some(MemberStatus::Pending),
                sets(accepted),
                Reason::Progressing,
                MemberPhase::Progressing,
                "team/first sets this status",
            ),
            (
                "different status: a contradiction, on the later object",
                spec().member("a", accepted),
                Some(MemberStatus::Rejected),
                sets(Some(MemberStatus::Rejected)),
                Reason::Conflict,
                MemberPhase::Conflict,
                "keeps project a on image img rejected; this one declares accepted",
            ),
            (
                "the other manages no status: no contradiction",
                spec().member("a", accepted),
                accepted,
                declarer("team/first"),
                Reason::InSync,
                MemberPhase::InSync,
                "also declared by team/first",
            ),
        ];
        for (case, spec, current, other, reason, state, text) in rows {
            let members: Vec<(&str, MemberStatus)> =
                current.map(|c| ("a", c)).into_iter().collect();
            let report = Report {
                observed: observed(vec![image("img", &members)]),
                claims: claims_of(&other, &[("img", "a")]),
                ..Report::default()
            };
            let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
            assert_eq!(ready(&status).1, reason.as_str(), "{case}");
            assert_eq!(status.members[0].state, state, "{case}");
            let message = status.members[0].message.as_deref().unwrap_or_default();
            assert!(message.contains(text), "{case}: {message}");
        }
    }

    #[test]
    fn kept_members_are_said_in_the_ready_message() {
        let report = Report {
            observed: observed(vec![image("img", &[("b", MemberStatus::Accepted)])]),
            kept: 1,
            ..Report::default()
        };
        let status = build(&spec(), Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("True", "InSync"));
        assert!(
            status.conditions[0]
                .message
                .contains("1 member(s) no longer declared here stay")
        );
    }

    #[test]
    fn an_exclusive_object_that_would_remove_what_another_declares_is_in_conflict() {
        let spec = spec().member("a", None).exclusive();
        let report = Report {
            observed: observed(vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("x", MemberStatus::Accepted)],
            )]),
            claims: crate::controller::fixtures::earlier_claim("team/first", &[("img", "x")]),
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "Conflict"));
        assert!(status.conditions[0].message.contains("team/first"));
        assert_eq!(
            status.members_in_sync.as_deref(),
            Some("1/1"),
            "the declared member is fine"
        );
    }

    #[test]
    fn suspended_share_reports_suspended_even_when_in_sync() {
        let spec = spec().member("a", None).suspended();
        let report = Report {
            observed: observed(vec![image("img", &[("a", MemberStatus::Accepted)])]),
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "Suspended"));
    }

    #[test]
    fn unchanged_pass_needs_no_status_write() {
        let spec = spec().member("a", None);
        let report = Report {
            observed: observed(vec![image("img", &[("a", MemberStatus::Accepted)])]),
            ..Report::default()
        };
        let mut first = build(&spec, Some(1), Ok(&report), None, &now()).status;
        first.last_sync_time = Some(now());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap_or_default());
        let second = build(&spec, Some(1), Ok(&report), Some(&first), &later).status;
        assert!(!needs_write(Some(&first), &second));
        assert_eq!(second.conditions, first.conditions);
    }

    #[test]
    fn ready_transition_time_changes_only_with_the_ready_status() {
        let spec = spec().member("a", None);
        let synced = Report {
            observed: observed(vec![image("img", &[("a", MemberStatus::Accepted)])]),
            ..Report::default()
        };
        let first = build(&spec, Some(1), Ok(&synced), None, &now()).status;
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap_or_default());
        let failed = Failure::transient("connection refused");
        let second = build(&spec, Some(1), Err(&failed), Some(&first), &later).status;
        assert!(needs_write(Some(&first), &second));
        assert_eq!(second.conditions[0].last_transition_time, later);
    }

    fn many_members(count: usize) -> ImageShareSpec {
        (0..count).fold(spec(), |s, i| {
            s.member(&format!("{i:032x}"), Some(MemberStatus::Accepted))
        })
    }

    #[test]
    fn a_thousand_members_on_fifty_images_write_a_bounded_status() {
        let spec = many_members(1000);
        let images: Vec<ObservedImage> = (0..50)
            .map(|i| {
                let members: Vec<(String, MemberStatus)> = (0..1000)
                    .map(|m| {
                        let status = if m % 10 == 0 {
                            MemberStatus::Pending
                        } else {
                            MemberStatus::Accepted
                        };
                        (format!("{m:032x}"), status)
                    })
                    .collect();
                let refs: Vec<(&str, MemberStatus)> =
                    members.iter().map(|(p, s)| (p.as_str(), *s)).collect();
                image(&format!("{i:08x}-0000-0000-0000-000000000000"), &refs)
            })
            .collect();
        let ledger: Ledger = images
            .iter()
            .flat_map(|i| i.members.keys().map(|p| i.key(p.clone())))
            .collect();
        let report = Report {
            observed: observed(images),
            ledger,
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(status.members.len(), MAX_ROWS);
        assert!(
            status
                .members
                .iter()
                .all(|m| m.state == MemberPhase::Suspended),
            "rows that need attention come first"
        );
        assert_eq!(status.member_counts.get("InSync"), Some(&45_000));
        assert_eq!(status.member_counts.get("Suspended"), Some(&5_000));
        assert_eq!(status.members_in_sync.as_deref(), Some("45000/50000"));
        assert_eq!(status.ledger.len(), 1, "one group: each ID stored once");
        // etcd refuses requests above 1.5 MiB (--max-request-bytes); the object also holds
        // its spec (about 70 KB for 1,000 members) and metadata.
        let bytes = serde_json::to_vec(&status).unwrap_or_default().len();
        assert!(
            bytes < 256 * 1024,
            "status of 50,000 pairs takes {bytes} bytes"
        );
    }

    #[test]
    fn a_contested_status_is_reported_as_a_conflict_with_its_next_attempt() {
        let spec = spec().member_with_consumer("a", MemberStatus::Accepted, "team-a");
        let report = Report {
            observed: observed(vec![image("img", &[("a", MemberStatus::Rejected)])]),
            held: BTreeMap::from([(
                MemberKey::new("img", "a"),
                Held {
                    started: false,
                    reverts: 3,
                    wait: Duration::from_secs(60),
                    left: Duration::from_secs(42),
                },
            )]),
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "Conflict"));
        assert_eq!(status.members[0].state, MemberPhase::Contested);
        let message = status.members[0].message.as_deref().unwrap_or_default();
        assert!(
            message.contains("3 times") && message.contains("60s"),
            "{message}"
        );
    }

    #[test]
    fn a_removal_that_failed_is_reported_though_the_member_is_no_longer_declared() {
        let spec = spec().member("a", None);
        let report = Report {
            observed: observed(vec![image(
                "img",
                &[("a", MemberStatus::Accepted), ("b", MemberStatus::Accepted)],
            )]),
            outcomes: vec![(
                Step::remove(MemberKey::new("img", "b")),
                Outcome::Failed(Failure::new(Reason::Forbidden, "glance refused: 403")),
            )],
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "Forbidden"));
        assert_eq!(status.members_in_sync.as_deref(), Some("1/1"));
        assert_eq!(status.members[0].project, "b");
        assert_eq!(status.members[0].state, MemberPhase::Failed);
    }

    #[test]
    fn no_image_left_to_share_reports_image_not_found_with_the_ledger_it_still_holds() {
        let spec = spec().member("a", None);
        let report = Report {
            observed: Observed {
                missing: Some(Failure::new(
                    Reason::ImageNotFound,
                    "no image named \"gone\" owned by project p",
                )),
                ..Observed::default()
            },
            ledger: [MemberKey::new("img", "a")].into_iter().collect(),
            ..Report::default()
        };
        let status = build(&spec, Some(1), Ok(&report), None, &now()).status;
        assert_eq!(ready(&status), ("False", "ImageNotFound"));
        assert!(status.conditions[0].message.contains("gone"));
        assert_eq!(status.ledger.len(), 1);
    }

    #[test]
    fn one_or_two_passing_faults_do_not_flip_a_ready_status_but_the_third_does() {
        let spec = spec().member("a", None);
        let synced = Report {
            observed: observed(vec![image("img", &[("a", MemberStatus::Accepted)])]),
            ..Report::default()
        };
        let ready = build(&spec, Some(1), Ok(&synced), None, &now()).status;
        let blip = build(
            &spec,
            Some(1),
            Err(&Failure::transient("503")),
            Some(&ready),
            &now(),
        )
        .status;
        assert!(hide_blip(Some(&ready), &blip, 0));
        assert!(hide_blip(Some(&ready), &blip, 1));
        assert!(!hide_blip(Some(&ready), &blip, 2));
        let refused = Failure::new(Reason::Forbidden, "403");
        let terminal = build(&spec, Some(1), Err(&refused), Some(&ready), &now()).status;
        assert!(
            !hide_blip(Some(&ready), &terminal, 0),
            "only passing faults"
        );
        let edited = build(
            &spec,
            Some(2),
            Err(&Failure::transient("503")),
            Some(&ready),
            &now(),
        )
        .status;
        assert!(
            !hide_blip(Some(&ready), &edited, 0),
            "a new spec is reported at once"
        );
    }
}
