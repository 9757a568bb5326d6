//! `wxauth import leancloud --fetch-files`: the `_File` rows, read after
//! the users and before every other class, each downloaded into the file
//! store for its owner (`metaData.owner`, else its ACL's one writer), so
//! the rows read next can point their file fields at the new files.

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::fetch::{FETCHES_AT_ONCE, Fetcher};
use super::ids::derived_id;
use super::importer::Importer;
use super::leancloud::{self, FILE_CLASS, LegacyFile, PLATFORM};
use super::lines::{Lines, parse_line};
use super::{Ordered, RowProblem};
use crate::error::Result;
use crate::files::ImportedFile;

/// `_File` rows looked up and fetched together.
const FILE_BATCH: usize = 8 * FETCHES_AT_ONCE;

/// What a file field becomes once its file is here: `{"id", "url",
/// "name"}`, the URL only for a public file (a private file's URL is
/// signed and expires: `GET /v1/files/{id}` gives a fresh one).
fn file_value(id: &str, public_url: Option<String>, name: &str) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(id.to_owned()));
    if let Some(url) = public_url {
        m.insert("url".into(), Value::String(url));
    }
    m.insert("name".into(), Value::String(name.to_owned()));
    Value::Object(m)
}

impl Importer<'_> {
    /// Fetches the files of a `_File` export file.
    pub(super) async fn leancloud_files(&mut self, lines: &mut Lines) -> Result<()> {
        let fetcher = Fetcher::new()?;
        self.report.downloads.get_or_insert_default();
        let mut batch: Vec<(u64, LegacyFile)> = Vec::with_capacity(FILE_BATCH);
        while let Some((line, n)) = lines.next()? {
            self.read(n);
            self.report.lines += 1;
            self.downloads().rows += 1;
            match parse_line(&lines.buf).and_then(|row| leancloud::file(&row)) {
                Ok(f) => batch.push((line, f)),
                Err(p) => self.skip_download(&lines.label, line, p),
            }
            if batch.len() >= FILE_BATCH {
                self.fetch_batch(&fetcher, &lines.label, std::mem::take(&mut batch))
                    .await?;
            }
        }
        self.fetch_batch(&fetcher, &lines.label, batch).await
    }

    fn downloads(&mut self) -> &mut super::DownloadsReport {
        self.report.downloads.get_or_insert_default()
    }

    fn skip_download(&mut self, file: &str, line: u64, p: RowProblem) {
        *self.downloads().skipped.entry(p.code).or_default() += 1;
        self.report.problem(file, line, p.code, p.message);
    }

    async fn fetch_batch(
        &mut self,
        fetcher: &Fetcher,
        label: &str,
        batch: Vec<(u64, LegacyFile)>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let appid = self.options.appid.clone();
        let owners = self
            .users_of(
                PLATFORM,
                batch.iter().filter_map(|(_, f)| f.owner.clone()).collect(),
            )
            .await?;
        let ids: Vec<String> = batch
            .iter()
            .map(|(_, f)| derived_id(PLATFORM, &appid, FILE_CLASS, &f.legacy_id))
            .collect();
        let existing = self.files.existing(&ids).await?;
        let mut todo = Vec::new();
        for ((line, f), id) in batch.into_iter().zip(ids) {
            if existing.contains_key(&id) || self.dry_files.contains_key(&id) {
                self.downloads().already_present += 1;
                continue;
            }
            let Some(owner) = f.owner.as_deref().and_then(|o| owners.get(o)) else {
                let why = match &f.owner {
                    Some(o) => format!("its owner {o} is not an imported user"),
                    None => "it names no owner (metaData.owner, or one writer in its ACL)".into(),
                };
                self.skip_download(
                    label,
                    line,
                    RowProblem::new(
                        "no_owner",
                        format!("not fetched: {why} (its fields keep the old URL)"),
                    ),
                );
                continue;
            };
            let name = f.name.clone().unwrap_or_else(|| "file".into());
            if self.options.dry_run {
                let url = f.public.then(|| self.files.public_url(&id));
                self.dry_files
                    .insert(id.clone(), file_value(&id, url, &name));
                self.downloads().fetched += 1;
                continue;
            }
            let imported = ImportedFile {
                id,
                owner: owner.clone(),
                appid: appid.clone(),
                filename: f.name,
                public: f.public,
                created_at: f.created_at.unwrap_or(self.now),
            };
            todo.push((line, f.url, imported));
        }
        let files = self.files;
        let quota = !self.options.ignore_limits;
        let mut done: Vec<_> =
            futures_util::stream::iter(todo.into_iter().map(|(line, url, imported)| async move {
                (line, fetcher.fetch(files, imported, &url, quota).await)
            }))
            .buffer_unordered(FETCHES_AT_ONCE)
            .collect()
            .await;
        done.sort_by_key(|(line, _)| *line);
        for (line, outcome) in done {
            match outcome? {
                Ok(view) => {
                    let d = self.downloads();
                    d.fetched += 1;
                    d.bytes += u64::try_from(view.size).unwrap_or(0);
                }
                Err(p) => self.skip_download(label, line, p),
            }
        }
        Ok(())
    }

    /// What the file fields of `rows` become: for each `_File` objectId
    /// whose file is here (fetched by this run or an earlier one), its
    /// value. Empty unless `--fetch-files`.
    pub(super) async fn fetched_files(
        &self,
        rows: &[(u64, Ordered)],
    ) -> Result<HashMap<String, Value>> {
        if !self.options.fetch_files {
            return Ok(HashMap::new());
        }
        let mut refs = Vec::new();
        for (_, row) in rows {
            leancloud::file_refs(row, &mut refs);
        }
        if refs.is_empty() {
            return Ok(HashMap::new());
        }
        refs.sort();
        refs.dedup();
        let appid = &self.options.appid;
        let ids: Vec<String> = refs
            .iter()
            .map(|r| derived_id(PLATFORM, appid, FILE_CLASS, r))
            .collect();
        let existing = self.files.existing(&ids).await?;
        let mut out = HashMap::new();
        for (legacy, id) in refs.into_iter().zip(ids) {
            let value = match existing.get(&id) {
                Some(view) => file_value(
                    &view.id,
                    view.public.then(|| view.url.clone()),
                    &view.filename,
                ),
                None => match self.dry_files.get(&id) {
                    Some(v) => v.clone(),
                    None => continue,
                },
            };
            out.insert(legacy, value);
        }
        Ok(out)
    }
}
