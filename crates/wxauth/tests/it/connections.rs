//! The connection side: timeouts, the connection cap, bounded shutdown, and
//! oversized heads, over raw TCP as a hostile client would send them.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::app::*;

fn addr(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes (or `limit` passes); returns what came.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into(), false),
        }
    }
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn spawn_with(tweak: fn(&mut wxauth::config::Config)) -> TestApp {
    spawn_app_tweaked(tweak).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_the_cap_answers_clearly() {
    let app = spawn_with(|c| {
        c.http.max_connections = 8;
        c.http.header_read_timeout_ms = 700;
    })
    .await;
    // Eight connections stuck in their headers fill the cap (busy: none
    // can be closed to make room).
    let mut silent = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        silent.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The ninth gets a clear answer, not a hang.
    let r = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "server_busy");
    // The stuck ones are closed by the header timeout, and service resumes.
    for s in &mut silent {
        let (_, closed) = read_to_close(s, Duration::from_secs(3)).await;
        assert!(
            closed,
            "a stuck connection stayed open past header_read_timeout"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    let r = fresh
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn headers_sent_slowly_are_cut_off() {
    let app = spawn_with(|c| c.http.header_read_timeout_ms = 500).await;
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    let started = Instant::now();
    // One header byte every 100 ms: never finishes within 500 ms.
    let mut closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        let (_, c) = read_to_close(&mut s, Duration::from_secs(2)).await;
        closed = c;
    }
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let app = spawn_with(|c| {
        c.http.idle_timeout_ms = 400;
        c.http.header_read_timeout_ms = 5_000;
    })
    .await;
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    // Requests 200 ms apart keep it open past the idle timeout.
    for _ in 0..4 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then silence: closed after about 400 ms, well before the header timeout.
    let started = Instant::now();
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_trickling_body_is_a_408_not_a_503() {
    let app = spawn_with(|c| c.http.body_timeout_ms = 500).await;
    let login = app.login(APP1, "slow").await;
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST /v1/data/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{{",
        token(&login)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let writer = tokio::spawn({
        let mut s2 = s.into_split();
        async move {
            for _ in 0..30 {
                if s2.1.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            s2.0
        }
    });
    let mut read_half = writer.await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = read_half.read(&mut buf).await.unwrap_or(0);
    let response = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(status_of(&response), 408, "{response}");
    assert_eq!(body_of(&response)["error"], "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn oversized_targets_and_headers_get_the_envelope() {
    let app = spawn_with(|c| {
        c.http.max_uri_bytes = 1024;
        c.http.max_header_bytes = 4096;
    })
    .await;
    let r = app
        .http
        .get(format!("{}/healthz?{}", app.url, "q".repeat(2000)))
        .send()
        .await
        .unwrap();
    let r = reply(r).await;
    assert_eq!((r.status.as_u16(), r.error()), (414, "uri_too_long"));
    assert!(r.message().contains("http.max_uri_bytes"));
    let r = app
        .http
        .get(format!("{}/healthz", app.url))
        .header("x-big", "h".repeat(5000))
        .send()
        .await
        .unwrap();
    let r = reply(r).await;
    assert_eq!((r.status.as_u16(), r.error()), (431, "header_too_large"));
    assert_eq!(r.body["request_id"].as_str(), r.header("x-request-id"));
    // Far past hyper's buffer, and past 100 header lines, the request never
    // reaches the application, but the answer is the same envelope, and
    // the connection is closed: no bare 431, no hang.
    let many_lines: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    for head in [format!("X-Huge: {}\r\n", "h".repeat(64 * 1024)), many_lines] {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{head}\r\n");
        let _ = s.write_all(request.as_bytes()).await;
        let (response, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
        assert!(closed);
        assert_eq!(status_of(&response), 431, "{response}");
        let body = body_of(&response);
        assert_eq!(body["error"], "header_too_large", "{response}");
        assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    // 90 header lines are fine.
    let lines: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{lines}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let (response, _) = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status_of(&response), 200, "{response}");
    // Duplicate or negative Content-Length: refused by hyper (400), closed.
    for bad in [
        "Content-Length: 2\r\nContent-Length: 3",
        "Content-Length: -1",
    ] {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        let req = format!("POST /v1/login HTTP/1.1\r\nHost: x\r\n{bad}\r\n\r\n{{}}");
        s.write_all(req.as_bytes()).await.unwrap();
        let (response, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
        assert!(closed, "{bad}");
        assert_eq!(status_of(&response), 400, "{bad}: {response}");
    }
}

#[tokio::test]
async fn sigterm_with_half_sent_requests_ends_within_the_grace_period() {
    use crate::spawn::{ConfigFile, start_serve, stop};
    let clock = wechat_miniapp::OffsetClock::new();
    let (_sim, sim_url) = spawn_sim(&clock).await;
    let dir = crate::db::temp_dir();
    let config = ConfigFile {
        tail: "[http]\nshutdown_grace_ms = 1000\nheader_read_timeout_ms = 60000\n".into(),
        ..ConfigFile::sqlite(&dir.0, &sim_url)
    }
    .write(&dir.0);
    let server = start_serve(&config, "warn");
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut half = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&address).await.unwrap();
        s.write_all(b"POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Len")
            .await
            .unwrap();
        half.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let log = stop(server); // SIGTERM; asserts a clean exit
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?}: {log}"
    );
    drop(half);
}

/// A connection from `ip` (any of 127.0.0.0/8) to the app.
async fn connect_from(app: &TestApp, ip: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
    socket.connect(addr(app).parse().unwrap()).await.unwrap()
}

/// One request on a kept-alive connection: the status, or None when the
/// server closed it without an answer.
async fn request_on(s: &mut TcpStream) -> Option<u16> {
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(3), s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + length {
                return Some(status_of(&text));
            }
        }
    }
}

/// Issue 27, item 4: one address cannot hold the server, idle connections
/// make way for new ones before anyone gets a 503, and trusted proxies are
/// not capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_server_and_idle_connections_make_way() {
    let app = spawn_with(|c| {
        c.http.max_connections = 16;
        c.http.max_connections_per_address = 8;
        c.http.trusted_proxies = vec!["127.0.0.5".into()];
    })
    .await;
    // The hostile address: eight kept-alive connections, the rest closed
    // at once without an answer.
    let mut hostile = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from(&app, [127, 0, 0, 2]).await;
        assert_eq!(request_on(&mut s).await, Some(200));
        hostile.push(s);
    }
    for _ in 0..12 {
        let mut s = connect_from(&app, [127, 0, 0, 2]).await;
        assert_eq!(request_on(&mut s).await, None, "past its address's cap");
    }
    // Another address fills the rest of the server with idle connections.
    let mut honest = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from(&app, [127, 0, 0, 3]).await;
        assert_eq!(request_on(&mut s).await, Some(200));
        honest.push(s);
    }
    // Full, but everyone waits idle: newcomers get through, each making
    // one idle connection close.
    let mut newcomers = Vec::new();
    for i in 0..4u8 {
        let mut s = connect_from(&app, [127, 0, 0, 10 + i]).await;
        assert_eq!(request_on(&mut s).await, Some(200), "newcomer {i}");
        newcomers.push(s);
    }
    let mut closed = 0;
    for s in hostile.iter_mut().chain(honest.iter_mut()) {
        if request_on(s).await.is_none() {
            closed += 1;
        }
    }
    assert_eq!(closed, 4, "idle connections that made way");
    // Those of the addresses holding the most went first.
    for s in &mut newcomers {
        assert_eq!(request_on(s).await, Some(200));
    }
    // A trusted proxy carries many clients: no per-address cap.
    let mut proxied = Vec::new();
    for _ in 0..12 {
        let mut s = connect_from(&app, [127, 0, 0, 5]).await;
        assert_eq!(request_on(&mut s).await, Some(200));
        proxied.push(s);
    }
}
