//! The documentation does what it says: every `toml` block of the README
//! and docs/ loads as written, the sample `wxauth.example.toml` starts
//! `serve` and logs a user in, the systemd unit verifies, and the
//! operator's recipes of docs/operations.md run as written (the one-host
//! recipe of docs/scale-out.md runs in `cluster.rs`, beside nginx and Redis).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wechat_miniapp::OffsetClock;
use wxauth::config::Config;

use crate::app::{SECRET1, b64_key, spawn_sim};
use crate::process::{call, login_user};
use crate::spawn::{BIN, spawn_serve, stop};

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Markdown files whose examples readers copy.
const DOCUMENTS: &[&str] = &[
    "docs/deployment.md",
    "docs/troubleshooting.md",
    "README.md",
    "docs/api.md",
    "docs/configuration.md",
    "docs/operations.md",
    "docs/scale-out.md",
    "docs/security.md",
    "docs/services.md",
    "bench/README.md",
];

/// The fenced blocks of `lang` in a Markdown text, with their first line.
pub(crate) fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => {
                current = Some((n + 1, String::new()))
            }
            Some(_) if line.trim_start().starts_with("```") => out.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_toml_block_in_the_docs_loads() {
    let dir = crate::db::temp_dir();
    let mut checked = 0;
    for doc in DOCUMENTS {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        for (line, block) in blocks(&text, "toml") {
            let file = dir.0.join("block.toml");
            std::fs::write(&file, &block).unwrap();
            if let Err(e) = Config::load(Some(&file)) {
                panic!("{doc}:{line}: the toml block does not load: {e}\n{block}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} toml blocks found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_configuration_starts_serve() {
    let sample = repo().join("wxauth.example.toml");
    // Loads and resolves as it is, given its three variables.
    let (sim, sim_url) = spawn_sim(&OffsetClock::new()).await;
    let dir = crate::db::temp_dir();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(&sample)
        .current_dir(&dir.0)
        .env_remove("WXAUTH_CONFIG")
        .env("WXAUTH_LOG", "warn")
        .env("WX1_SECRET", SECRET1)
        .env("SIGNING_KEY", b64_key(3))
        .env("ENCRYPTION_KEY", b64_key(4))
        // Only what a test must change: a free port, the simulator.
        .env("WXAUTH_LISTEN", "127.0.0.1:0")
        .env("WXAUTH_WECHAT__BASE_URL", &sim_url)
        .stderr(Stdio::piped());
    let server = spawn_serve(cmd);
    let http = reqwest::Client::new();
    let login = login_user(&http, &server.url, &sim, "sam").await;
    assert!(login["access_token"].is_string(), "{login}");
    let discovery = call(
        &http,
        reqwest::Method::GET,
        format!("{}/.well-known/openid-configuration", server.url),
        None,
        None,
    )
    .await
    .body;
    assert_eq!(
        discovery["jwks_uri"], "http://127.0.0.1:8080/.well-known/jwks.json",
        "public_url as the sample sets it"
    );
    assert!(dir.0.join("wxauth.db").exists(), "the database beside it");
    stop(server);
}

/// The systemd unit of docs/deployment.md passes `systemd-analyze verify`
/// (with this build's binary in ExecStart's place).
#[test]
fn the_systemd_unit_verifies() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed, so the unit was not verified");
        return;
    };
    assert!(found.status.success());
    let doc = std::fs::read_to_string(repo().join("docs/deployment.md")).unwrap();
    let (_, unit) = blocks(&doc, "ini")
        .into_iter()
        .next()
        .expect("docs/deployment.md has the unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/wxauth serve"));
    let dir = crate::db::temp_dir();
    let file = dir.0.join("wxauth.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/wxauth", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `sh` block of `doc` that contains `marker`.
fn sh_block(doc: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    blocks(&text, "sh")
        .into_iter()
        .map(|(_, b)| b)
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("{doc} has no sh block with {marker:?}"))
}

/// Runs `script` with bash (`set -euo pipefail` first) in `dir`, this
/// build's `wxauth` first on PATH and `env` set; its stdout, or a panic
/// with both outputs.
fn run_sh(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(dir)
        .env("PATH", path)
        .env("USER", "operator-ann")
        .env_remove("WXAUTH_CONFIG")
        .env_remove("WXAUTH_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the recipe failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// docs/operations.md's recipes run as written, in a folder holding
/// `wxauth.toml`: a service key made with the CLI, then the admin API's
/// find, revoke and audit with curl, then every CLI command of the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_recipes_run_as_written() {
    let doc = "docs/operations.md";
    let (sim, sim_url) = spawn_sim(&OffsetClock::new()).await;
    let dir = crate::db::temp_dir();
    let config = crate::spawn::ConfigFile::sqlite(&dir.0, &sim_url).write(&dir.0);
    let server = crate::spawn::start_serve(&config, "warn");
    let http = reqwest::Client::new();
    let login = login_user(&http, &server.url, &sim, "olga").await;
    let user_id = login["user"]["id"].as_str().unwrap().to_owned();
    let openid = sim.user_info(crate::app::APP1, "olga").unwrap()["openid"]
        .as_str()
        .unwrap()
        .to_owned();

    let make_key = sh_block(doc, "--id backoffice");
    let key = run_sh(&dir.0, &format!("{make_key}printf %s \"$KEY\""), &[]);
    assert!(key.len() >= 24, "the key was read from --json: {key:?}");
    stop(server);
    let server = crate::spawn::start_serve(&config, "warn");
    let admin_api = sh_block(doc, "$API/admin/v1/users?openid=");
    let out = run_sh(
        &dir.0,
        &format!("{admin_api}printf 'USER_ID=%s\\n' \"$USER_ID\""),
        &[("API", &server.url), ("KEY", &key), ("OPENID", &openid)],
    );
    assert!(out.contains(&format!("USER_ID={user_id}")), "{out}");
    assert!(out.contains("204\n"), "the revoke: {out}");
    assert!(
        out.contains("POST /admin/v1/users/{id}/revoke") && out.contains("key:backoffice"),
        "the audit entry: {out}"
    );
    stop(server);

    let cli = sh_block(doc, "wxauth admin user find");
    let out = run_sh(&dir.0, &cli, &[("OPENID", &openid), ("USER_ID", &user_id)]);
    assert!(out.contains(&format!("deleted user {user_id}")), "{out}");
    assert!(dir.0.join("user.json").exists(), "the export");
    let backups: Vec<String> = std::fs::read_dir(dir.0.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(backups.len(), 2, "the backup and its files: {backups:?}");
    assert!(
        backups.iter().any(|b| b.ends_with(".db.files")),
        "{backups:?}"
    );
}
