//! Keystone projects and domains (I/O), for members named by project name or selected by
//! tags: [`Session::list_projects`], [`Session::domain_id`], the [`ProjectEntry`] they
//! answer with, and [`same_name`], how Keystone matches names. A truncated or otherwise
//! partial list is refused, never read as a shorter one: acting on part of a selection
//! would revoke the rest.

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{Error, TerminalKind};
use super::metrics::Operation;
use super::session::Session;
use super::transport::{Call, decode, join};

/// A Keystone project, as `GET /v3/projects` lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ProjectEntry {
    /// Project ID (the Glance member ID).
    pub id: String,
    /// Project name (unique in its domain).
    pub name: String,
}

/// The `links` object of a Keystone v3 collection.
#[derive(Default, Deserialize)]
struct Links {
    /// A further page. Keystone v3 does not paginate projects or domains: a link here
    /// means the answer is not the whole collection.
    #[serde(default)]
    next: Option<String>,
}

/// A project row as listed, with the fields that show whether the filters were applied.
#[derive(Deserialize)]
struct ProjectRow {
    id: String,
    name: String,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The answer of `GET /v3/projects`.
#[derive(Deserialize)]
struct ProjectList {
    projects: Vec<ProjectRow>,
    /// Set (to true) by Keystone when its `list_limit` cut the list short.
    #[serde(default)]
    truncated: Option<bool>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct DomainEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

/// The answer of `GET /v3/domains`.
#[derive(Deserialize)]
struct DomainList {
    domains: Vec<DomainEntry>,
    #[serde(default)]
    truncated: Option<bool>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct OneDomain {
    domain: DomainEntry,
}

/// Whether two Keystone names are the same name as Keystone may match them: Keystone filters
/// names in its database, case-insensitively on MySQL (the common production backend) and
/// exactly on PostgreSQL or SQLite. Compared by Unicode lowercase.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// The refusal of a partial Keystone list: `truncated` set, or a `next` link (Keystone v3
/// does not paginate these lists, so either means the answer is not the whole set, and
/// acting on part of a selection would revoke the rest). A truncated list is terminal
/// ([`TerminalKind::BadRequest`]: the request cannot be answered in full as asked): retrying
/// gives the same partial answer until the cloud operator changes `list_limit`.
fn refuse_partial(truncated: Option<bool>, links: Option<&Links>, what: &str) -> Result<(), Error> {
    if truncated == Some(true) {
        return Err(Error::Terminal {
            kind: TerminalKind::BadRequest,
            message: format!(
                "{what}: keystone truncated the list (\"truncated\": true; its list_limit is \
                 lower than the number of entries it had to consider), so the full set is \
                 unknown and nothing was changed; the cloud operator can raise list_limit in \
                 keystone.conf ([resource] list_limit, or [DEFAULT] list_limit) above the \
                 number of projects in the domain"
            ),
        });
    }
    if links.and_then(|l| l.next.as_deref()).is_some() {
        return Err(Error::unexpected(
            what,
            "keystone answered with a next page, which keystone v3 does not use for this \
             list; the full set is unknown and nothing was changed",
        ));
    }
    Ok(())
}

/// Refuses a list of `rows` rows that may have been cut at Keystone's `max_db_limit`
/// (`cap`): Keystone then answers the first rows without saying the list is partial.
fn refuse_cut(rows: usize, cap: usize, what: &str) -> Result<(), Error> {
    if rows < cap {
        return Ok(());
    }
    Err(Error::Terminal {
        kind: TerminalKind::BadRequest,
        message: format!(
            "{what}: keystone answered {rows} projects, as many as its max_db_limit ({cap}), \
             beyond which it cuts a list without marking it truncated; the full set is unknown \
             and nothing was changed. Narrow the selection, or raise [DEFAULT] max_db_limit in \
             keystone.conf and tell the operator (--keystone-max-db-limit)"
        ),
    })
}

/// The projects of a `GET /v3/projects` answer, refused when the list is partial or when
/// a row shows that a filter was not applied (another domain, a disabled project, another
/// name, a missing tag): the answer would then not be the set asked for.
fn checked_projects(
    list: ProjectList,
    domain_id: &str,
    name: Option<&str>,
    tags: &[String],
    what: &str,
) -> Result<Vec<ProjectEntry>, Error> {
    refuse_partial(list.truncated, list.links.as_ref(), what)?;
    let mut projects = Vec::with_capacity(list.projects.len());
    for row in list.projects {
        let odd = |detail: String| Error::unexpected(what, format!("project {}: {detail}", row.id));
        if let Some(other) = row.domain_id.as_deref().filter(|d| *d != domain_id) {
            return Err(odd(format!("in domain {other}, not the one asked for")));
        }
        if row.enabled == Some(false) {
            return Err(odd(
                "disabled, though only enabled projects were asked for".into()
            ));
        }
        if let Some(name) = name.filter(|n| !same_name(n, &row.name)) {
            return Err(odd(format!(
                "named {:?}, which is not {name:?} even ignoring letter case",
                row.name
            )));
        }
        if !tags.is_empty() {
            let Some(has) = &row.tags else {
                return Err(odd(
                    "listed without its tags, so the tag filter cannot be checked (a \
                     keystone without project tags ignores that filter)"
                        .into(),
                ));
            };
            if let Some(missing) = tags.iter().find(|t| !has.iter().any(|h| same_name(h, t))) {
                return Err(odd(format!("does not carry tag {missing:?}")));
            }
        }
        projects.push(ProjectEntry {
            id: row.id,
            name: row.name,
        });
    }
    Ok(projects)
}

impl Session {
    /// The enabled projects of domain `domain_id` named `name` (when given; matched as
    /// Keystone matches names, see [`same_name`]) and carrying every tag of `tags`
    /// (`GET /v3/projects`). A truncated or otherwise partial list is an error, never a
    /// shorter answer.
    pub async fn list_projects(
        &self,
        domain_id: &str,
        name: Option<&str>,
        tags: &[String],
    ) -> Result<Vec<ProjectEntry>, Error> {
        let mut query = vec![
            ("domain_id", domain_id.to_string()),
            ("enabled", "true".to_string()),
        ];
        query.extend(name.map(|n| ("name", n.to_string())));
        if !tags.is_empty() {
            query.push(("tags", tags.join(",")));
        }
        let what = match (name, tags.is_empty()) {
            (Some(name), _) => format!("list projects named {name:?} in domain {domain_id}"),
            (None, false) => format!(
                "list projects of domain {domain_id} tagged {}",
                tags.join(", ")
            ),
            (None, true) => format!("list projects of domain {domain_id}"),
        };
        let list: ProjectList = self
            .identity(Operation::ListProjects, &["projects"], &query, &what)
            .await?;
        let projects = checked_projects(list, domain_id, name, tags, &what)?;
        refuse_cut(projects.len(), self.list_cap, &what)?;
        if !tags.is_empty() {
            // Keystone reads at most max_db_limit projects of the domain and filters them by
            // tag afterwards: with more projects in the domain, tagged ones may be missing
            // from an answer of any length.
            let all = format!(
                "list projects of domain {domain_id} (to know whether keystone read them all before filtering by tag)"
            );
            let query = &query[..2];
            let list: ProjectList = self
                .identity(Operation::ListProjects, &["projects"], query, &all)
                .await?;
            refuse_partial(list.truncated, list.links.as_ref(), &all)?;
            refuse_cut(list.projects.len(), self.list_cap, &all)?;
        }
        Ok(projects)
    }

    /// The ID of the domain `name_or_id`: looked up by name (`GET /v3/domains?name=`, which
    /// only admins and system readers may do), else read as an ID (`GET /v3/domains/{id}`,
    /// which a domain reader may do for its own domain). None when neither finds it. A
    /// partial list, or more than one domain of that name, is an error.
    pub async fn domain_id(&self, name_or_id: &str) -> Result<Option<String>, Error> {
        let token = self.token().await?;
        if let Some((id, name)) = &token.domain
            && (name_or_id == id || name_or_id == name)
        {
            return Ok(Some(id.clone()));
        }
        let what = format!("find domain {name_or_id}");
        let by_name = [("name", name_or_id.to_string())];
        match self
            .identity::<DomainList>(Operation::ListDomains, &["domains"], &by_name, &what)
            .await
        {
            Ok(list) => {
                if let Some(id) = checked_domain(list, name_or_id, &what)? {
                    return Ok(Some(id));
                }
            }
            Err(Error::Terminal {
                kind: TerminalKind::Forbidden,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        match self
            .identity::<OneDomain>(Operation::GetDomain, &["domains", name_or_id], &[], &what)
            .await
        {
            Ok(one) if one.domain.id == name_or_id => Ok(Some(one.domain.id)),
            Ok(one) => Err(Error::unexpected(
                &what,
                format!("asked for domain ID {name_or_id}, got {}", one.domain.id),
            )),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET` of `segments` under Keystone's `/v3` (the auth_url) with the query `pairs`,
    /// its 2xx body decoded.
    async fn identity<T: DeserializeOwned>(
        &self,
        operation: Operation,
        segments: &[&str],
        pairs: &[(&'static str, String)],
        what: &str,
    ) -> Result<T, Error> {
        let call = Call {
            operation,
            what,
            cloud: &self.config().cloud_name,
            secret: None,
        };
        let text = self
            .send(&call, None, |_| {
                let base = Url::parse(&self.config().auth_url)
                    .map_err(|e| Error::config(format!("auth_url: {e}")))?;
                let mut url = join(base, segments, what)?;
                if !pairs.is_empty() {
                    url.query_pairs_mut().extend_pairs(pairs);
                }
                Ok(url)
            })
            .await?;
        decode(&text, what)
    }
}

/// The one domain of a `GET /v3/domains?name=` answer (None when empty). A partial list,
/// a domain of another name, or two domains are errors: which one was meant is unknown.
fn checked_domain(list: DomainList, name: &str, what: &str) -> Result<Option<String>, Error> {
    refuse_partial(list.truncated, list.links.as_ref(), what)?;
    if let Some(other) = list
        .domains
        .iter()
        .find(|d| d.name.as_deref().is_some_and(|n| !same_name(n, name)))
    {
        return Err(Error::unexpected(
            what,
            format!(
                "domain {} is not named {name:?} even ignoring letter case",
                other.id
            ),
        ));
    }
    match list.domains.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.id.clone())),
        more => Err(Error::Terminal {
            kind: TerminalKind::BadRequest,
            message: format!(
                "{what}: {} domains match that name (ignoring letter case): {}; name the \
                 domain by its ID",
                more.len(),
                more.iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_as_long_as_keystones_max_db_limit_may_be_cut_and_is_refused() {
        assert!(refuse_cut(999, 1000, "list").is_ok());
        let cut = refuse_cut(1000, 1000, "list projects tagged gpu");
        let message = cut.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("max_db_limit (1000)"), "{message}");
        assert!(message.contains("--keystone-max-db-limit"), "{message}");
        assert!(refuse_cut(2000, 5000, "list").is_ok(), "a raised limit");
    }

    fn projects(body: &str, name: Option<&str>, tags: &[&str]) -> Result<Vec<ProjectEntry>, Error> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let list: ProjectList = decode(body, "list projects")?;
        checked_projects(list, "d1", name, &tags, "list projects")
    }

    #[test]
    fn a_truncated_project_list_is_a_terminal_error_saying_what_to_raise() {
        // Keystone with [resource] list_limit = 3 and more projects in the domain.
        let body = r#"{"projects": [
            {"id": "p1", "name": "a", "domain_id": "d1", "enabled": true, "tags": ["gpu"]},
            {"id": "p2", "name": "b", "domain_id": "d1", "enabled": true, "tags": ["gpu"]}],
            "links": {"self": "http://k/v3/projects", "previous": null, "next": null},
            "truncated": true}"#;
        let err = projects(body, None, &["gpu"]).expect_err("truncated");
        let Error::Terminal { kind, message } = &err else {
            panic!("not terminal: {err:?}");
        };
        assert_eq!(*kind, TerminalKind::BadRequest);
        assert!(message.contains("truncated"), "{message}");
        assert!(message.contains("list_limit"), "{message}");
        assert!(message.contains("nothing was changed"), "{message}");
    }

    #[test]
    fn a_complete_project_list_is_read_with_or_without_links() {
        let body = r#"{"projects": [
            {"id": "p1", "name": "a", "domain_id": "d1", "enabled": true, "tags": ["GPU", "x"]}],
            "links": {"self": "http://k/v3/projects", "previous": null, "next": null}}"#;
        let found = projects(body, None, &["gpu"]).expect("complete");
        assert_eq!(
            found,
            [ProjectEntry {
                id: "p1".into(),
                name: "a".into()
            }]
        );
        let found = projects(r#"{"projects": [], "truncated": false}"#, None, &[]).expect("empty");
        assert!(found.is_empty());
        let found = projects(r#"{"projects": [{"id": "p1", "name": "a"}]}"#, None, &[])
            .expect("rows without the filtered fields are taken as listed");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_partial_or_odd_project_list_is_refused() {
        let transient = |body: &str, name: Option<&str>, tags: &[&str]| {
            let err = projects(body, name, tags).expect_err(body);
            assert!(err.is_transient(), "{body}: {err:?}");
            err.to_string()
        };
        // Keystone v3 does not paginate projects: a next link means a partial answer.
        let message = transient(
            r#"{"projects": [], "links": {"next": "http://k/v3/projects?marker=p9"}}"#,
            None,
            &[],
        );
        assert!(message.contains("next page"), "{message}");
        // Filters that were not applied: another domain, a disabled project, another name,
        // tags missing or not reported (a keystone without project tags ignores the filter).
        transient(
            r#"{"projects": [{"id": "p1", "name": "a", "domain_id": "d2"}]}"#,
            None,
            &[],
        );
        transient(
            r#"{"projects": [{"id": "p1", "name": "a", "enabled": false}]}"#,
            None,
            &[],
        );
        let message = transient(
            r#"{"projects": [{"id": "p1", "name": "team-b"}]}"#,
            Some("team-a"),
            &[],
        );
        assert!(message.contains("letter case"), "{message}");
        transient(
            r#"{"projects": [{"id": "p1", "name": "a", "tags": ["x"]}]}"#,
            None,
            &["gpu"],
        );
        transient(
            r#"{"projects": [{"id": "p1", "name": "a"}]}"#,
            None,
            &["gpu"],
        );
        // Shapes that are not a project list at all.
        transient(r#"{"projects": [], "truncated": "yes"}"#, None, &[]);
        transient(r#"{"projects": {"id": "p1"}}"#, None, &[]);
        transient(r#"{"items": []}"#, None, &[]);
    }

    #[test]
    fn names_match_ignoring_letter_case_as_a_mysql_backed_keystone_does() {
        let body = r#"{"projects": [{"id": "p1", "name": "Team-A", "domain_id": "d1"}]}"#;
        let found = projects(body, Some("team-a"), &[]).expect("same name, other case");
        assert_eq!(found[0].name, "Team-A");
        assert!(same_name("Ärzte", "äRZTE"));
        assert!(!same_name("team-a", "team-b"));
    }

    fn domain(body: &str, name: &str) -> Result<Option<String>, Error> {
        let list: DomainList = decode(body, "find domain")?;
        checked_domain(list, name, "find domain")
    }

    #[test]
    fn a_domain_list_must_be_complete_and_name_one_domain() {
        assert_eq!(
            domain(r#"{"domains": [{"id": "d1", "name": "Corp"}]}"#, "corp").expect("one"),
            Some("d1".into())
        );
        assert_eq!(domain(r#"{"domains": []}"#, "corp").expect("none"), None);
        let err = domain(r#"{"domains": [], "truncated": true}"#, "corp").expect_err("cut");
        assert!(err.to_string().contains("list_limit"), "{err}");
        let err = domain(
            r#"{"domains": [{"id": "d1", "name": "Corp"}, {"id": "d2", "name": "CORP"}]}"#,
            "corp",
        )
        .expect_err("two");
        assert!(err.to_string().contains("2 domains"), "{err}");
        let err = domain(r#"{"domains": [{"id": "d1", "name": "Other"}]}"#, "corp")
            .expect_err("not filtered");
        assert!(err.is_transient(), "{err}");
    }
}
