//! `POST /api/jobs/validate`, and the preflight gate of `POST /api/jobs`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::info;

use super::body::parse_body;
use super::ApiError;
use crate::jobs::{validate_request, JobRequest};
use crate::preflight::{run_preflight, PreflightContext, PreflightReport};
use crate::runtime::engine::Engine;

/// `POST /api/jobs/validate`: runs the preflight checks for a job request and returns the report
/// with 200, whether or not a check failed. A malformed request gets the same 400 errors as
/// `POST /api/jobs`.
#[utoipa::path(
    post,
    path = "/api/jobs/validate",
    tag = "jobs",
    operation_id = "validateJob",
    summary = "Check a job definition before creating it",
    description = "Runs the preflight checks that job creation runs: the secrets can be read, the \
        connection strings parse and authenticate, the servers answer and are supported, the source \
        collections exist and the target namespaces are empty or allowed to hold data. Returns every \
        check with its status and message, and the estimated size.",
    request_body(content = crate::jobs::JobRequest, description = "The job definition to check."),
    responses(
        (status = 200, description = "The report; `ok` is false when a check failed.", body = crate::preflight::PreflightReport),
        (status = 400, description = "The definition is invalid; the message names the field.", body = super::error::ErrorBody),
        (status = 401, description = "The key is missing or wrong.", body = super::error::ErrorBody)
    )
)]
pub async fn validate_job(State(engine): State<Engine>, body: Bytes) -> Result<Response, ApiError> {
    let request: JobRequest = parse_body(&body)?;
    validate_request(&request).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    let report = preflight(&engine, &request).await;
    Ok(Json(report).into_response())
}

/// Runs the preflight checks before a job is created and rejects the request when one failed.
///
/// An unreadable secret or an invalid connection string is a bad reference, reported as
/// `invalidSource` or `invalidTarget` (400); any other failure is `preflightFailed` (422). Both
/// carry every check in `checks`.
pub async fn require_preflight(
    engine: &Engine,
    request: &JobRequest,
) -> Result<PreflightReport, ApiError> {
    let report = preflight(engine, request).await;
    let Some(first) = report.failures().next() else {
        return Ok(report);
    };
    let failed = report.failures().count();
    let (status, code, mut message) = match first.name.as_str() {
        "source.secret" | "source.connectionString" => (
            StatusCode::BAD_REQUEST,
            "invalidSource",
            format!("source: {}", first.message),
        ),
        "target.secret" | "target.connectionString" => (
            StatusCode::BAD_REQUEST,
            "invalidTarget",
            format!("target: {}", first.message),
        ),
        name => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "preflightFailed",
            format!("{name}: {}", first.message),
        ),
    };
    if failed > 1 {
        message.push_str(&format!(
            " ({} more failed checks are listed in checks; POST /api/jobs/validate returns the same report)",
            failed - 1
        ));
    }
    Err(ApiError::new(status, code, message).with_details(json!({ "checks": report.checks })))
}

async fn preflight(engine: &Engine, request: &JobRequest) -> PreflightReport {
    let report = run_preflight(&PreflightContext::from_engine(engine), request).await;
    let failed: Vec<&str> = report.failures().map(|c| c.name.as_str()).collect();
    info!(
        name = %request.name,
        ok = report.ok,
        failed = %failed.join(","),
        "preflight finished"
    );
    report
}
