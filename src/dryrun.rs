//! The `plan` command: what a pass would change in Glance for ImageShares read from the
//! cluster or from manifest files (no cluster needed), as a report for people or as JSON,
//! with an exit code for scripts (0 nothing would change, 2 something would, like
//! `terraform plan -detailed-exitcode`). Reading manifests and rendering live here; the
//! pass itself is the operator's ([`crate::controller::preview`]: Glance writes and the
//! writer turned into no-ops), and [`object_plan`] is pure over its result.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::MemberPhase;
use crate::api::{ImageShare, Membership, Reason, ResolvedProject, Rotation};
use crate::controller::model::{Action, Failure, Identity, Outcome, Step};
use crate::controller::report::PassResult;
use crate::controller::status;

/// Exit code when nothing would change.
pub const NO_CHANGES: u8 = 0;
/// Exit code when the plan of some object could not be made (a pass would stop, or some
/// credentials could not be used).
pub const ERROR: u8 = 1;
/// Exit code when a pass would change something in Glance.
pub const CHANGES: u8 = 2;
/// Undeclared members listed per image at most.
const LISTED: usize = 20;

/// What passes would do for a set of ImageShares.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One entry per ImageShare, in the order read.
    pub objects: Vec<ObjectPlan>,
    /// Glance writes a pass would make, over all objects (none for a suspended one).
    pub changes: usize,
}

impl Report {
    /// Adds one object's plan.
    pub fn push(&mut self, object: ObjectPlan) {
        if !object.suspended {
            self.changes += object.changes.len();
        }
        self.objects.push(object);
    }

    /// [`ERROR`] when a pass of some object would stop or some credentials could not be
    /// used (the plan is incomplete), else [`CHANGES`] when a pass would change something,
    /// else [`NO_CHANGES`].
    pub fn exit_code(&self) -> u8 {
        let credentials = [Reason::CredentialsMissing, Reason::CredentialsInvalid]
            .map(|r| r.as_str().to_string());
        let incomplete = |o: &ObjectPlan| {
            o.stopped.is_some() || o.problems.iter().any(|p| credentials.contains(&p.reason))
        };
        if self.objects.iter().any(incomplete) {
            ERROR
        } else if self.changes > 0 {
            CHANGES
        } else {
            NO_CHANGES
        }
    }
}

/// What a pass would do for one ImageShare.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPlan {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// Where it was read: a file, or `cluster`.
    pub source: String,
    /// Suspended: a pass changes nothing; `changes` is what it would do once resumed.
    pub suspended: bool,
    /// The projects names and the project selector resolve to.
    pub projects: Vec<ResolvedProject>,
    /// The images the spec resolves to, with their members now.
    pub images: Vec<ImageSeen>,
    /// The Glance writes a pass would make, in order.
    pub changes: Vec<Change>,
    /// Why a pass would stop before changing anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Problem>,
    /// What the operator would then report as Ready (its reason and message), once the
    /// changes are made: the same status builder the operator uses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Problem>,
    /// What a pass would report as not in sync (per member: conflicts, failures).
    pub problems: Vec<Problem>,
    /// Anything else worth knowing before applying.
    pub notes: Vec<String>,
}

/// An image as a pass would see it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSeen {
    /// Glance image ID.
    pub id: String,
    /// Image name, when known.
    pub name: Option<String>,
    /// Visibility, when known.
    pub visibility: Option<String>,
    /// Members it has now.
    pub members: usize,
    /// With rotation: `current`, or `grace until <time>` (a build that left the newest ones
    /// and keeps its members until then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
}

/// One Glance write.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `add`, `remove` or `setStatus`.
    pub action: &'static str,
    /// Glance image ID.
    pub image: String,
    /// Keystone project ID.
    pub project: String,
    /// The status set (setStatus only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Whose credentials make the call: `producer`, or the consumer's Secret.
    #[serde(rename = "as")]
    pub identity: String,
    /// The change in words.
    pub description: String,
}

/// A reason (as in the Ready condition) and a message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Ready reason.
    pub reason: String,
    /// Readable detail.
    pub message: String,
}

impl From<&Failure> for Problem {
    fn from(f: &Failure) -> Self {
        Problem {
            reason: f.reason.to_string(),
            message: f.message.clone(),
        }
    }
}

fn change(step: &Step) -> Change {
    let (action, status) = match &step.action {
        Action::Add => ("add", None),
        Action::Remove => ("remove", None),
        Action::SetStatus { status, .. } => ("setStatus", Some(status.to_string())),
    };
    Change {
        action,
        image: step.key.image.to_string(),
        project: step.key.project.to_string(),
        status,
        identity: match step.identity() {
            Identity::Producer => "producer".into(),
            Identity::Consumer(c) => format!("secret {}", c.secret_name),
        },
        description: step.to_string(),
    }
}

/// The plan of one object from the result of its previewed pass. Pure.
pub fn object_plan(share: &ImageShare, source: &str, result: &PassResult) -> ObjectPlan {
    let mut object = ObjectPlan {
        namespace: share.namespace().unwrap_or_default(),
        name: share.name_any(),
        source: source.to_string(),
        suspended: share.spec.suspend,
        ..ObjectPlan::default()
    };
    let report = match result.pass() {
        Ok(report) => report,
        Err(failure) => {
            object.stopped = Some(Problem::from(failure));
            return object;
        }
    };
    let observed = &report.observed;
    object.images = observed
        .images
        .iter()
        .map(|i| ImageSeen {
            id: i.id.to_string(),
            name: i.name.clone(),
            visibility: i.visibility.as_ref().map(|v| v.as_str().to_string()),
            members: i.members.len(),
            rotation: match (i.rotation, i.grace_until) {
                (Some(Rotation::Grace), Some(until)) => Some(format!("grace until {until}")),
                (Some(_), _) => Some("current".into()),
                (None, _) => None,
            },
        })
        .collect();
    object.changes = report
        .outcomes
        .iter()
        .map(|(step, _)| change(step))
        .collect();
    object.projects = report.projects.clone();
    object
        .problems
        .extend(observed.missing.as_ref().map(Problem::from));
    for (project, failure) in &observed.member_failures {
        let mut problem = Problem::from(failure);
        problem.message = format!("project {project}: {}", problem.message);
        object.problems.push(problem);
    }
    // Changes a pass could not make: the consumer credentials a status change would use
    // cannot be opened (a pass opens them only when it makes the change).
    for (step, outcome) in &report.outcomes {
        if let Outcome::Failed(failure) = outcome {
            let mut problem = Problem::from(failure);
            problem.message = format!("project {}: {}", step.key.project, problem.message);
            object.problems.push(problem);
        }
    }
    // The verdict the operator would then report: the status it builds from the same pass.
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let generation = share.metadata.generation;
    let built = status::build(
        &result.spec,
        generation,
        Ok(report),
        share.status.as_ref(),
        &now,
    );
    object.verdict = built.status.conditions.first().map(|ready| Problem {
        reason: ready.reason.clone(),
        message: ready.message.clone(),
    });
    for row in &built.status.members {
        let Some(message) = &row.message else {
            continue;
        };
        let about = format!("project {} on image {}: {message}", row.project, row.image);
        match row.state {
            MemberPhase::Conflict | MemberPhase::Failed | MemberPhase::Progressing => {
                object.problems.push(Problem {
                    reason: row.state.as_str().into(),
                    message: about,
                });
            }
            MemberPhase::InSync | MemberPhase::AwaitingConsumer => object.notes.push(about),
            _ => {}
        }
    }
    if share.spec.suspend {
        object.notes.push(
            "suspended: a pass changes nothing; the changes are what it would do once resumed"
                .into(),
        );
    }
    if report.deferred {
        object.notes.push(format!(
            "{} removal(s) wait until another ImageShare that may declare them is processed",
            report.waiting
        ));
    }
    let additive = share.spec.membership == Membership::Additive;
    if additive && share.status.is_none() && share.spec.producer.is_some() {
        // Without a status the ledger is unknown: members this object added before and no
        // longer declares would be removed, but cannot be told from members added by hand.
        // Declared: members by ID, and whatever the pass records (names, selected projects).
        let declared: Vec<&str> = share
            .spec
            .members
            .iter()
            .filter(|m| m.domain.is_none())
            .map(|m| m.project.as_str())
            .chain(report.ledger.projects().map(|p| p.as_str()))
            .collect();
        let changed: Vec<&str> = report
            .outcomes
            .iter()
            .map(|(step, _)| step.key.project.as_str())
            .collect();
        for image in &observed.images {
            let undeclared: Vec<&str> = image
                .members
                .keys()
                .map(|p| p.as_str())
                .filter(|p| !declared.contains(p) && !changed.contains(p))
                .collect();
            if !undeclared.is_empty() {
                let more = undeclared.len().saturating_sub(LISTED);
                let mut listed = undeclared[..undeclared.len().min(LISTED)].join(", ");
                if more > 0 {
                    let _ = write!(listed, " and {more} more");
                }
                object.notes.push(format!(
                    "image {}: not declared: {listed}; removed only if this ImageShare added them (its ledger is in the cluster status, not in the file)",
                    image.id
                ));
            }
        }
    }
    object
}

/// The report for people.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for object in &report.objects {
        let _ = writeln!(
            out,
            "imageshare {}/{} ({})",
            object.namespace, object.name, object.source
        );
        if let Some(stopped) = &object.stopped {
            let _ = writeln!(
                out,
                "  a pass would stop: {}: {}",
                stopped.reason, stopped.message
            );
            continue;
        }
        for p in &object.projects {
            let how = if p.selected { "selected" } else { "named" };
            let _ = writeln!(
                out,
                "  project {} ({how}, domain {}): {}",
                p.name, p.domain, p.id
            );
        }
        for image in &object.images {
            let _ = writeln!(
                out,
                "  image {} ({}, {}{}): {} member(s) now",
                image.id,
                image.name.as_deref().unwrap_or("no name"),
                image.visibility.as_deref().unwrap_or("visibility unknown"),
                image
                    .rotation
                    .as_deref()
                    .map_or(String::new(), |r| format!(", {r}")),
                image.members
            );
        }
        for problem in &object.problems {
            let _ = writeln!(out, "  {}: {}", problem.reason, problem.message);
        }
        if let Some(verdict) = &object.verdict {
            let _ = writeln!(out, "  then Ready {}: {}", verdict.reason, verdict.message);
        }
        for note in &object.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        for change in &object.changes {
            let _ = writeln!(out, "  would {}", change.description);
        }
        if object.changes.is_empty() {
            let _ = writeln!(out, "  nothing to change");
        }
    }
    let _ = writeln!(
        out,
        "{} change(s) to Glance in {} ImageShare(s)",
        report.changes,
        report.objects.len()
    );
    out
}

/// Reads the ImageShares in manifest files: each path a YAML or JSON file (several
/// documents allowed, `kind: List` too), or a directory searched for `*.yaml`, `*.yml` and
/// `*.json` files, sorted. Other kinds are skipped. Objects without a namespace get
/// `namespace`. Returns each object with the file it came from.
pub fn load(paths: &[PathBuf], namespace: &str) -> anyhow::Result<Vec<(String, ImageShare)>> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| anyhow::anyhow!("{}: not YAML: {e}", file.display()))?;
        let items =
            docs.into_iter()
                .flat_map(|doc| match doc.get("kind").and_then(|k| k.as_str()) {
                    Some("List") => doc
                        .get("items")
                        .and_then(|i| i.as_array())
                        .cloned()
                        .unwrap_or_default(),
                    _ => vec![doc],
                });
        for (index, doc) in items.enumerate() {
            let is_share = doc.get("kind").and_then(|k| k.as_str()) == Some("ImageShare")
                && doc
                    .get("apiVersion")
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| v.starts_with("imageshare.dev/"));
            if !is_share {
                continue;
            }
            let mut share: ImageShare = serde_json::from_value(doc).with_context(|| {
                format!(
                    "{}: document {}: not a valid ImageShare",
                    file.display(),
                    index + 1
                )
            })?;
            if share.metadata.namespace.is_none() {
                share.metadata.namespace = Some(namespace.to_string());
            }
            found.push((file.display().to_string(), share));
        }
    }
    Ok(found)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !path.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading directory {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let manifest = entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if entry.is_dir() || manifest {
            collect(&entry, files)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MemberStatus;
    use crate::controller::fixtures::{self, SpecExt};
    use crate::controller::observe::Observed;
    use crate::controller::overlap::Claims;
    use crate::controller::plan::{self, History};
    use crate::controller::report::Report as PassReport;

    /// What a pass would do for `spec` against image `img` with `present` members, from an
    /// empty ledger and no other object.
    fn planned(spec: crate::api::ImageShareSpec, present: &[&str]) -> ObjectPlan {
        planned_with(spec, present, Claims::default())
    }

    /// The same, with other objects' claims.
    fn planned_with(
        spec: crate::api::ImageShareSpec,
        present: &[&str],
        claims: Claims,
    ) -> ObjectPlan {
        let mut share = ImageShare::new("web", spec);
        share.metadata.namespace = Some("team".into());
        let members: Vec<_> = present
            .iter()
            .map(|p| (*p, MemberStatus::Pending))
            .collect();
        let observed = Observed {
            images: vec![fixtures::image("img", &members)],
            ..Observed::default()
        };
        let ledger = Default::default();
        let plan = plan::plan(
            &share.spec,
            &observed.images,
            &ledger,
            &claims,
            &History::default(),
        );
        // As the previewed pass makes them: every change answered as made.
        let outcomes: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.clone(), Outcome::Done))
            .collect();
        let report = PassReport {
            ledger: plan.ledger_after(&outcomes),
            outcomes,
            observed,
            claims,
            deferred: plan.deferred,
            waiting: plan.waiting,
            kept: plan.kept,
            ..PassReport::default()
        };
        let result = PassResult {
            spec: share.spec.clone(),
            outcome: Ok(report),
        };
        object_plan(&share, "share.yaml", &result)
    }

    #[test]
    fn changes_are_listed_and_make_exit_code_two() {
        let object = planned(fixtures::spec().member("a", None).member("b", None), &["b"]);
        let actions: Vec<_> = object
            .changes
            .iter()
            .map(|c| (c.action, c.project.as_str(), c.identity.as_str()))
            .collect();
        assert_eq!(actions, [("add", "a", "producer")]);
        let mut report = Report::default();
        report.push(object);
        assert_eq!((report.changes, report.exit_code()), (1, CHANGES));
        let text = render_text(&report);
        assert!(text.contains("would add project a to image img"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["objects"][0]["changes"][0]["as"], "producer");
    }

    #[test]
    fn resolved_projects_are_shown_with_their_ids() {
        let mut object = planned(fixtures::spec().member("id-a", None), &[]);
        object.projects.push(ResolvedProject {
            id: "id-a".into(),
            name: "team-a".into(),
            domain: "Default".into(),
            selected: true,
        });
        let mut report = Report::default();
        report.push(object);
        let text = render_text(&report);
        assert!(
            text.contains("project team-a (selected, domain Default): id-a"),
            "{text}"
        );
    }

    #[test]
    fn nothing_to_change_is_exit_code_zero_and_a_suspended_object_changes_nothing() {
        let mut report = Report::default();
        report.push(planned(fixtures::spec().member("a", None), &["a"]));
        assert_eq!(report.exit_code(), NO_CHANGES);
        report.push(planned(fixtures::spec().member("b", None).suspended(), &[]));
        assert_eq!((report.changes, report.exit_code()), (0, NO_CHANGES));
        assert_eq!(
            report.objects[1].changes.len(),
            1,
            "shown as what it would do once resumed"
        );
    }

    #[test]
    fn a_pass_that_would_stop_is_exit_code_one() {
        let share = ImageShare::new("web", fixtures::spec());
        let failure = Failure::new(crate::api::Reason::CredentialsMissing, "no cloud");
        let mut report = Report::default();
        let result = PassResult {
            spec: share.spec.clone(),
            outcome: Err(failure),
        };
        report.push(object_plan(&share, "share.yaml", &result));
        report.push(planned(fixtures::spec().member("a", None), &[]));
        assert_eq!(report.exit_code(), ERROR);
        assert!(render_text(&report).contains("a pass would stop: CredentialsMissing: no cloud"));
    }

    #[test]
    fn the_verdict_is_what_the_operator_reports_agreement_in_sync_contradiction_conflict() {
        let accepted = MemberStatus::Accepted;
        let spec = || fixtures::spec().member("a", Some(accepted));
        let agreeing = fixtures::Declarer {
            status: Some(accepted),
            ..fixtures::declarer("other/share")
        };
        let object = planned_with(spec(), &[], fixtures::claims_of(&agreeing, &[("img", "a")]));
        let verdict = |o: &ObjectPlan| o.verdict.as_ref().map(|v| v.reason.clone());
        // The earlier object adds it and sets the status: nothing for this one to do yet.
        assert!(object.changes.is_empty());
        assert_eq!(verdict(&object).as_deref(), Some("Progressing"));
        let mut present = planned_with(
            spec(),
            &["a"],
            fixtures::claims_of(&agreeing, &[("img", "a")]),
        );
        assert_eq!(
            verdict(&present).as_deref(),
            Some("Progressing"),
            "pending, the other sets accepted"
        );
        let contradicting = fixtures::Declarer {
            status: Some(MemberStatus::Rejected),
            ..agreeing.clone()
        };
        present = planned_with(
            spec(),
            &["a"],
            fixtures::claims_of(&contradicting, &[("img", "a")]),
        );
        assert_eq!(verdict(&present).as_deref(), Some("Conflict"));
        let text = {
            let mut report = Report::default();
            report.push(present);
            render_text(&report)
        };
        assert!(
            text.contains(
                "ImageShare other/share (created earlier) keeps project a on image img rejected"
            ),
            "{text}"
        );
        assert!(text.contains("then Ready Conflict"), "{text}");
        let alone = planned(fixtures::spec().member("a", None), &["a"]);
        assert_eq!(verdict(&alone).as_deref(), Some("InSync"));
    }

    #[test]
    fn unusable_credentials_make_the_plan_incomplete_but_a_conflict_does_not() {
        let with = |reason: &str| {
            let mut object = planned(fixtures::spec().member("a", None), &[]);
            object.problems.push(Problem {
                reason: reason.into(),
                message: "project b: ...".into(),
            });
            let mut report = Report::default();
            report.push(object);
            report.exit_code()
        };
        assert_eq!(with("CredentialsMissing"), ERROR);
        assert_eq!(with("CredentialsInvalid"), ERROR);
        assert_eq!(with("Conflict"), CHANGES);
    }

    #[test]
    fn members_not_declared_are_named_but_not_removed_without_the_ledger() {
        let object = planned(fixtures::spec().member("a", None), &["a", "by-hand"]);
        assert!(object.changes.is_empty());
        assert!(
            object
                .notes
                .iter()
                .any(|n| n.contains("not declared: by-hand")),
            "{:?}",
            object.notes
        );
        // Exclusive removes them whoever added them (after seeing them twice): no such note.
        let exclusive = planned(fixtures::spec().member("a", None).exclusive(), &["a", "x"]);
        assert!(
            !exclusive.notes.iter().any(|n| n.contains("not declared")),
            "{:?}",
            exclusive.notes
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("imageshare-dryrun-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("nested")).unwrap();
        dir
    }

    const SHARE: &str = "apiVersion: imageshare.dev/v1alpha1
kind: ImageShare
metadata: {name: one}
spec:
  image: {id: img}
  producer: {credentialsRef: {secretName: producer-cloud, cloudName: openstack}}
  members: [{project: a}]
";

    #[test]
    fn manifests_are_read_from_files_and_directories_skipping_other_kinds() {
        let dir = scratch("load");
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: producer-cloud}\n";
        std::fs::write(dir.join("a.yaml"), format!("{SHARE}---\n{secret}---\n")).unwrap();
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}",
            SHARE
                .replace("name: one}", "name: two, namespace: other}")
                .replace('\n', "\n  ")
        );
        std::fs::write(dir.join("nested/b.yml"), list).unwrap();
        std::fs::write(dir.join("notes.txt"), "kind: ImageShare").unwrap();
        let found = load(std::slice::from_ref(&dir), "team").unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|(_, s)| (s.namespace().unwrap(), s.name_any()))
            .collect();
        assert_eq!(
            names,
            [
                ("team".into(), "one".into()),
                ("other".into(), "two".into())
            ]
        );
        assert!(found[0].0.ends_with("a.yaml"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_invalid_imageshare_names_its_file_and_document() {
        let dir = scratch("invalid");
        let broken = SHARE.replace("members: [{project: a}]", "members: 7");
        std::fs::write(dir.join("x.yaml"), format!("{SHARE}---\n{broken}")).unwrap();
        let error = load(&[dir.join("x.yaml")], "team").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("x.yaml: document 2"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
