use std::sync::Arc;
use std::time::Duration;

use wechat_miniapp::{AppSecret, Error, TokenSource};

use crate::common::*;

#[tokio::test]
async fn stable_token_is_fetched_once_and_cached() {
    let t = spawn_sim().await;
    let m = t.manager();
    let a = m.token(APP1).await.unwrap();
    let b = m.token(APP1).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(t.calls("stable_token"), 1);
    assert!(a.expose().len() > 100);
    // Per app.
    let c = m.token(APP2).await.unwrap();
    assert_ne!(a, c);
    assert_eq!(t.calls("stable_token"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_calls_fetch_one_token() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    let s = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    // Slow token endpoint, so every caller arrives while the fetch is in flight.
    t.sim.fault("stable_token", None, Some(200), None).unwrap();
    let m = Arc::new(t.manager());
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let m = m.clone();
        let openid = s.openid.clone();
        let key = s.session_key.clone();
        tasks.push(tokio::spawn(async move {
            m.with_token(APP1, |token| {
                let (m, openid, key) = (m.clone(), openid.clone(), key.clone());
                async move { m.client().check_session(&token, &openid, &key).await }
            })
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(t.calls("stable_token"), 1);
    assert_eq!(t.calls("checksession"), 100);
}

#[tokio::test]
async fn token_is_refreshed_ahead_of_expiry() {
    let t = spawn_sim().await;
    let m = t.manager();
    let a = m.token(APP1).await.unwrap();
    t.clock.advance(Duration::from_secs(7200 - 290));
    let b = m.token(APP1).await.unwrap();
    assert_ne!(a, b, "in its last five minutes the token is replaced");
    assert_eq!(t.calls("stable_token"), 2);
}

#[tokio::test]
async fn an_expired_token_is_refused_with_42001() {
    let t = spawn_sim().await;
    let grant = t
        .client()
        .get_stable_access_token(APP1, &secret1(), false)
        .await
        .unwrap();
    assert_eq!(grant.expires_in, 7200);
    let code = t.code(APP1, "alice");
    let s = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    t.clock.advance(Duration::from_secs(7201));
    let err = t
        .client()
        .check_session(&grant.access_token, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AccessTokenRejected { errcode: 42001 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn token_errors_on_business_calls() {
    let t = spawn_sim().await;
    let code = t.code(APP1, "alice");
    let s = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    let bogus = wechat_miniapp::AccessToken::new("86_not-a-token");
    let err = t
        .client()
        .check_session(&bogus, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AccessTokenRejected { errcode: 40001 }),
        "{err:?}"
    );
    let empty = wechat_miniapp::AccessToken::new("");
    let err = t
        .client()
        .check_session(&empty, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Other { errcode: 41001, .. }),
        "{err:?}"
    );
    // 40014 counts as a token error too.
    t.sim
        .fault("checksession", Some(40014), None, Some(1))
        .unwrap();
    let m = t.manager();
    m.with_token(APP1, |tok| {
        let c = t.client();
        let (o, k) = (s.openid.clone(), s.session_key.clone());
        async move { c.check_session(&tok, &o, &k).await }
    })
    .await
    .unwrap();
    assert_eq!(t.calls("checksession"), 4);
}

#[tokio::test]
async fn force_refresh_replaces_the_stable_token_at_once() {
    let t = spawn_sim().await;
    let c = t.client();
    let a = c
        .get_stable_access_token(APP1, &secret1(), false)
        .await
        .unwrap()
        .access_token;
    let b = c
        .get_stable_access_token(APP1, &secret1(), false)
        .await
        .unwrap()
        .access_token;
    assert_eq!(a, b);
    let forced = c
        .get_stable_access_token(APP1, &secret1(), true)
        .await
        .unwrap()
        .access_token;
    assert_ne!(a, forced);
    let code = t.code(APP1, "alice");
    let s = c.code2session(APP1, &secret1(), &code).await.unwrap();
    let err = c
        .check_session(&a, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AccessTokenRejected { errcode: 40001 }),
        "{err:?}"
    );
    c.check_session(&forced, &s.openid, &s.session_key)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_force_refresh_elsewhere_is_survived() {
    // Another process force-refreshes; our cached token gets 40001; the
    // manager drops it, fetches the new one and the call succeeds.
    let t = spawn_sim().await;
    let m = t.manager();
    let code = t.code(APP1, "alice");
    let s = t
        .client()
        .code2session(APP1, &secret1(), &code)
        .await
        .unwrap();
    let old = m.token(APP1).await.unwrap();
    let forced = t
        .client()
        .get_stable_access_token(APP1, &secret1(), true)
        .await
        .unwrap()
        .access_token;
    let used = std::sync::Mutex::new(Vec::new());
    m.with_token(APP1, |tok| {
        used.lock().unwrap().push(tok.clone());
        let c = t.client();
        let (o, k) = (s.openid.clone(), s.session_key.clone());
        async move { c.check_session(&tok, &o, &k).await }
    })
    .await
    .unwrap();
    assert_eq!(*used.lock().unwrap(), vec![old, forced.clone()]);
    assert_eq!(m.token(APP1).await.unwrap(), forced);
}

#[tokio::test]
async fn classic_tokens_replace_each_other() {
    let t = spawn_sim().await;
    let c = t.client();
    let a = c.get_access_token(APP1, &secret1()).await.unwrap();
    let b = c.get_access_token(APP1, &secret1()).await.unwrap();
    assert_ne!(a.access_token, b.access_token);
    assert_eq!(b.expires_in, 7200);
    let code = t.code(APP1, "alice");
    let s = c.code2session(APP1, &secret1(), &code).await.unwrap();
    // The replaced token works for five more minutes, then not.
    c.check_session(&a.access_token, &s.openid, &s.session_key)
        .await
        .unwrap();
    t.clock.advance(Duration::from_secs(301));
    let err = c
        .check_session(&a.access_token, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AccessTokenRejected { errcode: 40001 }),
        "{err:?}"
    );

    let m = t.manager().with_source(TokenSource::Classic);
    m.token(APP1).await.unwrap();
    assert_eq!(t.calls("token"), 3);
    assert_eq!(t.calls("stable_token"), 0);
}

#[tokio::test]
async fn token_credentials_errors() {
    let t = spawn_sim().await;
    let c = t.client();
    let err = c
        .get_access_token(APP1, &AppSecret::new("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AppMisconfigured { errcode: 40125, .. }),
        "{err:?}"
    );
    let err = c
        .get_stable_access_token("wx9999999999999999", &secret1(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AppMisconfigured { errcode: 40013, .. }),
        "{err:?}"
    );
    let err = t.manager().token("wx-not-configured").await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_slow_token_endpoint_times_out() {
    let t = spawn_sim().await;
    t.sim
        .fault("stable_token", None, Some(3_000), None)
        .unwrap();
    let c = client_for(&t.url, Duration::from_millis(150));
    let started = std::time::Instant::now();
    let err = c
        .get_stable_access_token(APP1, &secret1(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    // Reading a token is safe to repeat, so all attempts were made.
    assert_eq!(t.calls("stable_token"), 3);
}
