//! The OpenAPI document, generated from the handlers' annotations: routes
//! are registered through `utoipa_axum::routes!`, which records each one in
//! the document as it adds it to the router.
//!
//! Two things the handlers cannot state are added here: the answers any
//! operation can give whatever its handler does (the server's connection
//! and head limits, the request and body timeouts, the internal error),
//! and the bounds that come from the running configuration (`limit`'s
//! maximum is `limits.page_size_max`).

use utoipa::Modify;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

use crate::config::Settings;

/// The document's fixed parts; the paths come from the router.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wxauth",
        description = "Login and user-data backend for WeChat Mini Programs. Errors are always {\"error\", \"message\", \"request_id\"}; every response carries x-request-id.",
        version = "1"
    ),
    components(schemas(super::ErrorBody)),
    tags(
        (name = "admin", description = "The operator's API under /admin/v1: a service key (Authorization: Bearer <service key>) with the route's scope; every call made with a valid key is in the audit log (GET /admin/v1/audit)."),
    ),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
            components.add_security_scheme(
                "service_key",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

fn operations(openapi: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
    })
}

fn error_answer(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
    let mut answer = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        answer = answer.header("Retry-After", retry_after_header());
    }
    RefOr::T(answer.build())
}

fn retry_after_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
        .description(Some("Seconds to wait before trying again"))
        .build()
}

/// Adds the answers every operation can give, and `Retry-After` on every
/// 429 and 503.
pub(crate) fn add_common_answers(openapi: &mut OpenApi) {
    for op in operations(openapi) {
        let has_body = op.request_body.is_some();
        let answers = &mut op.responses.responses;
        let mut add = |status: &str, description: &str, retry_after: bool| {
            answers
                .entry(status.to_owned())
                .or_insert_with(|| error_answer(description, retry_after));
        };
        add(
            "414",
            "uri_too_long: the target is longer than http.max_uri_bytes",
            false,
        );
        add(
            "431",
            "header_too_large: the headers are larger than http.max_header_bytes",
            false,
        );
        add(
            "500",
            "internal: the log has the cause, under the request id",
            false,
        );
        add(
            "503",
            "server_busy: every connection busy at http.max_connections; query_timeout: a query past limits.query_timeout_ms",
            true,
        );
        if has_body {
            add(
                "408",
                "request_timeout: the body did not arrive within http.body_timeout_ms",
                false,
            );
            add(
                "413",
                "payload_too_large: the body is larger than limits.body_bytes",
                false,
            );
        }
        for status in ["429", "503"] {
            if let Some(RefOr::T(answer)) = answers.get_mut(status) {
                answer
                    .headers
                    .entry("Retry-After".to_owned())
                    .or_insert_with(|| RefOr::T(retry_after_header()));
            }
        }
    }
}

/// Sets the bounds that the configuration decides.
pub(crate) fn fit_to_settings(openapi: &mut OpenApi, settings: &Settings) {
    let page_max = settings.limits.page_size_max;
    for op in operations(openapi) {
        for param in op.parameters.iter_mut().flatten() {
            let RefOr::T(param) = param else { continue };
            if param.name != "limit" {
                continue;
            }
            if let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut() {
                schema.maximum = Some(page_max.into());
            }
            param.description = Some(format!(
                "1 to {page_max} (limits.page_size_max; default {})",
                crate::data::documents::DEFAULT_PAGE.min(page_max)
            ));
        }
    }
}
