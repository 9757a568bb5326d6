//! `GET /v1/watch`: the realtime socket (what `wx.connectSocket` opens).
//! Frames in, messages out; the rules are in `realtime`.
//!
//! Close codes: 4401 the session ended or the access token expired (log in
//! or refresh, then reconnect), 4408 the client read too slowly (its queue
//! filled), 4429 too many sockets for this user or address, 4000 no answer
//! to two pings.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::data::DocumentView;
use crate::auth::Caller;
use crate::error::Error;
use crate::http::AppState;
use crate::http::error::error_code;
use crate::http::extract::{ClientIp, bearer_token};
use crate::realtime::{CloseReason, Connection, DocChange, Outgoing, WatchRequest};

/// The largest message a client may send.
const MAX_MESSAGE: usize = 64 * 1024;
/// How long a socket without a token has to send `{"type": "auth"}`.
const AUTH_WAIT: Duration = Duration::from_secs(10);

/// A client's message.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Incoming {
    Auth {
        access_token: String,
    },
    Watch {
        id: String,
        collection: String,
        #[serde(rename = "where")]
        filter: Option<Value>,
        order_by: Option<String>,
        limit: Option<u32>,
        resume_after: Option<String>,
    },
    Unwatch {
        id: String,
    },
}

/// `GET /v1/watch`
pub(crate) async fn watch(
    State(state): State<AppState>,
    ClientIp(address): ClientIp,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Error> {
    if !state.realtime().settings().enabled {
        return Err(Error::NotFound(
            "realtime watches are turned off on this server (realtime.enabled = false)".into(),
        ));
    }
    // A token in the upgrade's header is checked before it: a bad one is
    // a 401 the client's HTTP stack sees.
    let caller = match bearer_token(&headers)? {
        Some(token) => Some(state.auth().authenticate_socket(token).await?),
        None => None,
    };
    Ok(upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        // tungstenite reserves 128 KiB to read into for every socket by
        // default: 1.4 GB for 10,000 sockets (bench/README.md). Client
        // messages are small; 4 KiB, and messages out written at once.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(state, socket, caller, address)))
}

fn text(value: Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn error_message(id: Option<&str>, error: &Error) -> Value {
    let code = error_code(error);
    let message = if code == "internal" {
        if let Some(cause) = error.internal_chain() {
            tracing::error!(error = %cause, "a watch failed");
        }
        "internal error".to_owned()
    } else {
        error.to_string()
    };
    let mut m = json!({"type": "error", "error": code, "message": message});
    if let Some(id) = id {
        m["id"] = json!(id);
    }
    m
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_owned()),
        })))
        .await;
}

/// Waits for `{"type": "auth", "access_token"}` as the first message.
async fn first_auth(state: &AppState, socket: &mut WebSocket) -> Result<(Caller, i64), Error> {
    let missing = || {
        Error::Unauthorized(
            "the first message must be {\"type\": \"auth\", \"access_token\": \"...\"} when the upgrade carries no Authorization header",
        )
    };
    let frame = tokio::time::timeout(AUTH_WAIT, socket.recv())
        .await
        .map_err(|_| missing())?;
    let Some(Ok(Message::Text(t))) = frame else {
        return Err(missing());
    };
    match serde_json::from_str::<Incoming>(t.as_str()) {
        Ok(Incoming::Auth { access_token }) => {
            state.auth().authenticate_socket(&access_token).await
        }
        _ => Err(missing()),
    }
}

async fn serve(
    state: AppState,
    mut socket: WebSocket,
    caller: Option<(Caller, i64)>,
    address: IpAddr,
) {
    let (caller, expires_ms) = match caller {
        Some(c) => c,
        None => match first_auth(&state, &mut socket).await {
            Ok(c) => c,
            Err(e) => {
                let _ = socket.send(text(error_message(None, &e))).await;
                return close(socket, 4401, "not authenticated").await;
            }
        },
    };
    let mut conn = match state.realtime().open(caller, address) {
        Ok(c) => c,
        Err(e) => {
            let _ = socket.send(text(error_message(None, &e))).await;
            return close(socket, 4429, "too many sockets").await;
        }
    };
    let now_ms = state.auth().now();
    let expires_in = Duration::from_millis(u64::try_from(expires_ms - now_ms).unwrap_or(0));
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    let ping_every = state.realtime().settings().ping;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut unanswered = 0u32;
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { return };
                unanswered = 0;
                match frame {
                    Message::Text(t) => handle(&mut conn, t.as_str()).await,
                    Message::Binary(_) => conn.refuse(None, Error::InvalidRequest("messages are JSON text frames".into())),
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            out = conn.outgoing.recv() => {
                let Some(out) = out else { return };
                if socket.send(text(render(&out))).await.is_err() {
                    return;
                }
                metrics::counter!("wxauth_realtime_messages_sent_total").increment(1);
                if let Outgoing::Change { changes, .. } = &out {
                    metrics::counter!("wxauth_realtime_changes_delivered_total")
                        .increment(changes.len() as u64);
                }
            }
            changed = conn.closed.changed() => {
                if changed.is_err() {
                    return;
                }
                let reason = *conn.closed.borrow();
                match reason {
                    Some(CloseReason::SessionEnded) => {
                        metrics::counter!("wxauth_realtime_drops_total", "reason" => "session_ended").increment(1);
                        return close(socket, 4401, "the session ended").await;
                    }
                    Some(CloseReason::SlowReader) => {
                        metrics::counter!("wxauth_realtime_drops_total", "reason" => "slow_reader").increment(1);
                        return close(socket, 4408, "the client read too slowly").await;
                    }
                    None => {}
                }
            }
            () = &mut expiry => {
                metrics::counter!("wxauth_realtime_drops_total", "reason" => "token_expired").increment(1);
                return close(socket, 4401, "the access token expired").await;
            }
            _ = ping.tick() => {
                if unanswered >= 2 {
                    metrics::counter!("wxauth_realtime_drops_total", "reason" => "no_pong").increment(1);
                    return close(socket, 4000, "no answer to pings").await;
                }
                unanswered += 1;
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn handle(conn: &mut Connection, frame: &str) {
    let message = match serde_json::from_str::<Incoming>(frame) {
        Ok(m) => m,
        Err(e) => {
            let id = serde_json::from_str::<Value>(frame)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
            let what = if serde_json::from_str::<Value>(frame).is_err() {
                "the message is not JSON".to_owned()
            } else {
                format!(
                    "the message is not one of auth, watch, unwatch with their fields: {}",
                    e.to_string().chars().take(200).collect::<String>()
                )
            };
            return conn.refuse(id, Error::InvalidRequest(what));
        }
    };
    match message {
        Incoming::Auth { .. } => conn.refuse(
            None,
            Error::InvalidRequest("this socket is authenticated already".into()),
        ),
        Incoming::Watch {
            id,
            collection,
            filter,
            order_by,
            limit,
            resume_after,
        } => {
            let filter = match filter {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(v @ Value::Object(_)) => Some(v.to_string()),
                Some(_) => {
                    return conn.refuse(
                        Some(id),
                        Error::InvalidRequest("where is a JSON object (or its text)".into()),
                    );
                }
            };
            conn.watch(WatchRequest {
                id,
                collection,
                filter,
                order_by,
                limit,
                resume_after,
            })
            .await;
        }
        Incoming::Unwatch { id } => conn.unwatch(&id),
    }
}

/// A message as the contract writes it.
fn render(out: &Outgoing) -> Value {
    match out {
        Outgoing::Init { id, docs, cursor } => json!({
            "type": "init",
            "id": id,
            "docs": docs.iter().map(|d| DocumentView::from(&d.document)).collect::<Vec<_>>(),
            "cursor": cursor,
        }),
        Outgoing::Change {
            id,
            changes,
            cursor,
        } => json!({
            "type": "change",
            "id": id,
            "changes": changes.iter().map(render_change).collect::<Vec<_>>(),
            "cursor": cursor,
        }),
        Outgoing::Error { id, error } => error_message(id.as_deref(), error),
    }
}

fn render_change(c: &DocChange) -> Value {
    match c {
        DocChange::Add(d) => json!({
            "op": "add",
            "doc_id": d.document.id,
            "doc": DocumentView::from(&d.document),
        }),
        DocChange::Update(d, updated, removed) => {
            let data: Map<String, Value> =
                serde_json::from_str(&d.document.data).unwrap_or_default();
            let updated_fields: Map<String, Value> = updated
                .iter()
                .filter_map(|k| data.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            json!({
                "op": "update",
                "doc_id": d.document.id,
                "doc": DocumentView::from(&d.document),
                "updated_fields": updated_fields,
                "removed_fields": removed,
            })
        }
        DocChange::Remove(id) => json!({"op": "remove", "doc_id": id}),
    }
}
