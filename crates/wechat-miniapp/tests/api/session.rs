use wechat_miniapp::{Error, SessionKey};

use crate::common::*;

#[tokio::test]
async fn checksession_accepts_the_current_key_only() {
    let t = spawn_sim().await;
    let c = t.client();
    let m = t.manager();
    let token = m.token(APP1).await.unwrap();
    let code = t.code(APP1, "alice");
    let s = c.code2session(APP1, &secret1(), &code).await.unwrap();
    c.check_session(&token, &s.openid, &s.session_key)
        .await
        .unwrap();
    // wx.login again on the phone: the stored key is stale.
    let _ = t.code(APP1, "alice");
    let err = c
        .check_session(&token, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidSignature { errcode: 87009 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn reset_gives_a_new_key_and_retires_the_old() {
    let t = spawn_sim().await;
    let c = t.client();
    let token = t.manager().token(APP1).await.unwrap();
    let code = t.code(APP1, "dave");
    let s = c.code2session(APP1, &secret1(), &code).await.unwrap();
    let reset = c
        .reset_user_session_key(&token, &s.openid, &s.session_key)
        .await
        .unwrap();
    assert_eq!(reset.openid, s.openid);
    assert_ne!(reset.session_key, s.session_key);
    assert_eq!(reset.session_key.expose(), t.session_key(APP1, "dave"));
    c.check_session(&token, &s.openid, &reset.session_key)
        .await
        .unwrap();
    let err = c
        .check_session(&token, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSignature { .. }), "{err:?}");
    let err = c
        .reset_user_session_key(&token, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidSignature { errcode: 87009 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_openid_and_other_apps_users() {
    let t = spawn_sim().await;
    let c = t.client();
    let token = t.manager().token(APP1).await.unwrap();
    let key = SessionKey::new("tiihtNczf5v6AKRyjwEUhQ==");
    let err = c
        .check_session(&token, "oGZUI0egBJY1zhBYw2KhdUfwVJJE", &key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Other { errcode: 40003, .. }),
        "{err:?}"
    );
    let code = t.code(APP2, "alice");
    let s = c
        .code2session(APP2, &wechat_miniapp::AppSecret::new(SECRET2), &code)
        .await
        .unwrap();
    // APP1's token cannot check APP2's user.
    let err = c
        .check_session(&token, &s.openid, &s.session_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Other { errcode: 40003, .. }),
        "{err:?}"
    );
}
