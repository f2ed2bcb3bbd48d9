//! Scheduling of stream tasks, called by the engine when it advances a job and by the
//! scheduler pass.

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::jobs::JobState;
use crate::queue::StreamTask;
use crate::runtime::engine::{Engine, EngineError};
use crate::state::{
    ChunkRecord, ChunkState, CollectionRecord, CollectionState, JobRecord, StoreError,
    StreamRecord, StreamState, Versioned,
};

/// Job states in which stream tasks run.
pub fn streams_run_in(state: JobState) -> bool {
    matches!(
        state,
        JobState::Copying | JobState::Replicating | JobState::CuttingOver
    )
}

/// Stream tasks running now, which pause and cancel wait for.
pub fn running(streams: &[Versioned<StreamRecord>]) -> usize {
    streams
        .iter()
        .filter(|s| s.value.state == StreamState::Running)
        .count()
}

/// Whether the collection's copy is complete, so its stream may start: replaying events while
/// copy tasks still write could put back a document whose delete was already applied.
pub fn copy_done(collection: &CollectionRecord, chunks: &[Versioned<ChunkRecord>]) -> bool {
    match collection.state {
        CollectionState::Copied => true,
        CollectionState::Copying => {
            collection.planned
                && chunks
                    .iter()
                    .filter(|c| c.value.collection == collection.index)
                    .all(|c| c.value.state == ChunkState::Done)
        }
        _ => false,
    }
}

/// Whether a collection waits to be planned (a re-copy), which the job must be copying for.
pub fn needs_planning(collections: &[Versioned<CollectionRecord>]) -> bool {
    collections
        .iter()
        .any(|c| !c.value.planned && c.value.state != CollectionState::Failed)
}

/// Sends a stream task for every waiting stream whose collection is copied.
pub async fn enqueue_streams(
    engine: &Engine,
    job: &JobRecord,
    collections: &[Versioned<CollectionRecord>],
    chunks: &[Versioned<ChunkRecord>],
    streams: &[Versioned<StreamRecord>],
) -> Result<(), EngineError> {
    if !streams_run_in(job.state) {
        return Ok(());
    }
    for stream in streams {
        // A stream finished for a cutover that did not complete (the job failed and was resumed)
        // replicates again.
        let finished_early =
            stream.value.state == StreamState::Finished && job.state != JobState::CuttingOver;
        let waiting = stream.value.state == StreamState::Waiting || finished_early;
        if !waiting || stream.value.position.is_none() {
            continue;
        }
        let copied = collections
            .iter()
            .find(|c| c.value.index == stream.value.collection)
            .is_some_and(|c| copy_done(&c.value, chunks));
        if !copied {
            continue;
        }
        let mut claimed = stream.clone();
        claimed.value.state = StreamState::Queued;
        claimed.value.owner = None;
        claimed.value.lease_until = Some(Utc::now() + engine.lease());
        match engine.store.replace_stream(&claimed).await {
            Ok(_) => {}
            // Another instance changed the row first; it decides for this stream.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
        let task = StreamTask {
            job_id: job.id.clone(),
            collection: stream.value.collection,
        };
        engine.queues.send_stream(&task, None).await?;
    }
    Ok(())
}

/// Returns streams whose task was lost (lease expired) to waiting, so they are queued again.
pub async fn release_expired(
    engine: &Engine,
    job_id: &str,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    for stream in engine.store.streams(job_id).await? {
        let expired = matches!(
            stream.value.state,
            StreamState::Queued | StreamState::Running
        ) && stream.value.lease_until.is_none_or(|t| t < now);
        if !expired {
            continue;
        }
        warn!(
            job_id,
            collection = stream.value.collection,
            state = stream.value.state.as_str(),
            "stream lease expired; its task was lost, so the stream waits to be queued again"
        );
        let mut released = stream.clone();
        released.value.state = StreamState::Waiting;
        released.value.owner = None;
        released.value.lease_until = None;
        match engine.store.replace_stream(&released).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
