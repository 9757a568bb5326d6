//! `--fetch-files`: the bytes of each `_File` row downloaded into the file
//! store, a few at a time, under an id derived from the row's objectId, so
//! file fields can point at the new file and a re-run fetches nothing it
//! has. A download that fails is the row's problem (its fields keep the
//! old URL); the file store failing stops the import.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use super::RowProblem;
use crate::error::{Error, Result};
use crate::files::{FileView, Files, ImportedFile};

/// Downloads at once: enough to hide each one's latency, few enough not
/// to look like an attack to the old platform's CDN.
pub const FETCHES_AT_ONCE: usize = 4;

/// How long a connection may take, and a read may stall.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client downloads go through.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
}

/// The URL without its query (a private bucket's signature): what reports say.
fn shown(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

impl Fetcher {
    /// A client with timeouts, following at most five redirects.
    pub fn new() -> Result<Self> {
        wechat_miniapp::ensure_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("wxauth-import/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal_from("the download client", e))?;
        Ok(Self { http })
    }

    /// Downloads `url` into `files` as `file`. The outer error stops the
    /// import (the file store failed); the inner one is the row's.
    pub async fn fetch(
        &self,
        files: &Files,
        file: ImportedFile,
        url: &str,
        quota: bool,
    ) -> Result<std::result::Result<FileView, RowProblem>> {
        let failed = |why: String| {
            Ok(Err(RowProblem::new(
                "fetch_failed",
                format!("GET {}: {why} (its fields keep the old URL)", shown(url)),
            )))
        };
        let response = match self.http.get(url).send().await {
            Ok(r) => r,
            Err(e) => return failed(without_url(&e)),
        };
        if !response.status().is_success() {
            return failed(format!("answered {}", response.status()));
        }
        let too_large = || {
            Ok(Err(RowProblem::new(
                "too_large",
                format!(
                    "{} is larger than files.max_bytes ({} bytes): not fetched (its fields keep the old URL)",
                    shown(url),
                    files.max_bytes()
                ),
            )))
        };
        if response
            .content_length()
            .is_some_and(|n| n > files.max_bytes())
        {
            return too_large();
        }
        let mut upload = files.begin_import(&file).await?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = match chunk {
                Ok(c) => c,
                Err(e) => {
                    upload.abort().await;
                    return failed(format!("the download broke off: {}", without_url(&e)));
                }
            };
            if let Err(e) = upload.write(chunk).await {
                upload.abort().await;
                return match e {
                    Error::PayloadTooLarge(_) => too_large(),
                    e => Err(e),
                };
            }
        }
        match files.finish_import(upload, file, quota).await {
            Ok(view) => Ok(Ok(view)),
            Err(Error::InvalidRequest(_)) => Ok(Err(RowProblem::new(
                "empty_file",
                format!("{} is empty: not imported", shown(url)),
            ))),
            Err(Error::LimitExceeded(_)) => Ok(Err(RowProblem::new(
                "over_file_quota",
                format!(
                    "{} would take its owner past files.bytes_per_user (--ignore-limits raises it for this import)",
                    shown(url)
                ),
            ))),
            Err(e) => Err(e),
        }
    }
}

/// A reqwest error's sentence without the URL it names (the report says
/// the URL once, without its query).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_body() || e.is_decode() {
        "the body could not be read"
    } else {
        "the request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = None;
    while let Some(s) = source {
        detail = Some(s.to_string());
        source = s.source();
    }
    match detail {
        Some(d) => format!("{kind} ({d})"),
        None => kind.to_owned(),
    }
}
