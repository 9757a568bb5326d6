//! `wxauth backup` and `wxauth restore` (SQLite).

use super::*;

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
    emit(
        a.common.json,
        &json!({ "file": a.file, "bytes": bytes, "schema_version": schema, "seconds": started.elapsed().as_secs_f64(), "integrity": "ok" }),
        || {
            format!(
                "backed up to {} ({bytes} bytes, schema version {schema}, integrity ok) in {:.1} s",
                a.file.display(),
                started.elapsed().as_secs_f64()
            )
        },
    )
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
    // Bring an older backup's schema up to date now, not at the next start.
    let store = wxauth::store::Store::open(config.database_url.expose()).await?;
    store.audit(restore_entry(&a.file)).await?;
    store.close().await;
    emit(
        a.common.json,
        &json!({ "restored": a.file, "database": db_path, "schema_version": schema, "kept": kept }),
        || {
            let mut text = format!(
                "restored {} into {} (schema version {schema}, now {latest})",
                a.file.display(),
                db_path.display()
            );
            if let Some(k) = &kept {
                text.push_str(&format!("; the database it replaced is {}", k.display()));
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
