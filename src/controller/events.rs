//! Events (I/O): per pass, one per kind of change made in Glance (listing the changes) and
//! one per kind of refusal, plus one per Ready transition and one when a contested status is
//! held back. Reasons come from a fixed set. One Event per change would cost the apiserver
//! more than the changes cost Glance (700 Events for 100 objects x 3 members).

use std::collections::BTreeMap;

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::{info, warn};

use super::apply::Outcome;
use super::plan::Step;
use super::{Context, MANAGER};
use crate::api::ImageShare;

/// The Events for a pass's outcomes: (type, reason, note), one per reason, in a fixed order,
/// each note listing the changes (or refusals) with their ids. Pure.
pub fn summarize(outcomes: &[(Step, Outcome)]) -> Vec<(EventType, &'static str, String)> {
    let mut grouped: BTreeMap<(bool, &'static str), Vec<String>> = BTreeMap::new();
    for (step, outcome) in outcomes {
        let (warning, reason, line) = match (step, outcome) {
            (Step::Add { image, project }, Outcome::Done) => (
                false,
                "MemberAdded",
                format!("added project {project} to image {image}"),
            ),
            (Step::Remove { image, project }, Outcome::Done) => (
                false,
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
                false,
                "MemberStatusSet",
                format!("set project {project} on image {image} to {status}"),
            ),
            (_, Outcome::AwaitingConsumer | Outcome::Unchanged) => continue,
            // Passing faults are retried; the log and the Ready condition tell about them.
            (_, Outcome::Failed(f)) if f.is_transient() => continue,
            (_, Outcome::Failed(f)) => (true, f.reason.as_str(), format!("{step}: {}", f.message)),
        };
        grouped.entry((warning, reason)).or_default().push(line);
    }
    grouped
        .into_iter()
        .map(|((warning, reason), lines)| {
            let type_ = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let note = match lines.as_slice() {
                [one] => one.clone(),
                many => format!("{} changes: {}", many.len(), many.join("; ")),
            };
            (type_, reason, note)
        })
        .collect()
}

/// Publishes the Events of a pass's outcomes (see [`summarize`]).
pub async fn steps(share: &ImageShare, ctx: &Context, outcomes: &[(Step, Outcome)]) {
    for (type_, reason, note) in summarize(outcomes) {
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
    // A recorder per Event: kube's recorder folds Events of the same reason about the same
    // object within 6 minutes into a series that keeps the first note (a later
    // MemberAdded would show the ids of the first), and caches every Event it published
    // (10,000 objects: 10,000 Events held for 6 minutes, each publish scanning them all).
    let recorder = Recorder::new(ctx.client.clone(), Reporter::from(MANAGER));
    if let Err(e) = recorder.publish(&event, &share.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Failure;

    fn add(project: &str) -> Step {
        Step::Add {
            image: "img".into(),
            project: project.into(),
        }
    }

    #[test]
    fn a_pass_gets_one_event_per_kind_of_change_listing_them() {
        let refused = Failure::new(crate::api::Reason::Forbidden, "403");
        let events = summarize(&[
            (add("a"), Outcome::Done),
            (add("b"), Outcome::Done),
            (add("c"), Outcome::Unchanged),
            (add("d"), Outcome::Failed(Failure::transient("503"))),
            (add("e"), Outcome::Failed(refused)),
        ]);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].1, "MemberAdded");
        assert_eq!(
            events[0].2,
            "2 changes: added project a to image img; added project b to image img"
        );
        assert_eq!(events[1].0, EventType::Warning);
        assert_eq!(events[1].1, "Forbidden");
        assert!(events[1].2.contains("project e"));
    }
}
