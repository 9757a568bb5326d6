//! Where uploaded files' bytes live: a folder on the local disk by default,
//! or any S3-compatible object store, through the `object_store` crate
//! (Apache Arrow's: one interface over local files and S3, streaming
//! multipart writes, ranged reads, SigV4; used by DataFusion, delta-rs and
//! polars), so nothing of a store's protocol is written here.
//!
//! A blob is written in parts and appears under its key only when
//! finished (the local store writes a temporary file and renames it; S3
//! completes a multipart upload), so a failed upload leaves nothing
//! visible. The `files` room decides what is stored; this room only
//! persists bytes by key.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, GetResultPayload, ObjectStore,
    ObjectStoreExt, RetryConfig, WriteMultipart,
};

use crate::config::{FileStore, S3Store};
use crate::error::{Error, Result};

/// Parts in flight while writing a blob.
const PARTS_IN_FLIGHT: usize = 2;
/// The bytes of one part written to the local disk: what an upload holds
/// in memory at most (times [`PARTS_IN_FLIGHT`] + 1). S3 needs parts of at
/// least 5 MiB (but the last), so an upload to S3 holds up to 15 MiB.
const LOCAL_PART_BYTES: usize = 256 * 1024;
/// The bytes read from the local disk at a time: a 100 KiB image in one
/// read on the blocking pool (the crate reads 8 KiB a hand-off).
const LOCAL_READ_BYTES: u64 = 256 * 1024;

/// How long connecting to an object store may take before the upload or
/// download is a 503 (a store that is down answers no faster than this).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The file store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The local folder: read directly (in larger reads than the crate's),
    /// written in smaller parts, and swept of half-written files (S3 keeps
    /// unfinished multipart uploads out of sight; a bucket lifecycle rule
    /// removes them). None for S3.
    folder: Option<PathBuf>,
}

/// A stored blob, as the sweep sees it.
#[derive(Debug, Clone)]
pub struct BlobEntry {
    /// Its key.
    pub key: String,
    /// When it was last written.
    pub modified: SystemTime,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blobs({})", self.store)
    }
}

/// A blob being written; dropped without [`BlobWriter::finish`], nothing
/// appears (call [`BlobWriter::abort`] to clean up at once).
pub struct BlobWriter {
    upload: WriteMultipart,
}

/// A blob (or a range of it) being read.
pub struct BlobRead {
    /// Its whole size.
    pub size: u64,
    /// The bytes of the range asked for.
    pub range: Range<u64>,
    /// The bytes, in chunks.
    pub chunks: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The store's errors in the contract's terms: a missing blob is 404;
/// anything else means the store cannot be reached or refused the write,
/// a 503 to retry (nothing was recorded).
fn unavailable(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound("no such file".into()),
        other => Error::StorageUnavailable(std::sync::Arc::new(other)),
    }
}

impl Blobs {
    /// The store the configuration names.
    pub fn open(store: &FileStore) -> Result<Self> {
        match store {
            FileStore::Local { root } => Self::local(root),
            FileStore::S3(s3) => Self::s3(s3),
        }
    }

    /// An S3-compatible bucket (nothing is sent until the first use).
    pub fn s3(s3: &S3Store) -> Result<Self> {
        wechat_miniapp::ensure_tls_provider();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_access_key_id(&s3.access_key)
            .with_secret_access_key(s3.secret_key.expose())
            .with_virtual_hosted_style_request(s3.virtual_hosted)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_allow_http(true),
            )
            // A few quick retries, then a 503 for the client to retry: a
            // request should not hang for the crate's default 3 minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let bucket = builder
            .build()
            .map_err(|e| Error::internal_from("opening the S3 bucket", e))?;
        let store: Arc<dyn ObjectStore> = if s3.prefix.is_empty() {
            Arc::new(bucket)
        } else {
            Arc::new(PrefixStore::new(bucket, s3.prefix.as_str()))
        };
        Ok(Self {
            store,
            folder: None,
        })
    }

    /// A folder on the local disk (created, readable by its owner only).
    pub fn local(root: &Path) -> Result<Self> {
        crate::private_files::create_dir_all(root).map_err(|e| {
            Error::internal_from(format!("creating the file folder {}", root.display()), e)
        })?;
        let store = LocalFileSystem::new_with_prefix(root).map_err(|e| {
            Error::internal_from(format!("opening the file folder {}", root.display()), e)
        })?;
        Ok(Self {
            store: Arc::new(store),
            folder: Some(root.to_path_buf()),
        })
    }

    /// Every blob the store holds, in pages as the store lists them.
    pub fn list(&self) -> BoxStream<'static, Result<BlobEntry>> {
        self.store
            .list(None)
            .map_ok(|meta| BlobEntry {
                key: meta.location.to_string(),
                modified: meta.last_modified.into(),
            })
            .map_err(unavailable)
            .boxed()
    }

    /// Removes the local store's half-written files (`<key>#<n>`, left by
    /// a process that stopped mid-upload) last touched before `before`;
    /// how many. Nothing to do for an object store.
    pub async fn remove_stale_partials(&self, before: SystemTime) -> usize {
        let Some(folder) = self.folder.clone() else {
            return 0;
        };
        // A folder of many files: listed on the blocking pool, and only the
        // partial files' times are read.
        tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(folder) else {
                return 0;
            };
            let mut removed = 0;
            for entry in entries.filter_map(std::result::Result::ok) {
                if !entry.file_name().to_string_lossy().contains('#') {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < before);
                if stale && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            removed
        })
        .await
        .unwrap_or(0)
    }

    /// Starts writing the blob `key`.
    pub async fn create(&self, key: &str) -> Result<BlobWriter> {
        let upload = self
            .store
            .put_multipart(&Key::from(key))
            .await
            .map_err(unavailable)?;
        let upload = if self.folder.is_some() {
            WriteMultipart::new_with_chunk_size(upload, LOCAL_PART_BYTES)
        } else {
            WriteMultipart::new(upload)
        };
        Ok(BlobWriter { upload })
    }

    /// Reads `key`, or the bytes `range` of it (clamped to its end).
    pub async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobRead> {
        if let Some(folder) = &self.folder
            && is_plain_key(key)
        {
            return read_local(folder.join(key), range).await;
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&Key::from(key), options)
            .await
            .map_err(unavailable)?;
        let size = got.meta.size;
        let range = got.range.clone();
        let chunks = match got.payload {
            GetResultPayload::File(file, _) => file_chunks(file, range.clone()),
            GetResultPayload::Stream(stream) => stream.map_err(unavailable).boxed(),
        };
        Ok(BlobRead {
            size,
            range,
            chunks,
        })
    }

    /// Deletes `key`; a blob already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Whether `key` is stored by the local store under its own name (file
/// ids are UUIDs; anything else goes through the crate's path rules).
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Reads at most [`LOCAL_READ_BYTES`] of `file` from `at`, stopping at
/// `end` (blocking: called on the blocking pool).
fn read_at(file: &mut std::fs::File, at: u64, end: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    let want = end.saturating_sub(at).min(LOCAL_READ_BYTES);
    let mut chunk = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    file.take(want).read_to_end(&mut chunk)?;
    Ok(chunk)
}

/// A local file's bytes `range`: opened, measured and its first
/// [`LOCAL_READ_BYTES`] read in one hand-off to the blocking pool (a small
/// image is then one), the rest as it is polled.
async fn read_local(path: PathBuf, range: Option<Range<u64>>) -> Result<BlobRead> {
    let opened = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        let range = match range {
            Some(r) => r.start.min(size)..r.end.min(size),
            None => 0..size,
        };
        let first = read_at(&mut file, range.start, range.end)?;
        Ok::<_, std::io::Error>((file, size, range, first))
    })
    .await
    .map_err(|e| Error::internal_from("reading a file", e))?;
    let (file, size, range, first) = match opened {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound("no such file".into()));
        }
        Err(e) => return Err(Error::StorageUnavailable(std::sync::Arc::new(e))),
    };
    let next = range.start + first.len() as u64;
    let head = futures_util::stream::iter((!first.is_empty()).then(|| Ok(Bytes::from(first))));
    Ok(BlobRead {
        size,
        range: range.clone(),
        chunks: head.chain(file_chunks(file, next..range.end)).boxed(),
    })
}

/// The bytes `range` of a local file, [`LOCAL_READ_BYTES`] a read on the
/// blocking pool.
fn file_chunks(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, Result<Bytes>> {
    let read_error = |e: std::io::Error| Error::StorageUnavailable(std::sync::Arc::new(e));
    futures_util::stream::try_unfold(
        (Some(file), range.start, range.end),
        move |(file, at, end)| async move {
            let Some(mut file) = file else {
                return Ok(None);
            };
            if at >= end {
                return Ok(None);
            }
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                let chunk = read_at(&mut file, at, end)?;
                Ok::<_, std::io::Error>((file, chunk))
            })
            .await
            .map_err(|e| Error::internal_from("reading a file", e))?
            .map_err(read_error)?;
            if chunk.is_empty() {
                return Err(read_error(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than its size",
                )));
            }
            let next = at + chunk.len() as u64;
            Ok(Some((Bytes::from(chunk), (Some(file), next, end))))
        },
    )
    .boxed()
}

impl BlobWriter {
    /// Adds `bytes`, waiting while too many parts are in flight.
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        self.upload
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(unavailable)?;
        self.upload.put(bytes);
        Ok(())
    }

    /// Completes the blob: it is visible under its key from now on.
    pub async fn finish(self) -> Result<()> {
        self.upload.finish().await.map_err(unavailable)?;
        Ok(())
    }

    /// Gives the blob up: nothing of it stays.
    pub async fn abort(self) {
        let _ = self.upload.abort().await;
    }
}
