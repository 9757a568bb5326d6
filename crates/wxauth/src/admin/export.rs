//! The export of everything held about a user (`GET /v1/me/export`, the
//! admin API's and the CLI's `export`): a file format of its own
//! (`wxauth-export/1`, a file the user keeps), written here once for
//! HTTP and the CLI, streamed from one snapshot.

use serde::Serialize;
use serde_json::Value;

use super::views::{SessionInfo, UserSummary};
use crate::auth::Auth;
use crate::data::{Data, rfc3339};
use crate::error::{Error, Result};

/// One document in an export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedDocument {
    /// The document id.
    pub id: String,
    /// Its version.
    pub version: i64,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
    /// The document as stored.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// Everything wxauth holds about a user (`GET /v1/me/export`,
/// `GET /admin/v1/users/{id}/export`, `wxauth admin user export`).
/// Sealed secrets (the session_key) and tokens are never part of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserExport {
    /// `wxauth-export/1`: the format of this file.
    pub format: &'static str,
    /// When it was made.
    pub exported_at: String,
    /// The user, profile and phone.
    pub user: UserSummary,
    /// Every session, newest first.
    pub sessions: Vec<SessionInfo>,
    /// Every file, newest first, with URLs that work for
    /// `files.url_ttl_secs` (the bytes are fetched from them).
    pub files: Vec<crate::files::FileView>,
    /// Documents by collection, each oldest first.
    #[schema(value_type = Object)]
    pub documents: std::collections::BTreeMap<String, Vec<ExportedDocument>>,
    /// How many documents in all.
    pub document_count: u64,
}

/// An export on its way out: the file's bytes in chunks, made by a task
/// that reads the documents a page at a time from one snapshot. Memory
/// stays at a page and a few chunks whatever the user holds; a consumer
/// that stops reading (a client gone) ends the task and the snapshot.
#[derive(Debug)]
pub struct ExportStream {
    /// The user.
    pub user_id: String,
    /// Documents in the export (counted in its snapshot).
    pub document_count: u64,
    /// Documents written into the chunks so far.
    pub written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The chunks; an error ends the stream early (the file is then cut
    /// short, which a JSON reader notices).
    pub chunks: tokio::sync::mpsc::Receiver<Result<Vec<u8>>>,
}

/// Bytes gathered before a chunk is handed on.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for a slow reader before the reading task waits too.
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;
/// The longest an export may take (a reader stalled for longer is cut off,
/// releasing its snapshot).
const EXPORT_MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// One document as the export writes it: its stored JSON as it is, not
/// parsed and written again.
#[derive(Serialize)]
struct ExportedDocumentRaw<'a> {
    id: &'a str,
    version: i64,
    created_at: String,
    updated_at: String,
    data: &'a serde_json::value::RawValue,
}

/// Starts the export of `user_id` (the format of [`UserExport`], written
/// as it is read: `format`, `exported_at`, `user`, `sessions`, `files`, then
/// `documents` by collection, oldest first, and `document_count`).
pub(super) async fn export_stream(
    auth: &Auth,
    data: &Data,
    files: &crate::files::Files,
    user_id: &str,
) -> Result<ExportStream> {
    let account = auth.account(user_id).await?;
    let mut documents = data.export_documents(user_id).await?;
    let document_count = documents.total;
    let file_list = files.all_of(user_id).await?;
    let head = serde_json::json!({
        "format": "wxauth-export/1",
        "exported_at": rfc3339(auth.now()),
        "user": UserSummary::from(account.me),
        "sessions": account.sessions.into_iter().map(SessionInfo::from).collect::<Vec<_>>(),
        "files": file_list,
    });
    let mut buf = serde_json::to_vec(&head)
        .map_err(|e| Error::internal_from("writing an export's head", e))?;
    // The head's closing brace gives way to the documents.
    buf.pop();
    buf.extend_from_slice(b",\"documents\":{");
    let (tx, chunks) = tokio::sync::mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        let work = async {
            let mut current: Option<String> = None;
            let mut count = 0u64;
            loop {
                let page = documents.next_page().await?;
                if page.is_empty() {
                    break;
                }
                for d in page {
                    if current.as_deref() != Some(d.collection.as_str()) {
                        if current.is_some() {
                            buf.extend_from_slice(b"\n],");
                        }
                        serde_json::to_writer(&mut buf, &d.collection)
                            .map_err(|e| Error::internal_from("writing an export", e))?;
                        buf.extend_from_slice(b":[");
                        current = Some(d.collection.clone());
                    } else {
                        buf.push(b',');
                    }
                    buf.push(b'\n');
                    let doc = d.document;
                    let raw: &serde_json::value::RawValue = serde_json::from_str(&doc.data)
                        .map_err(|e| Error::internal_from("a stored document is not JSON", e))?;
                    serde_json::to_writer(
                        &mut buf,
                        &ExportedDocumentRaw {
                            id: &doc.id,
                            version: doc.version,
                            created_at: rfc3339(doc.created_at),
                            updated_at: rfc3339(doc.updated_at),
                            data: raw,
                        },
                    )
                    .map_err(|e| Error::internal_from("writing an export", e))?;
                    count += 1;
                }
                counter.store(count, std::sync::atomic::Ordering::Relaxed);
                if buf.len() >= EXPORT_CHUNK_BYTES
                    && tx.send(Ok(std::mem::take(&mut buf))).await.is_err()
                {
                    return Ok(()); // the reader went away
                }
            }
            if current.is_some() {
                buf.extend_from_slice(b"\n]");
            }
            buf.extend_from_slice(format!("}},\"document_count\":{count}}}\n").as_bytes());
            let _ = tx.send(Ok(std::mem::take(&mut buf))).await;
            Ok::<(), Error>(())
        };
        let outcome = match tokio::time::timeout(EXPORT_MAX_DURATION, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::internal(
                "the export took longer than 30 minutes; cut off",
            )),
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e.internal_chain().unwrap_or_else(|| e.to_string()), "an export stopped early");
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(ExportStream {
        user_id: user_id.to_owned(),
        document_count,
        written,
        chunks,
    })
}
