//! The Events of a pass, decided by one pure function ([`of_pass`]): one per kind of change
//! made in Glance (listing the changes) and one per kind of refusal, one per Ready
//! transition, and one when a contested status is held back. Reasons come from a fixed set.
//! One Event per change would cost the apiserver more than the changes cost Glance (700
//! Events for 100 objects x 3 members). The writer ([`super::ports::Writer::event`])
//! publishes them.

use std::collections::BTreeMap;

use super::model::{Action, Outcome, Step};
use super::ports::Note;
use super::report::PassResult;
use crate::api::Reason;

/// The Events of a pass: held statuses that began a hold, the Ready transition (`ready`: the
/// new reason and message, when the written status changed Ready's reason), then the changes
/// and refusals. Pure.
pub fn of_pass(result: &PassResult, ready: Option<(Reason, &str)>) -> Vec<Note> {
    let mut notes = Vec::new();
    if let Ok(report) = result.pass() {
        for (key, held) in report.held.iter().filter(|(_, h)| h.started) {
            let desired = result
                .spec
                .members
                .iter()
                .find(|m| m.project == key.project.as_str())
                .and_then(|m| m.status);
            let current = report
                .observed
                .images
                .iter()
                .find(|i| i.id == key.image)
                .and_then(|i| i.members.get(&key.project));
            let (Some(desired), Some(current)) = (desired, current) else {
                continue;
            };
            notes.push(Note {
                warning: true,
                reason: "StatusContested",
                note: format!(
                    "the status of project {} on image {} was changed back to {current} {} \
                     times after it was set to {desired}; next attempt in {}s",
                    key.project,
                    key.image,
                    held.reverts,
                    held.left.as_secs()
                ),
            });
        }
    }
    if let Some((reason, message)) = ready {
        notes.push(Note {
            warning: reason.needs_attention(),
            reason: reason.as_str(),
            note: message.to_string(),
        });
    }
    if let Ok(report) = result.pass() {
        notes.extend(of_steps(&report.outcomes));
    }
    notes
}

/// The Events for steps' outcomes, one per reason, in a fixed order, each note listing the
/// changes (or refusals) with their ids. Pure.
pub fn of_steps(outcomes: &[(Step, Outcome)]) -> Vec<Note> {
    let mut grouped: BTreeMap<(bool, &'static str), Vec<String>> = BTreeMap::new();
    for (step, outcome) in outcomes {
        let (project, image) = (&step.key.project, &step.key.image);
        let (warning, reason, line) = match (&step.action, outcome) {
            (Action::Add, Outcome::Done) => (
                false,
                "MemberAdded",
                format!("added project {project} to image {image}"),
            ),
            (Action::Remove, Outcome::Done) => (
                false,
                "MemberRemoved",
                format!("removed project {project} from image {image}"),
            ),
            (Action::SetStatus { status, .. }, Outcome::Done) => (
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
        .map(|((warning, reason), lines)| Note {
            warning,
            reason,
            note: match lines.as_slice() {
                [one] => one.clone(),
                many => format!("{} changes: {}", many.len(), many.join("; ")),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::model::{Failure, MemberKey};

    fn add(project: &str) -> Step {
        Step::add(MemberKey::new("img", project))
    }

    #[test]
    fn a_pass_gets_one_event_per_kind_of_change_listing_them() {
        let refused = Failure::new(Reason::Forbidden, "403");
        let events = of_steps(&[
            (add("a"), Outcome::Done),
            (add("b"), Outcome::Done),
            (add("c"), Outcome::Unchanged),
            (add("d"), Outcome::Failed(Failure::transient("503"))),
            (add("e"), Outcome::Failed(refused)),
        ]);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].reason, "MemberAdded");
        assert_eq!(
            events[0].note,
            "2 changes: added project a to image img; added project b to image img"
        );
        assert!(events[1].warning);
        assert_eq!(events[1].reason, "Forbidden");
        assert!(events[1].note.contains("project e"));
    }
}
