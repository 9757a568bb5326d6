use std::time::Duration;

use wechat_miniapp::{AppSecret, Error, LoginCode};

use crate::common::*;

#[tokio::test]
async fn exchanges_a_code_for_the_users_ids_and_key() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    let s = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    assert_eq!(s.openid, t.openid(APP1, "alice"));
    assert_eq!(s.openid.len(), 28);
    assert!(s.openid.starts_with('o'));
    assert_eq!(s.session_key.expose(), t.session_key(APP1, "alice"));
    assert_eq!(s.session_key.expose().len(), 24);
    let unionid = s.unionid.clone().unwrap();

    // Same user in the other app: another openid, the same unionid.
    let code2 = t.code(APP2, "alice");
    let s2 = t
        .client()
        .code2session(APP2, &AppSecret::new(SECRET2), &code2)
        .await
        .unwrap();
    assert_ne!(s2.openid, s.openid);
    assert_eq!(s2.unionid.as_deref(), Some(unionid.as_str()));
}

#[tokio::test]
async fn each_new_code_rotates_the_session_key() {
    let t = spawn_sim().await;
    let c1 = t.code(APP1, "bob");
    let k1 = t
        .client()
        .code2session(APP1, &secret1(), &c1)
        .await
        .unwrap()
        .session_key;
    let c2 = t.code(APP1, "bob");
    let k2 = t
        .client()
        .code2session(APP1, &secret1(), &c2)
        .await
        .unwrap()
        .session_key;
    assert_ne!(k1, k2);
}

#[tokio::test]
async fn the_same_code_twice_is_code_used() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    t.client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    let err = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CodeUsed { after_retry: false }),
        "{err:?}"
    );
    assert_eq!(err.errcode(), Some(40163));
}

#[tokio::test]
async fn a_code_older_than_five_minutes_is_invalid() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    t.clock.advance(Duration::from_secs(5 * 60 + 1));
    let err = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidCode { errcode: 40029 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_code_just_inside_five_minutes_still_works() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    t.clock.advance(Duration::from_secs(5 * 60 - 2));
    t.client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_and_other_app_codes_are_invalid() {
    let t = spawn_sim().await;
    let err = t
        .client()
        .code2session(
            APP1,
            &secret1(),
            &LoginCode::new("033CnGwb1KHhZw0tZfxb1Rs1xb1CnGwQ"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidCode { errcode: 40029 }),
        "{err:?}"
    );
    let other = t.code(APP2, "alice");
    let err = t
        .client()
        .code2session(APP1, &secret1(), &other)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidCode { errcode: 40029 }),
        "{err:?}"
    );
    // The other app's code is not spent by the failed attempt.
    t.client()
        .code2session(APP2, &AppSecret::new(SECRET2), &other)
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_secret_and_unknown_app_are_misconfiguration() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    let err = t
        .client()
        .code2session(APP1, &AppSecret::new("wrong"), &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AppMisconfigured { errcode: 40125, .. }),
        "{err:?}"
    );
    let err = t
        .client()
        .code2session("wx0000000000000000", &secret1(), &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AppMisconfigured { errcode: 40013, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(SECRET1));
}

#[tokio::test]
async fn user_errors_from_wechat_map_to_actionable_variants() {
    let t = spawn_sim().await;
    type Check = fn(&Error) -> bool;
    let cases: &[(i64, Check)] = &[
        (40226, |e| matches!(e, Error::UserBlocked)),
        (45011, |e| {
            matches!(e, Error::RateLimited { errcode: 45011 })
        }),
        (45009, |e| {
            matches!(e, Error::RateLimited { errcode: 45009 })
        }),
        (40164, |e| {
            matches!(e, Error::AppMisconfigured { errcode: 40164, .. })
        }),
        (40243, |e| {
            matches!(e, Error::AppMisconfigured { errcode: 40243, .. })
        }),
        (48001, |e| {
            matches!(e, Error::AppMisconfigured { errcode: 48001, .. })
        }),
        (61234, |e| matches!(e, Error::Other { errcode: 61234, .. })),
    ];
    for (errcode, check) in cases {
        t.sim
            .fault("jscode2session", Some(*errcode), None, Some(1))
            .unwrap();
        let code = t.code(APP1, "carol");
        let err = t
            .client()
            .code2session(APP1, &secret1(), &code)
            .await
            .unwrap_err();
        assert!(check(&err), "errcode {errcode} gave {err:?}");
        assert_eq!(err.errcode(), Some(*errcode));
        // The fault answered before the code was looked at: it still works.
        t.client()
            .code2session(APP1, &secret1(), &code)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn busy_twice_then_success_is_retried() {
    let t = spawn_sim().await;
    t.sim
        .fault("jscode2session", Some(-1), None, Some(2))
        .unwrap();
    let code = t.code(APP1, "alice");
    t.client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    assert_eq!(t.calls("jscode2session"), 3);
    let errcodes = &t.sim.stats().errcodes["jscode2session"];
    assert_eq!(errcodes["-1"], 2);
    assert_eq!(errcodes["0"], 1);
}

#[tokio::test]
async fn busy_every_time_gives_up_after_the_attempts() {
    let t = spawn_sim().await;
    t.sim.fault("jscode2session", Some(-1), None, None).unwrap();
    let code = t.code(APP1, "alice");
    let err = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Busy), "{err:?}");
    assert!(err.is_temporary());
    assert_eq!(t.calls("jscode2session"), 3);
}

#[tokio::test]
async fn a_retry_that_meets_code_used_says_so() {
    // A busy answer, then (as if the busy attempt had consumed the code) the
    // code is gone: the error must tell the caller a retry was involved.
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    t.client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    t.sim
        .fault("jscode2session", Some(-1), None, Some(1))
        .unwrap();
    let err = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CodeUsed { after_retry: true }),
        "{err:?}"
    );
    assert!(err.to_string().contains("earlier attempt"));
}

#[tokio::test]
async fn a_slow_upstream_times_out_without_retrying_the_code() {
    let t = spawn_sim().await;
    t.sim
        .fault("jscode2session", None, Some(3_000), None)
        .unwrap();
    let client = client_for(&t.url, Duration::from_millis(200));
    let code = t.code(APP1, "alice");
    let started = std::time::Instant::now();
    let err = client
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    // Well under the injected delay: the timeout, not the upstream, ended it.
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    // A code exchange that may have reached WeChat is never repeated.
    assert_eq!(t.calls("jscode2session"), 1);
}

#[tokio::test]
async fn accept_any_code_logs_in_the_user_named_by_the_code() {
    let t = spawn_sim_with(wechat_sim::SimConfig {
        apps: [(APP1.into(), SECRET1.into())].into(),
        accept_any_code: true,
        ..Default::default()
    })
    .await;
    let code = LoginCode::new("load-user-0001");
    let s = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    assert_eq!(s.openid, t.openid(APP1, "load-user-0001"));
    let err = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CodeUsed { .. }), "{err:?}");
}

#[tokio::test]
async fn nothing_secret_in_debug_or_display() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    let s = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    let shown = format!("{s:?} {code:?} {code} {:?}", secret1());
    assert!(!shown.contains(s.session_key.expose()), "{shown}");
    assert!(!shown.contains(code.expose()), "{shown}");
    assert!(!shown.contains(SECRET1), "{shown}");
}
