//! Requests under a `[[gateway]]` prefix: authenticate as every route does,
//! then hand over to `gateway::Gateway`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::header;
use axum::response::Response;

use super::super::AppState;
use super::super::extract::{ClientIp, bearer_token};
use crate::error::{Error, Result};
use crate::gateway::{Identity, Origin};

/// Forwards to gateway entry `index`.
pub(crate) async fn forward(
    state: AppState,
    index: usize,
    ClientIp(ip): ClientIp,
    request: Request,
) -> Result<Response> {
    let Some(gateway) = state.gateway(index) else {
        return Err(Error::internal("no such gateway entry"));
    };
    let bearer = bearer_token(request.headers())?.map(str::to_owned);
    let identity = match bearer {
        Some(token) => {
            // Exactly as wxauth's own routes: signature, expiry, revocation.
            let caller = state.auth().authenticate(&token).await?;
            let user = state.auth().user(&caller).await?;
            Some(Identity {
                user_id: caller.user_id,
                appid: caller.appid,
                openid: user.openid,
                unionid: user.unionid,
                session_id: caller.session_id,
            })
        }
        None if gateway.route().auth_required => {
            return Err(Error::Unauthorized(
                "this route needs Authorization: Bearer <access_token>",
            ));
        }
        None => None,
    };
    let request_id = super::super::error::request_id(request.headers());
    let origin = origin(&state, ip, &request);
    gateway
        .forward(
            request,
            identity.as_ref(),
            &request_id,
            &origin,
            state.settings().limits.body_bytes,
        )
        .await
}

/// Where the request came from, as wxauth knows it: the scheme a trusted
/// proxy reported (else `http`, which is what wxauth itself speaks), and
/// the host of `public_url` (else the `Host` the client asked for, when it
/// is a plain host name).
fn origin(state: &AppState, client_ip: std::net::IpAddr, request: &Request) -> Origin {
    let settings = state.settings();
    let peer_trusted = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .is_some_and(|peer| settings.trusted_proxies.iter().any(|n| n.contains(&peer)));
    let reported = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.rsplit(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
    };
    let proto = match (peer_trusted, reported("x-forwarded-proto").as_deref()) {
        (true, Some("https")) => "https",
        _ => "http",
    };
    let host = match &settings.public_url {
        Some(url) => url
            .split("://")
            .nth(1)
            .map(|rest| rest.split('/').next().unwrap_or("").to_owned()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .map(str::to_owned),
    };
    Origin {
        client_ip,
        proto,
        host,
    }
}
