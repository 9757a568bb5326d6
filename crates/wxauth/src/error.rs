//! The one error type of the service. Every layer returns it; `http::error`
//! is the one place that turns it into a response. Messages are written for
//! the mini-program developer reading them and never contain a secret.

use std::sync::Arc;
use std::time::Duration;

/// What went wrong, in the terms of the API contract.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad JSON, or a missing or bad field (the message names it).
    #[error("{0}")]
    InvalidRequest(String),
    /// WeChat said the login or phone code is invalid, expired or used.
    #[error("{0}")]
    InvalidCode(String),
    /// The appid is not one this service is configured for.
    #[error("{0}")]
    UnknownApp(String),
    /// Missing, malformed, expired, revoked, or other-app credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A service key without the scope the route needs.
    #[error("{0}")]
    Forbidden(String),
    /// WeChat's risk control refused this user.
    #[error("WeChat refused to log this user in (high-risk user, errcode 40226)")]
    UserBlocked,
    /// No such thing, or not the caller's.
    #[error("{0}")]
    NotFound(String),
    /// The thing changed since the version the caller named.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A configured quota is reached (documents per collection).
    #[error("{0}")]
    LimitExceeded(String),
    /// The body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The client took too long to send its request (a trickling body).
    #[error("{0}")]
    RequestTimeout(String),
    /// The request target is longer than `http.max_uri_bytes`.
    #[error("{0}")]
    UriTooLong(String),
    /// The request's headers are larger than `http.max_header_bytes`.
    #[error("{0}")]
    HeaderTooLarge(String),
    /// Too many requests; try again after `retry_after`.
    #[error("{message}")]
    RateLimited {
        /// What was limited.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// WeChat is busy, slow or unreachable; try again after `retry_after`.
    #[error("{message}")]
    UpstreamUnavailable {
        /// What happened.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// WeChat answered with an error that is not the user's fault (a wrong
    /// app secret, say). Logged loudly.
    #[error("{0}")]
    UpstreamError(String),
    /// The developer's service behind the gateway refused the connection or
    /// broke it.
    #[error("{0}")]
    BadGateway(String),
    /// The developer's service behind the gateway did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// encryptedData could not be decrypted or verified with the user's
    /// current session_key.
    #[error("{0}")]
    DecryptFailed(String),
    /// WeChat's content check (msgSecCheck) judged a field risky (or, by
    /// policy, to need review): nothing was stored.
    #[error(
        "{field} was refused by WeChat's content check (label {label}: {meaning}); nothing was stored"
    )]
    ContentRejected {
        /// The field's path (`title`, `profile.nickname`).
        field: String,
        /// WeChat's label (20002 porn, 20006 crime, …).
        label: i64,
        /// What the label means.
        meaning: &'static str,
    },
    /// A subscribe message to a user without a consent left for its
    /// template (known here, or WeChat's 43101).
    #[error("{0}")]
    NotSubscribed(String),
    /// A query ran past `limits.query_timeout_ms` (or waited that long for
    /// its turn): stopped, never left running.
    #[error("{0}")]
    QueryTimeout(String),
    /// The database refused a transaction because it conflicted with a
    /// concurrent one (deadlock or serialization failure, typically another
    /// instance's group commit). The writer retries these; one that still
    /// escapes is a 503 to retry. The database's error is kept (shared, as
    /// for [`Error::Internal`]) for the log line.
    #[error("the database is busy with conflicting writes; try again")]
    Contention(#[source] Arc<sqlx::Error>),
    /// A file's bytes are not of a type its purpose allows (decided from
    /// the bytes, never from the client's name or Content-Type).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The file store cannot be reached or refused a write; nothing was
    /// recorded, and the client may try again. The store's error is kept
    /// for the log.
    #[error("the file store is unavailable; try again")]
    StorageUnavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// Something broke inside; the cause (with its whole source chain) is
    /// logged, not shown. Shared, so one failed group commit can answer
    /// every write in it with the same cause.
    #[error("internal error")]
    Internal(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

/// A cause that is only a message (no underlying error to keep).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cause(pub String);

/// A cause with what was being done when it happened, keeping the
/// underlying error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct WithContext {
    /// What was being done.
    pub context: String,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Error {
    /// An internal error whose cause is a message, kept for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Error::Internal(Arc::new(Cause(cause.to_string())))
    }

    /// An internal error saying what was being done, with the error that
    /// stopped it kept as the source.
    pub fn internal_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Internal(Arc::new(WithContext {
            context: context.into(),
            source: Box::new(source),
        }))
    }

    /// For the log: the internal cause and each of its sources, joined by
    /// ": " (None for errors that are not internal).
    pub fn internal_chain(&self) -> Option<String> {
        let Error::Internal(cause) = self else {
            return None;
        };
        let mut text = cause.to_string();
        let mut next = std::error::Error::source(&**cause);
        while let Some(source) = next {
            text.push_str(": ");
            text.push_str(&source.to_string());
            next = std::error::Error::source(source);
        }
        Some(text)
    }
}

/// SQLSTATEs of a transaction that lost to a concurrent one and may simply
/// run again: serialization_failure and deadlock_detected (PostgreSQL).
const RETRYABLE_SQLSTATES: &[&str] = &["40001", "40P01"];

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let retryable = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| RETRYABLE_SQLSTATES.contains(&code.as_ref()));
        if retryable {
            Error::Contention(Arc::new(e))
        } else {
            Error::internal_from("database", e)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::internal_from("migration", e)
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
