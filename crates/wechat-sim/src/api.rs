//! The simulated WeChat APIs, their names in faults and stats, and the error
//! answers WeChat gives.

use serde::Serialize;

/// One of WeChat's server APIs. The name is the last segment of its URL, as
/// used by `/sim/v1/faults` and `/sim/v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `GET /sns/jscode2session`
    Jscode2session,
    /// `GET /cgi-bin/token`
    Token,
    /// `POST /cgi-bin/stable_token`
    StableToken,
    /// `GET /wxa/checksession`
    Checksession,
    /// `GET /wxa/resetusersessionkey`
    Resetusersessionkey,
    /// `POST /wxa/business/getuserphonenumber`
    Getuserphonenumber,
    /// `POST /wxa/msg_sec_check`
    MsgSecCheck,
    /// `POST /cgi-bin/message/subscribe/send`
    SubscribeSend,
    /// `POST /wxa/media_check_async`
    MediaCheckAsync,
}

impl Api {
    /// Every API, in a stable order.
    pub const ALL: [Api; 9] = [
        Api::Jscode2session,
        Api::Token,
        Api::StableToken,
        Api::Checksession,
        Api::Resetusersessionkey,
        Api::Getuserphonenumber,
        Api::MsgSecCheck,
        Api::SubscribeSend,
        Api::MediaCheckAsync,
    ];

    /// The name used in faults and stats.
    pub fn name(self) -> &'static str {
        match self {
            Api::Jscode2session => "jscode2session",
            Api::Token => "token",
            Api::StableToken => "stable_token",
            Api::Checksession => "checksession",
            Api::Resetusersessionkey => "resetusersessionkey",
            Api::Getuserphonenumber => "getuserphonenumber",
            Api::MsgSecCheck => "msg_sec_check",
            Api::SubscribeSend => "subscribe_send",
            Api::MediaCheckAsync => "media_check_async",
        }
    }

    /// Parses a fault or stats name.
    pub fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The `Content-Type` WeChat labels this API's answers with. JSON bodies
    /// under `text/plain` are WeChat's habit on `sns/*` (UNCONFIRMED for
    /// jscode2session itself; chosen so clients must cope with it), and the
    /// non-standard `encoding=` parameter was captured on `cgi-bin/token`.
    pub fn content_type(self) -> &'static str {
        match self {
            Api::Jscode2session => "text/plain",
            Api::Token | Api::StableToken => "application/json; encoding=utf-8",
            Api::Checksession
            | Api::Resetusersessionkey
            | Api::Getuserphonenumber
            | Api::MsgSecCheck
            | Api::SubscribeSend
            | Api::MediaCheckAsync => "application/json; charset=UTF-8",
        }
    }
}

/// An errcode answer, as WeChat sends it: HTTP 200 and a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WxError(pub i64);

impl WxError {
    /// WeChat's errmsg for this errcode (the rid suffix is added when answering).
    pub fn errmsg(self) -> &'static str {
        match self.0 {
            -1 => "system error",
            40001 => "invalid credential, access_token is invalid or not latest",
            40002 => "invalid grant_type",
            40003 => "invalid openid",
            40013 => "invalid appid",
            40029 => "invalid code",
            40125 => "invalid appsecret",
            40163 => "code been used",
            40226 => "code blocked",
            41001 => "access_token missing",
            41002 => "appid missing",
            41004 => "appsecret missing",
            41008 => "missing code",
            42001 => "access_token expired",
            43002 => "require POST method",
            44002 => "empty post data",
            43101 => "user refuse to accept the msg",
            43104 => "appid does not match openid",
            47003 => "argument invalid! data.thing1.value invalid",
            45009 => "reach max api daily quota limit",
            45011 => "api minute-quota reach limit mustslower retry next minute",
            40037 => "invalid template_id",
            40129 => "invalid scene",
            41030 => "invalid page",
            47001 => "data format error",
            61010 => "user is not visited in 2 hours",
            87014 => "risky content",
            48001 => "api unauthorized",
            87008 => "invalid sig_method",
            87009 => "invalid signature",
            _ => "simulated error",
        }
    }
}
