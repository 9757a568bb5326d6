use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_wxauth");
const APP: &str = "wx1111111111111111";
const SECRET: &str = "11111111111111111111111111111111";

/// Starts `wxauth sim` on a free port and returns the process and its URL,
/// read from the line it prints when it is listening.
fn start_sim(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (url, line) = crate::spawn::announced_url(&mut child);
    let url = url.unwrap_or_else(|| panic!("no URL in {line:?}"));
    (child, url)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sim_serves_wechat_and_stops_on_sigterm() {
    let (mut child, url) = start_sim(&["--app", &format!("{APP}:{SECRET}")]);
    check_wechat_paths(&url).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

async fn check_wechat_paths(url: &str) {
    // A plain HTTP client, as any backend in any language would use.
    rustls_provider();
    let http = reqwest::Client::new();
    let code: Value = http
        .post(format!("{url}/sim/v1/login"))
        .json(&json!({"appid": APP, "user": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = code["code"].as_str().unwrap();
    let exchange = format!(
        "{url}/sns/jscode2session?appid={APP}&secret={SECRET}&js_code={code}&grant_type=authorization_code"
    );
    let first = http.get(&exchange).send().await.unwrap();
    assert_eq!(first.headers()["content-type"], "text/plain");
    let first: Value = serde_json::from_str(&first.text().await.unwrap()).unwrap();
    assert!(first["openid"].as_str().unwrap().starts_with('o'));
    let again: Value = serde_json::from_str(
        &http
            .get(&exchange)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(again["errcode"], 40163);
}

fn rustls_provider() {
    wechat_miniapp::ensure_tls_provider();
}

#[test]
fn sim_refuses_to_start_without_apps() {
    let out = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--app APPID:SECRET") && err.contains("--open"),
        "{err}"
    );
}

#[test]
fn sim_rejects_a_malformed_app() {
    let out = Command::new(BIN)
        .args(["sim", "--app", "wx1-without-secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected APPID:SECRET"), "{err}");
    // The secret of a well-formed but duplicated app is not echoed.
    let out = Command::new(BIN)
        .args(["sim", "--app", "wx1:topsecret", "--app", "wx1:topsecret"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("given twice") && !err.contains("topsecret"),
        "{err}"
    );
}

#[test]
fn open_and_accept_any_code_flags() {
    let (mut child, url) = start_sim(&["--open", "--accept-any-code"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        rustls_provider();
        let body: Value = serde_json::from_str(
            &reqwest::get(format!(
                "{url}/sns/jscode2session?appid=wxany&secret=any&js_code=load-1&grant_type=authorization_code"
            ))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        )
        .unwrap();
        assert!(body["openid"].is_string(), "{body}");
    });
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--open",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
}
