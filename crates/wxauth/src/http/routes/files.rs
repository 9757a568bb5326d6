//! `/v1/files`: uploads (`multipart/form-data` exactly as `wx.uploadFile`
//! sends it), the caller's files, and `/v1/files/{id}/raw`, the bytes for
//! `<image src>` and `wx.downloadFile`, which send no header.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::super::extract::DataCaller;
use super::super::{AppState, ErrorBody};
use crate::error::{Error, Result};
use crate::files::{Download, FileView, Files, Upload, UploadForm, UrlProof};

/// Parts one upload may have (the file and a few form fields).
const MAX_PARTS: usize = 16;
/// The longest form field (`purpose`, `public`, or the app's own).
const MAX_FIELD_BYTES: usize = 1024;

/// Waits at most `limit` for the body's next bytes: a client that stops
/// sending is a 408, whatever the upload's total time.
async fn in_time<T>(
    limit: Duration,
    next: impl std::future::Future<Output = std::result::Result<T, multer::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, next).await {
        Err(_) => Err(Error::RequestTimeout(format!(
            "the upload stopped: no bytes for {} ms (http.body_timeout_ms)",
            limit.as_millis()
        ))),
        Ok(Err(e)) => Err(Error::InvalidRequest(format!(
            "the multipart body is malformed or cut short: {e}"
        ))),
        Ok(Ok(v)) => Ok(v),
    }
}

/// Streams one file part into `upload`.
async fn stream_into(
    upload: &mut Upload,
    field: &mut multer::Field<'_>,
    idle: Duration,
) -> Result<()> {
    while let Some(chunk) = in_time(idle, field.chunk()).await? {
        upload.write(chunk).await?;
    }
    Ok(())
}

/// Reads the parts: the one file (streamed into the file store as it
/// arrives) and the form fields.
async fn read_parts(
    files: &Files,
    caller: &crate::vocab::Caller,
    multipart: &mut multer::Multipart<'_>,
    idle: Duration,
    upload: &mut Option<Upload>,
    form: &mut UploadForm,
) -> Result<()> {
    let mut parts = 0;
    while let Some(mut field) = in_time(idle, multipart.next_field()).await? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(Error::InvalidRequest(format!(
                "an upload has at most {MAX_PARTS} parts"
            )));
        }
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().map(str::to_owned);
        if filename.is_some() || name == "file" {
            if upload.is_some() {
                return Err(Error::InvalidRequest(format!(
                    "send one file per upload (a second file part, {:?}, came)",
                    name.chars().take(32).collect::<String>()
                )));
            }
            let started = upload.insert(files.begin(caller.owner()).await?);
            form.filename = filename;
            stream_into(started, &mut field, idle).await?;
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = in_time(idle, field.chunk()).await? {
                text.extend_from_slice(&chunk);
                if text.len() > MAX_FIELD_BYTES {
                    return Err(Error::InvalidRequest(format!(
                        "the form field {:?} is longer than {MAX_FIELD_BYTES} bytes",
                        name.chars().take(32).collect::<String>()
                    )));
                }
            }
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            match name.as_str() {
                "purpose" => form.purpose = Some(text),
                "public" => form.public = Some(text),
                // The app's own formData fields are allowed and not kept.
                _ => {}
            }
        }
    }
    Ok(())
}

/// The upload form, as `wx.uploadFile` sends it (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadFormSchema {
    /// The file: a part with a filename (any part name; `file` is usual).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    file: Vec<u8>,
    /// `avatar`, `image` or `attachment` (default `attachment`).
    #[schema(value_type = Option<String>, pattern = "^(avatar|image|attachment)$")]
    purpose: Option<String>,
    /// `true` or `false` (default: true for avatars, else false): a
    /// boolean, which a multipart form carries as that text.
    #[schema(value_type = Option<bool>)]
    public: Option<String>,
}

/// Upload a file. `multipart/form-data` as `wx.uploadFile` sends it: the
/// file in one part with a filename (named `file` or by the client's
/// `name`), and the form fields `purpose` (`avatar`, `image`,
/// `attachment`; default `attachment`) and `public` (`true`/`false`;
/// default true for avatars). Streamed to the file store, never held
/// whole. Avatars and images must be JPEG, PNG, GIF or WebP, decided from
/// the bytes.
#[utoipa::path(post, path = "/v1/files", tag = "files", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", content = UploadFormSchema),
    responses(
        (status = 201, description = "Stored", body = FileView),
        (status = 400, description = "invalid_request: not multipart, no file part, two file parts, an empty file, a bad purpose or public, a body cut short", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 408, description = "request_timeout: the body stopped arriving (http.body_timeout_ms)", body = ErrorBody),
        (status = 409, description = "limit_exceeded: the caller's files would pass files.bytes_per_user", body = ErrorBody),
        (status = 413, description = "payload_too_large: the file is larger than files.max_bytes", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: an avatar or image that is not JPEG, PNG, GIF or WebP", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "storage_unavailable: the file store cannot be reached; nothing was stored", body = ErrorBody),
    ))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    caller: Result<DataCaller>,
    request: Request,
) -> Result<Response> {
    let outcome = match caller {
        Ok(DataCaller(caller)) => {
            let stored = receive(&state, &caller, request).await;
            if let Ok(file) = &stored {
                // An avatar or image waiting for WeChat's check: asked now,
                // its verdict pushed later.
                state.image_checks().submit(&caller, file).await;
            }
            stored
        }
        Err(refused) => {
            // 401 (an expired token, before the client refreshes) or 429:
            // read the body the client is sending, so it sees the answer.
            // A client that waits for `100 Continue` sends nothing until
            // the body is read: it gets the answer at once instead.
            let waits_to_send = request.headers().contains_key(header::EXPECT);
            if !waits_to_send {
                let limit = state.files().max_bytes() + FORM_ALLOWANCE;
                let idle = Duration::from_millis(state.settings().http.body_timeout_ms);
                discard(request.into_body().into_data_stream(), limit, idle).await;
            }
            Err(refused)
        }
    };
    match &outcome {
        Ok(file) => {
            metrics::counter!("wxauth_file_uploads_total").increment(1);
            metrics::counter!("wxauth_file_upload_bytes_total")
                .increment(u64::try_from(file.size).unwrap_or(0));
        }
        Err(e) => {
            metrics::counter!("wxauth_file_upload_refusals_total", "reason" => super::super::error_code(e))
                .increment(1);
        }
    }
    Ok((StatusCode::CREATED, Json(outcome?)).into_response())
}

/// Bytes of an upload besides its file (boundaries, headers, form fields).
const FORM_ALLOWANCE: u64 = 64 * 1024;

/// Reads and drops what is left of a refused upload's body (at most
/// `limit` bytes, each within `idle`). An HTTP/1.1 client still sending
/// its body when the server answers and closes gets a broken pipe, not
/// the answer (Node's fetch, and phones' HTTP stacks alike): a 401 would
/// never reach the client's refresh-and-retry. nginx does the same
/// ("lingering close"); a body past `limit` is cut off all the same.
async fn discard<S, E>(mut body: S, limit: u64, idle: Duration)
where
    S: futures_util::Stream<Item = std::result::Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt;
    let mut read = 0u64;
    while read <= limit {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len() as u64,
            _ => return,
        }
    }
}

/// Reads an upload into the file store and records it.
async fn receive(
    state: &AppState,
    caller: &crate::vocab::Caller,
    request: Request,
) -> Result<FileView> {
    let files = state.files();
    // A body announced larger than any file allowed is refused unread.
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > files.max_bytes() + FORM_ALLOWANCE) {
        return Err(Error::PayloadTooLarge(format!(
            "the file is larger than {} bytes (files.max_bytes)",
            files.max_bytes()
        )));
    }
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| {
            Error::InvalidRequest(
                "send the file as multipart/form-data with a boundary (wx.uploadFile does)".into(),
            )
        })?;
    let mut multipart = multer::Multipart::new(request.into_body().into_data_stream(), boundary);
    let idle = Duration::from_millis(state.settings().http.body_timeout_ms);
    let mut upload = None;
    let mut form = UploadForm::default();
    let read = read_parts(files, caller, &mut multipart, idle, &mut upload, &mut form).await;
    let upload = match (read, upload) {
        (Ok(()), Some(upload)) => upload,
        (Ok(()), None) => {
            return Err(Error::InvalidRequest(
                "no file part: send the file as a part with a filename (wx.uploadFile's filePath)"
                    .into(),
            ));
        }
        (Err(e), upload) => {
            if let Some(upload) = upload {
                upload.abort().await;
            }
            // Refused before the body's end (409 at the quota, 413 past
            // the size): read the rest so the client sees why.
            if matches!(e, Error::LimitExceeded(_) | Error::PayloadTooLarge(_)) {
                drain_parts(&mut multipart, files.max_bytes() + FORM_ALLOWANCE, idle).await;
            }
            return Err(e);
        }
    };
    files.finish(upload, form).await
}

/// Reads the rest of a multipart body, dropping it: at most `limit`
/// bytes, each within `idle` (see [`discard`]).
async fn drain_parts(multipart: &mut multer::Multipart<'_>, limit: u64, idle: Duration) {
    let mut read = 0u64;
    while let Ok(Some(mut field)) = in_time(idle, multipart.next_field()).await {
        while let Ok(Some(chunk)) = in_time(idle, field.chunk()).await {
            read += chunk.len() as u64;
            if read > limit {
                return;
            }
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FileListQuery {
    /// 1 to 100 (default 20).
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

impl FileListQuery {
    /// The page size asked for, checked.
    pub(crate) fn limit(&self) -> Result<u32> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(Error::InvalidRequest(
                "limit must be a number from 1 to 100".into(),
            ));
        }
        Ok(limit)
    }
}

/// A page of files.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct FilePage {
    pub(crate) items: Vec<FileView>,
    /// Present when there are more.
    pub(crate) next_cursor: Option<String>,
}

/// The caller's own files, newest first.
#[utoipa::path(get, path = "/v1/files", tag = "files", security(("bearer" = [])),
    params(FileListQuery),
    responses(
        (status = 200, description = "A page", body = FilePage),
        (status = 400, description = "invalid_request: a bad limit or cursor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Query(q): Query<FileListQuery>,
) -> Result<Json<FilePage>> {
    let limit = q.limit()?;
    let (items, next_cursor) = state
        .files()
        .list(&caller.user_id, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(FilePage { items, next_cursor }))
}

/// A file's metadata (and a fresh URL): the caller's own, or a public
/// file of their app.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = String, Path, description = "The file id")),
    responses(
        (status = 200, description = "The file", body = FileView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found: no such file, or not one the caller may see", body = ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path(id): Path<String>,
) -> Result<Json<FileView>> {
    Ok(Json(state.files().get(caller.owner(), &id).await?))
}

/// Delete one of the caller's files: its URL answers 404 from now on and
/// its bytes leave the store.
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = String, Path, description = "The file id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.files().delete(&caller.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RawQuery {
    /// Private files: the URL's expiry (Unix seconds).
    exp: Option<String>,
    /// Private files: the URL's signature.
    sig: Option<String>,
}

/// The one byte range of a `Range` header within `size` bytes: None for
/// no header or one this does not serve (several ranges: the whole file
/// is sent); Err for a range past the end (416).
fn byte_range(headers: &HeaderMap, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (start, "") => (start.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| ())?;
            let end: u64 = end.parse().map_err(|_| ())?;
            if end < start {
                return Err(());
            }
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn served_headers(download: &Download, response: &mut Response) {
    let file = &download.file;
    let headers = response.headers_mut();
    let content_type = if download.as_attachment {
        "application/octet-stream"
    } else {
        file.content_type.as_str()
    };
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        headers.insert(header::ETAG, v);
    }
    let cache = if download.public {
        format!("public, max-age={}, immutable", download.max_age)
    } else {
        format!("private, max-age={}", download.max_age)
    };
    if let Ok(v) = HeaderValue::from_str(&cache) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Were a browser ever to render it, nothing in it may run.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if download.as_attachment {
        // The cleaned name, ASCII only in the plain parameter.
        let ascii: String = file
            .filename
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
}

/// A file's bytes, for `<image src>` and `wx.downloadFile` (no header
/// needed): public files at a stable URL, private files with the URL's
/// `exp` and `sig`. `ETag`/`If-None-Match`, one `Range`, `nosniff`;
/// attachments always as downloads.
#[utoipa::path(get, path = "/v1/files/{id}/raw", tag = "files",
    params(("id" = String, Path, description = "The file id"), RawQuery),
    responses(
        (status = 200, description = "The bytes"),
        (status = 206, description = "The range asked for"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 403, description = "forbidden: a private file without a valid, unexpired signature for it", body = ErrorBody),
        (status = 404, description = "not_found: no such file (or deleted)", body = ErrorBody),
        (status = 416, description = "The range is past the end"),
        (status = 503, description = "storage_unavailable", body = ErrorBody),
    ))]
pub(crate) async fn raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RawQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let files = state.files();
    let proof = UrlProof {
        expires: q.exp,
        signature: q.sig,
    };
    let download = files.download(&id, &proof).await?;
    let etag = format!("\"{}\"", download.file.sha256);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        served_headers(&download, &mut response);
        return Ok(response);
    }
    let size = download.size;
    let range = match byte_range(&headers, size) {
        Ok(range) => range,
        Err(()) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let bytes = files
        .read(&download, range.map(|(start, end)| start..end + 1))
        .await?;
    let length = bytes.range.end - bytes.range.start;
    let mut response = axum::body::Body::from_stream(bytes.chunks).into_response();
    served_headers(&download, &mut response);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some((start, end)) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        byte_range(&headers, size)
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=95-200", 100), Ok(Some((95, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=5-1", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
    }
}
