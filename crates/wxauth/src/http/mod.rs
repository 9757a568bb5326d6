//! The HTTP API: routes, extractors, the error mapping, and the middleware
//! every request passes (request id, tracing span, metrics, error envelope,
//! panic catcher, timeout, body limit).

mod error;
mod extract;
mod json_body;
mod openapi;
mod playground;
mod routes;
pub mod server;
mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Auth;
use crate::config::Settings;
use crate::data::Data;
pub use error::{ErrorBody, error_code, status_of};
pub use views::{SessionView, UserView};

struct Inner {
    auth: Auth,
    data: Data,
    files: crate::files::Files,
    realtime: crate::realtime::Realtime,
    pushes: crate::platform::push::PushDesk,
    subscriptions: crate::platform::subscriptions::SubscriptionBook,
    settings: Settings,
    gateways: Vec<crate::gateway::Gateway>,
    metrics: PrometheusHandle,
    openapi_json: String,
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// Wraps the rules and settings.
    pub fn new(
        auth: Auth,
        data: Data,
        files: crate::files::Files,
        realtime: crate::realtime::Realtime,
        platform: crate::platform::Platform,
        settings: Settings,
        metrics: PrometheusHandle,
    ) -> crate::Result<Self> {
        let gateways = settings
            .gateways
            .iter()
            .cloned()
            .map(crate::gateway::Gateway::new)
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                auth,
                data,
                files,
                realtime,
                pushes: platform.pushes,
                subscriptions: platform.subscriptions,
                gateways,
                metrics,
                openapi_json: {
                    let mut doc = openapi_document();
                    openapi::fit_to_settings(&mut doc, &settings);
                    doc.to_pretty_json().unwrap_or_default()
                },
                settings,
            }),
        })
    }

    /// Gateway entry `index`.
    pub(crate) fn gateway(&self, index: usize) -> Option<&crate::gateway::Gateway> {
        self.inner.gateways.get(index)
    }

    /// The rules.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// User data.
    pub fn data(&self) -> &Data {
        &self.inner.data
    }

    /// Files.
    pub fn files(&self) -> &crate::files::Files {
        &self.inner.files
    }

    /// Realtime watches.
    pub fn realtime(&self) -> &crate::realtime::Realtime {
        &self.inner.realtime
    }

    /// WeChat's message pushes.
    pub fn pushes(&self) -> &crate::platform::push::PushDesk {
        &self.inner.pushes
    }

    /// Subscribe messages.
    pub fn subscriptions(&self) -> crate::platform::subscriptions::Subscriptions<'_> {
        crate::platform::subscriptions::Subscriptions::new(
            &self.inner.subscriptions,
            &self.inner.auth,
        )
    }

    /// The content checks of pictures users upload.
    pub fn image_checks(&self) -> crate::platform::images::ImageChecks<'_> {
        crate::platform::images::ImageChecks::new(
            &self.inner.settings.content_check,
            &self.inner.auth,
            &self.inner.files,
            self.admin(),
        )
    }

    /// The content checks of what users write.
    pub fn text_checks(&self) -> crate::platform::content::TextChecks<'_> {
        crate::platform::content::TextChecks::new(
            &self.inner.settings.content_check,
            &self.inner.auth,
            self.admin(),
        )
    }

    /// The operator's rules.
    pub fn admin(&self) -> crate::admin::Admin<'_> {
        crate::admin::Admin::new(&self.inner.auth, &self.inner.data, &self.inner.files)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    fn openapi_json(&self) -> String {
        self.inner.openapi_json.clone()
    }
}

/// Request ids: UUIDv7, so they sort by time in logs.
#[derive(Clone, Copy, Default)]
struct MakeUuidV7;

impl MakeRequestId for MakeUuidV7 {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7()
            .to_string()
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

/// Whether a client's `X-Request-Id` may be used as the request's id: a
/// short token that cannot carry a log field or flood every log line.
fn fit_request_id(value: &[u8]) -> bool {
    (1..=64).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Removes a client's `X-Request-Id` that is not a plain token of at most
/// 64 characters (or that is sent more than once); the request then gets a
/// generated id.
async fn drop_unfit_request_id(mut request: Request) -> Request {
    let ids = request.headers().get_all("x-request-id");
    let mut iter = ids.iter();
    let fit = match (iter.next(), iter.next()) {
        (Some(one), None) => fit_request_id(one.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !fit {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// The admin API's routes (each behind `routes::admin::gate`).
fn admin_routes() -> OpenApiRouter<AppState> {
    use routes::admin;
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(admin::find_users))
        .routes(utoipa_axum::routes!(admin::show_user, admin::delete_user))
        .routes(utoipa_axum::routes!(admin::revoke_user))
        .routes(utoipa_axum::routes!(admin::export_user))
        .routes(utoipa_axum::routes!(
            admin::list_documents,
            admin::create_document
        ))
        .routes(utoipa_axum::routes!(
            admin::get_document,
            admin::replace_document,
            admin::delete_document
        ))
        .routes(utoipa_axum::routes!(admin::audit))
        .routes(utoipa_axum::routes!(admin::list_user_files))
        .routes(utoipa_axum::routes!(admin::delete_user_file))
        .routes(utoipa_axum::routes!(admin::send_message))
        .routes(utoipa_axum::routes!(admin::user_subscriptions))
}

/// The API's routes, each registered together with its OpenAPI entry.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(utoipa_axum::routes!(routes::session::login))
        .routes(utoipa_axum::routes!(routes::session::refresh))
        .routes(utoipa_axum::routes!(routes::session::logout))
        .routes(utoipa_axum::routes!(
            routes::me::get_me,
            routes::me::patch_me,
            routes::me::delete_me
        ))
        .routes(utoipa_axum::routes!(routes::me::export_me))
        .routes(utoipa_axum::routes!(routes::me::bind_phone))
        .routes(utoipa_axum::routes!(routes::me::decrypt))
        .routes(utoipa_axum::routes!(routes::me::report_subscriptions))
        .routes(utoipa_axum::routes!(
            routes::data::create,
            routes::data::list
        ))
        .routes(utoipa_axum::routes!(routes::data::count))
        .routes(utoipa_axum::routes!(
            routes::data::get,
            routes::data::replace,
            routes::data::delete
        ))
        .routes(utoipa_axum::routes!(
            routes::files::upload,
            routes::files::list
        ))
        .routes(utoipa_axum::routes!(
            routes::files::get,
            routes::files::delete
        ))
        .routes(utoipa_axum::routes!(routes::files::raw))
        .routes(utoipa_axum::routes!(routes::health::healthz))
        .routes(utoipa_axum::routes!(routes::health::readyz))
        .routes(utoipa_axum::routes!(routes::health::metrics))
        .routes(utoipa_axum::routes!(routes::health::openapi))
        .routes(utoipa_axum::routes!(routes::introspect::introspect))
        .routes(utoipa_axum::routes!(routes::well_known::jwks))
        .routes(utoipa_axum::routes!(
            routes::well_known::openid_configuration
        ))
}

/// The OpenAPI 3 document of the whole API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = routes().merge(admin_routes()).split_for_parts().1;
    openapi::add_common_answers(&mut doc);
    doc
}

/// The admin routes behind their gate (service key, scope, audit).
fn gated_admin_routes(state: &AppState) -> Router<AppState> {
    let (admin, _) = admin_routes().split_for_parts();
    admin.route_layer(middleware::from_fn_with_state(
        state.clone(),
        routes::admin::gate,
    ))
}

/// The router of the admin API alone, with the same middleware, for
/// `admin_listen`.
pub fn admin_router(state: AppState) -> Router {
    let routes = gated_admin_routes(&state);
    with_middleware(routes, state)
}

/// The full router with its middleware. With `admin_listen` set, the
/// admin API is left out (see [`admin_router`]).
pub fn router(state: AppState) -> Router {
    let settings = state.settings();
    let (mut router, _) = routes().split_for_parts();
    if settings.admin_listen.is_none() {
        router = router.merge(gated_admin_routes(&state));
    }
    if settings.playground_sim_url.is_some() {
        router = router.merge(playground::routes());
    }
    router = router.route("/v1/watch", axum::routing::get(routes::watch::watch));
    router = router.route(
        "/v1/wechat/push/{appid}",
        axum::routing::get(routes::wechat_push::url_check).post(routes::wechat_push::receive),
    );
    for (index, route) in settings.gateways.iter().enumerate() {
        // Everything under the prefix, and the bare prefix with and
        // without its trailing slash.
        let paths = [
            format!("{}{{*path}}", route.prefix),
            route.prefix.clone(),
            route.prefix.trim_end_matches('/').to_owned(),
        ];
        for path in paths {
            router = router.route(
                &path,
                axum::routing::any(
                    move |axum::extract::State(state): axum::extract::State<AppState>,
                          ip: extract::ClientIp,
                          request: Request| {
                        routes::gateway::forward(state, index, ip, request)
                    },
                ),
            );
        }
    }
    with_middleware(router, state)
}

/// Every request's middleware (request id, tracing, metrics, error
/// envelope, head limits, panic catcher, timeout, body limit).
fn with_middleware(router: Router<AppState>, state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let settings = state.settings();
    let timeouts = (
        Duration::from_millis(settings.http.request_timeout_ms),
        settings.files.upload_timeout,
    );
    let body_limit = settings.limits.body_bytes;
    let head_limits = (settings.http.max_uri_bytes, settings.http.max_header_bytes);
    router
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(drop_unfit_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeUuidV7))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            // Path only: never the query string or headers. ERROR level so
                            // the span (and its request_id) is enabled whenever anything is
                            // logged, even with WXAUTH_LOG=warn.
                            // Values are recorded as strings, which the text
                            // format quotes and escapes: no input can add a field.
                            tracing::error_span!(
                                "request",
                                method = metric_method(req.method()),
                                path = req.uri().path(),
                                request_id = error::request_id(req.headers()).as_str(),
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(middleware::from_fn(record_metrics))
                .layer(middleware::from_fn(error::envelope))
                .layer(middleware::from_fn_with_state(head_limits, check_head_size))
                .layer(CatchPanicLayer::new())
                .layer(middleware::from_fn_with_state(timeouts, time_limit))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
}

/// Answers 503 to a request still running after `http.request_timeout_ms`
/// (an upload: `files.upload_timeout_ms`, since a 10 MiB file over a phone
/// network takes longer; its body still stops after
/// `http.body_timeout_ms` without a byte).
async fn time_limit(
    axum::extract::State((request_timeout, upload_timeout)): axum::extract::State<(
        Duration,
        Duration,
    )>,
    request: Request,
    next: Next,
) -> Response {
    let limit =
        if request.method() == axum::http::Method::POST && request.uri().path() == "/v1/files" {
            upload_timeout
        } else {
            request_timeout
        };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Refuses request targets and header blocks over the configured sizes
/// with the JSON envelope (hyper's own, larger, limit answers a bare 431).
async fn check_head_size(
    axum::extract::State((max_uri, max_headers)): axum::extract::State<(usize, usize)>,
    request: Request,
    next: Next,
) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > max_uri {
        return crate::Error::UriTooLong(format!(
            "the request target is {uri_len} bytes; the limit is {max_uri} (http.max_uri_bytes)"
        ))
        .into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > max_headers {
        return crate::Error::HeaderTooLarge(format!(
            "the request headers are {header_bytes} bytes; the limit is {max_headers} (http.max_header_bytes)"
        ))
        .into_response();
    }
    next.run(request).await
}

/// The method as a label: the standard ones by name, anything a client
/// invents as `other`, so labels stay a small fixed set.
fn metric_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts requests and their latency by route template (never the raw
/// path, whose ids would make the label set unbounded) and bounded method.
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = metric_method(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("wxauth_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("wxauth_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Parses `bytes` as the body of every request type (what the fuzz target
/// `json_bodies` drives). Invariants: no panic; a short message; and an
/// error never depends on the string values sent (it names a path, never
/// echoes a value): the same body with every string value emptied gets the
/// same answer.
#[doc(hidden)]
pub fn parse_each_request_body(bytes: &[u8]) {
    use serde_json::Value;
    const DEPTH: usize = 32;
    fn blank(value: &mut Value) {
        match value {
            Value::String(s) => s.clear(),
            Value::Array(items) => items.iter_mut().for_each(blank),
            Value::Object(map) => map.values_mut().for_each(blank),
            _ => {}
        }
    }
    fn answer<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(), String> {
        let answer = json_body::parse::<T>(bytes, DEPTH)
            .map(|_| ())
            .map_err(|e| e.to_string());
        if let Err(message) = &answer {
            assert!(message.chars().count() < 400, "{message}");
        }
        answer
    }
    // The body as sent, and (when it is JSON) its re-serialized form beside
    // the same with every string value emptied (re-serialized both, so
    // duplicate keys, which a Value drops, do not differ).
    fn check<T: serde::de::DeserializeOwned>(bytes: &[u8], pair: Option<&(Vec<u8>, Vec<u8>)>) {
        let _ = answer::<T>(bytes);
        if let Some((canonical, blanked)) = pair {
            assert_eq!(
                answer::<T>(canonical),
                answer::<T>(blanked),
                "the answer depends on a string value"
            );
        }
    }
    let pair = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|mut v| {
            let canonical = serde_json::to_vec(&v).ok()?;
            blank(&mut v);
            Some((canonical, serde_json::to_vec(&v).ok()?))
        });
    let pair = pair.as_ref();
    check::<routes::session::LoginRequest>(bytes, pair);
    check::<routes::session::RefreshRequest>(bytes, pair);
    check::<routes::me::PatchMe>(bytes, pair);
    check::<routes::me::PhoneRequest>(bytes, pair);
    check::<routes::me::DecryptRequest>(bytes, pair);
    check::<serde_json::Value>(bytes, pair);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every admin route has a scope in `admin::scopes::ROUTE_SCOPES` (a route
    /// without one is refused to every key), and every entry is a route.
    #[test]
    fn every_admin_route_has_a_scope() {
        let doc = admin_routes().split_for_parts().1;
        let mut documented = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ] {
                if op.is_some() {
                    documented.push((method, path.as_str()));
                }
            }
        }
        documented.sort_unstable();
        let mut scoped: Vec<(&str, &str)> = crate::admin::scopes::ROUTE_SCOPES
            .iter()
            .map(|(m, p, _)| (*m, *p))
            .collect();
        scoped.sort_unstable();
        assert_eq!(documented, scoped);
    }
}
