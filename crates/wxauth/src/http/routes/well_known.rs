//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`: what a
//! service needs to verify access tokens itself, with the public keys only.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::super::AppState;

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
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "identity",
    responses((status = 200, description = "issuer, jwks_uri, introspection_endpoint and the signing algorithm", body = Object)))]
pub(crate) async fn openid_configuration(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<Value> {
    let base = match &state.settings().public_url {
        Some(url) => url.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                })
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let tokens = state.auth().tokens();
    Json(json!({
        "issuer": tokens.issuer(),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{base}/v1/introspect"),
        "id_token_signing_alg_values_supported": [tokens.signing_alg()],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }))
}
