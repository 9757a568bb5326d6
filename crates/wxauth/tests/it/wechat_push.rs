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

const SAMPLE_APP: &str = "wx2c2769f8efd9abc2";
const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const SAMPLE_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

async fn push(app: &TestApp, appid: &str, query: &str, body: String) -> (u16, String) {
    let r = app
        .http
        .post(format!("{}/v1/wechat/push/{appid}?{query}", app.url))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// WeChat's official safe-mode sample (cryptoDemo, docs/wechat-platform.md
/// §1d) pushed to an app configured with its Token and EncodingAESKey, at
/// its own time; then what must be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_mode_push_is_checked_decrypted_and_acknowledged() {
    let app = spawn_app_tweaked(|c| {
        c.apps.push(wxauth::config::AppConfig {
            appid: SAMPLE_APP.into(),
            secret: Some("33333333333333333333333333333333".into()),
            push_token: Some("spamtest".into()),
            push_aes_key: Some(SAMPLE_KEY.into()),
            ..Default::default()
        });
        c.apps[0].push_token = Some("AAAAA".into());
    })
    .await;
    let then = 1_409_735_669_i64;
    app.clock
        .rewind(Duration::from_secs((now_secs(&app) - then) as u64));
    let query = "signature=16120ec1b8dbb870f510d87ce6bc2463eae6ca1a&timestamp=1409735669\
                 &nonce=1320562132&encrypt_type=aes&msg_signature=5d197aaffba7e9b25a30732f161a50dee96bd5fa";
    let xml = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt></xml>"
    );
    assert_eq!(
        push(&app, SAMPLE_APP, query, xml.clone()).await,
        (200, "success".to_owned())
    );
    // The same in JSON.
    let json =
        serde_json::json!({"ToUserName": "gh_10f6c3c3ac5a", "Encrypt": SAMPLE_ENCRYPT}).to_string();
    assert_eq!(push(&app, SAMPLE_APP, query, json).await.0, 200);

    // Altered ciphertext, another msg_signature, no encryption, another
    // app's URL, a body too large, not XML or JSON: refused.
    let altered = xml.replace("hyzAe4", "hyzAe5");
    assert_eq!(push(&app, SAMPLE_APP, query, altered).await.0, 401);
    let other_sig = query.replace("msg_signature=5d19", "msg_signature=6d19");
    assert_eq!(push(&app, SAMPLE_APP, &other_sig, xml.clone()).await.0, 401);
    let plain_query = query.replace("&encrypt_type=aes", "");
    let (status, body) = push(&app, SAMPLE_APP, &plain_query, xml.clone()).await;
    assert_eq!(status, 401, "{body}");
    let plain = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
                 <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event>\
                 <OpenID><![CDATA[o1]]></OpenID></xml>";
    assert_eq!(
        push(&app, SAMPLE_APP, &plain_query, plain.into()).await.0,
        401
    );
    assert_eq!(push(&app, APP1, query, xml.clone()).await.0, 401);
    let huge = format!("<xml><A>{}</A></xml>", "x".repeat(70 * 1024));
    assert_eq!(push(&app, SAMPLE_APP, query, huge).await.0, 413);
    assert_eq!(push(&app, SAMPLE_APP, query, "success".into()).await.0, 400);
    // A day later the sample is a replay.
    app.clock.advance(Duration::from_secs(86_400));
    assert_eq!(push(&app, SAMPLE_APP, query, xml).await.0, 401);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("wxauth_push_events_total{event=\"other\"}"),
        "{metrics}"
    );
    for reason in [
        "signature",
        "not_encrypted",
        "too_large",
        "malformed",
        "stale",
    ] {
        assert!(
            metrics.contains(&format!("wxauth_push_refused_total{{reason=\"{reason}\"}}")),
            "{reason}: {metrics}"
        );
    }
}

/// Plain mode (no EncodingAESKey): the `signature` is what is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_push_is_checked_by_its_signature() {
    let app = spawn_app_tweaked(|c| c.apps[0].push_token = Some("AAAAA".into())).await;
    // WeChat's documented plain push (Token "AAAAA"), at its own time.
    let then = 1_714_037_059_i64;
    app.clock
        .rewind(Duration::from_secs((now_secs(&app) - then) as u64));
    let body = r#"{"ToUserName": "gh_97417a04a28d", "FromUserName": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
        "CreateTime": 1714037059, "MsgType": "event", "Event": "debug_demo", "debug_str": "hello world"}"#;
    let query =
        "signature=899cf89e464efb63f54ddac96b0a0a235f53aa78&timestamp=1714037059&nonce=486452656";
    assert_eq!(
        push(&app, APP1, query, body.into()).await,
        (200, "success".to_owned())
    );
    let wrong = query.replace("nonce=486452656", "nonce=486452657");
    assert_eq!(push(&app, APP1, &wrong, body.into()).await.0, 401);
}
