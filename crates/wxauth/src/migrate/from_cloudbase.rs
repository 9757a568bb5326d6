//! `wxauth import cloudbase`: one collection's files a batch at a time,
//! each row's owner the user with its `_openid` (made when missing); the
//! row rules are in `cloudbase`.

use std::collections::HashSet;
use std::path::PathBuf;

use super::cloudbase;
use super::ids::derived_id;
use super::importer::Importer;
use super::lines::{open_all, parse_line};
use super::report::Report;
use super::{BATCH, RowProblem};
use crate::error::Result;
use crate::store::ImportedUser;

impl Importer<'_> {
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
