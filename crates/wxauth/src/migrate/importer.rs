//! The run of an import, whatever the platform: its options and limits,
//! its progress, the report it fills, and the writing of documents (each
//! batch written while the next is read and converted).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::{Map, Value};

use super::lines::depth;
use super::report::Report;
use super::{ImportOptions, RowProblem, STATISTICS_EVERY};
use crate::auth::Auth;
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::files::Files;
use crate::store::{DocumentImported, ImportLimits, ImportedDocument, Store, UserLimit, UserQuota};

/// Where an import reads and writes. `progress` hears bytes read of all.
pub struct Importer<'a> {
    pub(super) auth: &'a Auth,
    pub(super) store: &'a Store,
    pub(super) files: &'a Files,
    pub(super) limits: &'a LimitsConfig,
    pub(super) options: ImportOptions,
    pub(super) report: Report,
    pub(super) progress: &'a mut (dyn FnMut(u64, u64) + Send),
    pub(super) total_bytes: u64,
    pub(super) done_bytes: u64,
    /// Dry runs: the users this run would have made (old id → user id);
    /// a real run reads them back from the database instead.
    pub(super) dry_users: HashMap<String, String>,
    /// Dry runs: the files this run would have fetched (new id → what
    /// file fields would become).
    pub(super) dry_files: HashMap<String, Value>,
    pub(super) started: Instant,
    pub(super) now: i64,
    pub(super) since_statistics: usize,
    /// The batch being written while the next is read.
    pub(super) writing: Option<Writing>,
}

/// A batch being written, and what its outcomes are counted against.
pub(super) struct Writing {
    pub(super) write: tokio::task::JoinHandle<Result<Vec<DocumentImported>>>,
    pub(super) at: usize,
    pub(super) file: String,
    pub(super) lines: Vec<u64>,
    pub(super) public: Vec<bool>,
}

impl<'a> Importer<'a> {
    /// An import into `options.appid` (checked against the configured apps).
    pub fn new(
        auth: &'a Auth,
        store: &'a Store,
        files: &'a Files,
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
            files,
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
            dry_files: HashMap::new(),
            started: Instant::now(),
            now: auth.now(),
            since_statistics: 0,
            writing: None,
        })
    }

    pub(super) fn limits(&self) -> Option<ImportLimits> {
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
    pub(super) async fn written(&mut self, rows: usize) -> Result<()> {
        self.since_statistics += rows;
        if self.since_statistics >= STATISTICS_EVERY && !self.options.dry_run {
            self.since_statistics = 0;
            self.store.refresh_import_statistics(false).await?;
        }
        Ok(())
    }

    pub(super) fn read(&mut self, n: usize) {
        self.done_bytes += n as u64;
        (self.progress)(self.done_bytes, self.total_bytes);
    }

    pub(super) async fn finish(mut self) -> Result<Report> {
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

    pub(super) fn skip(&mut self, at: usize, file: &str, line: u64, p: RowProblem) {
        *self.report.collections[at]
            .skipped
            .entry(p.code)
            .or_default() += 1;
        self.report.problem(file, line, p.code, p.message);
    }

    /// The user ids of old user ids (imported by this run or an earlier one).
    pub(super) async fn users_of(
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

    /// A converted row as a document, unless it breaks the size rules a
    /// client's write would (`limits.body_bytes`, `limits.json_depth`).
    pub(super) fn document(
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
    pub(super) async fn write_documents(
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
    pub(super) async fn finish_writing(&mut self) -> Result<()> {
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

    pub(super) fn count(&mut self, at: usize, file: &str, line: u64, outcome: DocumentImported) {
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
}
