//! `GET/PATCH /v1/me`, `POST /v1/me/phone`, `POST /v1/me/decrypt`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::super::AppState;
use super::super::extract::ApiJson;
use super::super::views::MeView;
use crate::auth::{Caller, PhoneNumber};
use crate::data::profile;
use crate::error::{Error, Result};

async fn me_view(state: &AppState, user: crate::store::UserRecord) -> Result<Json<MeView>> {
    let phone = state.auth().phone_of(&user)?;
    Ok(Json(MeView::new(user, phone)))
}

pub(crate) async fn get_me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeView>> {
    let user = state.auth().user(&caller).await?;
    me_view(&state, user).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchMe {
    profile: Value,
}

pub(crate) async fn patch_me(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PatchMe>,
) -> Result<Json<MeView>> {
    let Value::Object(patch) = req.profile else {
        return Err(Error::InvalidRequest(
            "profile must be a JSON object".into(),
        ));
    };
    let patch: Map<String, Value> = patch;
    let user = profile::update(
        state.auth(),
        &caller,
        patch,
        state.settings().limits.profile_bytes,
    )
    .await?;
    me_view(&state, user).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PhoneRequest {
    code: String,
}

pub(crate) async fn bind_phone(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PhoneRequest>,
) -> Result<Json<PhoneNumber>> {
    Ok(Json(state.auth().bind_phone(&caller, &req.code).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecryptRequest {
    encrypted_data: String,
    iv: String,
    #[serde(default)]
    raw_data: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

pub(crate) async fn decrypt(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<DecryptRequest>,
) -> Result<Json<Value>> {
    let signed = match (&req.raw_data, &req.signature) {
        (Some(raw), Some(sig)) => Some((raw.as_str(), sig.as_str())),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidRequest(
                "raw_data and signature go together: give both or neither".into(),
            ));
        }
    };
    Ok(Json(
        state
            .auth()
            .decrypt(&caller, &req.encrypted_data, &req.iv, signed)
            .await?,
    ))
}
