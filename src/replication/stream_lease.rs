//! Ownership of a stream row by one queue message: claiming it, recording a failed run, and
//! handling a message the queue gave up on.

use chrono::Utc;
use tracing::{error, info, warn};

use super::errors::ReplicationError;
use super::schedule;
use crate::jobs::Mode;
use crate::queue::StreamTask;
use crate::runtime::engine::{fail_job, Engine, MAX_DEQUEUE_COUNT};
use crate::runtime::MessageInfo;
use crate::state::{JobRecord, StoreError, StreamRecord, StreamState, Versioned};

/// Takes the stream for this message, or returns why the message must be dropped (stream
/// finished, owned by another live message, or the job is not replicating).
pub(super) async fn claim(
    engine: &Engine,
    task: &StreamTask,
    message: &MessageInfo,
) -> Result<Result<(Versioned<StreamRecord>, Versioned<JobRecord>), String>, ReplicationError> {
    loop {
        let Some(job) = engine.store.job(&task.job_id).await? else {
            return Ok(Err(format!("job {} not found", task.job_id)));
        };
        let Some(mut stream) = engine.store.stream(&task.job_id, task.collection).await? else {
            return Ok(Err(format!(
                "collection {} of job {} has no stream",
                task.collection, task.job_id
            )));
        };
        if job.value.mode != Mode::Online {
            return Ok(Err(format!("job {} is not an online job", task.job_id)));
        }
        let now = Utc::now();
        let state = stream.value.state;
        let owned_by_other_live = state == StreamState::Running
            && stream.value.owner.as_deref() != Some(message.id.as_str())
            && stream.value.lease_until.is_some_and(|t| t > now);
        let settled = matches!(
            state,
            StreamState::Pending
                | StreamState::Finished
                | StreamState::Stopped
                | StreamState::Failed
        );
        if settled || owned_by_other_live {
            info!(
                state = state.as_str(),
                "stream is settled or held by another task; dropping the duplicate message"
            );
            return Ok(Err(format!(
                "the stream of collection {} is {} or held by another task",
                task.collection,
                state.as_str()
            )));
        }
        if !schedule::streams_run_in(job.value.state) {
            if state != StreamState::Waiting {
                stream.value.state = StreamState::Waiting;
                stream.value.owner = None;
                stream.value.lease_until = None;
                match engine.store.replace_stream(&stream).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
                engine.advance_job(&task.job_id).await?;
            }
            return Ok(Err(format!(
                "job {} is {}, not replicating",
                task.job_id,
                job.value.state.as_str()
            )));
        }

        stream.value.state = StreamState::Running;
        stream.value.owner = Some(message.id.clone());
        stream.value.lease_until = Some(now + engine.lease());
        stream.value.started_at.get_or_insert(now);
        match engine.store.replace_stream(&stream).await {
            Ok(etag) => {
                stream.etag = etag;
                return Ok(Ok((stream, job)));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records a failed run on the stream row; the queue delivers the message again, and after the
/// last attempt the poison handler fails the job.
pub(super) async fn record_failure(
    engine: &Engine,
    task: &StreamTask,
    message: &MessageInfo,
    reason: &str,
) {
    if message.dequeue_count >= MAX_DEQUEUE_COUNT {
        error!(
            error = reason,
            attempts = message.dequeue_count,
            "stream task failed for the last time"
        );
    } else {
        warn!(
            error = reason,
            attempt = message.dequeue_count,
            "stream task failed; the queue retries it"
        );
    }
    let lease = engine.lease();
    let result = update_stream(engine, task, |stream| {
        if matches!(stream.state, StreamState::Running | StreamState::Queued) {
            stream.state = StreamState::Queued;
            stream.lease_until = Some(Utc::now() + lease);
        }
        stream.owner = None;
        stream.failures += 1;
        stream.last_error = Some(reason.chars().take(2_000).collect());
    })
    .await;
    if let Err(e) = result {
        warn!(error = %e, "could not record the failure on the stream");
    }
}

/// Handles a stream message the queue gave up on: the stream waits at its saved position and the
/// job fails with the reason, so `resume` retries it.
pub async fn handle_poison(engine: &Engine, task: &StreamTask) -> Result<(), ReplicationError> {
    let mut last_error = None;
    update_stream(engine, task, |stream| {
        if matches!(stream.state, StreamState::Running | StreamState::Queued) {
            stream.state = StreamState::Waiting;
        }
        stream.owner = None;
        stream.lease_until = None;
        last_error = stream.last_error.clone();
    })
    .await?;
    let reason = format!(
        "replication of collection {} failed on every delivery of its task and the message was \
         moved to the poison queue (last error: {}); fix the cause, then resume the job",
        task.collection,
        last_error.as_deref().unwrap_or("none recorded")
    );
    fail_job(engine, &task.job_id, &reason).await?;
    Ok(())
}

async fn update_stream(
    engine: &Engine,
    task: &StreamTask,
    mut change: impl FnMut(&mut StreamRecord),
) -> Result<(), ReplicationError> {
    loop {
        let Some(mut stream) = engine.store.stream(&task.job_id, task.collection).await? else {
            return Ok(());
        };
        change(&mut stream.value);
        match engine.store.replace_stream(&stream).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
