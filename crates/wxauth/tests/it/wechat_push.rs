//! WeChat's message push (issue 32) through real HTTP: the URL check.

use std::time::Duration;

use wechat_miniapp::push::PushKeys;

use crate::app::{APP1, APP2, TestApp, spawn_app_tweaked};

async fn check(app: &TestApp, appid: &str, query: &str) -> (u16, String, String) {
    let r = app
        .http
        .get(format!("{}/v1/wechat/push/{appid}?{query}", app.url))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap())
}

fn now_secs(app: &TestApp) -> i64 {
    use wechat_miniapp::Clock as _;
    app.clock.now_ms() / 1000
}

/// WeChat's own example (Token "AAAAA", docs/wechat-platform.md §1b) at
/// its own time; then a fresh signature, and every refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_check_answers_echostr_only_to_a_fresh_signature_of_the_app() {
    let app = spawn_app_tweaked(|c| c.apps[0].push_token = Some("AAAAA".into())).await;

    // The documented check, with this server's clock set to its time.
    let then = 1_714_036_504_i64;
    app.clock
        .rewind(Duration::from_secs((now_secs(&app) - then) as u64));
    let (status, kind, body) = check(
        &app,
        APP1,
        "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249\
         &timestamp=1714036504&nonce=1514711492",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "4375120948345356249"));
    assert!(kind.starts_with("text/plain"), "{kind}");
    // The same signature five minutes and a second later is a replay.
    app.clock.advance(Duration::from_secs(301));
    let (status, _, body) = check(
        &app,
        APP1,
        "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249\
         &timestamp=1714036504&nonce=1514711492",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("timestamp"), "{body}");

    let keys = PushKeys::new(APP1, "AAAAA", None).unwrap();
    let ts = now_secs(&app).to_string();
    let good = keys.signature(&ts, "42");
    let (status, _, body) = check(
        &app,
        APP1,
        &format!("signature={good}&timestamp={ts}&nonce=42&echostr=abc123"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "abc123"));

    // Another nonce, another token, no signature: 401.
    for query in [
        format!("signature={good}&timestamp={ts}&nonce=43&echostr=abc123"),
        format!(
            "signature={}&timestamp={ts}&nonce=42&echostr=abc123",
            PushKeys::new(APP1, "BBBBB", None)
                .unwrap()
                .signature(&ts, "42")
        ),
        format!("timestamp={ts}&nonce=42&echostr=abc123"),
    ] {
        let (status, _, body) = check(&app, APP1, &query).await;
        assert_eq!(status, 401, "{query}: {body}");
        assert!(!body.contains("abc123"), "{body}");
    }
    // No echostr, or one that is not printable ASCII: 400.
    for echostr in ["", "%3Cscript%3E%20x", &"9".repeat(129)] {
        let (status, _, body) = check(
            &app,
            APP1,
            &format!("signature={good}&timestamp={ts}&nonce=42&echostr={echostr}"),
        )
        .await;
        assert_eq!(status, 400, "{echostr}: {body}");
    }
    // An app without push settings, and an unknown one: 404.
    for appid in [APP2, "wx0000000000000000"] {
        let (status, _, body) = check(
            &app,
            appid,
            &format!("signature={good}&timestamp={ts}&nonce=42&echostr=abc123"),
        )
        .await;
        assert_eq!(status, 404, "{appid}: {body}");
    }
    let metrics = app.metrics().await;
    for reason in ["signature", "stale", "bad_request", "unknown_app"] {
        assert!(
            metrics.contains(&format!("wxauth_push_refused_total{{reason=\"{reason}\"}}")),
            "{reason}: {metrics}"
        );
    }
}
