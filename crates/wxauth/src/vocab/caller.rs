//! Who a request acts as. `auth` makes a [`Caller`] from a verified access
//! token and nothing else; `data` and the handlers act for it.

/// The authenticated caller of a request: who, which session, which app.
/// Always derived from a verified access token, never from the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id.
    pub user_id: String,
    /// The session id.
    pub session_id: String,
    /// The app the token was issued for.
    pub appid: String,
}
