//! Job routes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use tracing::info;

use super::body::parse_body;
use super::error::ErrorBody;
use super::view::{job_detail, job_summary, JobDetail, JobList};
use super::ApiError;
use crate::jobs::{transition, validate_request, Command, JobRequest, JobState};
use crate::replication::recopy::RecopyError;
use crate::runtime::engine::Engine;
use crate::state::{
    ChunkState, CollectionRecord, CollectionState, CutoverMark, JobRecord, StoreError,
};

/// `GET /`: answers the Functions host's readiness probe and names the service.
pub async fn root() -> impl IntoResponse {
    Json(json!({
        "service": "vcore-migrate",
        "api": "/api/jobs",
        "openapi": "/api/openapi.json",
        "monitor": "/api/monitor"
    }))
}

/// `GET /api/health`.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "service",
    operation_id = "getHealth",
    summary = "Check the service's health",
    description = "Reports whether the service can read its Table Storage. It needs no key in standalone mode.",
    security(()),
    responses(
        (status = 200, description = "Table Storage is reachable.", content_type = "application/json",
            example = json!({"status": "ok", "version": "0.1.0"})),
        (status = 503, description = "Table Storage is not reachable.", content_type = "application/json",
            example = json!({"status": "unavailable", "version": "0.1.0", "message": "table storage is not reachable; check AzureWebJobsStorage"}))
    )
)]
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
        "no route {}; the API has /api/jobs, /api/jobs/validate, /api/jobs/{{id}}, \
         /api/jobs/{{id}}/{{command}}, /api/jobs/{{id}}/verification, \
         /api/jobs/{{id}}/collections/{{index}}/recopy, /api/health, /api/openapi.json and \
         /api/monitor",
        uri.path()
    ))
}

/// Rejects a method that a known route does not serve, with the API's error shape.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "methodNotAllowed",
        format!(
            "{method} is not allowed on {}; GET /api/openapi.json lists each route's methods",
            uri.path()
        ),
    )
}

/// `POST /api/jobs`.
#[utoipa::path(
    post,
    path = "/api/jobs",
    tag = "jobs",
    operation_id = "createJob",
    summary = "Create a migration job",
    description = "Validates the job definition, stores the job and starts planning it. The source and \
        target name where the connection strings live (an app setting or a Key Vault secret), never \
        the strings themselves.",
    request_body(content = JobRequest, description = "The job definition.", example = json!({
        "name": "orders-to-vcore",
        "mode": "offline",
        "source": {"setting": "SOURCE_URI"},
        "target": {"vaultUri": "https://contoso-kv.vault.azure.net/", "secretName": "target-uri"},
        "collections": [{"database": "shop", "collection": "orders"}],
        "options": {"maxParallelChunks": 4, "callbackUrl": "https://hooks.contoso.com/migrations"}
    })),
    responses(
        (status = 201, description = "The job was created; `Location` names it.", body = JobDetail,
            headers(("Location" = String, description = "The job's URL."))),
        (status = 400, description = "The definition is invalid; the message names the field.", body = ErrorBody),
        (status = 401, description = "The key is missing or wrong.", body = ErrorBody),
        (status = 409, description = "A job with this name exists (`nameTaken`).", body = ErrorBody)
    )
)]
pub async fn create_job(State(engine): State<Engine>, body: Bytes) -> Result<Response, ApiError> {
    let request: JobRequest = parse_body(&body)?;
    validate_request(&request).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    // Checks of the request itself come before preflight, which contacts the servers.
    if let Some(url) = &request.options.callback_url {
        engine.events.check_callback(url).await.map_err(|e| {
            ApiError::bad_request("invalidCallbackUrl", format!("options.callbackUrl: {e}"))
        })?;
    }
    super::preflight::require_preflight(&engine, &request).await?;

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
        event_delivery_error: None,
        event_delivery_failures: 0,
        verification: None,
        cutover: None,
        cutover_ready_at: None,
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
            indexes: Default::default(),
        })
        .collect();
    engine.store.create_job(&job, &collections).await?;
    engine
        .events
        .publish(crate::events::EventType::Created, &job, None, None);
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
#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "jobs",
    operation_id = "listJobs",
    summary = "List jobs",
    description = "Returns every job, newest first, with its state and overall progress.",
    responses(
        (status = 200, description = "The jobs.", body = JobList),
        (status = 401, description = "The key is missing or wrong.", body = ErrorBody)
    )
)]
pub async fn list_jobs(State(engine): State<Engine>) -> Result<Response, ApiError> {
    let mut jobs = engine.store.jobs().await?;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.value.created_at));
    let mut rows = Vec::with_capacity(jobs.len());
    for job in jobs {
        let collections = engine.store.collections(&job.value.id).await?;
        let chunks = engine.store.chunks_of_job(&job.value.id).await?;
        let streams = engine.store.streams(&job.value.id).await?;
        rows.push(job_summary(&job_detail(
            &job.value,
            &collections,
            &chunks,
            &streams,
        )));
    }
    Ok(Json(JobList { jobs: rows }).into_response())
}

/// `GET /api/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "jobs",
    operation_id = "getJob",
    summary = "Get a job",
    description = "Returns the job with per-collection progress and the commands its state allows.",
    params(("id" = String, Path, description = "The job id returned by createJob.")),
    responses(
        (status = 200, description = "The job.", body = JobDetail),
        (status = 401, description = "The key is missing or wrong.", body = ErrorBody),
        (status = 404, description = "No job has this id.", body = ErrorBody)
    )
)]
pub async fn get_job(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(load_detail(&engine, &id).await?).into_response())
}

pub(super) async fn load_detail(
    engine: &Engine,
    id: &str,
) -> Result<super::view::JobDetail, ApiError> {
    let job = engine.store.job(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no job has id {id}; list jobs with GET /api/jobs"))
    })?;
    let collections = engine.store.collections(id).await?;
    let chunks = engine.store.chunks_of_job(id).await?;
    let streams = engine.store.streams(id).await?;
    let mut detail = job_detail(&job.value, &collections, &chunks, &streams);
    if job.value.verification.is_some() {
        let units = engine.store.verify_units_of_job(id).await?;
        detail.verification = crate::verify::report::summary(&job.value, &units);
    }
    Ok(detail)
}

/// `POST /api/jobs/{id}/{command}`.
#[utoipa::path(
    post,
    path = "/api/jobs/{id}/{command}",
    tag = "jobs",
    operation_id = "runJobCommand",
    summary = "Pause, resume, cancel or cut over a job",
    description = "`pause` stops new work at the next checkpoint; `resume` continues a paused job, \
        retries the failed work of a failed job, or copies again the chunks a failed verification \
        found and verifies again; `cancel` ends the job for good; `cutover` (online jobs) drains \
        replication, then verifies the target as `options.verification` says (the job is \
        `verifying`) and completes the job, or leaves it `verificationFailed` with the \
        differences. The job's `allowedCommands` lists what its state allows.",
    params(
        ("id" = String, Path, description = "The job id."),
        ("command" = Command, Path, description = "The command to run.")
    ),
    responses(
        (status = 202, description = "The command was accepted; the body is the job after the change.", body = JobDetail),
        (status = 401, description = "The key is missing or wrong.", body = ErrorBody),
        (status = 404, description = "No job has this id, or the command is unknown.", body = ErrorBody),
        (status = 409, description = "The job's state does not allow the command (`commandNotAllowed`); the body adds `state` and `allowedCommands`.", body = ErrorBody,
            example = json!({"code": "commandNotAllowed", "message": "cannot resume job orders: the job is not paused or failed (state copying, allowed commands: pause, cancel)", "state": "copying", "allowedCommands": ["pause", "cancel"]}))
    )
)]
pub async fn run_command(
    State(engine): State<Engine>,
    Path((id, command_name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let command = Command::parse(&command_name)
        .filter(|c| *c != Command::Recopy)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown command {command_name:?}; use pause, resume, cancel, cutover or verify, or \
                 POST /api/jobs/{{id}}/collections/{{index}}/recopy to copy one collection again"
            ))
        })?;

    loop {
        let mut job = engine.store.job(&id).await?.ok_or_else(|| {
            ApiError::not_found(format!("no job has id {id}; list jobs with GET /api/jobs"))
        })?;
        let before = job.value.state;
        let next = transition(job.value.lifecycle(), command)
            .map_err(|rejection| command_rejected(&job.value, command, &rejection))?;
        if command == Command::Cutover {
            job.value.cutover = Some(cutover_mark(&engine, &job.value).await?);
        }
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
        engine.events.state_changed(&job.value, before);

        if command == Command::Resume {
            if before == JobState::VerificationFailed {
                crate::verify::requeue_affected_chunks(&engine, &id).await?;
            }
            requeue_failed_work(&engine, &id).await?;
        }
        engine.advance_job(&id).await?;
        let detail = load_detail(&engine, &id).await?;
        return Ok((StatusCode::ACCEPTED, Json(detail)).into_response());
    }
}

/// Builds the 409 for a command the lifecycle table rejects, naming the state and the allowed
/// commands.
pub(super) fn command_rejected(
    job: &JobRecord,
    command: Command,
    rejection: &crate::jobs::Rejection,
) -> ApiError {
    let allowed: Vec<&str> = crate::jobs::allowed_commands(job.lifecycle())
        .into_iter()
        .map(Command::as_str)
        .collect();
    ApiError::new(
        StatusCode::CONFLICT,
        "commandNotAllowed",
        format!(
            "cannot {} job {}: {} (state {}, allowed commands: {})",
            command.as_str(),
            job.name,
            rejection.reason,
            job.state.as_str(),
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        ),
    )
    .with_details(json!({ "state": job.state, "allowedCommands": allowed }))
}

/// Checks what the lifecycle table cannot see (failed streams) and records the source's current
/// operation time, which every stream must pass before the job completes.
async fn cutover_mark(engine: &Engine, job: &JobRecord) -> Result<CutoverMark, ApiError> {
    let collections = engine.store.collections(&job.id).await?;
    let streams = engine.store.streams(&job.id).await?;
    let blockers = crate::replication::cutover::blockers(&collections, &streams);
    if !blockers.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "commandNotAllowed",
            format!("cannot cut over job {}: {}", job.name, blockers.join("; ")),
        )
        .with_details(json!({ "state": job.state, "cutoverBlockers": blockers })));
    }
    crate::replication::cutover::read_mark(engine, job)
        .await
        .map_err(|reason| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sourceUnavailable",
                format!(
                    "cannot cut over job {}: the source's current operation time could not be \
                     read ({reason}); retry when the source is reachable",
                    job.name
                ),
            )
        })
}

/// `POST /api/jobs/{id}/collections/{index}/recopy`.
#[utoipa::path(
    post,
    path = "/api/jobs/{id}/collections/{index}/recopy",
    tag = "jobs",
    operation_id = "recopyCollection",
    summary = "Copy one collection of an online job again",
    description = "Starts the collection over: a new change-stream start point, a new snapshot \
        copy, then replication. Use it after the collection's replication failed, for example \
        when its resume token left the source's history.",
    params(
        ("id" = String, Path, description = "The job id."),
        ("index" = u32, Path, description = "The collection's position in the job's `collections`.")
    ),
    responses(
        (status = 202, description = "The collection is being copied again.", body = JobDetail),
        (status = 401, description = "The key is missing or wrong.", body = ErrorBody),
        (status = 404, description = "No job or collection has this id or index.", body = ErrorBody),
        (status = 409, description = "The job's state does not allow a re-copy now.", body = ErrorBody)
    )
)]
pub async fn recopy_collection(
    State(engine): State<Engine>,
    Path((id, index)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    match crate::replication::recopy::recopy_collection(&engine, &id, index).await {
        Ok(()) => {}
        Err(RecopyError::NotFound(message)) => return Err(ApiError::not_found(message)),
        Err(RecopyError::NotAllowed {
            reason,
            state,
            allowed,
        }) => {
            let allowed: Vec<&str> = allowed.into_iter().map(Command::as_str).collect();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "commandNotAllowed",
                format!(
                    "cannot re-copy collection {index} of job {id}: {reason} (state {})",
                    state.as_str()
                ),
            )
            .with_details(json!({ "state": state, "allowedCommands": allowed })));
        }
        Err(RecopyError::Engine(e)) => return Err(e.into()),
    }
    let detail = load_detail(&engine, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(detail)).into_response())
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
            collection.value.indexes.retry_failed();
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
