//! The OpenAPI document matches the API contract and the running server.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::app::*;

/// The contract's endpoints (shared/DESIGN.md).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/data/{collection}"),
    ("get", "/v1/data/{collection}"),
    ("get", "/v1/data/{collection}/{id}"),
    ("put", "/v1/data/{collection}/{id}"),
    ("delete", "/v1/data/{collection}/{id}"),
    ("post", "/v1/login"),
    ("post", "/v1/token/refresh"),
    ("post", "/v1/logout"),
    ("get", "/v1/me"),
    ("patch", "/v1/me"),
    ("post", "/v1/me/phone"),
    ("post", "/v1/me/decrypt"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

const AUTHENTICATED: &[&str] = &[
    "/v1/logout",
    "/v1/me",
    "/v1/me/phone",
    "/v1/me/decrypt",
    "/v1/data/{collection}",
    "/v1/data/{collection}/{id}",
];

#[tokio::test]
async fn the_document_lists_every_route_and_each_exists() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let needs_bearer = AUTHENTICATED.contains(&path.as_str());
            let has_security = op
                .get("security")
                .is_some_and(|s| s.to_string().contains("bearer"));
            assert_eq!(needs_bearer, has_security, "{method} {path}: security");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
    let expected: BTreeSet<(String, String)> = CONTRACT
        .iter()
        .map(|(m, p)| ((*m).into(), (*p).into()))
        .collect();
    assert_eq!(documented, expected);
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc.body["components"]["schemas"]["ErrorBody"].is_object());

    // Every documented operation is served: no 404 or 405.
    for (method, path) in &documented {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app
            .call(m, path, None, Some(Value::Object(Default::default())))
            .await;
        assert!(
            ![404, 405].contains(&r.status.as_u16()),
            "{method} {path}: {}",
            r.status
        );
    }
}
