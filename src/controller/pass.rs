//! One pass, the one pipeline the operator and `plan` share: projects → observe → claims →
//! plan → (ledger recorded) → apply, returning a [`PassResult`] ([`run`]). The operator's
//! [`sync`] wraps it: a server's Retry-After first, the deadline, then the status, Events,
//! metric and requeue derived from the result. `plan` ([`preview`]) runs the same pass with
//! Glance writes and the writer turned into no-ops. Every outside call goes through the
//! seams of [`super::ports`], so a whole pass runs in-process in tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use super::apply;
use super::backoff;
use super::contest::{Held, Verdict};
use super::error::{Error, Operation};
use super::events;
use super::ledger::Ledger;
use super::memory::Memory;
use super::model::{Action, Failure, MemberKey, Outcome};
use super::observe::{self, Observed};
use super::overlap;
use super::plan::{self, History, Plan};
use super::ports::{Connect, NoWrites, Preview, Writer};
use super::projects;
use super::report::{self, Next, PassResult, Report};
use super::status;
use crate::api::{ImageShare, ImageShareStatus, Reason, ResolvedProject};
use crate::leader::Fence;
use crate::metrics::Metrics;

/// What a pass works with besides the object itself.
pub struct Deps<'a, C, W> {
    /// Opens OpenStack sessions per credential.
    pub connect: C,
    /// Writes status and Events.
    pub writer: &'a W,
    /// What earlier passes remembered.
    pub memory: &'a Memory,
    /// Every ImageShare the controller knows (for overlaps).
    pub others: &'a [Arc<ImageShare>],
    /// Whether this replica may still write.
    pub fence: &'a Fence,
}

/// Whose pass it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The operator's: what it has not seen twice yet (an undeclared member) waits.
    Operator,
    /// `plan`'s: what the operator would do once it has seen everything twice, also for a
    /// suspended object (its changes are what it would do once resumed).
    Preview,
}

/// The longest a pass may take: its resync period, at most two minutes. A pass that runs
/// longer (an endpoint that answers slowly or without end) stops with a transient failure
/// that names it; what it changed so far is safe (the ledger is written before any add).
pub fn deadline(resync: Duration) -> Duration {
    resync.min(Duration::from_secs(120))
}

/// The operator's pass for a live object: returns how soon to come back.
pub async fn sync<C: Connect, W: Writer>(
    share: &ImageShare,
    mut deps: Deps<'_, C, W>,
    metrics: &Metrics,
    default_resync: Duration,
) -> Result<Duration, Error> {
    let key = ObjectRef::from_obj(share);
    // The server asked to wait (Retry-After) and the spec did not change: whatever
    // triggered this pass (a Secret event, an annotation) waits too.
    let spec_seen =
        share.status.as_ref().and_then(|s| s.observed_generation) == share.metadata.generation;
    if let Some(left) = deps.memory.waiting(&key).filter(|_| spec_seen) {
        return Ok(left);
    }
    let resync = resync_period(share, default_resync);
    let limit = deadline(resync);
    let mut version = share.metadata.resource_version.clone();
    let pass = run(share, &mut deps, Mode::Operator, &mut version);
    let result = match tokio::time::timeout(limit, pass).await {
        Ok(done) => done?,
        Err(_) => {
            warn!(seconds = limit.as_secs(), "pass deadline reached; stopped");
            let message = format!(
                "the pass did not finish within {}s (an OpenStack endpoint answered too slowly \
                 or without end); it stopped there and is retried",
                limit.as_secs()
            );
            PassResult {
                spec: share.spec.clone(),
                outcome: Err(Failure::transient(message)),
            }
        }
    };
    let (reason, ready) = write_status(share, &deps, &result, version).await?;
    for note in events::of_pass(&result, ready.as_ref().map(|(r, m)| (*r, m.as_str()))) {
        info!(reason = note.reason, note = %note.note, "event");
        deps.writer.event(share, &note).await;
    }
    metrics.count_pass(reason);
    Ok(match report::next(result.pass(), backoff::jitter(resync)) {
        Next::Backoff {
            retry_after,
            progressed,
        } => {
            if progressed {
                deps.memory.succeeded(&key);
            }
            deps.memory.failed(&key, retry_after)
        }
        Next::After(delay) => {
            deps.memory.succeeded(&key);
            delay
        }
    })
}

/// A dry run of one pass (the `plan` command): the operator's pass with Glance writes and
/// the writer turned into no-ops, given all ImageShares (for overlaps). Changes nothing.
pub async fn preview<C: Connect>(
    connect: C,
    share: &ImageShare,
    all: &[Arc<ImageShare>],
) -> Result<PassResult, Error> {
    let memory = Memory::default();
    let mut deps = Deps {
        connect: Preview(connect),
        writer: &NoWrites,
        memory: &memory,
        others: all,
        fence: &Fence::unfenced(),
    };
    let mut version = share.metadata.resource_version.clone();
    run(share, &mut deps, Mode::Preview, &mut version).await
}

/// The stages of one pass. A failure that stops it before it observed anything is in the
/// result (reported in status); `Err` is Kubernetes API trouble (retried with backoff).
/// `version` follows the object's resourceVersion through the pass's own writes.
pub async fn run<C: Connect, W: Writer>(
    share: &ImageShare,
    deps: &mut Deps<'_, C, W>,
    mode: Mode,
    version: &mut Option<String>,
) -> Result<PassResult, Error> {
    let stopped = |spec: &crate::api::ImageShareSpec, failure| PassResult {
        spec: spec.clone(),
        outcome: Err(failure),
    };
    // The pass works on the members the spec stands for once names and the project
    // selector are resolved; the status it writes keeps the spec as written.
    let resolved = match projects::resolve(share, &mut deps.connect).await {
        Ok(resolved) => resolved,
        Err(failure) => return Ok(stopped(&share.spec, failure)),
    };
    let effective = projects::with_effective_members(share, &resolved);
    let share = &*effective;
    let observed = match observe::observe(share, &mut deps.connect).await {
        Ok(observed) => observed,
        Err(failure) => return Ok(stopped(&share.spec, failure)),
    };
    // Claims are taken after the member lists were read, so a member another object has
    // just added (after recording it) is seen as that object's, not removed and re-added.
    let now = Instant::now();
    let memory = deps.memory;
    let expired = |other: &ImageShare| memory.hold_expired(other, now);
    let mine = observed.clouds.values().map(String::as_str).collect();
    let claims = overlap::claims(share, &mine, deps.others, &expired);
    let key = ObjectRef::from_obj(share);
    let held = contests(share, memory, &key, &observed, now);
    let previous = Ledger::from_entries(share.status.as_ref().map_or(&[], |s| &s.ledger));
    let history = History {
        held: held.keys().cloned().collect(),
        unreachable: observed.region_failures.keys().cloned().collect(),
        sighted: match mode {
            Mode::Operator => memory.confirmed_sightings(&key, now),
            Mode::Preview => observed
                .images
                .iter()
                .flat_map(|i| i.members.keys().map(|p| i.key(p.clone())))
                .collect(),
        },
    };
    let plan = plan::plan(&share.spec, &observed.images, &previous, &claims, &history);
    memory.record_sightings(&key, &plan.sightings, now);
    let mut report = Report {
        deferred: plan.deferred,
        waiting: plan.waiting,
        kept: plan.kept,
        held,
        ledger: previous.clone(),
        projects: resolved,
        ..Report::default()
    };
    if !share.spec.suspend || mode == Mode::Preview {
        if !plan.ledger.is_subset(&previous) {
            *version = record_ledger(
                share,
                deps.writer,
                &observed,
                &plan,
                &report.projects,
                version,
            )
            .await?;
        }
        let (steps, routes) = (plan.steps.clone(), &plan.ledger);
        report.outcomes = apply::apply(share, &mut deps.connect, steps, routes, deps.fence).await;
        for (step, outcome) in &report.outcomes {
            if let (Action::SetStatus { status, .. }, Outcome::Done) = (&step.action, outcome) {
                memory.status_set(&key, &step.key, *status, Instant::now());
            }
        }
        report.ledger = plan.ledger_after(&report.outcomes);
    }
    report.observed = observed;
    report.claims = claims;
    Ok(PassResult {
        spec: share.spec.clone(),
        outcome: Ok(report),
    })
}

/// Looks at every managed status this pass observed: which members another client keeps
/// reverting, so they are held back.
fn contests(
    share: &ImageShare,
    memory: &Memory,
    key: &ObjectRef<ImageShare>,
    observed: &Observed,
    now: Instant,
) -> BTreeMap<MemberKey, Held> {
    let mut held = BTreeMap::new();
    for image in &observed.images {
        for member in &share.spec.members {
            let (Some(desired), Some(current)) =
                (member.status, image.members.get(member.project.as_str()))
            else {
                continue;
            };
            let member = image.key(&member.project);
            let in_sync = *current == desired;
            if let Verdict::Held(h) = memory.observe_status(key, &member, desired, in_sync, now) {
                if h.started {
                    warn!(image_id = %member.image, project = %member.project, reverts = h.reverts, "status contested");
                }
                held.insert(member, h);
            }
        }
    }
    held
}

/// Records the grown ledger (and the resolved images and cloud, so other objects see the
/// claim) before any member is added, so a crash after an add cannot forget it. The write
/// carries the resourceVersion the ledger was computed from; returns the new one.
async fn record_ledger(
    share: &ImageShare,
    writer: &impl Writer,
    observed: &Observed,
    plan: &Plan,
    projects: &[ResolvedProject],
    version: &Option<String>,
) -> Result<Option<String>, Error> {
    let mut status = share.status.clone().unwrap_or_default();
    status.ledger = plan.ledger.to_entries();
    status.projects = projects.to_vec();
    status.images = observed.images.iter().map(|i| i.status()).collect();
    status.cloud = observed.cloud().map(String::from);
    status.region_clouds = observed.region_clouds();
    if status.conditions.is_empty() {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        status.conditions = status::first_conditions(share.metadata.generation, &now);
    }
    writer
        .status(share, &status, version.clone(), Operation::RecordLedger)
        .await
}

/// Builds the status from the result and writes it when it changed (not a passing blip,
/// and only while this replica may write). Returns the pass's Ready reason, and the new
/// Ready reason and message when the written status changed it (for its Event).
async fn write_status<C, W: Writer>(
    share: &ImageShare,
    deps: &Deps<'_, C, W>,
    result: &PassResult,
    version: Option<String>,
) -> Result<(Reason, Option<(Reason, String)>), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let previous = share.status.as_ref();
    let generation = share.metadata.generation;
    let status::Built { mut status, reason } =
        status::build(&result.spec, generation, result.pass(), previous, &now);
    if !status::needs_write(previous, &status) {
        return Ok((reason, None));
    }
    let streak = deps.memory.failures(&ObjectRef::from_obj(share));
    if status::hide_blip(previous, &status, streak) {
        info!(
            streak,
            "passing fault; Ready stays as it was unless it repeats"
        );
        return Ok((reason, None));
    }
    if !deps.fence.may_write() {
        // Nothing written: no "ready changed" log line and no Event either.
        warn!("not the leader any more: status write skipped");
        return Ok((reason, None));
    }
    status.last_sync_time = Some(now);
    deps.writer
        .status(share, &status, version, Operation::UpdateStatus)
        .await?;
    let changed = ready_changed(previous, &status);
    if let Some(message) = &changed {
        info!(reason = %reason, message = %message, "ready changed");
    }
    Ok((reason, changed.map(|m| (reason, m))))
}

/// The new Ready message, when Ready's reason changed from `previous` to `new`.
fn ready_changed(previous: Option<&ImageShareStatus>, new: &ImageShareStatus) -> Option<String> {
    let reason = |s: &ImageShareStatus| s.conditions.first().map(|c| c.reason.clone());
    let ready = new.conditions.first()?;
    (previous.and_then(reason) != Some(ready.reason.clone())).then(|| ready.message.clone())
}

/// The object's resync period (spec, else the operator default), kept within 30s..24h even
/// if the CRD's validation was bypassed.
fn resync_period(share: &ImageShare, default: Duration) -> Duration {
    share
        .spec
        .resync_period
        .as_deref()
        .and_then(backoff::parse_duration)
        .unwrap_or(default)
        .clamp(Duration::from_secs(30), Duration::from_secs(24 * 3600))
}
