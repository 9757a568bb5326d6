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
