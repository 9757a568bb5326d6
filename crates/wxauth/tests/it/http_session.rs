//! Login, refresh, logout and authentication over HTTP, on both backends.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::app::on_both;
use crate::app::*;

on_both!(
    login_answers_the_contract_shape,
    login_input_errors,
    the_same_code_twice_answers_like_the_first,
    the_same_code_concurrently_is_exchanged_once,
    refresh_rotates_and_detects_reuse,
    refresh_tokens_of_the_first_format_still_work,
    logout_ends_the_session_at_once,
    cross_app_isolation,
);

async fn login_answers_the_contract_shape(app: TestApp) {
    let code = app.code(APP1, "alice");
    // appid left out: the default app.
    let r = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.header("x-request-id").is_some_and(|id| id.len() >= 32));
    let b = &r.body;
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 900);
    assert_eq!(b["refresh_expires_in"], 30 * 24 * 3600);
    assert_eq!(b["new_user"], true);
    assert!(b["refresh_token"].as_str().unwrap().starts_with("wxr_"));
    assert_eq!(b["access_token"].as_str().unwrap().split('.').count(), 3);
    let user = &b["user"];
    assert_eq!(user["appid"], APP1);
    assert_eq!(user["openid"], app.openid(APP1, "alice"));
    assert_eq!(
        user["unionid"],
        app.sim.user_info(APP1, "alice").unwrap()["unionid"]
    );
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "{keys:?}");
    assert!(
        !r.body.to_string().contains(&app.session_key(APP1, "alice")),
        "session_key must never leave the server"
    );

    // Again with a new code: the same user, not new.
    let again = app.login(APP1, "alice").await;
    assert_eq!(again["new_user"], false);
    assert_eq!(again["user"]["id"], user["id"]);

    let me = app.get("/v1/me", Some(token(&again))).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], user["id"]);
    assert_eq!(me.body["phone"], serde_json::Value::Null);
    assert_eq!(me.body["profile"], json!({}));
    let keys: Vec<&String> = me.body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 8, "{keys:?}");
}

async fn login_input_errors(app: TestApp) {
    let r = app.post("/v1/login", None, json!({})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    assert!(r.message().contains("code"), "{}", r.message());
    assert_eq!(r.body["request_id"].as_str(), r.header("x-request-id"));

    let r = app.post("/v1/login", None, json!({"code": ""})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));

    let r = app.post("/v1/login", None, json!({"code": 5})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));

    // The usual tutorial mistake: the client says who it is. Refused.
    let r = app
        .post(
            "/v1/login",
            None,
            json!({"code": app.code(APP1, "a"), "openid": "oSomeoneElse"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    assert!(r.message().contains("openid"), "{}", r.message());

    let r = app
        .post(
            "/v1/login",
            None,
            json!({"code": app.code(APP1, "a"), "appid": "wx9999999999999999"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "unknown_app"));

    let r = app
        .post(
            "/v1/login",
            None,
            json!({"code": "033CnGwb1KHhZw0tZfxb1Rs1xb1CnGwQ"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_code"));

    // A code of app 2 presented for app 1.
    let r = app
        .post(
            "/v1/login",
            None,
            json!({"code": app.code(APP2, "a"), "appid": APP1}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_code"));

    // An expired code.
    let code = app.code(APP1, "late");
    app.advance(Duration::from_secs(301));
    let r = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_code"));

    let resp = app
        .http
        .post(format!("{}/v1/login", app.url))
        .header("content-type", "application/json")
        .body("{\"code\": ")
        .send()
        .await
        .unwrap();
    let r = reply(resp).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));

    let resp = app
        .http
        .post(format!("{}/v1/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("code=abc")
        .send()
        .await
        .unwrap();
    let r = reply(resp).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    assert!(r.message().contains("JSON"));
}

async fn the_same_code_twice_answers_like_the_first(app: TestApp) {
    let code = app.code(APP1, "bob");
    let first = app.post("/v1/login", None, json!({"code": code})).await;
    let second = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(first.body["user"], second.body["user"]);
    assert_eq!(first.body["new_user"], true);
    assert_eq!(second.body["new_user"], true, "answered like the first");
    // Both sessions work.
    for r in [&first, &second] {
        assert_eq!(app.get("/v1/me", Some(token(&r.body))).await.status, 200);
    }
    assert_eq!(app.sim_calls("jscode2session"), 1);
}

async fn the_same_code_concurrently_is_exchanged_once(app: TestApp) {
    let code = app.code(APP1, "carol");
    // A slow WeChat, so all requests arrive while the first is in flight.
    app.sim
        .fault("jscode2session", None, Some(300), Some(1))
        .unwrap();
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, code) = (app.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            app.post("/v1/login", None, json!({"code": code})).await
        }));
    }
    let mut users = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        users.insert(r.body["user"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(users.len(), 1);
    assert_eq!(app.sim_calls("jscode2session"), 1);
}

async fn refresh_rotates_and_detects_reuse(app: TestApp) {
    let login = app.login(APP1, "dave").await;
    let r1 = refresh(&login).to_owned();
    let next = refresh_with(&app, &r1).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(next.body["new_user"], false);
    assert_eq!(next.body["user"]["id"], login["user"]["id"]);
    assert_ne!(next.body["refresh_token"], login["refresh_token"]);
    let r2 = refresh(&next.body).to_owned();
    let access2 = token(&next.body).to_owned();
    assert_eq!(app.get("/v1/me", Some(&access2)).await.status, 200);

    // The rotated token again: reuse. The whole session is revoked.
    let reuse = refresh_with(&app, &r1).await;
    assert_eq!(
        (reuse.status.as_u16(), reuse.error()),
        (401, "unauthorized")
    );
    assert_eq!(reuse.header("www-authenticate"), Some("Bearer"));
    let after = refresh_with(&app, &r2).await;
    assert_eq!(
        after.status, 401,
        "the newest refresh token of that session is dead too"
    );
    let me = app.get("/v1/me", Some(&access2)).await;
    assert_eq!(me.status, 401, "and its access token, at once");
    assert_eq!(app.get("/v1/me", Some(token(&login))).await.status, 401);

    // Garbage and unknown refresh tokens.
    for bad in [
        "",
        "nope",
        "wxr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "wxr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = refresh_with(&app, bad).await;
        assert_eq!(r.status, 401, "{bad}");
    }
    let r = app.post("/v1/token/refresh", None, json!({})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
}

/// A refresh token issued before refresh tokens began with their issue
/// time (`wxr_` + 32 random bytes, stored as its SHA-256) is still good
/// for its lifetime: rotated into one of the current format, and detected
/// when presented again.
async fn refresh_tokens_of_the_first_format_still_work(app: TestApp) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::Digest;
    use wechat_miniapp::Clock;

    let login = app.login(APP1, "frank").await;
    let current = refresh(&login);
    assert_eq!(current.len(), "wxr_".len() + 51, "{current}");
    let claims = token(&login).split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let first_format = format!("wxr_{}", URL_SAFE_NO_PAD.encode([42u8; 32]));
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    let now_ms = app.clock.now_ms();
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha2::Sha256::digest(first_format.as_bytes()).to_vec())
    .bind(claims["sid"].as_str().unwrap())
    .bind(now_ms)
    .bind(now_ms + 3_600_000)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let next = refresh_with(&app, &first_format).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(next.body["user"]["id"], login["user"]["id"]);
    assert_eq!(refresh(&next.body).len(), "wxr_".len() + 51);
    let again = refresh_with(&app, &first_format).await;
    assert_eq!(again.status, 401, "a rotated first-format token is reuse");
    let newest = refresh_with(&app, refresh(&next.body)).await;
    assert_eq!(newest.status, 401, "and reuse revoked the whole session");
}

/// `POST /v1/token/refresh` with `refresh_token`.
async fn refresh_with(app: &TestApp, refresh_token: &str) -> Reply {
    app.post(
        "/v1/token/refresh",
        None,
        json!({ "refresh_token": refresh_token }),
    )
    .await
}

async fn logout_ends_the_session_at_once(app: TestApp) {
    let a = app.login(APP1, "erin").await;
    let b = app.login(APP1, "erin").await;
    let r = app
        .call(Method::POST, "/v1/logout", Some(token(&a)), None)
        .await;
    assert_eq!(r.status, 204);
    let me = app.get("/v1/me", Some(token(&a))).await;
    assert_eq!((me.status.as_u16(), me.error()), (401, "unauthorized"));
    assert_eq!(me.header("www-authenticate"), Some("Bearer"));
    let r = refresh_with(&app, refresh(&a)).await;
    assert_eq!(r.status, 401);
    // The user's other session is untouched.
    assert_eq!(app.get("/v1/me", Some(token(&b))).await.status, 200);
    let r = app.call(Method::POST, "/v1/logout", None, None).await;
    assert_eq!(r.status, 401);
}

async fn cross_app_isolation(app: TestApp) {
    let one = app.login(APP1, "frank").await;
    let two = app.login(APP2, "frank").await;
    assert_ne!(one["user"]["id"], two["user"]["id"]);
    assert_ne!(one["user"]["openid"], two["user"]["openid"]);
    assert_eq!(one["user"]["unionid"], two["user"]["unionid"]);
    let me2 = app.get("/v1/me", Some(token(&two))).await;
    assert_eq!(me2.body["appid"], APP2);
    assert_eq!(me2.body["id"], two["user"]["id"]);
    // App 2's token on a request that says it is app 1: refused.
    let resp = app
        .http
        .get(format!("{}/v1/me", app.url))
        .bearer_auth(token(&two))
        .header("x-wxauth-appid", APP1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn unauthorized_variants() {
    let app = spawn_app().await;
    let login = app.login(APP1, "gina").await;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some("Basic Zm9vOmJhcg==".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        ("tampered", Some(format!("Bearer {}x", token(&login)))),
    ];
    for (what, header) in cases {
        let mut req = app.http.get(format!("{}/v1/me", app.url));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let r = reply(req.send().await.unwrap()).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (401, "unauthorized"),
            "{what}"
        );
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
    }
    // Expired: move past the access token's lifetime.
    app.advance(Duration::from_secs(901));
    let r = app.get("/v1/me", Some(token(&login))).await;
    assert_eq!(r.status, 401);
    // The refresh token still works and gives a fresh access token.
    let next = refresh_with(&app, refresh(&login)).await;
    assert_eq!(next.status, 200);
    assert_eq!(app.get("/v1/me", Some(token(&next.body))).await.status, 200);
}

#[tokio::test]
async fn login_rate_limit_per_ip() {
    let app = spawn_app_with(Options {
        login_per_ip_per_minute: 2,
        ..Options::default()
    })
    .await
    .unwrap();
    app.login(APP1, "h1").await;
    app.login(APP1, "h2").await;
    let r = app
        .post("/v1/login", None, json!({"code": app.code(APP1, "h3")}))
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (429, "rate_limited"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_a_given_openid_logs_in_as_that_openid() {
    // What a user migrated from LeanCloud or CloudBase does: the simulator
    // gives wx.login's code for the openid they had there.
    let app = spawn_app().await;
    let code = app
        .sim
        .login_code_for_openid(APP1, "oLegacyOpenid_0001", None)
        .unwrap();
    let r = app
        .post("/v1/login", None, json!({"code": code, "appid": APP1}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["user"]["openid"], "oLegacyOpenid_0001");
    assert!(r.body["user"]["unionid"].is_null(), "{:?}", r.body);
    assert_eq!(r.body["new_user"], true);
    let code = app
        .sim
        .login_code_for_openid(APP1, "oLegacyOpenid_0001", Some("oUnion_0001"))
        .unwrap();
    let again = app
        .post("/v1/login", None, json!({"code": code, "appid": APP1}))
        .await;
    assert_eq!(again.body["new_user"], false);
    assert_eq!(again.body["user"]["id"], r.body["user"]["id"]);
    assert_eq!(again.body["user"]["unionid"], "oUnion_0001");
}
