//! `GET /v1/watch` through real sockets (tokio-tungstenite, a WebSocket
//! client no one here wrote) against a running server, on SQLite and
//! PostgreSQL: `init`, every change in order, documents entering and
//! leaving a query, order and limit, private and shared access, several
//! watches on a socket, bad messages, resuming, and sessions that end.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::app::*;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client socket.
pub(crate) struct Ws {
    stream: Stream,
}

/// How long a message may take to arrive.
const ARRIVES: Duration = Duration::from_secs(5);

impl Ws {
    /// Opens `/v1/watch` at `base` (http://…), with the token in the
    /// upgrade's header when given.
    pub(crate) async fn open(base: &str, token: Option<&str>) -> Ws {
        Self::try_open(base, token).await.unwrap()
    }

    pub(crate) async fn try_open(
        base: &str,
        token: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/v1/watch", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        if let Some(t) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws { stream })
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next message (pings answered on the way).
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(ARRIVES, self.stream.next())
                .await
                .expect("no message within 5 s")
                .expect("the socket ended")
                .unwrap();
            match frame {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Asserts nothing arrives for `d`.
    pub(crate) async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.stream.next()).await {
            panic!("unexpected message: {t}");
        }
    }

    /// Waits for the server's close; its code and reason.
    pub(crate) async fn closed(&mut self, within: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("the socket was not closed in time");
            match frame {
                Some(Ok(Message::Close(Some(c)))) => {
                    return (u16::from(c.code), c.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => {
                    return (0, String::new());
                }
                Some(Err(e)) => return (0, e.to_string()),
                _ => {}
            }
        }
    }

    /// Watches and returns its `init`.
    pub(crate) async fn watch(&mut self, request: Value) -> Value {
        self.send(request).await;
        let init = self.next().await;
        assert_eq!(init["type"], "init", "{init}");
        init
    }
}

fn ids(docs: &Value) -> Vec<String> {
    docs.as_array()
        .unwrap()
        .iter()
        .map(|d| d["data"]["title"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The changes of a `change` message as `op title` strings.
fn ops(message: &Value) -> Vec<String> {
    assert_eq!(message["type"], "change", "{message}");
    message["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let title = c["doc"]["data"]["title"].as_str().unwrap_or("");
            format!("{} {title}", c["op"].as_str().unwrap())
                .trim()
                .to_owned()
        })
        .collect()
}

async fn create(app: &TestApp, token: &str, collection: &str, data: Value) -> String {
    let r = app
        .post(&format!("/v1/data/{collection}"), Some(token), data)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn replace(app: &TestApp, token: &str, collection: &str, id: &str, data: Value) {
    let r = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/data/{collection}/{id}"),
            Some(token),
            Some(data),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

async fn delete(app: &TestApp, token: &str, collection: &str, id: &str) {
    let r = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/data/{collection}/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

async fn a_watch_sees_init_then_every_change_in_order(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    create(&app, t, "todo", json!({"title": "old", "done": false})).await;
    create(&app, t, "todo", json!({"title": "finished", "done": true})).await;
    let mut ws = Ws::open(&app.url, Some(t)).await;
    let init = ws
        .watch(json!({"type": "watch", "id": "w1", "collection": "todo",
            "where": {"done": false}, "order_by": "created_at"}))
        .await;
    assert_eq!(init["id"], "w1");
    assert_eq!(ids(&init["docs"]), ["old"]);
    assert!(init["cursor"].is_string());
    assert!(init["docs"][0].get("owner").is_none(), "{init}");

    let id = create(&app, t, "todo", json!({"title": "milk", "done": false})).await;
    let m = ws.next().await;
    assert_eq!(ops(&m), ["add milk"]);
    assert_eq!(m["changes"][0]["doc_id"], id.as_str());
    assert_eq!(m["changes"][0]["doc"]["version"], 1);

    replace(
        &app,
        t,
        "todo",
        &id,
        json!({"title": "milk", "done": false, "qty": 2}),
    )
    .await;
    let m = ws.next().await;
    assert_eq!(ops(&m), ["update milk"]);
    assert_eq!(m["changes"][0]["updated_fields"], json!({"qty": 2}));
    assert_eq!(m["changes"][0]["removed_fields"], json!([]));
    assert_eq!(m["changes"][0]["doc"]["version"], 2);

    // Leaves the query, comes back, is deleted.
    replace(&app, t, "todo", &id, json!({"title": "milk", "done": true})).await;
    let m = ws.next().await;
    assert_eq!(m["changes"], json!([{"op": "remove", "doc_id": id}]));
    replace(
        &app,
        t,
        "todo",
        &id,
        json!({"title": "milk", "done": false}),
    )
    .await;
    assert_eq!(ops(&ws.next().await), ["add milk"]);
    delete(&app, t, "todo", &id).await;
    let m = ws.next().await;
    assert_eq!(m["changes"], json!([{"op": "remove", "doc_id": id}]));
    // A write the query does not show sends nothing.
    create(
        &app,
        t,
        "todo",
        json!({"title": "done already", "done": true}),
    )
    .await;
    ws.quiet(Duration::from_millis(300)).await;
    let before: i64 = m["cursor"]
        .as_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(before > 0);
}

async fn order_and_limit_keep_the_first_documents(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    for (title, score) in [("a", 10), ("b", 20), ("c", 30)] {
        create(&app, t, "scores", json!({"title": title, "score": score})).await;
    }
    let mut ws = Ws::open(&app.url, Some(t)).await;
    let init = ws
        .watch(json!({"type": "watch", "id": "top", "collection": "scores",
            "order_by": "-score", "limit": 2}))
        .await;
    assert_eq!(ids(&init["docs"]), ["c", "b"]);
    // Below the window: nothing.
    create(&app, t, "scores", json!({"title": "low", "score": 1})).await;
    ws.quiet(Duration::from_millis(300)).await;
    // Into the window: it enters, the last leaves.
    create(&app, t, "scores", json!({"title": "top", "score": 99})).await;
    let m = ws.next().await;
    let got = ops(&m);
    assert!(got.contains(&"add top".to_owned()), "{m}");
    assert_eq!(
        m["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["op"] == "remove")
            .count(),
        1,
        "{m}"
    );
    // A member leaves: the next one outside comes in.
    let top_id = m["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["op"] == "add")
        .unwrap()["doc_id"]
        .as_str()
        .unwrap()
        .to_owned();
    delete(&app, t, "scores", &top_id).await;
    let m = ws.next().await;
    assert_eq!(m["changes"][0], json!({"op": "remove", "doc_id": top_id}));
    let mut all = ops(&m);
    if all.len() == 1 {
        all.extend(ops(&ws.next().await));
    }
    assert_eq!(all, ["remove", "add b"], "{m}");
}

async fn private_collections_show_only_the_callers_own(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let bob = app.login(APP1, "bob").await;
    let alice_id = alice["user"]["id"].as_str().unwrap().to_owned();
    create(&app, token(&alice), "todo", json!({"title": "alice's"})).await;
    let mut ws = Ws::open(&app.url, Some(token(&bob))).await;
    // Neither the owner trick nor $or shows another user's documents.
    for (n, filter) in [
        json!({"owner": alice_id}),
        json!({"$or": [{"owner": alice_id}, {"title": "alice's"}]}),
        json!({}),
    ]
    .into_iter()
    .enumerate()
    {
        let init = ws
            .watch(json!({"type": "watch", "id": format!("w{n}"), "collection": "todo", "where": filter}))
            .await;
        assert_eq!(init["docs"], json!([]), "{filter}");
    }
    create(&app, token(&alice), "todo", json!({"title": "secret"})).await;
    create(&app, token(&bob), "todo", json!({"title": "bob's"})).await;
    // Only bob's own document reaches his watches (w2 matches it; w1's
    // $or matches neither; w0 asks for alice's).
    let m = ws.next().await;
    assert_eq!(m["id"], "w2");
    assert_eq!(ops(&m), ["add bob's"]);
    ws.quiet(Duration::from_millis(300)).await;
}

async fn shared_collections_show_every_users_documents(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let bob = app.login(APP1, "bob").await;
    let other_app = app.login(APP2, "carol").await;
    let mut ws = Ws::open(&app.url, Some(token(&bob))).await;
    let init = ws
        .watch(json!({"type": "watch", "id": "feed", "collection": "posts", "where": {"status": "open"}}))
        .await;
    assert_eq!(init["docs"], json!([]));
    create(
        &app,
        token(&alice),
        "posts",
        json!({"title": "hello", "status": "open"}),
    )
    .await;
    let m = ws.next().await;
    assert_eq!(ops(&m), ["add hello"]);
    assert_eq!(m["changes"][0]["doc"]["owner"], alice["user"]["id"]);
    // Another app's users are not this app's.
    create(
        &app,
        token(&other_app),
        "posts",
        json!({"title": "elsewhere", "status": "open"}),
    )
    .await;
    ws.quiet(Duration::from_millis(300)).await;
}

async fn two_watches_on_one_socket_and_unwatch(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    let mut ws = Ws::open(&app.url, Some(t)).await;
    ws.watch(json!({"type": "watch", "id": "a", "collection": "todo"}))
        .await;
    ws.watch(json!({"type": "watch", "id": "b", "collection": "notes"}))
        .await;
    create(&app, t, "notes", json!({"title": "n1"})).await;
    let m = ws.next().await;
    assert_eq!(
        (m["id"].as_str(), ops(&m)),
        (Some("b"), vec!["add n1".to_owned()])
    );
    create(&app, t, "todo", json!({"title": "t1"})).await;
    let m = ws.next().await;
    assert_eq!(
        (m["id"].as_str(), ops(&m)),
        (Some("a"), vec!["add t1".to_owned()])
    );
    ws.send(json!({"type": "unwatch", "id": "a"})).await;
    ws.send(json!({"type": "unwatch", "id": "a"})).await;
    let m = ws.next().await;
    assert_eq!(
        (m["type"].as_str(), m["error"].as_str()),
        (Some("error"), Some("not_found"))
    );
    create(&app, t, "todo", json!({"title": "t2"})).await;
    create(&app, t, "notes", json!({"title": "n2"})).await;
    let m = ws.next().await;
    assert_eq!(
        (m["id"].as_str(), ops(&m)),
        (Some("b"), vec!["add n2".to_owned()])
    );
}

async fn bad_messages_are_answered_and_the_socket_stays_usable(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    let mut ws = Ws::open(&app.url, Some(t)).await;
    ws.send_text("{not json").await;
    let m = ws.next().await;
    assert_eq!(
        (m["type"].as_str(), m["error"].as_str()),
        (Some("error"), Some("invalid_request"))
    );
    ws.send(json!({"type": "subscribe", "id": "x"})).await;
    let m = ws.next().await;
    assert_eq!(m["error"], "invalid_request");
    assert_eq!(m["id"], "x");
    ws.send(json!({"type": "watch", "id": "q", "collection": "todo", "where": {"$regex": 1}}))
        .await;
    let m = ws.next().await;
    assert_eq!(
        (m["error"].as_str(), m["id"].as_str()),
        (Some("invalid_request"), Some("q"))
    );
    ws.send(json!({"type": "watch", "id": "n", "collection": "Bad Name"}))
        .await;
    assert_eq!(ws.next().await["error"], "invalid_request");
    ws.send(json!({"type": "watch", "id": "l", "collection": "todo", "limit": 100000}))
        .await;
    assert_eq!(ws.next().await["error"], "invalid_request");
    // Still usable: a good watch works.
    ws.watch(json!({"type": "watch", "id": "ok", "collection": "todo"}))
        .await;
    ws.send(json!({"type": "watch", "id": "ok", "collection": "todo"}))
        .await;
    assert_eq!(ws.next().await["error"], "invalid_request");
    create(&app, t, "todo", json!({"title": "works"})).await;
    assert_eq!(ops(&ws.next().await), ["add works"]);
}

async fn a_socket_without_a_valid_token_sees_nothing(app: TestApp) {
    // A bad token in the header: the upgrade is refused.
    let refused = Ws::try_open(&app.url, Some("not-a-token")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    // No header: the first message must be auth.
    let mut ws = Ws::open(&app.url, None).await;
    ws.send(json!({"type": "watch", "id": "w", "collection": "todo"}))
        .await;
    let m = ws.next().await;
    assert_eq!(m["error"], "unauthorized");
    assert_eq!(ws.closed(ARRIVES).await.0, 4401);
    // With it, the socket works.
    let alice = app.login(APP1, "alice").await;
    let mut ws = Ws::open(&app.url, None).await;
    ws.send(json!({"type": "auth", "access_token": token(&alice)}))
        .await;
    ws.watch(json!({"type": "watch", "id": "w", "collection": "todo"}))
        .await;
    create(&app, token(&alice), "todo", json!({"title": "seen"})).await;
    assert_eq!(ops(&ws.next().await), ["add seen"]);
}

async fn logout_and_account_deletion_close_the_socket(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let mut ws = Ws::open(&app.url, Some(token(&alice))).await;
    ws.watch(json!({"type": "watch", "id": "w", "collection": "todo"}))
        .await;
    let r = app.post("/v1/logout", Some(token(&alice)), json!({})).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let (code, _) = ws
        .closed(Duration::from_secs(1) + Duration::from_millis(500))
        .await;
    assert_eq!(code, 4401);

    // An operator's revocation of every session of a user, likewise.
    let erin = app.login(APP1, "erin").await;
    let mut erin_ws = Ws::open(&app.url, Some(token(&erin))).await;
    erin_ws
        .watch(json!({"type": "watch", "id": "w", "collection": "todo"}))
        .await;
    let r = app
        .admin(
            Some(ADMIN_KEY),
            reqwest::Method::POST,
            &format!(
                "/admin/v1/users/{}/revoke",
                erin["user"]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(erin_ws.closed(Duration::from_millis(1500)).await.0, 4401);

    // A shared collection's watcher sees a deleted account's documents go.
    let bob = app.login(APP1, "bob").await;
    let carol = app.login(APP1, "carol").await;
    let post = create(
        &app,
        token(&bob),
        "posts",
        json!({"title": "bye", "status": "open"}),
    )
    .await;
    let mut bob_ws = Ws::open(&app.url, Some(token(&bob))).await;
    bob_ws
        .watch(json!({"type": "watch", "id": "mine", "collection": "todo"}))
        .await;
    let mut carol_ws = Ws::open(&app.url, Some(token(&carol))).await;
    let init = carol_ws
        .watch(json!({"type": "watch", "id": "feed", "collection": "posts"}))
        .await;
    assert_eq!(ids(&init["docs"]), ["bye"]);
    let r = app
        .call(
            reqwest::Method::DELETE,
            "/v1/me",
            Some(token(&bob)),
            Some(json!({"confirm": "delete my account"})),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert_eq!(bob_ws.closed(Duration::from_millis(1500)).await.0, 4401);
    let m = carol_ws.next().await;
    assert_eq!(m["changes"], json!([{"op": "remove", "doc_id": post}]));
}

async fn a_resume_delivers_what_was_missed(app: TestApp) {
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    let kept = create(&app, t, "todo", json!({"title": "kept"})).await;
    let gone = create(&app, t, "todo", json!({"title": "gone"})).await;
    let mut ws = Ws::open(&app.url, Some(t)).await;
    let init = ws
        .watch(json!({"type": "watch", "id": "w", "collection": "todo", "order_by": "created_at"}))
        .await;
    let cursor = init["cursor"].as_str().unwrap().to_owned();
    drop(ws);
    // Missed while away.
    replace(
        &app,
        t,
        "todo",
        &kept,
        json!({"title": "kept", "edited": true}),
    )
    .await;
    delete(&app, t, "todo", &gone).await;
    let new = create(&app, t, "todo", json!({"title": "new"})).await;
    let mut ws = Ws::open(&app.url, Some(t)).await;
    ws.send(
        json!({"type": "watch", "id": "w", "collection": "todo", "order_by": "created_at",
        "resume_after": cursor}),
    )
    .await;
    let m = ws.next().await;
    assert_eq!(m["type"], "change", "{m}");
    let mut got: Vec<(String, String)> = m["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap().to_owned(),
                c["doc_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        ("update".to_owned(), kept.clone()),
        ("remove".to_owned(), gone.clone()),
        ("add".to_owned(), new.clone()),
    ];
    want.sort();
    assert_eq!(got, want);
    // Then live changes as usual.
    create(&app, t, "todo", json!({"title": "live"})).await;
    assert_eq!(ops(&ws.next().await), ["add live"]);
    // A cursor of another query, or one that is not a cursor.
    ws.send(
        json!({"type": "watch", "id": "x", "collection": "todo", "where": {"title": "new"},
        "resume_after": m["cursor"]}),
    )
    .await;
    assert_eq!(ws.next().await["type"], "init");
    ws.send(json!({"type": "watch", "id": "y", "collection": "todo", "resume_after": "nonsense"}))
        .await;
    assert_eq!(ws.next().await["error"], "invalid_request");
}

on_both!(
    a_watch_sees_init_then_every_change_in_order,
    order_and_limit_keep_the_first_documents,
    private_collections_show_only_the_callers_own,
    shared_collections_show_every_users_documents,
    two_watches_on_one_socket_and_unwatch,
    bad_messages_are_answered_and_the_socket_stays_usable,
    a_socket_without_a_valid_token_sees_nothing,
    logout_and_account_deletion_close_the_socket,
    a_resume_delivers_what_was_missed,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_sockets_and_watches_answer_errors() {
    let app = spawn_app_tweaked(|c| {
        c.realtime.sockets_per_user = 2;
        c.realtime.watches_per_socket = 2;
        c.realtime.max_init_bytes = 1000;
    })
    .await;
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    let mut one = Ws::open(&app.url, Some(t)).await;
    let _two = Ws::open(&app.url, Some(t)).await;
    let mut three = Ws::open(&app.url, Some(t)).await;
    let m = three.next().await;
    assert_eq!(m["error"], "rate_limited", "{m}");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("realtime.sockets_per_user")
    );
    assert_eq!(three.closed(ARRIVES).await.0, 4429);
    // Another user is not counted against alice.
    let bob = app.login(APP1, "bob").await;
    let mut bobs = Ws::open(&app.url, Some(token(&bob))).await;
    bobs.watch(json!({"type": "watch", "id": "b", "collection": "todo"}))
        .await;
    // Watches per socket.
    one.watch(json!({"type": "watch", "id": "1", "collection": "todo"}))
        .await;
    one.watch(json!({"type": "watch", "id": "2", "collection": "notes"}))
        .await;
    one.send(json!({"type": "watch", "id": "3", "collection": "more"}))
        .await;
    let m = one.next().await;
    assert_eq!(
        (m["error"].as_str(), m["id"].as_str()),
        (Some("limit_exceeded"), Some("3"))
    );
    // An init past realtime.max_init_bytes is refused, naming it.
    one.send(json!({"type": "unwatch", "id": "2"})).await;
    create(&app, t, "fat", json!({"title": "x".repeat(600)})).await;
    create(&app, t, "fat", json!({"title": "y".repeat(600)})).await;
    one.send(json!({"type": "watch", "id": "2", "collection": "fat"}))
        .await;
    let m = one.next().await;
    assert_eq!(m["error"], "limit_exceeded", "{m}");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("realtime.max_init_bytes")
    );
    one.watch(json!({"type": "watch", "id": "2", "collection": "fat", "limit": 1}))
        .await;
    // Unwatching makes room; a closed socket frees its place.
    one.send(json!({"type": "unwatch", "id": "1"})).await;
    one.watch(json!({"type": "watch", "id": "3", "collection": "more"}))
        .await;
    drop(one);
    let deadline = tokio::time::Instant::now() + ARRIVES;
    loop {
        let mut again = Ws::open(&app.url, Some(t)).await;
        again
            .send(json!({"type": "watch", "id": "x", "collection": "todo"}))
            .await;
        let m = again.next().await;
        if m["type"] == "init" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed socket's place was not freed: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = app.metrics().await;
    for name in [
        "wxauth_realtime_sockets",
        "wxauth_realtime_watches",
        "wxauth_realtime_messages_sent_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_closed_not_buffered_without_end() {
    let app = spawn_app_tweaked(|c| {
        c.realtime.send_buffer = 4;
        c.limits.bytes_per_user = 1 << 30;
    })
    .await;
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice).to_owned();
    let mut ws = Ws::open(&app.url, Some(&t)).await;
    ws.watch(json!({"type": "watch", "id": "w", "collection": "big"}))
        .await;
    // The client stops reading; 40 MB of changes are written.
    let big = "x".repeat(60_000);
    for i in 0..700 {
        create(
            &app,
            &t,
            "big",
            json!({"title": format!("b{i}"), "pad": big}),
        )
        .await;
    }
    // What the socket carried before it was closed arrives, then the close.
    let (code, reason) = ws.closed(Duration::from_secs(30)).await;
    assert_eq!(code, 4408, "{reason}");
    assert!(app.metrics().await.contains("reason=\"slow_reader\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_closes_the_socket_at_expiry() {
    let app = spawn_app_with(Options {
        access_ttl_secs: 2,
        ..Options::default()
    })
    .await
    .unwrap();
    let alice = app.login(APP1, "alice").await;
    let mut ws = Ws::open(&app.url, Some(token(&alice))).await;
    ws.watch(json!({"type": "watch", "id": "w", "collection": "todo"}))
        .await;
    let started = std::time::Instant::now();
    let (code, reason) = ws.closed(Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (4401, "the access token expired"));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_no_pings_is_closed() {
    let app = spawn_app_tweaked(|c| c.realtime.ping_secs = 1).await;
    let alice = app.login(APP1, "alice").await;
    let mut ws = Ws::open(&app.url, Some(token(&alice))).await;
    ws.watch(json!({"type": "watch", "id": "w", "collection": "todo"}))
        .await;
    // Not reading: the client's pongs are never sent.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // The server closed it (code 4000; the client may not get to read the
    // close frame: writing its late pongs to the closed connection fails
    // first), and says why in /metrics.
    let (code, reason) = ws.closed(ARRIVES).await;
    assert!(
        code == 4000 || reason.contains("Broken pipe") || reason.contains("reset"),
        "{code} {reason}"
    );
    assert!(app.metrics().await.contains("reason=\"no_pong\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_older_than_the_history_gets_a_fresh_init() {
    let app = spawn_app_tweaked(|c| c.realtime.history_secs = 1).await;
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    create(&app, t, "todo", json!({"title": "before"})).await;
    let mut ws = Ws::open(&app.url, Some(t)).await;
    let init = ws
        .watch(json!({"type": "watch", "id": "w", "collection": "todo", "order_by": "created_at"}))
        .await;
    let cursor = init["cursor"].as_str().unwrap().to_owned();
    drop(ws);
    create(&app, t, "todo", json!({"title": "missed"})).await;
    // The change log keeps a second of history, trimmed every second.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let mut ws = Ws::open(&app.url, Some(t)).await;
    ws.send(
        json!({"type": "watch", "id": "w", "collection": "todo", "order_by": "created_at",
        "resume_after": cursor}),
    )
    .await;
    let m = ws.next().await;
    assert_eq!(m["type"], "init", "{m}");
    assert_eq!(ids(&m["docs"]), ["before", "missed"]);
}

/// `realtime.enabled = false`: no socket is served, and writes leave
/// nothing in the change log (they cost what they did before realtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_turned_off_serves_no_socket_and_logs_nothing() {
    let app = spawn_app_tweaked(|c| c.realtime.enabled = false).await;
    let alice = app.login(APP1, "alice").await;
    let t = token(&alice);
    match Ws::try_open(&app.url, Some(t)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected a 404, got {:?}", other.map(|_| ())),
    }
    let id = create(&app, t, "todo", json!({"title": "unlogged"})).await;
    let r = app.get(&format!("/v1/data/todo/{id}"), Some(t)).await;
    assert_eq!(r.status, 200);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM changes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}
