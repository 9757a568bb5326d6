//! Where uploaded files' bytes live: a folder on the local disk by default
//! (any S3-compatible object store is the next backend), through the
//! `object_store` crate (Apache Arrow's: one interface over local files
//! and S3, streaming multipart writes, ranged reads; used by DataFusion,
//! delta-rs and polars), so nothing of a store's protocol is written here.
//!
//! A blob is written in parts and appears under its key only when
//! finished (the local store writes a temporary file and renames it), so a
//! failed upload leaves nothing visible. The `files` room decides what is
//! stored; this room only persists bytes by key.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::error::{Error, Result};

/// Parts in flight while writing a blob (each up to 5 MiB).
const PARTS_IN_FLIGHT: usize = 2;

/// The file store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
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
        })
    }

    /// Starts writing the blob `key`.
    pub async fn create(&self, key: &str) -> Result<BlobWriter> {
        let upload = self
            .store
            .put_multipart(&Key::from(key))
            .await
            .map_err(unavailable)?;
        Ok(BlobWriter {
            upload: WriteMultipart::new(upload),
        })
    }

    /// Reads `key`, or the bytes `range` of it (clamped to its end).
    pub async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobRead> {
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
        Ok(BlobRead {
            size,
            range,
            chunks: got.into_stream().map_err(unavailable).boxed(),
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
