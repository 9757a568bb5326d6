//! What the operator and the user see of an account: the shapes the
//! admin API, the CLI and `GET /v1/me` answer with (never a token or a
//! sealed secret). Made here from the rules' records, so no handler and
//! no command sees a store row.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::{Me, PhoneNumber};
use crate::data::rfc3339;
use crate::store::{AuditEntry, SessionSummary};

/// A user with profile and phone: what `GET /v1/me` answers, and how
/// operators see a user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    /// wxauth's user id.
    pub id: String,
    /// The app.
    pub appid: String,
    /// WeChat's id of the user within the app.
    pub openid: String,
    /// WeChat's id across the Open Platform account, if known.
    pub unionid: Option<String>,
    /// First login.
    pub created_at: String,
    /// Latest login.
    pub last_login_at: String,
    /// The profile the app stored.
    #[schema(value_type = Object)]
    pub profile: Value,
    /// The bound phone number, or null.
    pub phone: Option<PhoneNumber>,
}

impl From<Me> for UserSummary {
    fn from(Me { user: u, phone }: Me) -> Self {
        Self {
            profile: serde_json::from_str(&u.profile).unwrap_or_else(|_| Value::Object(Map::new())),
            id: u.id,
            appid: u.appid,
            openid: u.openid,
            unionid: u.unionid,
            created_at: rfc3339(u.created_at),
            last_login_at: rfc3339(u.last_login_at),
            phone,
        }
    }
}

/// A session as operators and exports show it: never a token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// The session id (what access tokens carry as `sid`).
    pub id: String,
    /// The app.
    pub appid: String,
    /// The login that opened it.
    pub created_at: String,
    /// The latest refresh.
    pub last_refresh_at: String,
    /// When it ended, if it did.
    pub revoked_at: Option<String>,
    /// Why: `logout`, `refresh_token_reuse`, `admin`.
    pub revoked_reason: Option<String>,
    /// Whether it can still be refreshed.
    pub active: bool,
}

impl From<SessionSummary> for SessionInfo {
    fn from(s: SessionSummary) -> Self {
        Self {
            id: s.id,
            appid: s.appid,
            created_at: rfc3339(s.created_at),
            last_refresh_at: rfc3339(s.last_refresh_at),
            revoked_at: s.revoked_at.map(rfc3339),
            revoked_reason: s.revoked_reason,
            active: s.active,
        }
    }
}

/// `GET /admin/v1/users/{id}`, `wxauth admin user show`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The user.
    pub user: UserSummary,
    /// Sessions that can still be refreshed.
    pub active_sessions: usize,
    /// The latest login.
    pub last_login_at: String,
    /// Documents in all collections.
    pub documents: u64,
    /// Every session, newest first.
    pub sessions: Vec<SessionInfo>,
}

/// An audit entry as `GET /admin/v1/audit` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Ascending with time.
    pub id: i64,
    /// When.
    pub at: String,
    /// Who: `key:<service key id>`, `cli:<os user>`, `user:<user id>`,
    /// `wechat:<appid>` (a pushed event).
    pub actor: String,
    /// What: the route (`DELETE /admin/v1/users/{id}`) or CLI command.
    pub action: String,
    /// To whom: `user:<id>`, `document:<collection>/<id>`.
    pub target: Option<String>,
    /// The answer's HTTP status (0: a CLI command that failed).
    pub status: i64,
    /// Ids and names that say more (query keys, counts); never a secret.
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            status: e.status,
            detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
        }
    }
}
