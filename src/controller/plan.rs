//! The plan: a pure function of (spec, observed Glance state, ledger, claims of other
//! ImageShares) that says which calls to make. Nothing else decides what to call. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::ledger::Ledger;
use super::model::{Action, Identity, ImageId, MemberKey, ObservedImage, Outcome, Step};
use super::overlap::Claims;
use crate::api::{ImageShareSpec, MemberStatus, Membership};

/// What earlier passes of the same object learned (kept in memory by the controller).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Members whose status is held back because another client keeps reverting it.
    pub held: BTreeSet<MemberKey>,
    /// Undeclared members an earlier pass already saw (long enough ago for the claims of an
    /// object that has just added them to be in the cache): Exclusive removes only those.
    pub sighted: BTreeSet<MemberKey>,
    /// Regions this pass could not observe: nothing recorded in them is removed.
    pub unreachable: BTreeSet<String>,
}

/// The calls to make in one pass, ordered per member (add before status), and the ledger
/// they work towards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps in order; steps of different members are independent.
    pub steps: Vec<Step>,
    /// Removals held back because another ImageShare with a producer that may declare the
    /// member has not processed its current spec yet; the caller retries soon.
    pub deferred: bool,
    /// Removals held back (counted when `deferred`).
    pub waiting: usize,
    /// Members this object no longer declares but keeps in its ledger (no removal) because
    /// another object declares them without holding them in its own ledger yet (suspended,
    /// failing, not processed): removed once that object lets go, handed over once it holds
    /// them. The caller comes back sooner than the resync to see which.
    pub kept: usize,
    /// Undeclared members Exclusive would remove, seen in this pass: the next pass removes
    /// those it sees again.
    pub sightings: BTreeSet<MemberKey>,
    /// The ledger to record before the steps run: the previous one, plus every declared
    /// member this pass adds or finds present, minus stale ones that need no call. It grows
    /// before any add is made, so a crash after the add cannot forget the member.
    pub ledger: Ledger,
}

impl Plan {
    /// The ledger once the steps ran: removals that succeeded (or found the member gone)
    /// leave it.
    pub fn ledger_after(&self, outcomes: &[(Step, Outcome)]) -> Ledger {
        let mut ledger = self.ledger.clone();
        for (step, outcome) in outcomes {
            if let (Action::Remove, Outcome::Done | Outcome::Unchanged) = (&step.action, outcome) {
                ledger.remove(&step.key);
            }
        }
        ledger
    }
}

/// Computes the plan for one pass from the spec, the images observed (with a producer: all
/// the images spec.image resolves to now), the object's ledger, the other objects' claims
/// and what earlier passes learned.
///
/// - Declared members missing from an image are added, only with a producer and only while
///   the image accepts members (visibility `shared`), unless an earlier object owns the add.
/// - A declared status that differs from the observed one (or from `pending` for a member
///   added in this pass) is set, with the consumer's credentials when given, unless an
///   earlier object sets that status or the member is held back.
/// - Ledger members no longer declared on an image spec.image resolves to (member taken out
///   of the spec, image no longer named or selected) are removed, in Additive mode too.
/// - With `Exclusive`, members of an observed image that are neither declared nor in the
///   ledger are removed too, once a later pass sees them again (a member another object has
///   just added is then known as that object's claim, not removed and re-added).
/// - No removal touches a member another trusted object declares; removals of projects an
///   unprocessed producer object declares wait (`deferred`).
pub fn plan(
    spec: &ImageShareSpec,
    images: &[ObservedImage],
    ledger: &Ledger,
    claims: &Claims,
    history: &History,
) -> Plan {
    let producer = spec.producer.is_some();
    let mut steps = Vec::new();
    let mut next = ledger.clone();
    next.locate(
        images
            .iter()
            .filter_map(|i| Some((&i.id, i.region.as_ref()?))),
    );
    let mut declared = BTreeSet::new();
    for image in images {
        for member in &spec.members {
            let key = image.key(&member.project);
            declared.insert(key.clone());
            let ours = producer && claims.adder(&key).is_none();
            let observed = match image.members.get(member.project.as_str()) {
                Some(status) => {
                    // Declared and present: this object takes part in owning it, also when an
                    // earlier object added it (that one protects it while it declares it).
                    if producer {
                        next.insert(key.clone());
                    }
                    Some(*status)
                }
                None if ours && image.accepts_members() => {
                    next.insert(key.clone());
                    steps.push(Step::add(key.clone()));
                    Some(MemberStatus::Pending)
                }
                None => None,
            };
            if let (Some(current), Some(desired)) = (observed, member.status)
                && current != desired
                && claims.status_setter(&key).is_none()
                && !history.held.contains(&key)
            {
                let identity = match &member.consumer {
                    Some(c) => Identity::Consumer(c.credentials_ref.clone()),
                    None => Identity::Producer,
                };
                steps.push(Step::set_status(key, desired, identity));
            }
        }
    }
    if !producer {
        // Consumer-only: statuses only; nothing to add, remove or record.
        return Plan {
            steps,
            ledger: next,
            ..Plan::default()
        };
    }
    let observed: BTreeMap<&ImageId, &ObservedImage> = images.iter().map(|i| (&i.id, i)).collect();
    let mut waiting = 0;
    let mut kept = 0;
    let mut sightings = BTreeSet::new();
    let mut unsighted = 0;
    let mut remove = |key: &MemberKey, steps: &mut Vec<Step>, next: &mut Ledger| {
        if claims.protector(key).is_some() {
            // Another trusted object declares it. It becomes that object's to remove only
            // once that object holds it in its own ledger; until then this one keeps it.
            if claims.held_elsewhere(key) {
                next.remove(key);
            } else {
                kept += 1;
            }
        } else if claims.waits_for(key) {
            waiting += 1;
        } else if let Some(image) = observed.get(&key.image) {
            // On an image that is not shared Glance hides the members (and keeps them): the
            // member stays in the ledger until the image is shared again or goes away.
            if image.accepts_members() && !image.members.contains_key(&key.project) {
                next.remove(key);
            } else if image.accepts_members() {
                steps.push(Step::remove(key.clone()));
            }
        } else {
            steps.push(Step::remove(key.clone()));
        }
    };
    let unreachable = |key: &MemberKey| {
        let region = ledger.region_of(&key.image);
        region.is_some_and(|r| history.unreachable.contains(r))
    };
    for key in ledger
        .iter()
        .filter(|k| !declared.contains(*k) && !unreachable(k))
    {
        remove(key, &mut steps, &mut next);
    }
    if spec.membership == Membership::Exclusive {
        for image in images {
            for project in image.members.keys() {
                let key = image.key(project.clone());
                if declared.contains(&key)
                    || ledger.contains(&key)
                    || claims.protector(&key).is_some()
                {
                    continue;
                }
                if history.sighted.contains(&key) {
                    remove(&key, &mut steps, &mut next);
                } else {
                    unsighted += 1;
                }
                sightings.insert(key);
            }
        }
    }
    let waiting = waiting + unsighted;
    Plan {
        steps,
        deferred: waiting > 0,
        waiting,
        kept,
        sightings,
        ledger: next,
    }
}

/// The removals a `Delete` deletion policy makes: every ledger member, except those another
/// object holds in its own ledger (it takes over). The removals are calls on the members
/// themselves, so an image that is gone or fails does not hold back the others. Removals
/// wait (`deferred`) for an active object that declares the member but does not hold it
/// yet (its next pass records it), and for projects an unprocessed producer object
/// declares. A suspended declarer that never recorded the member does not keep it: it
/// changes nothing, so nobody would ever revoke it.
pub fn cleanup_plan(ledger: &Ledger, claims: &Claims) -> Plan {
    let waits = |key: &MemberKey| {
        claims.waits_for(key)
            || (!claims.held_elsewhere(key)
                && claims.declarers(key).iter().any(|d| d.producer && d.active))
    };
    let waiting = ledger.iter().filter(|key| waits(key)).count();
    let steps = ledger
        .iter()
        .filter(|key| !claims.held_elsewhere(key) && !waits(key))
        .map(|key| Step::remove(key.clone()))
        .collect();
    Plan {
        steps,
        deferred: waiting > 0,
        waiting,
        ledger: ledger.clone(),
        ..Plan::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CredentialsRef, LedgerEntry};
    use crate::controller::fixtures::{self, SpecExt, image, spec};
    use crate::controller::model::{Failure, Visibility};

    fn pair(image: &str, project: &str) -> MemberKey {
        MemberKey::new(image, project)
    }

    fn ledger(pairs: &[(&str, &str)]) -> Ledger {
        pairs.iter().map(|(i, p)| pair(i, p)).collect()
    }

    /// A pass with no ledger, no other objects and no history.
    fn fresh(spec: &ImageShareSpec, images: &[ObservedImage]) -> Plan {
        plan(
            spec,
            images,
            &Ledger::default(),
            &Claims::default(),
            &History::default(),
        )
    }

    /// A pass with a ledger and claims, after an earlier pass saw every member there is.
    fn with(
        spec: &ImageShareSpec,
        images: &[ObservedImage],
        ledger: &Ledger,
        claims: &Claims,
    ) -> Plan {
        let sighted = images
            .iter()
            .flat_map(|i| i.members.keys().map(|p| i.key(p.clone())))
            .collect();
        let history = History {
            sighted,
            ..History::default()
        };
        plan(spec, images, ledger, claims, &history)
    }

    /// Image `img` with declared member `a` (pending) and undeclared member `x` (accepted).
    fn declared_a_and_undeclared_x() -> ObservedImage {
        image(
            "img",
            &[("a", MemberStatus::Pending), ("x", MemberStatus::Accepted)],
        )
    }

    fn removal(image: &str, project: &str) -> Step {
        Step::remove(MemberKey::new(image, project))
    }

    fn add(image: &str, project: &str) -> Step {
        Step::add(MemberKey::new(image, project))
    }

    #[test]
    fn missing_member_is_added_recorded_and_its_declared_status_set_as_the_consumer() {
        let spec = spec().member_with_consumer("a", MemberStatus::Accepted, "team-a");
        let plan = fresh(&spec, &[image("img", &[])]);
        assert_eq!(
            plan.steps,
            vec![
                add("img", "a"),
                Step::set_status(
                    MemberKey::new("img", "a"),
                    MemberStatus::Accepted,
                    Identity::Consumer(CredentialsRef {
                        secret_name: "team-a".into(),
                        cloud_name: "openstack".into()
                    })
                ),
            ]
        );
        assert_eq!(
            plan.ledger,
            ledger(&[("img", "a")]),
            "recorded before the add"
        );
    }

    #[test]
    fn member_in_sync_needs_no_step() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let plan = fresh(&spec, &[image("img", &[("a", MemberStatus::Accepted)])]);
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn declared_member_found_present_joins_the_ledger() {
        let spec = spec().member("a", None);
        let plan = fresh(&spec, &[image("img", &[("a", MemberStatus::Accepted)])]);
        assert!(plan.steps.is_empty());
        assert_eq!(plan.ledger, ledger(&[("img", "a")]));
    }

    #[test]
    fn unmanaged_status_is_never_set() {
        let spec = spec().member("a", None);
        let plan = fresh(&spec, &[image("img", &[("a", MemberStatus::Rejected)])]);
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn pending_desired_status_on_a_new_member_needs_only_the_add() {
        let spec = spec().member("a", Some(MemberStatus::Pending));
        let plan = fresh(&spec, &[image("img", &[])]);
        assert_eq!(plan.steps, vec![add("img", "a")]);
    }

    #[test]
    fn drifted_status_without_consumer_credentials_is_set_as_producer() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let plan = fresh(&spec, &[image("img", &[("a", MemberStatus::Rejected)])]);
        assert_eq!(
            plan.steps,
            vec![Step::set_status(
                MemberKey::new("img", "a"),
                MemberStatus::Accepted,
                Identity::Producer
            )]
        );
    }

    #[test]
    fn status_held_back_after_reverts_is_not_set() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let history = History {
            held: BTreeSet::from([pair("img", "a")]),
            ..History::default()
        };
        let plan = plan(
            &spec,
            &[image("img", &[("a", MemberStatus::Rejected)])],
            &Ledger::default(),
            &Claims::default(),
            &history,
        );
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn additive_share_leaves_undeclared_member_alone() {
        let spec = spec().member("a", None);
        let plan = fresh(&spec, &[declared_a_and_undeclared_x()]);
        assert!(plan.steps.is_empty());
        assert!(!plan.ledger.contains(&pair("img", "x")));
    }

    #[test]
    fn exclusive_share_removes_an_undeclared_member_seen_on_an_earlier_pass() {
        let spec = spec().member("a", None).exclusive();
        let first = fresh(&spec, &[declared_a_and_undeclared_x()]);
        assert!(first.steps.is_empty());
        assert!(first.deferred, "seen once: the next pass decides");
        assert_eq!(first.sightings, BTreeSet::from([pair("img", "x")]));
        let history = History {
            sighted: first.sightings,
            ..History::default()
        };
        let second = plan(
            &spec,
            &[declared_a_and_undeclared_x()],
            &Ledger::default(),
            &Claims::default(),
            &history,
        );
        assert_eq!(second.steps, vec![removal("img", "x")]);
    }

    #[test]
    fn exclusive_share_keeps_member_a_trusted_imageshare_declares() {
        let spec = spec().member("a", None).exclusive();
        let claims = fixtures::earlier_claim("team/first", &[("img", "x")]);
        let plan = with(
            &spec,
            &[declared_a_and_undeclared_x()],
            &Ledger::default(),
            &claims,
        );
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn removals_wait_for_a_producer_imageshare_not_processed_yet() {
        let spec = spec().member("a", None).exclusive();
        let claims = Claims {
            waiting: BTreeSet::from([(None, "x".into())]),
            ..Claims::default()
        };
        let plan = with(
            &spec,
            &[declared_a_and_undeclared_x()],
            &Ledger::default(),
            &claims,
        );
        assert!(plan.steps.is_empty());
        assert!(
            plan.deferred,
            "the removal is retried once the other object is processed"
        );
    }

    #[test]
    fn member_whose_add_an_earlier_imageshare_owns_is_not_added_but_recorded_once_present() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let claims = fixtures::earlier_claim("team/first", &[("img", "a")]);
        let plan = with(&spec, &[image("img", &[])], &Ledger::default(), &claims);
        assert!(plan.steps.is_empty());
        assert!(plan.ledger.is_empty());
        // Once the earlier object added it, this one records it too: if the earlier one
        // goes first, this one still revokes it when it stops declaring it.
        let present = image("img", &[("a", MemberStatus::Accepted)]);
        let plan = with(&spec, &[present], &Ledger::default(), &claims);
        assert!(plan.steps.is_empty());
        assert_eq!(plan.ledger, ledger(&[("img", "a")]));
    }

    #[test]
    fn ledger_pairs_on_an_image_that_is_not_shared_wait_for_it() {
        let spec = spec();
        let mut private = image("img", &[]);
        private.visibility = Some(Visibility::parse("private"));
        let before = ledger(&[("img", "a")]);
        let plan = with(&spec, &[private], &before, &Claims::default());
        assert!(plan.steps.is_empty());
        assert_eq!(
            plan.ledger, before,
            "Glance keeps hidden members; so does the ledger"
        );
    }

    #[test]
    fn a_status_set_by_an_earlier_consumer_only_imageshare_does_not_stop_the_add() {
        let spec = spec().member_with_consumer("a", MemberStatus::Accepted, "team-a");
        let consumer_only = fixtures::Declarer {
            producer: false,
            status: Some(MemberStatus::Accepted),
            holds: false,
            ..fixtures::declarer("tenant/accept")
        };
        let claims = fixtures::claims_of(&consumer_only, &[("img", "a")]);
        let plan = with(&spec, &[image("img", &[])], &Ledger::default(), &claims);
        assert_eq!(plan.steps, vec![add("img", "a")]);
    }

    #[test]
    fn private_image_gets_no_add() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let mut private = image("img", &[]);
        private.visibility = Some(Visibility::parse("private"));
        let plan = fresh(&spec, &[private]);
        assert!(plan.steps.is_empty());
        assert!(plan.ledger.is_empty());
    }

    #[test]
    fn consumer_only_share_only_sets_statuses_and_records_nothing() {
        let spec = spec()
            .member_with_consumer("a", MemberStatus::Accepted, "team-a")
            .member_with_consumer("b", MemberStatus::Rejected, "team-b")
            .without_producer();
        let mut observed = image("img", &[("a", MemberStatus::Pending)]);
        observed.visibility = None;
        let plan = fresh(&spec, &[observed]);
        assert_eq!(plan.steps.len(), 1);
        assert!(matches!(
            &plan.steps[0],
            Step {
                key,
                action: Action::SetStatus { status: MemberStatus::Accepted, .. }
            } if key.project.as_str() == "a"
        ));
        assert!(plan.ledger.is_empty());
    }

    #[test]
    fn every_selected_image_gets_the_members() {
        let spec = spec().member("a", None);
        let plan = fresh(&spec, &[image("one", &[]), image("two", &[])]);
        assert_eq!(plan.steps, vec![add("one", "a"), add("two", "a")]);
    }

    #[test]
    fn member_taken_out_of_the_spec_is_removed_in_additive_mode() {
        let spec = spec().member("a", None);
        let observed = image(
            "img",
            &[("a", MemberStatus::Accepted), ("b", MemberStatus::Accepted)],
        );
        let before = ledger(&[("img", "a"), ("img", "b")]);
        let plan = with(&spec, &[observed], &before, &Claims::default());
        assert_eq!(plan.steps, vec![removal("img", "b")]);
        let after = plan.ledger_after(&[(removal("img", "b"), Outcome::Done)]);
        assert_eq!(after, ledger(&[("img", "a")]));
    }

    #[test]
    fn image_no_longer_selected_loses_the_members_it_was_given() {
        let spec = spec().member("a", None);
        let before = ledger(&[("old", "a")]);
        let plan = with(&spec, &[image("new", &[])], &before, &Claims::default());
        assert_eq!(plan.steps, vec![add("new", "a"), removal("old", "a")]);
        assert_eq!(plan.ledger, ledger(&[("new", "a"), ("old", "a")]));
    }

    #[test]
    fn nothing_resolved_removes_the_whole_ledger() {
        let spec = spec().member("a", None).member("b", None);
        let before = ledger(&[("img", "a"), ("img", "b")]);
        let plan = with(&spec, &[], &before, &Claims::default());
        assert_eq!(plan.steps, vec![removal("img", "a"), removal("img", "b")]);
    }

    #[test]
    fn stale_pair_already_gone_leaves_the_ledger_without_a_call() {
        let spec = spec().member("a", None);
        let before = ledger(&[("img", "a"), ("img", "b")]);
        let plan = with(
            &spec,
            &[image("img", &[("a", MemberStatus::Accepted)])],
            &before,
            &Claims::default(),
        );
        assert!(plan.steps.is_empty());
        assert_eq!(plan.ledger, ledger(&[("img", "a")]));
    }

    #[test]
    fn stale_pair_another_imageshare_holds_in_its_ledger_is_handed_over() {
        let spec = spec().member("a", None);
        let observed = image(
            "img",
            &[("a", MemberStatus::Accepted), ("b", MemberStatus::Accepted)],
        );
        let claims = fixtures::earlier_claim("team/first", &[("img", "b")]);
        let before = ledger(&[("img", "a"), ("img", "b")]);
        let plan = with(&spec, &[observed], &before, &claims);
        assert!(plan.steps.is_empty());
        assert_eq!(plan.ledger, ledger(&[("img", "a")]));
        assert_eq!(plan.kept, 0);
    }

    #[test]
    fn stale_pair_a_protector_never_granted_stays_in_the_ledger_without_a_removal() {
        let spec = spec().member("a", None);
        let observed = image(
            "img",
            &[("a", MemberStatus::Accepted), ("b", MemberStatus::Accepted)],
        );
        let before = ledger(&[("img", "a"), ("img", "b")]);
        for (case, protector) in [
            (
                "suspended",
                fixtures::Declarer {
                    active: false,
                    holds: false,
                    ..fixtures::declarer("team/suspended")
                },
            ),
            (
                "not recorded yet",
                fixtures::Declarer {
                    holds: false,
                    ..fixtures::declarer("team/failing")
                },
            ),
        ] {
            let claims = fixtures::claims_of(&protector, &[("img", "b")]);
            let plan = with(&spec, std::slice::from_ref(&observed), &before, &claims);
            assert!(plan.steps.is_empty(), "{case}: no removal while declared");
            assert_eq!(plan.ledger, before, "{case}: still this object's to revoke");
            assert_eq!(plan.kept, 1, "{case}");
        }
        // Once the protector is gone, the next pass removes it.
        let plan = with(&spec, &[observed], &before, &Claims::default());
        assert_eq!(plan.steps, vec![removal("img", "b")]);
    }

    #[test]
    fn a_region_that_could_not_be_observed_keeps_its_members_and_the_other_region_converges() {
        let spec = spec().member("b", None);
        let entries = [
            LedgerEntry {
                region: Some("RegionOne".into()),
                images: vec!["one".into()],
                projects: vec!["a".into()],
            },
            LedgerEntry {
                region: Some("RegionTwo".into()),
                images: vec!["two".into()],
                projects: vec!["a".into()],
            },
        ];
        let before = Ledger::from_entries(&entries);
        let mut one = image("one", &[("a", MemberStatus::Pending)]);
        one.region = Some("RegionOne".into());
        let history = History {
            unreachable: BTreeSet::from(["RegionTwo".to_string()]),
            ..History::default()
        };
        let plan = plan(&spec, &[one], &before, &Claims::default(), &history);
        assert_eq!(plan.steps, vec![add("one", "b"), removal("one", "a")]);
        assert!(
            plan.ledger.contains(&pair("two", "a")),
            "kept for when it answers"
        );
        assert_eq!(plan.ledger.region_of(&"two".into()), Some("RegionTwo"));
        // Written back with each image's region.
        let written = plan.ledger.to_entries();
        assert!(
            written
                .iter()
                .any(|e| e.region.as_deref() == Some("RegionTwo")
                    && e.images == ["two"]
                    && e.projects.contains(&"a".to_string()))
        );
        // Reachable again: the removal is made there, in its region.
        let plan = with(&spec, &[], &before, &Claims::default());
        assert!(plan.steps.contains(&removal("two", "a")));
    }

    #[test]
    fn failed_removal_stays_in_the_ledger() {
        let spec = spec();
        let before = ledger(&[("img", "a")]);
        let plan = with(&spec, &[], &before, &Claims::default());
        let after = plan.ledger_after(&[(
            removal("img", "a"),
            Outcome::Failed(Failure::transient("503")),
        )]);
        assert_eq!(after, before);
        let gone = plan.ledger_after(&[(removal("img", "a"), Outcome::Unchanged)]);
        assert!(gone.is_empty());
    }

    #[test]
    fn cleanup_removes_every_ledger_pair_but_those_another_imageshare_holds() {
        let before = ledger(&[("i1", "a"), ("i2", "a"), ("i2", "b")]);
        let claims = fixtures::earlier_claim("team/first", &[("i2", "b")]);
        let plan = cleanup_plan(&before, &claims);
        assert_eq!(plan.steps, vec![removal("i1", "a"), removal("i2", "a")]);
        assert!(!plan.deferred);
    }

    #[test]
    fn cleanup_waits_for_an_active_declarer_to_hold_but_not_for_a_suspended_one() {
        let before = ledger(&[("i1", "a")]);
        let pending = fixtures::Declarer {
            holds: false,
            ..fixtures::declarer("team/next")
        };
        let plan = cleanup_plan(&before, &fixtures::claims_of(&pending, &[("i1", "a")]));
        assert!(plan.steps.is_empty() && plan.deferred);
        let suspended = fixtures::Declarer {
            active: false,
            ..pending
        };
        let plan = cleanup_plan(&before, &fixtures::claims_of(&suspended, &[("i1", "a")]));
        assert_eq!(
            plan.steps,
            vec![removal("i1", "a")],
            "nobody else would revoke it"
        );
    }

    #[test]
    fn cleanup_waits_for_a_producer_imageshare_not_processed_yet() {
        let claims = Claims {
            waiting: BTreeSet::from([(Some("i1".into()), "b".into())]),
            ..Claims::default()
        };
        let plan = cleanup_plan(&ledger(&[("i1", "a"), ("i1", "b")]), &claims);
        assert_eq!(plan.steps, vec![removal("i1", "a")]);
        assert!(plan.deferred);
    }
}
