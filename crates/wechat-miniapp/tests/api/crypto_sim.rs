use proptest::prelude::*;
use serde_json::{Value, json};
use wechat_miniapp::crypto::{decrypt_verified, verify_raw_data_signature};
use wechat_miniapp::{DecryptError, SessionKey};

use crate::common::*;

#[tokio::test]
async fn sim_encrypted_payload_decrypts_over_http() {
    let t = spawn_sim().await;
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/sim/v1/encrypt", t.url))
        .json(&json!({"appid": APP1, "user": "alice", "data": {"nickName": "张三", "stepInfoList": [{"step": 100}]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = SessionKey::new(t.session_key(APP1, "alice"));
    let plain = decrypt_verified(
        &key,
        resp["encrypted_data"].as_str().unwrap(),
        resp["iv"].as_str().unwrap(),
        APP1,
    )
    .unwrap();
    assert_eq!(plain["nickName"], "张三");
    assert_eq!(plain["watermark"]["appid"], APP1);
    verify_raw_data_signature(
        resp["raw_data"].as_str().unwrap(),
        &key,
        resp["signature"].as_str().unwrap(),
    )
    .unwrap();
    // Another app's backend refuses it by watermark.
    assert!(matches!(
        decrypt_verified(
            &key,
            resp["encrypted_data"].as_str().unwrap(),
            resp["iv"].as_str().unwrap(),
            APP2
        ),
        Err(DecryptError::WatermarkMismatch { .. })
    ));
    // After wx.login again the stored key is stale.
    let _ = t.code(APP1, "alice");
    let fresh = SessionKey::new(t.session_key(APP1, "alice"));
    let err = decrypt_verified(
        &fresh,
        resp["encrypted_data"].as_str().unwrap(),
        resp["iv"].as_str().unwrap(),
        APP1,
    )
    .unwrap_err();
    assert!(
        matches!(err, DecryptError::WrongKey | DecryptError::NotJson),
        "{err:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn round_trips_with_the_simulators_encryption(user in "[a-z]{1,12}", text in any::<String>(), n in any::<i64>()) {
        let sim = wechat_sim::Simulator::new(wechat_sim::SimConfig { open: true, ..Default::default() });
        let data = json!({"text": text, "n": n});
        let out = sim.encrypt(APP1, &user, data.clone()).unwrap();
        let key = SessionKey::new(sim.user_info(APP1, &user).unwrap()["session_key"].as_str().unwrap());
        let plain = decrypt_verified(&key, out["encrypted_data"].as_str().unwrap(), out["iv"].as_str().unwrap(), APP1).unwrap();
        prop_assert_eq!(&plain["text"], &data["text"]);
        prop_assert_eq!(&plain["n"], &data["n"]);
        prop_assert_eq!(plain["watermark"]["appid"].as_str(), Some(APP1));
    }
}
