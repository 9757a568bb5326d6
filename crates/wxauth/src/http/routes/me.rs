//! `GET/PATCH /v1/me`, `POST /v1/me/phone`, `POST /v1/me/decrypt`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::super::extract::ApiJson;
use super::super::{AppState, ErrorBody};
use crate::admin::UserSummary;
use crate::auth::{Caller, PhoneNumber};
use crate::data::profile;
use crate::error::{Error, Result};
use crate::vocab::Target;

/// The caller's user.
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserSummary),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn get_me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UserSummary>> {
    Ok(Json(state.auth().me(&caller).await?.into()))
}

/// A profile patch: at most `profile::MAX_FIELDS` fields, names of 1 to
/// `profile::MAX_KEY` characters. (The whole profile's size,
/// `limits.profile_bytes`, is checked after the merge: 413.)
fn profile_patch_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(profile::MAX_FIELDS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(profile::MAX_KEY)),
        ))
        .build()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchMe {
    /// Fields to set; `null` removes a field.
    #[schema(schema_with = profile_patch_schema)]
    profile: Value,
}

/// Merge fields into the caller's profile. `avatar_file` (a file id) sets
/// `avatar_url` to that file's stable URL: one of the caller's own public
/// avatars or images.
#[utoipa::path(patch, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = PatchMe,
    responses(
        (status = 200, description = "The updated user", body = UserSummary),
        (status = 400, description = "invalid_request (also: avatar_file not a public avatar or image of the caller's)", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found: avatar_file names no file of the caller's", body = ErrorBody),
        (status = 409, description = "limit_exceeded: the merged profile would hold more than 64 fields", body = ErrorBody),
        (status = 413, description = "payload_too_large: the body, or the merged profile past limits.profile_bytes", body = ErrorBody),
        (status = 422, description = "content_rejected: WeChat's content check refused the nickname (field and label in the body)", body = ErrorBody),
        (status = 503, description = "upstream_unavailable: WeChat's content check gave no verdict ([content_check] on_unavailable = \"refuse\")", body = ErrorBody),
    ))]
pub(crate) async fn patch_me(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PatchMe>,
) -> Result<Json<UserSummary>> {
    let Value::Object(patch) = req.profile else {
        return Err(Error::InvalidRequest(
            "`profile` must be a JSON object".into(),
        ));
    };
    let mut patch: Map<String, Value> = patch;
    // `avatar_file`: one of the caller's own public avatars or images,
    // stored as its (stable) URL in `avatar_url`.
    if let Some(file) = patch.remove("avatar_file") {
        let Value::String(id) = file else {
            return Err(Error::InvalidRequest(
                "profile.avatar_file must be a file id (from POST /v1/files)".into(),
            ));
        };
        let url = state.files().avatar_url(caller.owner(), &id).await?;
        patch.insert("avatar_url".into(), Value::String(url));
    }
    let checks = state.text_checks();
    let flags = checks.profile(&caller, &patch).await?;
    state.data().update_profile(caller.owner(), patch).await?;
    checks
        .record(&caller, Target::User(caller.user_id.clone()), flags)
        .await?;
    Ok(Json(state.auth().me(&caller).await?.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PhoneRequest {
    /// The code from the phone-number button's event.
    #[schema(min_length = 1, max_length = 256)]
    code: String,
}

/// Bind the phone number behind a code from the phone-number button.
#[utoipa::path(post, path = "/v1/me/phone", tag = "me", security(("bearer" = [])), request_body = PhoneRequest,
    responses(
        (status = 200, description = "The bound number", body = PhoneNumber),
        (status = 400, description = "invalid_request or invalid_code", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 502, description = "upstream_error", body = ErrorBody),
        (status = 503, description = "upstream_unavailable", body = ErrorBody),
    ))]
pub(crate) async fn bind_phone(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PhoneRequest>,
) -> Result<Json<PhoneNumber>> {
    Ok(Json(state.auth().bind_phone(&caller, &req.code).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecryptRequest {
    /// Base64 of the ciphertext (a non-empty multiple of 16 bytes).
    #[schema(min_length = 1)]
    encrypted_data: String,
    /// Base64 of 16 bytes.
    #[schema(min_length = 1)]
    iv: String,
    #[serde(default)]
    raw_data: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

/// Decrypt WeChat's `encryptedData` with the user's session_key.
///
/// The watermark appid is checked; `raw_data` and `signature`, when given,
/// are checked first. A stale session_key is a 400 `decrypt_failed`.
#[utoipa::path(post, path = "/v1/me/decrypt", tag = "me", security(("bearer" = [])), request_body = DecryptRequest,
    responses(
        (status = 200, description = "The decrypted JSON", body = Object),
        (status = 400, description = "invalid_request or decrypt_failed", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
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

/// Everything wxauth holds about the caller, as one JSON download: the
/// profile, the bound phone, sessions (without tokens) and every document
/// in every collection. Never the session_key or a token.
#[utoipa::path(get, path = "/v1/me/export", tag = "me", security(("bearer" = [])),
    responses(
        (status = 200, description = "The export (Content-Disposition: attachment), streamed", body = crate::admin::UserExport),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: limits.exports_at_once exports are already streaming", body = ErrorBody),
    ))]
pub(crate) async fn export_me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::response::Response> {
    // The account must still exist: a deleted user's token is a 401 here.
    state.auth().user(&caller).await?;
    let export = state.admin().export(&caller.user_id).await?;
    Ok(super::admin::export_response(export))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteMe {
    /// Exactly `delete my account`.
    #[schema(example = "delete my account", pattern = "^delete my account$")]
    confirm: String,
}

/// Delete the caller's account and everything held about them: the user,
/// sessions, documents, idempotency records and sealed secrets are deleted
/// (not flagged). Every token of theirs stops working on every instance;
/// a later login with the same openid creates a new user. The audit log
/// keeps only that a deletion happened, and the user id.
#[utoipa::path(delete, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = DeleteMe,
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "invalid_request: confirm is not \"delete my account\"", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn delete_me(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<DeleteMe>,
) -> Result<axum::http::StatusCode> {
    if body.confirm != crate::admin::DELETE_CONFIRMATION {
        return Err(Error::InvalidRequest(format!(
            "confirm must be exactly {:?}",
            crate::admin::DELETE_CONFIRMATION
        )));
    }
    state.auth().user(&caller).await?;
    state
        .admin()
        .delete_user(
            crate::vocab::Actor::User(caller.user_id.clone()),
            "DELETE /v1/me",
            &caller.user_id,
        )
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// What `wx.requestSubscribeMessage` resolved with: `errMsg`, and each
/// template id's answer. (Its schema only: the handler reads the object.)
pub(crate) struct SubscribeReport;

impl utoipa::PartialSchema for SubscribeReport {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "wx.requestSubscribeMessage's result as it is: errMsg (ignored) and up to 20 template ids, each accept, reject, ban or filter",
            ))
            .property("errMsg", ObjectBuilder::new().schema_type(Type::String))
            .additional_properties(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["accept", "reject", "ban", "filter"])),
            ))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^(errMsg|[A-Za-z0-9_-]{1,128})$")),
            ))
            .max_properties(Some(20))
            .into()
    }
}

impl utoipa::ToSchema for SubscribeReport {}

/// How many template answers were recorded.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SubscriptionsRecorded {
    /// Templates answered.
    recorded: usize,
}

/// Report what `wx.requestSubscribeMessage` answered: the object it
/// resolved with, as it is (`{"TEMPLATE_ID": "accept", …, "errMsg": …}`).
/// Recorded as the caller's consent, marked client-reported; WeChat's
/// own push of the same answer (when message push is configured) is
/// counted once with it.
#[utoipa::path(post, path = "/v1/me/subscriptions", tag = "me", security(("bearer" = [])),
    request_body = SubscribeReport,
    responses(
        (status = 200, description = "Recorded", body = SubscriptionsRecorded),
        (status = 400, description = "invalid_request: more than 20 templates, a bad template id or answer, not an object", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn report_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(result): ApiJson<Value>,
) -> Result<Json<SubscriptionsRecorded>> {
    let Value::Object(result) = result else {
        return Err(Error::InvalidRequest(
            "the body must be the object wx.requestSubscribeMessage resolved with".into(),
        ));
    };
    let recorded = state
        .subscriptions()
        .client_reported(&caller, &result)
        .await?;
    Ok(Json(SubscriptionsRecorded { recorded }))
}
