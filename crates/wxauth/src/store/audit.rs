//! The audit log: one row per operator action (admin API call, CLI
//! command, account deletion). Appended through the group-commit writer,
//! so an entry is durable before the action's answer is sent.

use futures_util::future::BoxFuture;
use sqlx::Row;

use super::Store;
use super::exec::query;
use super::writer::{Tx, Write};
use crate::error::Result;

/// One audit entry. Holds ids and names only: never a secret, a token, a
/// phone number or an openid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Ascending with time (assigned by the database).
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Who: `key:<service key id>`, `cli:<os user>`, or `user:<user id>`
    /// (a user deleting their own account).
    pub actor: String,
    /// What, e.g. `DELETE /admin/v1/users/{id}` or `cli user delete`.
    pub action: String,
    /// To whom: `user:<id>`, `document:<collection>/<id>`, … when there is one.
    pub target: Option<String>,
    /// The HTTP status of the answer (0 for a CLI command that failed).
    pub status: i64,
    /// A JSON object of further ids and names (query keys, counts).
    pub detail: String,
}

/// An entry to append (`id` is assigned).
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// See [`AuditEntry`].
    pub at: i64,
    /// See [`AuditEntry`].
    pub actor: String,
    /// See [`AuditEntry`].
    pub action: String,
    /// See [`AuditEntry`].
    pub target: Option<String>,
    /// See [`AuditEntry`].
    pub status: i64,
    /// See [`AuditEntry`].
    pub detail: String,
}

impl Write for NewAuditEntry {
    type Output = ();
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { insert_audit(tx, self).await })
    }
}

pub(super) async fn insert_audit(tx: &mut Tx<'_>, entry: &NewAuditEntry) -> Result<()> {
    query(
        "INSERT INTO audit_log (at, actor, action, target, status, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(entry.target.clone())
    .bind(entry.status)
    .bind(&entry.detail)
    .execute(tx)
    .await?;
    Ok(())
}

pub use crate::vocab::audit::AuditQuery;

impl Store {
    /// Appends an audit entry, durably.
    pub async fn audit(&self, entry: NewAuditEntry) -> Result<()> {
        self.writer.submit(entry).await
    }

    /// Audit entries, newest first.
    pub async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, status, detail FROM audit_log \
             WHERE (CAST($1 AS TEXT) IS NULL OR target = $1) AND (CAST($2 AS TEXT) IS NULL OR actor = $2) AND id < $3 \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(q.target.clone())
        .bind(q.actor.clone())
        .bind(q.before_id.unwrap_or(i64::MAX))
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    status: r.try_get("status")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
