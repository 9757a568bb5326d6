//! The operator's CLI as a real process beside a running `wxauth serve`:
//! user commands, key rotation and re-sealing (interrupted by SIGKILL),
//! backup under write load and restore.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wechat_miniapp::OffsetClock;
use wxauth::auth::seal::Sealer;
use wxauth::config::NamedKey;
use wxauth::store::{LoginWrite, Store};

use crate::app::*;
use crate::process::{call, login_user};
use crate::spawn::{BIN, ConfigFile, Server, start_serve, stop};

/// A configuration whose keys are written in the file (so `keys rotate`
/// can edit it), with a service key for the admin API.
fn write_config(dir: &Path, sim_url: &str) -> std::path::PathBuf {
    use sha2::Digest;
    ConfigFile {
        // Writers under load are one user each.
        limits: vec!["data_requests_per_user_per_minute = 100000000".into()],
        tail: format!(
            "[[service_keys]]\nid = \"ops\"\nsha256 = \"{}\"\nscopes = [\"users:read\", \"audit:read\"]\n",
            hex::encode(sha2::Sha256::digest(ADMIN_KEY))
        ),
        ..ConfigFile::sqlite(dir, sim_url)
    }
    .write(dir)
}

/// `wxauth serve` logging at warn (its stderr is a pipe read only at the
/// end: a chatty log under load would fill it and stall the server).
fn serve(config: &Path) -> Server {
    start_serve(config, "warn")
}

/// Runs `wxauth ARGS --config CONFIG`; panics unless it succeeds.
fn cli(config: &Path, args: &[&str]) -> Output {
    let out = cli_any(config, args);
    assert!(
        out.status.success(),
        "wxauth {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cli_any(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("WXAUTH_CONFIG")
        .env_remove("WXAUTH_LOG")
        .env("USER", "operator-ann")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

async fn get(http: &reqwest::Client, url: &str, path: &str, token: Option<&str>) -> Reply {
    call(http, Method::GET, format!("{url}{path}"), token, None).await
}

/// Waits until `token` is refused by the server (the CLI wrote to the
/// database; the server reads revocations from it every 500 ms).
async fn refused_within(http: &reqwest::Client, url: &str, token: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let r = get(http, url, "/v1/me", Some(token)).await;
        if r.status == 401 {
            return;
        }
        assert!(start.elapsed() < within, "still accepted after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_act_on_a_running_server_and_are_audited() {
    let clock = OffsetClock::new();
    let (sim, sim_url) = spawn_sim(&clock).await;
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, &sim_url);
    let server = start_serve(&config, "info");
    let http = reqwest::Client::new();
    let url = server.url.clone();

    let eve = login_user(&http, &url, &sim, "eve").await;
    let t = token(&eve).to_owned();
    let id = eve["user"]["id"].as_str().unwrap().to_owned();
    let phone = sim.phone_code(APP1, "eve", Some("13700137000")).unwrap();
    let r = call(
        &http,
        Method::POST,
        format!("{url}/v1/me/phone"),
        Some(&t),
        Some(json!({"code": phone})),
    )
    .await;
    assert_eq!(r.status, 200);
    for n in 0..3 {
        let r = call(
            &http,
            Method::POST,
            format!("{url}/v1/data/notes"),
            Some(&t),
            Some(json!({"n": n})),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let openid = sim.user_info(APP1, "eve").unwrap()["openid"]
        .as_str()
        .unwrap()
        .to_owned();

    // find, show, export: JSON for scripts, text for people.
    let found = json_of(&cli(
        &config,
        &["admin", "user", "find", "--phone", "13700137000", "--json"],
    ));
    assert_eq!(found["items"][0]["id"], id.as_str());
    let text = cli(&config, &["admin", "user", "find", "--openid", &openid]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&id));
    let shown = json_of(&cli(&config, &["admin", "user", "show", &id, "--json"]));
    assert_eq!(shown["active_sessions"], 1);
    assert_eq!(shown["documents"], 3);
    let text = String::from_utf8(cli(&config, &["admin", "user", "show", &id]).stdout).unwrap();
    assert!(text.contains("sessions    1 active of 1"), "{text}");
    let file = dir.0.join("eve.json");
    let out = cli(
        &config,
        &[
            "admin",
            "user",
            "export",
            &id,
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("documents: 3/3"));
    let export: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(export["documents"]["notes"].as_array().unwrap().len(), 3);
    assert_eq!(export["user"]["phone"]["pure_phone_number"], "13700137000");

    // revoke: the running server refuses the token within a second.
    let out = json_of(&cli(&config, &["admin", "user", "revoke", &id, "--json"]));
    assert_eq!(out["sessions_ended"], 1);
    refused_within(&http, &url, &t, Duration::from_secs(2)).await;

    // delete: asks unless --yes; then every row goes and the token stays refused.
    let again = login_user(&http, &url, &sim, "eve").await;
    let t2 = token(&again).to_owned();
    let out = cli_any(&config, &["admin", "user", "delete", &id]);
    assert!(!out.status.success(), "without --yes and no terminal");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert_eq!(get(&http, &url, "/v1/me", Some(&t2)).await.status, 200);
    cli(&config, &["admin", "user", "delete", &id, "--yes"]);
    refused_within(&http, &url, &t2, Duration::from_secs(2)).await;
    let out = cli_any(&config, &["admin", "user", "show", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
    let db_url = format!("sqlite://{}", dir.0.join("wxauth.db").display());
    // The running server scrubs the user's past changes within a second
    // of the deletion (its realtime upkeep); under a loaded machine, a
    // few more.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = crate::admin::rows_mentioning(&db_url, &id).await;
        left.sort();
        left.dedup();
        if left == ["audit_log.target"] || std::time::Instant::now() > deadline {
            assert_eq!(
                left,
                ["audit_log.target"],
                "only the audit log names the user"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The audit log names the operator and each command, never a value.
    let r = get(&http, &url, "/admin/v1/audit?limit=100", Some(ADMIN_KEY)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let actions: Vec<(String, String, i64)> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    for (action, status) in [
        ("cli user find", 200),
        ("cli user show", 200),
        ("cli user export", 200),
        ("cli user revoke", 200),
        ("cli user delete", 204),
        ("cli user show", 404),
    ] {
        assert!(
            actions.contains(&("cli:operator-ann".into(), action.into(), status)),
            "{action} {status}: {actions:?}"
        );
    }
    let text = r.body.to_string();
    assert!(!text.contains("13700137000") && !text.contains(&openid));

    let log = stop(server);
    assert!(!log.contains(ADMIN_KEY) && !log.contains(&t));
}

/// create-service-key: printed once, its hash added to the file (comments
/// kept); a restarted server accepts it with exactly its scopes; an
/// unknown scope is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_service_key_prints_the_key_once_and_serve_honours_its_scopes() {
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, "http://127.0.0.1:9");
    let http = reqwest::Client::new();
    let made = json_of(&cli(
        &config,
        &[
            "admin",
            "keys",
            "create-service-key",
            "--id",
            "reports",
            "--scope",
            "users:read",
            "--json",
        ],
    ));
    let key = made["key"].as_str().unwrap().to_owned();
    let file_text = std::fs::read_to_string(&config).unwrap();
    assert!(!file_text.contains(&key), "only the hash is stored");
    assert!(file_text.contains(made["sha256"].as_str().unwrap()));
    assert!(
        file_text.contains("# Signing keys: the first signs."),
        "comments kept"
    );
    let out = cli_any(
        &config,
        &[
            "admin",
            "keys",
            "create-service-key",
            "--id",
            "x",
            "--scope",
            "everything",
        ],
    );
    assert!(!out.status.success());
    let server = serve(&config);
    let r = get(&http, &server.url, "/admin/v1/users?openid=x", Some(&key)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = get(&http, &server.url, "/admin/v1/audit", Some(&key)).await;
    assert_eq!(r.status, 403);
    stop(server);
}

fn session_key_aad(appid: &str, openid: &str) -> Vec<u8> {
    format!("session_key\0{appid}\0{openid}").into_bytes()
}

fn key(id: &str, byte: u8) -> NamedKey {
    NamedKey {
        id: id.into(),
        bytes: vec![byte; 32],
    }
}

/// How many users' session_keys are sealed with key `id`.
async fn sealed_with(db_url: &str, id: u8) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM users WHERE hex(substr(session_key_enc, 2, 1)) = $1")
            .bind(format!("{id:02X}"))
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_then_an_interrupted_reseal_loses_nothing() {
    let clock = OffsetClock::new();
    let (sim, sim_url) = spawn_sim(&clock).await;
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, &sim_url);
    let db_url = format!("sqlite://{}", dir.0.join("wxauth.db").display());
    let http = reqwest::Client::new();
    let rotation = Rotation {
        sim: &sim,
        config: &config,
        db_url: &db_url,
        http: &http,
    };
    let (real, secrets) = rotation.users_sealed_with_the_first_key().await;
    let total = (secrets.len() + real.len()) as i64;
    rotation
        .rotated_keys_lead_and_old_tokens_still_work(&real)
        .await;
    rotation
        .an_interrupted_reseal_finishes_when_run_again(total)
        .await;
    rotation
        .every_session_key_opens_with_the_new_key_alone(&secrets)
        .await;
    rotation
        .the_old_key_can_leave_the_configuration(&real)
        .await;
}

/// Bulk users written straight to the store.
const MANY: usize = 20_000;

/// The rotation scenario's shared parts; each step checks one thing.
struct Rotation<'a> {
    sim: &'a wechat_sim::Simulator,
    config: &'a Path,
    db_url: &'a str,
    http: &'a reqwest::Client,
}

/// A real user: name, phone number and login answer.
type RealUser = (&'static str, &'static str, Value);

impl Rotation<'_> {
    /// Two real users with phones, and many more written straight to the
    /// store, each session_key sealed with key 1 as the server does.
    async fn users_sealed_with_the_first_key(&self) -> (Vec<RealUser>, Vec<(String, String)>) {
        let (sim, config, db_url, http) = (self.sim, self.config, self.db_url, self.http);
        let server = serve(config);
        let mut real = Vec::new();
        for (user, number) in [("gus", "13600136000"), ("hal", "13500135000")] {
            let login = login_user(http, &server.url, sim, user).await;
            let t = token(&login).to_owned();
            let code = sim.phone_code(APP1, user, Some(number)).unwrap();
            let r = call(
                http,
                Method::POST,
                format!("{}/v1/me/phone", server.url),
                Some(&t),
                Some(json!({"code": code})),
            )
            .await;
            assert_eq!(r.status, 200);
            real.push((user, number, login));
        }
        stop(server);
        let store = Store::open(db_url).await.unwrap();
        let old = Sealer::new(&[key("1", 6)]).unwrap();
        let mut secrets = Vec::with_capacity(MANY);
        let mut writes = Vec::new();
        for n in 0..MANY {
            let openid = format!("o-bulk-{n:06}");
            let secret = format!("session-key-{n:06}");
            let sealed = old
                .seal(secret.as_bytes(), &session_key_aad(APP1, &openid))
                .unwrap();
            secrets.push((openid.clone(), secret));
            let s = store.clone();
            writes.push(tokio::spawn(async move {
                s.login(LoginWrite {
                    new_user_id: uuid::Uuid::now_v7().to_string(),
                    appid: APP1.into(),
                    openid,
                    unionid: None,
                    session_key_enc: sealed,
                    session_id: uuid::Uuid::now_v7().to_string(),
                    refresh_hash: uuid::Uuid::now_v7().as_bytes().to_vec(),
                    refresh_expires_at: i64::MAX / 2,
                    now: 1,
                })
                .await
                .unwrap();
            }));
        }
        for w in writes {
            w.await.unwrap();
        }
        store.close().await;
        (real, secrets)
    }

    /// Rotate both keys: the new ones lead, the old ones still work.
    async fn rotated_keys_lead_and_old_tokens_still_work(&self, real: &[RealUser]) {
        let (sim, config, http) = (self.sim, self.config, self.http);
        let out = cli(config, &["keys", "rotate", "signing"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("is now the current key"));
        let rotated = json_of(&cli(config, &["keys", "rotate", "encryption", "--json"]));
        assert_eq!(rotated["id"], "2");
        let file_text = std::fs::read_to_string(config).unwrap();
        let enc_line = file_text
            .lines()
            .find(|l| l.starts_with("keys = "))
            .unwrap()
            .to_owned();
        assert!(enc_line.find("id = \"2\"").unwrap() < enc_line.find("id = \"1\"").unwrap());
        let server = serve(config);
        for (_, number, login) in real {
            let r = get(http, &server.url, "/v1/me", Some(token(login))).await;
            assert_eq!(r.status, 200, "a token signed before the rotation");
            assert_eq!(r.body["phone"]["pure_phone_number"], *number);
        }
        let fresh = login_user(http, &server.url, sim, "ivy").await;
        let header = fresh["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        assert_ne!(
            header["kid"], "s1",
            "new tokens are signed with the new key"
        );
        stop(server);
    }

    /// Re-seal, killed part-way (as soon as a batch has committed), then
    /// run again to the end.
    async fn an_interrupted_reseal_finishes_when_run_again(&self, total: i64) {
        let (config, db_url) = (self.config, self.db_url);
        let mut child = Command::new(BIN)
            .args(["keys", "reseal", "--config"])
            .arg(config)
            .env_remove("WXAUTH_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if sealed_with(db_url, 2).await > 1 {
                break;
            }
            assert!(Instant::now() < deadline, "reseal made no progress");
            assert!(
                child.try_wait().unwrap().is_none(),
                "reseal ended before any batch was seen"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let done_at_kill = sealed_with(db_url, 2).await;
        eprintln!("reseal killed after {done_at_kill} of {total} users");
        assert!(done_at_kill < total, "the kill came before the end");
        let report = json_of(&cli(config, &["keys", "reseal", "--json"]));
        assert_eq!(report["complete"], true, "{report}");
        assert_eq!(report["scanned"], total + 1);
        assert_eq!(sealed_with(db_url, 2).await, total + 1);
    }

    /// Nothing lost: with key 2 alone every session_key opens to what it was.
    async fn every_session_key_opens_with_the_new_key_alone(&self, secrets: &[(String, String)]) {
        let (config, db_url) = (self.config, self.db_url);
        let store = Store::connect(db_url).await.unwrap();
        let new_key = {
            let text = std::fs::read_to_string(config).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("keys = "))
                .unwrap()
                .to_owned();
            let start = line.find("key = \"").unwrap() + 7;
            let end = start + line[start..].find('"').unwrap();
            base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                &line[start..end],
            )
            .unwrap()
        };
        let only_new = Sealer::new(&[NamedKey {
            id: "2".into(),
            bytes: new_key,
        }])
        .unwrap();
        let rows = store.sealed_rows("", 100_000).await.unwrap();
        let by_openid: std::collections::HashMap<&str, &str> = secrets
            .iter()
            .map(|(o, s)| (o.as_str(), s.as_str()))
            .collect();
        let mut checked = 0;
        for row in &rows {
            let plain = only_new
                .open(
                    &row.session_key_enc,
                    &session_key_aad(&row.appid, &row.openid),
                )
                .unwrap();
            if let Some(expected) = by_openid.get(row.openid.as_str()) {
                assert_eq!(plain, expected.as_bytes());
                checked += 1;
            }
        }
        assert_eq!(checked, MANY);
        store.close().await;
    }

    /// The old encryption key leaves the configuration: phones, decrypt
    /// and phone search still work.
    async fn the_old_key_can_leave_the_configuration(&self, real: &[RealUser]) {
        let (sim, config, http) = (self.sim, self.config, self.http);
        let text = std::fs::read_to_string(config).unwrap();
        let edited: String = text
            .lines()
            .map(|l| {
                if l.starts_with("keys = ") {
                    let cut = l.find(", { id = \"1\"").unwrap();
                    format!("{}]", &l[..cut])
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!edited.contains(&b64_key(6)));
        std::fs::write(config, edited).unwrap();
        let server = serve(config);
        for (user, number, _) in real {
            let login = login_user(http, &server.url, sim, user).await;
            let t = token(&login);
            let r = get(http, &server.url, "/v1/me", Some(t)).await;
            assert_eq!(
                r.body["phone"]["pure_phone_number"], *number,
                "{:?}",
                r.body
            );
            let payload = sim.encrypt(APP1, user, json!({"ok": true})).unwrap();
            let r = call(
                http,
                Method::POST,
                format!("{}/v1/me/decrypt", server.url),
                Some(t),
                Some(json!({"encrypted_data": payload["encrypted_data"], "iv": payload["iv"]})),
            )
            .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let r = get(
                http,
                &server.url,
                &format!("/admin/v1/users?phone={number}"),
                Some(ADMIN_KEY),
            )
            .await;
            assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{:?}", r.body);
        }
        stop(server);
    }
}

/// Every document id the database holds.
async fn document_ids(db_url: &str) -> std::collections::HashSet<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM documents")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.into_iter().map(|(id,)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_write_load_restores_every_acknowledged_write() {
    let clock = OffsetClock::new();
    let (sim, sim_url) = spawn_sim(&clock).await;
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, &sim_url);
    let server = serve(&config);
    let http = reqwest::Client::new();
    let login = login_user(&http, &server.url, &sim, "kim").await;
    let t = token(&login).to_owned();

    // Writers run throughout; each id is recorded when its 201 arrives.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, t, acked, stop_writing) = (
            http.clone(),
            server.url.clone(),
            t.clone(),
            acked.clone(),
            stop_writing.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop_writing.load(std::sync::atomic::Ordering::Relaxed) {
                let r = call(
                    &http,
                    Method::POST,
                    format!("{url}/v1/data/load"),
                    Some(&t),
                    Some(json!({"w": w, "n": n, "pad": "x".repeat(200)})),
                )
                .await;
                assert_eq!(r.status, 201, "{:?}", r.body);
                acked
                    .lock()
                    .unwrap()
                    .push(r.body["id"].as_str().unwrap().to_owned());
                n += 1;
            }
        }));
    }
    // A file too: its bytes go into the backup beside the database.
    let photo = crate::files::png(5000);
    let uploaded = http
        .post(format!("{}/v1/files", server.url))
        .bearer_auth(&t)
        .header("content-type", crate::files::MULTIPART)
        .body(crate::files::wx_upload("avatar", None, "me.png", &photo))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let uploaded: Value = uploaded.json().await.unwrap();
    let file_id = uploaded["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    assert!(before.len() > 20, "writes are flowing");
    let file = dir.0.join("backup.db");
    let config2 = config.clone();
    let file2 = file.clone();
    let out = tokio::task::spawn_blocking(move || {
        cli(&config2, &["backup", file2.to_str().unwrap(), "--json"])
    })
    .await
    .unwrap();
    let report = json_of(&out);
    assert_eq!(report["integrity"], "ok");
    assert_eq!(report["files"]["store"], "folder", "{report}");
    assert_eq!(report["files"]["copied"], 1, "{report}");
    let saved = dir.0.join("backup.db.files").join(&file_id);
    assert_eq!(std::fs::read(&saved).unwrap(), photo);
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let after = acked.lock().unwrap().len();
    assert!(after > before.len(), "writes went on during the backup");
    let out = cli_any(&config, &["backup", file.to_str().unwrap()]);
    assert!(!out.status.success(), "an existing file is not overwritten");

    // The copy on its own: intact, and every write acknowledged before the
    // backup began is in it.
    let backup_url = format!("sqlite://{}", file.display());
    let copy = Store::connect(&format!("{backup_url}?mode=ro"))
        .await
        .unwrap();
    assert_eq!(copy.integrity_check().await.unwrap(), "ok");
    copy.close().await;
    let in_backup = document_ids(&backup_url).await;
    for id in &before {
        assert!(
            in_backup.contains(id),
            "{id} acknowledged before the backup, missing"
        );
    }
    eprintln!(
        "backup holds {} documents; {} acknowledged before it began, {after} in all",
        in_backup.len(),
        before.len()
    );

    // While a server holds the database, even --force is refused (writes
    // after the swap would go to the file moved aside), and nothing moves.
    let out = cli_any(&config, &["restore", file.to_str().unwrap(), "--force"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    let moved = std::fs::read_dir(&dir.0).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains("before-restore")
    });
    assert!(!moved, "the live database was moved aside");
    let r = get(&http, &server.url, "/v1/data/load?limit=1", Some(&t)).await;
    assert_eq!(r.status, 200, "the server goes on undisturbed");

    // Restore: refused while the database exists without --force; with
    // it, the server comes back with exactly the backup's documents.
    let log = stop(server);
    assert!(!log.contains(&t));
    let out = cli_any(&config, &["restore", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    // The file's bytes are lost meanwhile; the restore puts them back.
    std::fs::remove_file(dir.0.join("files").join(&file_id)).unwrap();
    let out = cli(
        &config,
        &["restore", file.to_str().unwrap(), "--force", "--json"],
    );
    assert_eq!(json_of(&out)["files_restored"], 1);
    let db_url = format!("sqlite://{}", dir.0.join("wxauth.db").display());
    assert_eq!(document_ids(&db_url).await, in_backup);
    let server = serve(&config);
    let r = get(&http, &server.url, "/v1/data/load?limit=1", Some(&t)).await;
    assert_eq!(r.status, 200, "sessions come back with the backup");
    let raw = http
        .get(format!("{}/v1/files/{file_id}/raw", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.bytes().await.unwrap().as_ref(), photo.as_slice());
    stop(server);

    // A database from a newer wxauth: refused by restore and by serve.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&backup_url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let out = cli_any(&config, &["restore", file.to_str().unwrap(), "--force"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("newer than this wxauth knows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(&file, dir.0.join("wxauth.db")).unwrap();
    let _ = std::fs::remove_file(dir.0.join("wxauth.db-wal"));
    let _ = std::fs::remove_file(dir.0.join("wxauth.db-shm"));
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("WXAUTH_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema is version 999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 27, items 9 and 14: what the operator's commands create is
/// readable by its owner only from the start, and they refuse to set up a
/// failure for later (a key variable wxauth would read as a setting, a
/// backup into a folder that is not there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_files_are_private_and_key_variables_cannot_clash_with_settings() {
    use std::os::unix::fs::PermissionsExt;
    use wxauth::private_files::mode_of;
    let (_sim, sim_url) = spawn_sim(&OffsetClock::new()).await;
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, &sim_url);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    cli(&config, &["migrate"]);
    assert_eq!(mode_of(&dir.0.join("wxauth.db")), Some(0o600));

    let missing = dir.0.join("no-such-folder/backup.db");
    let out = cli_any(&config, &["backup", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-folder") && err.contains("does not exist"),
        "{err}"
    );
    let backup = dir.0.join("backup.db");
    let out = cli(&config, &["backup", backup.to_str().unwrap()]);
    assert_eq!(mode_of(&backup), Some(0o600));
    // An operator's command logs only warnings unless WXAUTH_LOG says more.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("INFO"), "{err}");

    // A key variable named like a setting is refused before anything is
    // written (serve would refuse to start with it set).
    let before = std::fs::read_to_string(&config).unwrap();
    let out = cli_any(
        &config,
        &[
            "keys",
            "rotate",
            "encryption",
            "--env",
            "WXAUTH_ENCRYPTION_KEY_2",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read as a setting"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert_eq!(mode_of(&config), Some(0o644));

    // A key written inline makes the file its owner's only, and says so.
    let out = cli(&config, &["keys", "rotate", "signing"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0600"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(mode_of(&config), Some(0o600));
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A configuration that names such a variable fails its check with the
    // setting's path and the reason, whether or not the variable is set.
    let clash = dir.0.join("clash.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("key = \"{}\"", b64_key(6)),
        "key_env = \"WXAUTH_ENCRYPTION_KEY\"",
    );
    assert!(text.contains("WXAUTH_ENCRYPTION_KEY"));
    std::fs::write(&clash, text).unwrap();
    let out = cli_any(&clash, &["migrate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("encryption.keys[0].key_env") && err.contains("WXAUTH_"),
        "{err}"
    );
}
