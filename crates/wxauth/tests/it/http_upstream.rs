//! What the client sees when WeChat misbehaves.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::app::*;

async fn login_status(app: &TestApp, user: &str) -> Reply {
    let code = app.code(APP1, user);
    app.post("/v1/login", None, json!({"code": code})).await
}

#[tokio::test]
async fn busy_is_503_with_retry_after() {
    let app = spawn_app().await;
    app.sim
        .fault("jscode2session", Some(-1), None, None)
        .unwrap();
    let r = login_status(&app, "a").await;
    assert_eq!(
        (r.status.as_u16(), r.error()),
        (503, "upstream_unavailable")
    );
    assert!(r.header("retry-after").is_some());
    // The client retries after WeChat recovers: the same code still works.
    app.sim.clear_faults();
    let code = app.code(APP1, "a2");
    app.sim
        .fault("jscode2session", Some(-1), None, Some(5))
        .unwrap();
    let r = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!(r.status, 503);
    app.sim.clear_faults();
    let r = app.post("/v1/login", None, json!({"code": code})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn blocked_user_is_403() {
    let app = spawn_app().await;
    app.sim
        .fault("jscode2session", Some(40226), None, Some(1))
        .unwrap();
    let r = login_status(&app, "b").await;
    assert_eq!((r.status.as_u16(), r.error()), (403, "user_blocked"));
}

#[tokio::test]
async fn wechat_rate_limit_is_429() {
    let app = spawn_app().await;
    app.sim
        .fault("jscode2session", Some(45011), None, Some(1))
        .unwrap();
    let r = login_status(&app, "c").await;
    assert_eq!((r.status.as_u16(), r.error()), (429, "rate_limited"));
    assert_eq!(r.header("retry-after"), Some("60"));
}

#[tokio::test]
async fn wrong_secret_is_502() {
    let app = spawn_app().await;
    app.sim
        .fault("jscode2session", Some(40125), None, Some(1))
        .unwrap();
    let r = login_status(&app, "d").await;
    assert_eq!((r.status.as_u16(), r.error()), (502, "upstream_error"));
    assert!(r.message().contains("40125"));
}

#[tokio::test]
async fn slow_wechat_is_503_within_the_timeout() {
    let app = spawn_app_with(Options {
        wechat_timeout_ms: 300,
        ..Options::default()
    })
    .await
    .unwrap();
    app.sim
        .fault("jscode2session", None, Some(10_000), None)
        .unwrap();
    let started = Instant::now();
    let r = login_status(&app, "e").await;
    assert_eq!(
        (r.status.as_u16(), r.error()),
        (503, "upstream_unavailable")
    );
    assert!(r.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The phone API too, token fetch included.
    app.sim.clear_faults();
    let t = token(&app.login(APP1, "f").await).to_owned();
    app.sim
        .fault("stable_token", None, Some(10_000), None)
        .unwrap();
    let code = app.sim.phone_code(APP1, "f", None).unwrap();
    let started = Instant::now();
    let r = app
        .post("/v1/me/phone", Some(&t), json!({"code": code}))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error()),
        (503, "upstream_unavailable")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
