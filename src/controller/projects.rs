//! Projects chosen through Keystone (I/O, then a pure expansion): project names in
//! `spec.members` (a member with a `domain`) and `spec.projectSelector` are resolved at
//! every pass with the project reader's credentials ([`resolve`]), and [`effective`] turns
//! the spec plus that resolution into the member list the rest of the pass works on (IDs
//! only). Another object's members are read the same way from its `status.projects`. A
//! resolution that fails stops the pass before anything is planned: a Keystone fault or a
//! renamed project never revokes access.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::Failure;
use super::credentials::Sessions;
use crate::api::{ImageShare, ImageShareSpec, MemberSpec, Reason, ResolvedProject};
use crate::openstack::Session;

/// Most projects a selector may choose (the most members a spec may list).
pub const MAX_SELECTED: usize = 1000;

/// Resolves the project names and the selector of `share` through Keystone. Empty when the
/// spec names projects by ID only.
pub async fn resolve(
    share: &ImageShare,
    sessions: &mut Sessions<'_>,
) -> Result<Vec<ResolvedProject>, Failure> {
    lookup(share, sessions).await.map_err(|mut failure| {
        if failure.reason == Reason::Forbidden {
            failure.message.push_str(
                "; resolving project names and spec.projectSelector needs credentials that \
                 may list projects: set spec.projectReader (a reader of the domain)",
            );
        }
        failure
    })
}

async fn lookup(
    share: &ImageShare,
    sessions: &mut Sessions<'_>,
) -> Result<Vec<ResolvedProject>, Failure> {
    let spec = &share.spec;
    let named: Vec<&MemberSpec> = spec.members.iter().filter(|m| m.domain.is_some()).collect();
    let (Some(producer), true) = (
        &spec.producer,
        !named.is_empty() || spec.project_selector.is_some(),
    ) else {
        return Ok(Vec::new());
    };
    let reader_ref = spec.project_reader.as_ref().unwrap_or(producer);
    let reader = sessions.get(&reader_ref.credentials_ref).await?;
    let mut domains = Domains::default();
    let mut resolved = Vec::new();
    for member in named {
        let domain = member.domain.as_deref().unwrap_or_default();
        let domain_id = domains.id(&reader, domain).await?;
        let found = reader
            .list_projects(&domain_id, Some(&member.project), &[])
            .await?;
        let [project] = found.as_slice() else {
            return Err(Failure::new(
                Reason::ProjectNotFound,
                format!(
                    "{} enabled projects named {:?} in domain {domain}, expected one",
                    found.len(),
                    member.project
                ),
            ));
        };
        resolved.push(ResolvedProject {
            id: project.id.clone(),
            name: project.name.clone(),
            domain: domain.to_string(),
            selected: false,
        });
    }
    if let Some(selector) = &spec.project_selector {
        let domain_id = domains.id(&reader, &selector.domain).await?;
        let owner = sessions
            .get(&producer.credentials_ref)
            .await?
            .project_id()
            .await?;
        let mut chosen = reader
            .list_projects(&domain_id, None, &selector.tags)
            .await?;
        chosen.retain(|p| p.id != owner);
        if chosen.len() > MAX_SELECTED {
            return Err(Failure::new(
                Reason::MemberQuotaExceeded,
                format!(
                    "projectSelector chooses {} projects; at most {MAX_SELECTED} per ImageShare",
                    chosen.len()
                ),
            ));
        }
        chosen.sort_by(|a, b| a.name.cmp(&b.name));
        resolved.extend(chosen.into_iter().map(|p| ResolvedProject {
            id: p.id,
            name: p.name,
            domain: selector.domain.clone(),
            selected: true,
        }));
    }
    Ok(resolved)
}

/// Domain IDs looked up during one resolution (each domain once).
#[derive(Default)]
struct Domains(BTreeMap<String, String>);

impl Domains {
    async fn id(&mut self, reader: &Session, domain: &str) -> Result<String, Failure> {
        if let Some(id) = self.0.get(domain) {
            return Ok(id.clone());
        }
        let id = reader.domain_id(domain).await?.ok_or_else(|| {
            Failure::new(
                Reason::ProjectNotFound,
                format!(
                    "no domain {domain:?} (by name or ID) visible to {}",
                    reader.config().describe()
                ),
            )
        })?;
        self.0.insert(domain.to_string(), id.clone());
        Ok(id)
    }
}

/// The members `spec` stands for, given the projects resolved for it (`projects`): members
/// given by ID as written, members given by name with the ID they resolved to (skipped
/// while unresolved), then the selected projects not already listed, with the selector's
/// status. Each project once. Pure.
pub fn effective(spec: &ImageShareSpec, projects: &[ResolvedProject]) -> Vec<MemberSpec> {
    let mut seen = BTreeSet::new();
    let mut members = Vec::new();
    let by_name = |m: &MemberSpec| {
        projects.iter().find(|p| {
            !p.selected && Some(p.domain.as_str()) == m.domain.as_deref() && p.name == m.project
        })
    };
    let listed = spec.members.iter().filter_map(|m| match &m.domain {
        None => Some(m.clone()),
        Some(_) => by_name(m).map(|p| MemberSpec {
            project: p.id.clone(),
            domain: None,
            ..m.clone()
        }),
    });
    let selected = projects.iter().filter(|p| p.selected).map(|p| MemberSpec {
        project: p.id.clone(),
        domain: None,
        status: spec.project_selector.as_ref().and_then(|s| s.status),
        consumer: None,
    });
    for member in listed.chain(selected) {
        if seen.insert(member.project.clone()) {
            members.push(member);
        }
    }
    members
}

/// The members of another object as it resolved them at its last pass.
pub fn declared(share: &ImageShare) -> Vec<MemberSpec> {
    let projects = share.status.as_ref().map_or(&[][..], |s| &s.projects);
    effective(&share.spec, projects)
}

/// `share` as a pass works on it: its spec with [`effective`] members (`share` itself,
/// not a copy, when it names every project by ID).
pub fn with_effective_members<'a>(
    share: &'a ImageShare,
    projects: &[ResolvedProject],
) -> Cow<'a, ImageShare> {
    let spec = &share.spec;
    if spec.project_selector.is_none() && spec.members.iter().all(|m| m.domain.is_none()) {
        return Cow::Borrowed(share);
    }
    let mut effective_share = share.clone();
    effective_share.spec.members = effective(spec, projects);
    Cow::Owned(effective_share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemberStatus, ProjectSelector};
    use crate::controller::fixtures::{self, SpecExt};

    fn named(project: &str, domain: &str) -> MemberSpec {
        MemberSpec {
            project: project.into(),
            domain: Some(domain.into()),
            status: Some(MemberStatus::Accepted),
            consumer: None,
        }
    }

    fn found(id: &str, name: &str, selected: bool) -> ResolvedProject {
        ResolvedProject {
            id: id.into(),
            name: name.into(),
            domain: "Default".into(),
            selected,
        }
    }

    fn spec_with_names_and_selector() -> ImageShareSpec {
        let mut spec = fixtures::spec().member("id-1", None);
        spec.members.push(named("team-a", "Default"));
        spec.project_selector = Some(ProjectSelector {
            domain: "Default".into(),
            tags: vec!["gpu".into()],
            status: Some(MemberStatus::Accepted),
        });
        spec
    }

    #[test]
    fn names_become_ids_and_selected_projects_join_with_the_selector_status() {
        let spec = spec_with_names_and_selector();
        let projects = [
            found("id-a", "team-a", false),
            found("id-g", "gpu-1", true),
            found("id-1", "already-listed", true),
        ];
        let members = effective(&spec, &projects);
        let ids: Vec<_> = members.iter().map(|m| m.project.as_str()).collect();
        assert_eq!(ids, ["id-1", "id-a", "id-g"]);
        assert!(members.iter().all(|m| m.domain.is_none()));
        assert_eq!(
            members[0].status, None,
            "an explicit member keeps its settings"
        );
        assert_eq!(members[1].status, Some(MemberStatus::Accepted));
        assert_eq!(members[2].status, Some(MemberStatus::Accepted));
    }

    #[test]
    fn an_unresolved_name_stands_for_no_member_and_leaving_the_selection_drops_one() {
        let spec = spec_with_names_and_selector();
        let members = effective(&spec, &[]);
        let ids: Vec<_> = members.iter().map(|m| m.project.as_str()).collect();
        assert_eq!(ids, ["id-1"]);
        // A selected project is matched by ID, never by a name that happens to be listed.
        let members = effective(&spec, &[found("id-x", "team-a", true)]);
        let ids: Vec<_> = members.iter().map(|m| m.project.as_str()).collect();
        assert_eq!(ids, ["id-1", "id-x"]);
    }

    #[test]
    fn another_objects_members_come_from_its_status() {
        let mut other = ImageShare::new("other", spec_with_names_and_selector());
        assert_eq!(declared(&other).len(), 1);
        other.status = Some(crate::api::ImageShareStatus {
            projects: vec![found("id-a", "team-a", false)],
            ..Default::default()
        });
        let ids: Vec<_> = declared(&other).into_iter().map(|m| m.project).collect();
        assert_eq!(ids, ["id-1", "id-a"]);
    }
}
