//! Subscribe messages (issue 32) through real HTTP both ways: consent
//! pushed by the simulator (or reported by the mini program), sends
//! through the admin API to the simulator's subscribe/send, delivery
//! results pushed back. On SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wechat_sim::{PushFormat, PushMode};

use crate::app::{ADMIN_KEY, APP1, APP2, Db, Options, READER_KEY, TestApp, spawn_app_with, token};
use crate::revoked::{settled, target};

fn push_settings(c: &mut wxauth::config::Config) {
    c.apps[0].push_token = Some(crate::revoked::TOKEN.into());
    c.apps[0].push_aes_key = Some(crate::revoked::AES_KEY.into());
}

async fn send(app: &TestApp, user_id: &str, template: &str) -> crate::app::Reply {
    app.admin(
        Some(ADMIN_KEY),
        Method::POST,
        &format!("/admin/v1/users/{user_id}/messages"),
        Some(json!({
            "template_id": template,
            "page": "pages/order/index?id=7",
            "data": {"thing1": {"value": "shipped"}, "time2": {"value": "2026-12-06 10:00"}},
            "miniprogram_state": "developer",
        })),
    )
    .await
}

async fn subscriptions(app: &TestApp, user_id: &str) -> Value {
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/users/{user_id}/subscriptions"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

fn consent<'a>(view: &'a Value, template: &str) -> &'a Value {
    view["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["template_id"] == template)
        .unwrap_or_else(|| panic!("no consent for {template}: {view}"))
}

/// Waits until every push of `event` so far is settled.
async fn pushes_settled(app: &TestApp, event: &str, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let of_event: Vec<_> = app
            .sim
            .pushes()
            .into_iter()
            .filter(|p| p.event == event)
            .collect();
        if of_event.len() >= at_least && of_event.iter().all(|p| p.done) {
            assert!(of_event.iter().all(|p| p.delivered), "{of_event:?}");
            return;
        }
        assert!(Instant::now() < deadline, "{event} pushes still under way");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(db: Db) {
    let Some(app) = spawn_app_with(Options {
        db,
        tweak: push_settings,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    app.sim
        .set_push_target(target(&app.url, APP1, PushMode::Safe, PushFormat::Json))
        .unwrap();
    let session = app.login(APP1, "subscriber").await;
    let user_id = session["user"]["id"].as_str().unwrap().to_owned();
    let calls = || app.sim_calls("subscribe_send");

    // Nothing known: WeChat decides (43101), and says no.
    let r = send(&app, &user_id, "TPL_ORDER").await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"], "not_subscribed");
    assert_eq!(calls(), 1);

    // The user accepts in the popup: WeChat pushes it; one send allowed.
    let pushed = app
        .sim
        .subscribe(APP1, Some("subscriber"), None, "TPL_ORDER", true, false)
        .unwrap()
        .unwrap();
    assert!(settled(&app.sim, pushed).await.delivered);
    let view = subscriptions(&app, &user_id).await;
    let c = consent(&view, "TPL_ORDER");
    assert_eq!(
        (c["status"].as_str(), c["remaining"].as_i64()),
        (Some("accept"), Some(1))
    );
    assert_eq!(c["source"], "wechat");

    let r = send(&app, &user_id, "TPL_ORDER").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let msgid = r.body["msgid"].as_str().unwrap().to_owned();
    assert!(
        msgid.parse::<u64>().unwrap() > 1 << 53,
        "kept exactly as text"
    );
    assert_eq!(calls(), 2);
    // The delivery result, pushed by WeChat, is recorded with the send.
    pushes_settled(&app, "subscribe_msg_sent_event", 1).await;
    let view = subscriptions(&app, &user_id).await;
    assert_eq!(consent(&view, "TPL_ORDER")["remaining"], 0);
    let sent = &view["sends"][0];
    assert_eq!(sent["msgid"], msgid.as_str());
    assert_eq!(
        (sent["errcode"].as_i64(), sent["delivery"].as_str()),
        (Some(0), Some("success"))
    );
    assert_eq!(sent["delivery_code"], 0);

    // A second send without a new consent: 409, WeChat not called.
    let r = send(&app, &user_id, "TPL_ORDER").await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(calls(), 2);
    let view = subscriptions(&app, &user_id).await;
    assert_eq!(view["sends"][0]["errcode"], 43101);
    assert_eq!(
        view["sends"].as_array().unwrap().len(),
        3,
        "every result recorded"
    );

    // The mini program's report of the same popup answer WeChat pushes is
    // counted once; an accept heard only from the client counts too.
    let answered = app
        .sim
        .subscribe(APP1, Some("subscriber"), None, "TPL_NEWS", true, false)
        .unwrap()
        .unwrap();
    let result = json!({"errMsg": "requestSubscribeMessage:ok", "TPL_NEWS": "accept"});
    let r = app
        .post(
            "/v1/me/subscriptions",
            Some(token(&session)),
            result.clone(),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["recorded"].as_u64()),
        (200, Some(1))
    );
    assert!(settled(&app.sim, answered).await.delivered);
    let view = subscriptions(&app, &user_id).await;
    let c = consent(&view, "TPL_NEWS");
    assert_eq!(
        (c["remaining"].as_i64(), c["source"].as_str()),
        (Some(1), Some("wechat")),
        "{c}"
    );

    // A reject in the popup, then in the settings page: no send, no call.
    for settings in [false, true] {
        let id = app
            .sim
            .subscribe(APP1, Some("subscriber"), None, "TPL_NEWS", false, settings)
            .unwrap()
            .unwrap();
        assert!(settled(&app.sim, id).await.delivered);
        let c = subscriptions(&app, &user_id).await;
        assert_eq!(consent(&c, "TPL_NEWS")["status"], "reject");
        let r = send(&app, &user_id, "TPL_NEWS").await;
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(calls(), 2);
    }

    // Client-reported only (an app whose pushes are not configured).
    let other = app.login(APP2, "elsewhere").await;
    let other_id = other["user"]["id"].as_str().unwrap().to_owned();
    let answer = app
        .sim
        .subscribe(APP2, Some("elsewhere"), None, "TPL_B", true, false)
        .unwrap();
    assert_eq!(answer, None, "no push URL for APP2");
    let r = app
        .post(
            "/v1/me/subscriptions",
            Some(token(&other)),
            json!({"errMsg": "requestSubscribeMessage:ok", "TPL_B": "accept", "TPL_C": "filter"}),
        )
        .await;
    assert_eq!(r.body["recorded"], 2, "{:?}", r.body);
    let view = subscriptions(&app, &other_id).await;
    assert_eq!(consent(&view, "TPL_B")["source"], "client");
    assert_eq!(consent(&view, "TPL_C")["status"], "filter");
    assert_eq!(send(&app, &other_id, "TPL_B").await.status, 201);
    assert_eq!(send(&app, &other_id, "TPL_C").await.status, 409);

    // Refusals before WeChat is asked.
    let calls_before = calls();
    for body in [
        json!({"template_id": "TPL_ORDER", "data": {"thing1": "shipped"}}),
        json!({"template_id": "bad id", "data": {"thing1": {"value": "x"}}}),
        json!({"template_id": "TPL_ORDER", "data": {"thing1": {"value": "x"}}, "miniprogram_state": "beta"}),
        json!({"template_id": "TPL_ORDER"}),
    ] {
        let r = app
            .admin(
                Some(ADMIN_KEY),
                Method::POST,
                &format!("/admin/v1/users/{user_id}/messages"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
    }
    assert_eq!(calls(), calls_before);
    let r = app
        .post(
            "/v1/me/subscriptions",
            Some(token(&session)),
            json!({"errMsg": "requestSubscribeMessage:ok"}),
        )
        .await;
    assert_eq!(r.body["recorded"], 0, "nothing answered: {:?}", r.body);
    for body in [
        json!({"TPL_X": "maybe"}),
        json!({"bad id": "accept"}),
        json!(["TPL_X"]),
    ] {
        let r = app
            .post("/v1/me/subscriptions", Some(token(&session)), body.clone())
            .await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
    }
    let r = app
        .admin(
            Some(READER_KEY),
            Method::POST,
            &format!("/admin/v1/users/{user_id}/messages"),
            Some(json!({"template_id": "TPL_ORDER", "data": {"thing1": {"value": "x"}}})),
        )
        .await;
    assert_eq!(r.status, 403, "messages:send is needed");
    assert_eq!(send(&app, "no-such-user", "TPL_ORDER").await.status, 404);
    // The sends are audited with the template.
    let audit = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target=user:{user_id}"),
            None,
        )
        .await;
    let sends: Vec<&Value> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "POST /admin/v1/users/{id}/messages")
        .collect();
    assert!(
        sends
            .iter()
            .any(|e| e["status"] == 201 && e["detail"]["template_id"] == "TPL_ORDER")
    );
    assert!(sends.iter().any(|e| e["status"] == 409));

    // Deleting the account deletes its consents and sends.
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("/admin/v1/users/{user_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let mut left = crate::admin::rows_mentioning(&app.database_url, &user_id).await;
    left.retain(|t| !t.starts_with("audit_log") && !t.starts_with("change"));
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_sends_and_deliveries_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_sends_and_deliveries_postgres() {
    run(Db::Postgres).await;
}
