//! The gateway against a real service process (Python's wsgiref, which
//! reads headers the CGI way): paths stay under their prefix, identity
//! headers come only from wxauth, the bare prefix is forwarded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wxauth::config::{GatewayAuth, GatewayConfig};

use crate::app::{APP1, Options, TestApp, spawn_app_with, token};

/// The WSGI service, killed when dropped.
struct Service {
    child: Child,
    url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service() -> Service {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/wsgi_echo.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the WSGI service");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the service prints its port");
    Service {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// wxauth with `/api/` (auth required) and `/pub/` (optional) on one
/// service.
async fn gateway_app(service: &Service) -> TestApp {
    let upstream = service.url.clone();
    spawn_app_with(Options {
        edit: Some(Box::new(move |c| {
            for (prefix, auth) in [
                ("/api/", GatewayAuth::Required),
                ("/pub/", GatewayAuth::Optional),
            ] {
                c.gateway.push(GatewayConfig {
                    prefix: prefix.into(),
                    upstream: upstream.clone(),
                    auth,
                    timeout_ms: 5_000,
                    connect_timeout_ms: 2_000,
                });
            }
        })),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// Sends `target` byte for byte (no client normalises it) and returns the
/// status and body.
async fn raw_get(app: &TestApp, target: &str, extra_headers: &str) -> (u16, String) {
    let addr = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

async fn seen(service: &Service) -> Vec<String> {
    let body: Value = reqwest::get(format!("{}/pub/_seen", service.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_leaves_its_prefix() {
    let service = start_service();
    let app = gateway_app(&service).await;
    for target in [
        "/pub/../api/secret",
        "/pub/%2e%2e/api/secret",
        "/pub/%2E%2E/api/secret",
        "/pub/.%2e/api/secret",
        "/pub/..%2fapi%2fsecret",
        "/pub/..%2Fapi/secret",
        "/pub/..%5capi%5csecret",
        "/pub/..;/api/secret",
        "/pub/%252e%252e/api/secret",
        "/pub/./../api/secret",
        "/pub/x/../../api/secret",
        "/pub/x/%2e%2e/%2e%2e/api/secret?a=1",
    ] {
        let (status, body) = raw_get(&app, target, "").await;
        assert_eq!(status, 400, "{target}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_request", "{target}");
        assert!(
            !body["message"].as_str().unwrap().contains("secret"),
            "the path is not echoed: {body}"
        );
    }
    // An ordinary path goes through exactly as sent.
    let (status, body) = raw_get(&app, "/pub/a%20b/c.json?x=1", "").await;
    assert_eq!(status, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["raw_uri"], "/pub/a%20b/c.json?x=1");
    // The bare prefix, with and without its slash, is forwarded (and still
    // needs a token where the entry requires one).
    assert_eq!(raw_get(&app, "/api/", "").await.0, 401);
    assert_eq!(raw_get(&app, "/api", "").await.0, 401);
    let login = app.login(APP1, "alice").await;
    let auth = format!("Authorization: Bearer {}\r\n", token(&login));
    for target in ["/api/", "/api", "/pub/", "/pub"] {
        let (status, body) = raw_get(&app, target, &auth).await;
        assert_eq!(status, 200, "{target}: {body}");
        let echoed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echoed["raw_uri"], target);
    }
    // Nothing the refused requests asked for reached the service.
    let seen = seen(&service).await;
    assert!(
        seen.iter().all(|s| !s.contains("secret")),
        "the service saw {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_origin_headers_come_only_from_wxauth() {
    let service = start_service();
    let app = gateway_app(&service).await;
    let spoofed = "X_Wxauth_User_Id: victim\r\n\
                   x-wxauth-openid: victim-openid\r\n\
                   X_WXAUTH_APPID: wx-victim\r\n\
                   X-Forwarded-For: 6.6.6.6\r\n\
                   X_Forwarded_For: 6.6.6.7\r\n\
                   X-Forwarded-Host: evil.example\r\n\
                   X-Forwarded-Proto: https\r\n\
                   Forwarded: for=6.6.6.6;proto=https\r\n\
                   X-Real-IP: 6.6.6.6\r\n\
                   X_Real_Ip: 6.6.6.6\r\n\
                   X-Custom: kept\r\n";
    // Anonymous, on the optional entry: no identity at all.
    let (status, body) = raw_get(&app, "/pub/whoami", spoofed).await;
    assert_eq!(status, 200, "{body}");
    let http = serde_json::from_str::<Value>(&body).unwrap()["http"].clone();
    for absent in [
        "HTTP_X_WXAUTH_USER_ID",
        "HTTP_X_WXAUTH_OPENID",
        "HTTP_X_WXAUTH_APPID",
        "HTTP_FORWARDED",
        "HTTP_X_REAL_IP",
        "HTTP_AUTHORIZATION",
    ] {
        assert!(
            http.get(absent).is_none(),
            "{absent} reached the service: {http}"
        );
    }
    assert_eq!(http["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{http}");
    assert_eq!(http["HTTP_X_FORWARDED_PROTO"], "http", "{http}");
    let host = app.url.trim_start_matches("http://");
    assert_eq!(http["HTTP_X_FORWARDED_HOST"], host, "{http}");
    assert_eq!(http["HTTP_X_CUSTOM"], "kept");

    // Signed in: exactly wxauth's identity, nothing merged into it.
    let login = app.login(APP1, "alice").await;
    let headers = format!("{spoofed}Authorization: Bearer {}\r\n", token(&login));
    let (status, body) = raw_get(&app, "/api/whoami", &headers).await;
    assert_eq!(status, 200, "{body}");
    let http = serde_json::from_str::<Value>(&body).unwrap()["http"].clone();
    assert_eq!(http["HTTP_X_WXAUTH_USER_ID"], login["user"]["id"], "{http}");
    assert_eq!(http["HTTP_X_WXAUTH_OPENID"], login["user"]["openid"]);
    assert_eq!(http["HTTP_X_WXAUTH_APPID"], APP1);
    assert_eq!(http["HTTP_X_FORWARDED_FOR"], "127.0.0.1");
    assert!(http.get("HTTP_AUTHORIZATION").is_none(), "{http}");

    // Headers a Connection header names are hop-by-hop: dropped.
    let (_, body) = raw_get(
        &app,
        "/pub/whoami",
        "X-Custom: dropped\r\nConnection: X-Custom\r\n",
    )
    .await;
    let http = serde_json::from_str::<Value>(&body).unwrap()["http"].clone();
    assert!(http.get("HTTP_X_CUSTOM").is_none(), "{http}");
}
