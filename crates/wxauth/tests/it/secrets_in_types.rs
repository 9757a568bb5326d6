//! Nothing in the process can write a secret out: the configuration and
//! the types that carry keys, tokens and phone tags have no `Serialize`,
//! and their `Debug` shows no secret byte.

use std::marker::PhantomData;

use wxauth::config::{AppConfig, Config, KeyConfig, ServiceKeyConfig};

/// `Probe::<T>::SERIALIZES` is true exactly when `T: Serialize` (an
/// inherent constant wins over the trait's fallback when its bound holds).
struct Probe<T>(PhantomData<T>);
trait Fallback {
    const SERIALIZES: bool = false;
}
impl<T> Fallback for Probe<T> {}
impl<T: serde::Serialize> Probe<T> {
    #[allow(dead_code)]
    const SERIALIZES: bool = true;
}

/// Whether each type serializes, by name.
macro_rules! serializes {
    ($($t:ty),* $(,)?) => {
        vec![$((stringify!($t), Probe::<$t>::SERIALIZES)),*]
    };
}

#[test]
fn the_probe_tells_serializable_types_apart() {
    // The probe itself must be able to fail.
    let known = serializes!(String, serde_json::Value);
    assert!(known.iter().all(|(_, s)| *s), "{known:?}");
}

#[test]
fn configuration_and_secret_types_do_not_serialize() {
    let types = serializes!(
        Config,
        wxauth::config::Settings,
        KeyConfig,
        AppConfig,
        ServiceKeyConfig,
        wxauth::config::DatabaseUrl,
        wechat_miniapp::SecretText,
        wechat_miniapp::SessionKey,
        wechat_miniapp::AppSecret,
        wechat_miniapp::AccessToken,
        wechat_miniapp::LoginCode,
        wechat_miniapp::PhoneCode,
        wxauth::auth::Session,
        wxauth::store::SealedRow,
        wxauth::store::Resealed,
    );
    let serializable: Vec<&str> = types.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    assert!(serializable.is_empty(), "these serialize: {serializable:?}");
}

const APP_SECRET: &str = "appsecret-0123456789abcdef012345";
const KEY_B64: &str = "c2VjcmV0LWtleS1ieXRlcy0wMTIzNDU2Nzg5YWJjZGU=";
const SERVICE_KEY_HASH: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

fn config_with_secrets() -> Config {
    let mut c = Config {
        database_url: "postgres://wx:dbpassword-secret@127.0.0.1/test".into(),
        redis_url: Some("redis://:redispassword-secret@127.0.0.1:6379".into()),
        ..Config::default()
    };
    c.apps = vec![AppConfig {
        appid: "wx1111111111111111".into(),
        secret: Some(APP_SECRET.into()),
        secret_env: None,
        ..AppConfig::default()
    }];
    let key = |id: &str| KeyConfig {
        id: id.into(),
        key: Some(KEY_B64.into()),
        key_env: None,
        alg: None,
    };
    c.tokens.signing_keys = vec![KeyConfig {
        alg: Some("HS256".into()),
        ..key("s1")
    }];
    c.encryption.keys = vec![key("1")];
    c.service_keys = vec![ServiceKeyConfig {
        id: "svc".into(),
        sha256: Some(SERVICE_KEY_HASH.into()),
        key_env: None,
        scopes: vec!["users:read".into()],
    }];
    c
}

fn assert_hides_secrets(shown: &str) {
    for secret in [
        APP_SECRET,
        KEY_B64,
        "dbpassword-secret",
        "redispassword-secret",
        // The decoded key's bytes, as Debug of a Vec<u8> would print them.
        "115, 101, 99, 114, 101, 116",
    ] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
}

#[test]
fn debug_of_configuration_and_settings_shows_no_secret() {
    let config = config_with_secrets();
    assert_hides_secrets(&format!("{config:?}"));
    let settings = config.resolve().unwrap();
    let shown = format!("{settings:?}");
    assert_hides_secrets(&shown);
    assert!(shown.contains("wx1111111111111111"), "{shown}");
}

#[test]
fn debug_of_sealed_rows_and_lookups_shows_no_sealed_byte() {
    let tag = vec![0xAB; 32];
    let row = wxauth::store::SealedRow {
        id: "u1".into(),
        appid: "wx1".into(),
        openid: "o1".into(),
        session_key_enc: vec![0xCD; 40],
        phone_enc: Some(vec![0xEF; 30]),
        phone_lookup: Some(tag.clone()),
    };
    let resealed = wxauth::store::Resealed {
        read: row.clone(),
        session_key_enc: vec![0xCD; 40],
        phone_enc: Some(vec![0xEF; 30]),
        phone_lookup: Some(tag.clone()),
    };
    let lookup = wxauth::store::UserLookup::PhoneTags(vec![tag]);
    for shown in [
        format!("{row:?}"),
        format!("{resealed:?}"),
        format!("{lookup:?}"),
    ] {
        for byte in ["171", "205", "239", "ab", "cd", "ef"] {
            assert!(
                !shown.contains(&format!("{byte}, {byte}")),
                "{byte} repeats in {shown}"
            );
        }
    }
}
