use wechat_miniapp::{Error, PhoneCode};

use crate::common::*;

async fn phone(
    t: &TestSim,
    code: &PhoneCode,
    openid: Option<&str>,
) -> Result<wechat_miniapp::PhoneInfo, Error> {
    let m = t.manager();
    m.with_token(APP1, |tok| {
        let c = t.client();
        async move { c.get_user_phone_number(&tok, code, openid).await }
    })
    .await
}

#[tokio::test]
async fn phone_code_gives_the_users_number_once() {
    let t = spawn_sim().await;
    let code = PhoneCode::new(
        t.sim
            .phone_code(APP1, "alice", Some("13800138000"))
            .unwrap(),
    );
    assert_eq!(code.expose().len(), 64);
    let info = phone(&t, &code, None).await.unwrap();
    assert_eq!(info.phone_number, "13800138000");
    assert_eq!(info.pure_phone_number, "13800138000");
    assert_eq!(info.country_code, "86");
    assert_eq!(info.watermark.appid, APP1);
    let err = phone(&t, &code, None).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidCode { errcode: 40029 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn international_number_and_openid_check() {
    let t = spawn_sim().await;
    let openid = t.openid(APP1, "erin");
    let code = PhoneCode::new(
        t.sim
            .phone_code(APP1, "erin", Some("+1 4155550123"))
            .unwrap(),
    );
    let err = phone(&t, &code, Some(&t.openid(APP1, "someone-else")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AppMisconfigured { errcode: 40013, .. }),
        "{err:?}"
    );
    let info = phone(&t, &code, Some(&openid)).await.unwrap();
    assert_eq!(info.country_code, "1");
    assert_eq!(info.pure_phone_number, "4155550123");
    assert!(info.phone_number.contains("4155550123") && info.phone_number.starts_with("+1"));
}

#[tokio::test]
async fn another_apps_code_and_an_expired_code() {
    let t = spawn_sim().await;
    let other = PhoneCode::new(t.sim.phone_code(APP2, "alice", None).unwrap());
    let err = phone(&t, &other, None).await.unwrap_err();
    assert!(
        matches!(err, Error::AppMisconfigured { errcode: 40013, .. }),
        "{err:?}"
    );
    let code = PhoneCode::new(t.sim.phone_code(APP1, "alice", None).unwrap());
    t.clock.advance(std::time::Duration::from_secs(301));
    let err = phone(&t, &code, None).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidCode { errcode: 40029 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn token_rejected_on_a_phone_call_is_refreshed_once_and_retried() {
    let t = spawn_sim().await;
    let m = t.manager();
    m.token(APP1).await.unwrap();
    assert_eq!(t.calls("stable_token"), 1);
    t.sim
        .fault("getuserphonenumber", Some(40001), None, Some(1))
        .unwrap();
    let code = PhoneCode::new(t.sim.phone_code(APP1, "frank", None).unwrap());
    let info = m
        .with_token(APP1, |tok| {
            let c = t.client();
            let code = code.clone();
            async move { c.get_user_phone_number(&tok, &code, None).await }
        })
        .await
        .unwrap();
    assert_eq!(info.pure_phone_number.len(), 11);
    assert_eq!(t.calls("getuserphonenumber"), 2);
    assert_eq!(t.calls("stable_token"), 2);
}

#[tokio::test]
async fn token_rejected_twice_is_not_retried_forever() {
    let t = spawn_sim().await;
    t.sim
        .fault("getuserphonenumber", Some(42001), None, None)
        .unwrap();
    let code = PhoneCode::new(t.sim.phone_code(APP1, "gina", None).unwrap());
    let err = phone(&t, &code, None).await.unwrap_err();
    assert!(
        matches!(err, Error::AccessTokenRejected { errcode: 42001 }),
        "{err:?}"
    );
    assert_eq!(t.calls("getuserphonenumber"), 2);
}

#[tokio::test]
async fn phone_rate_limit_and_busy() {
    let t = spawn_sim().await;
    t.sim
        .fault("getuserphonenumber", Some(45011), None, Some(1))
        .unwrap();
    let code = PhoneCode::new(t.sim.phone_code(APP1, "hank", None).unwrap());
    let err = phone(&t, &code, None).await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { errcode: 45011 }),
        "{err:?}"
    );
    t.sim
        .fault("getuserphonenumber", Some(-1), None, Some(1))
        .unwrap();
    phone(&t, &code, None).await.unwrap();
}
