//! Access tokens that services verify with public keys: EdDSA by default,
//! JWKS and discovery, rotation, algorithm confusion, HS256 by choice.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use std::time::Duration;

use crate::app::*;

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

#[tokio::test]
async fn tokens_verify_with_the_published_keys_alone() {
    let app = spawn_app().await;
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, 200);
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (
            &keys[0]["kty"],
            &keys[0]["crv"],
            &keys[0]["alg"],
            &keys[0]["kid"]
        ),
        (
            &json!("OKP"),
            &json!("Ed25519"),
            &json!("EdDSA"),
            &json!("t1")
        )
    );
    assert!(keys[0].get("d").is_none(), "no private part");

    let login = app.login(APP1, "alice").await;
    let t = token(&login);
    assert_eq!(header_of(t)["alg"], "EdDSA");
    // Verified from the JWKS document only, by the library's JWK path.
    let set: JwkSet = serde_json::from_value(jwks.body.clone()).unwrap();
    let key = DecodingKey::from_jwk(set.find("t1").unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["wxauth"]);
    let claims = jsonwebtoken::decode::<Value>(t, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], login["user"]["id"]);
    assert_eq!(claims["app"], APP1);

    let discovery = app.get("/.well-known/openid-configuration", None).await;
    assert_eq!(discovery.status, 200);
    assert_eq!(discovery.body["issuer"], "wxauth");
    let jwks_uri = discovery.body["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, format!("{}/.well-known/jwks.json", app.url));
    assert_eq!(
        discovery.body["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    // A client's Host never makes its way into the document.
    let spoofed = app
        .http
        .get(format!("{}/.well-known/openid-configuration", app.url))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    let body: Value = spoofed.json().await.unwrap();
    assert_eq!(body["jwks_uri"], jwks_uri);
}

/// Listening on every interface without `public_url`, the service cannot
/// know its own URL: discovery is a 404 naming the setting, whatever the
/// Host; with `public_url`, that URL.
#[tokio::test]
async fn discovery_never_reflects_the_host_header() {
    let app = spawn_app_with(Options {
        edit: Some(Box::new(|c| c.listen = "0.0.0.0:8080".parse().unwrap())),
        ..Options::default()
    })
    .await
    .unwrap();
    for host in [None, Some("evil.example")] {
        let mut req = app
            .http
            .get(format!("{}/.well-known/openid-configuration", app.url));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let r = crate::app::reply(req.send().await.unwrap()).await;
        assert_eq!(r.status, 404, "{:?}", r.body);
        assert_eq!(r.error(), "not_found");
        assert!(r.message().contains("public_url"), "{}", r.message());
    }
    let app = spawn_app_with(Options {
        edit: Some(Box::new(|c| {
            c.listen = "0.0.0.0:8080".parse().unwrap();
            c.public_url = Some("https://auth.example.com".into());
        })),
        ..Options::default()
    })
    .await
    .unwrap();
    let r = app.get("/.well-known/openid-configuration", None).await;
    assert_eq!(
        r.body["jwks_uri"],
        "https://auth.example.com/.well-known/jwks.json"
    );
}

#[tokio::test]
async fn algorithm_confusion_and_unsigned_tokens_are_refused() {
    let app = spawn_app().await;
    let login = app.login(APP1, "mallory").await;
    let t = token(&login);
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("t1".into());
    // HS256 with the public key (as published, and as raw bytes) as the secret.
    for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&x).unwrap()] {
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        let r = app.get("/v1/me", Some(&forged)).await;
        assert_eq!(r.status, 401, "alg confusion must fail");
    }
    // alg none, with and without a signature part.
    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"t1"}"#);
    let body = t.split('.').nth(1).unwrap();
    for forged in [format!("{none}.{body}."), format!("{none}.{body}")] {
        assert_eq!(app.get("/v1/me", Some(&forged)).await.status, 401);
    }
    assert_eq!(app.get("/v1/me", Some(t)).await.status, 200);
}

#[tokio::test]
async fn rotation_keeps_old_tokens_until_they_expire() {
    let app = spawn_app_with(Options {
        access_ttl_secs: 60,
        tweak: |c| {
            // A new key signs; the old one (t1) still verifies.
            c.tokens.signing_keys.insert(
                0,
                wxauth::config::KeyConfig {
                    id: "t2".into(),
                    key: Some(b64_key(8).into()),
                    key_env: None,
                    alg: None,
                },
            );
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let new = app.login(APP1, "rot").await;
    assert_eq!(header_of(token(&new))["kid"], "t2");
    let kids: Vec<Value> = app.get("/.well-known/jwks.json", None).await.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids, vec![json!("t2"), json!("t1")]);

    // A token signed by the old key (as an instance still on the old
    // configuration issues it): accepted until its expiry, then not.
    let old_key = jsonwebtoken::EncodingKey::from_ed_der(&ed25519_pkcs8(&[7; 32]));
    let now = wechat_miniapp::Clock::now_ms(&app.clock) / 1000;
    let mut claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token(&new).split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 60);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("t1".into());
    let old = jsonwebtoken::encode(&header, &claims, &old_key).unwrap();
    assert_eq!(app.get("/v1/me", Some(&old)).await.status, 200);
    app.advance(Duration::from_secs(61));
    assert_eq!(app.get("/v1/me", Some(&old)).await.status, 401);
}

/// PKCS#8 of an Ed25519 seed (RFC 8410), as jsonwebtoken takes it.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

#[tokio::test]
async fn hs256_remains_a_configuration_choice() {
    let app = spawn_app_with(Options {
        tweak: |c| c.tokens.signing_keys[0].alg = Some("HS256".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let login = app.login(APP1, "legacy").await;
    assert_eq!(header_of(token(&login))["alg"], "HS256");
    assert_eq!(app.get("/v1/me", Some(token(&login))).await.status, 200);
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(
        jwks.body,
        json!({"keys": []}),
        "a secret is never published"
    );
}

const SERVICE_KEY: &str = "svc_introspect_0123456789abcdef";
const NARROW_KEY: &str = "svc_narrow_0123456789abcdefghij";

fn with_service_keys(c: &mut wxauth::config::Config) {
    use sha2::Digest;
    c.service_keys = vec![
        wxauth::config::ServiceKeyConfig {
            id: "orders".into(),
            sha256: Some(hex::encode(sha2::Sha256::digest(SERVICE_KEY))),
            key_env: None,
            scopes: vec!["introspect".into()],
        },
        wxauth::config::ServiceKeyConfig {
            id: "reports".into(),
            sha256: Some(hex::encode(sha2::Sha256::digest(NARROW_KEY))),
            key_env: None,
            scopes: vec!["users:read".into()],
        },
    ];
}

async fn introspect(app: &TestApp, key: Option<&str>, form: &str) -> Reply {
    let mut req = app
        .http
        .post(format!("{}/v1/introspect", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    reply(req.send().await.unwrap()).await
}

#[tokio::test]
async fn introspection_answers_services_with_a_key() {
    let app = spawn_app_with(Options {
        access_ttl_secs: 60,
        tweak: with_service_keys,
        ..Default::default()
    })
    .await
    .unwrap();
    let login = app.login(APP1, "intro").await;
    let t = token(&login).to_owned();
    let r = introspect(
        &app,
        Some(SERVICE_KEY),
        &format!("token={t}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["sub"], login["user"]["id"]);
    assert_eq!(r.body["app"], APP1);
    assert_eq!(r.body["openid"], app.openid(APP1, "intro"));
    assert!(r.body["unionid"].is_string());
    assert!(r.body["exp"].as_i64().unwrap() > r.body["iat"].as_i64().unwrap());
    assert_eq!(r.body["token_type"], "access_token");
    // The same as JSON.
    let r = app
        .http
        .post(format!("{}/v1/introspect", app.url))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({"token": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply(r).await.body["active"], true);

    // Another app's token is active, and says which app (the service checks).
    let other = app.login(APP2, "intro").await;
    let r = introspect(&app, Some(SERVICE_KEY), &format!("token={}", token(&other))).await;
    assert_eq!(
        (r.body["active"].clone(), r.body["app"].clone()),
        (json!(true), json!(APP2))
    );

    // Garbage, and a token of another issuer's key: inactive, nothing else.
    for bad in ["nope", "a.b.c", ""] {
        let r = introspect(&app, Some(SERVICE_KEY), &format!("token={bad}")).await;
        if bad.is_empty() {
            assert_eq!(r.status, 400);
        } else {
            assert_eq!(r.body, json!({"active": false}));
        }
    }
    let foreign = jsonwebtoken::encode(
        &{
            let mut h = Header::new(Algorithm::EdDSA);
            h.kid = Some("t1".into());
            h
        },
        &json!({"sub": "x", "sid": "y", "app": APP1, "iat": 1, "exp": 4_000_000_000i64, "iss": "wxauth"}),
        &EncodingKey::from_ed_der(&ed25519_pkcs8(&[42; 32])),
    )
    .unwrap();
    let r = introspect(&app, Some(SERVICE_KEY), &format!("token={foreign}")).await;
    assert_eq!(r.body, json!({"active": false}));

    // Logged out: inactive at once.
    let r = app.post("/v1/logout", Some(&t), json!({})).await;
    assert_eq!(r.status, 204);
    let r = introspect(&app, Some(SERVICE_KEY), &format!("token={t}")).await;
    assert_eq!(r.body, json!({"active": false}));
    // Expired: inactive.
    let fresh = app.login(APP1, "intro2").await;
    app.advance(Duration::from_secs(61));
    let r = introspect(&app, Some(SERVICE_KEY), &format!("token={}", token(&fresh))).await;
    assert_eq!(r.body, json!({"active": false}));

    // A key without the scope: 403; no key or a wrong one: 401, then 429.
    let r = introspect(&app, Some(NARROW_KEY), "token=x").await;
    assert_eq!((r.status.as_u16(), r.error()), (403, "forbidden"));
    let r = introspect(&app, None, "token=x").await;
    assert_eq!((r.status.as_u16(), r.error()), (401, "unauthorized"));
    let mut statuses = Vec::new();
    for n in 0..12 {
        statuses.push(
            introspect(&app, Some(&format!("wrong-key-{n}")), "token=x")
                .await
                .status
                .as_u16(),
        );
    }
    assert!(statuses[..9].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // Only failures are counted: the right key still works from there.
    let r = introspect(&app, Some(SERVICE_KEY), "token=x").await;
    assert_eq!(r.status, 200, "a right key is not a failure: {:?}", r.body);
}

/// Gateway and service-key entries are checked at start, naming the key.
#[test]
fn gateway_and_service_key_settings_are_checked() {
    use wxauth::config::{GatewayConfig, ServiceKeyConfig};
    let gateway = |prefix: &str, upstream: &str| GatewayConfig {
        prefix: prefix.into(),
        upstream: upstream.into(),
        auth: wxauth::config::GatewayAuth::Required,
        timeout_ms: 1000,
        connect_timeout_ms: 500,
    };
    let check = |gateways: Vec<GatewayConfig>| {
        let mut c = test_config("sqlite://x.db", "http://127.0.0.1:9");
        c.gateway = gateways;
        c.resolve().map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(check(vec![gateway("/api/", "http://127.0.0.1:3000")]).is_ok());
    for (prefix, upstream, key) in [
        ("/v1/", "http://127.0.0.1:3000", "gateway[0].prefix"),
        (
            "/.well-known/x/",
            "http://127.0.0.1:3000",
            "gateway[0].prefix",
        ),
        ("api", "http://127.0.0.1:3000", "gateway[0].prefix"),
        ("/", "http://127.0.0.1:3000", "gateway[0].prefix"),
        ("/api/", "127.0.0.1:3000", "gateway[0].upstream"),
        ("/api/", "http://127.0.0.1:3000/base", "gateway[0].upstream"),
    ] {
        let err = check(vec![gateway(prefix, upstream)]).unwrap_err();
        assert!(err.contains(key), "{prefix} {upstream}: {err}");
    }
    let err = check(vec![
        gateway("/api/", "http://127.0.0.1:3000"),
        gateway("/api/v2/", "http://127.0.0.1:3001"),
    ])
    .unwrap_err();
    assert!(err.contains("overlaps"), "{err}");
    let mut slow = gateway("/api/", "http://127.0.0.1:3000");
    slow.timeout_ms = 60_000;
    assert!(
        check(vec![slow])
            .unwrap_err()
            .contains("request_timeout_ms")
    );

    let mut c = test_config("sqlite://x.db", "http://127.0.0.1:9");
    c.service_keys = vec![ServiceKeyConfig {
        id: "s".into(),
        sha256: Some("abc".into()),
        key_env: None,
        scopes: vec!["introspect".into()],
    }];
    assert!(
        c.resolve()
            .unwrap_err()
            .to_string()
            .contains("service_keys[0].sha256")
    );
    c.service_keys[0].sha256 = Some("0".repeat(64));
    c.service_keys[0].scopes = vec!["everything".into()];
    assert!(
        c.resolve()
            .unwrap_err()
            .to_string()
            .contains("unknown scope")
    );
}
