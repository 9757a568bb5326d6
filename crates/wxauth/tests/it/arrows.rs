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
//!   a `vocab::Caller` that `auth` verified)
//! - `gateway` → `config`, `vocab`, `error`
//! - `admin` (the operator's rules) → `auth`, `data`, `vocab`, `error`, and
//!   `store`'s audit row and the rows it turns into views
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
    ("cache", &["vocab", "config", "error"]),
    ("auth", &["store", "cache", "config", "vocab", "error"]),
    ("data", &["store", "config", "vocab", "error"]),
    ("gateway", &["config", "vocab", "error"]),
    ("admin", &["auth", "data", "store", "vocab", "error"]),
    (
        "http",
        &[
            "admin", "auth", "data", "gateway", "cache", "config", "vocab", "error",
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
