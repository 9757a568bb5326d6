//! The OpenAPI document matches the API contract and the running server.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::app::*;

/// The contract's endpoints (shared/DESIGN.md).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/data/{collection}"),
    ("get", "/v1/data/{collection}"),
    ("get", "/v1/data/{collection}/_count"),
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
    ("post", "/v1/introspect"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/.well-known/openid-configuration"),
    ("get", "/v1/me/export"),
    ("delete", "/v1/me"),
    ("post", "/v1/files"),
    ("get", "/v1/files"),
    ("get", "/v1/files/{id}"),
    ("delete", "/v1/files/{id}"),
    ("get", "/v1/files/{id}/raw"),
    ("get", "/admin/v1/users"),
    ("get", "/admin/v1/users/{id}"),
    ("delete", "/admin/v1/users/{id}"),
    ("post", "/admin/v1/users/{id}/revoke"),
    ("get", "/admin/v1/users/{id}/export"),
    ("get", "/admin/v1/data/{collection}"),
    ("post", "/admin/v1/data/{collection}"),
    ("get", "/admin/v1/data/{collection}/{id}"),
    ("put", "/admin/v1/data/{collection}/{id}"),
    ("delete", "/admin/v1/data/{collection}/{id}"),
    ("get", "/admin/v1/audit"),
    ("get", "/admin/v1/users/{id}/files"),
    ("delete", "/admin/v1/users/{id}/files/{file_id}"),
    ("post", "/admin/v1/users/{id}/messages"),
    ("get", "/admin/v1/users/{id}/subscriptions"),
    ("post", "/v1/me/subscriptions"),
];

const AUTHENTICATED: &[&str] = &[
    "/v1/logout",
    "/v1/me",
    "/v1/me/export",
    "/v1/me/phone",
    "/v1/me/decrypt",
    "/v1/me/subscriptions",
    "/v1/data/{collection}",
    "/v1/data/{collection}/_count",
    "/v1/data/{collection}/{id}",
    "/v1/files",
    "/v1/files/{id}",
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
            if path.starts_with("/admin/") {
                assert!(
                    op["security"].to_string().contains("service_key"),
                    "{method} {path}: admin routes take a service key"
                );
                assert_eq!(op["tags"][0], "admin", "{method} {path}: tag");
            }
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
        // A file's bytes need no token: an unknown id is the route's own
        // 404, which says so (the router's 404 would not).
        let routes_own_404 = path.ends_with("/raw") && r.body["message"] == "no such file";
        assert!(
            ![404, 405].contains(&r.status.as_u16()) || routes_own_404,
            "{method} {path}: {} {:?}",
            r.status,
            r.body
        );
    }
}

/// The document states the service's constraints (schemathesis, run by
/// scripts/test.sh, then holds the server to them).
#[tokio::test]
async fn the_document_states_each_constraint_and_status() {
    let Some(app) = spawn_app_with(Options {
        tweak: |c| c.limits.page_size_max = 42,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let doc = app.get("/openapi.json", None).await.body;
    let op = |method: &str, path: &str| doc["paths"][path][method].clone();
    let param = |op: &Value, name: &str| -> Value {
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    let statuses = |op: &Value| -> BTreeSet<String> {
        op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };

    let list = op("get", "/v1/data/{collection}");
    let limit = param(&list, "limit");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 42, "limits.page_size_max");
    assert!(param(&list, "cursor")["schema"]["pattern"].is_string());
    for (method, path) in CONTRACT.iter().filter(|(_, p)| p.contains("{collection}")) {
        let o = op(method, path);
        assert_eq!(
            param(&o, "collection")["schema"]["pattern"],
            "^[a-z0-9_-]{1,64}$",
            "{method} {path}"
        );
        assert!(statuses(&o).contains("400"), "{method} {path}: 400");
    }
    let create = op("post", "/v1/data/{collection}");
    let key = param(&create, "Idempotency-Key");
    assert_eq!(key["schema"]["type"], "string", "not nullable");
    assert!(key["schema"]["pattern"].as_str().unwrap().contains("255"));
    let put = op("put", "/v1/data/{collection}/{id}");
    assert!(param(&put, "If-Match")["schema"]["pattern"].is_string());
    assert!(statuses(&put).is_superset(&["409", "412", "413", "408"].map(String::from).into()));

    let login = &doc["components"]["schemas"]["LoginRequest"]["properties"]["code"];
    assert_eq!(login["pattern"], "^[0-9A-Za-z_-]{1,128}$");
    let patch = &doc["components"]["schemas"]["PatchMe"]["properties"]["profile"];
    assert_eq!(patch["maxProperties"], 64);
    assert_eq!(patch["propertyNames"]["maxLength"], 64);
    assert!(statuses(&op("patch", "/v1/me")).contains("409"));

    // Every operation lists the server's own answers; 429 and 503 carry Retry-After.
    for (method, path) in CONTRACT {
        let o = op(method, path);
        let s = statuses(&o);
        for status in ["414", "431", "500", "503"] {
            assert!(s.contains(status), "{method} {path}: {status}");
        }
        for status in ["429", "503"] {
            if s.contains(status) {
                assert!(
                    o["responses"][status]["headers"]["Retry-After"].is_object(),
                    "{method} {path}: {status} Retry-After"
                );
            }
        }
    }
}
