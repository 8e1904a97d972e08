//! Apply step (I/O): executes a plan against Glance. Every call is idempotent (409 on add, and
//! 404 on remove once a member list or image list confirms it, count as success), so a crash
//! at any point is repaired by the next pass. Steps
//! of one member run in order; different members run concurrently (bounded, and each cloud
//! credential has its own request limit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::{Instrument, debug, debug_span};

use super::credentials::Sessions;
use super::plan::{Identity, Pair, Step};
use super::{Failure, Reason};
use crate::api::ImageShare;
use crate::openstack::{self, Session};

/// What happened to one step of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Glance made the change.
    Done,
    /// Glance already was as planned (409 on add, a confirmed 404 on remove): success, no
    /// change.
    Unchanged,
    /// The producer may not set this status and no consumer credentials were given.
    AwaitingConsumer,
    /// The call failed.
    Failed(Failure),
}

/// A step with its plan position and the session to run it with (or why there is none).
type Planned = (usize, Step, Result<Arc<Session>, Failure>);

/// Members worked on at once within one object.
const MEMBER_CONCURRENCY: usize = 16;

/// Runs `steps` and returns each with its outcome, in plan order.
pub async fn apply(
    share: &ImageShare,
    sessions: &mut Sessions<'_>,
    steps: Vec<Step>,
) -> Vec<(Step, Outcome)> {
    let producer = match &share.spec.producer {
        Some(p) => Some(sessions.get(&p.credentials_ref).await),
        None => None,
    };
    // Resolve every identity first (each Secret read once), then run without borrowing.
    let mut groups: BTreeMap<Pair, Vec<Planned>> = BTreeMap::new();
    for (index, step) in steps.into_iter().enumerate() {
        let session = match &step {
            Step::SetStatus {
                identity: Identity::Consumer(cref),
                ..
            } => sessions.get(cref).await,
            _ => producer.clone().unwrap_or_else(|| {
                Err(Failure::new(
                    Reason::Forbidden,
                    "no producer credentials to add or remove members",
                ))
            }),
        };
        groups
            .entry(step.pair())
            .or_default()
            .push((index, step, session));
    }
    let mut results: Vec<(usize, Step, Outcome)> = futures::stream::iter(groups.into_values())
        .map(run_group)
        .buffer_unordered(MEMBER_CONCURRENCY)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    results.sort_by_key(|(index, _, _)| *index);
    results.into_iter().map(|(_, s, o)| (s, o)).collect()
}

/// Runs one member's steps in order, in a span naming the image and project; stops at the
/// first failure.
async fn run_group(group: Vec<Planned>) -> Vec<(usize, Step, Outcome)> {
    let Some((_, first, _)) = group.first() else {
        return Vec::new();
    };
    let (image_id, project) = first.pair();
    let span = debug_span!("member", %image_id, %project);
    run_steps(group).instrument(span).await
}

async fn run_steps(group: Vec<Planned>) -> Vec<(usize, Step, Outcome)> {
    let mut done = Vec::new();
    let mut failed = false;
    for (index, step, session) in group {
        let outcome = if failed {
            continue;
        } else {
            match session {
                Ok(session) => run_step(&session, &step).await,
                Err(failure) => Outcome::Failed(failure),
            }
        };
        debug!(step = %step, outcome = ?outcome, "step");
        failed = matches!(outcome, Outcome::Failed(_));
        done.push((index, step, outcome));
    }
    done
}

/// Attempts per step when Glance answers with a transient fault; every call is idempotent, so
/// retrying is safe. What still fails goes to the per-object backoff.
const STEP_ATTEMPTS: u32 = 3;
/// Longest server-requested delay worth waiting for inside a pass.
const STEP_RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs one step, retrying transient faults (a 5xx from a busy Glance, a dropped
/// connection) a few times with a short, growing, jittered pause.
async fn run_step(session: &Session, step: &Step) -> Outcome {
    let mut attempt = 1;
    loop {
        let outcome = try_step(session, step).await;
        let Outcome::Failed(failure) = &outcome else {
            return outcome;
        };
        let pause = Duration::from_millis(100 * 2u64.pow(attempt))
            .mul_f64(1.0 + fastrand::f64())
            .max(failure.retry_after.unwrap_or_default());
        if !failure.is_transient() || attempt >= STEP_ATTEMPTS || pause > STEP_RETRY_MAX {
            return outcome;
        }
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

async fn try_step(session: &Session, step: &Step) -> Outcome {
    use openstack::Error;
    match step {
        Step::Add { image, project } => match session.create_member(image, project).await {
            Ok(_) => Outcome::Done,
            Err(Error::Conflict { .. }) => Outcome::Unchanged,
            Err(e) => Outcome::Failed(e.into()),
        },
        // A 404 counts as "already gone" only once Glance confirmed it (remove_member);
        // doubt is a transient failure, so the pair stays in the ledger and is retried.
        Step::Remove { image, project } => match session.remove_member(image, project).await {
            Ok(openstack::Removal::Removed) => Outcome::Done,
            Ok(openstack::Removal::AlreadyGone) => Outcome::Unchanged,
            Err(e) => Outcome::Failed(e.into()),
        },
        Step::SetStatus {
            image,
            project,
            status,
            identity,
        } => match (
            session.update_member_status(image, project, *status).await,
            identity,
        ) {
            (Ok(_), _) => Outcome::Done,
            (
                Err(
                    Error::NotFound { .. }
                    | Error::Terminal {
                        kind: openstack::TerminalKind::Forbidden,
                        ..
                    },
                ),
                Identity::Producer,
            ) => Outcome::AwaitingConsumer,
            (Err(Error::NotFound { .. }), Identity::Consumer(_)) => Outcome::Failed(Failure::new(
                Reason::ImageNotFound,
                format!("project {project} is not a member of image {image}"),
            )),
            (Err(e), _) => Outcome::Failed(e.into()),
        },
    }
}
