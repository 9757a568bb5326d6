//! The operator's words, as types: what a service key may do
//! ([`ServiceScope`]), who acted ([`Actor`]) and on what ([`Target`]) in
//! the audit log, and why a session ended ([`RevokeReason`]). Each is
//! written and read in one place, as the text the contract shows
//! (`users:read`, `key:<id>`, `user:<id>`, `logout`).

use std::fmt;

/// What a service key may do. The text form (`users:read`) is what the
/// configuration, the CLI and the 403 messages name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceScope {
    /// `POST /v1/introspect`.
    Introspect,
    /// Find, show and export users.
    UsersRead,
    /// Delete users.
    UsersWrite,
    /// End a user's sessions.
    SessionsRevoke,
    /// Read any user's documents.
    DataRead,
    /// Write any user's documents.
    DataWrite,
    /// Read the audit log.
    AuditRead,
    /// List any user's files.
    FilesRead,
    /// Delete any user's files.
    FilesWrite,
    /// Send subscribe messages to users.
    MessagesSend,
}

impl ServiceScope {
    /// Every scope, in the order the documentation lists them.
    pub const ALL: [ServiceScope; 10] = [
        Self::Introspect,
        Self::UsersRead,
        Self::UsersWrite,
        Self::SessionsRevoke,
        Self::DataRead,
        Self::DataWrite,
        Self::AuditRead,
        Self::FilesRead,
        Self::FilesWrite,
        Self::MessagesSend,
    ];

    /// The scope's name in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Introspect => "introspect",
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
            Self::SessionsRevoke => "sessions:revoke",
            Self::DataRead => "data:read",
            Self::DataWrite => "data:write",
            Self::AuditRead => "audit:read",
            Self::FilesRead => "files:read",
            Self::FilesWrite => "files:write",
            Self::MessagesSend => "messages:send",
        }
    }

    /// The scope named `name`, or a message listing the known ones.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown scope {name:?}; known: {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

impl fmt::Display for ServiceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did something the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A service key, by id (`key:<id>`).
    ServiceKey(String),
    /// An operator at the command line, by OS user (`cli:<user>`).
    Cli(String),
    /// A user acting on their own account (`user:<id>`).
    User(String),
    /// WeChat, through a push to an app (`wechat:<appid>`): a user who
    /// withdrew their authorization.
    WeChat(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServiceKey(id) => write!(f, "key:{id}"),
            Self::Cli(name) => write!(f, "cli:{name}"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::WeChat(appid) => write!(f, "wechat:{appid}"),
        }
    }
}

/// What an audited action was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user (`user:<id>`).
    User(String),
    /// Every user of an app (`app:<appid>`).
    App(String),
    /// A collection (`collection:<name>`).
    Collection(String),
    /// One file (`file:<id>`).
    File(String),
    /// One document (`document:<collection>/<id>`).
    Document {
        /// The collection.
        collection: String,
        /// The document id.
        id: String,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::App(appid) => write!(f, "app:{appid}"),
            Self::Collection(name) => write!(f, "collection:{name}"),
            Self::File(id) => write!(f, "file:{id}"),
            Self::Document { collection, id } => write!(f, "document:{collection}/{id}"),
        }
    }
}

/// Why a session ended, as the sessions table and the account view say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The user logged out.
    Logout,
    /// A refresh token was presented twice: the session is presumed stolen.
    RefreshTokenReuse,
    /// An operator ended it (admin API or CLI).
    Admin,
}

impl RevokeReason {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_as_written() {
        for scope in ServiceScope::ALL {
            assert_eq!(ServiceScope::parse(scope.as_str()), Ok(scope));
        }
        let refused = ServiceScope::parse("users:*").unwrap_err();
        assert!(refused.contains("users:read") && refused.contains("audit:read"));
    }

    #[test]
    fn audit_words_are_the_contract_text() {
        assert_eq!(Actor::ServiceKey("ops".into()).to_string(), "key:ops");
        assert_eq!(Actor::Cli("root".into()).to_string(), "cli:root");
        let doc = Target::Document {
            collection: "notes".into(),
            id: "n1".into(),
        };
        assert_eq!(doc.to_string(), "document:notes/n1");
        assert_eq!(
            RevokeReason::RefreshTokenReuse.as_str(),
            "refresh_token_reuse"
        );
    }
}
