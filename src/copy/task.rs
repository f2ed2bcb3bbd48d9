//! The copy task: copies one chunk from its checkpoint until the chunk ends or the time budget
//! runs out, then continues through the queue.
//!
//! Order of effects, fixed so a crash anywhere replays work and never skips it: write a batch to
//! the target, then save the checkpoint with an ETag check, then (at the end) complete the
//! message. The chunk row names the queue message that owns it; a duplicate message finds the
//! chunk owned by another live message and is dropped.

use std::time::{Duration, Instant};

use bson::RawDocumentBuf;
use chrono::Utc;
use tracing::{info, warn, Instrument};

use super::range::ChunkRange;
use super::reader::spawn_reader;
use super::watch::JobWatcher;
use super::writer::{write_batch, WriteError};
use super::{decode_document, decode_value, encode_value};
use crate::jobs::JobState;
use crate::queue::CopyTask;
use crate::runtime::engine::{Engine, EngineError, MAX_DEQUEUE_COUNT};
use crate::runtime::{MessageInfo, TaskOutcome};
use crate::state::{ChunkRecord, ChunkState, StoreError, Versioned};

/// Interval between checkpoint saves of a running copy; each save also renews its lease.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// A copy task that could not finish; the message is retried by the queue.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Copy(String),
}

impl From<mongodb::error::Error> for CopyError {
    fn from(e: mongodb::error::Error) -> Self {
        CopyError::Copy(crate::mongo::describe(&e))
    }
}

impl From<StoreError> for CopyError {
    fn from(e: StoreError) -> Self {
        CopyError::Engine(EngineError::Store(e))
    }
}

/// Runs one copy task message.
pub async fn run_copy_task(
    engine: &Engine,
    task: &CopyTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, CopyError> {
    let span = tracing::info_span!(
        "copy_task",
        job_id = %task.job_id,
        collection = task.collection,
        chunk = task.chunk
    );
    async {
        let result = copy_chunk(engine, task, message).await;
        if let Err(error) = &result {
            record_failure(engine, task, message, &error.to_string()).await;
        }
        result
    }
    .instrument(span)
    .await
}

async fn copy_chunk(
    engine: &Engine,
    task: &CopyTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, CopyError> {
    let mut chunk = match claim(engine, task, message).await? {
        Ok(chunk) => chunk,
        Err(reason) => return Ok(TaskOutcome::Dropped(reason)),
    };
    let Some(job) = engine.store.job(&task.job_id).await? else {
        return Ok(TaskOutcome::Dropped(format!(
            "job {} not found",
            task.job_id
        )));
    };
    let Some(collection) = engine
        .store
        .collection(&task.job_id, task.collection)
        .await?
    else {
        return Err(CopyError::Copy(format!(
            "collection {} of job {} is missing from the state tables",
            task.collection, task.job_id
        )));
    };
    let request = &job.value.request;
    let options = &request.options;

    let range_doc = decode_document(&chunk.value.range)
        .ok_or_else(|| CopyError::Copy("the chunk's stored range is unreadable".into()))?;
    let range = ChunkRange::from_document(&range_doc)
        .ok_or_else(|| CopyError::Copy("the chunk's stored range is unreadable".into()))?;
    let checkpoint = chunk.value.checkpoint.as_deref().and_then(decode_value);

    let (source_client, target_client) = engine
        .clients
        .source_and_target(request)
        .await
        .map_err(CopyError::Copy)?;
    let source = source_client
        .database(&collection.value.source.database)
        .collection::<RawDocumentBuf>(&collection.value.source.collection);
    let target = target_client
        .database(&collection.value.target.database)
        .collection::<RawDocumentBuf>(&collection.value.target.collection);

    let started = Instant::now();
    let deadline = started + engine.settings.task_time_budget;
    let mut batches = spawn_reader(source, range, checkpoint, options.batch_size);
    let mut last_save = Instant::now();
    let watcher = JobWatcher::start(engine, &task.job_id, copies);
    let mut throttled = 0u32;
    let mut copied = 0u64;

    info!(
        resumed = chunk.value.checkpoint.is_some(),
        "copy task started"
    );
    loop {
        // A pause or cancel also ends a wait on a throttled read or write. The batch in hand is
        // then not checkpointed, so the resumed task writes it again and finds the duplicates.
        let batch = tokio::select! {
            biased;
            batch = batches.recv() => batch,
            () = watcher.stopped() => return stop_for_job_state(engine, &mut chunk).await,
        };
        let Some(batch) = batch else {
            break;
        };
        let batch = batch.map_err(|e| CopyError::Copy(e.0))?;
        throttled += batch.throttled;
        let count = batch.docs.len() as u64;
        let written = tokio::select! {
            biased;
            written = write_batch(&target, batch.docs, deadline) => written,
            () = watcher.stopped() => return stop_for_job_state(engine, &mut chunk).await,
        };
        let outcome = match written {
            Ok(outcome) => outcome,
            Err(WriteError::DeadlineReached) => {
                // Nothing of this batch is checkpointed; the continuation writes it again and
                // duplicates count as copied.
                return continue_later(engine, &mut chunk, throttled).await;
            }
            Err(e) => return Err(CopyError::Copy(e.to_string())),
        };
        throttled += outcome.throttled;
        chunk.value.throttled += u64::from(batch.throttled + outcome.throttled);
        copied += count;
        chunk.value.checkpoint = Some(encode_value(&batch.last_id));
        chunk.value.documents_copied += count;
        chunk.value.bytes_copied += batch.bytes;

        if last_save.elapsed() >= CHECKPOINT_INTERVAL {
            save(engine, &mut chunk).await?;
            last_save = Instant::now();
        }
        // Pause and cancel take effect at the next batch boundary once the watcher has seen
        // them; `stop_for_job_state` saves the checkpoint of the batch just written.
        if watcher.stop_requested() {
            return stop_for_job_state(engine, &mut chunk).await;
        }
        if Instant::now() >= deadline {
            return continue_later(engine, &mut chunk, throttled).await;
        }
    }

    chunk.value.state = ChunkState::Done;
    chunk.value.owner = None;
    chunk.value.lease_until = None;
    chunk.value.finished_at = Some(Utc::now());
    chunk.value.last_error = None;
    save(engine, &mut chunk).await?;
    info!(
        documents = chunk.value.documents_copied,
        this_run = copied,
        seconds = started.elapsed().as_secs_f64(),
        "chunk copied"
    );
    adapt_concurrency(engine, &task.job_id, throttled).await?;
    engine.advance_job(&task.job_id).await?;
    Ok(TaskOutcome::Completed)
}

/// Takes ownership of the chunk for this message, or returns `None` when the message must be
/// dropped (chunk finished, owned by another live message, or the job is not copying).
async fn claim(
    engine: &Engine,
    task: &CopyTask,
    message: &MessageInfo,
) -> Result<Result<Versioned<ChunkRecord>, String>, CopyError> {
    loop {
        let Some(mut chunk) = engine
            .store
            .chunk(&task.job_id, task.collection, task.chunk)
            .await?
        else {
            warn!("chunk not found; dropping the message");
            let what = match engine.store.job(&task.job_id).await? {
                Some(_) => format!("chunk {} of collection {}", task.chunk, task.collection),
                None => format!("job {}", task.job_id),
            };
            return Ok(Err(format!("{what} not found")));
        };
        let now = Utc::now();
        let copying = job_is_copying(engine, &task.job_id).await?;
        let state = chunk.value.state;
        let owned_by_other_live = state == ChunkState::Running
            && chunk.value.owner.as_deref() != Some(message.id.as_str())
            && chunk.value.lease_until.is_some_and(|t| t > now);

        if matches!(state, ChunkState::Done | ChunkState::Failed) || owned_by_other_live {
            info!(
                state = state.as_str(),
                "chunk is finished or held by another task; dropping the duplicate message"
            );
            return Ok(Err(format!(
                "chunk {} is {} or held by another task",
                task.chunk,
                state.as_str()
            )));
        }
        if !copying {
            if state != ChunkState::Waiting {
                chunk.value.state = ChunkState::Waiting;
                chunk.value.owner = None;
                chunk.value.lease_until = None;
                match engine.store.replace_chunk(&chunk).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
                engine.advance_job(&task.job_id).await?;
            }
            info!("job is not copying; the chunk waits for resume");
            return Ok(Err(format!("job {} is not copying", task.job_id)));
        }

        chunk.value.state = ChunkState::Running;
        chunk.value.owner = Some(message.id.clone());
        chunk.value.lease_until = Some(now + engine.lease());
        chunk.value.started_at.get_or_insert(now);
        match engine.store.replace_chunk(&chunk).await {
            Ok(etag) => {
                chunk.etag = etag;
                return Ok(Ok(chunk));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Returns whether the job lets chunks be copied now: while planning or copying, or during an
/// online job's cutover. A cutover copies again the chunks that its failed verification found.
async fn job_is_copying(engine: &Engine, job_id: &str) -> Result<bool, CopyError> {
    let job = engine.store.job(job_id).await?;
    Ok(job.is_some_and(|j| copies(j.value.state)))
}

/// Returns whether a job in `state` copies chunks.
fn copies(state: JobState) -> bool {
    matches!(
        state,
        JobState::Planning | JobState::Copying | JobState::CuttingOver
    )
}

/// Saves the chunk row with its ETag and renews the lease. A conflict means another task took
/// the chunk over after this one's lease expired, so this one must stop writing.
async fn save(engine: &Engine, chunk: &mut Versioned<ChunkRecord>) -> Result<(), CopyError> {
    if chunk.value.state == ChunkState::Running {
        chunk.value.lease_until = Some(Utc::now() + engine.lease());
    }
    match engine.store.replace_chunk(chunk).await {
        Ok(etag) => {
            chunk.etag = etag;
            Ok(())
        }
        Err(StoreError::Conflict) => Err(CopyError::Copy(
            "another task took over this chunk after its lease expired; this task stopped".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn continue_later(
    engine: &Engine,
    chunk: &mut Versioned<ChunkRecord>,
    throttled: u32,
) -> Result<TaskOutcome, CopyError> {
    chunk.value.state = ChunkState::Queued;
    chunk.value.owner = None;
    chunk.value.lease_until = Some(Utc::now() + engine.lease());
    save(engine, chunk).await?;
    let task = CopyTask {
        job_id: chunk.value.job_id.clone(),
        collection: chunk.value.collection,
        chunk: chunk.value.index,
    };
    engine
        .queues
        .send_copy(&task, None)
        .await
        .map_err(EngineError::from)?;
    adapt_concurrency(engine, &chunk.value.job_id, throttled).await?;
    info!(
        documents = chunk.value.documents_copied,
        "time budget used; the chunk continues in a new task"
    );
    Ok(TaskOutcome::Continued)
}

async fn stop_for_job_state(
    engine: &Engine,
    chunk: &mut Versioned<ChunkRecord>,
) -> Result<TaskOutcome, CopyError> {
    chunk.value.state = ChunkState::Waiting;
    chunk.value.owner = None;
    chunk.value.lease_until = None;
    save(engine, chunk).await?;
    info!(
        documents = chunk.value.documents_copied,
        "job paused or cancelled; chunk stopped at its checkpoint"
    );
    engine.advance_job(&chunk.value.job_id).await?;
    Ok(TaskOutcome::Stopped)
}

/// Halves the job's concurrency after throttling and raises it by one after a clean run, within
/// 1 and the job's `maxParallelChunks`.
pub(crate) async fn adapt_concurrency(
    engine: &Engine,
    job_id: &str,
    throttled: u32,
) -> Result<(), CopyError> {
    loop {
        let Some(mut job) = engine.store.job(job_id).await? else {
            return Ok(());
        };
        let max = job.value.request.options.max_parallel_chunks.max(1);
        let current = job.value.concurrency.clamp(1, max);
        let next = if throttled > 0 {
            (current / 2).max(1)
        } else {
            (current + 1).min(max)
        };
        if next == job.value.concurrency {
            return Ok(());
        }
        job.value.concurrency = next;
        match engine.store.replace_job(&job).await {
            Ok(_) => {
                if throttled > 0 {
                    warn!(
                        job_id,
                        concurrency = next,
                        throttled,
                        "source or target throttled; fewer chunks run at once"
                    );
                }
                return Ok(());
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records a failed run on the chunk; on the last attempt the queue allows, marks the chunk
/// failed so the job shows why.
async fn record_failure(engine: &Engine, task: &CopyTask, message: &MessageInfo, reason: &str) {
    let last_attempt = message.dequeue_count >= MAX_DEQUEUE_COUNT;
    if last_attempt {
        tracing::error!(
            error = reason,
            attempts = message.dequeue_count,
            "copy task failed for the last time; the chunk is marked failed"
        );
    } else {
        warn!(
            error = reason,
            attempt = message.dequeue_count,
            "copy task failed; the queue retries it"
        );
    }
    if let Err(e) = mark_chunk_failed(engine, task, reason, last_attempt).await {
        warn!(error = %e, "could not record the failure on the chunk");
    }
}

/// Stores `reason` on the chunk and, when `final_failure`, marks it failed and advances the job.
pub async fn mark_chunk_failed(
    engine: &Engine,
    task: &CopyTask,
    reason: &str,
    final_failure: bool,
) -> Result<(), CopyError> {
    loop {
        let Some(mut chunk) = engine
            .store
            .chunk(&task.job_id, task.collection, task.chunk)
            .await?
        else {
            return Ok(());
        };
        if chunk.value.state == ChunkState::Done {
            return Ok(());
        }
        // A chunk already marked failed keeps the error that failed it; a later poison-queue
        // notice for the same message adds nothing.
        if final_failure && chunk.value.state == ChunkState::Failed {
            return Ok(());
        }
        chunk.value.failures += 1;
        let reason = match (&chunk.value.last_error, final_failure) {
            (Some(previous), true) if !reason.contains(previous.as_str()) => {
                format!("{reason}; last error: {previous}")
            }
            _ => reason.to_string(),
        };
        chunk.value.last_error = Some(reason.chars().take(2_000).collect());
        chunk.value.owner = None;
        if final_failure {
            chunk.value.state = ChunkState::Failed;
            chunk.value.lease_until = None;
        } else {
            // The queue redelivers the message; hold the chunk for it.
            chunk.value.state = ChunkState::Queued;
            chunk.value.lease_until = Some(Utc::now() + engine.redelivery_lease());
        }
        match engine.store.replace_chunk(&chunk).await {
            Ok(_) => break,
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if final_failure {
        engine.advance_job(&task.job_id).await?;
    }
    Ok(())
}
