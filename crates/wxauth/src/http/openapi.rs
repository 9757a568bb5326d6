//! The OpenAPI document, generated from the handlers' annotations: routes
//! are registered through `utoipa_axum::routes!`, which records each one in
//! the document as it adds it to the router.

use utoipa::Modify;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The document's fixed parts; the paths come from the router.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wxauth",
        description = "Login and user-data backend for WeChat Mini Programs. Errors are always {\"error\", \"message\", \"request_id\"}.",
        version = "1"
    ),
    components(schemas(super::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}
