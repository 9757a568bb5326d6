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

impl Caller {
    /// Whose data the caller acts on: their own.
    pub fn owner(&self) -> Owner<'_> {
        Owner {
            user_id: &self.user_id,
            appid: &self.appid,
        }
    }
}

/// Whose data a call acts on: the user a verified token names, or the
/// user an operator acts for. The data rules take this, never a session:
/// an operator has none, and no rule needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// The user id.
    pub user_id: &'a str,
    /// The user's app.
    pub appid: &'a str,
}
