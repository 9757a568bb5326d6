//! The audit log: every operator action (admin API call, CLI command) and
//! every account deletion, written in the operator's words ([`Actor`],
//! [`Target`]), never a secret or a value searched for.

use serde_json::{Map, Value};

use crate::store::NewAuditEntry;
use crate::vocab::{Actor, Target};

/// An action to record: who, what, to whom, how it ended.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// Who acted.
    pub actor: Actor,
    /// What: the route (`DELETE /admin/v1/users/{id}`) or the CLI command
    /// (`cli user delete`).
    pub action: String,
    /// To whom, if anyone in particular.
    pub target: Option<Target>,
    /// The answer's HTTP status (a CLI command: the status the same error
    /// would have over HTTP; 200 when it succeeded).
    pub status: u16,
    /// Ids, names and counts that say more; an empty object when nothing.
    pub detail: Value,
}

impl AuditRecord {
    /// A record of `action` by `actor`, about `target`, status 200 and no detail yet.
    pub fn new(actor: Actor, action: impl Into<String>, target: Option<Target>) -> Self {
        Self {
            actor,
            action: action.into(),
            target,
            status: 200,
            detail: Value::Object(Map::new()),
        }
    }

    /// The same record, ended with `status`.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same record, with `detail` (null stays an empty object).
    pub fn detail(mut self, detail: Value) -> Self {
        if !detail.is_null() {
            self.detail = detail;
        }
        self
    }

    /// The row to append, stamped `at` (Unix milliseconds).
    pub fn into_entry(self, at: i64) -> NewAuditEntry {
        NewAuditEntry {
            at,
            actor: self.actor.to_string(),
            action: self.action,
            target: self.target.map(|t| t.to_string()),
            status: i64::from(self.status),
            detail: self.detail.to_string(),
        }
    }
}
