//! WeChat's check of pictures (issue 32): with `[content_check] images`,
//! an avatar or image is pending (its owner's alone) until the simulator,
//! having fetched it by its signed URL, pushes the verdict; then it passes
//! or is rejected (bytes gone, URL 404, quota given back, the owner told
//! through the status).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use wechat_sim::{PushFormat, PushMode};

use crate::app::{ADMIN_KEY, APP1, TestApp, spawn_app_tweaked, token};
use crate::files::{fetch, png, post_body, wx_upload};
use crate::revoked::target;

fn checked_images(c: &mut wxauth::config::Config) {
    c.apps[0].push_token = Some(crate::revoked::TOKEN.into());
    c.apps[0].push_aes_key = Some(crate::revoked::AES_KEY.into());
    c.content_check.images = true;
}

async fn status_of(app: &TestApp, t: &str, id: &str) -> (u16, Value) {
    let r = app.get(&format!("/v1/files/{id}"), Some(t)).await;
    (r.status.as_u16(), r.body)
}

/// Waits until the owner sees file `id` leave `pending`; its view.
async fn settled(app: &TestApp, t: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = status_of(app, t, id).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] != "pending" {
            return body;
        }
        assert!(Instant::now() < deadline, "still pending: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn used_bytes(app: &TestApp, user_id: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    let row: Option<(i64,)> = sqlx::query_as("SELECT bytes FROM file_usage WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.map_or(0, |r| r.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_wait_for_wechats_verdict() {
    let app = spawn_app_tweaked(checked_images).await;
    app.sim
        .set_push_target(target(&app.url, APP1, PushMode::Safe, PushFormat::Xml))
        .unwrap();
    let owner = app.login(APP1, "painter").await;
    let owner_id = owner["user"]["id"].as_str().unwrap().to_owned();
    let other = app.login(APP1, "viewer").await;
    let (t, t2) = (token(&owner), token(&other));

    // A clean public avatar: pending, the owner's alone, until it passes.
    let r = post_body(&app, t, wx_upload("avatar", None, "me.png", &png(64))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let clean = r.body["id"].as_str().unwrap().to_owned();
    let owner_url = r.body["url"].as_str().unwrap().to_owned();
    assert_eq!(r.body["status"], "pending");
    assert!(
        owner_url.contains("sig="),
        "the owner's URL is signed while pending"
    );
    // Others see nothing yet. (The check takes the simulator 200 ms.)
    assert_eq!(status_of(&app, t2, &clean).await.0, 404);
    let stable = format!("/v1/files/{clean}/raw");
    assert_eq!(fetch(&app, &stable, &[]).await.status(), 404);
    assert_eq!(fetch(&app, &owner_url, &[]).await.status(), 200);
    // The profile can name it already: its stable URL works once it passes.
    let r = app
        .call(
            Method::PATCH,
            "/v1/me",
            Some(t),
            Some(serde_json::json!({"profile": {"avatar_file": clean}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let passed = settled(&app, t, &clean).await;
    assert_eq!(passed["status"], "pass");
    assert!(!passed["url"].as_str().unwrap().contains("sig="));
    assert_eq!(status_of(&app, t2, &clean).await.0, 200);
    assert_eq!(fetch(&app, &stable, &[]).await.status(), 200);
    let checks = app.sim.media_checks();
    assert!(
        checks
            .iter()
            .any(|c| c.fetched == format!("{} bytes", png(64).len())),
        "{checks:?}"
    );

    // A risky image: rejected, bytes gone, quota given back, URL 404, the
    // owner told by its status; the operator by the audit log.
    let before = used_bytes(&app, &owner_id).await;
    let mut risky = png(32);
    risky.extend_from_slice(wechat_sim::RISKY_IMAGE_MARK);
    let r = post_body(&app, t, wx_upload("image", None, "x.png", &risky)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let bad = r.body["id"].as_str().unwrap().to_owned();
    let signed = r.body["url"].as_str().unwrap().to_owned();
    assert_eq!(
        used_bytes(&app, &owner_id).await,
        before + risky.len() as i64
    );
    let rejected = settled(&app, t, &bad).await;
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(fetch(&app, &signed, &[]).await.status(), 404);
    assert_eq!(used_bytes(&app, &owner_id).await, before);
    let audit = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target=file:{bad}"),
            None,
        )
        .await;
    let entry = &audit.body["items"][0];
    assert_eq!(
        entry["action"], "content_check rejected",
        "{:?}",
        audit.body
    );
    assert_eq!(entry["actor"], format!("wechat:{APP1}"));
    assert_eq!(entry["detail"]["label"], 20002);
    // Deleting the rejected file gives nothing back twice.
    let r = app
        .call(Method::DELETE, &format!("/v1/files/{bad}"), Some(t), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(used_bytes(&app, &owner_id).await, before);

    // Attachments are not pictures: never checked.
    let r = post_body(
        &app,
        t,
        wx_upload("attachment", None, "a.bin", b"plain bytes"),
    )
    .await;
    assert_eq!(r.body["status"], "ready", "{:?}", r.body);

    // WeChat down when asked: the picture stays pending (never shown
    // unchecked), and nothing was fetched.
    app.sim
        .fault("media_check_async", Some(-1), None, None)
        .unwrap();
    let asked = app.sim.media_checks().len();
    let r = post_body(&app, t, wx_upload("avatar", None, "later.png", &png(16))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let later = r.body["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status_of(&app, t, &later).await.1["status"], "pending");
    assert_eq!(status_of(&app, t2, &later).await.0, 404);
    assert_eq!(app.sim.media_checks().len(), asked);
    assert!(
        app.metrics()
            .await
            .contains("wxauth_image_checks_total{step=\"not_asked\"}")
    );
}
