//! The code's shape, checked: no import cycle among the modules of `src/controller` and of
//! `src/openstack`, and no source file longer than 700 lines before its tests. Reads the
//! sources; no server needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Longest a source file may be, its `#[cfg(test)]` part left out.
const MAX_LINES: usize = 700;

/// The sources of one directory: module name → text (a `foo/mod.rs` is module `mod`).
fn modules(dir: &str) -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found = BTreeMap::new();
    let entries = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{dir}: {e}"));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            found.insert(name, text);
        }
    }
    found
}

/// The text before a file's tests, without comment lines.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or_default();
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sibling modules `text` refers to, as `super::name` or `crate::<parent>::name`.
fn uses(text: &str, parent: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code(text);
    let mut found = BTreeSet::new();
    for prefix in ["super::".to_string(), format!("crate::{parent}::")] {
        for (at, _) in code.match_indices(&prefix) {
            let rest = &code[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if siblings.contains(&name) {
                found.insert(name);
            }
        }
        // `use super::{a, b::C}` lists.
        for (at, _) in code.match_indices(&format!("{prefix}{{")) {
            let rest = &code[at + prefix.len() + 1..];
            let list = &rest[..rest.find('}').unwrap_or(rest.len())];
            for item in list.split(',') {
                let name = item.trim().split("::").next().unwrap_or_default().trim();
                if siblings.contains(name) {
                    found.insert(name.to_string());
                }
            }
        }
    }
    found
}

/// A cycle in `graph`, if there is one (as the modules along it).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The import graph among the modules of `src/<parent>` (mod.rs, which declares them all,
/// left out: a child naming its parent's items would show as a cycle through it).
fn graph(parent: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(&format!("src/{parent}"));
    let siblings: BTreeSet<String> = modules.keys().filter(|m| *m != "mod").cloned().collect();
    modules
        .iter()
        .filter(|(name, _)| *name != "mod")
        .map(|(name, text)| (name.clone(), uses(text, parent, &siblings)))
        .collect()
}

#[test]
fn the_controller_modules_import_each_other_without_a_cycle() {
    let graph = graph("controller");
    assert!(
        graph["pass"].contains("plan"),
        "the reader sees imports: {graph:?}"
    );
    assert_eq!(cycle(&graph), None, "{graph:#?}");
    // Children reach shared items through their own modules, not through mod.rs.
    for (name, text) in modules("src/controller") {
        let code = code(&text);
        let parent_items = ["use super::{", "use super::Context", "use super::Failure"];
        assert!(
            name == "mod" || !parent_items.iter().any(|p| code.contains(p)),
            "{name}.rs imports from mod.rs"
        );
    }
}

#[test]
fn the_openstack_modules_import_each_other_without_a_cycle() {
    let graph = graph("openstack");
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn a_cycle_would_be_found() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    let siblings = BTreeSet::from(["plan".to_string(), "model".to_string()]);
    let text = "use super::{model::Step, plan};\nfn f() { crate::controller::plan::plan(); }";
    assert_eq!(uses(text, "controller", &siblings), siblings);
}

/// Whether module `name` is compiled for tests only (declared under `#[cfg(test)]`).
fn test_only(name: &str, modules: &BTreeMap<String, String>) -> bool {
    let declared = [
        format!("#[cfg(test)]\nmod {name};"),
        format!("#[cfg(test)]\npub mod {name};"),
    ];
    modules
        .values()
        .any(|text| declared.iter().any(|d| text.contains(d.as_str())))
}

#[test]
fn no_source_file_is_longer_than_700_lines_before_its_tests() {
    let mut long = Vec::new();
    for dir in ["src", "src/controller", "src/openstack"] {
        let modules = modules(dir);
        for (name, text) in modules.iter().filter(|(n, _)| !test_only(n, &modules)) {
            let lines = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .count();
            if lines > MAX_LINES {
                long.push(format!("{dir}/{name}.rs: {lines}"));
            }
        }
    }
    assert!(long.is_empty(), "{long:?}");
}
