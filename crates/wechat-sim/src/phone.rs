//! The phone side and test controls under `/sim/v1`: what `wx.login`, the
//! phone-number button and `wx.getUserInfo` give a user, introspection,
//! faults, stats and the clock. Errors here are the simulator's own
//! `{"error", "message"}` with a 4xx, since WeChat has no such endpoints.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::FaultSpec;
use crate::push::{PushTarget, event};
use crate::state::{ContentRules, SimError};
use crate::{Simulator, lock};

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/sim/v1/login", post(login))
        .route("/sim/v1/phone-code", post(phone_code))
        .route("/sim/v1/encrypt", post(encrypt))
        .route("/sim/v1/users/{appid}/{user}", get(user))
        .route("/sim/v1/faults", post(set_fault).delete(clear_faults))
        .route("/sim/v1/stats", get(stats).delete(reset_stats))
        .route("/sim/v1/clock", get(clock).post(advance_clock))
        .route("/sim/v1/push-targets", post(set_push_target))
        .route(
            "/sim/v1/content-rules",
            get(content_rules).post(set_content_rules),
        )
        .route("/sim/v1/pushes", get(pushes))
        .route("/sim/v1/media-checks", get(media_checks))
        .route("/sim/v1/revoke-authorization", post(revoke_authorization))
        .route("/sim/v1/subscribe", post(subscribe))
        .route("/sim/v1/health", get(|| async { "ok" }))
        // The phone side is what a browser page (wxauth's playground, or a
        // developer's own test page on another port) calls: allow any origin.
        // WeChat's own paths stay as WeChat has them: no CORS.
        .layer(tower_http::cors::CorsLayer::permissive())
}

/// The phone side's error answer.
struct PhoneError(StatusCode, &'static str, String);

impl IntoResponse for PhoneError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1, "message": self.2}))).into_response()
    }
}

impl From<SimError> for PhoneError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::UnknownApp(_) => {
                PhoneError(StatusCode::NOT_FOUND, "unknown_app", e.to_string())
            }
            SimError::InvalidRequest(_) => {
                PhoneError(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            }
        }
    }
}

impl From<JsonRejection> for PhoneError {
    fn from(e: JsonRejection) -> Self {
        PhoneError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text())
    }
}

type Body<T> = Result<Json<T>, JsonRejection>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneReq {
    appid: String,
    user: String,
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptReq {
    appid: String,
    user: String,
    data: Value,
}

/// `wx.login()`'s body: a test user by name, or (a user migrated from
/// another backend) by the openid they had there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginReq {
    appid: String,
    user: Option<String>,
    openid: Option<String>,
    unionid: Option<String>,
}

async fn login(
    State(sim): State<Simulator>,
    body: Body<LoginReq>,
) -> Result<Json<Value>, PhoneError> {
    let Json(req) = body?;
    let code = match (&req.user, &req.openid) {
        (Some(user), None) if req.unionid.is_none() => sim.login_code(&req.appid, user)?,
        (None, Some(openid)) => {
            sim.login_code_for_openid(&req.appid, openid, req.unionid.as_deref())?
        }
        _ => {
            return Err(PhoneError(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give either user, or openid (and unionid if the user has one)".into(),
            ));
        }
    };
    Ok(Json(json!({"code": code})))
}

async fn phone_code(
    State(sim): State<Simulator>,
    body: Body<PhoneReq>,
) -> Result<Json<Value>, PhoneError> {
    let Json(req) = body?;
    let code = sim.phone_code(&req.appid, &req.user, req.phone.as_deref())?;
    Ok(Json(json!({"code": code})))
}

async fn encrypt(
    State(sim): State<Simulator>,
    body: Body<EncryptReq>,
) -> Result<Json<Value>, PhoneError> {
    let Json(req) = body?;
    Ok(Json(sim.encrypt(&req.appid, &req.user, req.data)?))
}

async fn user(
    State(sim): State<Simulator>,
    Path((appid, user)): Path<(String, String)>,
) -> Result<Json<Value>, PhoneError> {
    Ok(Json(sim.user_info(&appid, &user)?))
}

async fn set_fault(
    State(sim): State<Simulator>,
    body: Body<FaultSpec>,
) -> Result<StatusCode, PhoneError> {
    let Json(spec) = body?;
    sim.set_fault(spec)
        .map_err(|e| PhoneError(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn stats(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(*lock(&sim.shared.stats)))
}

async fn reset_stats(State(sim): State<Simulator>) -> StatusCode {
    sim.reset_stats();
    StatusCode::NO_CONTENT
}

async fn clock(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"now_ms": sim.now(), "offset_ms": sim.clock().offset_ms()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceReq {
    advance_ms: u64,
}

async fn advance_clock(
    State(sim): State<Simulator>,
    body: Body<AdvanceReq>,
) -> Result<Json<Value>, PhoneError> {
    let Json(req) = body?;
    sim.clock().advance(Duration::from_millis(req.advance_ms));
    Ok(clock(State(sim)).await)
}

async fn set_push_target(
    State(sim): State<Simulator>,
    body: Body<PushTarget>,
) -> Result<StatusCode, PhoneError> {
    let Json(target) = body?;
    sim.set_push_target(target)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pushes(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"pushes": sim.pushes()}))
}

/// A user withdrawing their authorization (or closing their WeChat
/// account, `closed`): the event WeChat pushes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeReq {
    appid: String,
    user: Option<String>,
    openid: Option<String>,
    #[serde(default)]
    closed: bool,
    /// WeChat's `RevokeInfo` (what was withdrawn); default "1".
    revoke_info: Option<String>,
}

async fn revoke_authorization(
    State(sim): State<Simulator>,
    body: Body<RevokeReq>,
) -> Result<Json<Value>, PhoneError> {
    let Json(req) = body?;
    let id = sim.revoke_authorization(
        &req.appid,
        req.user.as_deref(),
        req.openid.as_deref(),
        req.closed,
        req.revoke_info.as_deref().unwrap_or("1"),
    )?;
    Ok(Json(json!({"push_id": id})))
}

impl Simulator {
    /// Pushes `user_authorization_revoke` (or, `closed`, the account's
    /// `user_authorization_cancellation`) for a user named `user` or with
    /// `openid`; the push's id.
    pub fn revoke_authorization(
        &self,
        appid: &str,
        user: Option<&str>,
        openid: Option<&str>,
        closed: bool,
        revoke_info: &str,
    ) -> Result<u64, SimError> {
        let openid = self.state().openid_for(appid, user, openid)?;
        let name = if closed {
            "user_authorization_cancellation"
        } else {
            "user_authorization_revoke"
        };
        let mut message = event(appid, &openid, self.now(), name);
        message.insert("OpenID".into(), json!(openid));
        message.insert("AppID".into(), json!(appid));
        message.insert("RevokeInfo".into(), json!(revoke_info));
        self.push(appid, message)
    }
}

async fn content_rules(State(sim): State<Simulator>) -> Json<ContentRules> {
    Json(sim.content_rules())
}

async fn set_content_rules(
    State(sim): State<Simulator>,
    body: Body<ContentRules>,
) -> Result<StatusCode, PhoneError> {
    let Json(rules) = body?;
    sim.set_content_rules(rules)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's answer to a subscribe template: what the consent popup of
/// `wx.requestSubscribeMessage` (or, `settings`, the settings page) records.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeReq {
    appid: String,
    user: Option<String>,
    openid: Option<String>,
    template_id: String,
    accept: bool,
    #[serde(default)]
    settings: bool,
}

async fn subscribe(
    State(sim): State<Simulator>,
    body: Body<SubscribeReq>,
) -> Result<Json<Value>, PhoneError> {
    let Json(req) = body?;
    let push_id = sim.subscribe(
        &req.appid,
        req.user.as_deref(),
        req.openid.as_deref(),
        &req.template_id,
        req.accept,
        req.settings,
    )?;
    let status = if req.accept { "accept" } else { "reject" };
    // What wx.requestSubscribeMessage answers the mini program.
    let mut result = json!({"errMsg": "requestSubscribeMessage:ok"});
    result[req.template_id.as_str()] = json!(status);
    Ok(Json(json!({"push_id": push_id, "result": result})))
}

async fn media_checks(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"media_checks": sim.media_checks()}))
}
