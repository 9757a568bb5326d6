//! The one translation from WeChat's errors to the API contract's.

use std::time::Duration;

use wechat_miniapp::Error as Wx;

use crate::error::Error;

/// What a login or phone call was doing, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Login,
    Phone,
    ContentCheck,
    Message,
}

pub(crate) fn map(err: Wx, call: Call, appid: &str) -> Error {
    match err {
        Wx::InvalidCode { .. } => Error::InvalidCode(match call {
            Call::Login => "WeChat says the login code is invalid or expired; call wx.login() for a new one".into(),
            Call::Phone => "WeChat says the phone code is invalid, expired or already used; ask the user to tap the button again".into(),
            Call::ContentCheck => "WeChat refused the content check's request".into(),
            Call::Message => "WeChat refused the message".into(),
        }),
        Wx::CodeUsed { .. } => Error::InvalidCode(
            "WeChat says this login code was already used; call wx.login() for a new one".into(),
        ),
        // For the phone API, 40013 means the code belongs to another app or user.
        Wx::AppMisconfigured { errcode: 40013, .. } if matches!(call, Call::Phone) => {
            Error::InvalidCode("WeChat says the phone code belongs to another app or user".into())
        }
        Wx::UserBlocked => Error::UserBlocked,
        Wx::RateLimited { errcode } => Error::RateLimited {
            message: format!("WeChat's rate limit was reached (errcode {errcode}); try again in a minute"),
            retry_after: Duration::from_secs(60),
        },
        Wx::Busy => unavailable("WeChat is busy"),
        Wx::Timeout => unavailable("WeChat did not answer in time"),
        Wx::Transport { .. } => unavailable("WeChat could not be reached"),
        other => {
            // Not the user's fault: a wrong secret, a missing permission, a
            // new errcode. Loud, because an operator must act.
            tracing::error!(appid, errcode = ?other.errcode(), error = %other, "WeChat refused a call for reasons an operator must fix");
            Error::UpstreamError(format!(
                "WeChat refused the request{}; the service operator has been alerted",
                other.errcode().map(|c| format!(" (errcode {c})")).unwrap_or_default()
            ))
        }
    }
}

pub(crate) fn unavailable(what: &str) -> Error {
    Error::UpstreamUnavailable {
        message: format!("{what}; try again shortly"),
        retry_after: Duration::from_secs(2),
    }
}
