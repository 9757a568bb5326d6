//! `wxauth import leancloud`: the `_User` files first (users, and the map
//! from their old ids), then every other class a batch at a time; the
//! row rules are in `leancloud`.

use std::path::{Path, PathBuf};

use super::ids::derived_id;
use super::importer::Importer;
use super::leancloud;
use super::lines::{Lines, open_all, parse_line};
use super::report::{Report, ValueNotes};
use super::{BATCH, Ordered, RowProblem};
use crate::error::{Error, Result};
use crate::store::ImportedUser;

/// The class a LeanCloud export file holds: its name up to the first dot
/// (`Todo.jsonl`, `Todo.0.jsonl` → `Todo`).
pub fn class_of_file(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split('.').next().unwrap_or_default().to_owned()
}

impl Importer<'_> {
    /// Imports LeanCloud export files (`_User` files first, whatever the
    /// order given).
    pub async fn leancloud(mut self, paths: &[PathBuf]) -> Result<Report> {
        // Users, then (fetched) files, then the rest in the order given:
        // each row can then find its owner and its files.
        let fetch_files = self.options.fetch_files;
        let rank = |p: &PathBuf| match class_of_file(p).as_str() {
            leancloud::USER_CLASS => 0,
            leancloud::FILE_CLASS if fetch_files => 1,
            _ => 2,
        };
        let mut ordered: Vec<&PathBuf> = paths.iter().collect();
        ordered.sort_by_key(|p| rank(p));
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
            } else if class == leancloud::FILE_CLASS && self.options.fetch_files {
                if users_read {
                    self.store.refresh_import_statistics(true).await?;
                    users_read = false;
                }
                self.leancloud_files(&mut lines).await?;
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
                    if class == leancloud::FILE_CLASS {
                        " (files stay at their old URLs, which the rows that use them keep; --fetch-files downloads them)"
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
        let fetched = self.fetched_files(&batch).await?;
        let file_of = |id: &str| fetched.get(id).cloned();
        let resolved = leancloud::Resolved {
            user: &user,
            file: &file_of,
        };
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
            let doc = match leancloud::document(&appid, row, &resolved, &mut notes) {
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
}
