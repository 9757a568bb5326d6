//! The operator's commands (part of the `wxauth` binary, not the library):
//! `wxauth admin …`, `wxauth keys …`, `wxauth backup`, `wxauth restore`.
//!
//! They act on the same database, with the same keys, as `serve` (read
//! from the same configuration), so they need no service key; what they do
//! to the database is in the audit log as `cli:<login name>`. Every
//! command prints plain text, or with `--json` one JSON document on stdout
//! for scripts; long ones show progress on stderr (a bar on a terminal,
//! plain lines otherwise).

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::{Args, Subcommand};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Digest;
use wxauth::auth::FindBy;
use wxauth::config::{Config, SERVICE_SCOPES};
use wxauth::ops::{self, UserSummary};
use wxauth::{Deps, Services, open_services};

use crate::ConfigArgs;

/// Options every operator command takes.
#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// `wxauth admin …`
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Find, show, sign out, export or delete a user.
    #[command(subcommand)]
    User(UserCommand),
    /// Service keys (for the admin API and introspection).
    #[command(subcommand)]
    Keys(AdminKeysCommand),
    /// Write a document as the server, owned by a user, in any collection
    /// (`admin_write` ones included). Prints the stored document as JSON.
    DataAdd(DataAddArgs),
}

/// `wxauth admin user …`
#[derive(Subcommand)]
pub enum UserCommand {
    /// Find users of an app by openid, unionid or phone number.
    Find(FindArgs),
    /// A user, their phone, sessions, last login and document count.
    Show(UserArgs),
    /// End every session of the user, on every instance.
    Revoke(UserArgs),
    /// Everything held about the user, as one JSON file.
    Export(ExportArgs),
    /// Delete the user and every row about them (asks to type the id
    /// unless --yes).
    Delete(DeleteArgs),
}

/// `wxauth admin keys …`
#[derive(Subcommand)]
pub enum AdminKeysCommand {
    /// Make a new service key: prints it once, adds its SHA-256 to the
    /// configuration file (`[[service_keys]]`).
    CreateServiceKey(CreateKeyArgs),
}

/// `wxauth keys …`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Add a new signing or encryption key to the configuration file as
    /// the current one; the old ones keep verifying tokens or opening
    /// sealed values.
    Rotate(RotateArgs),
    /// Re-encrypt every sealed session_key and phone number with the
    /// current encryption key (resumable: run it again after an interruption).
    Reseal(Common),
}

#[derive(Args)]
pub struct UserArgs {
    #[command(flatten)]
    common: Common,
    /// The user id.
    user_id: String,
}

#[derive(Args)]
pub struct FindArgs {
    #[command(flatten)]
    common: Common,
    /// The app (may be left out when one is configured).
    #[arg(long)]
    appid: Option<String>,
    /// WeChat's per-app user id.
    #[arg(long, group = "by")]
    openid: Option<String>,
    /// WeChat's cross-app user id.
    #[arg(long, group = "by")]
    unionid: Option<String>,
    /// The phone number without its country code.
    #[arg(long, group = "by")]
    phone: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    user: UserArgs,
    /// Write the export here instead of to stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    user: UserArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
pub struct DataAddArgs {
    #[command(flatten)]
    common: Common,
    /// The collection.
    collection: String,
    /// The owning user's id (the document is shown with this `owner`; the
    /// user's app is the one whose users read it).
    #[arg(long)]
    owner: String,
    /// The document, a JSON object; `-` reads it from stdin.
    json_document: String,
}

#[derive(Args)]
pub struct CreateKeyArgs {
    #[command(flatten)]
    common: Common,
    /// The key's id (in logs and the audit log).
    #[arg(long)]
    id: String,
    /// A scope (repeat for several): introspect, users:read, users:write,
    /// sessions:revoke, data:read, data:write, audit:read.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
}

/// Which key to rotate.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeyKind {
    /// `tokens.signing_keys`: access tokens.
    Signing,
    /// `encryption.keys`: session_keys and phone numbers at rest.
    Encryption,
}

#[derive(Args)]
pub struct RotateArgs {
    #[command(flatten)]
    common: Common,
    /// Which key.
    kind: KeyKind,
    /// Keep the new key out of the file: write `key_env = VAR` and print
    /// the key once, for the operator to put in the environment.
    #[arg(long, value_name = "VAR")]
    env: Option<String>,
    /// Add the new key last (verifying or opening only), to be made current
    /// later with --promote: with several instances, every instance then
    /// knows a key before any uses it.
    #[arg(long, conflicts_with = "promote")]
    stage: bool,
    /// Make an existing key (by id) the current one.
    #[arg(long, value_name = "ID")]
    promote: Option<String>,
}

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

/// Who the audit log names for this command.
fn actor() -> String {
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{name}")
}

fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    Ok(Config::load(args.config.as_deref())?)
}

async fn services(common: &Common) -> anyhow::Result<Services> {
    let settings = load_config(&common.config)?.resolve()?;
    Ok(open_services(&settings, Deps::default()).await?)
}

/// Prints `value` as JSON, or `text` (when not --json).
fn emit(json: bool, value: &impl Serialize, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", text())?;
    }
    Ok(())
}

/// Progress on stderr: a bar on a terminal, otherwise a plain line at most
/// every two seconds (and at the end).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    last_line: Instant,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} ({eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what);
            bar
        });
        Self {
            bar,
            what,
            last_line: Instant::now(),
        }
    }

    fn spinner(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("{what}…");
        }
        Self {
            bar,
            what,
            last_line: Instant::now(),
        }
    }

    fn set(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(2) || done >= total {
                    eprintln!("{}: {done}/{total}", self.what);
                    self.last_line = Instant::now();
                }
            }
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs `work` on the services, records the command in the audit log
/// (with its outcome), and closes the store.
async fn audited<T>(
    s: &Services,
    action: &str,
    target: Option<String>,
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
    let entry = ops::audit_entry(&s.auth, &actor(), action, target, status, detail);
    s.auth.audit(entry).await?;
    Ok(result.map(|(v, _)| v)?)
}

/// `wxauth admin …`
pub async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::User(c) => user(c).await,
        AdminCommand::Keys(AdminKeysCommand::CreateServiceKey(a)) => create_service_key(a),
        AdminCommand::DataAdd(a) => data_add(a).await,
    }
}

async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Find(a) => {
            let by = match (a.openid, a.unionid, a.phone) {
                (Some(v), None, None) => FindBy::Openid(v),
                (None, Some(v), None) => FindBy::Unionid(v),
                (None, None, Some(v)) => FindBy::Phone(v),
                _ => bail!("give one of --openid, --unionid or --phone"),
            };
            let s = services(&a.common).await?;
            let found = audited(&s, "cli user find", None, async {
                let found = s.auth.find_users(a.appid.as_deref(), &by).await?;
                let n = found.len();
                Ok((found, json!({ "by": by.key(), "found": n })))
            })
            .await;
            s.store.close().await;
            let users: Vec<UserSummary> = found?.into_iter().map(UserSummary::from).collect();
            emit(a.common.json, &json!({ "items": users }), || {
                if users.is_empty() {
                    return "no user found".into();
                }
                users
                    .iter()
                    .map(|u| {
                        format!(
                            "{}  app {}  openid {}  phone {}",
                            u.id,
                            u.appid,
                            u.openid,
                            u.phone
                                .as_ref()
                                .map_or("-", |p| p.pure_phone_number.as_str())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        UserCommand::Show(a) => {
            let s = services(&a.common).await?;
            let target = Some(format!("user:{}", a.user_id));
            let account = audited(&s, "cli user show", target, async {
                Ok((ops::account(&s.auth, &s.data, &a.user_id).await?, json!({})))
            })
            .await;
            s.store.close().await;
            let account = account?;
            emit(a.common.json, &account, || {
                let u = &account.user;
                let mut text = format!(
                    "user        {}\napp         {}\nopenid      {}\nunionid     {}\nphone       {}\ncreated     {}\nlast login  {}\ndocuments   {}\nsessions    {} active of {}",
                    u.id,
                    u.appid,
                    u.openid,
                    u.unionid.as_deref().unwrap_or("-"),
                    u.phone.as_ref().map_or("-", |p| p.phone_number.as_str()),
                    u.created_at,
                    account.last_login_at,
                    account.documents,
                    account.active_sessions,
                    account.sessions.len()
                );
                for session in &account.sessions {
                    text.push_str(&format!(
                        "\n  {}  opened {}  {}",
                        session.id,
                        session.created_at,
                        if session.active {
                            "active".to_owned()
                        } else {
                            format!(
                                "ended {}",
                                session.revoked_reason.as_deref().unwrap_or("(expired)")
                            )
                        }
                    ));
                }
                text
            })
        }
        UserCommand::Revoke(a) => {
            let s = services(&a.common).await?;
            let target = Some(format!("user:{}", a.user_id));
            let ended = audited(&s, "cli user revoke", target, async {
                let n = s.auth.revoke_user(&a.user_id).await?;
                Ok((n, json!({ "sessions_ended": n })))
            })
            .await;
            s.store.close().await;
            let ended = ended?;
            emit(
                a.common.json,
                &json!({ "user_id": a.user_id, "sessions_ended": ended }),
                || format!("ended {ended} session(s) of {}", a.user_id),
            )
        }
        UserCommand::Export(a) => export(a).await,
        UserCommand::Delete(a) => delete(a).await,
    }
}

async fn export(a: ExportArgs) -> anyhow::Result<()> {
    let s = services(&a.user.common).await?;
    let target = Some(format!("user:{}", a.user.user_id));
    // Personal data: readable by the operator only, from the first byte.
    let file = match &a.output {
        Some(path) => Some(
            wxauth::private_files::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };
    let written = audited(&s, "cli user export", target, async {
        let mut export = ops::export_stream(&s.auth, &s.data, &a.user.user_id).await?;
        let total = export.document_count;
        let mut progress = file.is_some().then(|| Progress::new("documents", total));
        let mut out: Box<dyn std::io::Write> = match &file {
            Some(f) => Box::new(std::io::BufWriter::new(f)),
            None => Box::new(std::io::stdout().lock()),
        };
        while let Some(chunk) = export.chunks.recv().await {
            out.write_all(&chunk?)
                .map_err(|e| wxauth::Error::internal_from("writing the export", e))?;
            if let Some(p) = &mut progress {
                p.set(
                    export.written.load(std::sync::atomic::Ordering::Relaxed),
                    total,
                );
            }
        }
        out.flush()
            .map_err(|e| wxauth::Error::internal_from("writing the export", e))?;
        if let Some(p) = progress {
            p.finish();
        }
        Ok((total, json!({ "documents": total })))
    })
    .await;
    s.store.close().await;
    let count = written?;
    if let Some(path) = &a.output {
        emit(
            a.user.common.json,
            &json!({ "user_id": a.user.user_id, "documents": count, "file": path }),
            || format!("wrote {} ({count} documents)", path.display()),
        )?;
    }
    Ok(())
}

async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let id = &a.user.user_id;
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("deleting a user cannot be undone: pass --yes to confirm");
        }
        eprint!(
            "This deletes user {id} and everything held about them. Type the user id to confirm: "
        );
        let mut typed = String::new();
        std::io::stdin().read_line(&mut typed)?;
        if typed.trim() != id {
            bail!("not confirmed; nothing was deleted");
        }
    }
    let s = services(&a.user.common).await?;
    let deleted = ops::delete_user(&s.auth, &actor(), "cli user delete", id).await;
    if let Err(e) = &deleted {
        // Deletions that happen are audited in their own commit; a failed
        // one is recorded here.
        let entry = ops::audit_entry(
            &s.auth,
            &actor(),
            "cli user delete",
            Some(format!("user:{id}")),
            wxauth::http::status_of(e),
            json!({ "error": wxauth::http::error_code(e) }),
        );
        s.auth.audit(entry).await?;
    }
    s.store.close().await;
    deleted?;
    emit(a.user.common.json, &json!({ "deleted": id }), || {
        format!("deleted user {id}")
    })
}

async fn data_add(a: DataAddArgs) -> anyhow::Result<()> {
    let text = if a.json_document == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        a.json_document.clone()
    };
    let body: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the document is not valid JSON: {e}"))?;
    let s = services(&a.common).await?;
    let created = audited(&s, "cli admin data-add", None, async {
        let created = s.data.admin_create(&a.owner, &a.collection, body).await?;
        let detail =
            json!({ "collection": a.collection, "id": created.document.id, "owner": a.owner });
        Ok((created, detail))
    })
    .await;
    s.store.close().await;
    let doc = created?.document;
    let data: Value = serde_json::from_str(&doc.data)?;
    let out = json!({ "id": doc.id, "version": doc.version, "owner": a.owner, "data": data });
    // Always JSON (the document is JSON); --json only makes it pretty.
    if a.common.json {
        emit(true, &out, String::new)
    } else {
        emit(false, &out, || out.to_string())
    }
}

fn random_bytes() -> [u8; 32] {
    rand::rng().random()
}

/// The configuration file a command edits (it must be named).
fn config_file(args: &ConfigArgs) -> anyhow::Result<&Path> {
    args.config.as_deref().context(
        "name the configuration file with --config FILE (or WXAUTH_CONFIG): this command edits it",
    )
}

fn read_toml(path: &Path) -> anyhow::Result<toml_edit::DocumentMut> {
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
fn write_toml(path: &Path, doc: &toml_edit::DocumentMut) -> anyhow::Result<bool> {
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

fn create_service_key(a: CreateKeyArgs) -> anyhow::Result<()> {
    for scope in &a.scopes {
        if !SERVICE_SCOPES.contains(&scope.as_str()) {
            bail!(
                "unknown scope {scope:?}: one of {}",
                SERVICE_SCOPES.join(", ")
            );
        }
    }
    if a.id.is_empty() || a.id.len() > 64 {
        bail!("--id must be 1 to 64 characters");
    }
    let key = format!("wxs_{}", URL_SAFE_NO_PAD.encode(random_bytes()));
    let sha256 = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let written_to = match a.common.config.config.as_deref() {
        Some(path) => {
            let mut doc = read_toml(path)?;
            let keys = doc
                .entry("service_keys")
                .or_insert(toml_edit::Item::ArrayOfTables(
                    toml_edit::ArrayOfTables::new(),
                ));
            let Some(keys) = keys.as_array_of_tables_mut() else {
                bail!(
                    "service_keys in {} is not written as [[service_keys]] tables",
                    path.display()
                );
            };
            if keys
                .iter()
                .any(|t| t.get("id").and_then(|v| v.as_str()) == Some(a.id.as_str()))
            {
                bail!("a service key with id {:?} is already configured", a.id);
            }
            let mut table = toml_edit::Table::new();
            table.insert("id", toml_edit::value(a.id.clone()));
            table.insert("sha256", toml_edit::value(sha256.clone()));
            let mut scopes = toml_edit::Array::new();
            for s in &a.scopes {
                scopes.push(s.as_str());
            }
            table.insert("scopes", toml_edit::value(scopes));
            keys.push(table);
            let _private = write_toml(path, &doc)?;
            Some(path.to_path_buf())
        }
        None => None,
    };
    emit(
        a.common.json,
        &json!({ "id": a.id, "key": key, "sha256": sha256, "scopes": a.scopes, "written_to": written_to }),
        || {
            let mut text = format!(
                "service key {} (shown once; only its SHA-256 is kept):\n\n    {key}\n",
                a.id
            );
            match &written_to {
                Some(path) => text.push_str(&format!(
                    "\nadded to {} as [[service_keys]] id = {:?}; restart wxauth to use it.",
                    path.display(),
                    a.id
                )),
                None => text.push_str(&format!(
                    "\nadd to the configuration and restart wxauth:\n\n[[service_keys]]\nid = {:?}\nsha256 = \"{sha256}\"\nscopes = {:?}",
                    a.id, a.scopes
                )),
            }
            text
        },
    )
}

/// `wxauth keys …`
pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate(a) => rotate(a),
        KeysCommand::Reseal(common) => reseal(common).await,
    }
}

fn rotate(a: RotateArgs) -> anyhow::Result<()> {
    let path = config_file(&a.common.config)?;
    let mut doc = read_toml(path)?;
    let (section, name, what) = match a.kind {
        KeyKind::Signing => ("tokens", "signing_keys", "tokens.signing_keys"),
        KeyKind::Encryption => ("encryption", "keys", "encryption.keys"),
    };
    let list = doc
        .get_mut(section)
        .and_then(|s| s.get_mut(name))
        .with_context(|| {
            format!(
                "{} has no {what}: rotate edits the keys written in the file",
                path.display()
            )
        })?;
    let mut keys = KeyList::of(list)
        .with_context(|| format!("{what} in {} is not a list of keys", path.display()))?;
    let ids = keys.ids();
    let (id, message, key_out) = if let Some(id) = &a.promote {
        let Some(at) = ids.iter().position(|i| i == id) else {
            bail!("{what} has no key with id {id:?} (ids: {})", ids.join(", "));
        };
        keys.promote(at);
        (
            id.clone(),
            format!("key {id} is now the current one in {what}"),
            None,
        )
    } else {
        let id = match a.kind {
            KeyKind::Signing => {
                let base = format!("s{}", humantime_date());
                let mut id = base.clone();
                let mut n = 2;
                while ids.contains(&id) {
                    id = format!("{base}-{n}");
                    n += 1;
                }
                id
            }
            KeyKind::Encryption => {
                let next = ids
                    .iter()
                    .filter_map(|i| i.parse::<u16>().ok())
                    .max()
                    .unwrap_or(0)
                    + 1;
                if next > 255 {
                    bail!("encryption key ids go up to 255: remove retired keys first");
                }
                next.to_string()
            }
        };
        if let Some(var) = &a.env {
            if wxauth::config::env_name_is_a_setting(var) {
                bail!(
                    "--env {var}: every WXAUTH_ variable is read as a setting, so wxauth would refuse to start with it set; \
                     name the variable without that prefix (e.g. --env {})",
                    var.get(7..).unwrap_or("MY_KEY")
                );
            }
            if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                bail!("--env {var:?}: use a variable name of letters, digits and _");
            }
        }
        let secret = STANDARD.encode(random_bytes());
        let mut table = toml_edit::InlineTable::new();
        table.insert("id", id.as_str().into());
        match &a.env {
            Some(var) => {
                table.insert("key_env", var.as_str().into());
            }
            None => {
                table.insert("key", secret.as_str().into());
            }
        }
        keys.add(table, !a.stage);
        let role = if a.stage {
            "added last (it verifies and opens, but does not sign or seal yet: once every instance runs with it, make it current with --promote)"
        } else {
            "is now the current key"
        };
        (
            id.clone(),
            format!("new key {id} {role} in {what}"),
            a.env.as_ref().map(|var| (var.clone(), secret)),
        )
    };
    let private = write_toml(path, &doc)?;
    let next = match a.kind {
        KeyKind::Signing => {
            "Restart wxauth. Tokens signed with the older keys keep verifying while those keys stay listed; remove a leaked one at once (its users refresh), or a retired one after tokens.access_ttl_secs."
        }
        KeyKind::Encryption => {
            "Restart wxauth, then run `wxauth keys reseal` to re-encrypt every stored value with the current key; after that an older key can be removed."
        }
    };
    emit(
        a.common.json,
        &json!({
            "kind": match a.kind { KeyKind::Signing => "signing", KeyKind::Encryption => "encryption" },
            "id": id,
            "file": path,
            "env": key_out.as_ref().map(|(var, _)| var),
            "key": key_out.as_ref().map(|(_, k)| k),
            "file_private": private,
        }),
        || {
            let mut text = format!("{message} ({}).\n{next}", path.display());
            if private {
                text.push_str(&format!(
                    "\n{} holds a key inline, so it is readable by its owner only (0600); \
                     `--env VAR` keeps new keys out of the file.",
                    path.display()
                ));
            }
            if let Some((var, key)) = &key_out {
                text.push_str(&format!(
                    "\n\nSet this in the environment of every instance (shown once):\n\n    {var}={key}"
                ));
            }
            text
        },
    )
}

/// Today as YYYYMMDD (for signing key ids).
fn humantime_date() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now[..10].replace('-', "")
}

/// A key list in a TOML document, written as `[[…]]` tables or as an
/// inline array.
enum KeyList<'a> {
    Tables(&'a mut toml_edit::ArrayOfTables),
    Inline(&'a mut toml_edit::Array),
}

impl<'a> KeyList<'a> {
    fn of(item: &'a mut toml_edit::Item) -> Option<Self> {
        if item.is_array_of_tables() {
            return item.as_array_of_tables_mut().map(KeyList::Tables);
        }
        item.as_array_mut().map(KeyList::Inline)
    }

    fn ids(&self) -> Vec<String> {
        let id = |v: Option<&toml_edit::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
        match self {
            KeyList::Tables(t) => t
                .iter()
                .filter_map(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_owned))
                .collect(),
            KeyList::Inline(a) => a
                .iter()
                .filter_map(|v| id(v.as_inline_table().and_then(|t| t.get("id"))))
                .collect(),
        }
    }

    /// Adds `key` first (current) or last.
    fn add(&mut self, key: toml_edit::InlineTable, first: bool) {
        match self {
            KeyList::Tables(t) => {
                let table = key.into_table();
                t.push(table.clone());
                if first {
                    let mut order: Vec<toml_edit::Table> = t.iter().cloned().collect();
                    order.pop();
                    order.insert(0, table);
                    rewrite(t, order);
                }
            }
            KeyList::Inline(a) => {
                if first {
                    a.insert(0, key);
                } else {
                    a.push(key);
                }
                a.fmt();
            }
        }
    }

    fn promote(&mut self, at: usize) {
        match self {
            KeyList::Tables(t) => {
                let mut order: Vec<toml_edit::Table> = t.iter().cloned().collect();
                let table = order.remove(at);
                order.insert(0, table);
                rewrite(t, order);
            }
            KeyList::Inline(a) => {
                let v = a.remove(at);
                a.insert_formatted(0, v);
                a.fmt();
            }
        }
    }
}

/// Puts `order`'s entries into the `[[…]]` tables in turn. The tables
/// themselves stay where they are in the file (a table's place in the
/// text is its own, whatever its index in the array), so the contents move.
fn rewrite(tables: &mut toml_edit::ArrayOfTables, order: Vec<toml_edit::Table>) {
    for (slot, content) in tables.iter_mut().zip(order) {
        slot.clear();
        for (k, v) in content.iter() {
            slot.insert(k, v.clone());
        }
    }
}

async fn reseal(common: Common) -> anyhow::Result<()> {
    let s = services(&common).await?;
    let mut progress: Option<Progress> = None;
    let report = audited(&s, "cli keys reseal", None, async {
        let report = s
            .auth
            .reseal(|p| {
                progress
                    .get_or_insert_with(|| Progress::new("users", p.total))
                    .set(p.scanned, p.total.max(p.scanned));
            })
            .await?;
        let detail = json!({ "scanned": report.scanned, "resealed": report.resealed, "skipped": report.skipped });
        Ok((report, detail))
    })
    .await;
    if let Some(p) = progress {
        p.finish();
    }
    s.store.close().await;
    let report = report?;
    emit(
        common.json,
        &json!({
            "scanned": report.scanned,
            "resealed": report.resealed,
            "skipped": report.skipped,
            "complete": report.skipped == 0,
        }),
        || {
            let mut text = format!(
                "re-sealed {} of {} users with the current encryption key",
                report.resealed, report.scanned
            );
            if report.skipped == 0 {
                text.push_str(
                    "; every stored value is sealed with it now: older encryption keys can be removed from the configuration",
                );
            } else {
                text.push_str(&format!(
                    "; {} changed while being re-sealed (a login): run it again",
                    report.skipped
                ));
            }
            text
        },
    )
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
    wxauth::store::NewAuditEntry {
        at: i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
        )
        .unwrap_or(0),
        actor: actor(),
        action: "cli restore".into(),
        target: None,
        status: 200,
        detail: json!({ "file": file.file_name().map(|f| f.to_string_lossy().into_owned()) })
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids_of(doc: &mut toml_edit::DocumentMut) -> Vec<String> {
        let item = doc
            .get_mut("tokens")
            .and_then(|t| t.get_mut("signing_keys"))
            .unwrap();
        KeyList::of(item).unwrap().ids()
    }

    fn key(id: &str) -> toml_edit::InlineTable {
        let mut t = toml_edit::InlineTable::new();
        t.insert("id", id.into());
        t.insert("key", "k".into());
        t
    }

    /// Keys written as `[[…]]` tables or as an inline array: the new key
    /// goes first (or last when staged), a promoted one first, and the
    /// file's text keeps that order (what wxauth reads).
    #[test]
    fn key_lists_in_both_toml_forms() {
        for text in [
            "# mine\n[[tokens.signing_keys]]\nid = \"a\"\nkey = \"x\"\n\n[[tokens.signing_keys]]\nid = \"b\"\nkey = \"y\"\n\n[encryption]\nkeys = []\n",
            "[tokens]\nsigning_keys = [{ id = \"a\", key = \"x\" }, { id = \"b\", key = \"y\" }]\n",
        ] {
            let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
            let edit = |doc: &mut toml_edit::DocumentMut, f: &dyn Fn(&mut KeyList<'_>)| {
                let item = doc
                    .get_mut("tokens")
                    .and_then(|t| t.get_mut("signing_keys"))
                    .unwrap();
                f(&mut KeyList::of(item).unwrap());
            };
            edit(&mut doc, &|k| k.add(key("new"), true));
            assert_eq!(ids_of(&mut doc), ["new", "a", "b"]);
            edit(&mut doc, &|k| k.add(key("staged"), false));
            assert_eq!(ids_of(&mut doc), ["new", "a", "b", "staged"]);
            edit(&mut doc, &|k| k.promote(3));
            assert_eq!(ids_of(&mut doc), ["staged", "new", "a", "b"]);
            // Read back from the text, as wxauth would.
            let mut again: toml_edit::DocumentMut = doc.to_string().parse().unwrap();
            assert_eq!(ids_of(&mut again), ["staged", "new", "a", "b"], "{doc}");
            if text.starts_with('#') {
                assert!(doc.to_string().starts_with("# mine"));
                assert!(doc.to_string().contains("[encryption]"));
            }
        }
    }
}
