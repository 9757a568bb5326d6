//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`: what a
//! service needs to verify access tokens itself, with the public keys only.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::super::AppState;
use crate::error::{Error, Result};

/// The public keys that verify access tokens (JWK Set, RFC 7517).
///
/// Ed25519 keys (`kty: OKP`, `alg: EdDSA`) with their `kid`; during a
/// rotation the old key stays listed until its tokens have expired. HS256
/// keys are secrets and never listed.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "{\"keys\": [JWK, …]}", body = Object)))]
pub(crate) async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(json!({ "keys": state.auth().tokens().jwks() })),
    )
}

/// Discovery: the issuer and where its keys are (OpenID Connect Discovery
/// fields that token verifiers read).
///
/// The URLs in it come from `public_url`, or else from `listen` when that
/// is a specific address: never from the request's `Host`, which anyone can
/// set (a verifier told to fetch keys from a host of the attacker's choice
/// would trust the attacker's tokens). With neither (listening on
/// `0.0.0.0` or `::` without `public_url`) it is a 404 saying to set
/// `public_url`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "identity",
    responses((status = 200, description = "issuer, jwks_uri, introspection_endpoint and the signing algorithm", body = Object),
        (status = 404, description = "not_found: neither public_url nor a specific listen address is configured", body = crate::http::ErrorBody)))]
pub(crate) async fn openid_configuration(State(state): State<AppState>) -> Result<Json<Value>> {
    let settings = state.settings();
    let base = settings.reachable_url().ok_or_else(|| {
        Error::NotFound(
            "discovery needs public_url (the URL clients reach this service at); \
             it is not set and listen is not a specific address"
                .into(),
        )
    })?;
    let tokens = state.auth().tokens();
    Ok(Json(json!({
        "issuer": tokens.issuer(),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{base}/v1/introspect"),
        "id_token_signing_alg_values_supported": [tokens.signing_alg()],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    })))
}
