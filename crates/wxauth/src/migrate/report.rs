//! What an import did, for the operator and for scripts (`--json`):
//! counts per class, every row left out and why (with its file and line),
//! what values were changed in kind, and the `[[collections]]` the data
//! suggests.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// Problems listed one by one in a report (all are counted).
pub const PROBLEMS_LISTED: usize = 1000;

/// Values whose kind an import changed, counted over the run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ValueNotes {
    /// Relation fields left out (their rows are in `_Join` classes the
    /// export does not hold).
    pub relations_left_out: u64,
    /// `Bytes` values kept as their base64 text.
    pub bytes_as_base64: u64,
    /// File fields kept as the old URL (without `--fetch-files`, or when
    /// the file was not fetched: the URLs work only while the old
    /// platform does).
    pub files_as_urls: u64,
    /// File fields rewritten to a file fetched into the file store.
    pub files_fetched: u64,
    /// Pointers kept as they were: to a user not imported, or to a
    /// system class (`_File`, `_Role`…).
    pub pointers_kept: u64,
    /// Top-level fields of the current class that held pointers to other
    /// rows (index suggestions).
    #[serde(skip)]
    pub pointer_fields: BTreeSet<String>,
}

impl ValueNotes {
    fn add(&mut self, other: &ValueNotes) {
        self.relations_left_out += other.relations_left_out;
        self.bytes_as_base64 += other.bytes_as_base64;
        self.files_as_urls += other.files_as_urls;
        self.files_fetched += other.files_fetched;
        self.pointers_kept += other.pointers_kept;
    }
}

/// One line that was not imported.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The file, as named on the command line.
    pub file: String,
    /// 1-based.
    pub line: u64,
    /// A stable code (`invalid_json`, `no_owner`, …).
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

/// The users an import read and made.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UsersReport {
    /// `_User` rows read (LeanCloud).
    pub rows: u64,
    /// Users created (or, in a dry run, that would be).
    pub created: u64,
    /// Rows that are users already here (same app and openid).
    pub existing: u64,
    /// Rows left out, by code.
    pub skipped: BTreeMap<&'static str, u64>,
}

/// The `_File` rows of a run with `--fetch-files`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DownloadsReport {
    /// `_File` rows read.
    pub rows: u64,
    /// Files downloaded into the file store (a dry run downloads nothing:
    /// the files it would try).
    pub fetched: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files an earlier run fetched.
    pub already_present: u64,
    /// Rows not fetched, by code (their fields keep the old URL).
    pub skipped: BTreeMap<&'static str, u64>,
}

/// One class (or CloudBase collection) and the collection it went to.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionReport {
    /// The class as the platform named it.
    pub class: String,
    /// The collection here; None when the class cannot be one.
    pub collection: Option<String>,
    /// Rows read.
    pub rows: u64,
    /// Documents stored (in a dry run: that would be).
    pub stored: u64,
    /// Documents an earlier run stored.
    pub already_present: u64,
    /// Rows left out, by code.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Rows whose ACL let everyone read them.
    pub public_read_rows: u64,
    /// Top-level fields that point at other rows.
    pub pointer_fields: BTreeSet<String>,
}

impl CollectionReport {
    /// A class not seen yet.
    pub fn new(class: &str, collection: Option<String>) -> Self {
        Self {
            class: class.to_owned(),
            collection,
            rows: 0,
            stored: 0,
            already_present: 0,
            skipped: BTreeMap::new(),
            public_read_rows: 0,
            pointer_fields: BTreeSet::new(),
        }
    }

    /// What the data suggests for its `[[collections]]` entry: shared
    /// reads only when every imported row was readable by everyone (a
    /// mixed class stays private: nothing private becomes public), and
    /// an index on each field pointing at other rows (how related rows
    /// are looked up), at most the eight a collection may declare.
    pub fn suggestion(&self) -> Option<Suggestion> {
        let name = self.collection.clone()?;
        let imported = self.stored + self.already_present;
        if imported == 0 {
            return None;
        }
        let public = self.public_read_rows >= imported;
        let (access, why) = if public {
            (
                "public_read",
                "every row's ACL let everyone read it (\"*\": {\"read\": true})".to_owned(),
            )
        } else if self.public_read_rows > 0 {
            (
                "private",
                format!(
                    "{} of {imported} rows were readable by everyone, the rest not: kept private",
                    self.public_read_rows
                ),
            )
        } else {
            ("private", "no row was readable by everyone".to_owned())
        };
        Some(Suggestion {
            name,
            access,
            indexes: self
                .pointer_fields
                .iter()
                .filter(|f| crate::vocab::query::parse_path(f).is_ok())
                .take(crate::config::MAX_INDEXES_PER_COLLECTION)
                .cloned()
                .collect(),
            why,
        })
    }
}

/// A suggested `[[collections]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// The collection.
    pub name: String,
    /// `private` or `public_read`.
    pub access: &'static str,
    /// Fields to index.
    pub indexes: Vec<String>,
    /// Why this access.
    pub why: String,
}

/// Everything one run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `leancloud` or `cloudbase`.
    pub platform: &'static str,
    /// The app the users and documents belong to.
    pub appid: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// The per-user limits were applied (else raised by `--ignore-limits`).
    pub limits_applied: bool,
    /// The files read, as named.
    pub files: Vec<String>,
    /// Lines read in all.
    pub lines: u64,
    /// Users.
    pub users: UsersReport,
    /// Files fetched (`--fetch-files` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads: Option<DownloadsReport>,
    /// Per class, in the order first read.
    pub collections: Vec<CollectionReport>,
    /// Values changed in kind.
    pub values: ValueNotes,
    /// The first [`PROBLEMS_LISTED`] lines left out.
    pub problems: Vec<Problem>,
    /// Every line left out.
    pub problems_total: u64,
    /// How long the run took.
    pub seconds: f64,
}

impl Report {
    pub(super) fn new(platform: &'static str, appid: &str, dry_run: bool, limits: bool) -> Self {
        Self {
            platform,
            appid: appid.to_owned(),
            dry_run,
            limits_applied: limits,
            files: Vec::new(),
            lines: 0,
            users: UsersReport::default(),
            downloads: None,
            collections: Vec::new(),
            values: ValueNotes::default(),
            problems: Vec::new(),
            problems_total: 0,
            seconds: 0.0,
        }
    }

    pub(super) fn problem(&mut self, file: &str, line: u64, code: &'static str, message: String) {
        self.problems_total += 1;
        if self.problems.len() < PROBLEMS_LISTED {
            self.problems.push(Problem {
                file: file.to_owned(),
                line,
                code,
                message,
            });
        }
    }

    /// The report's entry for `class`, made on first use.
    pub(super) fn class(&mut self, class: &str, collection: Option<String>) -> usize {
        match self.collections.iter().position(|c| c.class == class) {
            Some(at) => at,
            None => {
                self.collections
                    .push(CollectionReport::new(class, collection));
                self.collections.len() - 1
            }
        }
    }

    pub(super) fn notes(&mut self, at: usize, notes: &mut ValueNotes) {
        self.values.add(notes);
        let fields = std::mem::take(&mut notes.pointer_fields);
        self.collections[at].pointer_fields.extend(fields);
        *notes = ValueNotes::default();
    }

    /// Documents stored (or that a dry run would store) in all.
    pub fn stored(&self) -> u64 {
        self.collections.iter().map(|c| c.stored).sum()
    }

    /// The suggested `[[collections]]` entries.
    pub fn suggestions(&self) -> Vec<Suggestion> {
        self.collections
            .iter()
            .filter_map(CollectionReport::suggestion)
            .collect()
    }

    /// The suggestions as TOML to paste into the configuration.
    pub fn collections_toml(&self) -> String {
        let mut out = String::new();
        for s in self.suggestions() {
            out.push_str(&format!(
                "[[collections]]\nname = \"{}\"\naccess = \"{}\"  # {}\n",
                s.name, s.access, s.why
            ));
            if !s.indexes.is_empty() {
                let list: Vec<String> = s.indexes.iter().map(|i| format!("{i:?}")).collect();
                out.push_str(&format!(
                    "indexes = [{}]  # fields pointing at other rows\n",
                    list.join(", ")
                ));
            }
            out.push('\n');
        }
        out
    }
}
