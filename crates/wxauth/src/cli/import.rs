//! `wxauth import leancloud|cloudbase …`: another platform's export into
//! this database (the rules are in `migrate`), with progress, a report
//! (text or `--json`), an audit entry, and `--write-config` to add the
//! suggested `[[collections]]` to the configuration file.

use super::*;
use wxauth::migrate::{ImportOptions, Importer, Report, cloudbase, leancloud};

/// `wxauth import …`
#[derive(Subcommand)]
pub enum ImportCommand {
    /// LeanCloud's export (数据导出): one `.jsonl` file per class, named
    /// by the class (`_User.jsonl`, `Todo.jsonl`, `Todo.0.jsonl`).
    Leancloud(LeancloudArgs),
    /// CloudBase's export of one collection (JSON, one object a line).
    Cloudbase(CloudbaseArgs),
}

/// What both imports take.
#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    common: Common,
    /// The app whose users these are (one of the configured `[[apps]]`).
    #[arg(long)]
    appid: String,
    /// Read everything and print the report; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Import rows past the per-user limits (`limits.documents_per_collection`,
    /// `collections_per_user`, `bytes_per_user`); the report says so.
    #[arg(long)]
    ignore_limits: bool,
    /// Add the suggested `[[collections]]` entries (those not configured
    /// yet) to the configuration file, comments kept (not in a dry run).
    #[arg(long)]
    write_config: bool,
}

/// `wxauth import leancloud`
#[derive(Args)]
pub struct LeancloudArgs {
    #[command(flatten)]
    args: ImportArgs,
    /// Download the files of `_File` rows into the file store (`[files]`)
    /// and point file fields at them; a file that cannot be fetched is
    /// reported and its fields keep the old URL.
    #[arg(long)]
    fetch_files: bool,
    /// The export's files (`_User` files are read first whatever the order,
    /// then `_File`).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// `wxauth import cloudbase`
#[derive(Args)]
pub struct CloudbaseArgs {
    #[command(flatten)]
    args: ImportArgs,
    /// The collection the rows go to (`[a-z0-9_-]{1,64}`).
    #[arg(long)]
    collection: String,
    /// The export's files of that collection.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `wxauth import …`.
pub async fn import(command: ImportCommand) -> anyhow::Result<()> {
    let (args, platform, collection, paths, fetch_files) = match command {
        ImportCommand::Leancloud(a) => (a.args, leancloud::PLATFORM, None, a.paths, a.fetch_files),
        ImportCommand::Cloudbase(a) => (
            a.args,
            cloudbase::PLATFORM,
            Some(a.collection),
            a.paths,
            false,
        ),
    };
    if args.write_config {
        // Fail before importing, not after.
        config_file(&args.common.config)?;
    }
    let settings = load_config(&args.common.config)?.resolve()?;
    let s = open_rules(&settings, Deps::default()).await?;
    let options = ImportOptions {
        appid: args.appid.clone(),
        dry_run: args.dry_run,
        ignore_limits: args.ignore_limits,
        fetch_files,
    };
    let mut bar = Progress::new("importing (bytes read)", 0);
    let mut progress = |done: u64, total: u64| bar.set(done, total);
    let run = async {
        let importer = Importer::new(
            &s.auth,
            &s.store,
            &s.files,
            &settings.limits,
            platform,
            options,
            &mut progress,
        )?;
        match &collection {
            None => importer.leancloud(&paths).await,
            Some(c) => importer.cloudbase(c, &paths).await,
        }
    };
    let report = if args.dry_run {
        // A dry run writes nothing, not even its audit entry.
        run.await.map_err(anyhow::Error::from)
    } else {
        audited(
            &s,
            &format!("cli import {platform}"),
            Some(Target::App(args.appid.clone())),
            async {
                let report = run.await?;
                let detail = json!({
                    "files": report.files.len(),
                    "lines": report.lines,
                    "users_created": report.users.created,
                    "documents_stored": report.stored(),
                    "files_fetched": report.downloads.as_ref().map(|d| d.fetched),
                    "problems": report.problems_total,
                    "limits_applied": report.limits_applied,
                });
                Ok((report, detail))
            },
        )
        .await
    };
    s.store.close().await;
    bar.finish();
    let report = report?;
    let mut config_note = None;
    if args.write_config && args.dry_run {
        config_note =
            Some("--write-config: the configuration is left as it is in a dry run".to_owned());
    } else if args.write_config {
        let path = config_file(&args.common.config)?;
        let added = add_collections(path, &report)?;
        config_note = Some(if added.is_empty() {
            format!(
                "{}: every suggested collection is configured already",
                path.display()
            )
        } else {
            format!(
                "{}: added [[collections]] {} (restart wxauth to use them)",
                path.display(),
                added.join(", ")
            )
        });
    }
    let mut value = serde_json::to_value(&report)?;
    value["suggested_collections"] = serde_json::to_value(report.suggestions())?;
    if let Some(note) = &config_note {
        value["config"] = json!(note);
    }
    emit(args.common.json, &value, || {
        let mut text = render(&report);
        if let Some(note) = config_note {
            text.push_str(&format!("\n{note}"));
        }
        text
    })
}

/// The report as text.
fn render(r: &Report) -> String {
    let mut out = format!(
        "{} {} into {} ({} files, {} lines, {:.1} s){}\n",
        if r.dry_run {
            "Dry run: nothing written. Would import"
        } else {
            "Imported"
        },
        match r.platform {
            "leancloud" => "LeanCloud's export",
            _ => "CloudBase's export",
        },
        r.appid,
        r.files.len(),
        r.lines,
        r.seconds,
        if r.limits_applied {
            ""
        } else {
            "; per-user limits RAISED (--ignore-limits)"
        }
    );
    let skipped = |m: &std::collections::BTreeMap<&str, u64>| {
        if m.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!(", skipped {}", parts.join(", "))
        }
    };
    let u = &r.users;
    if r.platform == "leancloud" {
        out.push_str(&format!(
            "  _User: {} rows: {} users created, {} already here{}\n",
            u.rows,
            u.created,
            u.existing,
            skipped(&u.skipped)
        ));
    } else {
        out.push_str(&format!("  users created for new openids: {}\n", u.created));
    }
    if let Some(d) = &r.downloads {
        out.push_str(&format!(
            "  _File: {} rows: {} files {}fetched ({} bytes), {} already here{}\n",
            d.rows,
            d.fetched,
            if r.dry_run { "would be " } else { "" },
            d.bytes,
            d.already_present,
            skipped(&d.skipped)
        ));
    }
    for c in &r.collections {
        out.push_str(&format!(
            "  {} -> {}: {} rows: {} stored, {} already present{}\n",
            c.class,
            c.collection.as_deref().unwrap_or("(none)"),
            c.rows,
            c.stored,
            c.already_present,
            skipped(&c.skipped)
        ));
    }
    let v = &r.values;
    if v.relations_left_out
        + v.bytes_as_base64
        + v.files_as_urls
        + v.files_fetched
        + v.pointers_kept
        > 0
    {
        out.push_str(&format!(
            "  values: {} file fields pointing at fetched files, {} kept as their old URL, {} Bytes kept as base64, {} relations left out, {} pointers kept as they were (to users not imported or system classes)\n",
            v.files_fetched,
            v.files_as_urls,
            v.bytes_as_base64,
            v.relations_left_out,
            v.pointers_kept
        ));
    }
    if r.problems_total > 0 {
        out.push_str(&format!(
            "\nLines not imported: {}{}\n",
            r.problems_total,
            if r.problems_total as usize > 20 {
                " (the first 20; --json lists up to 1000)"
            } else {
                ""
            }
        ));
        for p in r.problems.iter().take(20) {
            out.push_str(&format!(
                "  {}:{}: {} ({})\n",
                p.file, p.line, p.message, p.code
            ));
        }
    }
    let toml = r.collections_toml();
    if !toml.is_empty() {
        out.push_str("\nSuggested configuration (--write-config adds it):\n\n");
        out.push_str(&toml);
    }
    out.trim_end().to_owned()
}

/// Adds the report's suggested collections that the file does not
/// configure yet; their names.
fn add_collections(path: &Path, report: &Report) -> anyhow::Result<Vec<String>> {
    let mut doc = read_toml(path)?;
    let configured: Vec<String> = doc
        .get("collections")
        .and_then(|c| c.as_array_of_tables())
        .map(|tables| {
            tables
                .iter()
                .filter_map(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut added = Vec::new();
    for s in report.suggestions() {
        if configured.contains(&s.name) {
            continue;
        }
        let mut table = toml_edit::Table::new();
        table.insert("name", toml_edit::value(s.name.clone()));
        table.insert("access", toml_edit::value(s.access));
        if !s.indexes.is_empty() {
            let list: toml_edit::Array = s.indexes.iter().map(String::as_str).collect();
            table.insert("indexes", toml_edit::value(list));
        }
        table.decor_mut().set_prefix(format!(
            "\n# Imported from {} ({}).\n",
            report.platform, s.why
        ));
        match doc.get_mut("collections") {
            Some(item) => item
                .as_array_of_tables_mut()
                .context("collections in the configuration is not a list of [[collections]]")?
                .push(table),
            None => {
                let mut tables = toml_edit::ArrayOfTables::new();
                tables.push(table);
                doc.insert("collections", toml_edit::Item::ArrayOfTables(tables));
            }
        }
        added.push(s.name);
    }
    if !added.is_empty() {
        write_toml(path, &doc)?;
    }
    Ok(added)
}
