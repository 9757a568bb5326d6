//! Health, readiness, metrics, and the framework's own errors in our shape.

use reqwest::Method;
use serde_json::json;

use crate::app::*;

#[tokio::test]
async fn health_ready_metrics() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (200, json!({"status": "ok"}))
    );
    let r = app.get("/readyz", None).await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (200, json!({"status": "ready", "redis": "not_configured"}))
    );
    app.login(APP1, "m").await;
    let text = app.metrics().await;
    assert!(text.contains("wxauth_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/login\""), "{text}");
    assert!(!text.contains(&app.session_key(APP1, "m")));
}

#[tokio::test]
async fn framework_errors_use_the_envelope() {
    let app = spawn_app().await;
    let r = app.get("/nope", None).await;
    assert_eq!((r.status.as_u16(), r.error()), (404, "not_found"));
    assert_eq!(r.body["request_id"].as_str(), r.header("x-request-id"));
    let r = app.call(Method::DELETE, "/v1/login", None, None).await;
    assert_eq!((r.status.as_u16(), r.error()), (405, "method_not_allowed"));
    let big = json!({"code": "x".repeat(70 * 1024)});
    let r = app.post("/v1/login", None, big).await;
    assert_eq!((r.status.as_u16(), r.error()), (413, "payload_too_large"));
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(format!("{}/v1/me", app.url))
        .header("x-request-id", "client-abc-123")
        .send()
        .await
        .unwrap();
    let r = reply(resp).await;
    assert_eq!(r.header("x-request-id"), Some("client-abc-123"));
    assert_eq!(r.body["request_id"], "client-abc-123");
}

#[tokio::test]
async fn the_playground_is_off_unless_asked() {
    let app = spawn_app().await;
    for path in ["/", "/playground/wxauth.js", "/playground/config.json"] {
        let r = app.get(path, None).await;
        assert_eq!((r.status.as_u16(), r.error()), (404, "not_found"), "{path}");
    }
}
