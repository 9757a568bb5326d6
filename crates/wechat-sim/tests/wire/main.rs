//! Wire-level tests of the simulator: raw HTTP against a real socket, checking
//! exactly what a backend written in any language would see.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::{Value, json};
use wechat_miniapp::OffsetClock;
use wechat_sim::{SimConfig, Simulator};

const APP1: &str = "wx1111111111111111";
const SECRET1: &str = "11111111111111111111111111111111";
const APP2: &str = "wx2222222222222222";
const SECRET2: &str = "22222222222222222222222222222222";

struct T {
    url: String,
    http: Client,
    clock: OffsetClock,
}

async fn spawn(config: SimConfig) -> T {
    wechat_miniapp::ensure_tls_provider();
    let clock = OffsetClock::new();
    let sim = Simulator::with_clock(config, clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.serve(listener));
    T {
        url,
        http: Client::new(),
        clock,
    }
}

async fn two_apps() -> T {
    spawn(SimConfig {
        apps: [(APP1.into(), SECRET1.into()), (APP2.into(), SECRET2.into())].into(),
        ..SimConfig::default()
    })
    .await
}

impl T {
    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn code(&self, appid: &str, user: &str) -> String {
        let r: Value = self
            .post("/sim/v1/login", json!({"appid": appid, "user": user}))
            .await
            .json()
            .await
            .unwrap();
        r["code"].as_str().unwrap().to_owned()
    }

    async fn exchange(&self, appid: &str, secret: &str, code: &str) -> (String, Value) {
        let r = self
            .get(&format!("/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code"))
            .await;
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        (ct, serde_json::from_str(&r.text().await.unwrap()).unwrap())
    }

    async fn stable_token(&self, appid: &str) -> String {
        let r: Value = self
            .post(
                "/cgi-bin/stable_token",
                json!({"grant_type": "client_credential", "appid": appid, "secret": SECRET1}),
            )
            .await
            .json()
            .await
            .unwrap();
        r["access_token"].as_str().unwrap().to_owned()
    }
}

fn errcode(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn jscode2session_answers_json_as_text_plain_without_errcode() {
    let t = two_apps().await;
    let code = t.code(APP1, "alice").await;
    assert_eq!(code.len(), 32);
    let (ct, body) = t.exchange(APP1, SECRET1, &code).await;
    assert_eq!(ct, "text/plain");
    assert!(body.get("errcode").is_none(), "{body}");
    assert_eq!(body["openid"].as_str().unwrap().len(), 28);
    assert_eq!(body["session_key"].as_str().unwrap().len(), 24);
    assert!(body["unionid"].is_string());
}

#[tokio::test]
async fn jscode2session_error_codes() {
    let t = two_apps().await;
    let code = t.code(APP1, "alice").await;
    let q = |s: &str| format!("/sns/jscode2session?{s}");
    let cases = [
        (q(&format!("secret={SECRET1}&js_code={code}")), 41002),
        (q(&format!("appid={APP1}&js_code={code}")), 41004),
        (
            q(&format!("appid={APP1}&appsecret={SECRET1}&js_code={code}")),
            41004,
        ),
        (
            q(&format!("appid={APP1}&secret={SECRET1}&code={code}")),
            41008,
        ),
        (
            q(&format!(
                "appid={APP1}&secret={SECRET1}&js_code={code}&grant_type=client_credential"
            )),
            40002,
        ),
        (
            q(&format!(
                "appid=wx0000000000000000&secret={SECRET1}&js_code={code}"
            )),
            40013,
        ),
        (
            q(&format!("appid={APP1}&secret=wrong&js_code={code}")),
            40125,
        ),
        (
            q(&format!(
                "appid={APP1}&secret={SECRET1}&js_code=0716AVll20uHk94SLDml27etM946AVlq"
            )),
            40029,
        ),
        (
            q(&format!("appid={APP2}&secret={SECRET2}&js_code={code}")),
            40029,
        ),
    ];
    for (path, expected) in cases {
        let r = t.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(errcode(&body), expected, "{path}: {body}");
        let msg = body["errmsg"].as_str().unwrap();
        let rid = msg.rsplit("rid: ").next().unwrap();
        assert_eq!(rid.len(), 26, "{msg}");
    }
    // None of the failures spent the code.
    let (_, body) = t.exchange(APP1, SECRET1, &code).await;
    assert!(body["openid"].is_string(), "{body}");
    let (_, body) = t.exchange(APP1, SECRET1, &code).await;
    assert_eq!(errcode(&body), 40163);
}

#[tokio::test]
async fn posting_to_jscode2session_with_a_body_is_appid_missing() {
    let t = two_apps().await;
    let code = t.code(APP1, "alice").await;
    let r = t
        .http
        .post(format!("{}/sns/jscode2session", t.url))
        .form(&[
            ("appid", APP1),
            ("secret", SECRET1),
            ("js_code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(errcode(&body), 41002);
}

#[tokio::test]
async fn codes_expire_after_five_minutes() {
    let t = two_apps().await;
    let code = t.code(APP1, "alice").await;
    t.clock.advance(Duration::from_secs(301));
    let (_, body) = t.exchange(APP1, SECRET1, &code).await;
    assert_eq!(errcode(&body), 40029);
}

#[tokio::test]
async fn clock_can_be_moved_over_http() {
    let t = two_apps().await;
    let code = t.code(APP1, "alice").await;
    let r: Value = t
        .post("/sim/v1/clock", json!({"advance_ms": 301_000}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["offset_ms"], 301_000);
    let (_, body) = t.exchange(APP1, SECRET1, &code).await;
    assert_eq!(errcode(&body), 40029);
}

#[tokio::test]
async fn token_endpoints_wire_format() {
    let t = two_apps().await;
    let r = t
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP1}&secret={SECRET1}"
        ))
        .await;
    assert_eq!(
        r.headers()["content-type"],
        "application/json; encoding=utf-8"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], 7200);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 136 && token.as_bytes()[2] == b'_', "{token}");

    let body: Value = t.get("/cgi-bin/stable_token").await.json().await.unwrap();
    assert_eq!(errcode(&body), 43002);
    let r = t
        .http
        .post(format!("{}/cgi-bin/stable_token", t.url))
        .body("grant_type=client_credential")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        errcode(&body),
        41002,
        "a non-JSON body reads as appid missing"
    );
    let body: Value = t
        .post(
            "/cgi-bin/stable_token",
            json!({"grant_type": "x", "appid": APP1, "secret": SECRET1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&body), 40002);
}

#[tokio::test]
async fn checksession_and_phone_wire_format() {
    let t = two_apps().await;
    let token = t.stable_token(APP1).await;
    let code = t.code(APP1, "alice").await;
    let (_, s) = t.exchange(APP1, SECRET1, &code).await;
    let key = wechat_miniapp::SessionKey::new(s["session_key"].as_str().unwrap());
    let sig = wechat_miniapp::crypto::login_state_signature(&key, b"");
    let openid = s["openid"].as_str().unwrap();
    let path = |sig: &str, method: &str| {
        format!(
            "/wxa/checksession?access_token={token}&openid={openid}&signature={sig}&sig_method={method}"
        )
    };
    let body: Value = t
        .get(&path(&sig, "hmac_sha256"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"errcode": 0, "errmsg": "ok"}));
    let body: Value = t.get(&path(&sig, "md5")).await.json().await.unwrap();
    assert_eq!(errcode(&body), 87008);
    let body: Value = t
        .get(&path(&"0".repeat(64), "hmac_sha256"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&body), 87009);
    let body: Value = t
        .get("/wxa/checksession?openid=x")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&body), 41001);

    let pcode: Value = t
        .post(
            "/sim/v1/phone-code",
            json!({"appid": APP1, "user": "alice"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let pcode = pcode["code"].as_str().unwrap();
    let url = format!("/wxa/business/getuserphonenumber?access_token={token}");
    let body: Value = t.get(&url).await.json().await.unwrap();
    assert_eq!(errcode(&body), 43002);
    let r = t
        .http
        .post(format!("{}{url}", t.url))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(errcode(&r.json::<Value>().await.unwrap()), 44002);
    let r = t
        .http
        .post(format!("{}{url}", t.url))
        .form(&[("code", pcode)])
        .send()
        .await
        .unwrap();
    assert_eq!(errcode(&r.json::<Value>().await.unwrap()), 47001);
    let body: Value = t
        .post(&url, json!({"code": pcode}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["errcode"], 0);
    assert_eq!(body["errmsg"], "ok");
    // countryCode is a string on the wire, as real WeChat sends it.
    assert_eq!(body["phone_info"]["countryCode"], "86");
    assert_eq!(body["phone_info"]["watermark"]["appid"], APP1);
    let body: Value = t
        .post(&url, json!({"code": pcode}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&body), 40029);
}

#[tokio::test]
async fn phone_side_errors_are_clear() {
    let t = two_apps().await;
    let r = t
        .post(
            "/sim/v1/login",
            json!({"appid": "wx0000000000000000", "user": "alice"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_app");
    assert!(body["message"].as_str().unwrap().contains("--app"));
    let r = t.post("/sim/v1/login", json!({"appid": APP1})).await;
    assert_eq!(r.status(), 400);
    let r = t
        .post("/sim/v1/login", json!({"appid": APP1, "user": ""}))
        .await;
    assert_eq!(r.status(), 400);
    let r = t
        .post(
            "/sim/v1/encrypt",
            json!({"appid": APP1, "user": "a", "data": [1]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = t
        .post(
            "/sim/v1/phone-code",
            json!({"appid": APP1, "user": "a", "phone": "abc"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = t
        .post("/sim/v1/faults", json!({"api": "jscode2session"}))
        .await;
    assert_eq!(r.status(), 400);
    let r = t
        .post(
            "/sim/v1/faults",
            json!({"api": "jscode2session", "errcode": -1, "rate": 1.5}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .post(format!("{}/sim/v1/login", t.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn introspection_is_stable_per_app_and_user() {
    let t = two_apps().await;
    let a1: Value = t
        .get(&format!("/sim/v1/users/{APP1}/alice"))
        .await
        .json()
        .await
        .unwrap();
    let a2: Value = t
        .get(&format!("/sim/v1/users/{APP2}/alice"))
        .await
        .json()
        .await
        .unwrap();
    let b1: Value = t
        .get(&format!("/sim/v1/users/{APP1}/bob"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a1["openid"], a2["openid"]);
    assert_eq!(a1["unionid"], a2["unionid"]);
    assert_ne!(a1["unionid"], b1["unionid"]);
    let code = t.code(APP1, "alice").await;
    let after: Value = t
        .get(&format!("/sim/v1/users/{APP1}/alice"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        after["session_key"], a1["session_key"],
        "a new code rotates the key"
    );
    let (_, s) = t.exchange(APP1, SECRET1, &code).await;
    assert_eq!(s["session_key"], after["session_key"]);
    assert_eq!(s["openid"], a1["openid"]);
}

#[tokio::test]
async fn faults_with_count_rate_and_clearing() {
    let t = two_apps().await;
    let r = t
        .post(
            "/sim/v1/faults",
            json!({"api": "token", "errcode": 45009, "count": 2}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let path = format!("/cgi-bin/token?grant_type=client_credential&appid={APP1}&secret={SECRET1}");
    for expected in [45009, 45009, 0] {
        let body: Value = t.get(&path).await.json().await.unwrap();
        assert_eq!(errcode(&body), expected);
    }
    // rate 0.5 over 200 calls: some but not all hit (chance of failure ~1e-60).
    t.post(
        "/sim/v1/faults",
        json!({"api": "token", "errcode": -1, "rate": 0.5}),
    )
    .await;
    let mut hits = 0;
    for _ in 0..200 {
        let body: Value = t.get(&path).await.json().await.unwrap();
        if errcode(&body) == -1 {
            hits += 1;
        }
    }
    assert!(hits > 0 && hits < 200, "{hits}");
    let r = t
        .http
        .delete(format!("{}/sim/v1/faults", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let body: Value = t.get(&path).await.json().await.unwrap();
    assert_eq!(errcode(&body), 0);

    let stats: Value = t.get("/sim/v1/stats").await.json().await.unwrap();
    assert_eq!(stats["calls"]["token"], 204);
    assert_eq!(stats["errcodes"]["token"]["45009"], 2);
    assert_eq!(stats["errcodes"]["token"]["-1"], hits);
    t.http
        .delete(format!("{}/sim/v1/stats", t.url))
        .send()
        .await
        .unwrap();
    let stats: Value = t.get("/sim/v1/stats").await.json().await.unwrap();
    assert_eq!(stats["calls"], json!({}));
}

#[tokio::test]
async fn delay_fault_delays() {
    let t = two_apps().await;
    t.post(
        "/sim/v1/faults",
        json!({"api": "token", "delay_ms": 300, "count": 1}),
    )
    .await;
    let started = std::time::Instant::now();
    let path = format!("/cgi-bin/token?grant_type=client_credential&appid={APP1}&secret={SECRET1}");
    let body: Value = t.get(&path).await.json().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(errcode(&body), 0);
}

#[tokio::test]
async fn open_mode_accepts_any_app() {
    let t = spawn(SimConfig {
        open: true,
        ..SimConfig::default()
    })
    .await;
    let code = t.code("wxanything", "zoe").await;
    let (_, body) = t.exchange("wxanything", "whatever", &code).await;
    assert!(body["openid"].is_string(), "{body}");
}

#[tokio::test]
async fn a_migrated_user_logs_in_with_the_openid_they_had() {
    let t = two_apps().await;
    let login = |body: Value| {
        let t = &t;
        async move {
            let r: Value = t.post("/sim/v1/login", body).await.json().await.unwrap();
            r["code"].as_str().unwrap().to_owned()
        }
    };
    // With a unionid: jscode2session answers exactly those ids, every time.
    let openid = "oLeanCloud_user-0001";
    for _ in 0..2 {
        let code = login(json!({"appid": APP1, "openid": openid, "unionid": "oUnion-0001"})).await;
        let (_, body) = t.exchange(APP1, SECRET1, &code).await;
        assert_eq!(body["openid"], openid, "{body}");
        assert_eq!(body["unionid"], "oUnion-0001");
    }
    // Without one (an app bound to no Open Platform account): no unionid.
    let code = login(json!({"appid": APP1, "openid": "oNoUnion"})).await;
    let (_, body) = t.exchange(APP1, SECRET1, &code).await;
    assert_eq!(body["openid"], "oNoUnion");
    assert!(body.get("unionid").is_none(), "{body}");
    // A named test user's openid reaches that same user.
    let alice: Value = t
        .get(&format!("/sim/v1/users/{APP1}/alice"))
        .await
        .json()
        .await
        .unwrap();
    let code = login(json!({"appid": APP1, "openid": alice["openid"]})).await;
    let (_, body) = t.exchange(APP1, SECRET1, &code).await;
    assert_eq!(body["unionid"], alice["unionid"]);
    // user and openid are alternatives; ids are checked.
    for bad in [
        json!({"appid": APP1, "user": "a", "openid": "o1"}),
        json!({"appid": APP1, "user": "a", "unionid": "u1"}),
        json!({"appid": APP1, "openid": "has space"}),
        json!({"appid": APP1, "openid": ""}),
    ] {
        let r = t.post("/sim/v1/login", bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
}

/// A receiver that is slow the first time, fails the second and
/// acknowledges the third: the simulator sends the push three times, each
/// signed and encrypted afresh, the same event inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_signed_encrypted_and_sent_again_until_acknowledged() {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Query, State};
    use wechat_miniapp::push::PushKeys;
    use wechat_miniapp::push_body::parse_body;

    type Seen = Arc<Mutex<Vec<(std::collections::HashMap<String, String>, String)>>>;
    async fn receive(
        State(seen): State<Seen>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        body: String,
    ) -> (axum::http::StatusCode, &'static str) {
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push((q, body));
            seen.len()
        };
        match n {
            1 => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                (axum::http::StatusCode::OK, "success")
            }
            2 => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "busy"),
            _ => (axum::http::StatusCode::OK, "success"),
        }
    }
    let seen: Seen = Arc::default();
    let receiver = axum::Router::new()
        .route("/push", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let t = two_apps().await;
    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    // Refused settings: a bad key, safe mode without one, an unknown app.
    for (body, status) in [
        (
            json!({"appid": APP1, "url": receiver_url, "token": "tok123", "aes_key": "short"}),
            400,
        ),
        (
            json!({"appid": APP1, "url": receiver_url, "token": "tok123", "mode": "safe"}),
            400,
        ),
        (
            json!({"appid": "wx0", "url": receiver_url, "token": "tok123"}),
            404,
        ),
    ] {
        assert_eq!(t.post("/sim/v1/push-targets", body).await.status(), status);
    }
    // No target yet for APP2: a revoke cannot be pushed.
    let r = t
        .post(
            "/sim/v1/revoke-authorization",
            json!({"appid": APP2, "user": "u"}),
        )
        .await;
    assert_eq!(r.status(), 400);

    let r = t
        .post(
            "/sim/v1/push-targets",
            json!({"appid": APP1, "url": receiver_url, "token": "tok123", "aes_key": key,
                   "format": "xml", "timeout_ms": 500}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = t
        .post(
            "/sim/v1/revoke-authorization",
            json!({"appid": APP1, "user": "alice", "revoke_info": "8"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["push_id"]
        .as_u64()
        .unwrap();
    let record = loop {
        let pushes: Value = t.get("/sim/v1/pushes").await.json().await.unwrap();
        let record = pushes["pushes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()
            .clone();
        if record["done"] == true {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record["delivered"], true, "{record}");
    assert_eq!(record["attempts"], 3, "{record}");
    assert_eq!(record["event"], "user_authorization_revoke");

    let keys = PushKeys::new(APP1, "tok123", Some(key)).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let mut messages = Vec::new();
    for (q, body) in &seen {
        assert_eq!(q["encrypt_type"], "aes");
        assert!(keys.check_signature(&q["signature"], &q["timestamp"], &q["nonce"]));
        let outer = parse_body(body.as_bytes()).unwrap();
        assert!(body.starts_with("<xml>"), "{body}");
        let encrypt = outer["Encrypt"].as_str().unwrap();
        assert!(keys.check_msg_signature(
            &q["msg_signature"],
            &q["timestamp"],
            &q["nonce"],
            encrypt
        ));
        messages.push((encrypt.to_owned(), keys.decrypt(encrypt).unwrap()));
    }
    assert_ne!(messages[0].0, messages[1].0, "encrypted afresh each time");
    assert_eq!(messages[0].1, messages[2].1, "the same event each time");
    let event = parse_body(&messages[0].1).unwrap();
    let alice: Value = t
        .get(&format!("/sim/v1/users/{APP1}/alice"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(event["Event"], "user_authorization_revoke");
    assert_eq!(event["OpenID"], alice["openid"]);
    assert_eq!(event["FromUserName"], alice["openid"]);
    assert_eq!(event["RevokeInfo"], "8");
    assert_eq!(seen[0].0["openid"], alice["openid"].as_str().unwrap());
}

/// msgSecCheck v2: errcode 0 whatever the verdict, the verdict from the
/// word lists; v1's 87014; WeChat's refusals of the scene, the openid and
/// a user who has not opened the mini program for two hours.
#[tokio::test]
async fn msg_sec_check_judges_by_the_word_lists() {
    let t = two_apps().await;
    let alice: Value = {
        t.post("/sim/v1/login", json!({"appid": APP1, "user": "alice"}))
            .await;
        t.get(&format!("/sim/v1/users/{APP1}/alice"))
            .await
            .json()
            .await
            .unwrap()
    };
    let openid = alice["openid"].as_str().unwrap().to_owned();
    let token = t.stable_token(APP1).await;
    let check = |body: Value| {
        let url = format!("/wxa/msg_sec_check?access_token={token}");
        let t = &t;
        async move { t.post(&url, body).await.json::<Value>().await.unwrap() }
    };
    let v2 = |content: &str, scene: i64, openid: &str| json!({"content": content, "version": 2, "scene": scene, "openid": openid});
    let pass = check(v2("hello there", 2, &openid)).await;
    assert_eq!(errcode(&pass), 0);
    assert_eq!(pass["result"], json!({"suggest": "pass", "label": 100}));
    assert!(pass["trace_id"].as_str().unwrap().len() > 10);
    for text in ["buy RISKY-test-word now", "这是违规测试内容"] {
        let risky = check(v2(text, 3, &openid)).await;
        assert_eq!(errcode(&risky), 0, "v2 answers 0 for a risky text too");
        assert_eq!(risky["result"]["suggest"], "risky", "{text}");
        assert_eq!(risky["result"]["label"], wechat_sim::RISKY_LABEL);
    }
    let review = check(v2("a review-test-word here", 2, &openid)).await;
    assert_eq!(review["result"]["suggest"], "review");
    // Version 1: 87014 for risky text.
    let v1 = check(json!({"content": "risky-test-word"})).await;
    assert_eq!(errcode(&v1), 87014);
    // Refusals.
    assert_eq!(errcode(&check(v2("x", 5, &openid)).await), 40129);
    assert_eq!(errcode(&check(v2("x", 2, "oNOBODY")).await), 40003);
    t.post("/sim/v1/login", json!({"appid": APP2, "user": "bob"}))
        .await;
    let bob: Value = t
        .get(&format!("/sim/v1/users/{APP2}/bob"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        errcode(&check(v2("x", 2, bob["openid"].as_str().unwrap())).await),
        43104
    );
    let long = "好".repeat(wechat_sim::MAX_CHECKED_CHARS + 1);
    assert_eq!(errcode(&check(v2(&long, 2, &openid)).await), 47001);

    // New word lists replace the old.
    let r = t
        .post(
            "/sim/v1/content-rules",
            json!({"risky": ["spam"], "review": []}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        check(v2("risky-test-word", 2, &openid)).await["result"]["suggest"],
        "pass"
    );
    assert_eq!(
        check(v2("SPAM", 2, &openid)).await["result"]["suggest"],
        "risky"
    );
    let bad = t
        .post("/sim/v1/content-rules", json!({"risky": [""]}))
        .await;
    assert_eq!(bad.status(), 400);

    // Two hours after alice last opened the mini program: 61010.
    t.clock.advance(Duration::from_millis(
        (wechat_sim::VISIT_WINDOW_MS + 1000) as u64,
    ));
    let token = t.stable_token(APP1).await;
    let r: Value = t
        .post(
            &format!("/wxa/msg_sec_check?access_token={token}"),
            v2("x", 2, &openid),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&r), 61010);
}

/// subscribeMessage.send spends one consent per accept; without one,
/// 43101; WeChat's other refusals.
#[tokio::test]
async fn subscribe_send_spends_one_consent_per_accept() {
    let t = two_apps().await;
    t.post("/sim/v1/login", json!({"appid": APP1, "user": "carol"}))
        .await;
    let carol: Value = t
        .get(&format!("/sim/v1/users/{APP1}/carol"))
        .await
        .json()
        .await
        .unwrap();
    let token = t.stable_token(APP1).await;
    let send = |body: Value| {
        let url = format!("/cgi-bin/message/subscribe/send?access_token={token}");
        let t = &t;
        async move { t.post(&url, body).await.json::<Value>().await.unwrap() }
    };
    let message = |template: &str| {
        json!({"touser": carol["openid"], "template_id": template, "page": "pages/index/index",
               "data": {"thing1": {"value": "shipped"}}, "miniprogram_state": "developer"})
    };
    assert_eq!(
        errcode(&send(message("TPL_A")).await),
        43101,
        "no consent yet"
    );
    for _ in 0..2 {
        let r = t
            .post(
                "/sim/v1/subscribe",
                json!({"appid": APP1, "user": "carol", "template_id": "TPL_A", "accept": true}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let r: Value = r.json().await.unwrap();
        assert_eq!(r["result"]["TPL_A"], "accept");
        assert_eq!(r["push_id"], Value::Null, "no push URL set");
    }
    // Two accepts: two sends.
    for _ in 0..2 {
        let ok = send(message("TPL_A")).await;
        assert_eq!(errcode(&ok), 0, "{ok}");
        assert!(ok["msgid"].as_u64().unwrap() > 1 << 53);
    }
    assert_eq!(errcode(&send(message("TPL_A")).await), 43101);
    // A reject clears what was left.
    for accept in [true, false] {
        t.post(
            "/sim/v1/subscribe",
            json!({"appid": APP1, "user": "carol", "template_id": "TPL_B", "accept": accept}),
        )
        .await;
    }
    assert_eq!(errcode(&send(message("TPL_B")).await), 43101);
    // WeChat's refusals of the request itself.
    let mut bad = message("TPL_A");
    bad["template_id"] = json!("");
    assert_eq!(errcode(&send(bad).await), 40037);
    let mut bad = message("TPL_A");
    bad["data"] = json!({"thing1": "shipped"});
    assert_eq!(errcode(&send(bad).await), 47003);
    let mut bad = message("TPL_A");
    bad["touser"] = json!("oNOBODY");
    assert_eq!(errcode(&send(bad).await), 40003);
    let mut bad = message("TPL_A");
    bad["page"] = json!("no such page");
    assert_eq!(errcode(&send(bad).await), 41030);
}
