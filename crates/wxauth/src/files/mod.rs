//! The rules of files (avatars from `chooseAvatar`, images, attachments):
//! who may upload what, how big, in which type, who may read it and
//! through which URL. Bytes are streamed into the file store as they
//! arrive (never a whole file in memory), and a file exists, for every
//! reader, only once its bytes are stored and its row committed with the
//! owner's byte quota.
//!
//! The type is decided from the bytes (`sniff`), never from the client's
//! filename or Content-Type; downloads are served so that no upload can
//! become a page in the app's origin (`nosniff`, attachments always as
//! downloads, never HTML or SVG inline).

mod imported;
pub mod sniff;
mod sweep;
pub mod urls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wechat_miniapp::Clock;

use crate::blobs::{BlobRead, BlobWriter, Blobs};
use crate::config::NamedKey;
use crate::error::{Error, Result};
use crate::store::{FileInsert, FileRecord, NewFile, Store};
use crate::vocab::Owner;
use crate::vocab::time::rfc3339;
pub use imported::ImportedFile;
pub use sweep::SweepReport;
pub use urls::UrlSigner;

/// What a file is for: decides the types it may hold and whether it is
/// public unless the upload says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A profile picture: an image, public by default.
    Avatar,
    /// A picture: an image, private by default.
    Image,
    /// Anything, served only as a download; private by default.
    Attachment,
}

impl Purpose {
    /// The form field's value (`avatar`, `image`, `attachment`).
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "avatar" => Ok(Self::Avatar),
            "image" => Ok(Self::Image),
            "attachment" => Ok(Self::Attachment),
            other => Err(Error::InvalidRequest(format!(
                "purpose must be avatar, image or attachment, not {:?}",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }

    /// As stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avatar => "avatar",
            Self::Image => "image",
            Self::Attachment => "attachment",
        }
    }
}

/// Sizes and lifetimes of `[files]`.
#[derive(Debug, Clone)]
pub struct FileLimits {
    /// The largest file, bytes.
    pub max_bytes: u64,
    /// Bytes one user may keep in files.
    pub bytes_per_user: u64,
    /// How long a private file's signed URL works.
    pub url_ttl: Duration,
    /// How old bytes without a row must be before the sweep deletes them.
    pub orphan_grace: Duration,
    /// Whether avatars and images wait (`pending`) for WeChat's check.
    pub checked_images: bool,
}

/// A file as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileView {
    /// The file's id.
    pub id: String,
    /// Where `<image src>` or `wx.downloadFile` fetch it, with no header: a
    /// stable URL for a public file, a signed one that expires for a
    /// private file. Absolute when the server knows its address
    /// (`public_url`), else a path to resolve against the API's URL.
    pub url: String,
    /// Bytes.
    pub size: i64,
    /// Decided from the bytes (attachments: `application/octet-stream`
    /// unless an image).
    pub content_type: String,
    /// SHA-256 of the bytes, hex (also the download's ETag).
    pub sha256: String,
    /// `avatar`, `image` or `attachment`.
    pub purpose: String,
    /// Whether the URL needs no signature.
    pub public: bool,
    /// `ready`; an avatar or image checked by WeChat (`[content_check]
    /// images`) is `pending` (its owner alone sees it) until the verdict,
    /// then `pass`, or `rejected` (its bytes deleted, its URL 404).
    pub status: String,
    /// The name the client gave it (cleaned: a display name, never a path).
    pub filename: String,
    /// When it was uploaded.
    pub created_at: String,
}

/// The form fields of an upload besides the file.
#[derive(Debug, Clone, Default)]
pub struct UploadForm {
    /// `purpose` (default `attachment`).
    pub purpose: Option<String>,
    /// `public` (`true`/`false`; default: true for avatars, else false).
    pub public: Option<String>,
    /// The file part's `filename`.
    pub filename: Option<String>,
}

/// An upload on its way into the file store.
pub struct Upload {
    id: String,
    owner: String,
    appid: String,
    writer: BlobWriter,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    max_bytes: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Upload {
    fn new(id: String, owner: String, appid: String, writer: BlobWriter, max_bytes: u64) -> Self {
        Self {
            id,
            owner,
            appid,
            writer,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::with_capacity(sniff::HEAD_BYTES),
            max_bytes,
        }
    }

    /// Adds the next bytes of the file; past the size limit the upload is
    /// given up (nothing stays) and the answer is 413.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.size += chunk.len() as u64;
        if self.size > self.max_bytes {
            return Err(Error::PayloadTooLarge(format!(
                "the file is larger than {} bytes (files.max_bytes)",
                self.max_bytes
            )));
        }
        if self.head.len() < sniff::HEAD_BYTES {
            let take = (sniff::HEAD_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(&chunk);
        self.writer.write(chunk).await
    }

    /// Gives the upload up: nothing of it stays.
    pub async fn abort(self) {
        self.writer.abort().await;
    }
}

/// A download allowed: the file and how to serve it (its bytes are read
/// with [`Files::read`], once the range is known).
#[derive(Debug)]
pub struct Download {
    /// The file.
    pub file: FileView,
    /// Its size, bytes.
    pub size: u64,
    /// Serve as a download (`Content-Disposition: attachment`, type
    /// `application/octet-stream`).
    pub as_attachment: bool,
    /// Whether caches shared between users may keep it.
    pub public: bool,
    /// Seconds a cache may keep it: long for a public file, until the
    /// signature expires for a private one.
    pub max_age: u64,
}

/// How a download proves it may read the file: nothing (public files), or
/// the signature of its URL.
#[derive(Debug, Clone, Default)]
pub struct UrlProof {
    /// `exp`: Unix seconds.
    pub expires: Option<String>,
    /// `sig`.
    pub signature: Option<String>,
}

/// A year: how long a public file's URL may be cached (its bytes never
/// change; a new upload is a new id).
const PUBLIC_MAX_AGE: u64 = 365 * 24 * 3600;

/// How a file's row is kept, once its bytes are in.
struct Kept {
    purpose: Purpose,
    public: bool,
    content_type: &'static str,
    filename: String,
    created_at: i64,
    bytes_per_user: u64,
}

/// Files: uploads, metadata, downloads.
#[derive(Clone)]
pub struct Files {
    store: Store,
    blobs: Blobs,
    signer: UrlSigner,
    limits: FileLimits,
    base_url: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("blobs", &self.blobs)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The client's filename as a display name: its last path segment, control
/// characters and quotes dropped, at most 128 characters. Never used as a
/// path (the bytes are stored under the file's id).
fn clean_filename(name: Option<&str>) -> String {
    let last = name.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\''))
        .take(128)
        .collect();
    match cleaned.trim() {
        "" | "." | ".." => "file".into(),
        name => name.to_owned(),
    }
}

impl Files {
    /// The rules over `store` (metadata) and `blobs` (bytes); URLs signed
    /// with keys derived from `encryption_keys`, rooted at `base_url`
    /// (empty: paths).
    pub fn new(
        store: Store,
        blobs: Blobs,
        encryption_keys: &[NamedKey],
        limits: FileLimits,
        base_url: Option<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            blobs,
            signer: UrlSigner::new(encryption_keys),
            limits,
            base_url: base_url.unwrap_or_default(),
            clock,
        }
    }

    /// The largest file, bytes.
    pub fn max_bytes(&self) -> u64 {
        self.limits.max_bytes
    }

    /// Starts an upload for `owner`; refused at once (409) when their
    /// files already fill their quota.
    pub async fn begin(&self, owner: Owner<'_>) -> Result<Upload> {
        let used = u64::try_from(self.store.file_bytes(owner.user_id).await?).unwrap_or(0);
        if used >= self.limits.bytes_per_user {
            return Err(quota_reached(self.limits.bytes_per_user));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let writer = self.blobs.create(&id).await?;
        Ok(Upload::new(
            id,
            owner.user_id.to_owned(),
            owner.appid.to_owned(),
            writer,
            self.limits.max_bytes,
        ))
    }

    /// Completes `upload` with its form: checks the type against the
    /// purpose, stores the bytes, then the row with the quota charged. On
    /// any refusal nothing stays.
    pub async fn finish(&self, upload: Upload, form: UploadForm) -> Result<FileView> {
        let checked = (|| {
            let purpose = Purpose::parse(form.purpose.as_deref().unwrap_or("attachment"))?;
            let public = match form.public.as_deref() {
                None => purpose == Purpose::Avatar,
                Some("true") => true,
                Some("false") => false,
                Some(other) => {
                    return Err(Error::InvalidRequest(format!(
                        "public must be true or false, not {:?}",
                        other.chars().take(16).collect::<String>()
                    )));
                }
            };
            if upload.size == 0 {
                return Err(Error::InvalidRequest("the file is empty".into()));
            }
            let image = sniff::image_type(&upload.head);
            let content_type = match (purpose, image) {
                (Purpose::Attachment, image) => image.unwrap_or("application/octet-stream"),
                (_, Some(image)) => image,
                (_, None) => {
                    return Err(Error::UnsupportedMediaType(format!(
                        "a file for purpose {} must be a JPEG, PNG, GIF or WebP image (decided from its bytes)",
                        purpose.as_str()
                    )));
                }
            };
            Ok((purpose, public, content_type))
        })();
        let (purpose, public, content_type) = match checked {
            Ok(found) => found,
            Err(e) => {
                upload.abort().await;
                return Err(e);
            }
        };
        let kept = Kept {
            purpose,
            public,
            content_type,
            filename: clean_filename(form.filename.as_deref()),
            created_at: self.clock.now_ms(),
            bytes_per_user: self.limits.bytes_per_user,
        };
        self.keep(upload, kept).await
    }

    /// Stores the bytes of `upload`, then its row with the quota charged;
    /// on any failure nothing stays.
    async fn keep(&self, upload: Upload, kept: Kept) -> Result<FileView> {
        let Upload {
            id,
            owner,
            appid,
            writer,
            hasher,
            size,
            ..
        } = upload;
        writer.finish().await?;
        let record = FileRecord {
            id,
            owner,
            appid,
            purpose: kept.purpose.as_str().to_owned(),
            public: kept.public,
            content_type: kept.content_type.to_owned(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            sha256: hex::encode(hasher.finalize()),
            filename: kept.filename,
            status: if self.limits.checked_images && kept.purpose != Purpose::Attachment {
                "pending".into()
            } else {
                "ready".into()
            },
            created_at: kept.created_at,
        };
        let inserted = self
            .store
            .insert_file(NewFile {
                record: record.clone(),
                bytes_per_user: i64::try_from(kept.bytes_per_user).unwrap_or(i64::MAX),
            })
            .await;
        match inserted {
            Ok(FileInsert::Stored) => Ok(self.view(record)),
            Ok(FileInsert::OverQuota) => {
                self.forget_bytes(&record.id).await;
                Err(quota_reached(kept.bytes_per_user))
            }
            Err(e) => {
                self.forget_bytes(&record.id).await;
                Err(e)
            }
        }
    }

    /// Deletes bytes whose row does not (or no longer) exist; a failure is
    /// logged (the bytes are then an orphan for the sweep).
    async fn forget_bytes(&self, id: &str) {
        if let Err(e) = self.blobs.delete(id).await {
            tracing::warn!(file = id, error = %e, "a file's bytes could not be deleted");
        }
    }

    fn view(&self, r: FileRecord) -> FileView {
        let path = self.public_url(&r.id);
        // A public file still being checked is its owner's alone: their
        // URL is signed until it passes.
        let url = if r.public && r.status != PENDING {
            path
        } else {
            let expires = self.clock.now_ms() / 1000
                + i64::try_from(self.limits.url_ttl.as_secs()).unwrap_or(3600);
            format!(
                "{path}?exp={expires}&sig={}",
                self.signer.sign(&r.id, expires)
            )
        };
        FileView {
            url,
            id: r.id,
            size: r.size,
            content_type: r.content_type,
            sha256: r.sha256,
            purpose: r.purpose,
            public: r.public,
            status: r.status,
            filename: r.filename,
            created_at: rfc3339(r.created_at),
        }
    }

    /// A file's metadata: the owner's own, or a public file of their app.
    /// Anything else is "not found" (whether it exists is not said).
    pub async fn get(&self, caller: Owner<'_>, id: &str) -> Result<FileView> {
        let record = self.store.file(id).await?.ok_or_else(no_file)?;
        let readable = record.owner == caller.user_id
            || (record.public && record.appid == caller.appid && shown_to_all(&record));
        if !readable {
            return Err(no_file());
        }
        Ok(self.view(record))
    }

    /// The stable URL of one of `owner`'s own public avatars or images,
    /// for `profile.avatar_url` (a private file's URL expires, so it is
    /// refused, saying why).
    pub async fn avatar_url(&self, owner: Owner<'_>, id: &str) -> Result<String> {
        let record = self.store.file(id).await?.ok_or_else(no_file)?;
        if record.owner != owner.user_id {
            return Err(no_file());
        }
        if record.purpose == Purpose::Attachment.as_str() {
            return Err(Error::InvalidRequest(
                "avatar_file must be an avatar or an image, not an attachment".into(),
            ));
        }
        if !record.public {
            return Err(Error::InvalidRequest(
                "avatar_file must be public (upload it with purpose=avatar, or public=true): \
                 a private file's URL expires"
                    .into(),
            ));
        }
        // The stable URL, even while the picture is being checked (it
        // answers others once it passes).
        Ok(self.public_url(&record.id))
    }

    /// A page of the files of user `owner`, newest first.
    pub async fn list(
        &self,
        owner: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<FileView>, Option<String>)> {
        let before = match cursor {
            None => None,
            Some(c) => Some(parse_cursor(c)?),
        };
        let mut rows = self
            .store
            .user_files(
                owner,
                before.as_ref().map(|(at, id)| (*at, id.as_str())),
                i64::from(limit) + 1,
            )
            .await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| format!("{}.{}", r.created_at, r.id))
        } else {
            None
        };
        Ok((rows.into_iter().map(|r| self.view(r)).collect(), next))
    }

    /// Every file of user `owner`, newest first (for their export).
    pub async fn all_of(&self, owner: &str) -> Result<Vec<FileView>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.list(owner, 100, cursor.as_deref()).await?;
            all.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Deletes one of user `owner`'s files: the row first (the file is
    /// gone for every reader at once), then its bytes.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<()> {
        if !self.store.delete_file(owner, id).await? {
            return Err(no_file());
        }
        self.forget_bytes(id).await;
        Ok(())
    }

    /// The ids of `user_id`'s files, read before their account is deleted
    /// (the rows go with the account; [`Files::forget`] then deletes the bytes).
    pub async fn ids_of(&self, user_id: &str) -> Result<Vec<String>> {
        self.store.user_file_ids(user_id).await
    }

    /// Deletes the bytes of files whose rows are gone.
    pub async fn forget(&self, ids: &[String]) {
        for id in ids {
            self.forget_bytes(id).await;
        }
    }

    /// Whether file `id` may be read by a request with no header: a
    /// public file as it is; a private one with the signature of its URL.
    /// A deleted file is 404; a signature that is wrong, expired or another
    /// file's is 403.
    pub async fn download(&self, id: &str, proof: &UrlProof) -> Result<Download> {
        let record = self.store.file(id).await?.ok_or_else(no_file)?;
        // Refused by WeChat's check: gone. A public picture still being
        // checked is not there yet for anyone without its owner's URL.
        let unsigned = proof.signature.is_none();
        if record.status == REJECTED || (record.status == PENDING && record.public && unsigned) {
            return Err(no_file());
        }
        let max_age = if record.public && record.status != PENDING {
            PUBLIC_MAX_AGE
        } else {
            let (Some(expires), Some(signature)) = (&proof.expires, &proof.signature) else {
                return Err(Error::Forbidden(
                    "this file is private: its URL needs exp and sig (as GET /v1/files/{id} gives it)"
                        .into(),
                ));
            };
            let expires: i64 = expires
                .parse()
                .map_err(|_| Error::Forbidden("exp is not a time".into()))?;
            let now = self.clock.now_ms() / 1000;
            self.signer
                .check(id, expires, signature, now)
                .map_err(|refused| {
                    Error::Forbidden(match refused {
                        urls::Refused::Expired => {
                            "this file's URL has expired; ask for a new one (GET /v1/files/{id})"
                                .into()
                        }
                        urls::Refused::Wrong | urls::Refused::Malformed => {
                            "this URL's signature is not valid for this file".into()
                        }
                    })
                })?;
            u64::try_from(expires - now).unwrap_or(0)
        };
        Ok(Download {
            size: u64::try_from(record.size).unwrap_or(0),
            as_attachment: record.purpose == Purpose::Attachment.as_str(),
            public: record.public,
            max_age,
            file: self.view(record),
        })
    }

    /// A URL WeChat can fetch pending file `id` from for its check: absolute
    /// and signed (it works while the file is pending, for its lifetime,
    /// `files.url_ttl_secs`). None when the server knows no address of its
    /// own (`public_url`).
    pub fn check_url(&self, id: &str) -> Option<String> {
        if !self.base_url.starts_with("http") {
            return None;
        }
        let expires = self.clock.now_ms() / 1000
            + i64::try_from(self.limits.url_ttl.as_secs()).unwrap_or(3600);
        Some(format!(
            "{}?exp={expires}&sig={}",
            self.public_url(id),
            self.signer.sign(id, expires)
        ))
    }

    /// Records the trace id of WeChat's check of file `id`.
    pub async fn checking(&self, id: &str, trace_id: &str) -> Result<()> {
        self.store.set_file_check_trace(id, trace_id).await
    }

    /// Applies WeChat's verdict on the file checked under `trace_id`:
    /// `pass`, or `rejected` (its bytes deleted, given back to the quota,
    /// its URL 404). The file, when one was pending under that trace.
    pub async fn settle_check(&self, trace_id: &str, pass: bool) -> Result<Option<FileView>> {
        let Some(record) = self.store.file_by_check_trace(trace_id).await? else {
            return Ok(None);
        };
        if !self.store.settle_file_check(&record.id, pass).await? {
            return Ok(None);
        }
        if !pass {
            self.forget_bytes(&record.id).await;
        }
        let record = self.store.file(&record.id).await?.ok_or_else(no_file)?;
        Ok(Some(self.view(record)))
    }

    /// The bytes of an allowed download, or `range` of them.
    pub async fn read(
        &self,
        download: &Download,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<BlobRead> {
        self.blobs.read(&download.file.id, range).await
    }
}

/// A file waiting for WeChat's check.
const PENDING: &str = "pending";
/// A file WeChat's check refused: its row stays (its owner sees why), its
/// bytes are gone.
const REJECTED: &str = "rejected";

/// Whether others than the owner may see a file: not while it is checked,
/// nor once refused.
fn shown_to_all(record: &FileRecord) -> bool {
    record.status != PENDING && record.status != REJECTED
}

fn no_file() -> Error {
    Error::NotFound("no such file".into())
}

fn quota_reached(bytes_per_user: u64) -> Error {
    Error::LimitExceeded(format!(
        "your files would pass {bytes_per_user} bytes (files.bytes_per_user); delete some first"
    ))
}

fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || Error::InvalidRequest("cursor is not one this server issued".into());
    let (at, id) = cursor.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_display_names_never_paths() {
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(
            clean_filename(Some("C:\\\\Users\\\\a\\\\cat.png")),
            "cat.png"
        );
        assert_eq!(clean_filename(Some("..")), "file");
        assert_eq!(clean_filename(None), "file");
        assert_eq!(clean_filename(Some("a\"b\r\n.jpg")), "ab.jpg");
    }
}
