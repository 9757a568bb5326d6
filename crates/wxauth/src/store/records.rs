//! Rows as the store hands them out, and the inputs of composite writes.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::Result;

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
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            appid: row.try_get("appid")?,
            openid: row.try_get("openid")?,
            unionid: row.try_get("unionid")?,
            session_key_enc: row.try_get("session_key_enc")?,
            phone_enc: row.try_get("phone_enc")?,
            profile: row.try_get("profile")?,
            profile_version: row.try_get("profile_version")?,
            created_at: row.try_get("created_at")?,
            last_login_at: row.try_get("last_login_at")?,
        })
    }
}

/// A session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id (in access tokens).
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// Which app.
    pub appid: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, when revoked.
    pub revoked_at: Option<i64>,
}

impl SessionRecord {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            appid: row.try_get("appid")?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

/// Everything one login writes, committed together.
#[derive(Clone)]
pub struct LoginWrite {
    /// The id to give the user if they are new.
    pub new_user_id: String,
    /// The app.
    pub appid: String,
    /// From jscode2session.
    pub openid: String,
    /// From jscode2session, when present (an absent one keeps the stored one).
    pub unionid: Option<String>,
    /// The new session_key, sealed.
    pub session_key_enc: Vec<u8>,
    /// The new session's id.
    pub session_id: String,
    /// SHA-256 of the first refresh token.
    pub refresh_hash: Vec<u8>,
    /// When that refresh token expires, Unix milliseconds.
    pub refresh_expires_at: i64,
    /// Unix milliseconds.
    pub now: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Exchanged: the old token is spent, the new one stored.
    Rotated {
        /// The session.
        session_id: String,
        /// Its user.
        user_id: String,
        /// Its app.
        appid: String,
    },
    /// The token had already been used: the session is now revoked.
    Reused {
        /// The revoked session.
        session_id: String,
    },
    /// Unknown, expired, or its session is revoked.
    Invalid,
}
