//! /v1/me, profile, phone binding and decrypt over HTTP.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use wechat_miniapp::SessionKey;

use crate::app::*;

async fn patch(app: &TestApp, token: &str, body: Value) -> Reply {
    app.call(Method::PATCH, "/v1/me", Some(token), Some(body))
        .await
}

#[tokio::test]
async fn profile_merge_and_limits() {
    let app = spawn_app().await;
    let t = token(&app.login(APP1, "alice").await).to_owned();
    let r = patch(
        &app,
        &t,
        json!({"profile": {"nickname": "张三", "avatar_url": "https://x/y.png", "age": 20}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["profile"],
        json!({"nickname": "张三", "avatar_url": "https://x/y.png", "age": 20})
    );
    let r = patch(&app, &t, json!({"profile": {"age": null, "city": "广州"}})).await;
    assert_eq!(
        r.body["profile"],
        json!({"nickname": "张三", "avatar_url": "https://x/y.png", "city": "广州"})
    );
    assert_eq!(
        app.get("/v1/me", Some(&t)).await.body["profile"],
        r.body["profile"]
    );

    let r = patch(&app, &t, json!({"profile": "x"})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    let r = patch(&app, &t, json!({"nickname": "x"})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    let r = patch(&app, &t, json!({"profile": {"bio": "x".repeat(5000)}})).await;
    assert_eq!((r.status.as_u16(), r.error()), (413, "payload_too_large"));
    // Fields in the body never change identity.
    let r = patch(
        &app,
        &t,
        json!({"profile": {"openid": "oEvil", "id": "someone"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openid"], app.openid(APP1, "alice"));
    assert_ne!(r.body["id"], "someone");
}

/// What the OpenAPI document says of a profile patch (at most 64 fields,
/// names of 1 to 64 characters) is what the server does; a patch that is
/// fine on its own but would overfill the stored profile is a 409.
#[tokio::test]
async fn profile_field_rules_match_the_document() {
    let app = spawn_app().await;
    let t = token(&app.login(APP1, "fields").await).to_owned();
    let fields = |from: usize, n: usize| -> Value {
        (from..from + n)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let r = patch(&app, &t, json!({ "profile": fields(0, 65) })).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    assert!(r.message().contains("`profile`"), "{}", r.message());
    let r = patch(&app, &t, json!({ "profile": fields(0, 40) })).await;
    assert_eq!(r.status, 200);
    let r = patch(&app, &t, json!({ "profile": fields(40, 40) })).await;
    assert_eq!((r.status.as_u16(), r.error()), (409, "limit_exceeded"));
    assert!(r.message().contains("80 fields"), "{}", r.message());
    // Names count characters: 64 Chinese characters (192 bytes) are fine.
    let r = patch(&app, &t, json!({"profile": {"名".repeat(64): 1}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = patch(&app, &t, json!({"profile": {"名".repeat(65): 1}})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    let r = patch(&app, &t, json!({"profile": {"": 1}})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
}

#[tokio::test]
async fn concurrent_profile_patches_keep_every_field() {
    let app = std::sync::Arc::new(spawn_app().await);
    let t = token(&app.login(APP1, "bob").await).to_owned();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (app, t) = (app.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            patch(&app, &t, json!({"profile": {format!("f{i}"): i}}))
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let profile = app.get("/v1/me", Some(&t)).await.body["profile"].clone();
    assert_eq!(profile.as_object().unwrap().len(), 10, "{profile}");
}

#[tokio::test]
async fn phone_binding() {
    let app = spawn_app().await;
    let t = token(&app.login(APP1, "carol").await).to_owned();
    let code = app
        .sim
        .phone_code(APP1, "carol", Some("13800138000"))
        .unwrap();
    let r = app
        .post("/v1/me/phone", Some(&t), json!({"code": code}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"phone_number": "13800138000", "pure_phone_number": "13800138000", "country_code": "86"})
    );
    assert_eq!(app.get("/v1/me", Some(&t)).await.body["phone"], r.body);
    // Used again: invalid_code.
    let r = app
        .post("/v1/me/phone", Some(&t), json!({"code": code}))
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_code"));
    // Another user's code: WeChat refuses the openid pairing.
    let other = app.sim.phone_code(APP1, "dave", None).unwrap();
    let r = app
        .post("/v1/me/phone", Some(&t), json!({"code": other}))
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_code"));
    // Another app's code.
    let other_app = app.sim.phone_code(APP2, "carol", None).unwrap();
    let r = app
        .post("/v1/me/phone", Some(&t), json!({"code": other_app}))
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_code"));
    let r = app.post("/v1/me/phone", Some(&t), json!({})).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));
    let r = app.post("/v1/me/phone", None, json!({"code": "x"})).await;
    assert_eq!(r.status, 401);
    // One access token fetch served all of that.
    assert_eq!(app.sim_calls("stable_token"), 1);
}

#[tokio::test]
async fn phone_token_rejected_is_refreshed_and_retried() {
    let app = spawn_app().await;
    let t = token(&app.login(APP1, "erin").await).to_owned();
    let code = app
        .sim
        .phone_code(APP1, "erin", Some("+1 4155550123"))
        .unwrap();
    app.sim
        .fault("getuserphonenumber", Some(40001), None, Some(1))
        .unwrap();
    let r = app
        .post("/v1/me/phone", Some(&t), json!({"code": code}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["country_code"], "1");
    assert_eq!(app.sim_calls("getuserphonenumber"), 2);
}

fn encrypt_with(key: &str, data: &Value) -> (String, String) {
    let iv = [3u8; 16];
    let enc =
        wechat_miniapp::crypto::encrypt(&SessionKey::new(key), &iv, data.to_string().as_bytes())
            .unwrap();
    (enc, base64::engine::general_purpose::STANDARD.encode(iv))
}

#[tokio::test]
async fn decrypt_good_signed_stale_other_app_and_garbage() {
    let app = spawn_app().await;
    let t = token(&app.login(APP1, "fay").await).to_owned();
    let payload = app
        .sim
        .encrypt(
            APP1,
            "fay",
            json!({"stepInfoList": [{"timestamp": 1, "step": 100}]}),
        )
        .unwrap();
    let r = app
        .post(
            "/v1/me/decrypt",
            Some(&t),
            json!({"encrypted_data": payload["encrypted_data"], "iv": payload["iv"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["stepInfoList"][0]["step"], 100);
    assert_eq!(r.body["watermark"]["appid"], APP1);

    // With raw_data and signature: checked.
    let signed = json!({"encrypted_data": payload["encrypted_data"], "iv": payload["iv"],
                        "raw_data": payload["raw_data"], "signature": payload["signature"]});
    assert_eq!(
        app.post("/v1/me/decrypt", Some(&t), signed.clone())
            .await
            .status,
        200
    );
    let mut bad_sig = signed.clone();
    bad_sig["signature"] = json!("0".repeat(40));
    let r = app.post("/v1/me/decrypt", Some(&t), bad_sig).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "decrypt_failed"));
    let r = app
        .post("/v1/me/decrypt", Some(&t), json!({"encrypted_data": payload["encrypted_data"], "iv": payload["iv"], "raw_data": "{}"}))
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_request"));

    // The user's key, but the watermark of another app.
    let key = app.session_key(APP1, "fay");
    let (enc, iv) = encrypt_with(
        &key,
        &json!({"x": 1, "watermark": {"appid": APP2, "timestamp": 1}}),
    );
    let r = app
        .post(
            "/v1/me/decrypt",
            Some(&t),
            json!({"encrypted_data": enc, "iv": iv}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "decrypt_failed"));
    assert!(r.message().contains("another app"), "{}", r.message());

    // wx.login ran again on the phone: the data uses a key the server lacks.
    let _ = app.code(APP1, "fay");
    let fresh = app.sim.encrypt(APP1, "fay", json!({"x": 1})).unwrap();
    let r = app
        .post(
            "/v1/me/decrypt",
            Some(&t),
            json!({"encrypted_data": fresh["encrypted_data"], "iv": fresh["iv"]}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "decrypt_failed"));
    assert!(r.message().contains("wx.login"), "{}", r.message());

    // Garbage.
    for body in [
        json!({"encrypted_data": "!!!", "iv": payload["iv"]}),
        json!({"encrypted_data": payload["encrypted_data"], "iv": "AAAA"}),
        json!({"encrypted_data": "AAAA", "iv": payload["iv"]}),
        json!({"encrypted_data": payload["encrypted_data"]}),
    ] {
        let r = app.post("/v1/me/decrypt", Some(&t), body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "invalid_request"),
            "{body}"
        );
    }
    // A + that arrived as a space still decrypts.
    let spaced = payload["encrypted_data"]
        .as_str()
        .unwrap()
        .replace('+', " ");
    let r = app
        .post(
            "/v1/me/decrypt",
            Some(&t),
            json!({"encrypted_data": spaced, "iv": payload["iv"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
