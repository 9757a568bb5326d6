//! `wxauth admin …`: users, documents and service keys.

use super::*;

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
                let found = s.admin().find_users(a.appid.as_deref(), &by).await?;
                let n = found.len();
                Ok((found, json!({ "by": by.key(), "found": n })))
            })
            .await;
            s.store.close().await;
            let users: Vec<UserSummary> = found?;
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
            let target = Some(Target::User(a.user_id.clone()));
            let account = audited(&s, "cli user show", target, async {
                Ok((s.admin().account(&a.user_id).await?, json!({})))
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
            let target = Some(Target::User(a.user_id.clone()));
            let ended = audited(&s, "cli user revoke", target, async {
                let n = s.admin().revoke_user(&a.user_id).await?;
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
    let target = Some(Target::User(a.user.user_id.clone()));
    // Personal data: readable by the operator only, from the first byte.
    let file = match &a.output {
        Some(path) => Some(
            wxauth::private_files::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };
    let written = audited(&s, "cli user export", target, async {
        let mut export = s.admin().export(&a.user.user_id).await?;
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
    let deleted = s.admin().delete_user(actor(), "cli user delete", id).await;
    if let Err(e) = &deleted {
        // Deletions that happen are audited in their own commit; a failed
        // one is recorded here.
        let record = AuditRecord::new(actor(), "cli user delete", Some(Target::User(id.clone())))
            .status(wxauth::http::status_of(e))
            .detail(json!({ "error": wxauth::http::error_code(e) }));
        s.admin().record(record).await?;
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
        let created = s
            .admin()
            .create_document(&a.owner, &a.collection, body)
            .await?;
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

fn create_service_key(a: CreateKeyArgs) -> anyhow::Result<()> {
    for scope in &a.scopes {
        if let Err(message) = ServiceScope::parse(scope) {
            bail!("{message}");
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
