//! Events (I/O): one per change made in Glance, one per refusal, one per Ready transition
//! and one when a contested status is held back. Reasons come from a fixed set.

use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::{info, warn};

use super::Context;
use super::apply::Outcome;
use super::plan::Step;
use crate::api::ImageShare;

/// One Event per change made in Glance, and one per step OpenStack refused.
pub async fn steps(share: &ImageShare, ctx: &Context, outcomes: &[(Step, Outcome)]) {
    for (step, outcome) in outcomes {
        let (reason, note) = match (step, outcome) {
            (Step::Add { image, project }, Outcome::Done) => (
                "MemberAdded",
                format!("added project {project} to image {image}"),
            ),
            (Step::Remove { image, project }, Outcome::Done) => (
                "MemberRemoved",
                format!("removed project {project} from image {image}"),
            ),
            (
                Step::SetStatus {
                    image,
                    project,
                    status,
                    ..
                },
                Outcome::Done,
            ) => (
                "MemberStatusSet",
                format!("set project {project} on image {image} to {status}"),
            ),
            (_, Outcome::AwaitingConsumer | Outcome::Unchanged) => continue,
            // Passing faults are retried; the log and the Ready condition tell about them.
            (_, Outcome::Failed(f)) if f.is_transient() => continue,
            (_, Outcome::Failed(f)) => (f.reason.as_str(), format!("{step}: {}", f.message)),
        };
        let type_ = match outcome {
            Outcome::Done => EventType::Normal,
            _ => EventType::Warning,
        };
        info!(reason, note = %note, "event");
        publish(share, ctx, type_, reason, &note).await;
    }
}

/// Publishes one Event about `share`; a failure to publish is logged, never fatal.
pub async fn publish(
    share: &ImageShare,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &share.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}
