//! Projects chosen through Keystone (I/O, then a pure expansion): project names in
//! `spec.members` (a member with a `domain`) and `spec.projectSelector` are resolved at
//! every pass with the project reader's credentials ([`resolve`]), and [`effective`] turns
//! the spec plus that resolution into the member list the rest of the pass works on (IDs
//! only). Another object's members are read the same way from its `status.projects`. A
//! resolution that fails stops the pass before anything is planned: a Keystone fault, a
//! truncated list or a renamed project never revokes access. Names match as Keystone may
//! match them: ignoring letter case ([`same_name`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::model::Failure;
use super::ports::{Connect, Keystone};
use crate::api::{ImageShare, ImageShareSpec, MemberSpec, Reason, ResolvedProject};
use crate::openstack::{self, TerminalKind};
use crate::openstack::{ProjectEntry, same_name};

/// Most projects a selector may choose; a larger selection is refused (MemberQuotaExceeded)
/// before anything is planned. The bound is the object's size, not Glance: status.projects
/// lists every selected project (ID, name, domain) and the ledger its ID once more, about
/// 160 bytes of status a project (`make bench` measured 333 kB for 2,000), so 5,000 take
/// about 0.8 MB, half of the 1.5 MB etcd stores per object by default, leaving room for the
/// spec and longer project names. Glance's own `image_member_quota` (128 by default) must be
/// raised to match for a selection this large to converge. Independent of spec.members,
/// which the CRD limits to 1,000 entries.
pub const MAX_SELECTED: usize = 5000;

/// Appended to a Keystone refusal (HTTP 403) of a project or domain lookup.
const NEEDS_READER: &str = "; resolving project names and spec.projectSelector needs \
    credentials that may list projects: set spec.projectReader (a reader of the domain)";

/// A failed Keystone lookup as the pass reports it: a refusal (HTTP 403) says which
/// credentials are needed; anything else (a truncated list, a fault) as classified.
fn keystone_failure(err: openstack::Error) -> Failure {
    let refused = matches!(
        err,
        openstack::Error::Terminal {
            kind: TerminalKind::Forbidden,
            ..
        }
    );
    let mut failure = Failure::from(err);
    if refused {
        failure.message.push_str(NEEDS_READER);
    }
    failure
}

/// Resolves the project names and the selector of `share` through Keystone. Empty when the
/// spec names projects by ID only. A partial Keystone list (truncated by its `list_limit`),
/// an unexpected answer, a name matching no project or more than one: the pass stops here.
pub async fn resolve<C: Connect>(
    share: &ImageShare,
    sessions: &mut C,
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
    let reader = sessions.session(&reader_ref.credentials_ref, None).await?;
    let mut domains = Domains::default();
    let mut resolved = Vec::new();
    for member in named {
        let domain = member.domain.as_deref().unwrap_or_default();
        let domain_id = domains.id(&*reader, domain).await?;
        let found = reader
            .list_projects(&domain_id, Some(&member.project), &[])
            .await
            .map_err(keystone_failure)?;
        let project = one_named(&found, &member.project, domain)?;
        resolved.push(ResolvedProject {
            id: project.id.clone(),
            name: project.name.clone(),
            domain: domain.to_string(),
            selected: false,
        });
    }
    distinct_names(&resolved)?;
    if let Some(selector) = &spec.project_selector {
        if selector.tags.is_empty() && !selector.all_projects {
            // The CRD refuses this; an object that bypassed validation shares with nobody.
            return Err(Failure::new(
                Reason::Forbidden,
                "spec.projectSelector has no tags: set allProjects: true to share with every \
                 project of the domain",
            ));
        }
        let domain_id = domains.id(&*reader, &selector.domain).await?;
        let owner = sessions
            .session(&producer.credentials_ref, None)
            .await?
            .project_id()
            .await?;
        let mut chosen = reader
            .list_projects(&domain_id, None, &selector.tags)
            .await
            .map_err(keystone_failure)?;
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

/// The one project Keystone answered for `name` in `domain`. Keystone matches names
/// case-insensitively on some backends (MySQL), so its answer is read the same way: none is
/// ProjectNotFound, and more than one (`team-a` and `Team-A`) is ambiguous: the pass stops
/// rather than pick one. Pure.
fn one_named<'a>(
    found: &'a [ProjectEntry],
    name: &str,
    domain: &str,
) -> Result<&'a ProjectEntry, Failure> {
    let matching: Vec<&ProjectEntry> = found.iter().filter(|p| same_name(&p.name, name)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(Failure::new(
            Reason::ProjectNotFound,
            format!("no enabled project named {name:?} in domain {domain}"),
        )),
        more => Err(Failure::new(
            Reason::ProjectNotFound,
            format!(
                "project name {name:?} is ambiguous in domain {domain}: {} enabled projects \
                 match it ignoring letter case ({}); name the project by its ID",
                more.len(),
                describe(more.iter().map(|p| (p.name.as_str(), p.id.as_str())))
            ),
        )),
    }
}

/// Refuses two different projects of one domain whose names differ only in letter case
/// (`team-a` and `Team-A`, possible on a Keystone that compares names exactly): the pass
/// could not tell which spec entry stands for which. Pure.
fn distinct_names(resolved: &[ResolvedProject]) -> Result<(), Failure> {
    for (i, a) in resolved.iter().enumerate() {
        if let Some(b) = resolved[i + 1..].iter().find(|b| {
            a.id != b.id && same_name(&a.domain, &b.domain) && same_name(&a.name, &b.name)
        }) {
            return Err(Failure::new(
                Reason::ProjectNotFound,
                format!(
                    "project names {:?} and {:?} in domain {} differ only in letter case and \
                     name two projects ({}); name them by their IDs",
                    a.name,
                    b.name,
                    a.domain,
                    describe([
                        (a.name.as_str(), a.id.as_str()),
                        (b.name.as_str(), b.id.as_str())
                    ])
                ),
            ));
        }
    }
    Ok(())
}

/// `name (id), ...` for a message, at most five.
fn describe<'a>(projects: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    projects
        .into_iter()
        .take(5)
        .map(|(name, id)| format!("{name:?} ({id})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Domain IDs looked up during one resolution (each domain once).
#[derive(Default)]
struct Domains(BTreeMap<String, String>);

impl Domains {
    async fn id(&mut self, reader: &impl Keystone, domain: &str) -> Result<String, Failure> {
        if let Some(id) = self.0.get(domain) {
            return Ok(id.clone());
        }
        let id = reader
            .domain_id(domain)
            .await
            .map_err(keystone_failure)?
            .ok_or_else(|| {
                Failure::new(
                    Reason::ProjectNotFound,
                    format!(
                        "no domain {domain:?} (by name or ID) visible to {}",
                        reader.describe()
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
    // Matched back as Keystone matched it (letter case aside); of several, only the one
    // spelled exactly as the spec (a resolution refuses such a spec, see distinct_names).
    let by_name = |m: &MemberSpec| {
        let domain = m.domain.as_deref()?;
        let candidates: Vec<&ResolvedProject> = projects
            .iter()
            .filter(|p| {
                !p.selected && same_name(&p.domain, domain) && same_name(&p.name, &m.project)
            })
            .collect();
        match candidates.as_slice() {
            [one] => Some(*one),
            more if more.iter().all(|p| p.id == more[0].id) => more.first().copied(),
            more => {
                let exact: Vec<_> = more.iter().filter(|p| p.name == m.project).collect();
                match exact.as_slice() {
                    [one] => Some(**one),
                    _ => None,
                }
            }
        }
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
            all_projects: false,
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

    fn entry(id: &str, name: &str) -> ProjectEntry {
        ProjectEntry {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn keystones_answer_is_matched_back_ignoring_letter_case() {
        // A MySQL-backed Keystone answers `Team-A` to a query for `team-a`.
        let found = [entry("id-a", "Team-A")];
        let project = one_named(&found, "team-a", "Default").expect("one project");
        assert_eq!(project.id, "id-a");
        let none = one_named(&[], "team-a", "Default").expect_err("no project");
        assert_eq!(none.reason, Reason::ProjectNotFound);
        assert!(none.message.contains("\"team-a\""), "{}", none.message);
    }

    #[test]
    fn two_projects_matching_one_name_ignoring_case_are_ambiguous_not_picked() {
        let found = [entry("id-1", "team-a"), entry("id-2", "TEAM-A")];
        let failure = one_named(&found, "team-a", "Default").expect_err("ambiguous");
        assert_eq!(failure.reason, Reason::ProjectNotFound);
        assert!(failure.message.contains("ambiguous"), "{}", failure.message);
        assert!(failure.message.contains("id-1") && failure.message.contains("id-2"));
        // Two spec entries that differ in case but name different projects (a Keystone that
        // compares names exactly): the pass cannot tell them apart either.
        let resolved = [found_named("id-1", "team-a"), found_named("id-2", "Team-A")];
        let failure = distinct_names(&resolved).expect_err("ambiguous");
        assert!(
            failure.message.contains("letter case"),
            "{}",
            failure.message
        );
        // The same project reached through two spellings is one member, not a conflict.
        let same = [found_named("id-1", "Team-A"), found_named("id-1", "Team-A")];
        distinct_names(&same).expect("one project");
        // Names in different domains never collide.
        let mut other_domain = found_named("id-2", "team-a");
        other_domain.domain = "Corp".into();
        distinct_names(&[found_named("id-1", "team-a"), other_domain]).expect("two domains");
    }

    fn found_named(id: &str, name: &str) -> ResolvedProject {
        found(id, name, false)
    }

    #[test]
    fn a_case_only_rename_keeps_the_member() {
        // The spec says `team-a`; Keystone (matching as MySQL does) resolved it to the
        // project now spelled `Team-A`. Before, the member was dropped (and so revoked).
        let mut spec = fixtures::spec();
        spec.members.push(named("team-a", "Default"));
        let members = effective(&spec, &[found_named("id-a", "Team-A")]);
        let ids: Vec<_> = members.iter().map(|m| m.project.as_str()).collect();
        assert_eq!(ids, ["id-a"]);
        // The domain as written in the spec, in another case, still matches.
        let mut resolved = found_named("id-a", "Team-A");
        resolved.domain = "DEFAULT".into();
        assert_eq!(effective(&spec, &[resolved]).len(), 1);
    }

    #[test]
    fn of_several_case_variants_in_a_status_only_the_exact_spelling_is_taken() {
        let mut spec = fixtures::spec();
        spec.members.push(named("team-a", "Default"));
        let exact = [found_named("id-2", "TEAM-A"), found_named("id-1", "team-a")];
        let ids: Vec<_> = effective(&spec, &exact)
            .into_iter()
            .map(|m| m.project)
            .collect();
        assert_eq!(ids, ["id-1"]);
        let neither = [found_named("id-2", "TEAM-A"), found_named("id-3", "Team-A")];
        assert!(effective(&spec, &neither).is_empty());
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
