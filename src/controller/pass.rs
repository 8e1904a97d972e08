//! One pass for a live ImageShare, stage by stage: credentials → observe → claims → plan →
//! (ledger recorded) → apply → status → events, and the choice of when to come back
//! ([`next`], pure). Each stage hands the next a typed value; I/O stays in the stages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::apply::{self, Outcome};
use super::contest::Verdict;
use super::credentials::Sessions;
use super::guard;
use super::ledger::Ledger;
use super::observe::{self, Observed};
use super::plan::{self, ObservedImage, Pair, Plan, Step};
use super::status::{self, Held, Report};
use super::{Context, DEFERRED_RETRY, Error, Failure, MANAGER, backoff, events, overlap, projects};
use crate::api::{ImageShare, ImageShareSpec, ImageShareStatus, Reason, ResolvedProject};

/// When to come back after a pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// A passing fault: the per-object backoff decides (at least `retry_after`); when the pass
    /// also made progress, the backoff starts over.
    Backoff {
        /// The server's Retry-After.
        retry_after: Option<Duration>,
        /// Something changed in Glance despite the fault.
        progressed: bool,
    },
    /// Come back after this long.
    After(Duration),
}

/// Chooses when to come back: transient faults back off (honouring Retry-After); removals
/// waiting for another object (or a second sighting) retry soon; a held status comes back
/// when its hold ends; otherwise the (jittered) resync period. A pass whose writes Glance
/// accepted needs no confirming pass: Glance's answers are the confirmation.
pub fn next(pass: Result<&Report, &Failure>, resync: Duration) -> Next {
    let report = match pass {
        Err(f) if f.is_transient() => {
            return Next::Backoff {
                retry_after: f.retry_after,
                progressed: false,
            };
        }
        Err(_) => return Next::After(resync),
        Ok(report) => report,
    };
    if let Some(f) = report.transient_failure() {
        return Next::Backoff {
            retry_after: f.retry_after,
            progressed: report.changed_anything(),
        };
    }
    if report.deferred {
        return Next::After(DEFERRED_RETRY);
    }
    let hold = report.held.values().map(|h| h.left).min();
    let kept = (report.kept > 0).then_some(KEPT_RETRY);
    let soonest = hold.into_iter().chain(kept).min();
    Next::After(soonest.map_or(resync, |h| h.min(resync)))
}

/// How soon an object that keeps pairs for another object that declares them (without
/// holding them yet) looks again: that object may have let go, or taken them over.
pub const KEPT_RETRY: Duration = Duration::from_secs(30);

/// The longest a pass may take: its resync period, at most two minutes. A pass that runs
/// longer (an endpoint that answers slowly or without end) stops with a transient failure
/// that names it; what it changed so far is safe (the ledger is written before any add).
pub fn deadline(resync: Duration) -> Duration {
    resync.min(Duration::from_secs(120))
}

/// One pass for a live object.
pub async fn sync(
    share: &ImageShare,
    api: &Api<ImageShare>,
    ctx: &Context,
) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(share);
    // The server asked to wait (Retry-After) and the spec did not change: whatever
    // triggered this pass (a Secret event, an annotation) waits too.
    let spec_seen =
        share.status.as_ref().and_then(|s| s.observed_generation) == share.metadata.generation;
    if let Some(left) = ctx.backoff.waiting(&key).filter(|_| spec_seen) {
        return Ok(Action::requeue(left));
    }
    let mut sessions = Sessions::new(&ctx.client, &ctx.clouds, share);
    guard(share, &mut sessions, &ctx.guard_writes).await;
    let resync = resync_period(share, ctx);
    let mut version = share.metadata.resource_version.clone();
    // The pass works on the members the spec stands for once names and the project
    // selector are resolved; the status it writes keeps the spec as written.
    let stages = async {
        match projects::resolve(share, &mut sessions).await {
            Ok(resolved) => {
                let effective = projects::with_effective_members(share, &resolved);
                let pass = run(&effective, api, ctx, &mut sessions, resolved, &mut version).await?;
                Ok::<_, Error>((effective.spec.clone(), pass))
            }
            Err(failure) => Ok((share.spec.clone(), Err(failure))),
        }
    };
    let limit = deadline(resync);
    let (effective, pass) = match tokio::time::timeout(limit, stages).await {
        Ok(done) => done?,
        Err(_) => {
            warn!(seconds = limit.as_secs(), "pass deadline reached; stopped");
            let message = format!(
                "the pass did not finish within {}s (an OpenStack endpoint answered too slowly \
                 or without end); it stopped there and is retried",
                limit.as_secs()
            );
            (share.spec.clone(), Err(Failure::transient(message)))
        }
    };
    let status = write_status(share, &effective, api, ctx, pass.as_ref(), version).await?;
    if let Ok(report) = &pass {
        events::steps(share, ctx, &report.outcomes).await;
    }
    let reason = status
        .conditions
        .first()
        .and_then(|c| Reason::parse(&c.reason))
        .unwrap_or(Reason::TransientError);
    ctx.metrics.count_pass(reason);
    let resync = backoff::jitter(resync);
    Ok(match next(pass.as_ref(), resync) {
        Next::Backoff {
            retry_after,
            progressed,
        } => {
            if progressed {
                ctx.backoff.reset(&key);
            }
            Action::requeue(ctx.backoff.next(&key, retry_after))
        }
        Next::After(delay) => {
            ctx.backoff.reset(&key);
            Action::requeue(delay)
        }
    })
}

/// The stages from observe to apply. `Ok(Err(failure))` is a pass that stopped before
/// observing anything (reported in status); `Err` is Kubernetes API trouble (retried with
/// backoff).
async fn run(
    share: &ImageShare,
    api: &Api<ImageShare>,
    ctx: &Context,
    sessions: &mut Sessions<'_>,
    projects: Vec<ResolvedProject>,
    version: &mut Option<String>,
) -> Result<Result<Report, Failure>, Error> {
    let observed = match observe::observe(share, sessions).await {
        Ok(observed) => observed,
        Err(failure) => return Ok(Err(failure)),
    };
    // Claims are taken after the member lists were read, so a member another object has
    // just added (after recording it) is seen as that object's, not removed and re-added.
    let now = Instant::now();
    let expired = |other: &ImageShare| ctx.holds.expired(other, now);
    let claims = overlap::claims(
        share,
        observed.cloud.as_deref(),
        &ctx.store.state(),
        &expired,
    );
    let key = ObjectRef::from_obj(share);
    let held = contests(share, ctx, &key, &observed).await;
    let previous = Ledger::from_entries(share.status.as_ref().map_or(&[], |s| &s.ledger));
    let history = plan::History {
        held: held.keys().cloned().collect(),
        sighted: ctx.sightings.confirmed(&key, now),
    };
    let plan = plan::plan(&share.spec, &observed.images, &previous, &claims, &history);
    ctx.sightings.record(&key, &plan.sightings, now);
    let mut report = Report {
        deferred: plan.deferred,
        kept: plan.kept,
        held,
        ledger: previous.clone(),
        projects,
        ..Report::default()
    };
    if !share.spec.suspend {
        if !plan.ledger.is_subset(&previous) {
            *version =
                record_ledger(share, api, ctx, &observed, &plan, &report.projects, version).await?;
        }
        report.outcomes = apply::apply(share, sessions, plan.steps.clone(), &ctx.fence).await;
        for (step, outcome) in &report.outcomes {
            if let (Step::SetStatus { status, .. }, Outcome::Done) = (step, outcome) {
                ctx.contests
                    .set(&key, &step.pair(), *status, Instant::now());
            }
        }
        report.ledger = plan.ledger_after(&report.outcomes);
    }
    report.observed = observed;
    report.claims = claims;
    Ok(Ok(report))
}

/// Looks at every managed status this pass observed: which pairs another client keeps
/// reverting, so they are held back (one Warning Event when a hold starts).
async fn contests(
    share: &ImageShare,
    ctx: &Context,
    key: &ObjectRef<ImageShare>,
    observed: &Observed,
) -> BTreeMap<Pair, Held> {
    let now = Instant::now();
    let mut held = BTreeMap::new();
    for image in &observed.images {
        for member in &share.spec.members {
            let (Some(desired), Some(current)) =
                (member.status, image.members.get(&member.project))
            else {
                continue;
            };
            let pair = (image.id.clone(), member.project.clone());
            let verdict = ctx
                .contests
                .observe(key, &pair, desired, *current == desired, now);
            if let Verdict::Held {
                reverts,
                wait,
                left,
                started,
            } = verdict
            {
                if started {
                    let note = format!(
                        "the status of project {} on image {} was changed back to {current} {reverts} \
                         times after it was set to {desired}; next attempt in {}s",
                        member.project,
                        image.id,
                        left.as_secs()
                    );
                    warn!(image_id = %image.id, project = %member.project, reverts, "status contested");
                    events::publish(share, ctx, EventType::Warning, "StatusContested", &note).await;
                }
                held.insert(
                    pair,
                    Held {
                        reverts,
                        wait,
                        left,
                    },
                );
            }
        }
    }
    held
}

/// Credentials stage, before anything else: puts the deletion guard on the producer Secret
/// this object needs, before any member is added (the guard keeper would too, a moment
/// later). Runs on every pass, also when the rest of the pass fails; a failure is logged and
/// retried by the keeper.
async fn guard(share: &ImageShare, sessions: &mut Sessions<'_>, own: &guard::OwnWrites) {
    let (Some(name), Some(producer)) = (guard::needs_guard(share), &share.spec.producer) else {
        return;
    };
    // Reads the Secret (the pass needs it anyway; a broken one still gets the guard).
    let _ = sessions.get(&producer.credentials_ref).await;
    if let Err(e) = sessions.guard(name, own).await {
        warn!(secret = name, error = %e, "could not put the deletion guard on the producer secret");
    }
}

/// Records the grown ledger (and the resolved images and cloud, so other objects see the
/// claim) before any member is added, so a crash after an add cannot forget it. The write
/// carries the resourceVersion the ledger was computed from (`version`); returns the new one.
async fn record_ledger(
    share: &ImageShare,
    api: &Api<ImageShare>,
    ctx: &Context,
    observed: &Observed,
    plan: &Plan,
    projects: &[ResolvedProject],
    version: &Option<String>,
) -> Result<Option<String>, Error> {
    let mut status = share.status.clone().unwrap_or_default();
    status.ledger = plan.ledger.to_entries();
    status.projects = projects.to_vec();
    status.images = observed.images.iter().map(ObservedImage::status).collect();
    status.cloud = observed.cloud.clone();
    if status.conditions.is_empty() {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        status.conditions = status::first_conditions(share.metadata.generation, &now);
    }
    patch_status(share, api, ctx, &status, version).await
}

/// Builds and (only if changed) writes the status; emits an Event when Ready's reason changes.
async fn write_status(
    share: &ImageShare,
    spec: &ImageShareSpec,
    api: &Api<ImageShare>,
    ctx: &Context,
    pass: Result<&Report, &Failure>,
    version: Option<String>,
) -> Result<ImageShareStatus, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let previous = share.status.as_ref();
    let mut new = status::build(spec, share.metadata.generation, pass, previous, &now);
    if !status::needs_write(previous, &new) {
        return Ok(new);
    }
    let streak = ctx.backoff.count(&ObjectRef::from_obj(share));
    if let Some(previous) = previous.filter(|p| status::hide_blip(Some(p), &new, streak)) {
        info!(
            streak,
            "passing fault; Ready stays as it was unless it repeats"
        );
        return Ok(previous.clone());
    }
    if !ctx.fence.may_write() {
        // Nothing written: no "ready changed" log line and no Event either.
        warn!("not the leader any more: status write skipped");
        return Ok(new);
    }
    new.last_sync_time = Some(now);
    patch_status(share, api, ctx, &new, &version).await?;

    let old_reason = share.ready_condition().map(|c| c.reason.clone());
    if let Some(ready) = new.conditions.first()
        && old_reason.as_deref() != Some(ready.reason.as_str())
    {
        let warning = Reason::parse(&ready.reason).is_none_or(Reason::needs_attention);
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        info!(reason = %ready.reason, message = %ready.message, "ready changed");
        events::publish(share, ctx, type_, &ready.reason, &ready.message).await;
    }
    Ok(new)
}

/// The one status writer: a server-side apply of the whole status under [`MANAGER`], with
/// the resourceVersion it was computed from as a precondition (the ledger in it must not
/// overwrite a newer one: a conflict fails the pass, and the next one starts afresh).
/// Returns the new resourceVersion. Skipped (one log line) once this replica may no longer
/// write: the fence never reopens in a term, so the Glance writes of the same pass are
/// refused too.
async fn patch_status(
    share: &ImageShare,
    api: &Api<ImageShare>,
    ctx: &Context,
    status: &ImageShareStatus,
    version: &Option<String>,
) -> Result<Option<String>, Error> {
    if !ctx.fence.may_write() {
        warn!("not the leader any more: status write skipped");
        return Ok(version.clone());
    }
    let patch = serde_json::json!({
        "apiVersion": ImageShare::api_version(&()),
        "kind": ImageShare::kind(&()),
        "metadata": {"resourceVersion": version},
        "status": status,
    });
    let written = api
        .patch_status(
            &share.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    Ok(written.metadata.resource_version)
}

/// The object's resync period (spec, else the operator default), kept within 30s..24h even
/// if the CRD's validation was bypassed.
fn resync_period(share: &ImageShare, ctx: &Context) -> Duration {
    share
        .spec
        .resync_period
        .as_deref()
        .and_then(backoff::parse_duration)
        .unwrap_or(ctx.default_resync)
        .clamp(Duration::from_secs(30), Duration::from_secs(24 * 3600))
}

/// What a pass would see and do (the `plan` command).
#[derive(Debug)]
pub struct Preview {
    /// The spec a pass works on: names and the project selector resolved to project IDs.
    pub spec: ImageShareSpec,
    /// The projects resolved through Keystone (names, the project selector).
    pub projects: Vec<ResolvedProject>,
    /// What Glance shows.
    pub observed: Observed,
    /// What other ImageShares claim.
    pub claims: overlap::Claims,
    /// The steps a pass would take.
    pub plan: Plan,
}

/// A dry run of one pass (the `plan` command): resolves the projects and image(s), reads
/// the members and returns what a pass would observe and do, given all ImageShares (for
/// overlaps). Changes nothing; `Err` is the failure that would stop the pass.
pub async fn preview(
    sessions: &mut Sessions<'_>,
    share: &ImageShare,
    all: &[std::sync::Arc<ImageShare>],
) -> Result<Preview, Failure> {
    let resolved = projects::resolve(share, sessions).await?;
    let share = &projects::with_effective_members(share, &resolved);
    let observed = observe::observe(share, sessions).await?;
    let claims = overlap::claims(share, observed.cloud.as_deref(), all, &|_| false);
    let ledger = Ledger::from_entries(share.status.as_ref().map_or(&[], |s| &s.ledger));
    let images = &observed.images;
    let first = plan::plan(&share.spec, images, &ledger, &claims, &Default::default());
    // What the operator does once it has seen the undeclared members twice.
    let history = plan::History {
        sighted: first.sightings,
        ..Default::default()
    };
    let plan = plan::plan(&share.spec, images, &ledger, &claims, &history);
    Ok(Preview {
        spec: share.spec.clone(),
        projects: resolved,
        observed,
        claims,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MemberStatus;
    use crate::controller::fixtures::image;

    const RESYNC: Duration = Duration::from_secs(600);

    fn report(outcomes: Vec<Outcome>) -> Report {
        Report {
            observed: Observed {
                images: vec![image("img", &[("a", MemberStatus::Pending)])],
                ..Observed::default()
            },
            outcomes: outcomes
                .into_iter()
                .map(|o| {
                    (
                        Step::Remove {
                            image: "img".into(),
                            project: "a".into(),
                        },
                        o,
                    )
                })
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn a_quiet_pass_comes_back_at_the_resync_period() {
        assert_eq!(next(Ok(&report(vec![])), RESYNC), Next::After(RESYNC));
    }

    #[test]
    fn a_pass_whose_writes_succeeded_needs_no_confirming_pass() {
        let done = report(vec![Outcome::Done]);
        assert_eq!(next(Ok(&done), RESYNC), Next::After(RESYNC));
    }

    #[test]
    fn a_transient_fault_backs_off_with_the_servers_retry_after() {
        let mut failure = Failure::transient("429");
        failure.retry_after = Some(Duration::from_secs(42));
        let mixed = report(vec![Outcome::Done, Outcome::Failed(failure.clone())]);
        assert_eq!(
            next(Ok(&mixed), RESYNC),
            Next::Backoff {
                retry_after: Some(Duration::from_secs(42)),
                progressed: true
            }
        );
        assert_eq!(
            next(Err(&failure), RESYNC),
            Next::Backoff {
                retry_after: Some(Duration::from_secs(42)),
                progressed: false
            }
        );
    }

    #[test]
    fn a_terminal_failure_waits_for_the_resync_not_a_hot_loop() {
        let failure = Failure::new(Reason::CredentialsInvalid, "refused");
        assert_eq!(next(Err(&failure), RESYNC), Next::After(RESYNC));
    }

    #[test]
    fn deferred_removals_retry_soon() {
        let mut deferred = report(vec![]);
        deferred.deferred = true;
        assert_eq!(next(Ok(&deferred), RESYNC), Next::After(DEFERRED_RETRY));
    }

    #[test]
    fn a_held_status_comes_back_when_its_hold_ends() {
        let mut held = report(vec![]);
        held.held.insert(
            ("img".into(), "a".into()),
            Held {
                reverts: 2,
                wait: Duration::from_secs(30),
                left: Duration::from_secs(30),
            },
        );
        assert_eq!(
            next(Ok(&held), RESYNC),
            Next::After(Duration::from_secs(30))
        );
    }
}
