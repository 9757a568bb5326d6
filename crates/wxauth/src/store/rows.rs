//! The rows the store reads back, and the columns each is read from: what
//! every read (single, grouped, queried, snapshot) and every write that
//! returns a row share, so they need not import each other.

use super::exec::Fields;
use crate::error::Result;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    /// UUIDv7.
    pub id: String,
    /// The owner's user id.
    pub owner: String,
    /// The collection.
    pub collection: String,
    /// The JSON object, as text.
    pub data: String,
    /// 1 at creation, +1 on each replace.
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

pub(super) const COLUMNS: &str = "id, user_id, collection, data, version, created_at, updated_at";

impl DocumentRecord {
    pub(super) fn from_row(row: &impl Fields) -> Result<Self> {
        Ok(Self {
            id: row.field("id")?,
            owner: row.field("user_id")?,
            collection: row.field("collection")?,
            data: row.field("data")?,
            version: row.field("version")?,
            created_at: row.field("created_at")?,
            updated_at: row.field("updated_at")?,
        })
    }
}

pub(super) const USER_COLUMNS: &str = "id, appid, openid, unionid, session_key_enc, phone_enc, profile, profile_version, created_at, last_login_at";

/// A user row. Encrypted fields stay encrypted here; `auth` decrypts them.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// wxauth's id for the user.
    pub id: String,
    /// The app the user belongs to.
    pub appid: String,
    /// WeChat's id for the user within the app.
    pub openid: String,
    /// WeChat's id across the Open Platform account, when known.
    pub unionid: Option<String>,
    /// The current session_key, sealed.
    pub session_key_enc: Vec<u8>,
    /// The bound phone number, sealed.
    pub phone_enc: Option<Vec<u8>>,
    /// The profile, as JSON text.
    pub profile: String,
    /// Bumped on every profile change (optimistic concurrency).
    pub profile_version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub last_login_at: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    pub(super) fn from_row(row: &impl Fields) -> Result<Self> {
        Ok(Self {
            id: row.field("id")?,
            appid: row.field("appid")?,
            openid: row.field("openid")?,
            unionid: row.field("unionid")?,
            session_key_enc: row.field("session_key_enc")?,
            phone_enc: row.field("phone_enc")?,
            profile: row.field("profile")?,
            profile_version: row.field("profile_version")?,
            created_at: row.field("created_at")?,
            last_login_at: row.field("last_login_at")?,
        })
    }
}
