//! The operator's API (/admin/v1) and users' own rights (GET /v1/me/export,
//! DELETE /v1/me), over HTTP on both backends.

use reqwest::Method;
use serde_json::{Value, json};

use crate::app::on_both;
use crate::app::*;

on_both!(
    admin_api_scopes_actions_and_audit,
    deleting_an_account_leaves_no_row_and_a_new_login_is_a_new_user,
);

async fn bind_phone(app: &TestApp, t: &str, user: &str, number: &str) {
    let code = app.sim.phone_code(APP1, user, Some(number)).unwrap();
    let r = app
        .post("/v1/me/phone", Some(t), json!({"code": code}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

async fn create(app: &TestApp, t: &str, collection: &str, body: Value) -> String {
    let r = app
        .post(&format!("/v1/data/{collection}"), Some(t), body)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn admin_api_scopes_actions_and_audit(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice).to_owned();
    let alice_id = alice["user"]["id"].as_str().unwrap().to_owned();
    let openid = app.openid(APP1, "alice");
    bind_phone(&app, &t, "alice", "13800138000").await;
    let n1 = create(&app, &t, "notes", json!({"text": "one"})).await;
    create(&app, &t, "notes", json!({"text": "two"})).await;
    let find = format!("/admin/v1/users?appid={APP1}&openid={openid}");

    // Keys: none or wrong is 401; a key without the scope is 403.
    let r = app.admin(None, Method::GET, &find, None).await;
    assert_eq!((r.status.as_u16(), r.error()), (401, "unauthorized"));
    let r = app.admin(Some("not-a-key"), Method::GET, &find, None).await;
    assert_eq!((r.status.as_u16(), r.error()), (401, "unauthorized"));
    let user_path = format!("/admin/v1/users/{alice_id}");
    let r = app
        .admin(Some(READER_KEY), Method::DELETE, &user_path, None)
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (403, "forbidden"));
    assert!(r.message().contains("users:write"), "{}", r.message());
    let r = app
        .admin(Some(READER_KEY), Method::GET, "/admin/v1/audit", None)
        .await;
    assert_eq!(r.status, 403);
    // A user's token is not a service key.
    let r = app.admin(Some(&t), Method::GET, &find, None).await;
    assert_eq!(r.status, 401);

    // Find by openid, unionid-less, by phone (spaces allowed), nothing else.
    let r = app.admin(Some(READER_KEY), Method::GET, &find, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["items"][0]["id"], alice_id.as_str());
    assert_eq!(
        r.body["items"][0]["phone"]["pure_phone_number"],
        "13800138000"
    );
    let r = app
        .admin(
            Some(READER_KEY),
            Method::GET,
            "/admin/v1/users?phone=138%200013%208000",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["items"][0]["id"], alice_id.as_str(), "default app");
    let r = app
        .admin(
            Some(READER_KEY),
            Method::GET,
            &format!("/admin/v1/users?appid={APP2}&phone=13800138000"),
            None,
        )
        .await;
    assert_eq!(
        r.body["items"],
        json!([]),
        "another app's user is not found"
    );
    // A unionid spans the apps of one Open Platform account: without an
    // appid, every app is searched.
    let unionid = alice["user"]["unionid"]
        .as_str()
        .expect("the simulator gives unionids");
    let r = app
        .admin(
            Some(READER_KEY),
            Method::GET,
            &format!("/admin/v1/users?unionid={unionid}"),
            None,
        )
        .await;
    assert_eq!(r.body["items"][0]["id"], alice_id.as_str(), "{:?}", r.body);
    let r = app
        .admin(
            Some(READER_KEY),
            Method::GET,
            &format!("/admin/v1/users?appid={APP2}&unionid={unionid}"),
            None,
        )
        .await;
    assert_eq!(r.body["items"], json!([]));
    for bad in [
        "/admin/v1/users",
        "/admin/v1/users?openid=a&phone=1",
        "/admin/v1/users?phone=%2B86138",
        "/admin/v1/users?appid=wxnope&openid=a",
    ] {
        let r = app.admin(Some(READER_KEY), Method::GET, bad, None).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }

    // The account: sessions (never tokens), active count, documents.
    let second = app.login(APP1, "alice").await;
    let r = app
        .admin(Some(READER_KEY), Method::GET, &user_path, None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["active_sessions"], 2);
    assert_eq!(r.body["documents"], 2);
    assert_eq!(r.body["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["user"]["openid"], openid.as_str());
    let text = r.body.to_string();
    for secret in [token(&alice), refresh(&alice), token(&second)] {
        assert!(!text.contains(secret));
    }
    let r = app
        .admin(
            Some(READER_KEY),
            Method::GET,
            "/admin/v1/users/nobody",
            None,
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error()), (404, "not_found"));

    // Revoke: every session ends, access and refresh tokens alike.
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::POST,
            &format!("{user_path}/revoke"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for login in [&alice, &second] {
        assert_eq!(app.get("/v1/me", Some(token(login))).await.status, 401);
        let r = app
            .post(
                "/v1/token/refresh",
                None,
                json!({"refresh_token": refresh(login)}),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = app
        .admin(Some(ADMIN_KEY), Method::GET, &user_path, None)
        .await;
    assert_eq!(r.body["active_sessions"], 0);
    assert_eq!(r.body["sessions"][0]["revoked_reason"], "admin");

    // Export: every document, the phone, no secret.
    let r = app
        .admin(
            Some(READER_KEY),
            Method::GET,
            &format!("{user_path}/export"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["format"], "wxauth-export/1");
    assert_eq!(r.body["document_count"], 2);
    assert_eq!(r.body["documents"]["notes"][0]["data"]["text"], "one");
    assert_eq!(r.body["user"]["phone"]["phone_number"], "13800138000");
    assert!(
        r.header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    let text = r.body.to_string();
    assert!(!text.contains(&app.session_key(APP1, "alice")));
    assert!(!text.contains(refresh(&alice)));

    // Documents: admin_write collections, any user's documents.
    let bob = app.login(APP1, "bob").await;
    let bt = token(&bob).to_owned();
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::POST,
            &format!("/admin/v1/data/catalogue?owner={alice_id}"),
            Some(json!({"sku": "tea", "price": 12})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["owner"], alice_id.as_str());
    let sku = r.body["id"].as_str().unwrap().to_owned();
    let r = app.get("/v1/data/catalogue", Some(&bt)).await;
    assert_eq!(r.body["items"][0]["data"]["sku"], "tea", "users read it");
    let r = app
        .post("/v1/data/catalogue", Some(&bt), json!({"sku": "x"}))
        .await;
    assert_eq!(r.status, 403, "clients do not write it");
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::POST,
            "/admin/v1/data/catalogue",
            Some(json!({"sku": "x"})),
        )
        .await;
    assert_eq!(r.status, 400, "owner is required");
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/data/notes?owner={alice_id}&order_by=created_at"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["items"][0]["owner"], alice_id.as_str());
    assert_eq!(r.body["items"][0]["data"]["text"], "one");
    create(&app, &bt, "notes", json!({"text": "bob's"})).await;
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            "/admin/v1/data/notes?where=%7B%22text%22%3A%22bob%27s%22%7D",
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "the app's");
    let doc = format!("/admin/v1/data/notes/{n1}");
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::PUT,
            &doc,
            Some(json!({"text": "edited"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["version"], 2);
    let r = app.admin(Some(ADMIN_KEY), Method::GET, &doc, None).await;
    assert_eq!(r.body["data"]["text"], "edited");
    let r = app.admin(Some(ADMIN_KEY), Method::DELETE, &doc, None).await;
    assert_eq!(r.status, 204);
    let r = app.admin(Some(ADMIN_KEY), Method::GET, &doc, None).await;
    assert_eq!(r.status, 404);
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("/admin/v1/data/catalogue/{sku}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);

    // The audit log: every call with a known key, newest first, paged;
    // ids and names only.
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            "/admin/v1/audit?limit=100",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let items = r.body["items"].as_array().unwrap().clone();
    let ids: Vec<i64> = items.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let has = |actor: &str, action: &str, status: u16| {
        items
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["status"] == status)
    };
    assert!(has("key:reader", "DELETE /admin/v1/users/{id}", 403));
    assert!(has("key:reader", "GET /admin/v1/audit", 403));
    assert!(has("key:reader", "GET /admin/v1/users", 200));
    assert!(has("key:ops", "POST /admin/v1/users/{id}/revoke", 204));
    assert!(has("key:ops", "PUT /admin/v1/data/{collection}/{id}", 200));
    assert!(
        !items.iter().any(|e| e["status"] == 401),
        "no key, no entry"
    );
    let revoke = items
        .iter()
        .find(|e| e["action"] == "POST /admin/v1/users/{id}/revoke")
        .unwrap();
    assert_eq!(revoke["target"], format!("user:{alice_id}"));
    assert_eq!(revoke["detail"]["sessions_ended"], 2);
    let by_phone: Vec<&Value> = items
        .iter()
        .filter(|e| e["detail"]["by"] == "phone")
        .map(|e| &e["detail"]["found"])
        .collect();
    assert_eq!(by_phone, [&json!(0), &json!(1)], "newest first");
    let text = r.body.to_string();
    for secret in [
        "13800138000",
        openid.as_str(),
        ADMIN_KEY,
        READER_KEY,
        token(&alice),
    ] {
        assert!(!text.contains(secret), "the audit log holds {secret}");
    }
    // Paging and filters.
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            "/admin/v1/audit?limit=2",
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let cursor = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r2 = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert!(
        r2.body["items"][0]["id"].as_i64().unwrap() < r.body["items"][1]["id"].as_i64().unwrap()
    );
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target=user:{alice_id}&actor=key:ops"),
            None,
        )
        .await;
    let items = r.body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|e| e["target"] == format!("user:{alice_id}") && e["actor"] == "key:ops")
    );
    for bad in ["/admin/v1/audit?limit=0", "/admin/v1/audit?cursor=abc"] {
        let r = app.admin(Some(ADMIN_KEY), Method::GET, bad, None).await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

/// Every row in every table that mentions `needle` (in any text column),
/// as "table.column".
pub(crate) async fn rows_mentioning(database_url: &str, needle: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let postgres = database_url.starts_with("postgres");
    let columns: Vec<(String, String)> = if postgres {
        sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type IN ('text', 'bytea', 'jsonb') \
               AND table_name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    } else {
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut out = Vec::new();
        for (table,) in tables {
            let cols: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            out.extend(cols.into_iter().map(|(c,)| (table.clone(), c)));
        }
        out
    };
    assert!(columns.len() > 20, "{columns:?}");
    let mut found = Vec::new();
    for (table, column) in columns {
        let text = if postgres {
            format!("{column}::text")
        } else {
            format!("CAST({column} AS TEXT)")
        };
        let (n,): (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM {table} WHERE {text} LIKE $1"
        ))
        .bind(format!("%{needle}%"))
        .fetch_one(&pool)
        .await
        .unwrap();
        for _ in 0..n {
            found.push(format!("{table}.{column}"));
        }
    }
    pool.close().await;
    found
}

async fn deleting_an_account_leaves_no_row_and_a_new_login_is_a_new_user(app: TestApp) {
    let carol = app.login(APP1, "carol").await;
    let t = token(&carol).to_owned();
    let id = carol["user"]["id"].as_str().unwrap().to_owned();
    let openid = app.openid(APP1, "carol");
    bind_phone(&app, &t, "carol", "13900139000").await;
    let r = app
        .call(
            Method::PATCH,
            "/v1/me",
            Some(&t),
            Some(json!({"profile": {"nickname": "Carol"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let mut created = Vec::new();
    let r = app
        .http
        .post(format!("{}/v1/data/notes", app.url))
        .bearer_auth(&t)
        .header("idempotency-key", "k-1")
        .json(&json!({"text": "idempotent"}))
        .send()
        .await
        .unwrap();
    let r = reply(r).await;
    assert_eq!(r.status, 201);
    created.push(r.body["id"].as_str().unwrap().to_owned());
    created.push(create(&app, &t, "notes", json!({"text": "two"})).await);
    created.push(create(&app, &t, "posts", json!({"status": "open"})).await);
    let second = app.login(APP1, "carol").await;
    // Someone else's data stays.
    let dan = app.login(APP1, "dan").await;
    let dan_doc = create(&app, token(&dan), "posts", json!({"status": "dan"})).await;

    // The export holds every document the user created.
    let r = app.get("/v1/me/export", Some(&t)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.header("content-disposition")
            .unwrap()
            .contains(&format!("wxauth-export-{id}.json"))
    );
    assert_eq!(r.body["document_count"], 3);
    let exported: Vec<&str> = r.body["documents"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|docs| docs.as_array().unwrap())
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    for doc in &created {
        assert!(exported.contains(&doc.as_str()), "{doc} exported");
    }
    assert!(!exported.contains(&dan_doc.as_str()));
    assert_eq!(r.body["user"]["profile"]["nickname"], "Carol");
    assert_eq!(r.body["sessions"].as_array().unwrap().len(), 2);
    assert!(!r.body.to_string().contains(&app.session_key(APP1, "carol")));

    // The confirmation is required word for word.
    for body in [
        json!({}),
        json!({"confirm": "yes"}),
        json!({"confirm": "DELETE MY ACCOUNT"}),
    ] {
        let r = app
            .call(Method::DELETE, "/v1/me", Some(&t), Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}");
    }
    assert!(rows_mentioning(&app.database_url, &id).await.len() > 5);
    let r = app
        .call(
            Method::DELETE,
            "/v1/me",
            Some(&t),
            Some(json!({"confirm": "delete my account"})),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    // Every token is refused; every route a token opens is a 401.
    for login in [&carol, &second] {
        for path in ["/v1/me", "/v1/me/export", "/v1/data/notes"] {
            assert_eq!(
                app.get(path, Some(token(login))).await.status,
                401,
                "{path}"
            );
        }
        let r = app
            .post(
                "/v1/token/refresh",
                None,
                json!({"refresh_token": refresh(login)}),
            )
            .await;
        assert_eq!(r.status, 401);
    }

    // No row in any table holds the user's id or openid, but the one
    // audit entry saying the deletion happened (their past changes in the
    // change log are scrubbed in the background, within a second or so).
    let expected = vec!["audit_log.actor".to_owned(), "audit_log.target".to_owned()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let left = loop {
        let mut left = rows_mentioning(&app.database_url, &id).await;
        left.sort();
        if left == expected || std::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(left, expected, "rows left: {left:?}");
    assert_eq!(
        rows_mentioning(&app.database_url, &openid).await,
        Vec::<String>::new()
    );
    let audit = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target=user:{id}"),
            None,
        )
        .await;
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["action"], "DELETE /v1/me");
    assert_eq!(entries[0]["actor"], format!("user:{id}"));
    assert_eq!(entries[0]["detail"], json!({}));
    let r = app
        .get(&format!("/v1/data/posts/{dan_doc}"), Some(token(&dan)))
        .await;
    assert_eq!(r.status, 200, "another user's data stays");

    // A later login with the same openid is a new user.
    let again = app.login(APP1, "carol").await;
    assert_eq!(again["new_user"], true);
    assert_ne!(again["user"]["id"].as_str().unwrap(), id);
    let r = app.get("/v1/me", Some(token(&again))).await;
    assert_eq!(r.body["phone"], Value::Null);
    assert_eq!(r.body["profile"], json!({}));

    // Through the admin API: one audit entry, by the key, in the same commit.
    let dan_id = dan["user"]["id"].as_str().unwrap().to_owned();
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("/admin/v1/users/{dan_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(app.get("/v1/me", Some(token(&dan))).await.status, 401);
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("/admin/v1/users/{dan_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let audit = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target=user:{dan_id}"),
            None,
        )
        .await;
    let entries = audit.body["items"].as_array().unwrap();
    let statuses: Vec<i64> = entries
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![404, 204], "{entries:?}");
    assert_eq!(entries[1]["actor"], "key:ops");

    // Another instance on the same database (started after the deletion)
    // refuses the deleted sessions' tokens too.
    let other = spawn_app_with(Options {
        database_url: Some(app.database_url.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    for login in [&carol, &second, &dan] {
        assert_eq!(other.get("/v1/me", Some(token(login))).await.status, 401);
    }
    assert_eq!(other.get("/v1/me", Some(token(&again))).await.status, 200);
}

/// With `admin_listen`, the admin API answers there alone; the public
/// address does not know it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_its_own_address() {
    let clock = wechat_miniapp::OffsetClock::new();
    let (_sim, sim_url) = spawn_sim(&clock).await;
    let dir = crate::db::temp_dir();
    let mut config = test_config(&format!("sqlite://{}/wxauth.db", dir.0.display()), &sim_url);
    config.files.url = format!("file://{}/files", dir.0.display());
    config.admin_listen = Some(config.listen);
    let refused = config.resolve().unwrap_err().to_string();
    assert!(refused.contains("admin_listen"), "{refused}");
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = wxauth::build_server(config.resolve().unwrap(), wxauth::Deps::default())
        .await
        .unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_url, admin_url) = (
        format!("http://{}", public.local_addr().unwrap()),
        format!("http://{}", admin.local_addr().unwrap()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wxauth::serve_with_admin(public, Some(admin), app, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move { reply(http.get(url).bearer_auth(ADMIN_KEY).send().await.unwrap()).await }
    };
    let path = "/admin/v1/users?openid=nobody";
    assert_eq!(get(format!("{public_url}{path}")).await.status, 404);
    let r = get(format!("{admin_url}{path}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.header("x-request-id").is_some(), "the same middleware");
    assert_eq!(get(format!("{admin_url}/healthz")).await.status, 404);
    assert_eq!(get(format!("{public_url}/healthz")).await.status, 200);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
