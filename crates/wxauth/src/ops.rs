//! Operations that span identity and data, shared by the admin API, the
//! operator's CLI and users' own rights (`GET /v1/me/export`,
//! `DELETE /v1/me`): the account as an operator sees it, the export of
//! everything held about a user, and audit entries.
//!
//! What these produce is a document format of its own (an export is a
//! file the user keeps), so it is defined here once for HTTP and the CLI.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::{Account, Auth, Me, PhoneNumber};
use crate::data::{Data, rfc3339};
use crate::error::{Error, Result};
use crate::store::{AuditEntry, NewAuditEntry, SessionSummary};

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

/// The account of `user_id`, as operators see it.
pub async fn account(auth: &Auth, data: &Data, user_id: &str) -> Result<AccountView> {
    let account: Account = auth.account(user_id).await?;
    let active_sessions = account.active_sessions();
    let documents = data.document_count(user_id).await?;
    let user = UserSummary::from(account.me);
    Ok(AccountView {
        last_login_at: user.last_login_at.clone(),
        user,
        active_sessions,
        documents,
        sessions: account
            .sessions
            .into_iter()
            .map(SessionInfo::from)
            .collect(),
    })
}

/// One document in an export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedDocument {
    /// The document id.
    pub id: String,
    /// Its version.
    pub version: i64,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
    /// The document as stored.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// Everything wxauth holds about a user (`GET /v1/me/export`,
/// `GET /admin/v1/users/{id}/export`, `wxauth admin user export`).
/// Sealed secrets (the session_key) and tokens are never part of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserExport {
    /// `wxauth-export/1`: the format of this file.
    pub format: &'static str,
    /// When it was made.
    pub exported_at: String,
    /// The user, profile and phone.
    pub user: UserSummary,
    /// Every session, newest first.
    pub sessions: Vec<SessionInfo>,
    /// Documents by collection, each oldest first.
    #[schema(value_type = Object)]
    pub documents: std::collections::BTreeMap<String, Vec<ExportedDocument>>,
    /// How many documents in all.
    pub document_count: u64,
}

/// The export of `user_id`. `progress(read, total)` hears after every page
/// of documents.
pub async fn export_user(
    auth: &Auth,
    data: &Data,
    user_id: &str,
    mut progress: impl FnMut(u64, u64),
) -> Result<UserExport> {
    let account = auth.account(user_id).await?;
    let total = data.document_count(user_id).await?;
    progress(0, total);
    let docs = data
        .export_documents(user_id, |read| progress(read, total))
        .await?;
    let mut documents = std::collections::BTreeMap::<String, Vec<ExportedDocument>>::new();
    let document_count = docs.len() as u64;
    for d in docs {
        let doc = d.document;
        documents
            .entry(d.collection)
            .or_default()
            .push(ExportedDocument {
                data: serde_json::from_str(&doc.data)
                    .map_err(|e| Error::internal(format!("a stored document is not JSON: {e}")))?,
                id: doc.id,
                version: doc.version,
                created_at: rfc3339(doc.created_at),
                updated_at: rfc3339(doc.updated_at),
            });
    }
    Ok(UserExport {
        format: "wxauth-export/1",
        exported_at: rfc3339(auth.now()),
        user: UserSummary::from(account.me),
        sessions: account
            .sessions
            .into_iter()
            .map(SessionInfo::from)
            .collect(),
        documents,
        document_count,
    })
}

/// An audit entry about to be written: who, what, to whom.
pub fn audit_entry(
    auth: &Auth,
    actor: &str,
    action: &str,
    target: Option<String>,
    status: u16,
    detail: Value,
) -> NewAuditEntry {
    NewAuditEntry {
        at: auth.now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target,
        status: i64::from(status),
        detail: detail.to_string(),
    }
}

/// An audit entry as `GET /admin/v1/audit` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Ascending with time.
    pub id: i64,
    /// When.
    pub at: String,
    /// Who: `key:<service key id>`, `cli:<os user>`, `user:<user id>`.
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

/// The confirmation `DELETE /v1/me` needs, word for word.
pub const DELETE_CONFIRMATION: &str = "delete my account";

/// Deletes `user_id`'s account and everything held about them, recording
/// only that it happened and for which user id.
pub async fn delete_user(auth: &Auth, actor: &str, action: &str, user_id: &str) -> Result<()> {
    let entry = audit_entry(
        auth,
        actor,
        action,
        Some(format!("user:{user_id}")),
        204,
        Value::Object(Map::new()),
    );
    auth.delete_user(user_id, entry).await
}
