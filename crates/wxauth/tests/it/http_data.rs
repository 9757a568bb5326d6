//! The user-data API over HTTP, on both backends.

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::app::on_both;
use crate::app::*;

on_both!(
    crud_round_trip,
    validation_errors,
    ownership_is_the_token_only,
    twenty_concurrent_creates,
    concurrent_puts_with_the_same_if_match,
    idempotent_creates,
    pagination_is_stable_under_inserts,
    unicode_round_trips,
);

async fn req(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut r = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    reply(r.send().await.unwrap()).await
}

async fn create(app: &TestApp, token: &str, collection: &str, body: Value) -> Reply {
    req(
        app,
        Method::POST,
        &format!("/v1/data/{collection}"),
        token,
        Some(body),
        &[],
    )
    .await
}

async fn list_all(app: &TestApp, token: &str, collection: &str, page: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/data/{collection}?limit={page}&cursor={c}"),
            None => format!("/v1/data/{collection}?limit={page}"),
        };
        let r = req(app, Method::GET, &path, token, None, &[]).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

async fn crud_round_trip(app: TestApp) {
    let t = token(&app.login(APP1, "alice").await).to_owned();
    let r = create(&app, &t, "notes", json!({"name": "张三", "age": "20"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["data"], json!({"name": "张三", "age": "20"}));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/data/notes/{id}").as_str())
    );
    assert!(r.body["created_at"].as_str().unwrap().ends_with('Z'));

    let g = req(
        &app,
        Method::GET,
        &format!("/v1/data/notes/{id}"),
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, r.body);
    assert_eq!(g.header("etag"), Some("\"1\""));

    let l = req(&app, Method::GET, "/v1/data/notes", &t, None, &[]).await;
    assert_eq!(l.body["items"], json!([r.body.clone()]));
    assert_eq!(l.body["next_cursor"], Value::Null);

    let p = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"name": "李四"})),
        &[],
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), p.body["version"].clone()),
        (200, json!(2))
    );
    assert_eq!(p.body["data"], json!({"name": "李四"}));
    assert_eq!(p.header("etag"), Some("\"2\""));
    assert_eq!(p.body["created_at"], r.body["created_at"]);
    let p = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"n": 3})),
        &[("if-match", "\"2\"")],
    )
    .await;
    assert_eq!(p.status, 200);
    let p = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"n": 4})),
        &[("if-match", "\"2\"")],
    )
    .await;
    assert_eq!((p.status.as_u16(), p.error()), (412, "precondition_failed"));
    let p = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"n": 4})),
        &[("if-match", "W/\"1\", \"3\"")],
    )
    .await;
    assert_eq!(p.status, 200, "a list of tags matches any");
    let p = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"n": 5})),
        &[("if-match", "*")],
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), p.body["version"].clone()),
        (200, json!(5))
    );

    let d = req(
        &app,
        Method::DELETE,
        &format!("/v1/data/notes/{id}"),
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(d.status, 204);
    for method in [Method::GET, Method::DELETE] {
        let r = req(
            &app,
            method.clone(),
            &format!("/v1/data/notes/{id}"),
            &t,
            None,
            &[],
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (404, "not_found"),
            "{method}"
        );
    }
    let r = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({})),
        &[("if-match", "*")],
    )
    .await;
    assert_eq!(r.status, 404);
}

async fn validation_errors(app: TestApp) {
    let t = token(&app.login(APP1, "bob").await).to_owned();
    for bad in ["Notes", "a.b", "%E7%AC%94", &"a".repeat(65)] {
        let r = create(&app, &t, bad, json!({})).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "invalid_request"),
            "{bad}"
        );
        assert!(r.message().contains("[a-z0-9_-]{1,64}"), "{}", r.message());
    }
    for body in [json!([1]), json!("x"), json!(null), json!(3)] {
        let r = create(&app, &t, "notes", body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "invalid_request"),
            "{body}"
        );
        assert!(r.message().contains("JSON object"), "{}", r.message());
    }
    let r = create(&app, &t, "notes", json!({"big": "x".repeat(70 * 1024)})).await;
    assert_eq!((r.status.as_u16(), r.error()), (413, "payload_too_large"));
    for q in ["limit=0", "limit=101", "limit=abc", "cursor=nope"] {
        let r = req(
            &app,
            Method::GET,
            &format!("/v1/data/notes?{q}"),
            &t,
            None,
            &[],
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "invalid_request"),
            "{q}"
        );
    }
    let doc = create(&app, &t, "notes", json!({"a": 1})).await;
    let id = doc.body["id"].as_str().unwrap();
    let r = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({})),
        &[("if-match", "v1")],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    // A bare version number is taken as its tag (the document's version).
    let r = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"a": 2})),
        &[("if-match", "2")],
    )
    .await;
    assert_eq!(r.status, 412, "version 2 is not the current one");
    let r = req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"a": 2})),
        &[("if-match", "1")],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = req(
        &app,
        Method::GET,
        "/v1/data/notes/not-a-uuid",
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error()), (404, "not_found"));
    let r = req(
        &app,
        Method::GET,
        &format!("/v1/data/other/{id}"),
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 404, "a document lives in its own collection only");
    let r = req(
        &app,
        Method::POST,
        "/v1/data/notes",
        &t,
        None,
        &[("idempotency-key", "has space")],
    )
    .await;
    assert_eq!(r.status, 400);
    let r = app.call(Method::GET, "/v1/data/notes", None, None).await;
    assert_eq!((r.status.as_u16(), r.error()), (401, "unauthorized"));
}

async fn ownership_is_the_token_only(app: TestApp) {
    let a = token(&app.login(APP1, "carol").await).to_owned();
    let b_login = app.login(APP1, "dave").await;
    let b = token(&b_login).to_owned();
    let other_app = token(&app.login(APP2, "carol").await).to_owned();
    // Carol posts a body that claims to be Dave's.
    let doc = create(
        &app,
        &a,
        "notes",
        json!({"user_id": b_login["user"]["id"], "openid": b_login["user"]["openid"], "x": 1}),
    )
    .await;
    assert_eq!(doc.status, 201);
    let id = doc.body["id"].as_str().unwrap().to_owned();
    for t in [&b, &other_app] {
        for (method, body) in [
            (Method::GET, None),
            (Method::PUT, Some(json!({"stolen": true}))),
            (Method::DELETE, None),
        ] {
            let r = req(
                &app,
                method.clone(),
                &format!("/v1/data/notes/{id}"),
                t,
                body,
                &[],
            )
            .await;
            assert_eq!(
                (r.status.as_u16(), r.error()),
                (404, "not_found"),
                "{method}"
            );
        }
        let l = req(&app, Method::GET, "/v1/data/notes", t, None, &[]).await;
        assert_eq!(l.body["items"], json!([]));
    }
    // Still Carol's, unchanged.
    let g = req(
        &app,
        Method::GET,
        &format!("/v1/data/notes/{id}"),
        &a,
        None,
        &[],
    )
    .await;
    assert_eq!(
        (g.status.as_u16(), g.body["version"].clone()),
        (200, json!(1))
    );
}

async fn twenty_concurrent_creates(app: TestApp) {
    let app = Arc::new(app);
    let t = token(&app.login(APP1, "erin").await).to_owned();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (app, t) = (app.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            create(&app, &t, "notes", json!({"i": i})).await
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.insert(r.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 20);
    let all = list_all(&app, &t, "notes", 100).await;
    let listed: HashSet<String> = all
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    let is: HashSet<i64> = all
        .iter()
        .map(|d| d["data"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(is, (0..20).collect());
}

async fn concurrent_puts_with_the_same_if_match(app: TestApp) {
    let app = Arc::new(app);
    let t = token(&app.login(APP1, "fay").await).to_owned();
    let doc = create(&app, &t, "notes", json!({"v": 0})).await;
    let id = doc.body["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (app, t, id) = (app.clone(), t.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            req(
                &app,
                Method::PUT,
                &format!("/v1/data/notes/{id}"),
                &t,
                Some(json!({"v": i})),
                &[("if-match", "\"1\"")],
            )
            .await
            .status
            .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        9,
        "{statuses:?}"
    );
    let g = req(
        &app,
        Method::GET,
        &format!("/v1/data/notes/{id}"),
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(g.body["version"], 2);
}

async fn idempotent_creates(app: TestApp) {
    let app = Arc::new(app);
    let t = token(&app.login(APP1, "gina").await).to_owned();
    let body = json!({"name": "张三", "age": "20"});
    let first = req(
        &app,
        Method::POST,
        "/v1/data/notes",
        &t,
        Some(body.clone()),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    let again = req(
        &app,
        Method::POST,
        "/v1/data/notes",
        &t,
        Some(body.clone()),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // The first answer, even after the document changed.
    let id = first.body["id"].as_str().unwrap();
    req(
        &app,
        Method::PUT,
        &format!("/v1/data/notes/{id}"),
        &t,
        Some(json!({"changed": 1})),
        &[],
    )
    .await;
    let third = req(
        &app,
        Method::POST,
        "/v1/data/notes",
        &t,
        Some(body.clone()),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(third.body, first.body);
    // Same key, other body: refused.
    let other = req(
        &app,
        Method::POST,
        "/v1/data/notes",
        &t,
        Some(json!({"x": 1})),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(
        (other.status.as_u16(), other.error()),
        (400, "invalid_request")
    );
    assert!(other.message().contains("Idempotency-Key"));
    // Concurrent retries of one key: one document.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (app, t) = (app.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            req(
                &app,
                Method::POST,
                "/v1/data/todo",
                &t,
                Some(json!({"task": "x"})),
                &[("idempotency-key", "k-2")],
            )
            .await
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, 201);
        ids.insert(r.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(list_all(&app, &t, "todo", 50).await.len(), 1);
    assert_eq!(list_all(&app, &t, "notes", 50).await.len(), 1);
    // Another user's identical key is theirs alone.
    let u = token(&app.login(APP1, "hank").await).to_owned();
    let theirs = req(
        &app,
        Method::POST,
        "/v1/data/notes",
        &u,
        Some(body),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.body["id"], first.body["id"]);
}

async fn pagination_is_stable_under_inserts(app: TestApp) {
    let t = token(&app.login(APP1, "ivy").await).to_owned();
    let mut existing = Vec::new();
    for i in 0..25 {
        existing.push(
            create(&app, &t, "feed", json!({"i": i})).await.body["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserted = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/data/feed?limit=7&cursor={c}"),
            None => "/v1/data/feed?limit=7".to_owned(),
        };
        let r = req(&app, Method::GET, &path, &t, None, &[]).await;
        for item in r.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        // Someone inserts while the walk goes on.
        for _ in 0..3 {
            create(&app, &t, "feed", json!({"new": inserted})).await;
            inserted += 1;
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected = existing.clone();
    expected.reverse(); // newest first
    assert_eq!(
        seen, expected,
        "every document that existed at the start, once, newest first"
    );
}

async fn unicode_round_trips(app: TestApp) {
    let t = token(&app.login(APP1, "jay").await).to_owned();
    let data = json!({
        "name": "张三", "emoji": "😀👍🏽", "rtl": "مرحبا", "escapes": "line\nbreak \"quoted\" \\ tab\t",
        "zero": "a\u{0000}b", "nested": {"列表": [1, 2.5, -3, true, null, {"深": "层"}]}, "big": 9007199254740993_i64,
    });
    let r = create(&app, &t, "unicode", data.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap();
    let g = req(
        &app,
        Method::GET,
        &format!("/v1/data/unicode/{id}"),
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(g.body["data"], data);
}

#[tokio::test]
async fn documents_per_collection_limit() {
    let app = spawn_app_with(Options {
        documents_per_collection: 3,
        ..Options::default()
    })
    .await
    .unwrap();
    let t = token(&app.login(APP1, "kim").await).to_owned();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            create(&app, &t, "notes", json!({"i": i})).await.body["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let r = create(&app, &t, "notes", json!({"i": 3})).await;
    assert_eq!((r.status.as_u16(), r.error()), (409, "limit_exceeded"));
    assert!(r.message().contains('3'), "{}", r.message());
    // Other collections and other users are separate.
    assert_eq!(create(&app, &t, "todo", json!({})).await.status, 201);
    let u = token(&app.login(APP1, "lee").await).to_owned();
    assert_eq!(create(&app, &u, "notes", json!({})).await.status, 201);
    // Deleting makes room.
    let d = req(
        &app,
        Method::DELETE,
        &format!("/v1/data/notes/{}", ids[0]),
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(d.status, 204);
    assert_eq!(create(&app, &t, "notes", json!({"i": 4})).await.status, 201);
}
