//! The rules of user data: the caller's own profile and documents. The
//! owner always comes from the caller's token, never from the request.

pub mod documents;
pub mod profile;

/// Unix milliseconds as RFC 3339 in UTC, the API's one timestamp format.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
