//! Deletion (I/O): with deletionPolicy Delete, remove every member in the object's ledger
//! (except pairs another trusted object declares), then let the finalizer go (the guard
//! keeper releases the producer Secret once no object needs it). Never blocks forever: terminal failures and
//! transient ones that outlast [`GIVE_UP`] release the finalizer with a Warning Event.

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use super::apply;
use super::context::Context;
use super::credentials::Sessions;
use super::error::Error;
use super::events;
use super::ledger::Ledger;
use super::model::Outcome;
use super::overlap;
use super::plan::cleanup_plan;
use super::ports::{Note, Writer};
use crate::api::{DeletionPolicy, ImageShare, Reason};

/// How long a Delete cleanup may keep failing transiently before the finalizer is released.
pub const GIVE_UP: Duration = Duration::from_secs(15 * 60);

/// Cleans up a deleted ImageShare; `Ok` lets the finalizer go, `Err` retries later.
pub async fn cleanup(share: &ImageShare, ctx: &Context) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(share);
    let all = ctx.store.state();
    let mut sessions = Sessions::new(&ctx.client, &ctx.clouds, share).knowing(ctx.known_secrets());
    let spec = &share.spec;
    // Orphan keeps the members; so does a suspended object (it changes nothing); without a
    // producer there is nothing this object may remove.
    let removes =
        spec.deletion_policy == DeletionPolicy::Delete && !spec.suspend && spec.producer.is_some();
    let ledger = Ledger::from_entries(share.status.as_ref().map_or(&[], |s| &s.ledger));
    if removes && !ledger.is_empty() {
        let status = share.status.as_ref();
        let clouds = status.map(|s| s.cloud.iter().chain(s.region_clouds.values()));
        let mine = clouds.into_iter().flatten().map(String::as_str).collect();
        let now = std::time::Instant::now();
        let expired = |other: &ImageShare| ctx.memory.hold_expired(other, now);
        let plan = cleanup_plan(&ledger, &overlap::claims(share, &mine, &all, &expired));
        let outcomes = apply::apply(share, &mut sessions, plan.steps, &ledger, &ctx.fence).await;
        for note in events::of_steps(&outcomes) {
            info!(reason = note.reason, note = %note.note, "event");
            ctx.writer.event(share, &note).await;
        }
        let failures: Vec<_> = outcomes
            .iter()
            .filter_map(|(step, o)| match o {
                Outcome::Failed(f) => Some((step, f)),
                _ => None,
            })
            .collect();
        let transient = failures.iter().find(|(_, f)| f.is_transient());
        if (transient.is_some() || plan.deferred) && deleting_for(share, ctx) < GIVE_UP {
            return Err(match transient {
                Some((step, f)) => {
                    Error::CleanupPending(format!("{step}: {}", f.message), f.retry_after)
                }
                None => Error::CleanupDeferred(
                    "waiting for another ImageShare that may declare these members to be \
                     processed"
                        .to_string(),
                ),
            });
        }
        let left = failures.len() + plan.waiting;
        if left > 0 {
            let (reason, first) = match failures.first() {
                Some((step, f)) => (f.reason.as_str(), format!("{step}: {}", f.message)),
                None => (
                    Reason::Conflict.as_str(),
                    "another ImageShare that may declare them was never processed".to_string(),
                ),
            };
            let note = format!(
                "{left} member(s) may be left in Glance; finalizer released; first: {first}"
            );
            warn!(reason, note = %note, "cleanup gave up");
            let note = Note {
                warning: true,
                reason,
                note,
            };
            ctx.writer.event(share, &note).await;
        }
    }
    ctx.memory.forget(&key);
    Ok(Action::await_change())
}

/// How long the operator has been trying to clean up: since the object was marked for
/// deletion, or since this operator started if that was later (an operator that was down
/// for a while still gets its full retry time).
fn deleting_for(share: &ImageShare, ctx: &Context) -> Duration {
    share
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| {
            let since = t.0.max(ctx.started);
            let secs = k8s_openapi::jiff::Timestamp::now()
                .duration_since(since)
                .as_secs();
            Duration::from_secs(secs.max(0).unsigned_abs())
        })
        .unwrap_or_default()
}
