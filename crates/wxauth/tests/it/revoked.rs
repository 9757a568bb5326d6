//! A user withdrawing their authorization (issue 32): the simulator pushes
//! `user_authorization_revoke` to a running wxauth over real HTTP, signed
//! and encrypted as WeChat does, in every mode and format; the user's
//! sessions end (or their account goes), once, audited as WeChat's doing.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wechat_sim::{PushFormat, PushMode, PushRecord, PushTarget, Simulator};

use crate::app::{ADMIN_KEY, APP1, APP2, TestApp, refresh, spawn_app_tweaked, token};

pub const TOKEN: &str = "wxauthPushToken1";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// APP1 takes encrypted pushes, APP2 plain ones.
fn push_settings(c: &mut wxauth::config::Config) {
    c.apps[0].push_token = Some(TOKEN.into());
    c.apps[0].push_aes_key = Some(AES_KEY.into());
    c.apps[1].push_token = Some(TOKEN.into());
}

pub fn target(app_url: &str, appid: &str, mode: PushMode, format: PushFormat) -> PushTarget {
    PushTarget {
        appid: appid.into(),
        url: format!("{app_url}/v1/wechat/push/{appid}"),
        token: TOKEN.into(),
        aes_key: (mode != PushMode::Plain).then(|| AES_KEY.into()),
        mode: Some(mode),
        format,
        timeout_ms: 5000,
        attempts: 3,
    }
}

/// Waits until push `id` is delivered or given up; its record.
pub async fn settled(sim: &Simulator, id: u64) -> PushRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = sim.pushes().into_iter().find(|r| r.id == id && r.done) {
            return r;
        }
        assert!(Instant::now() < deadline, "push {id} still under way");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn audit_of(app: &TestApp, user_id: &str) -> Vec<Value> {
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target=user:{user_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("wechat:"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_revoke_ends_the_users_sessions_in_every_mode_and_format() {
    let app = spawn_app_tweaked(push_settings).await;
    let cases = [
        (APP1, PushMode::Safe, PushFormat::Json),
        (APP1, PushMode::Safe, PushFormat::Xml),
        (APP1, PushMode::Compatible, PushFormat::Json),
        (APP1, PushMode::Compatible, PushFormat::Xml),
        (APP2, PushMode::Plain, PushFormat::Json),
        (APP2, PushMode::Plain, PushFormat::Xml),
    ];
    for (i, (appid, mode, format)) in cases.into_iter().enumerate() {
        let what = format!("{appid} {mode:?} {format:?}");
        app.sim
            .set_push_target(target(&app.url, appid, mode, format))
            .unwrap();
        let user = format!("leaver{i}");
        let stayer = format!("stayer{i}");
        let session = app.login(appid, &user).await;
        let other = app.login(appid, &stayer).await;
        let user_id = session["user"]["id"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/v1/me", Some(token(&session))).await.status, 200);

        let id = app
            .sim
            .revoke_authorization(appid, Some(&user), None, false, "1")
            .unwrap();
        let record = settled(&app.sim, id).await;
        assert!(record.delivered, "{what}: {record:?}");
        assert_eq!(record.attempts, 1, "{what}: {record:?}");

        let me = app.get("/v1/me", Some(token(&session))).await;
        assert_eq!(me.status, 401, "{what}: {:?}", me.body);
        let renewed = app
            .post(
                "/v1/token/refresh",
                None,
                json!({"refresh_token": refresh(&session)}),
            )
            .await;
        assert_eq!(renewed.status, 401, "{what}: {:?}", renewed.body);
        // Someone else's session is untouched; the account stays (a new
        // login continues it).
        assert_eq!(app.get("/v1/me", Some(token(&other))).await.status, 200);
        let again = app.login(appid, &user).await;
        assert_eq!(again["user"]["id"], user_id.as_str(), "{what}");

        let entries = audit_of(&app, &user_id).await;
        assert_eq!(entries.len(), 1, "{what}: {entries:?}");
        assert_eq!(entries[0]["actor"], format!("wechat:{appid}"));
        assert_eq!(entries[0]["action"], "push user_authorization_revoke");
        assert_eq!(entries[0]["detail"]["sessions_ended"], 1, "{entries:?}");
    }
}

/// WeChat sends a push again when the answer is late; a replayed request
/// is the same. Both are acknowledged and acted on once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_push_is_acknowledged_and_acted_on_once() {
    let app = spawn_app_tweaked(push_settings).await;
    let session = app.login(APP1, "twice").await;
    let user_id = session["user"]["id"].as_str().unwrap().to_owned();
    let openid = app.openid(APP1, "twice");
    // The same event, encrypted and signed afresh each time (as WeChat's
    // retries are), sent three times.
    let mut fresh = None;
    for (n, (query, body)) in encrypted_copies(&json!(openid), 3).into_iter().enumerate() {
        let r = app
            .http
            .post(format!("{}/v1/wechat/push/{APP1}", app.url))
            .query(&query)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "success");
        // The first ends the session; the user logs in again, and the
        // later copies end nothing more.
        if n == 0 {
            assert_eq!(app.get("/v1/me", Some(token(&session))).await.status, 401);
            fresh = Some(app.login(APP1, "twice").await);
        }
    }
    let fresh = fresh.unwrap();
    assert_eq!(app.get("/v1/me", Some(token(&fresh))).await.status, 200);
    let entries = audit_of(&app, &user_id).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["detail"]["revoke_info"], "6");
    assert!(
        app.metrics().await.contains("wxauth_push_repeats_total"),
        "repeats are counted"
    );
}

/// `n` copies of one `user_authorization_revoke` for `openid` of APP1
/// (RevokeInfo 6), each encrypted and signed afresh as WeChat's retries
/// are: each copy's query and body.
pub fn encrypted_copies(openid: &Value, n: usize) -> Vec<(Vec<(String, String)>, String)> {
    let keys = wechat_miniapp::push::PushKeys::new(APP1, TOKEN, Some(AES_KEY)).unwrap();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let event = json!({
        "ToUserName": "gh_0123456789ab", "FromUserName": openid, "CreateTime": created,
        "MsgType": "event", "Event": "user_authorization_revoke",
        "OpenID": openid, "AppID": APP1, "RevokeInfo": "6",
    })
    .to_string();
    (0..n)
        .map(|i| {
            let random: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
            let encrypt = keys.encrypt(event.as_bytes(), random).unwrap();
            let nonce = (1000 + i).to_string();
            let query = vec![
                ("timestamp".to_owned(), created.clone()),
                ("signature".to_owned(), keys.signature(&created, &nonce)),
                (
                    "msg_signature".to_owned(),
                    keys.msg_signature(&created, &nonce, &encrypt),
                ),
                ("nonce".to_owned(), nonce),
                ("encrypt_type".to_owned(), "aes".to_owned()),
            ];
            let body = json!({"ToUserName": "gh_0123456789ab", "Encrypt": encrypt}).to_string();
            (query, body)
        })
        .collect()
}

/// `on_authorization_revoke = "delete"`: the account and its data go, for
/// a revoke and for a closed WeChat account alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_delete_a_pushed_revoke_deletes_the_account() {
    let app = spawn_app_tweaked(|c| {
        push_settings(c);
        c.apps[0].on_authorization_revoke = wxauth::config::OnRevoke::Delete;
    })
    .await;
    app.sim
        .set_push_target(target(&app.url, APP1, PushMode::Safe, PushFormat::Xml))
        .unwrap();
    for (user, closed) in [("gone", false), ("closed", true)] {
        let session = app.login(APP1, user).await;
        let user_id = session["user"]["id"].as_str().unwrap().to_owned();
        let r = app
            .post(
                "/v1/data/notes",
                Some(token(&session)),
                json!({"text": "mine"}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);

        let id = app
            .sim
            .revoke_authorization(APP1, Some(user), None, closed, "1")
            .unwrap();
        assert!(settled(&app.sim, id).await.delivered);

        let shown = app
            .admin(
                Some(ADMIN_KEY),
                Method::GET,
                &format!("/admin/v1/users/{user_id}"),
                None,
            )
            .await;
        assert_eq!(shown.status, 404, "{user}: {:?}", shown.body);
        assert_eq!(app.get("/v1/me", Some(token(&session))).await.status, 401);
        let again = app.login(APP1, user).await;
        assert_ne!(again["user"]["id"], user_id.as_str());
        let entries = audit_of(&app, &user_id).await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        let action = if closed {
            "push user_authorization_cancellation"
        } else {
            "push user_authorization_revoke"
        };
        assert_eq!(entries[0]["action"], action);
    }
    // A revoke for someone who never logged in here changes nothing and
    // is acknowledged.
    let id = app
        .sim
        .revoke_authorization(APP1, Some("stranger"), None, false, "1")
        .unwrap();
    assert!(settled(&app.sim, id).await.delivered);
}

/// `push_forward_url`: events wxauth does not act on go to the
/// developer's service with identity headers and a signature verifiable
/// with the JWKS; a service that does not take one makes WeChat send it
/// again, and the next copy is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhandled_events_are_forwarded_signed_to_the_developers_service() {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use sha2::Digest;

    type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;
    async fn take(
        axum::extract::State(seen): axum::extract::State<Seen>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let mut seen = seen.lock().unwrap();
        seen.push((headers, body));
        // The first delivery fails; later ones are taken.
        if seen.len() == 1 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        }
    }
    let seen: Seen = Arc::default();
    let service = axum::Router::new()
        .route("/wechat/events", axum::routing::post(take))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}/wechat/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await });
    let app = crate::app::spawn_app_with(crate::app::Options {
        tweak: push_settings,
        edit: Some(Box::new(move |c| {
            c.apps[0].push_forward_url = Some(service_url)
        })),
        ..Default::default()
    })
    .await
    .unwrap();

    let session = app.login(APP1, "forwarded").await;
    let openid = app.openid(APP1, "forwarded");
    let event = json!({
        "ToUserName": "gh_0123456789ab", "FromUserName": openid, "CreateTime": 1,
        "MsgType": "event", "Event": "user_info_modified", "OpenID": openid, "AppID": APP1,
    });
    let send = |n: usize| {
        let keys = wechat_miniapp::push::PushKeys::new(APP1, TOKEN, Some(AES_KEY)).unwrap();
        let ts = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs())
        .to_string();
        let nonce = format!("77{n}");
        let encrypt = keys
            .encrypt(
                event.to_string().as_bytes(),
                *uuid::Uuid::new_v4().as_bytes(),
            )
            .unwrap();
        let msg_signature = keys.msg_signature(&ts, &nonce, &encrypt);
        let app = &app;
        async move {
            app.http
                .post(format!("{}/v1/wechat/push/{APP1}", app.url))
                .query(&[
                    ("timestamp", ts.as_str()),
                    ("nonce", nonce.as_str()),
                    ("encrypt_type", "aes"),
                    ("msg_signature", msg_signature.as_str()),
                ])
                .body(json!({"Encrypt": encrypt}).to_string())
                .send()
                .await
                .unwrap()
        }
    };
    // The service fails the first: WeChat is told to send it again (5xx).
    let r = send(1).await;
    assert_eq!(r.status(), 502);
    // WeChat's next copy is forwarded and taken.
    let r = send(2).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "success");
    // A third copy is a repeat: acknowledged, not forwarded.
    assert_eq!(send(3).await.status(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "forwarded twice: the failed and the taken");

    let (headers, body) = &seen[1];
    let got: Value = serde_json::from_str(body).unwrap();
    assert_eq!(got, event, "the decrypted event, as JSON");
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("x-wxauth-appid").as_deref(), Some(APP1));
    assert_eq!(h("x-wxauth-openid"), Some(openid.clone()));
    assert_eq!(h("x-wxauth-event").as_deref(), Some("user_info_modified"));
    assert_eq!(
        h("x-wxauth-user-id").as_deref(),
        session["user"]["id"].as_str()
    );
    // The signature: a JWT from the JWKS's key over the body's SHA-256.
    let jwks = app.get("/.well-known/jwks.json", None).await;
    let set: JwkSet = serde_json::from_value(jwks.body.clone()).unwrap();
    let signature = h("x-wxauth-signature").unwrap();
    let kid = jsonwebtoken::decode_header(&signature)
        .unwrap()
        .kid
        .unwrap();
    let key = DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["wxauth-push"]);
    let claims = jsonwebtoken::decode::<Value>(&signature, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(
        claims["sha256"],
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    );
    assert_eq!(claims["app"], APP1);
    assert!(
        app.metrics()
            .await
            .contains("wxauth_push_forwarded_total{result=\"failed\"}")
    );
}
