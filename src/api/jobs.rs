//! Job routes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use tracing::info;

use super::view::{job_detail, job_summary};
use super::ApiError;
use crate::jobs::{transition, validate_request, Command, JobRequest, JobState};
use crate::runtime::engine::Engine;
use crate::state::{ChunkState, CollectionRecord, CollectionState, JobRecord, StoreError};

/// `GET /`: answers the Functions host's readiness probe and names the service.
pub async fn root() -> impl IntoResponse {
    Json(json!({ "service": "vcore-migrate", "api": "/api/jobs" }))
}

/// `GET /api/health`.
pub async fn health(State(engine): State<Engine>) -> Response {
    match engine.store.jobs().await {
        Ok(_) => {
            Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check could not read table storage");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unavailable",
                    "version": env!("CARGO_PKG_VERSION"),
                    "message": "table storage is not reachable; check AzureWebJobsStorage"
                })),
            )
                .into_response()
        }
    }
}

pub async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {}; the API has /api/jobs, /api/jobs/{{id}}, /api/jobs/{{id}}/{{command}} and /api/health",
        uri.path()
    ))
}

/// Parses a JSON body, naming the field at fault.
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalidBody",
            "the request body is empty; send a JSON job definition",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let place = if path == "." || path.is_empty() {
            "the request body".to_string()
        } else {
            format!("field {path}")
        };
        ApiError::bad_request("invalidBody", format!("{place} is invalid: {inner}"))
    })
}

/// `POST /api/jobs`.
pub async fn create_job(State(engine): State<Engine>, body: Bytes) -> Result<Response, ApiError> {
    let request: JobRequest = parse_body(&body)?;
    validate_request(&request).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    for (field, reference) in [("source", &request.source), ("target", &request.target)] {
        reference
            .resolve_setting(|name| std::env::var(name).ok())
            .map_err(|e| {
                let code = if field == "source" {
                    "invalidSource"
                } else {
                    "invalidTarget"
                };
                ApiError::bad_request(code, format!("{field}: {e}"))
            })?;
    }

    let now = Utc::now();
    let id = uuid::Uuid::new_v4().to_string();
    let job = JobRecord {
        id: id.clone(),
        name: request.name.clone(),
        mode: request.mode,
        state: JobState::Queued,
        resume_to: None,
        created_at: now,
        updated_at: now,
        finished_at: None,
        concurrency: request.options.max_parallel_chunks,
        source_kind: None,
        last_error: None,
        initial_copy_done: false,
        plan_lease_until: Some(now + engine.lease()),
        plan_owner: None,
        request: request.clone(),
    };
    let collections: Vec<CollectionRecord> = request
        .collections
        .iter()
        .enumerate()
        .map(|(i, spec)| CollectionRecord {
            job_id: id.clone(),
            index: i as u32,
            source: spec.source_namespace(),
            target: spec.target_namespace(),
            state: CollectionState::Pending,
            estimated_documents: 0,
            estimated_bytes: 0,
            chunks_total: 0,
            planned: false,
            plan_checkpoint: None,
            plan_open_documents: 0,
            started_at: None,
            finished_at: None,
            last_error: None,
        })
        .collect();
    engine.store.create_job(&job, &collections).await?;
    engine.send_plan(&id).await?;
    info!(job_id = %id, name = %job.name, mode = job.mode.as_str(), collections = collections.len(), "job created");

    let detail = load_detail(&engine, &id).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/jobs/{id}"))],
        Json(detail),
    )
        .into_response())
}

/// `GET /api/jobs`.
pub async fn list_jobs(State(engine): State<Engine>) -> Result<Response, ApiError> {
    let mut jobs = engine.store.jobs().await?;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.value.created_at));
    let mut rows = Vec::with_capacity(jobs.len());
    for job in jobs {
        let collections = engine.store.collections(&job.value.id).await?;
        let chunks = engine.store.chunks_of_job(&job.value.id).await?;
        rows.push(job_summary(&job_detail(&job.value, &collections, &chunks)));
    }
    Ok(Json(json!({ "jobs": rows })).into_response())
}

/// `GET /api/jobs/{id}`.
pub async fn get_job(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(load_detail(&engine, &id).await?).into_response())
}

async fn load_detail(engine: &Engine, id: &str) -> Result<super::view::JobDetail, ApiError> {
    let job = engine.store.job(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no job has id {id}; list jobs with GET /api/jobs"))
    })?;
    let collections = engine.store.collections(id).await?;
    let chunks = engine.store.chunks_of_job(id).await?;
    Ok(job_detail(&job.value, &collections, &chunks))
}

/// `POST /api/jobs/{id}/{command}`.
pub async fn run_command(
    State(engine): State<Engine>,
    Path((id, command_name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let command = Command::parse(&command_name).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown command {command_name:?}; use pause, resume, cancel or cutover"
        ))
    })?;

    loop {
        let mut job = engine.store.job(&id).await?.ok_or_else(|| {
            ApiError::not_found(format!("no job has id {id}; list jobs with GET /api/jobs"))
        })?;
        let before = job.value.state;
        let next = transition(job.value.lifecycle(), command).map_err(|rejection| {
            let allowed: Vec<&str> = crate::jobs::allowed_commands(job.value.lifecycle())
                .into_iter()
                .map(Command::as_str)
                .collect();
            ApiError::new(
                StatusCode::CONFLICT,
                "commandNotAllowed",
                format!(
                    "cannot {} job {}: {} (state {}, allowed commands: {})",
                    command.as_str(),
                    job.value.name,
                    rejection.reason,
                    before.as_str(),
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            )
            .with_details(json!({ "state": before, "allowedCommands": allowed }))
        })?;
        job.value.state = next.state;
        job.value.resume_to = next.resume_to;
        job.value.updated_at = Utc::now();
        if command == Command::Resume {
            job.value.last_error = None;
        }
        match engine.store.replace_job(&job).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
        info!(job_id = %id, command = command.as_str(), from = before.as_str(), to = next.state.as_str(), "job command accepted");

        if command == Command::Resume {
            requeue_failed_work(&engine, &id).await?;
        }
        engine.advance_job(&id).await?;
        let detail = load_detail(&engine, &id).await?;
        return Ok((StatusCode::ACCEPTED, Json(detail)).into_response());
    }
}

/// After `resume`: failed chunks wait to be copied again, failed unplanned collections are
/// planned again, and planning restarts if anything is left to plan.
async fn requeue_failed_work(engine: &Engine, job_id: &str) -> Result<(), ApiError> {
    for mut chunk in engine.store.chunks_of_job(job_id).await? {
        if chunk.value.state == ChunkState::Failed {
            chunk.value.state = ChunkState::Waiting;
            chunk.value.owner = None;
            chunk.value.lease_until = None;
            match engine.store.replace_chunk(&chunk).await {
                Ok(_) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut replan = false;
    for mut collection in engine.store.collections(job_id).await? {
        if collection.value.state == CollectionState::Failed {
            collection.value.state = if collection.value.planned {
                CollectionState::Copying
            } else {
                CollectionState::Pending
            };
            collection.value.last_error = None;
            match engine.store.replace_collection(job_id, &collection).await {
                Ok(_) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        replan |= !collection.value.planned;
    }
    if replan {
        engine.mark_plan_queued(job_id).await?;
        engine.send_plan(job_id).await?;
    }
    Ok(())
}
