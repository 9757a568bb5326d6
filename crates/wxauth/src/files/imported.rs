//! Files another platform kept, brought in by `wxauth import --fetch-files`:
//! stored under an id derived from their old one (a re-run finds them and
//! fetches nothing twice), owned by the imported user, typed from their
//! bytes like any upload (an image, else an attachment).

use std::collections::HashMap;

use super::{FileView, Files, Kept, Purpose, Upload, clean_filename, sniff};
use crate::error::{Error, Result};

/// A file being imported.
#[derive(Debug, Clone)]
pub struct ImportedFile {
    /// Its id here (derived from the old one).
    pub id: String,
    /// The owner's user id.
    pub owner: String,
    /// The owner's app.
    pub appid: String,
    /// The name it had.
    pub filename: Option<String>,
    /// Whether its URL needs no signature.
    pub public: bool,
    /// When it was first stored (Unix ms).
    pub created_at: i64,
}

impl Files {
    /// Starts writing the bytes of `file` (the quota is checked when its
    /// row is stored: an import fetches files of many users).
    pub async fn begin_import(&self, file: &ImportedFile) -> Result<Upload> {
        let writer = self.blobs.create(&file.id).await?;
        Ok(Upload::new(
            file.id.clone(),
            file.owner.clone(),
            file.appid.clone(),
            writer,
            self.limits.max_bytes,
        ))
    }

    /// Stores an imported file once its bytes are in: an image when its
    /// bytes are one, else an attachment. With `quota` false the owner's
    /// byte quota is not applied (`--ignore-limits`). On any refusal
    /// nothing stays.
    pub async fn finish_import(
        &self,
        upload: Upload,
        file: ImportedFile,
        quota: bool,
    ) -> Result<FileView> {
        if upload.size == 0 {
            upload.abort().await;
            return Err(Error::InvalidRequest("the file is empty".into()));
        }
        let (purpose, content_type) = match sniff::image_type(&upload.head) {
            Some(image) => (Purpose::Image, image),
            None => (Purpose::Attachment, "application/octet-stream"),
        };
        let kept = Kept {
            purpose,
            public: file.public,
            content_type,
            filename: clean_filename(file.filename.as_deref()),
            created_at: file.created_at,
            bytes_per_user: if quota {
                self.limits.bytes_per_user
            } else {
                u64::MAX
            },
        };
        self.keep(upload, kept).await
    }

    /// The files among `ids` that exist, by id.
    pub async fn existing(&self, ids: &[String]) -> Result<HashMap<String, FileView>> {
        let records = self.store.files_by_id(ids).await?;
        Ok(records
            .into_iter()
            .map(|r| (r.id.clone(), self.view(r)))
            .collect())
    }

    /// The URL a public file keeps (absolute when the server knows its
    /// address, else a path).
    pub fn public_url(&self, id: &str) -> String {
        format!("{}/v1/files/{id}/raw", self.base_url)
    }
}
