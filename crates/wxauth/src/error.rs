//! The one error type of the service. Every layer returns it; `http::error`
//! is the one place that turns it into a response. Messages are written for
//! the mini-program developer reading them and never contain a secret.

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
    /// The database refused a transaction because it conflicted with a
    /// concurrent one (deadlock or serialization failure, typically another
    /// instance's group commit). The writer retries these; one that still
    /// escapes is a 503 to retry.
    #[error("the database is busy with conflicting writes; try again")]
    Contention(String),
    /// Something broke inside; the cause is logged, not shown.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// An internal error with its cause kept for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Error::Internal(cause.to_string())
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
            Error::Contention(format!("database: {e}"))
        } else {
            Error::Internal(format!("database: {e}"))
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Internal(format!("migration: {e}"))
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
