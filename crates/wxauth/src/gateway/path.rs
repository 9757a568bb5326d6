//! Which path the gateway forwards: only one that stays under its prefix
//! however the service behind it reads it.
//!
//! The forwarded URL is the upstream's base plus the path exactly as the
//! client sent it (percent-encoding and all). URL parsers (the one that
//! builds the upstream request included) resolve `..`, `%2e%2e` and `.%2E`
//! as dot segments; Tomcat-style servers read `..;/` as `..`; many servers
//! decode `%2f` and `\` into a separator. So a path under `/pub/` can name
//! `/api/secret` on the service unless such segments are refused before
//! anything is forwarded, which is what [`forwarded_url`] does: a 400 for
//! any of them, and a last check that the URL actually built lies under the
//! prefix.

use std::borrow::Cow;

/// Why a request path is not forwarded. The `Display` text is the 400's
/// message; it never echoes the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// The path is not the prefix or under it.
    #[error("the path is not under the gateway's prefix")]
    NotUnderPrefix,
    /// A `.` or `..` segment, raw or percent-encoded (or followed by `;`).
    #[error("the path has a dot segment (., .., or an encoded form of them)")]
    DotSegment,
    /// A `/` or `\` encoded inside a segment, or a raw `\`.
    #[error("the path has an encoded slash or a backslash")]
    Separator,
    /// A NUL or other control byte, raw or encoded.
    #[error("the path has a control character")]
    ControlByte,
    /// A `%` not followed by two hex digits.
    #[error("the path has a malformed percent-encoding")]
    BadEncoding,
}

/// How many times a segment is percent-decoded while looking for a
/// separator or a dot segment: a service that decodes twice (some
/// frameworks do, behind a proxy that decodes once) must not find one
/// either.
const DECODE_ROUNDS: usize = 3;

/// The path under `prefix` (which starts and ends with `/`) that the
/// gateway may forward, checked segment by segment (see the module's
/// notes). The bare prefix, with or without its trailing `/`, is forwarded
/// as it is.
pub fn checked_path<'a>(prefix: &str, raw_path: &'a str) -> Result<&'a str, PathRefusal> {
    let bare = prefix.trim_end_matches('/');
    if raw_path == bare {
        return Ok(raw_path);
    }
    let rest = raw_path
        .strip_prefix(prefix)
        .ok_or(PathRefusal::NotUnderPrefix)?;
    if rest.contains('\\') {
        return Err(PathRefusal::Separator);
    }
    for segment in rest.split('/') {
        check_segment(segment)?;
    }
    Ok(raw_path)
}

fn check_segment(segment: &str) -> Result<(), PathRefusal> {
    let mut text: Cow<'_, str> = Cow::Borrowed(segment);
    for round in 0..=DECODE_ROUNDS {
        if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(PathRefusal::ControlByte);
        }
        if round > 0 && (text.contains('/') || text.contains('\\')) {
            return Err(PathRefusal::Separator);
        }
        // `..;x` is `..` to servlet containers (path parameters).
        let name = text.split(';').next().unwrap_or("");
        if name == "." || name == ".." {
            return Err(PathRefusal::DotSegment);
        }
        if !text.contains('%') {
            return Ok(());
        }
        text = Cow::Owned(percent_decode(&text)?);
    }
    Ok(())
}

/// Decodes `%XX` escapes; the bytes are read as Latin-1 where they are not
/// UTF-8, since only ASCII matters to the checks.
fn percent_decode(text: &str) -> Result<String, PathRefusal> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathRefusal::BadEncoding)?;
            let hi = hex_value(hex[0]).ok_or(PathRefusal::BadEncoding)?;
            let lo = hex_value(hex[1]).ok_or(PathRefusal::BadEncoding)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The upstream URL for a request: `upstream` (a base URL without a path)
/// plus the checked path and the query. Refused unless the URL as parsed,
/// which is what the request is sent to, still lies under `prefix`.
pub fn forwarded_url(
    upstream: &str,
    prefix: &str,
    raw_path: &str,
    query: Option<&str>,
) -> Result<reqwest::Url, PathRefusal> {
    let path = checked_path(prefix, raw_path)?;
    let text = match query {
        Some(q) => format!("{upstream}{path}?{q}"),
        None => format!("{upstream}{path}"),
    };
    let url = reqwest::Url::parse(&text).map_err(|_| PathRefusal::BadEncoding)?;
    if under_prefix(url.path(), prefix) {
        Ok(url)
    } else {
        Err(PathRefusal::NotUnderPrefix)
    }
}

/// Whether `path` (as a URL parser left it) is `prefix`, the prefix
/// without its trailing `/`, or under it.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    path == prefix.trim_end_matches('/') || path.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: &str = "http://127.0.0.1:3000";

    #[test]
    fn ordinary_paths_are_forwarded_as_sent() {
        for path in [
            "/pub/",
            "/pub",
            "/pub/x",
            "/pub/a/b/c.json",
            "/pub/a%20b",
            "/pub/%E4%BD%A0%E5%A5%BD",
            "/pub/..a/b..",
            "/pub/...",
            "/pub/a//b",
            "/pub/a;b=1",
            "/pub/.well-known",
        ] {
            let url = forwarded_url(UP, "/pub/", path, Some("a=1")).unwrap();
            assert_eq!(url.path(), path, "{path}");
            assert_eq!(url.query(), Some("a=1"));
        }
    }

    #[test]
    fn paths_that_could_leave_the_prefix_are_refused() {
        for (path, why) in [
            ("/pub/../api/secret", PathRefusal::DotSegment),
            ("/pub/%2e%2e/api/secret", PathRefusal::DotSegment),
            ("/pub/%2E%2E/api/secret", PathRefusal::DotSegment),
            ("/pub/.%2e/api/secret", PathRefusal::DotSegment),
            ("/pub/%2e./api", PathRefusal::DotSegment),
            ("/pub/a/../../api", PathRefusal::DotSegment),
            ("/pub/..", PathRefusal::DotSegment),
            ("/pub/.", PathRefusal::DotSegment),
            ("/pub/./x", PathRefusal::DotSegment),
            ("/pub/..;/api/secret", PathRefusal::DotSegment),
            ("/pub/%252e%252e/api", PathRefusal::DotSegment),
            ("/pub/%2e%2e%3b/api", PathRefusal::DotSegment),
            ("/pub/..%2fapi/secret", PathRefusal::Separator),
            ("/pub/a%2F..%2Fapi", PathRefusal::Separator),
            ("/pub/a%5c..%5capi", PathRefusal::Separator),
            ("/pub/..\\api", PathRefusal::Separator),
            ("/pub/a%00b", PathRefusal::ControlByte),
            ("/pub/a%zz", PathRefusal::BadEncoding),
            ("/pub/a%2", PathRefusal::BadEncoding),
            ("/api/secret", PathRefusal::NotUnderPrefix),
            ("/pubx", PathRefusal::NotUnderPrefix),
        ] {
            assert_eq!(
                forwarded_url(UP, "/pub/", path, None).err(),
                Some(why),
                "{path}"
            );
        }
    }
}
