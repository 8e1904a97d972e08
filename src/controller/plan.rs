//! The plan: a pure function of (spec, observed Glance state, claims of other ImageShares)
//! that says which calls to make. Nothing else decides what to call. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{CredentialsRef, ImageShareSpec, MemberStatus, Membership};

/// One image as observed in Glance in this pass.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedImage {
    /// Glance image ID.
    pub id: String,
    /// Image name, when known.
    pub name: Option<String>,
    /// Glance visibility, when known (unknown in consumer-only use).
    pub visibility: Option<String>,
    /// Current members: project ID to status. In consumer-only use only the declared
    /// members' own rows are known.
    pub members: BTreeMap<String, MemberStatus>,
}

impl ObservedImage {
    /// Whether Glance accepts new members on this image (visibility `shared`).
    pub fn accepts_members(&self) -> bool {
        self.visibility.as_deref() == Some("shared")
    }
}

/// A (image ID, project ID) pair.
pub type Pair = (String, String);

/// What other ImageShares declare, from the controller's cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// Pairs an ImageShare created earlier manages in the same way (both add members, or
    /// both set the status), mapped to its `namespace/name`: this object leaves them alone
    /// and reports a Conflict.
    pub earlier: BTreeMap<Pair, String>,
    /// Pairs declared by any other ImageShare: never removed by Exclusive or by cleanup.
    pub others: BTreeSet<Pair>,
    /// Projects declared by another ImageShare not yet processed for its current spec (its
    /// images are unknown): Exclusive removals of them wait until it is (cleanup does not).
    pub unresolved_projects: BTreeSet<String>,
}

/// Whose credentials a status update uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The member's own consumer credentials.
    Consumer(CredentialsRef),
    /// The producer's credentials (works only if the producer may set member status, e.g. admin).
    Producer,
}

/// One call to make against Glance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Add `project` as a member of `image` (as producer).
    Add {
        /// Glance image ID.
        image: String,
        /// Keystone project ID.
        project: String,
    },
    /// Set the member's status (as `identity`).
    SetStatus {
        /// Glance image ID.
        image: String,
        /// Keystone project ID.
        project: String,
        /// Status to set.
        status: MemberStatus,
        /// Whose credentials to use.
        identity: Identity,
    },
    /// Remove `project` from `image` (as producer).
    Remove {
        /// Glance image ID.
        image: String,
        /// Keystone project ID.
        project: String,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Add { image, project } => write!(f, "add project {project} to image {image}"),
            Step::Remove { image, project } => {
                write!(f, "remove project {project} from image {image}")
            }
            Step::SetStatus {
                image,
                project,
                status,
                identity,
            } => {
                write!(f, "set project {project} on image {image} to {status} as ")?;
                match identity {
                    Identity::Consumer(c) => write!(f, "the consumer (secret {})", c.secret_name),
                    Identity::Producer => f.write_str("the producer"),
                }
            }
        }
    }
}

impl Step {
    /// The (image, project) pair the step acts on.
    pub fn pair(&self) -> Pair {
        match self {
            Step::Add { image, project }
            | Step::SetStatus { image, project, .. }
            | Step::Remove { image, project } => (image.clone(), project.clone()),
        }
    }
}

/// The calls to make in one pass, ordered per member (add before status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps in order; steps of different members are independent.
    pub steps: Vec<Step>,
    /// Removals held back because another ImageShare that may declare the member has not
    /// resolved its images yet; the caller retries soon.
    pub deferred: bool,
}

/// Computes the plan for one pass.
///
/// - Declared members missing from an image are added, only with a producer and only while
///   the image accepts members (visibility `shared`).
/// - A declared status that differs from the observed one (or from `pending` for a member
///   added in this pass) is set, with the consumer's credentials when given.
/// - With `Exclusive`, members nobody declares are removed; members another ImageShare
///   declares count as declared.
/// - Pairs an earlier ImageShare declares are never touched (reported as Conflict).
pub fn plan(spec: &ImageShareSpec, images: &[ObservedImage], claims: &Claims) -> Plan {
    let mut steps = Vec::new();
    let mut deferred = false;
    for image in images {
        for member in &spec.members {
            let pair = (image.id.clone(), member.project.clone());
            if claims.earlier.contains_key(&pair) {
                continue;
            }
            let observed = match image.members.get(&member.project) {
                Some(status) => Some(*status),
                None if spec.producer.is_some() && image.accepts_members() => {
                    steps.push(Step::Add {
                        image: image.id.clone(),
                        project: member.project.clone(),
                    });
                    Some(MemberStatus::Pending)
                }
                None => None,
            };
            if let (Some(current), Some(desired)) = (observed, member.status)
                && current != desired
            {
                steps.push(Step::SetStatus {
                    image: image.id.clone(),
                    project: member.project.clone(),
                    status: desired,
                    identity: match &member.consumer {
                        Some(c) => Identity::Consumer(c.credentials_ref.clone()),
                        None => Identity::Producer,
                    },
                });
            }
        }
        if spec.membership == Membership::Exclusive && spec.producer.is_some() {
            let declared: BTreeSet<&str> =
                spec.members.iter().map(|m| m.project.as_str()).collect();
            for project in image.members.keys() {
                let pair = (image.id.clone(), project.clone());
                if declared.contains(project.as_str()) || claims.others.contains(&pair) {
                    continue;
                }
                if claims.unresolved_projects.contains(project) {
                    deferred = true;
                    continue;
                }
                steps.push(Step::Remove {
                    image: image.id.clone(),
                    project: project.clone(),
                });
            }
        }
    }
    Plan { steps, deferred }
}

/// The removals a `Delete` deletion policy makes: every declared member present on an
/// observed image, except pairs another ImageShare declares. Projects of objects not resolved
/// yet do not hold cleanup back (it would leave members behind for good); such an object
/// adds its member back on its next pass.
pub fn cleanup_plan(spec: &ImageShareSpec, images: &[ObservedImage], claims: &Claims) -> Plan {
    let steps = images
        .iter()
        .flat_map(|image| {
            spec.members
                .iter()
                .filter(|m| image.members.contains_key(&m.project))
                .map(|m| (image.id.clone(), m.project.clone()))
        })
        .filter(|pair| !claims.others.contains(pair))
        .map(|(image, project)| Step::Remove { image, project })
        .collect();
    Plan {
        steps,
        deferred: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{self, SpecExt, image, spec};

    fn no_claims() -> Claims {
        Claims::default()
    }

    /// Image `img` with declared member `a` (pending) and undeclared member `x` (accepted).
    fn declared_a_and_undeclared_x() -> ObservedImage {
        image(
            "img",
            &[("a", MemberStatus::Pending), ("x", MemberStatus::Accepted)],
        )
    }

    fn removal(project: &str) -> Vec<Step> {
        vec![Step::Remove {
            image: "img".into(),
            project: project.into(),
        }]
    }

    #[test]
    fn missing_member_is_added_and_its_declared_status_set_as_the_consumer() {
        let spec = spec().member_with_consumer("a", MemberStatus::Accepted, "team-a");
        let plan = plan(&spec, &[image("img", &[])], &no_claims());
        assert_eq!(
            plan.steps,
            vec![
                Step::Add {
                    image: "img".into(),
                    project: "a".into()
                },
                Step::SetStatus {
                    image: "img".into(),
                    project: "a".into(),
                    status: MemberStatus::Accepted,
                    identity: Identity::Consumer(CredentialsRef {
                        secret_name: "team-a".into(),
                        cloud_name: "openstack".into()
                    }),
                },
            ]
        );
    }

    #[test]
    fn member_in_sync_needs_no_step() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let plan = plan(
            &spec,
            &[image("img", &[("a", MemberStatus::Accepted)])],
            &no_claims(),
        );
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn unmanaged_status_is_never_set() {
        let spec = spec().member("a", None);
        let plan = plan(
            &spec,
            &[image("img", &[("a", MemberStatus::Rejected)])],
            &no_claims(),
        );
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn pending_desired_status_on_a_new_member_needs_only_the_add() {
        let spec = spec().member("a", Some(MemberStatus::Pending));
        let plan = plan(&spec, &[image("img", &[])], &no_claims());
        assert_eq!(plan.steps.len(), 1);
        assert!(matches!(plan.steps[0], Step::Add { .. }));
    }

    #[test]
    fn drifted_status_without_consumer_credentials_is_set_as_producer() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let plan = plan(
            &spec,
            &[image("img", &[("a", MemberStatus::Rejected)])],
            &no_claims(),
        );
        assert_eq!(
            plan.steps,
            vec![Step::SetStatus {
                image: "img".into(),
                project: "a".into(),
                status: MemberStatus::Accepted,
                identity: Identity::Producer,
            }]
        );
    }

    #[test]
    fn additive_share_leaves_undeclared_member_alone() {
        let spec = spec().member("a", None);
        let plan = plan(&spec, &[declared_a_and_undeclared_x()], &no_claims());
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn exclusive_share_removes_undeclared_member() {
        let spec = spec().member("a", None).exclusive();
        let plan = plan(&spec, &[declared_a_and_undeclared_x()], &no_claims());
        assert_eq!(plan.steps, removal("x"));
    }

    #[test]
    fn exclusive_share_keeps_member_declared_by_a_later_imageshare() {
        let spec = spec().member("a", None).exclusive();
        let claims = Claims {
            others: BTreeSet::from([("img".to_string(), "x".to_string())]),
            ..Claims::default()
        };
        let plan = plan(&spec, &[declared_a_and_undeclared_x()], &claims);
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn exclusive_share_keeps_projects_of_an_imageshare_not_resolved_yet() {
        let spec = spec().member("a", None).exclusive();
        let claims = Claims {
            unresolved_projects: BTreeSet::from(["x".to_string()]),
            ..Claims::default()
        };
        let plan = plan(&spec, &[declared_a_and_undeclared_x()], &claims);
        assert!(plan.steps.is_empty());
        assert!(
            plan.deferred,
            "the removal is retried once the other object resolves"
        );
    }

    #[test]
    fn member_claimed_by_an_earlier_imageshare_is_not_touched() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let claims = fixtures::earlier_claim("team/first", &[("img", "a")]);
        let plan = plan(&spec, &[image("img", &[])], &claims);
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn private_image_gets_no_add() {
        let spec = spec().member("a", Some(MemberStatus::Accepted));
        let mut private = image("img", &[]);
        private.visibility = Some("private".into());
        let plan = plan(&spec, &[private], &no_claims());
        assert!(plan.steps.is_empty());
    }

    #[test]
    fn consumer_only_share_only_sets_statuses() {
        let spec = spec()
            .member_with_consumer("a", MemberStatus::Accepted, "team-a")
            .member_with_consumer("b", MemberStatus::Rejected, "team-b")
            .without_producer();
        let mut observed = image("img", &[("a", MemberStatus::Pending)]);
        observed.visibility = None;
        let plan = plan(&spec, &[observed], &no_claims());
        assert_eq!(plan.steps.len(), 1);
        assert!(matches!(
            &plan.steps[0],
            Step::SetStatus { project, status: MemberStatus::Accepted, .. } if project == "a"
        ));
    }

    #[test]
    fn every_selected_image_gets_the_members() {
        let spec = spec().member("a", None);
        let plan = plan(&spec, &[image("one", &[]), image("two", &[])], &no_claims());
        let pairs: Vec<Pair> = plan.steps.iter().map(Step::pair).collect();
        assert_eq!(
            pairs,
            vec![
                ("one".to_string(), "a".to_string()),
                ("two".to_string(), "a".to_string())
            ]
        );
    }

    #[test]
    fn cleanup_removes_only_declared_members_that_exist() {
        let spec = spec().member("a", None).member("b", None);
        let plan = cleanup_plan(
            &spec,
            &[image(
                "img",
                &[("a", MemberStatus::Accepted), ("x", MemberStatus::Accepted)],
            )],
            &no_claims(),
        );
        assert_eq!(plan.steps, removal("a"));
    }
}
