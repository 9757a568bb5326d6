//! Documents as the server side sees them (the admin API and CLI): any
//! user's, in any collection, `admin_write` ones included. Documents read
//! this way always carry their owner.

use serde_json::Value;

use super::Data;
use super::documents::{
    Created, Document, IfMatch, ListRequest, check_collection, known_id, not_found,
};
use crate::error::{Error, Result};
use crate::store::Scope;
use crate::vocab::Owner;

/// Whose documents an operator lists.
#[derive(Debug, Clone)]
pub enum Whose {
    /// One user's (by user id).
    Owner(String),
    /// Every user's of one app.
    App(String),
}

/// A document with the collection it is in (an export spans them all).
#[derive(Debug, Clone)]
pub struct CollectedDocument {
    /// The collection.
    pub collection: String,
    /// The document.
    pub document: Document,
}

/// Documents an export reads per round trip (at most 64 KiB each: a page
/// stays within a few MB).
const EXPORT_PAGE: i64 = 200;

/// A user's documents from one snapshot, read a page at a time, so an
/// export of a million documents holds one page in memory, not all.
pub struct DocumentExport {
    reader: Option<crate::store::SnapshotReader>,
    user_id: String,
    after: Option<crate::store::ExportPosition>,
    /// How many documents the snapshot holds.
    pub total: u64,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl std::fmt::Debug for DocumentExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentExport")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl DocumentExport {
    /// The next page, by collection and then oldest first; empty when
    /// every document was read (the snapshot is then released).
    pub async fn next_page(&mut self) -> Result<Vec<CollectedDocument>> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Vec::new());
        };
        let page = reader
            .user_documents(&self.user_id, self.after.as_ref(), EXPORT_PAGE)
            .await?;
        match page.last() {
            Some(last) => self.after = Some(crate::store::ExportPosition::after(last)),
            None => {
                if let Some(reader) = self.reader.take() {
                    reader.finish().await?;
                }
            }
        }
        Ok(page
            .into_iter()
            .map(|record| CollectedDocument {
                collection: record.collection.clone(),
                document: Document::from_record(record, true),
            })
            .collect())
    }
}

/// The user an operator acts for, read from their row (an operator has no
/// session of theirs).
struct ActingFor {
    user_id: String,
    appid: String,
}

impl ActingFor {
    fn owner(&self) -> Owner<'_> {
        Owner {
            user_id: &self.user_id,
            appid: &self.appid,
        }
    }
}

impl Data {
    /// The user `user_id`, whom the server acts for: their app from their row.
    async fn as_owner(&self, user_id: &str) -> Result<ActingFor> {
        let user = self
            .store
            .user(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user with id {user_id:?}")))?;
        Ok(ActingFor {
            user_id: user.id,
            appid: user.appid,
        })
    }

    async fn owner_of(&self, collection: &str, id: &str) -> Result<ActingFor> {
        check_collection(collection)?;
        known_id(id)?;
        let owner = self
            .store
            .document_owner(collection, id)
            .await?
            .ok_or_else(not_found)?;
        self.as_owner(&owner).await
    }

    /// Any document, with its owner.
    pub async fn admin_get(&self, collection: &str, id: &str) -> Result<Document> {
        let owner = self.owner_of(collection, id).await?;
        let scope = Scope::Owner {
            user_id: owner.user_id,
            collection: collection.to_owned(),
        };
        self.store
            .document(&scope, id)
            .await?
            .map(|r| Document::from_record(r, true))
            .ok_or_else(not_found)
    }

    /// A page of one user's or one app's documents in a collection, any
    /// access mode, filtered and sorted as clients' lists are.
    pub async fn admin_list(
        &self,
        collection: &str,
        whose: &Whose,
        request: &ListRequest<'_>,
    ) -> Result<(Vec<Document>, Option<String>)> {
        check_collection(collection)?;
        let (scope, me) = match whose {
            Whose::Owner(user_id) => {
                let owner = self.as_owner(user_id).await?;
                (
                    Scope::Owner {
                        user_id: owner.user_id.clone(),
                        collection: collection.to_owned(),
                    },
                    owner.user_id,
                )
            }
            Whose::App(appid) => (
                Scope::App {
                    appid: appid.clone(),
                    collection: collection.to_owned(),
                },
                String::new(),
            ),
        };
        self.list_in(&scope, &me, true, request).await
    }

    /// Creates a document owned by `owner` in any collection.
    pub async fn admin_create(
        &self,
        owner: &str,
        collection: &str,
        body: Value,
    ) -> Result<Created> {
        let mut created = self.create_as_server(owner, collection, body).await?;
        created.document.owner = Some(owner.to_owned());
        Ok(created)
    }

    /// Replaces any document.
    pub async fn admin_replace(
        &self,
        collection: &str,
        id: &str,
        body: Value,
        if_match: Option<IfMatch>,
    ) -> Result<Document> {
        let owner = self.owner_of(collection, id).await?;
        let mut doc = self
            .replace_as(owner.owner(), collection, id, body, if_match)
            .await?;
        doc.owner = Some(owner.user_id);
        Ok(doc)
    }

    /// Deletes any document; its owner's id.
    pub async fn admin_delete(&self, collection: &str, id: &str) -> Result<String> {
        let owner = self.owner_of(collection, id).await?;
        self.delete_as(&owner.user_id, collection, id).await?;
        Ok(owner.user_id)
    }

    /// How many documents the user holds in all collections.
    pub async fn document_count(&self, user_id: &str) -> Result<u64> {
        Ok(u64::try_from(self.store.user_document_count(user_id).await?).unwrap_or(0))
    }

    /// The user's documents, every collection, from one snapshot of the
    /// database, to be read page by page (see [`DocumentExport`]). At most
    /// `limits.exports_at_once` run at once; another is a 429.
    pub async fn export_documents(&self, user_id: &str) -> Result<DocumentExport> {
        let permit = self.exports.clone().try_acquire_owned().map_err(|_| {
            Error::RateLimited {
                message: "exports are already running at the limit (limits.exports_at_once); try again shortly".into(),
                retry_after: std::time::Duration::from_secs(5),
            }
        })?;
        let mut reader = self.store.snapshot().await?;
        let total = u64::try_from(reader.user_document_count(user_id).await?).unwrap_or(0);
        Ok(DocumentExport {
            reader: Some(reader),
            user_id: user_id.to_owned(),
            after: None,
            total,
            _permit: permit,
        })
    }
}
