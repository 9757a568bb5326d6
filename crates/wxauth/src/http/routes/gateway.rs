//! Requests under a `[[gateway]]` prefix: authenticate as every route does,
//! then hand over to `gateway::Gateway`.

use axum::extract::Request;
use axum::response::Response;

use super::super::AppState;
use super::super::extract::{ClientIp, bearer_token};
use crate::error::{Error, Result};
use crate::gateway::Identity;

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
    gateway
        .forward(
            request,
            identity.as_ref(),
            &request_id,
            ip,
            state.settings().limits.body_bytes,
        )
        .await
}
