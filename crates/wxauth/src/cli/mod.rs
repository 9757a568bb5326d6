//! The operator's commands (part of the `wxauth` binary, not the library), a
//! file per command group: `admin` (users, documents, service keys), `keys`
//! (rotate, reseal), `backup` (backup, restore), `import` (other platforms' exports);
//! `progress` draws progress.
//! This file holds what they share.
//!
//! They act on the same database, with the same keys, as `serve` (read
//! from the same configuration), so they need no service key; what they do
//! to the database is in the audit log as `cli:<login name>`. Every
//! command prints plain text, or with `--json` one JSON document on stdout
//! for scripts; long ones show progress on stderr (a bar on a terminal,
//! plain lines otherwise).

mod admin;
mod backup;
mod import;
mod keys;
mod progress;

pub use admin::{AdminCommand, admin};
pub use backup::{BackupArgs, RestoreArgs, backup, restore};
pub use import::{ImportCommand, import};
pub use keys::{KeysCommand, keys};
use progress::Progress;

use crate::ConfigArgs;
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::{Args, Subcommand};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Digest;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wxauth::admin::{AuditRecord, UserSummary};
use wxauth::auth::FindBy;
use wxauth::config::Config;
use wxauth::vocab::{Actor, ServiceScope, Target};
use wxauth::{Deps, Rules, open_rules};

/// Options every operator command takes.
#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Who the audit log names for this command.
pub(super) fn actor() -> Actor {
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Actor::Cli(name)
}

pub(super) fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    Ok(Config::load(args.config.as_deref())?)
}

pub(super) async fn services(common: &Common) -> anyhow::Result<Rules> {
    let settings = load_config(&common.config)?.resolve()?;
    Ok(open_rules(&settings, Deps::default()).await?)
}

/// Prints `value` as JSON, or `text` (when not --json).
pub(super) fn emit(
    json: bool,
    value: &impl Serialize,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", text())?;
    }
    Ok(())
}

/// Runs `work` on the services, records the command in the audit log
/// (with its outcome), and closes the store.
pub(super) async fn audited<T>(
    s: &Rules,
    action: &str,
    target: Option<Target>,
    work: impl std::future::Future<Output = wxauth::Result<(T, Value)>>,
) -> anyhow::Result<T> {
    let result = work.await;
    let (status, detail) = match &result {
        Ok((_, detail)) => (200, detail.clone()),
        Err(e) => (
            wxauth::http::status_of(e),
            json!({ "error": wxauth::http::error_code(e) }),
        ),
    };
    let record = AuditRecord::new(actor(), action, target)
        .status(status)
        .detail(detail);
    s.admin().record(record).await?;
    Ok(result.map(|(v, _)| v)?)
}

pub(super) fn random_bytes() -> [u8; 32] {
    rand::rng().random()
}

/// The configuration file a command edits (it must be named).
pub(super) fn config_file(args: &ConfigArgs) -> anyhow::Result<&Path> {
    args.config.as_deref().context(
        "name the configuration file with --config FILE (or WXAUTH_CONFIG): this command edits it",
    )
}

pub(super) fn read_toml(path: &Path) -> anyhow::Result<toml_edit::DocumentMut> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.parse::<toml_edit::DocumentMut>()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

/// Writes `doc` to `path` atomically (a temporary file beside it, then a
/// rename), keeping the file's permissions, after checking the result is
/// a configuration wxauth accepts.
///
/// The temporary file is created 0600. A configuration that holds a key or
/// secret inline stays 0600 (returns true: the caller says so); any other
/// keeps the mode the file had.
pub(super) fn write_toml(path: &Path, doc: &toml_edit::DocumentMut) -> anyhow::Result<bool> {
    use std::io::Write;
    let text = doc.to_string();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    {
        let mut file = wxauth::private_files::create_new(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    let config = match Config::load(Some(&tmp)) {
        Ok(config) => config,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "the edited configuration would not load ({e}); {} is unchanged",
                path.display()
            );
        }
    };
    let private = config.holds_inline_secrets();
    if !private && let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(private)
}
