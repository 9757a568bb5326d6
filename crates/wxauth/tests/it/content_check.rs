//! WeChat's content check of what users write (issue 32): a collection's
//! `check_text` fields and the profile's nickname go through the
//! simulator's msgSecCheck over real HTTP before anything is stored.

use reqwest::Method;
use serde_json::{Value, json};

use crate::app::{ADMIN_KEY, APP1, TestApp, spawn_app_tweaked, token};

fn comments(c: &mut wxauth::config::Config) {
    c.collections.push(wxauth::config::CollectionConfig {
        name: "comments".into(),
        check_text: vec!["title".into(), "body.text".into()],
        check_scene: Some(2),
        ..Default::default()
    });
}

async fn flags_of(app: &TestApp, target: &str) -> Vec<Value> {
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target={target}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("content_check"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_are_checked_before_they_are_stored() {
    let app = spawn_app_tweaked(comments).await;
    let session = app.login(APP1, "writer").await;
    let t = token(&session);
    let calls = app.sim_calls("msg_sec_check");

    // Clean: stored, each configured text checked once.
    let r = app
        .post(
            "/v1/data/comments",
            Some(t),
            json!({"title": "hello", "body": {"text": "a fine day"}, "stars": 5}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.sim_calls("msg_sec_check") - calls, 2);

    // A word on the simulator's list: 422 naming the field and label,
    // nothing stored.
    let r = app
        .post(
            "/v1/data/comments",
            Some(t),
            json!({"title": "hi", "body": {"text": "buy risky-test-word now"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"], "content_rejected");
    assert_eq!(r.body["field"], "body.text");
    assert_eq!(r.body["label"], wechat_sim::RISKY_LABEL);
    assert!(r.message().contains("body.text"), "{}", r.message());
    let list = app.get("/v1/data/comments", Some(t)).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // A replace likewise; the document stays as it was.
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/data/comments/{id}"),
            Some(t),
            Some(json!({"title": "违规测试", "body": {"text": "x"}})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["field"].as_str()),
        (422, Some("title"))
    );
    let doc = app.get(&format!("/v1/data/comments/{id}"), Some(t)).await;
    assert_eq!(doc.body["data"]["title"], "hello");

    // The word past the first 2,500 characters is found (checked a slice
    // at a time).
    let long = format!("{}risky-test-word", "好".repeat(2600));
    let r = app
        .post("/v1/data/comments", Some(t), json!({"title": long}))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);

    // Fields that are not text, and collections without check_text, are
    // not checked.
    let calls = app.sim_calls("msg_sec_check");
    let r = app
        .post(
            "/v1/data/comments",
            Some(t),
            json!({"title": 7, "body": "x"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .post(
            "/v1/data/notes",
            Some(t),
            json!({"title": "risky-test-word"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(app.sim_calls("msg_sec_check"), calls);

    // A doubtful text (review) is stored and flagged for the operator.
    let r = app
        .post(
            "/v1/data/comments",
            Some(t),
            json!({"title": "a review-test-word"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let doubtful = r.body["id"].as_str().unwrap().to_owned();
    let flags = flags_of(&app, &format!("document:comments/{doubtful}")).await;
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0]["action"], "content_check review");
    assert_eq!(flags[0]["actor"], format!("wechat:{APP1}"));
    assert_eq!(flags[0]["detail"]["field"], "title");
    assert!(!flags[0]["detail"]["trace_id"].as_str().unwrap().is_empty());
    assert!(
        flags_of(&app, &format!("document:comments/{id}"))
            .await
            .is_empty()
    );

    // The nickname.
    let r = app
        .call(
            Method::PATCH,
            "/v1/me",
            Some(t),
            Some(json!({"profile": {"nickname": "违规测试"}})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["field"], "profile.nickname");
    let r = app
        .call(
            Method::PATCH,
            "/v1/me",
            Some(t),
            Some(json!({"profile": {"nickname": "小明", "city": "risky-test-word"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["profile"]["nickname"], "小明");

    let metrics = app.metrics().await;
    for verdict in ["pass", "risky", "review"] {
        assert!(
            metrics.contains(&format!(
                "wxauth_content_checks_total{{verdict=\"{verdict}\"}}"
            )),
            "{verdict}"
        );
    }
}

/// WeChat unavailable: fail-closed by default (503, nothing stored);
/// `on_unavailable = "flag"` stores and flags. `on_review = "refuse"`
/// refuses a doubtful text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_when_wechat_gives_no_clear_verdict() {
    let closed = spawn_app_tweaked(comments).await;
    let open = spawn_app_tweaked(|c| {
        comments(c);
        c.content_check.on_unavailable = wxauth::config::OnUnavailable::Flag;
        c.content_check.on_review = wxauth::config::OnReview::Refuse;
    })
    .await;
    for app in [&closed, &open] {
        let session = app.login(APP1, "writer").await;
        let t = token(&session);
        app.sim
            .fault("msg_sec_check", Some(-1), None, None)
            .unwrap();
        let r = app
            .post("/v1/data/comments", Some(t), json!({"title": "hello"}))
            .await;
        let stored = app.get("/v1/data/comments", Some(t)).await.body["items"]
            .as_array()
            .unwrap()
            .len();
        if std::ptr::eq(app, &closed) {
            assert_eq!(r.status, 503, "{:?}", r.body);
            assert_eq!(r.body["error"], "upstream_unavailable");
            assert_eq!(stored, 0);
        } else {
            assert_eq!(r.status, 201, "{:?}", r.body);
            assert_eq!(stored, 1);
            let id = r.body["id"].as_str().unwrap();
            let flags = flags_of(app, &format!("document:comments/{id}")).await;
            assert_eq!(flags.len(), 1, "{flags:?}");
            assert_eq!(flags[0]["action"], "content_check unchecked");
        }
        app.sim.clear_faults();
        let r = app
            .post(
                "/v1/data/comments",
                Some(t),
                json!({"title": "a review-test-word"}),
            )
            .await;
        let expected = if std::ptr::eq(app, &closed) { 201 } else { 422 };
        assert_eq!(r.status, expected, "{:?}", r.body);
    }
}
