//! Re-copying one collection of an online job: the recovery after its replication failed
//! (history lost) or stopped (the source collection was dropped or renamed and exists again).
//!
//! The collection is planned and copied again from a new stream start point, and a
//! reconciliation pass then removes target documents whose deletes fell in the gap. Other
//! collections keep replicating throughout.

use chrono::Utc;
use tracing::info;

use crate::jobs::{allowed_commands, transition, Command, JobState};
use crate::runtime::engine::{Engine, EngineError};
use crate::state::{CollectionState, StoreError, StreamRecord, StreamState};

/// The reason a re-copy was not started.
#[derive(Debug, thiserror::Error)]
pub enum RecopyError {
    #[error("{0}")]
    NotFound(String),
    #[error("{reason}")]
    NotAllowed {
        reason: String,
        state: JobState,
        allowed: Vec<Command>,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for RecopyError {
    fn from(e: StoreError) -> Self {
        RecopyError::Engine(EngineError::Store(e))
    }
}

/// Starts copying collection `index` of job `job_id` again.
pub async fn recopy_collection(
    engine: &Engine,
    job_id: &str,
    index: u32,
) -> Result<(), RecopyError> {
    let job = engine.store.job(job_id).await?.ok_or_else(|| {
        RecopyError::NotFound(format!(
            "no job has id {job_id}; list jobs with GET /api/jobs"
        ))
    })?;
    let collection = engine
        .store
        .collection(job_id, index)
        .await?
        .ok_or_else(|| {
            RecopyError::NotFound(format!(
                "job {} has no collection {index}; collections are numbered from 0 in the order \
                 of the job's request",
                job.value.name
            ))
        })?;
    let not_allowed = |reason: String| RecopyError::NotAllowed {
        reason,
        state: job.value.state,
        allowed: allowed_commands(job.value.lifecycle()),
    };
    // Checked before anything changes, and decided again when the job row is written.
    transition(job.value.lifecycle(), Command::Recopy).map_err(|r| not_allowed(r.reason))?;
    let stream = engine.store.stream(job_id, index).await?;
    let stream_state = stream.as_ref().map(|s| s.value.state);
    // A stream left pending on a copied collection is a re-copy that was interrupted.
    let allowed = matches!(
        stream_state,
        Some(StreamState::Failed | StreamState::Stopped)
    ) || (stream_state == Some(StreamState::Pending)
        && collection.value.state == CollectionState::Copied);
    if !allowed {
        return Err(not_allowed(format!(
            "replication of {} is {}; only a collection whose replication failed or stopped can \
             be re-copied",
            collection.value.source,
            stream_state.map_or("not started", StreamState::as_str)
        )));
    }

    reset_stream(engine, job_id, index).await?;
    engine.store.delete_collection_chunks(job_id, index).await?;
    reset_collection(engine, job_id, index).await?;
    move_job_to_copying(engine, job_id).await?;
    engine.mark_plan_queued(job_id).await?;
    engine.send_plan(job_id).await?;
    info!(job_id, collection = %collection.value.source, "collection re-copy started");
    engine.advance_job(job_id).await?;
    Ok(())
}

async fn reset_stream(engine: &Engine, job_id: &str, index: u32) -> Result<(), RecopyError> {
    loop {
        let Some(mut stream) = engine.store.stream(job_id, index).await? else {
            engine
                .store
                .insert_stream(&StreamRecord::pending(job_id, index))
                .await?;
            return Ok(());
        };
        let reconcile = &mut stream.value.reconcile;
        reconcile.pass = None;
        reconcile.requested = true;
        let s = &mut stream.value;
        s.state = StreamState::Pending;
        s.position = None;
        s.owner = None;
        s.lease_until = None;
        s.failures = 0;
        s.last_error = None;
        s.idle = false;
        s.drained_round_trips = 0;
        s.caught_up_at = None;
        s.started_at = None;
        match engine.store.replace_stream(&stream).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn reset_collection(engine: &Engine, job_id: &str, index: u32) -> Result<(), RecopyError> {
    loop {
        let Some(mut collection) = engine.store.collection(job_id, index).await? else {
            return Ok(());
        };
        let c = &mut collection.value;
        c.state = CollectionState::Pending;
        c.planned = false;
        c.chunks_total = 0;
        c.plan_checkpoint = None;
        c.plan_open_documents = 0;
        c.estimated_documents = 0;
        c.estimated_bytes = 0;
        c.started_at = None;
        c.finished_at = None;
        c.last_error = None;
        match engine.store.replace_collection(job_id, &collection).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn move_job_to_copying(engine: &Engine, job_id: &str) -> Result<(), RecopyError> {
    loop {
        let Some(mut job) = engine.store.job(job_id).await? else {
            return Ok(());
        };
        // The collection is already reset; if the job changed state meanwhile (paused, say), the
        // engine moves it back to copying when it replicates again.
        let Ok(next) = transition(job.value.lifecycle(), Command::Recopy) else {
            return Ok(());
        };
        job.value.state = next.state;
        job.value.resume_to = next.resume_to;
        job.value.updated_at = Utc::now();
        match engine.store.replace_job(&job).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
