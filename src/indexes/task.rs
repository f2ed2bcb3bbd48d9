//! The index task: builds one collection's after-copy indexes, one `createIndexes` at a time,
//! saving each index's state so a re-run skips what is built.
//!
//! The engine sends the task once every chunk of the collection is copied. A task that runs
//! out of its time budget between two builds sends its own continuation.

use std::time::Instant;

use chrono::Utc;
use tracing::{info, warn, Instrument};

use super::{build_phase, BuildPhase};
use crate::copy::task::CopyError;
use crate::jobs::JobState;
use crate::queue::IndexTask;
use crate::runtime::engine::Engine;
use crate::runtime::{MessageInfo, TaskOutcome};
use crate::state::{CollectionRecord, CollectionState, StoreError, Versioned};

/// Runs one index task message.
pub async fn run_index_task(
    engine: &Engine,
    task: &IndexTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, CopyError> {
    let span = tracing::info_span!(
        "index_task",
        job_id = %task.job_id,
        collection = task.collection
    );
    build_after_copy(engine, task, message)
        .instrument(span)
        .await
}

async fn build_after_copy(
    engine: &Engine,
    task: &IndexTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, CopyError> {
    let deadline = Instant::now() + engine.settings.task_time_budget;
    let Some(job) = engine.store.job(&task.job_id).await? else {
        return Ok(TaskOutcome::Dropped(format!(
            "job {} not found",
            task.job_id
        )));
    };
    if !matches!(job.value.state, JobState::Planning | JobState::Copying) {
        info!(
            state = job.value.state.as_str(),
            "job is not copying; index builds wait"
        );
        return Ok(TaskOutcome::Stopped);
    }
    let mut collection = match claim(engine, task, message).await? {
        Ok(collection) => collection,
        Err(reason) => return Ok(TaskOutcome::Dropped(reason)),
    };
    let target = engine
        .clients
        .client(&job.value.request.target)
        .await
        .map_err(|e| CopyError::Copy(format!("target: {e}")))?;

    let result = build_phase(
        engine,
        &target,
        &mut collection,
        BuildPhase::AfterCopy,
        Some(deadline),
    )
    .await?;
    if let Err(reason) = result {
        collection.value.state = CollectionState::Failed;
        collection.value.last_error = Some(reason);
    }
    let more = collection.value.state != CollectionState::Failed
        && collection.value.indexes.after_copy_pending();
    collection.value.indexes.build_owner = None;
    collection.value.indexes.build_lease_until = more.then(|| Utc::now() + engine.lease());
    crate::copy::plan_task::save_collection(engine, &mut collection).await?;

    if more {
        engine
            .queues
            .send_index(&task.clone(), None)
            .await
            .map_err(|e| CopyError::Engine(e.into()))?;
        info!("index builds continue in a new task");
        return Ok(TaskOutcome::Continued);
    }
    engine.advance_job(&task.job_id).await?;
    Ok(TaskOutcome::Completed)
}

/// Takes the collection's build lease for this message, or returns why the message is dropped.
async fn claim(
    engine: &Engine,
    task: &IndexTask,
    message: &MessageInfo,
) -> Result<Result<Versioned<CollectionRecord>, String>, CopyError> {
    loop {
        let Some(mut collection) = engine
            .store
            .collection(&task.job_id, task.collection)
            .await?
        else {
            return Ok(Err(format!(
                "collection {} of job {} not found",
                task.collection, task.job_id
            )));
        };
        if collection.value.state == CollectionState::Failed {
            return Ok(Err(
                "the collection failed; its indexes are not built".into()
            ));
        }
        if !collection.value.indexes.after_copy_pending() {
            return Ok(Err("no index of the collection waits to be built".into()));
        }
        let now = Utc::now();
        let indexes = &mut collection.value.indexes;
        let held_by_other = indexes
            .build_owner
            .as_deref()
            .is_some_and(|o| o != message.id)
            && indexes.build_lease_until.is_some_and(|t| t > now);
        if held_by_other {
            return Ok(Err(
                "another index task holds this collection; this message is a duplicate".into(),
            ));
        }
        indexes.build_owner = Some(message.id.clone());
        indexes.build_lease_until = Some(now + engine.lease());
        match engine
            .store
            .replace_collection(&task.job_id, &collection)
            .await
        {
            Ok(etag) => {
                collection.etag = etag;
                return Ok(Ok(collection));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends index tasks for collections whose copy is done and whose after-copy indexes wait,
/// unless a task message for them is still in flight. Called by `advance_job`.
pub async fn enqueue_builds(
    engine: &Engine,
    job_id: &str,
    collections: &[Versioned<CollectionRecord>],
    chunks: &[Versioned<crate::state::ChunkRecord>],
) -> Result<(), crate::runtime::engine::EngineError> {
    let now = Utc::now();
    for collection in collections {
        let value = &collection.value;
        let copied = value.planned
            && value.state != CollectionState::Failed
            && chunks
                .iter()
                .filter(|c| c.value.collection == value.index)
                .all(|c| c.value.state == crate::state::ChunkState::Done);
        let in_flight = value.indexes.build_lease_until.is_some_and(|t| t > now);
        if !copied || in_flight || !value.indexes.after_copy_pending() {
            continue;
        }
        let mut claimed = collection.clone();
        claimed.value.indexes.build_owner = None;
        claimed.value.indexes.build_lease_until = Some(now + engine.lease());
        match engine.store.replace_collection(job_id, &claimed).await {
            Ok(_) => {}
            // Another instance changed the row first; the next pass decides again.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
        let task = IndexTask {
            job_id: job_id.to_string(),
            collection: value.index,
        };
        engine.queues.send_index(&task, None).await?;
        info!(job_id, collection = value.index, "index builds queued");
    }
    Ok(())
}

/// Fails the collection of an index task whose message reached the poison queue.
pub async fn mark_failed(engine: &Engine, task: &IndexTask, reason: &str) {
    loop {
        let found = engine.store.collection(&task.job_id, task.collection).await;
        let Ok(Some(mut collection)) = found else {
            warn!(job_id = %task.job_id, collection = task.collection, "collection not readable; poison message dropped");
            return;
        };
        collection.value.state = CollectionState::Failed;
        collection.value.last_error = Some(reason.to_string());
        collection.value.indexes.build_owner = None;
        collection.value.indexes.build_lease_until = None;
        match engine
            .store
            .replace_collection(&task.job_id, &collection)
            .await
        {
            Ok(_) => break,
            Err(StoreError::Conflict) => continue,
            Err(e) => {
                warn!(error = %e, job_id = %task.job_id, "could not mark the collection failed");
                return;
            }
        }
    }
    if let Err(e) = engine.advance_job(&task.job_id).await {
        warn!(error = %e, job_id = %task.job_id, "could not advance the job");
    }
}
