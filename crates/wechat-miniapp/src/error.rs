//! The one error type of this crate.
//!
//! Variants are grouped by what a caller can do about them, not by errcode:
//! a backend maps `InvalidCode` to "ask the user to log in again", `Busy` and
//! `Timeout` to "try later", `AppMisconfigured` to "page the operator". The
//! errcode is kept wherever WeChat gave one. No variant carries a secret:
//! transport errors are stored without their URL, which holds the app secret
//! and the code in its query string.

use crate::crypto::DecryptError;

/// What went wrong talking to WeChat, or decrypting what it produced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The login or phone code is unknown, expired, or belongs to another app
    /// (40029). Final: the client must get a new code.
    #[error("the code is invalid, expired or belongs to another app (errcode {errcode})")]
    InvalidCode {
        /// WeChat's errcode.
        errcode: i64,
    },
    /// The code was already exchanged (40163). Final. When `after_retry` is set,
    /// an earlier attempt of this same call was sent and may itself have
    /// consumed the code, so the code may have worked once.
    #[error("the code was already used (errcode 40163){}", if *after_retry { "; an earlier attempt of this call may have consumed it" } else { "" })]
    CodeUsed {
        /// Whether this answer came to a retry of the call.
        after_retry: bool,
    },
    /// WeChat's risk control refused this user (40226). Final.
    #[error("WeChat refused this user as high-risk (errcode 40226)")]
    UserBlocked,
    /// A rate limit or quota was reached (45011 per minute, 45009 per day).
    #[error("WeChat rate limit reached (errcode {errcode})")]
    RateLimited {
        /// WeChat's errcode.
        errcode: i64,
    },
    /// WeChat said it is busy (-1). Retried with backoff before it reaches you.
    #[error("WeChat is busy (errcode -1)")]
    Busy,
    /// The app's own credentials or setup are wrong: unknown appid (40013),
    /// wrong or frozen secret (40125, 40243), IP not whitelisted (40164,
    /// 895xx), missing parameters, API not authorised (48001). Not the user's
    /// fault; an operator must act.
    #[error("the app is misconfigured at WeChat (errcode {errcode}: {errmsg})")]
    AppMisconfigured {
        /// WeChat's errcode.
        errcode: i64,
        /// WeChat's errmsg, for the operator.
        errmsg: String,
    },
    /// The access token is invalid, not the latest, or expired (40001, 40014,
    /// 42001). The token manager refreshes and retries once on these.
    #[error("the access token was refused (errcode {errcode})")]
    AccessTokenRejected {
        /// WeChat's errcode.
        errcode: i64,
    },
    /// The session_key signature did not match (87009), usually because the
    /// stored session_key is no longer the user's current one.
    #[error("WeChat rejected the session signature (errcode {errcode})")]
    InvalidSignature {
        /// WeChat's errcode.
        errcode: i64,
    },
    /// WeChat did not answer within the configured timeout.
    #[error("WeChat did not answer in time")]
    Timeout,
    /// The request failed below HTTP (DNS, connect, TLS, reset).
    #[error("could not reach WeChat: {message}")]
    Transport {
        /// What failed, without the request URL.
        message: String,
        /// True when the request certainly never reached WeChat (connection
        /// refused or not established), so repeating it is safe even for a
        /// one-time code.
        not_sent: bool,
    },
    /// WeChat answered something that is not the documented JSON.
    #[error("WeChat answered something unexpected: {0}")]
    MalformedAnswer(String),
    /// Any other errcode, kept as WeChat sent it.
    #[error("WeChat error {errcode}: {errmsg}")]
    Other {
        /// WeChat's errcode.
        errcode: i64,
        /// WeChat's errmsg.
        errmsg: String,
    },
    /// `encryptedData` could not be decrypted or verified.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// The client was configured wrongly (for example an unparsable base URL).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// Maps a non-zero WeChat errcode to the variant a caller acts on.
    /// Branches on the code only: `errmsg` wording changes over time.
    pub fn from_errcode(errcode: i64, errmsg: &str) -> Self {
        match errcode {
            -1 => Error::Busy,
            40029 => Error::InvalidCode { errcode },
            40163 => Error::CodeUsed { after_retry: false },
            40226 => Error::UserBlocked,
            45009 | 45011 => Error::RateLimited { errcode },
            40001 | 40014 | 42001 => Error::AccessTokenRejected { errcode },
            87009 => Error::InvalidSignature { errcode },
            40002 | 40013 | 40125 | 40164 | 40243 | 41002 | 41004 | 41008 | 43002 | 43003
            | 48001 | 87008 | 89501 | 89503 | 89506 | 89507 => Error::AppMisconfigured {
                errcode,
                errmsg: errmsg.to_owned(),
            },
            _ => Error::Other {
                errcode,
                errmsg: errmsg.to_owned(),
            },
        }
    }

    /// The WeChat errcode behind this error, when WeChat sent one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Error::Busy => Some(-1),
            Error::CodeUsed { .. } => Some(40163),
            Error::UserBlocked => Some(40226),
            Error::InvalidCode { errcode }
            | Error::RateLimited { errcode }
            | Error::AccessTokenRejected { errcode }
            | Error::InvalidSignature { errcode }
            | Error::AppMisconfigured { errcode, .. }
            | Error::Other { errcode, .. } => Some(*errcode),
            Error::Timeout
            | Error::Transport { .. }
            | Error::MalformedAnswer(_)
            | Error::Decrypt(_)
            | Error::Config(_) => None,
        }
    }

    /// Whether WeChat (or the network to it) may answer differently later:
    /// busy, rate limited, timed out or unreachable. Callers map these to
    /// "try again later" rather than to a final failure.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Busy | Error::RateLimited { .. } | Error::Timeout | Error::Transport { .. }
        )
    }

    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Error::Timeout;
        }
        let not_sent = err.is_connect();
        // `without_url` matters: the URL carries the app secret and the code.
        let err = err.without_url();
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Transport { message, not_sent }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
