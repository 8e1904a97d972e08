//! Apply step (I/O): executes a plan against Glance. Every call is idempotent (409 on add, and
//! 404 on remove once a member list or image list confirms it, count as success), so a crash
//! at any point is repaired by the next pass. Steps
//! of one member run in order; different members run concurrently (bounded, and each cloud
//! credential has its own request limit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::{Instrument, debug, debug_span, warn};

use super::ledger::Ledger;
use super::model::{Action, Failure, Identity, MemberKey, Outcome, Step};
use super::ports::{Connect, Glance};
use crate::api::{ImageShare, Reason};
use crate::leader::Fence;
use crate::openstack;

/// A step with its plan position and the session to run it with (or why there is none).
type Planned<S> = (usize, Step, Result<Arc<S>, Failure>);

/// Members worked on at once within one object.
const MEMBER_CONCURRENCY: usize = 16;

/// Runs `steps` (each in the region `routes` records for its image) and returns each with
/// its outcome, in plan order. No call is sent once
/// `fence` says this replica may no longer write: the step fails transiently instead.
pub async fn apply<C: Connect>(
    share: &ImageShare,
    sessions: &mut C,
    steps: Vec<Step>,
    routes: &Ledger,
    fence: &Fence,
) -> Vec<(Step, Outcome)> {
    // Resolve every identity first (each Secret read once), then run without borrowing.
    let mut groups: BTreeMap<MemberKey, Vec<Planned<C::Session>>> = BTreeMap::new();
    for (index, step) in steps.into_iter().enumerate() {
        // The Glance of the image's region (spec.regions), else the credential's own.
        let region = routes.region_of(&step.key.image);
        let cref = match step.identity() {
            Identity::Consumer(cref) => Some(cref),
            Identity::Producer => share.spec.producer.as_ref().map(|p| &p.credentials_ref),
        };
        let session = match cref {
            Some(cref) => sessions.session(cref, region).await,
            None => Err(Failure::new(
                Reason::Forbidden,
                "no producer credentials to add or remove members",
            )),
        };
        groups
            .entry(step.key.clone())
            .or_default()
            .push((index, step, session));
    }
    let mut results: Vec<(usize, Step, Outcome)> = futures::stream::iter(groups.into_values())
        .map(|group| run_group(group, fence))
        .buffer_unordered(MEMBER_CONCURRENCY)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    results.sort_by_key(|(index, _, _)| *index);
    results.into_iter().map(|(_, s, o)| (s, o)).collect()
}

/// Runs one member's steps in order, in a span naming the image and project; stops at the
/// first failure.
async fn run_group<S: Glance>(
    group: Vec<Planned<S>>,
    fence: &Fence,
) -> Vec<(usize, Step, Outcome)> {
    let Some((_, first, _)) = group.first() else {
        return Vec::new();
    };
    let MemberKey { image, project } = &first.key;
    let span = debug_span!("member", image_id = %image, %project);
    run_steps(group, fence).instrument(span).await
}

async fn run_steps<S: Glance>(
    group: Vec<Planned<S>>,
    fence: &Fence,
) -> Vec<(usize, Step, Outcome)> {
    let mut done = Vec::new();
    let mut failed = false;
    for (index, step, session) in group {
        let outcome = if failed {
            continue;
        } else {
            match session {
                Ok(session) => run_step(&*session, &step, fence).await,
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
async fn run_step(session: &impl Glance, step: &Step, fence: &Fence) -> Outcome {
    let mut attempt = 1;
    loop {
        // Checked before the call, and the call is cut off when the fence closes while it
        // waits for a request slot (so nothing is sent after the fence time).
        let Some(left) = fence.left(std::time::Instant::now()) else {
            warn!(step = %step, "not the leader any more: Glance write not sent");
            return Outcome::Failed(Failure::transient("not the leader any more"));
        };
        let Ok(outcome) = tokio::time::timeout(left, try_step(session, step)).await else {
            warn!(step = %step, "not the leader any more: Glance write cut off");
            return Outcome::Failed(Failure::transient("not the leader any more"));
        };
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

async fn try_step(session: &impl Glance, step: &Step) -> Outcome {
    use openstack::Error;
    let (image, project) = (step.key.image.as_str(), step.key.project.as_str());
    match &step.action {
        Action::Add => match session.create_member(image, project).await {
            Ok(_) => Outcome::Done,
            Err(Error::Conflict { .. }) => Outcome::Unchanged,
            Err(e) => Outcome::Failed(e.into()),
        },
        // A 404 counts as "already gone" only once Glance confirmed it (remove_member);
        // doubt is a transient failure, so the member stays in the ledger and is retried.
        Action::Remove => match session.remove_member(image, project).await {
            Ok(openstack::Removal::Removed) => Outcome::Done,
            Ok(openstack::Removal::AlreadyGone) => Outcome::Unchanged,
            Err(e) => Outcome::Failed(e.into()),
        },
        Action::SetStatus { status, identity } => match (
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::leader::Renewals;
    use crate::openstack::{CloudConfig, Session};

    /// A session whose Keystone is a listener that counts connections and never answers.
    async fn silent_cloud() -> (Session, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                open.push(stream);
            }
        });
        let yaml = format!(
            "clouds: {{test: {{auth: {{auth_url: 'http://127.0.0.1:{port}/v3', user_id: u, password: p, project_id: x}}}}}}"
        );
        let config = CloudConfig::from_clouds_yaml(&yaml, "test", None).unwrap();
        (Session::new(config, 4), connections)
    }

    fn add() -> Step {
        Step::add(MemberKey::new("img", "p"))
    }

    /// Whether the stand-in has accepted a connection within 2 s.
    async fn reached(connections: &AtomicUsize) -> bool {
        for _ in 0..40 {
            if connections.load(Ordering::SeqCst) > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn refused(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Failed(f) if f.is_transient() && f.message == "not the leader any more")
    }

    #[tokio::test]
    async fn a_closed_fence_refuses_the_write_without_sending_anything() {
        let (session, connections) = silent_cloud().await;
        let fence = Fence::holding(Renewals::new(Instant::now(), Duration::from_secs(10)));
        fence.close();
        let outcome = run_step(&session, &add(), &fence).await;
        assert!(refused(&outcome), "{outcome:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(connections.load(Ordering::SeqCst), 0, "a call was sent");
    }

    #[tokio::test]
    async fn a_write_under_way_when_the_fence_closes_is_cut_off_at_the_fence_time() {
        let (session, connections) = silent_cloud().await;
        let start = Instant::now();
        let fence = Fence::holding(Renewals::new(start, Duration::from_secs(1)));
        let outcome = run_step(&session, &add(), &fence).await;
        assert!(refused(&outcome), "{outcome:?}");
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(reached(&connections).await, "the call had begun");
        assert!(!fence.may_write());
    }

    #[tokio::test]
    async fn without_leader_election_the_call_is_made() {
        let (session, connections) = silent_cloud().await;
        let (step, fence) = (add(), Fence::unfenced());
        let call = run_step(&session, &step, &fence);
        // The stand-in never answers: the call is under way, not refused.
        let waited = tokio::time::timeout(Duration::from_secs(1), call).await;
        assert!(waited.is_err(), "{waited:?}");
        assert!(reached(&connections).await, "the call was made");
    }
}
