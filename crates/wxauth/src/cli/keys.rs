//! `wxauth keys …`: rotate signing and encryption keys, re-seal.

use super::*;

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
