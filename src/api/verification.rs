//! Verification routes: starting a run and reading its report.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use tracing::info;

use super::body::parse_body;
use super::jobs::command_rejected;
use super::ApiError;
use crate::jobs::{transition, Command, VerificationMode};
use crate::runtime::engine::Engine;
use crate::state::{JobRecord, RunTrigger, StoreError, Versioned};
use crate::verify::report::{report, VerificationReport};

/// `POST /api/jobs/{id}/verify` body; the body itself may be omitted.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VerifyRequest {
    /// `full` or `counts`; unset means the job's `verification` option, or `full` when that
    /// option is `off`.
    #[serde(default)]
    mode: Option<VerificationMode>,
}

/// `POST /api/jobs/{id}/verify`: starts a verification run.
#[utoipa::path(
    post,
    path = "/api/jobs/{id}/verify",
    tag = "jobs",
    operation_id = "verifyJob",
    summary = "Verify the target against the source",
    description = "Starts a verification run: every chunk's documents are compared on both sides \
        by count and by a digest of their BSON bytes (mode `full`, the default) or by count only \
        (mode `counts`). The body is optional: `{\"mode\": \"full\" | \"counts\"}`.",
    params(("id" = String, Path, description = "The job id.")),
    responses(
        (status = 202, description = "The run started; the body is the verification report.", content_type = "application/json"),
        (status = 400, description = "The body is invalid.", body = super::error::ErrorBody),
        (status = 401, description = "The key is missing or wrong.", body = super::error::ErrorBody),
        (status = 404, description = "No job has this id.", body = super::error::ErrorBody),
        (status = 409, description = "The job's state does not allow verification now.", body = super::error::ErrorBody)
    )
)]
pub async fn verify_job(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: VerifyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        VerifyRequest::default()
    } else {
        parse_body(&body)?
    };
    if request.mode == Some(VerificationMode::Off) {
        return Err(ApiError::bad_request(
            "invalidBody",
            "mode off cannot start a verification; use full or counts",
        ));
    }

    loop {
        let mut job = find_job(&engine, &id).await?;
        let before = job.value.state;
        let next = transition(job.value.lifecycle(), Command::Verify)
            .map_err(|rejection| command_rejected(&job.value, Command::Verify, &rejection))?;
        let mode = request
            .mode
            .unwrap_or(job.value.request.options.verification);
        job.value.state = next.state;
        job.value.resume_to = next.resume_to;
        job.value.updated_at = Utc::now();
        if next.state != before {
            job.value.finished_at = None;
            job.value.last_error = None;
        }
        crate::verify::begin_run(&mut job.value, mode, RunTrigger::Request);
        match engine.store.replace_job(&job).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
        let run = job.value.verification.as_ref().map_or(0, |r| r.number);
        info!(job_id = %id, run, from = before.as_str(), to = next.state.as_str(), "verification requested");

        crate::verify::advance_verification(&engine, &id).await?;
        let report = load_report(&engine, &id).await?;
        return Ok((StatusCode::ACCEPTED, Json(report)).into_response());
    }
}

/// `GET /api/jobs/{id}/verification`: the latest run, per collection and per chunk.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}/verification",
    tag = "jobs",
    operation_id = "getVerification",
    summary = "Get the latest verification report",
    description = "Returns the latest verification run per collection and per chunk: counts, \
        whether the digests match, and examples of missing, extra and different documents by `_id`.",
    params(("id" = String, Path, description = "The job id.")),
    responses(
        (status = 200, description = "The verification report.", content_type = "application/json"),
        (status = 401, description = "The key is missing or wrong.", body = super::error::ErrorBody),
        (status = 404, description = "No job has this id.", body = super::error::ErrorBody)
    )
)]
pub async fn get_verification(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(load_report(&engine, &id).await?).into_response())
}

async fn find_job(engine: &Engine, id: &str) -> Result<Versioned<JobRecord>, ApiError> {
    engine.store.job(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no job has id {id}; list jobs with GET /api/jobs"))
    })
}

async fn load_report(engine: &Engine, id: &str) -> Result<VerificationReport, ApiError> {
    let job = find_job(engine, id).await?;
    let collections = engine.store.collections(id).await?;
    let units = engine.store.verify_units_of_job(id).await?;
    Ok(report(&job.value, &collections, &units))
}
