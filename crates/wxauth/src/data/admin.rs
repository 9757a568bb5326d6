//! Documents as the server side sees them (the admin API and CLI): any
//! user's, in any collection, `admin_write` ones included. Documents read
//! this way always carry their owner.

use serde_json::Value;

use super::Data;
use super::documents::{
    Created, Document, IfMatch, ListRequest, check_collection, known_id, not_found,
};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::store::Scope;

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

/// Documents an export reads per round trip.
const EXPORT_PAGE: i64 = 500;

impl Data {
    /// The user `user_id` acting, as the server: their app from their row.
    async fn as_owner(&self, user_id: &str) -> Result<Caller> {
        let user = self
            .store
            .user(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user with id {user_id:?}")))?;
        Ok(Caller {
            user_id: user.id,
            appid: user.appid,
            session_id: String::new(),
        })
    }

    async fn owner_of(&self, collection: &str, id: &str) -> Result<Caller> {
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
            .replace_as(&owner, collection, id, body, if_match)
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

    /// Every document of the user, in every collection, by id (which is by
    /// creation time). `progress` hears how many were read so far.
    pub async fn export_documents(
        &self,
        user_id: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<CollectedDocument>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .user_documents(user_id, after.as_deref(), EXPORT_PAGE)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.id.clone());
            for record in page {
                out.push(CollectedDocument {
                    collection: record.collection.clone(),
                    document: Document::from_record(record, true),
                });
            }
            progress(out.len() as u64);
        }
        Ok(out)
    }
}
