//! The service as a real process: what it logs, and what survives SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::{Value, json};
use wechat_miniapp::OffsetClock;

use crate::app::*;

pub(crate) use crate::spawn::{BIN, Server, spawn_serve, start_serve, stop};
use crate::spawn::{ConfigFile, Secrets, serve_command};

/// This file's configuration: the first app's secret and the encryption
/// key in the environment, a second app in the file.
pub(crate) fn write_config(dir: &Path, sim_url: &str) -> std::path::PathBuf {
    ConfigFile {
        secrets: Secrets::InEnv,
        second_app: true,
        ..ConfigFile::sqlite(dir, sim_url)
    }
    .write(dir)
}

pub(crate) async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    reply(req.send().await.unwrap()).await
}

/// A simulator, a data folder with a config, `wxauth serve` on it, and a client.
pub(crate) async fn setup() -> (
    wechat_sim::Simulator,
    crate::db::TempDir,
    std::path::PathBuf,
    Server,
    reqwest::Client,
) {
    setup_at("warn").await
}

/// [`setup`] with the server logging at `log_level`.
pub(crate) async fn setup_at(
    log_level: &str,
) -> (
    wechat_sim::Simulator,
    crate::db::TempDir,
    std::path::PathBuf,
    Server,
    reqwest::Client,
) {
    let clock = OffsetClock::new();
    let (sim, sim_url) = spawn_sim(&clock).await;
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, &sim_url);
    let server = start_serve(&config, log_level);
    (sim, dir, config, server, reqwest::Client::new())
}

/// Logs `user` of app 1 in against a running server; panics unless 200.
pub(crate) async fn login_user(
    http: &reqwest::Client,
    url: &str,
    sim: &wechat_sim::Simulator,
    user: &str,
) -> Value {
    let code = sim.login_code(APP1, user).unwrap();
    let r = call(
        http,
        Method::POST,
        format!("{url}/v1/login"),
        None,
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_whole_session_hold_no_secrets() {
    let clock = OffsetClock::new();
    let (sim, sim_url) = spawn_sim(&clock).await;
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, &sim_url);
    let server = start_serve(&config, "debug");
    let http = reqwest::Client::new();
    let u = |p: &str| format!("{}{p}", server.url);
    let mut secrets: Vec<String> = vec![SECRET1.into(), SECRET2.into(), b64_key(5), b64_key(6)];

    let code = sim.login_code(APP1, "alice").unwrap();
    secrets.push(code.clone());
    secrets.push(
        sim.user_info(APP1, "alice").unwrap()["session_key"]
            .as_str()
            .unwrap()
            .into(),
    );
    let login = call(
        &http,
        Method::POST,
        u("/v1/login"),
        None,
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    // The same code again (de-duplicated).
    let again = call(
        &http,
        Method::POST,
        u("/v1/login"),
        None,
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(again.status, 200);
    let access = token(&login.body).to_owned();
    secrets.extend([
        access.clone(),
        refresh(&login.body).to_owned(),
        token(&again.body).to_owned(),
        refresh(&again.body).to_owned(),
    ]);

    let r = call(&http, Method::GET, u("/v1/me"), Some(&access), None).await;
    assert_eq!(r.status, 200);
    let r = call(
        &http,
        Method::PATCH,
        u("/v1/me"),
        Some(&access),
        Some(json!({"profile": {"nickname": "A"}})),
    )
    .await;
    assert_eq!(r.status, 200);
    let phone_code = sim.phone_code(APP1, "alice", Some("13912345678")).unwrap();
    secrets.extend([phone_code.clone(), "13912345678".into()]);
    let r = call(
        &http,
        Method::POST,
        u("/v1/me/phone"),
        Some(&access),
        Some(json!({"code": phone_code})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let payload = sim
        .encrypt(APP1, "alice", json!({"secretField": "s3cr3t-payload"}))
        .unwrap();
    secrets.push("s3cr3t-payload".into());
    let r = call(
        &http,
        Method::POST,
        u("/v1/me/decrypt"),
        Some(&access),
        Some(json!({"encrypted_data": payload["encrypted_data"], "iv": payload["iv"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let refreshed = call(
        &http,
        Method::POST,
        u("/v1/token/refresh"),
        None,
        Some(json!({"refresh_token": refresh(&login.body)})),
    )
    .await;
    assert_eq!(refreshed.status, 200);
    secrets.extend([
        token(&refreshed.body).to_owned(),
        refresh(&refreshed.body).to_owned(),
    ]);
    // Reuse, a bad code, a wrong-secret answer (logged loudly), logout.
    let r = call(
        &http,
        Method::POST,
        u("/v1/token/refresh"),
        None,
        Some(json!({"refresh_token": refresh(&login.body)})),
    )
    .await;
    assert_eq!(r.status, 401);
    let bad_code = "0716AVll20uHk94SLDml27etM946AVlq";
    secrets.push(bad_code.into());
    let r = call(
        &http,
        Method::POST,
        u("/v1/login"),
        None,
        Some(json!({"code": bad_code})),
    )
    .await;
    assert_eq!(r.status, 400);
    sim.set_fault(wechat_sim::FaultSpec {
        api: "jscode2session".into(),
        errcode: Some(40125),
        delay_ms: None,
        rate: None,
        count: Some(1),
    })
    .unwrap();
    let code2 = sim.login_code(APP1, "bob").unwrap();
    secrets.push(code2.clone());
    let r = call(
        &http,
        Method::POST,
        u("/v1/login"),
        None,
        Some(json!({"code": code2})),
    )
    .await;
    assert_eq!(r.status, 502);
    let r = call(
        &http,
        Method::POST,
        u("/v1/logout"),
        Some(token(&again.body)),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let access_token_of_wechat = sim.stats();
    assert_eq!(access_token_of_wechat.calls.get("stable_token"), Some(&1));

    let logs = stop(server);
    assert!(
        logs.contains("/v1/login"),
        "the log should show the requests:\n{logs}"
    );
    assert!(
        logs.contains("40125"),
        "a wrong secret is logged loudly:\n{logs}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the log contains a secret ({}…):\n{logs}",
            &secret[..6.min(secret.len())]
        );
    }
    // WeChat's own access token too.
    for token in logs.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        assert!(
            token.len() < 100,
            "a long token-like string in the log: {token}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keep_users_sessions_and_keys() {
    let (sim, _dir, config, server, http) = setup().await;
    let login = login_user(&http, &server.url, &sim, "carol").await;
    let second = login_user(&http, &server.url, &sim, "carol").await;
    let r = call(
        &http,
        Method::POST,
        format!("{}/v1/logout", server.url),
        Some(token(&second)),
        None,
    )
    .await;
    assert_eq!(r.status, 204);

    let mut child = server.child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let server = start_serve(&config, "warn");
    // The old access token still verifies (same signing key) and its user is there.
    let me = call(
        &http,
        Method::GET,
        format!("{}/v1/me", server.url),
        Some(token(&login)),
        None,
    )
    .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["id"], login["user"]["id"]);
    // The logged-out session stays logged out after the restart.
    let me = call(
        &http,
        Method::GET,
        format!("{}/v1/me", server.url),
        Some(token(&second)),
        None,
    )
    .await;
    assert_eq!(me.status, 401);
    // The refresh token still works.
    let r = call(
        &http,
        Method::POST,
        format!("{}/v1/token/refresh", server.url),
        None,
        Some(json!({"refresh_token": refresh(&login)})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    stop(server);
}

#[test]
fn bad_configuration_fails_at_start_with_the_key_named() {
    let dir = crate::db::temp_dir();
    let config = write_config(&dir.0, "http://127.0.0.1:9");
    let run = |extra_env: &[(&str, &str)], remove: &[&str]| {
        let mut cmd = serve_command(&config, "warn");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        for k in remove {
            cmd.env_remove(k);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[], &["TEST_APP1_SECRET"]);
    assert!(
        err.contains("apps[0].secret_env") && err.contains("TEST_APP1_SECRET"),
        "{err}"
    );
    let err = run(&[("WXAUTH_TOKENS__ACCESS_TTL_SECS", "soon")], &[]);
    assert!(err.to_lowercase().contains("access_ttl_secs"), "{err}");
    let err = run(&[("WXAUTH_DATABASE_URL", "mysql://root:hunter2@h/db")], &[]);
    assert!(
        err.contains("database_url") && !err.contains("hunter2"),
        "{err}"
    );
    let err = run(&[("WXAUTH_LISTN", "x")], &[]);
    assert!(
        err.to_lowercase().contains("listn"),
        "a misspelt variable is named: {err}"
    );
    let err = run(&[("TEST_ENC_KEY", "c2hvcnQ=")], &[]);
    assert!(
        err.contains("encryption.keys[0]") && err.contains("32 bytes"),
        "{err}"
    );
    assert!(!err.contains(SECRET1) && !err.contains(SECRET2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_walkthrough_runs_as_printed() {
    let dir = crate::db::temp_dir();
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--sim-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.0.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut script = String::new();
    let mut inside = false;
    for _ in 0..200 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains("--- walkthrough ---") {
            inside = true;
        }
        if inside {
            script.push_str(&line);
        }
        if line.contains("--- end ---") {
            break;
        }
    }
    assert!(
        script.contains("/v1/me"),
        "no walkthrough printed: {script}"
    );
    let ran = tokio::task::spawn_blocking(move || {
        Command::new("bash").arg("-c").arg(script).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ran.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let me: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(me["appid"], APP1);
    assert!(me["openid"].as_str().unwrap().starts_with('o'));
    let patched: Value = serde_json::from_str(stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(patched["profile"]["nickname"], "Alice");
    assert!(dir.0.join("data/keys.json").exists());
}

/// All of a user's documents in a collection, walking every page.
async fn all_documents(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    collection: &str,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{url}/v1/data/{collection}?limit=100&cursor={c}"),
            None => format!("{url}/v1/data/{collection}?limit=100"),
        };
        let r = call(http, Method::GET, path, Some(token), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_document() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let (sim, _dir, config, server, http) = setup().await;
    let login = login_user(&http, &server.url, &sim, "crash").await;
    let token = Arc::new(token(&login).to_owned());

    let next = Arc::new(AtomicU64::new(0));
    let attempted = Arc::new(Mutex::new(BTreeSet::new()));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let halt = Arc::new(AtomicBool::new(false));
    let url = Arc::new(server.url.clone());
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, token, next, attempted, acked, halt, url) = (
            http.clone(),
            token.clone(),
            next.clone(),
            attempted.clone(),
            acked.clone(),
            halt.clone(),
            url.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !halt.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                attempted.lock().unwrap().insert(n);
                let sent = http
                    .post(format!("{url}/v1/data/crash"))
                    .bearer_auth(token.as_str())
                    .header("idempotency-key", format!("write-{n}"))
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 201 => {
                        acked.lock().unwrap().insert(n);
                    }
                    Ok(resp) => panic!("unexpected status {} before the crash", resp.status()),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    // Let writes flow, then kill the server mid-stream.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut child = server.child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    halt.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let attempted = attempted.lock().unwrap().clone();
    let acked = acked.lock().unwrap().clone();
    assert!(attempted.len() > acked.len() || attempted == acked);

    let server = start_serve(&config, "warn");
    let stored: Vec<u64> = all_documents(&http, &server.url, &token, "crash")
        .await
        .iter()
        .map(|d| d["data"]["n"].as_u64().unwrap())
        .collect();
    let stored_set: BTreeSet<u64> = stored.iter().copied().collect();
    assert_eq!(stored.len(), stored_set.len(), "no document stored twice");
    let lost: Vec<&u64> = acked.difference(&stored_set).collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost by the crash: {lost:?}"
    );
    let phantom: Vec<&u64> = stored_set.difference(&attempted).collect();
    assert!(phantom.is_empty(), "documents nobody wrote: {phantom:?}");

    // The client retries what it never got an answer for, with the same keys:
    // afterwards every attempted write is stored exactly once.
    for n in attempted.difference(&acked) {
        let r = http
            .post(format!("{}/v1/data/crash", server.url))
            .bearer_auth(token.as_str())
            .header("idempotency-key", format!("write-{n}"))
            .json(&json!({"n": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let after: Vec<u64> = all_documents(&http, &server.url, &token, "crash")
        .await
        .iter()
        .map(|d| d["data"]["n"].as_u64().unwrap())
        .collect();
    let after_set: BTreeSet<u64> = after.iter().copied().collect();
    assert_eq!(
        after.len(),
        after_set.len(),
        "no duplicates after the retries"
    );
    assert_eq!(after_set, attempted);
    eprintln!(
        "crash test: {} attempted, {} acknowledged before SIGKILL, {} stored at restart",
        attempted.len(),
        acked.len(),
        stored_set.len()
    );
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_encryption_key_is_a_500_that_names_its_cause_only_in_the_log() {
    let (sim, _dir, config, server, http) = setup().await;
    let login = login_user(&http, &server.url, &sim, "kim").await;
    stop(server);
    // The operator replaced the key instead of adding the new one first.
    let mut cmd = serve_command(&config, "warn");
    cmd.env("TEST_ENC_KEY", b64_key(7));
    let server = spawn_serve(cmd);
    let payload = sim.encrypt(APP1, "kim", json!({"x": 1})).unwrap();
    let r = call(
        &http,
        Method::POST,
        format!("{}/v1/me/decrypt", server.url),
        Some(token(&login)),
        Some(json!({"encrypted_data": payload["encrypted_data"], "iv": payload["iv"]})),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error()), (500, "internal"));
    assert_eq!(
        r.message(),
        "internal error",
        "the cause is not shown to clients"
    );
    assert_eq!(r.body["request_id"].as_str(), r.header("x-request-id"));
    // Everything that does not need the sealed key still works.
    let me = call(
        &http,
        Method::GET,
        format!("{}/v1/me", server.url),
        Some(token(&login)),
        None,
    )
    .await;
    assert_eq!(me.status, 200);
    let log = stop(server);
    assert!(
        log.contains("sealed value failed authentication"),
        "the log names the cause:\n{log}"
    );
    assert!(
        log.contains(r.header("x-request-id").unwrap()),
        "with the request id:\n{log}"
    );
}
