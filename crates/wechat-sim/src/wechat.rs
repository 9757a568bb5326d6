//! WeChat's server paths. Each handler counts the call, applies any injected
//! fault, runs the rule in `state`, and answers as WeChat does: HTTP 200, the
//! API's own `Content-Type`, errors as `{"errcode", "errmsg"}` with a rid.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::api::{Api, WxError};
use crate::state::SimState;
use crate::{Simulator, ids, lock};

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/sns/jscode2session", any(jscode2session))
        .route("/cgi-bin/token", any(token))
        .route("/cgi-bin/stable_token", any(stable_token))
        .route("/wxa/checksession", any(checksession))
        .route("/wxa/resetusersessionkey", any(resetusersessionkey))
        .route("/wxa/business/getuserphonenumber", any(getuserphonenumber))
        .route("/wxa/msg_sec_check", any(msg_sec_check))
        .route("/cgi-bin/message/subscribe/send", any(subscribe_send))
        .route("/wxa/media_check_async", any(media_check_async))
}

type Query_ = Query<HashMap<String, String>>;

async fn jscode2session(State(sim): State<Simulator>, Query(q): Query_) -> Response {
    // Parameters are read from the query only, whatever the method: a POST
    // with a body therefore gets 41002 `appid missing`, as on WeChat.
    sim.answer(Api::Jscode2session, |s, now| s.jscode2session(&q, now))
        .await
}

async fn token(State(sim): State<Simulator>, Query(q): Query_) -> Response {
    sim.answer(Api::Token, |s, now| s.classic_token(&q, now))
        .await
}

async fn stable_token(State(sim): State<Simulator>, method: Method, body: Bytes) -> Response {
    sim.answer_post(Api::StableToken, &method, |s, now| {
        s.stable_token(&body, now)
    })
    .await
}

async fn checksession(State(sim): State<Simulator>, Query(q): Query_) -> Response {
    sim.answer(Api::Checksession, |s, now| s.checksession(&q, now))
        .await
}

async fn resetusersessionkey(State(sim): State<Simulator>, Query(q): Query_) -> Response {
    sim.answer(Api::Resetusersessionkey, |s, now| {
        s.resetusersessionkey(&q, now)
    })
    .await
}

async fn getuserphonenumber(
    State(sim): State<Simulator>,
    method: Method,
    Query(q): Query_,
    body: Bytes,
) -> Response {
    sim.answer_post(Api::Getuserphonenumber, &method, |s, now| {
        s.getuserphonenumber(&q, &body, now)
    })
    .await
}

async fn msg_sec_check(
    State(sim): State<Simulator>,
    method: Method,
    Query(q): Query_,
    body: Bytes,
) -> Response {
    sim.answer_post(Api::MsgSecCheck, &method, |s, now| {
        s.msg_sec_check(&q, &body, now)
    })
    .await
}

async fn subscribe_send(
    State(sim): State<Simulator>,
    method: Method,
    Query(q): Query_,
    body: Bytes,
) -> Response {
    let answer = sim
        .answer_post(Api::SubscribeSend, &method, |s, now| {
            s.subscribe_send(&q, &body, now)
        })
        .await;
    // Each message sent: its delivery result pushed, as WeChat does.
    sim.push_deliveries();
    answer
}

async fn media_check_async(
    State(sim): State<Simulator>,
    method: Method,
    Query(q): Query_,
    body: Bytes,
) -> Response {
    let answer = sim
        .answer_post(Api::MediaCheckAsync, &method, |s, now| {
            s.media_check_async(&q, &body, now)
        })
        .await;
    // The check runs in the background and its verdict is pushed.
    sim.run_media_checks();
    answer
}

impl Simulator {
    /// [`Simulator::answer`] for an API WeChat takes only by POST: any
    /// other method is 43002 `require POST method`.
    async fn answer_post(
        &self,
        api: Api,
        method: &Method,
        rule: impl FnOnce(&mut SimState, i64) -> Result<Value, WxError>,
    ) -> Response {
        if *method != Method::POST {
            return self.answer(api, |_, _| Err(WxError(43002))).await;
        }
        self.answer(api, rule).await
    }

    async fn answer(
        &self,
        api: Api,
        rule: impl FnOnce(&mut SimState, i64) -> Result<Value, WxError>,
    ) -> Response {
        lock(&self.shared.stats).call(api);
        let hit = lock(&self.shared.faults).roll(api);
        if let Some(delay) = hit.delay {
            tokio::time::sleep(delay).await;
        }
        let result = match hit.errcode {
            Some(errcode) => Err(WxError(errcode)),
            None => {
                let now = self.now();
                rule(&mut self.state(), now)
            }
        };
        let (errcode, body) = match result {
            Ok(body) => (0, body),
            Err(err) => (
                err.0,
                json!({"errcode": err.0, "errmsg": format!("{}, rid: {}", err.errmsg(), ids::rid())}),
            ),
        };
        lock(&self.shared.stats).answered(api, errcode);
        (
            [(header::CONTENT_TYPE, api.content_type())],
            body.to_string(),
        )
            .into_response()
    }
}
