//! What an operator asks of the audit log: shared by the admin API, the
//! CLI, the rules that check it and the store that reads it.

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries about this target.
    pub target: Option<String>,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries with an id below this (the previous page's last).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}
