//! Times as the API writes them.

/// Unix milliseconds as RFC 3339 in UTC, the API's one timestamp format.
pub fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
