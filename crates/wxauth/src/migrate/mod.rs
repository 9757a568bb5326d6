//! Moving onto wxauth: imports of LeanCloud's and CloudBase's exports
//! (`wxauth import`), so each user who logs in with `wx.login` afterwards
//! is the user they were and finds their own data.
//!
//! The rules that make it safe on real data:
//! - Rows are streamed a line at a time and written [`BATCH`] to a
//!   commit, so memory does not grow with the export.
//! - Every id is derived from the row's old id (`ids`), and writes skip
//!   what exists: running an import again changes nothing, and one killed
//!   anywhere finishes when run again (no duplicate; a pointer names the
//!   same id whichever file comes first).
//! - Users come first; which user each old user id became is kept in the
//!   database (`import_user_map`), so owners and pointers resolve across
//!   files and runs. An existing user with the same app and openid is
//!   that user, never a second one.
//! - A line that cannot be imported is reported with its file and line
//!   and the rest goes on; the per-user limits apply unless raised.

pub mod cloudbase;
pub mod ids;
pub mod leancloud;
pub mod report;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::auth::Auth;
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::store::{
    DocumentImported, ImportLimits, ImportedDocument, ImportedUser, Store, UserLimit, UserQuota,
};
use ids::derived_id;
pub use report::Report;
use report::ValueNotes;

/// Rows written in one commit (2,000 imported a 100,000-row export in
/// 4.9 s on SQLite where 500 took 7.5 s: fewer commits and checkpoints).
pub const BATCH: usize = 2000;

/// Rows written between refreshes of the planner's statistics.
const STATISTICS_EVERY: usize = 200_000;

/// A JSON object with its fields in the order the line wrote them (the
/// "first `_User` pointer" of a row is the first in the line).
#[derive(Debug, Clone, Default)]
pub struct Ordered(Vec<(String, Value)>);

impl Ordered {
    /// The field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The fields in order.
    pub fn fields(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The fields in order, owned (a repeated name keeps its last value).
    pub fn into_fields(self) -> impl Iterator<Item = (String, Value)> {
        let mut last: HashMap<String, usize> = HashMap::new();
        for (i, (k, _)) in self.0.iter().enumerate() {
            last.insert(k.clone(), i);
        }
        self.0
            .into_iter()
            .enumerate()
            .filter(move |(i, (k, _))| last.get(k) == Some(i))
            .map(|(_, kv)| kv)
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut fields = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(kv) = m.next_entry::<String, Value>()? {
                    fields.push(kv);
                }
                Ok(Ordered(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Why a row is not imported: a stable code and a sentence.
#[derive(Debug, Clone)]
pub struct RowProblem {
    /// `no_owner`, `no_wechat_identity`, …
    pub code: &'static str,
    /// For a person.
    pub message: String,
}

impl RowProblem {
    /// A problem with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Unix milliseconds of an RFC 3339 time (`2015-06-21T18:02:52.249Z`).
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// The RFC 3339 form (UTC, milliseconds) of Unix milliseconds.
pub fn iso_millis(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Users become users of this app (it must be configured).
    pub appid: String,
    /// Read everything, report, write nothing.
    pub dry_run: bool,
    /// Import rows past the per-user limits (the report says so).
    pub ignore_limits: bool,
}

/// Where an import reads and writes. `progress` hears bytes read of all.
pub struct Importer<'a> {
    auth: &'a Auth,
    store: &'a Store,
    limits: &'a LimitsConfig,
    options: ImportOptions,
    report: Report,
    progress: &'a mut (dyn FnMut(u64, u64) + Send),
    total_bytes: u64,
    done_bytes: u64,
    /// Dry runs: the users this run would have made (old id → user id);
    /// a real run reads them back from the database instead.
    dry_users: HashMap<String, String>,
    started: Instant,
    now: i64,
    since_statistics: usize,
    /// The batch being written while the next is read.
    writing: Option<Writing>,
}

/// A batch being written, and what its outcomes are counted against.
struct Writing {
    write: tokio::task::JoinHandle<Result<Vec<DocumentImported>>>,
    at: usize,
    file: String,
    lines: Vec<u64>,
    public: Vec<bool>,
}

/// A file being read a line at a time.
struct Lines {
    label: String,
    reader: std::io::BufReader<std::fs::File>,
    buf: Vec<u8>,
    line: u64,
}

impl Lines {
    /// The next line that is not blank (without its end) and the bytes
    /// read to reach it, or None at the end.
    fn next(&mut self) -> Result<Option<(u64, usize)>> {
        let mut read = 0;
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::internal_from(format!("cannot read {}", self.label), e))?;
            if n == 0 {
                return Ok(None);
            }
            read += n;
            self.line += 1;
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some((self.line, read)))
    }
}

fn open_all(paths: &[PathBuf]) -> Result<Vec<(Lines, u64)>> {
    paths
        .iter()
        .map(|p| {
            let file = std::fs::File::open(p)
                .map_err(|e| Error::InvalidRequest(format!("cannot open {}: {e}", p.display())))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Ok((
                Lines {
                    label: p.display().to_string(),
                    reader: std::io::BufReader::with_capacity(256 * 1024, file),
                    buf: Vec::new(),
                    line: 0,
                },
                size,
            ))
        })
        .collect()
}

/// The class a LeanCloud export file holds: its name up to the first dot
/// (`Todo.jsonl`, `Todo.0.jsonl` → `Todo`).
pub fn class_of_file(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split('.').next().unwrap_or_default().to_owned()
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A parsed line, or the problem with it.
fn parse_line(bytes: &[u8]) -> std::result::Result<Ordered, RowProblem> {
    serde_json::from_slice::<Ordered>(bytes).map_err(|e| {
        if e.is_data() {
            RowProblem::new("not_an_object", "the line is JSON but not an object")
        } else {
            RowProblem::new("invalid_json", format!("invalid JSON: {e}"))
        }
    })
}

impl<'a> Importer<'a> {
    /// An import into `options.appid` (checked against the configured apps).
    pub fn new(
        auth: &'a Auth,
        store: &'a Store,
        limits: &'a LimitsConfig,
        platform: &'static str,
        options: ImportOptions,
        progress: &'a mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Self> {
        let appid = auth.app(Some(&options.appid))?;
        let options = ImportOptions { appid, ..options };
        Ok(Self {
            auth,
            store,
            limits,
            report: Report::new(
                platform,
                &options.appid,
                options.dry_run,
                !options.ignore_limits,
            ),
            options,
            progress,
            total_bytes: 0,
            done_bytes: 0,
            dry_users: HashMap::new(),
            started: Instant::now(),
            now: auth.now(),
            since_statistics: 0,
            writing: None,
        })
    }

    fn limits(&self) -> Option<ImportLimits> {
        (!self.options.ignore_limits).then(|| ImportLimits {
            max_documents: i64::from(self.limits.documents_per_collection),
            quota: UserQuota {
                max_collections: i64::from(self.limits.collections_per_user),
                max_bytes: i64::try_from(self.limits.bytes_per_user).unwrap_or(i64::MAX),
            },
        })
    }

    /// After every [`STATISTICS_EVERY`] rows written, the database's
    /// planner statistics are refreshed (see
    /// `Store::refresh_import_statistics`): the tables grow from empty.
    async fn written(&mut self, rows: usize) -> Result<()> {
        self.since_statistics += rows;
        if self.since_statistics >= STATISTICS_EVERY && !self.options.dry_run {
            self.since_statistics = 0;
            self.store.refresh_import_statistics(false).await?;
        }
        Ok(())
    }

    fn read(&mut self, n: usize) {
        self.done_bytes += n as u64;
        (self.progress)(self.done_bytes, self.total_bytes);
    }

    async fn finish(mut self) -> Result<Report> {
        self.finish_writing().await?;
        if self.done_bytes < self.total_bytes {
            (self.progress)(self.total_bytes, self.total_bytes);
        }
        self.report.seconds = self.started.elapsed().as_secs_f64();
        // Problems in file and line order (a batch reports its rows'
        // problems after the lines that failed to parse).
        let files = self.report.files.clone();
        let place = |file: &str| files.iter().position(|f| f == file).unwrap_or(usize::MAX);
        self.report
            .problems
            .sort_by_key(|p| (place(&p.file), p.line));
        Ok(self.report)
    }

    /// Imports LeanCloud export files (`_User` files first, whatever the
    /// order given).
    pub async fn leancloud(mut self, paths: &[PathBuf]) -> Result<Report> {
        let mut ordered: Vec<&PathBuf> = paths
            .iter()
            .filter(|p| class_of_file(p) == leancloud::USER_CLASS)
            .collect();
        ordered.extend(
            paths
                .iter()
                .filter(|p| class_of_file(p) != leancloud::USER_CLASS),
        );
        let owned: Vec<PathBuf> = ordered.into_iter().cloned().collect();
        let files = open_all(&owned)?;
        self.total_bytes = files.iter().map(|(_, n)| n).sum();
        let mut users_read = false;
        for (mut lines, _) in files {
            self.report.files.push(lines.label.clone());
            let class = class_of_file(Path::new(&lines.label));
            if class == leancloud::USER_CLASS {
                self.leancloud_users(&mut lines).await?;
                users_read = true;
            } else {
                if users_read {
                    // The users are in: let the database plan their lookups.
                    self.store.refresh_import_statistics(true).await?;
                    users_read = false;
                }
                self.leancloud_class(&class, &mut lines).await?;
            }
        }
        self.finish().await
    }

    async fn leancloud_users(&mut self, lines: &mut Lines) -> Result<()> {
        let mut batch: Vec<leancloud::LegacyUser> = Vec::with_capacity(BATCH);
        let mut user_batches = 0u64;
        while let Some((line, n)) = lines.next()? {
            self.read(n);
            self.report.lines += 1;
            self.report.users.rows += 1;
            match parse_line(&lines.buf).and_then(|row| leancloud::user(&row)) {
                Ok(user) => batch.push(user),
                Err(p) => {
                    *self.report.users.skipped.entry(p.code).or_default() += 1;
                    self.report.problem(&lines.label, line, p.code, p.message);
                }
            }
            if batch.len() >= BATCH {
                self.write_users(leancloud::PLATFORM, std::mem::take(&mut batch))
                    .await?;
                user_batches += 1;
                if user_batches.is_multiple_of(8) && !self.options.dry_run {
                    // Each batch looks its openids up among the users.
                    self.store.refresh_import_statistics(true).await?;
                }
            }
        }
        self.write_users(leancloud::PLATFORM, batch).await
    }

    /// Creates (or finds) the users of a batch and counts them.
    async fn write_users(
        &mut self,
        platform: &'static str,
        batch: Vec<leancloud::LegacyUser>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let appid = self.options.appid.clone();
        let mut users = Vec::with_capacity(batch.len());
        for u in batch {
            let created_at = u.created_at.or(u.updated_at).unwrap_or(self.now);
            let profile = serde_json::to_string(&u.profile).map_err(Error::internal)?;
            users.push(ImportedUser {
                new_id: derived_id(platform, &appid, leancloud::USER_CLASS, &u.legacy_id),
                session_key_enc: self.auth.sealed_absent_session_key(&appid, &u.openid)?,
                appid: appid.clone(),
                openid: u.openid,
                unionid: u.unionid,
                profile,
                created_at,
                last_login_at: u.updated_at.unwrap_or(created_at).max(created_at),
                platform,
                legacy_id: u.legacy_id,
            });
        }
        if self.options.dry_run {
            let openids: Vec<String> = users.iter().map(|u| u.openid.clone()).collect();
            let existing = self.store.user_ids_by_openid(&appid, &openids).await?;
            for u in users {
                let id = match existing.get(&u.openid) {
                    Some(id) => {
                        self.report.users.existing += 1;
                        id.clone()
                    }
                    None => {
                        self.report.users.created += 1;
                        u.new_id.clone()
                    }
                };
                self.dry_users.insert(u.legacy_id, id);
            }
            return Ok(());
        }
        for done in self.store.import_users(users).await? {
            if done.created {
                self.report.users.created += 1;
            } else {
                self.report.users.existing += 1;
            }
        }
        Ok(())
    }

    async fn leancloud_class(&mut self, class: &str, lines: &mut Lines) -> Result<()> {
        let collection = leancloud::collection_of(class).filter(|_| !class.starts_with('_'));
        let at = self.report.class(class, collection.clone());
        let refused = if class.starts_with('_') {
            Some(RowProblem::new(
                "system_class",
                format!(
                    "{class} is a LeanCloud system class{}: not imported",
                    if class == "_File" {
                        " (files stay at their old URLs, which the rows that use them keep)"
                    } else {
                        ""
                    }
                ),
            ))
        } else if collection.is_none() {
            Some(RowProblem::new(
                "bad_class_name",
                format!(
                    "the class name {class:?} cannot be a collection name ([a-z0-9_-]{{1,64}} once in snake_case): rename the file to the collection's name and import it again"
                ),
            ))
        } else {
            None
        };
        let mut batch: Vec<(u64, Ordered)> = Vec::with_capacity(BATCH);
        while let Some((line, n)) = lines.next()? {
            self.read(n);
            self.report.lines += 1;
            self.report.collections[at].rows += 1;
            if let Some(p) = &refused {
                self.skip(at, &lines.label, line, p.clone());
                continue;
            }
            match parse_line(&lines.buf) {
                Ok(row) => batch.push((line, row)),
                Err(p) => self.skip(at, &lines.label, line, p),
            }
            if batch.len() >= BATCH {
                self.write_leancloud_rows(at, class, &lines.label, std::mem::take(&mut batch))
                    .await?;
            }
        }
        self.write_leancloud_rows(at, class, &lines.label, batch)
            .await
    }

    fn skip(&mut self, at: usize, file: &str, line: u64, p: RowProblem) {
        *self.report.collections[at]
            .skipped
            .entry(p.code)
            .or_default() += 1;
        self.report.problem(file, line, p.code, p.message);
    }

    /// The user ids of old user ids (imported by this run or an earlier one).
    async fn users_of(
        &self,
        platform: &str,
        legacy: Vec<String>,
    ) -> Result<HashMap<String, String>> {
        let mut unique: Vec<String> = legacy
            .into_iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        unique.sort();
        let mut found = self
            .store
            .imported_user_ids(platform, &self.options.appid, &unique)
            .await?;
        for id in unique {
            if let Some(user) = self.dry_users.get(&id) {
                found.entry(id).or_insert_with(|| user.clone());
            }
        }
        Ok(found)
    }

    async fn write_leancloud_rows(
        &mut self,
        at: usize,
        class: &str,
        file: &str,
        batch: Vec<(u64, Ordered)>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut refs = Vec::new();
        for (_, row) in &batch {
            leancloud::user_refs(row, &mut refs);
        }
        let users = self.users_of(leancloud::PLATFORM, refs).await?;
        let user = |id: &str| users.get(id).cloned();
        let collection = self.report.collections[at]
            .collection
            .clone()
            .unwrap_or_default();
        let mut notes = ValueNotes::default();
        let mut docs = Vec::with_capacity(batch.len());
        let mut lines = Vec::with_capacity(batch.len());
        let mut public = Vec::with_capacity(batch.len());
        let appid = self.options.appid.clone();
        for (line, row) in batch {
            let doc = match leancloud::document(&appid, row, &user, &mut notes) {
                Ok(doc) => doc,
                Err(p) => {
                    self.skip(at, file, line, p);
                    continue;
                }
            };
            let created_at = doc.created_at.or(doc.updated_at).unwrap_or(self.now);
            let updated_at = doc.updated_at.unwrap_or(created_at).max(created_at);
            match self.document(
                derived_id(leancloud::PLATFORM, &appid, class, &doc.legacy_id),
                doc.owner,
                &collection,
                &doc.data,
                created_at,
                updated_at,
            ) {
                Ok(d) => {
                    docs.push(d);
                    lines.push(line);
                    public.push(doc.public_read);
                }
                Err(p) => self.skip(at, file, line, p),
            }
        }
        self.report.notes(at, &mut notes);
        self.write_documents(at, file, docs, lines, public).await
    }

    /// A converted row as a document, unless it breaks the size rules a
    /// client's write would (`limits.body_bytes`, `limits.json_depth`).
    fn document(
        &self,
        id: String,
        user_id: String,
        collection: &str,
        data: &Map<String, Value>,
        created_at: i64,
        updated_at: i64,
    ) -> std::result::Result<ImportedDocument, RowProblem> {
        let depth = 1 + data.values().map(depth).max().unwrap_or(0);
        if depth > self.limits.json_depth {
            return Err(RowProblem::new(
                "too_deep",
                format!(
                    "the row is nested {depth} levels deep, more than limits.json_depth ({})",
                    self.limits.json_depth
                ),
            ));
        }
        let text = serde_json::to_string(data)
            .map_err(|e| RowProblem::new("invalid_json", format!("cannot write the row: {e}")))?;
        if text.len() > self.limits.body_bytes {
            return Err(RowProblem::new(
                "too_large",
                format!(
                    "the document would be {} bytes, more than limits.body_bytes ({})",
                    text.len(),
                    self.limits.body_bytes
                ),
            ));
        }
        Ok(ImportedDocument {
            id,
            user_id,
            appid: self.options.appid.clone(),
            collection: collection.to_owned(),
            data: text,
            created_at,
            updated_at,
        })
    }

    /// Starts writing a batch (a dry run only looks which exist) once the
    /// previous one is done: the next batch is read and converted while
    /// this one is written (the reading and the database each have a core).
    async fn write_documents(
        &mut self,
        at: usize,
        file: &str,
        docs: Vec<ImportedDocument>,
        lines: Vec<u64>,
        public: Vec<bool>,
    ) -> Result<()> {
        self.finish_writing().await?;
        self.written(docs.len()).await?;
        let store = self.store.clone();
        let limits = self.limits();
        let dry_run = self.options.dry_run;
        let write = tokio::spawn(async move {
            if !dry_run {
                return store.import_documents(docs, limits).await;
            }
            let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
            let known = store.known_document_ids(&ids).await?;
            Ok(ids
                .iter()
                .map(|id| {
                    if known.contains(id) {
                        DocumentImported::AlreadyPresent
                    } else {
                        DocumentImported::Stored
                    }
                })
                .collect())
        });
        self.writing = Some(Writing {
            write,
            at,
            file: file.to_owned(),
            lines,
            public,
        });
        Ok(())
    }

    /// Waits for the batch being written and counts its outcomes.
    async fn finish_writing(&mut self) -> Result<()> {
        let Some(w) = self.writing.take() else {
            return Ok(());
        };
        let outcomes = w
            .write
            .await
            .map_err(|e| Error::internal_from("an import's write stopped", e))??;
        for ((outcome, line), public) in outcomes.into_iter().zip(w.lines).zip(w.public) {
            self.count(w.at, &w.file, line, outcome);
            if public
                && matches!(
                    outcome,
                    DocumentImported::Stored | DocumentImported::AlreadyPresent
                )
            {
                self.report.collections[w.at].public_read_rows += 1;
            }
        }
        Ok(())
    }

    fn count(&mut self, at: usize, file: &str, line: u64, outcome: DocumentImported) {
        let c = &mut self.report.collections[at];
        match outcome {
            DocumentImported::Stored => c.stored += 1,
            DocumentImported::AlreadyPresent => c.already_present += 1,
            DocumentImported::CollectionFull => self.skip(
                at,
                file,
                line,
                RowProblem::new(
                    "collection_full",
                    format!(
                        "its owner already has limits.documents_per_collection ({}) documents in this collection (--ignore-limits raises it for this import)",
                        self.limits.documents_per_collection
                    ),
                ),
            ),
            DocumentImported::OverQuota(UserLimit::Collections) => self.skip(
                at,
                file,
                line,
                RowProblem::new(
                    "over_collections_per_user",
                    format!(
                        "its owner already has documents in limits.collections_per_user ({}) collections (--ignore-limits raises it for this import)",
                        self.limits.collections_per_user
                    ),
                ),
            ),
            DocumentImported::OverQuota(UserLimit::Bytes) => self.skip(
                at,
                file,
                line,
                RowProblem::new(
                    "over_bytes_per_user",
                    format!(
                        "it would take its owner past limits.bytes_per_user ({} bytes) (--ignore-limits raises it for this import)",
                        self.limits.bytes_per_user
                    ),
                ),
            ),
        }
    }

    /// Imports CloudBase export files of one collection.
    pub async fn cloudbase(mut self, collection: &str, paths: &[PathBuf]) -> Result<Report> {
        crate::vocab::check_collection(collection)?;
        let files = open_all(paths)?;
        self.total_bytes = files.iter().map(|(_, n)| n).sum();
        let at = self.report.class(collection, Some(collection.to_owned()));
        for (mut lines, _) in files {
            self.report.files.push(lines.label.clone());
            let mut batch: Vec<(u64, cloudbase::CloudbaseRow)> = Vec::with_capacity(BATCH);
            while let Some((line, n)) = lines.next()? {
                self.read(n);
                self.report.lines += 1;
                self.report.collections[at].rows += 1;
                match parse_line(&lines.buf).and_then(cloudbase::row) {
                    Ok(row) => batch.push((line, row)),
                    Err(p) => self.skip(at, &lines.label, line, p),
                }
                if batch.len() >= BATCH {
                    self.write_cloudbase_rows(at, &lines.label, std::mem::take(&mut batch))
                        .await?;
                }
            }
            self.write_cloudbase_rows(at, &lines.label, batch).await?;
        }
        self.finish().await
    }

    async fn write_cloudbase_rows(
        &mut self,
        at: usize,
        file: &str,
        batch: Vec<(u64, cloudbase::CloudbaseRow)>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let appid = self.options.appid.clone();
        let mut openids: Vec<String> = batch
            .iter()
            .map(|(_, r)| r.openid.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        openids.sort();
        let mut owners = self.store.user_ids_by_openid(&appid, &openids).await?;
        let missing: Vec<&String> = openids
            .iter()
            .filter(|o| !owners.contains_key(*o))
            .collect();
        let mut new_users = Vec::new();
        for openid in missing {
            if let Some(id) = self.dry_users.get(openid) {
                owners.insert(openid.clone(), id.clone());
                continue;
            }
            new_users.push(ImportedUser {
                new_id: derived_id(cloudbase::PLATFORM, &appid, "_openid", openid),
                appid: appid.clone(),
                openid: openid.clone(),
                unionid: None,
                session_key_enc: self.auth.sealed_absent_session_key(&appid, openid)?,
                profile: "{}".into(),
                created_at: self.now,
                last_login_at: self.now,
                platform: cloudbase::PLATFORM,
                legacy_id: openid.clone(),
            });
        }
        if self.options.dry_run {
            for u in new_users {
                self.report.users.created += 1;
                self.dry_users.insert(u.openid.clone(), u.new_id.clone());
                owners.insert(u.openid, u.new_id);
            }
        } else {
            let openids: Vec<String> = new_users.iter().map(|u| u.openid.clone()).collect();
            let done = self.store.import_users(new_users).await?;
            for (openid, d) in openids.into_iter().zip(done) {
                if d.created {
                    self.report.users.created += 1;
                }
                owners.insert(openid, d.user_id);
            }
        }
        let collection = self.report.collections[at]
            .collection
            .clone()
            .unwrap_or_default();
        let mut docs = Vec::with_capacity(batch.len());
        let mut lines = Vec::with_capacity(batch.len());
        for (line, row) in batch {
            let Some(owner) = owners.get(&row.openid).cloned() else {
                self.skip(
                    at,
                    file,
                    line,
                    RowProblem::new("no_owner", "its _openid's user could not be made"),
                );
                continue;
            };
            let created_at = row.created_at.or(row.updated_at).unwrap_or(self.now);
            let updated_at = row.updated_at.unwrap_or(created_at).max(created_at);
            match self.document(
                derived_id(cloudbase::PLATFORM, &appid, &collection, &row.legacy_id),
                owner,
                &collection,
                &row.data,
                created_at,
                updated_at,
            ) {
                Ok(d) => {
                    docs.push(d);
                    lines.push(line);
                }
                Err(p) => self.skip(at, file, line, p),
            }
        }
        let public = vec![false; lines.len()];
        self.write_documents(at, file, docs, lines, public).await
    }
}
