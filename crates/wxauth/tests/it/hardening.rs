//! Hostile input, one test per finding of the hardening issue: each fails
//! on the code before its fix.

use reqwest::Method;
use serde_json::{Value, json};

use crate::app::*;

/// Posts raw bytes as JSON.
async fn post_raw(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> Reply {
    let mut req = app
        .http
        .post(format!("{}{path}", app.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    reply(req.send().await.unwrap()).await
}

// ----- 1. wrong-typed fields are named, values never echoed -----

#[tokio::test]
async fn wrong_typed_fields_are_named_by_path() {
    let app = spawn_app().await;
    let cases = [
        (r#"{"code": 5}"#, "`code` must be a string, not a number"),
        (r#"{"code": null}"#, "`code` must be a string, not null"),
        (
            r#"{"code": ["a"]}"#,
            "`code` must be a string, not an array",
        ),
        (
            r#"{"code": {"a": 1}}"#,
            "`code` must be a string, not an object",
        ),
        (
            r#"{"code": false}"#,
            "`code` must be a string, not a boolean",
        ),
        (
            r#"{"code": "abc", "appid": 12}"#,
            "`appid` must be a string, not a number",
        ),
    ];
    for (body, want) in cases {
        let r = post_raw(&app, "/v1/login", None, body).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "invalid_request"),
            "{body}"
        );
        assert_eq!(r.message(), want, "{body}");
    }
    // A bare JSON string: the value (a login code, say) is not echoed.
    let code = app.code(APP1, "bare");
    let r = post_raw(&app, "/v1/login", None, &format!("\"{code}\"")).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    assert_eq!(r.message(), "the body must be a JSON object, not a string");
    assert!(!r.body.to_string().contains(&code));

    let login = app.login(APP1, "typed").await;
    let t = token(&login);
    let r = post_raw(&app, "/v1/me/phone", Some(t), r#"{"code": 5}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "`code` must be a string, not a number");
    let r = post_raw(
        &app,
        "/v1/me/decrypt",
        Some(t),
        r#"{"encrypted_data": "x", "iv": []}"#,
    )
    .await;
    assert_eq!(r.message(), "`iv` must be a string, not an array");
    let r = post_raw(&app, "/v1/token/refresh", None, r#"{"refresh_token": 1.5}"#).await;
    assert_eq!(
        r.message(),
        "`refresh_token` must be a string, not a number"
    );
    let r = app
        .call(
            Method::PATCH,
            "/v1/me",
            Some(t),
            Some(json!({"profile": "x"})),
        )
        .await;
    assert_eq!(r.message(), "`profile` must be a JSON object");
    // serde reads a struct from an array of its fields in order; a body is
    // an object, so an array is refused before that (schemathesis found
    // `PATCH /v1/me` taking `[{}]` as `{"profile": {}}`).
    for (method, path, body) in [
        (Method::PATCH, "/v1/me", json!([{}])),
        (Method::POST, "/v1/me/phone", json!(["code"])),
        (Method::POST, "/v1/data/notes", json!([1])),
    ] {
        let r = app.call(method, path, Some(t), Some(body)).await;
        assert_eq!(
            (r.status.as_u16(), r.error(), r.message()),
            (
                400,
                "invalid_request",
                "the body must be a JSON object, not an array"
            ),
            "{path}"
        );
    }
    let code = app.code(APP1, "in-an-array");
    let r = post_raw(&app, "/v1/login", None, &format!("[\"{code}\"]")).await;
    assert_eq!(r.message(), "the body must be a JSON object, not an array");
    assert!(!r.body.to_string().contains(&code));
    let r = app
        .call(
            Method::PATCH,
            "/v1/me",
            Some(t),
            Some(json!({"profile": {"nickname": "A"}, "extra": 1})),
        )
        .await;
    assert!(
        r.message().starts_with("`extra` is not a known field"),
        "{}",
        r.message()
    );
    let r = post_raw(&app, "/v1/login", None, r#"{"code": "abc"#).await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("line 1 column"), "{}", r.message());
    assert!(!r.message().contains("abc"), "{}", r.message());
}

// ----- 6. one nesting limit, for create and replay -----

fn nested(depth: usize) -> String {
    // {"a":{"a":...{"a":1}...}} : `depth` objects.
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

async fn create_raw(app: &TestApp, token: &str, key: &str, body: &str) -> Reply {
    let resp = app
        .http
        .post(format!("{}/v1/data/deep", app.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    reply(resp).await
}

#[tokio::test]
async fn nesting_is_limited_once_and_replays_never_fail() {
    let app = spawn_app().await;
    let login = app.login(APP1, "deep").await;
    let t = token(&login);
    // 127 deep used to be stored (201) and then replayed as a 500.
    for _ in 0..2 {
        let r = create_raw(&app, t, "k-127", &nested(127)).await;
        assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
        assert!(
            r.message().contains("more than 32 levels"),
            "{}",
            r.message()
        );
    }
    // At the limit: stored, and the replay is the first answer byte for byte.
    let first = create_raw(&app, t, "k-32", &nested(32)).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let again = create_raw(&app, t, "k-32", &nested(32)).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("etag"), Some("\"1\""));
    // After the document changed or is gone, the replay is still the first answer.
    let id = first.body["id"].as_str().unwrap();
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/data/deep/{id}"),
            Some(t),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let after = create_raw(&app, t, "k-32", &nested(32)).await;
    assert_eq!((after.status.as_u16(), &after.body), (201, &first.body));
    // One level more, anywhere in any body: refused with the limit named.
    let r = create_raw(&app, t, "k-33", &nested(33)).await;
    assert_eq!(r.status, 400);
    let r = app
        .call(
            Method::PATCH,
            "/v1/me",
            Some(t),
            Some(
                serde_json::from_str(&format!("{{\"profile\":{{\"x\":{}}}}}", nested(31))).unwrap(),
            ),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.message().contains("limits.json_depth"), "{}", r.message());
}

// ----- 7. client request ids cannot forge log fields -----

#[tokio::test]
async fn unfit_client_request_ids_are_replaced() {
    let app = spawn_app().await;
    for (sent, kept) in [
        ("abc-123_x.y:z", true),
        ("123 status=200 path=/v1/admin", false),
        ("a\"b", false),
        (&"x".repeat(65) as &str, false),
        (&"x".repeat(8192) as &str, false),
        (&"y".repeat(64) as &str, true),
    ] {
        let resp = app
            .http
            .get(format!("{}/healthz", app.url))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let id = resp
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        if kept {
            assert_eq!(id, sent);
        } else {
            assert_ne!(id, sent);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        }
    }
}

#[tokio::test]
async fn the_text_log_quotes_client_input() {
    use crate::process::*;
    let (_sim, _dir, _config, server, http) = setup_at("info").await;
    let forged = "123 status=200 path=/v1/admin";
    let resp = http
        .get(format!("{}/v1/me", server.url))
        .header("x-request-id", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let log = stop(server);
    assert!(!log.contains(forged), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("no line with {id}: {log}"));
    assert!(line.contains(&format!("request_id=\"{id}\"")), "{line}");
    assert!(line.contains("path=\"/v1/me\""), "{line}");
}

// ----- 8. no secret in Debug -----

#[test]
fn debug_output_of_config_settings_and_sessions_holds_no_secret() {
    use wxauth::auth::Session;
    use wxauth::http::SessionView;
    use wxauth::store::UserRecord;

    let password = "pg-Pa55word-xyz";
    let mut config = test_config(
        &format!("postgres://wx:{password}@127.0.0.1/test?sslmode=disable&password={password}"),
        "http://127.0.0.1:1",
    );
    config.apps[1].secret = Some("app-secret-0123456789abcdef".into());
    let signing = b64_key(7);
    let sealing = b64_key(9);
    let settings = config.resolve().unwrap();
    let access = "eyJhbGciOi.access-token-body.signature-part";
    let refresh_token = "wxr_refresh-token-secret-part";
    let record = UserRecord {
        id: "u1".into(),
        appid: APP1.into(),
        openid: "o1".into(),
        unionid: None,
        session_key_enc: b"sealed-session-key".to_vec(),
        phone_enc: Some(b"sealed-phone".to_vec()),
        profile: "{}".into(),
        profile_version: 0,
        created_at: 0,
        last_login_at: 0,
    };
    let session = Session {
        access_token: access.into(),
        expires_in: 900,
        refresh_token: refresh_token.into(),
        refresh_expires_in: 60,
        new_user: true,
        user: record.clone().into(),
    };
    let shown = [
        format!("{config:?}"),
        format!("{:?}", config.apps),
        format!("{:?}", config.tokens.signing_keys),
        format!("{settings:?}"),
        format!("{session:?}"),
        format!("{record:?}"),
        format!("{:?}", SessionView::from(session.clone())),
    ];
    for text in &shown {
        for secret in [
            password,
            SECRET1,
            "app-secret-0123456789abcdef",
            &signing,
            &sealing,
            access,
            refresh_token,
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    // Still useful: the URL's host and the app ids show.
    assert!(shown[3].contains("127.0.0.1/test"), "{}", shown[3]);
    assert!(shown[0].contains(APP1));
    // And the real values are still what the service uses.
    let view = serde_json::to_value(SessionView::from(session)).unwrap();
    assert_eq!(view["access_token"], access);
    assert_eq!(view["refresh_token"], refresh_token);
    let _: Value = view;
}

// ----- 5. /metrics: bounded labels, no growth per request -----

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn series(http: &reqwest::Client, url: &str) -> (usize, usize) {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = text
        .lines()
        .filter(|l| l.starts_with("wxauth_http_"))
        .count();
    (series, text.len())
}

/// `n` requests from 8 concurrent clients; request `i` uses `method(i)`.
async fn burst(http: &reqwest::Client, url: &str, n: usize, method: fn(usize) -> Method) {
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let http = http.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in (worker..n).step_by(8) {
                let resp = http
                    .request(method(i), format!("{url}/healthz"))
                    .send()
                    .await
                    .unwrap();
                let _ = resp.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_flat_without_a_scrape() {
    use crate::process::*;
    let (_sim, _dir, _config, server, http) = setup().await;
    let pid = server.child.id();
    // Warm up every label set the run will use (and the allocator).
    burst(&http, &server.url, 2_000, |i| {
        if i % 5 == 0 {
            Method::from_bytes(format!("X{i:05}").as_bytes()).unwrap()
        } else {
            Method::GET
        }
    })
    .await;
    series(&http, &server.url).await; // the scrape's own label set
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (before_series, before_len) = series(&http, &server.url).await;
    let before_rss = rss_kib(pid);
    // 10,000 requests, 2,000 of them with methods nobody has seen, no scrape.
    burst(&http, &server.url, 10_000, |i| {
        if i % 5 == 0 {
            Method::from_bytes(format!("Y{i:05}").as_bytes()).unwrap()
        } else {
            Method::GET
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after_rss = rss_kib(pid);
    let (after_series, after_len) = series(&http, &server.url).await;
    assert_eq!(after_series, before_series, "label sets must not grow");
    assert!(
        after_len < before_len + 512,
        "{before_len} -> {after_len} bytes"
    );
    assert!(
        after_rss < before_rss + 2048,
        "RSS grew from {before_rss} KiB to {after_rss} KiB over 10,000 requests"
    );
    let text = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("wxauth_http_request_duration_seconds_bucket"),
        "histograms, not summaries"
    );
    assert!(text.contains("method=\"other\""));
    assert!(!text.contains("Y0"), "no invented method is a label");
    stop(server);
}

// ----- 2. X-Forwarded-For: only trusted proxies' entries count -----

async fn login_from(app: &TestApp, forwarded_for: &str, code: &str) -> Reply {
    let resp = app
        .http
        .post(format!("{}/v1/login", app.url))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    reply(resp).await
}

#[tokio::test]
async fn rotating_the_left_most_forwarded_address_gets_no_new_limit() {
    let app = spawn_app_with(Options {
        login_per_ip_per_minute: 5,
        tweak: |c| c.http.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // The client writes the left part; our proxies append the real address.
    let mut ok = 0;
    for n in 0..20 {
        let code = app.code(APP1, &format!("xff{n}"));
        let r = login_from(
            &app,
            &format!("198.51.100.{n}, 203.0.113.9, 10.0.0.2"),
            &code,
        )
        .await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => assert_eq!(r.error(), "rate_limited"),
            other => panic!("{other}: {:?}", r.body),
        }
    }
    assert_eq!(
        ok, 5,
        "the limit of 5 holds for 203.0.113.9 however the left part changes"
    );
    // Another real client behind the same proxies has its own budget.
    let r = login_from(&app, "203.0.113.10", &app.code(APP1, "other")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn without_trusted_proxies_forwarded_for_is_ignored() {
    let app = spawn_app_with(Options {
        login_per_ip_per_minute: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for n in 0..5 {
        let code = app.code(APP1, &format!("peer{n}"));
        statuses.push(
            login_from(&app, &format!("198.51.100.{n}"), &code)
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

#[test]
fn the_old_boolean_is_refused_with_a_pointer_to_the_list() {
    let mut c = test_config("sqlite://x.db", "http://127.0.0.1:1");
    c.http.trust_forwarded_for = Some(true);
    let e = c.resolve().unwrap_err().to_string();
    assert!(e.contains("trusted_proxies"), "{e}");
    let mut c = test_config("sqlite://x.db", "http://127.0.0.1:1");
    c.http.trusted_proxies = vec!["10.0.0.0/33".into()];
    let e = c.resolve().unwrap_err().to_string();
    assert!(e.contains("http.trusted_proxies[0]"), "{e}");
}

// ----- 3. one address cannot lock everyone else out of login -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_leaves_logins_from_others_working() {
    let app = std::sync::Arc::new(
        spawn_app_with(Options {
            // As in `wxauth dev`: the per-address limit out of the way.
            login_per_ip_per_minute: 100_000,
            tweak: |c| {
                c.limits.login_per_app_per_second = 30;
                c.http.trusted_proxies = vec!["127.0.0.1".into()];
            },
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for worker in 0..16 {
        let app = app.clone();
        let stop = stop.clone();
        flood.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 5_000 {
                // Well-formed garbage (costs a WeChat call until refused) and
                // malformed garbage (refused before any budget).
                let code = if sent.is_multiple_of(2) {
                    format!("garbage{worker}x{sent}")
                } else {
                    format!("bad code {sent}!")
                };
                let r = login_from(&app, "192.0.2.66", &code).await;
                assert!([400, 429].contains(&r.status.as_u16()), "{:?}", r.body);
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Real users, from 40 other addresses, during the flood.
    let mut failed = Vec::new();
    for n in 0..40 {
        let code = app.code(APP1, &format!("real{n}"));
        let r = login_from(&app, &format!("203.0.113.{n}"), &code).await;
        if r.status != 200 {
            failed.push((n, r.status.as_u16(), r.message().to_owned()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for f in flood {
        sent += f.await.unwrap();
    }
    assert!(sent > 500, "the flood sent {sent}");
    assert!(
        failed.is_empty(),
        "logins from other addresses failed: {failed:?}"
    );
    // The flood cost WeChat a handful of calls, not thousands.
    let calls = app.sim_calls("jscode2session");
    assert!(calls < 40 + 30, "{calls} jscode2session calls");
}

// ----- the replay window of a used login code -----

#[tokio::test]
async fn a_used_code_is_answered_like_the_first_only_within_the_replay_window() {
    let app = spawn_app_with(Options {
        tweak: |c| c.limits.login_code_replay_secs = 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let code = app.code(APP1, "replayed");
    let first = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!(first.status, 200);
    app.advance(std::time::Duration::from_secs(9));
    let retry = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.body["user"]["id"], first.body["user"]["id"]);
    // 11 s after: the code is WeChat's business again, which says it was used.
    app.advance(std::time::Duration::from_secs(2));
    let late = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!((late.status.as_u16(), late.error()), (400, "invalid_code"));
    assert_eq!(app.sim_calls("jscode2session"), 2);
}

// ----- 10. storage per user is bounded: collections and bytes -----

async fn per_user_quota(db: Db) {
    let Some(app) = spawn_app_with(Options {
        db,
        tweak: |c| {
            c.limits.collections_per_user = 3;
            // Each document costs its JSON and 512 bytes of row overhead.
            c.limits.bytes_per_user = 6000;
        },
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let login = app.login(APP1, "quota").await;
    let t = token(&login);
    let mut ids = Vec::new();
    for c in ["a", "b", "c"] {
        let r = app
            .post(&format!("/v1/data/{c}"), Some(t), json!({"n": 1}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push((c, r.body["id"].as_str().unwrap().to_owned()));
    }
    // More documents in the same collections are fine; a 4th collection is not.
    let r = app.post("/v1/data/a", Some(t), json!({"n": 2})).await;
    assert_eq!(r.status, 201);
    let r = app.post("/v1/data/d", Some(t), json!({"n": 1})).await;
    assert_eq!((r.status.as_u16(), r.error()), (409, "limit_exceeded"));
    assert!(
        r.message().contains("limits.collections_per_user"),
        "{}",
        r.message()
    );
    // Emptying a collection makes room for another.
    let (c, id) = &ids[1];
    let r = app
        .call(Method::DELETE, &format!("/v1/data/{c}/{id}"), Some(t), None)
        .await;
    assert_eq!(r.status, 204);
    let r = app.post("/v1/data/d", Some(t), json!({"n": 1})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Bytes: 6000 in all; four small documents hold 4 × ~520.
    let big = json!({"text": "x".repeat(2500)});
    let r = app.post("/v1/data/a", Some(t), big.clone()).await;
    assert_eq!(r.status, 201);
    let big_id = r.body["id"].as_str().unwrap().to_owned();
    let r = app.post("/v1/data/a", Some(t), big.clone()).await;
    assert_eq!((r.status.as_u16(), r.error()), (409, "limit_exceeded"));
    assert!(
        r.message().contains("limits.bytes_per_user"),
        "{}",
        r.message()
    );
    // A replace that grows past the quota is refused; one that shrinks passes.
    let (c, id) = &ids[0];
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/data/{c}/{id}"),
            Some(t),
            Some(big.clone()),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (409, "limit_exceeded"));
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/data/a/{big_id}"),
            Some(t),
            Some(json!({"small": 1})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app.post("/v1/data/a", Some(t), big).await;
    assert_eq!(r.status, 201, "the shrink made room: {:?}", r.body);
    // Another user has a quota of their own.
    let other = app.login(APP1, "quota-other").await;
    let r = app
        .post(
            "/v1/data/z",
            Some(token(&other)),
            json!({"text": "y".repeat(2500)}),
        )
        .await;
    assert_eq!(r.status, 201);
    // Empty documents are not free: each costs 2 bytes of JSON and 512 of
    // overhead, so 6000 bytes hold 11 of them.
    let empty = app.login(APP1, "quota-empty").await;
    let mut stored = 0;
    loop {
        let r = app.post("/v1/data/e", Some(token(&empty)), json!({})).await;
        if r.status != 201 {
            assert_eq!((r.status.as_u16(), r.error()), (409, "limit_exceeded"));
            break;
        }
        stored += 1;
        assert!(stored <= 100, "empty documents cost nothing");
    }
    assert_eq!(stored, 6000 / (2 + 512));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_quota_sqlite() {
    per_user_quota(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_quota_postgres() {
    per_user_quota(Db::Postgres).await;
}
