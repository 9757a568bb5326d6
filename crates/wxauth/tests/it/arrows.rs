//! The layers' arrows, checked: each module of `crates/wxauth/src` may use
//! only the modules below it. Read from the source (every `crate::x` path
//! outside comments), so a forbidden import fails here, not in review.
//!
//! The allowed arrows (also in docs/development.md):
//!
//! - `vocab` (the shared vocabulary) → `error` only
//! - `config` → `vocab`, `error`
//! - `store`, `cache` → `vocab`, `config`, `private_files`, `error` (and
//!   `cache` → `store`'s nothing)
//! - `auth` → `store`, `cache`, `config`, `vocab`, `error`
//! - `data` → `store`, `config`, `vocab`, `error` (never `auth`: it acts for
//!   a `vocab::Owner` that `auth` verified)
//! - `blobs` (files' bytes) → `private_files`, `error`
//! - `files` → `store`, `blobs`, `config`, `vocab`, `error`
//! - `gateway` → `config`, `vocab`, `error`
//! - `admin` (the operator's rules) → `auth`, `data`, `files`, `vocab`, `error`, and
//!   `store`'s audit row and the rows it turns into views
//! - `platform` (WeChat's pushes and services) → `admin`, `auth`, `cache`,
//!   `files`, `store`, `config`, `vocab`, `error`
//! - `http` → everything above but `store`; nothing but `lib`, `main` and
//!   the fuzz entry points (`fuzzing`) uses `http`
//! - `lib`, `main` and `cli` (the binary) and `fuzzing` wire everything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What each module may use (itself always).
const ALLOWED: &[(&str, &[&str])] = &[
    ("vocab", &["error"]),
    ("error", &[]),
    ("private_files", &[]),
    ("config", &["vocab", "error"]),
    ("store", &["vocab", "config", "private_files", "error"]),
    ("blobs", &["private_files", "config", "error"]),
    ("cache", &["vocab", "config", "error"]),
    ("auth", &["store", "cache", "config", "vocab", "error"]),
    ("data", &["store", "config", "vocab", "error"]),
    ("files", &["store", "blobs", "config", "vocab", "error"]),
    ("gateway", &["config", "vocab", "error"]),
    (
        "migrate",
        &["auth", "files", "store", "config", "vocab", "error"],
    ),
    ("realtime", &["data", "store", "config", "vocab", "error"]),
    (
        "platform",
        &[
            "admin", "auth", "cache", "files", "store", "config", "vocab", "error",
        ],
    ),
    (
        "admin",
        &["auth", "data", "files", "store", "vocab", "error"],
    ),
    (
        "http",
        &[
            "admin", "auth", "data", "files", "gateway", "realtime", "platform", "cache", "config",
            "vocab", "error",
        ],
    ),
    ("dev", &["config", "private_files", "error"]),
];

/// Modules that wire everything together.
const WIRING: &[&str] = &["lib", "main", "cli", "fuzzing"];

/// The top-level module a source file belongs to.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

fn visit(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::x` paths in the code of `text` (comments left out).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut broken = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = module_of(relative);
        modules.insert(module.clone());
        if WIRING.contains(&module.as_str()) {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            broken.push(format!(
                "{}: module {module} has no entry in ALLOWED",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in uses(&text) {
            if used != module && !may.contains(&used.as_str()) {
                broken.push(format!("{}: {module} → {used}", relative.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "forbidden arrows:\n{}",
        broken.join("\n")
    );
    // The table covers every module there is, and names none that is gone.
    for (module, _) in ALLOWED {
        assert!(
            modules.contains(*module),
            "ALLOWED names {module}, which is gone"
        );
    }
}

#[test]
fn the_checker_sees_a_forbidden_import() {
    let text =
        "use crate::store::Store;\n// crate::auth in a comment\nlet x = crate::auth::Caller;";
    let found = uses(text);
    assert!(
        found.contains("store") && found.contains("auth"),
        "{found:?}"
    );
    let only_comment = uses("/// see crate::http for more");
    assert!(only_comment.is_empty(), "{only_comment:?}");
}

/// `super::x` paths in the code of `text` (comments left out): the sibling
/// modules a file of a folder uses.
fn sibling_uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("super::") {
            let mut after = &rest[at + "super::".len()..];
            // `super::super::x` is the parent's sibling, not ours.
            let mut up = 1;
            while let Some(more) = after.strip_prefix("super::") {
                after = more;
                up += 1;
            }
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // `super::Store` is the folder's own mod.rs, not a sibling.
            if up == 1 && !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

/// A cycle in `graph`, if any, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(found) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(found);
        }
    }
    None
}

/// Inside each folder (`store/`, `auth/`, …) the files use each other one
/// way only: `writer → user_cache → rows`, never back.
#[test]
fn no_folder_has_a_cycle_between_its_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut folders: BTreeMap<std::path::PathBuf, BTreeMap<String, BTreeSet<String>>> =
        BTreeMap::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || file.parent() == Some(src.as_path()) {
            continue;
        }
        let folder = file.parent().unwrap().to_path_buf();
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests (`mod tests { use super::*; }`) look up, not sideways.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        folders
            .entry(folder)
            .or_default()
            .insert(name, sibling_uses(code));
    }
    for (folder, graph) in &folders {
        let found = cycle(graph);
        assert!(
            found.is_none(),
            "{}: the files use each other in a cycle: {}",
            folder.strip_prefix(&src).unwrap().display(),
            found.unwrap_or_default().join(" → ")
        );
    }
}

#[test]
fn the_cycle_finder_finds_one() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("writer", &["user_cache"][..]),
        ("user_cache", &["users"]),
        ("users", &["writer"]),
        ("rows", &[]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(
        cycle(&graph).unwrap(),
        ["user_cache", "users", "writer", "user_cache"]
    );
    assert_eq!(
        sibling_uses("use super::rows::X; // super::users\nsuper::Store; super::super::extract"),
        BTreeSet::from(["rows".to_owned()])
    );
}
