//! A query a realtime watch keeps answering: the same language, access
//! rules and order as `GET /v1/data/{collection}`, checked once, then
//! applied to each change in memory (`Filter::matches`, which decides as
//! the store's SQL does) and run again against the store when a watch's
//! window must be refilled.

use serde_json::Value;

use super::Data;
use super::documents::Document;
use super::query;
use crate::error::{Error, Result};
use crate::store::{DocumentQuery, DocumentRecord, KeyValue, Scope};
use crate::vocab::Owner;
use crate::vocab::check_collection;
use crate::vocab::query::{DocumentFields, Filter, SortKey};

/// A checked watch query for one caller.
#[derive(Debug, Clone)]
pub struct WatchedQuery {
    /// The caller's app.
    pub appid: String,
    /// The collection.
    pub collection: String,
    /// The caller (`"owner": "me"`, and the only owner a private
    /// collection shows).
    pub me: String,
    /// Every user of the app reads it (`public_read`, `admin_write`).
    pub shared: bool,
    scope: Scope,
    filter: Filter,
    /// The order, ties broken as the list's are.
    pub order: Vec<SortKey>,
    /// How many documents the watch holds.
    pub limit: u32,
    /// What a resume cursor is bound to (collection, where, order).
    pub fingerprint: String,
}

/// A document as a change carries it, for [`WatchedQuery::admits`].
#[derive(Debug, Clone, Copy)]
pub struct ChangedDocument<'a> {
    /// Its app.
    pub appid: &'a str,
    /// Its columns.
    pub fields: DocumentFields<'a>,
    /// Its data.
    pub data: &'a Value,
}

impl Data {
    /// Checks a watch's query as `GET /v1/data/{collection}` checks its
    /// parameters (`limit` up to `max_limit`).
    pub fn watched_query(
        &self,
        owner: Owner<'_>,
        collection: &str,
        filter: Option<&str>,
        order_by: Option<&str>,
        limit: u32,
        max_limit: u32,
    ) -> Result<WatchedQuery> {
        check_collection(collection)?;
        if !(1..=max_limit).contains(&limit) {
            return Err(Error::InvalidRequest(format!(
                "limit must be a number from 1 to {max_limit}"
            )));
        }
        let (filter, where_value) = query::parse_where(filter, owner.user_id)?;
        let order = query::parse_order_by(order_by)?;
        Ok(WatchedQuery {
            appid: owner.appid.to_owned(),
            collection: collection.to_owned(),
            me: owner.user_id.to_owned(),
            shared: self.access(collection).shared(),
            scope: self.read_scope(owner, collection),
            fingerprint: query::fingerprint(collection, &where_value, &order),
            filter,
            order,
            limit,
        })
    }

    /// The documents a watch shows now: the first `limit` in its order.
    pub async fn watched_documents(&self, q: &WatchedQuery) -> Result<Vec<WatchedDocument>> {
        let records = self
            .store
            .query_documents(&DocumentQuery {
                scope: &q.scope,
                filter: &q.filter,
                order: &q.order,
                after: None,
                limit: i64::from(q.limit),
            })
            .await?;
        records
            .into_iter()
            .map(|r| WatchedDocument::new(r, q))
            .collect()
    }
}

/// A document in a watch's window: what the client is shown, and its
/// sort key values.
#[derive(Debug, Clone)]
pub struct WatchedDocument {
    /// As the API shows it.
    pub document: Document,
    /// One value per sort key.
    pub keys: Vec<KeyValue>,
}

impl WatchedDocument {
    fn new(r: DocumentRecord, q: &WatchedQuery) -> Result<Self> {
        let data: Value = serde_json::from_str(&r.data)
            .map_err(|e| Error::internal_from("a stored document is not JSON", e))?;
        let keys = q.keys(
            &DocumentFields {
                id: &r.id,
                owner: &r.owner,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            &data,
        );
        Ok(Self {
            document: Document::from_record(r, q.shared),
            keys,
        })
    }

    /// A document as a change carries it.
    pub fn changed(
        q: &WatchedQuery,
        doc: ChangedDocument<'_>,
        version: i64,
        data_text: &str,
    ) -> Self {
        Self {
            keys: q.keys(&doc.fields, doc.data),
            document: Document {
                id: doc.fields.id.to_owned(),
                version,
                created_at: doc.fields.created_at,
                updated_at: doc.fields.updated_at,
                data: data_text.to_owned(),
                owner: q.shared.then(|| doc.fields.owner.to_owned()),
            },
        }
    }
}

impl WatchedQuery {
    /// Whether a change to a document of this owner can concern the watch
    /// at all: in a private collection only the caller's own documents
    /// can (a tail skips everyone else's changes without reading them).
    pub fn may_concern(&self, appid: &str, owner: &str) -> bool {
        appid == self.appid && (self.shared || owner == self.me)
    }

    /// Whether the caller may see this document under this watch and it
    /// matches the query: a private collection shows only the caller's
    /// own documents, a shared one those of the caller's app.
    pub fn admits(&self, doc: &ChangedDocument<'_>) -> bool {
        let visible = if self.shared {
            doc.appid == self.appid
        } else {
            doc.fields.owner == self.me && doc.appid == self.appid
        };
        visible && self.filter.matches(&doc.fields, doc.data)
    }

    /// A document's sort key values.
    pub fn keys(&self, fields: &DocumentFields<'_>, data: &Value) -> Vec<KeyValue> {
        self.order
            .iter()
            .map(|k| KeyValue::of(&k.field, fields, data))
            .collect()
    }
}
