//! Response bodies. Timestamps are RFC 3339 in UTC.

use serde::Serialize;
use wechat_miniapp::SecretText;

use crate::auth::{Session, User};
use crate::data::rfc3339;

/// The user as login and refresh return it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// wxauth's user id.
    pub id: String,
    /// The app.
    pub appid: String,
    /// WeChat's id of the user within the app.
    pub openid: String,
    /// WeChat's id across the Open Platform account, if bound.
    pub unionid: Option<String>,
    /// When the user first logged in.
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            appid: u.appid.clone(),
            openid: u.openid.clone(),
            unionid: u.unionid.clone(),
            created_at: rfc3339(u.created_at),
        }
    }
}

/// The answer to login and refresh.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Send as `Authorization: Bearer …`.
    #[schema(value_type = String)]
    #[serde(serialize_with = "expose_to_the_caller")]
    pub access_token: SecretText,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange at `/v1/token/refresh` for a new pair; single use.
    #[schema(value_type = String)]
    #[serde(serialize_with = "expose_to_the_caller")]
    pub refresh_token: SecretText,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
    /// Whether this login created the user.
    pub new_user: bool,
    /// The user.
    pub user: UserView,
}

/// The one place a token is written out: to the caller it was issued to
/// (secret types have no `Serialize` of their own).
fn expose_to_the_caller<S: serde::Serializer>(
    token: &SecretText,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(token.expose())
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        Self {
            user: UserView::from(&s.user),
            access_token: s.access_token,
            token_type: "Bearer",
            expires_in: s.expires_in,
            refresh_token: s.refresh_token,
            refresh_expires_in: s.refresh_expires_in,
            new_user: s.new_user,
        }
    }
}
