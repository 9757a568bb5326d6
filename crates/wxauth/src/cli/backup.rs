//! `wxauth backup` and `wxauth restore` (SQLite), with the files' bytes
//! when they are in a local folder (`FILE.files/` beside the copy).

use super::*;
use wxauth::config::FileStore;

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    common: Common,
    /// Where to write the copy (must not exist).
    file: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    common: Common,
    /// A file made by `wxauth backup`.
    file: PathBuf,
    /// Replace an existing database (it is kept beside it as
    /// `<name>.before-restore-<unix time>`). Stop every `serve` first.
    #[arg(long)]
    force: bool,
}

/// The SQLite file a `sqlite://` URL names.
fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        bail!(
            "backup and restore copy SQLite databases; for PostgreSQL use pg_dump and pg_restore"
        );
    };
    Ok(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// `wxauth backup FILE`
pub async fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let config = load_config(&a.common.config)?;
    sqlite_path(config.database_url.expose())?;
    if a.file.exists() {
        bail!("{} exists: name a new file", a.file.display());
    }
    if let Some(dir) = a.file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        bail!(
            "cannot write the backup to {}: the folder {} does not exist",
            a.file.display(),
            dir.display()
        );
    }
    // The copy holds every user's data: made 0600 before SQLite writes a
    // byte into it (VACUUM INTO fills an empty file).
    wxauth::private_files::create_new(&a.file)
        .with_context(|| format!("cannot create {}", a.file.display()))?;
    let target = a
        .file
        .to_str()
        .context("the backup file's name must be UTF-8")?
        .to_owned();
    let s = services(&a.common).await?;
    let started = Instant::now();
    let progress = Progress::spinner("copying the database");
    let done = audited(&s, "cli backup", None, async {
        s.store.backup_into(&target).await?;
        Ok(((), json!({})))
    })
    .await;
    progress.finish();
    s.store.close().await;
    if done.is_err() {
        let _ = std::fs::remove_file(&a.file);
    }
    done.with_context(|| format!("cannot write the backup to {}", a.file.display()))?;
    // The copy is checked before it is called a backup.
    let copy = wxauth::store::Store::connect(&format!("sqlite://{target}?mode=ro")).await?;
    let integrity = copy.integrity_check().await;
    let versions = copy.schema_versions().await;
    copy.close().await;
    let integrity = integrity?;
    if integrity != "ok" {
        bail!("the copy failed PRAGMA integrity_check: {integrity}");
    }
    let (schema, _) = versions?;
    let bytes = std::fs::metadata(&a.file)?.len();
    let files = match config.resolve()?.files.store {
        FileStore::Local { root } => {
            let progress = Progress::spinner("copying the files");
            let copied = copy_files(&target, &root, &files_folder(&a.file)).await;
            progress.finish();
            copied?
        }
        FileStore::S3(s3) => FilesBackup::InBucket {
            bucket: format!("s3://{}/{}", s3.bucket, s3.prefix),
        },
    };
    emit(
        a.common.json,
        &json!({ "file": a.file, "bytes": bytes, "schema_version": schema, "seconds": started.elapsed().as_secs_f64(), "integrity": "ok", "files": files }),
        || {
            format!(
                "backed up to {} ({bytes} bytes, schema version {schema}, integrity ok) in {:.1} s; {}",
                a.file.display(),
                started.elapsed().as_secs_f64(),
                files.describe()
            )
        },
    )
}

/// Where a backup keeps the bytes of a local file store: `FILE.files/`.
fn files_folder(backup: &Path) -> PathBuf {
    PathBuf::from(format!("{}.files", backup.display()))
}

/// What a backup did with the files' bytes.
#[derive(Serialize)]
#[serde(tag = "store", rename_all = "snake_case")]
enum FilesBackup {
    /// Copied from the local folder.
    Folder {
        folder: PathBuf,
        copied: u64,
        bytes: u64,
        /// Files in the copied database whose bytes were deleted before
        /// they could be copied (deleted during the backup).
        gone: u64,
    },
    /// Left in the object store (backed up there: versioning, replication).
    InBucket { bucket: String },
}

impl FilesBackup {
    fn describe(&self) -> String {
        match self {
            Self::Folder {
                folder,
                copied,
                bytes,
                gone,
            } => {
                let mut text = format!(
                    "{copied} files ({bytes} bytes) copied to {}",
                    folder.display()
                );
                if *gone > 0 {
                    text.push_str(&format!(" ({gone} deleted during the backup: not copied)"));
                }
                text
            }
            Self::InBucket { bucket } => format!(
                "the files stay in {bucket}: back the bucket up with its own tools (docs/operations.md)"
            ),
        }
    }
}

/// Copies the bytes of every file the database copy at `db` knows from
/// `root` into `to` (0700, each file 0600). Files are never changed once
/// written, only deleted, so the copy of each is whole, and the set is the
/// database copy's.
async fn copy_files(db: &str, root: &Path, to: &Path) -> anyhow::Result<FilesBackup> {
    wxauth::private_files::create_dir_all(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let copy = wxauth::store::Store::connect(&format!("sqlite://{db}?mode=ro")).await?;
    let (mut copied, mut bytes, mut gone) = (0u64, 0u64, 0u64);
    let mut after = String::new();
    let result = async {
        loop {
            let ids = copy.file_ids_after(&after, 500).await?;
            let Some(last) = ids.last() else {
                return anyhow::Ok(());
            };
            after = last.clone();
            for id in ids {
                match copy_private(&root.join(&id), &to.join(&id)) {
                    Ok(n) => {
                        bytes += n;
                        copied += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone += 1,
                    Err(e) => return Err(e).with_context(|| format!("cannot copy file {id}")),
                }
            }
        }
    }
    .await;
    copy.close().await;
    result?;
    Ok(FilesBackup::Folder {
        folder: to.to_path_buf(),
        copied,
        bytes,
        gone,
    })
}

/// Copies `from` to a new file `to`, readable by its owner only, synced;
/// its bytes. `from` missing is `NotFound` (nothing is created then).
fn copy_private(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut input = std::fs::File::open(from)?;
    let mut output = wxauth::private_files::create_new(to)?;
    let bytes = std::io::copy(&mut input, &mut output)?;
    output.sync_all()?;
    Ok(bytes)
}

/// Puts a backup's files (`FILE.files/`) back into the local folder
/// `root`: those missing there; how many.
fn restore_files(from: &Path, root: &Path) -> anyhow::Result<u64> {
    wxauth::private_files::create_dir_all(root)
        .with_context(|| format!("cannot create {}", root.display()))?;
    let mut restored = 0;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = root.join(entry.file_name());
        if target.exists() {
            continue;
        }
        copy_private(&entry.path(), &target).with_context(|| {
            format!(
                "cannot copy {} to {}",
                entry.path().display(),
                target.display()
            )
        })?;
        restored += 1;
    }
    Ok(restored)
}

/// `wxauth restore FILE`
pub async fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let config = load_config(&a.common.config)?;
    let db_path = sqlite_path(config.database_url.expose())?;
    let source = a
        .file
        .to_str()
        .context("the backup file's name must be UTF-8")?;
    if !a.file.is_file() {
        bail!("{} is not a file", a.file.display());
    }
    // Check the backup before touching anything.
    let backup = wxauth::store::Store::connect(&format!("sqlite://{source}?mode=ro")).await?;
    let integrity = backup.integrity_check().await;
    let versions = backup.schema_versions().await;
    backup.close().await;
    let integrity = integrity.context("the file is not a SQLite database")?;
    if integrity != "ok" {
        bail!(
            "{} failed PRAGMA integrity_check: {integrity}",
            a.file.display()
        );
    }
    let (schema, latest) = versions?;
    if schema > latest {
        bail!(
            "{} holds schema version {schema}, newer than this wxauth knows ({latest}): restore it with the wxauth that made it",
            a.file.display()
        );
    }
    // Nobody may hold the database while it is replaced: a `serve` still
    // writing to the file moved aside would lose every write after it.
    // Held until the new file is in place.
    let hold = wxauth::store::hold::take(&db_path)?;
    let mut kept = None;
    if db_path.exists() {
        if !a.force {
            bail!(
                "{} exists: pass --force to replace it (it is kept beside it)",
                db_path.display()
            );
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = PathBuf::from(format!("{}.before-restore-{stamp}", db_path.display()));
        std::fs::rename(&db_path, &aside).with_context(|| {
            format!(
                "cannot move {} aside to {}",
                db_path.display(),
                aside.display()
            )
        })?;
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", db_path.display()));
            if side.exists() {
                std::fs::rename(&side, format!("{}{suffix}", aside.display()))?;
            }
        }
        kept = Some(aside);
    }
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        wxauth::private_files::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = PathBuf::from(format!("{}.restoring", db_path.display()));
    let _ = std::fs::remove_file(&tmp);
    {
        let mut from = std::fs::File::open(&a.file)
            .with_context(|| format!("cannot read {}", a.file.display()))?;
        let mut to = wxauth::private_files::create_new(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        std::io::copy(&mut from, &mut to)
            .with_context(|| format!("cannot copy {} to {}", a.file.display(), tmp.display()))?;
        to.sync_all()?;
    }
    std::fs::rename(&tmp, &db_path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), db_path.display()))?;
    drop(hold);
    let saved_files = files_folder(&a.file);
    let files_restored = if saved_files.is_dir() {
        match config.resolve()?.files.store {
            FileStore::Local { root } => Some(restore_files(&saved_files, &root)?),
            FileStore::S3(_) => None,
        }
    } else {
        None
    };
    // Bring an older backup's schema up to date now, not at the next start.
    let store = wxauth::store::Store::open(config.database_url.expose()).await?;
    store.audit(restore_entry(&a.file)).await?;
    store.close().await;
    emit(
        a.common.json,
        &json!({ "restored": a.file, "database": db_path, "schema_version": schema, "kept": kept, "files_restored": files_restored }),
        || {
            let mut text = format!(
                "restored {} into {} (schema version {schema}, now {latest})",
                a.file.display(),
                db_path.display()
            );
            if let Some(k) = &kept {
                text.push_str(&format!("; the database it replaced is {}", k.display()));
            }
            if let Some(n) = files_restored {
                text.push_str(&format!(
                    "; {n} files put back from {}",
                    saved_files.display()
                ));
            }
            text
        },
    )
}

/// The audit entry of a restore, written without the services (a restore
/// replaces the database they would open).
fn restore_entry(file: &Path) -> wxauth::store::NewAuditEntry {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0);
    AuditRecord::new(actor(), "cli restore", None)
        .detail(json!({ "file": file.file_name().map(|f| f.to_string_lossy().into_owned()) }))
        .into_entry(now)
}
