//! The OpenAPI 3.1 document of the job API, generated with utoipa from the handlers'
//! `#[utoipa::path]` annotations and the request and response types, and served at
//! `GET /api/openapi.json` for Logic Apps custom connectors and other clients.
//!
//! A new route needs a `#[utoipa::path]` annotation on its handler and an entry in
//! [`ApiDoc`]'s `paths(...)`. The `openapi` integration test fails for any route of the router
//! that the document lacks.

use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Security scheme names; the `security(...)` list of [`ApiDoc`] spells them out again because
/// the derive takes only literals.
pub const FUNCTION_KEY_HEADER: &str = "functionKeyHeader";
pub const FUNCTION_KEY_QUERY: &str = "functionKeyQuery";
pub const API_KEY_HEADER: &str = "apiKeyHeader";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vcore-migrate",
        description = "Migrates MongoDB collections from Azure Cosmos DB for MongoDB (RU) or any \
            MongoDB to Azure Cosmos DB for MongoDB (vCore). Create a job, follow its progress, and \
            pause, resume, cancel or cut it over. On Azure Functions, send a function key in the \
            x-functions-key header or the code query parameter; in standalone mode, send the \
            VCM_API_KEY value in the x-api-key header."
    ),
    paths(
        super::jobs::health,
        super::jobs::create_job,
        super::preflight::validate_job,
        super::verification::verify_job,
        super::verification::get_verification,
        super::jobs::list_jobs,
        super::jobs::get_job,
        super::jobs::run_command,
        super::jobs::recopy_collection,
        openapi_json,
        super::monitor::page,
    ),
    components(schemas(super::error::ErrorBody, crate::events::CloudEvent)),
    modifiers(&SecuritySchemes),
    security(
        ("functionKeyHeader" = []),
        ("functionKeyQuery" = []),
        ("apiKeyHeader" = [])
    ),
    tags(
        (name = "jobs", description = "Create, follow and steer migration jobs."),
        (name = "service", description = "Health, this document and the monitor page.")
    )
)]
pub struct ApiDoc;

/// Adds the three ways to authenticate; any one of them is enough.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                FUNCTION_KEY_HEADER,
                ApiKey::Header(ApiKeyValue::with_description(
                    "x-functions-key",
                    "An Azure Functions function or host key (Functions deployment).",
                )),
            ),
            (
                FUNCTION_KEY_QUERY,
                ApiKey::Query(ApiKeyValue::with_description(
                    "code",
                    "An Azure Functions function or host key as a query parameter (Functions deployment).",
                )),
            ),
            (
                API_KEY_HEADER,
                ApiKey::Header(ApiKeyValue::with_description(
                    "x-api-key",
                    "The VCM_API_KEY value (standalone mode).",
                )),
            ),
        ];
        for (name, key) in schemes {
            components.add_security_scheme(name, SecurityScheme::ApiKey(key));
        }
    }
}

/// `GET /api/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "service",
    operation_id = "getOpenApiDocument",
    summary = "Get this OpenAPI document",
    description = "Returns the OpenAPI document of the API; it needs no key in standalone mode.",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json"))
)]
pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
