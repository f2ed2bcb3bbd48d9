//! The plan task: estimates each collection, creates its target collection and writes its chunk
//! rows, time-boxed and checkpointed like a copy task.

use std::time::Instant;

use bson::{doc, Document};
use chrono::Utc;
use mongodb::Client;
use tracing::{info, warn, Instrument};

use super::planner::{plan_chunks, PlanCursor, PlanProgress, PlannedChunk};
use super::range::ChunkRange;
use super::watch::JobWatcher;
use super::{encode_document, task::CopyError};
use crate::jobs::model::ExistingTarget;
use crate::jobs::{JobState, Mode, SourceKind};
use crate::mongo::detect_source_kind;
use crate::queue::PlanTask;
use crate::replication::start_point::{record_start_point, StartPointError};
use crate::runtime::engine::Engine;
use crate::runtime::{MessageInfo, TaskOutcome};
use crate::state::{
    ChunkRecord, ChunkState, CollectionRecord, CollectionState, StoreError, Versioned,
};

/// Runs one plan task message.
pub async fn run_plan_task(
    engine: &Engine,
    task: &PlanTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, CopyError> {
    let span = tracing::info_span!("plan_task", job_id = %task.job_id);
    plan_job(engine, task, message).instrument(span).await
}

async fn plan_job(
    engine: &Engine,
    task: &PlanTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, CopyError> {
    let deadline = Instant::now() + engine.settings.task_time_budget;
    let job = match claim_planning(engine, &task.job_id, message).await? {
        Ok(job) => job,
        Err(reason) => return Ok(TaskOutcome::Dropped(reason)),
    };
    let _lease = PlanLeaseKeeper::start(engine, &task.job_id, &message.id);
    let bounds = PlanBounds {
        deadline,
        watcher: JobWatcher::start(engine, &task.job_id, plans),
    };
    let request = job.value.request.clone();

    let (source, target) = engine
        .clients
        .source_and_target(&request)
        .await
        .map_err(CopyError::Copy)?;

    let source_kind = match job.value.source_kind {
        Some(kind) => kind,
        None => {
            let kind = match request.options.source_kind {
                SourceKind::Auto => {
                    let first = &request.collections[0].database;
                    detect_source_kind(&source, first).await
                }
                forced => forced,
            };
            update_job(engine, &task.job_id, |j| j.source_kind = Some(kind)).await?;
            info!(source_kind = ?kind, "source kind decided");
            kind
        }
    };

    estimate_pending(engine, &source, &task.job_id).await?;
    for collection in engine.store.collections(&task.job_id).await? {
        if collection.value.planned || collection.value.state == CollectionState::Failed {
            continue;
        }
        let namespace = collection.value.source.to_string();
        match plan_collection(
            engine,
            &source,
            &target,
            &job.value.request,
            source_kind,
            collection,
            &bounds,
        )
        .instrument(tracing::info_span!("collection", collection = %namespace))
        .await?
        {
            PlanStep::Done => {}
            PlanStep::OutOfTime => {
                release_planning(engine, &task.job_id, true).await?;
                engine.send_plan(&task.job_id).await?;
                info!("planning continues in a new task");
                return Ok(TaskOutcome::Continued);
            }
            PlanStep::Stopped => {
                // After resume the job is planning with no plan task, so the scheduler sends a new one.
                release_planning(engine, &task.job_id, false).await?;
                engine.advance_job(&task.job_id).await?;
                info!("planning stopped for a pause or cancel; it continues after resume");
                return Ok(TaskOutcome::Stopped);
            }
        }
        engine.advance_job(&task.job_id).await?;
    }

    release_planning(engine, &task.job_id, false).await?;
    engine.advance_job(&task.job_id).await?;
    info!("planning finished");
    Ok(TaskOutcome::Completed)
}

/// Records a size estimate for every collection not yet planned or estimated, before the first
/// one is planned. So the job's progress is a share of its whole size from the start, not only
/// of the collections planned so far.
async fn estimate_pending(engine: &Engine, source: &Client, job_id: &str) -> Result<(), CopyError> {
    for mut collection in engine.store.collections(job_id).await? {
        let record = &collection.value;
        let unestimated = record.estimated_documents == 0 && record.estimated_bytes == 0;
        if record.state != CollectionState::Pending || record.planned || !unestimated {
            continue;
        }
        let (documents, bytes) =
            estimate(source, &record.source.database, &record.source.collection).await;
        if documents == 0 && bytes == 0 {
            continue;
        }
        collection.value.estimated_documents = documents;
        collection.value.estimated_bytes = bytes;
        save_collection(engine, &mut collection).await?;
    }
    Ok(())
}

enum PlanStep {
    Done,
    OutOfTime,
    /// The job is pausing or cancelling; planning waits at its checkpoint.
    Stopped,
}

/// Returns whether a job in `state` plans: it is not pausing, paused, cancelling or ended.
fn plans(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Planning | JobState::Copying
    )
}

/// The limits of one plan task: its time budget, and the job leaving the states that plan.
struct PlanBounds {
    deadline: Instant,
    watcher: JobWatcher,
}

async fn plan_collection(
    engine: &Engine,
    source: &Client,
    target: &Client,
    request: &crate::jobs::JobRequest,
    source_kind: SourceKind,
    mut collection: Versioned<CollectionRecord>,
    bounds: &PlanBounds,
) -> Result<PlanStep, CopyError> {
    let src = collection.value.source.clone();
    let dst = collection.value.target.clone();

    if collection.value.state == CollectionState::Pending {
        let exists = source
            .database(&src.database)
            .list_collection_names()
            .filter(doc! { "name": &src.collection })
            .await
            .map_err(|e| {
                CopyError::Copy(format!(
                    "listing collections of {} failed: {}",
                    src.database,
                    crate::mongo::describe(&e)
                ))
            })?;
        if exists.is_empty() {
            let reason = format!(
                "source collection {src} does not exist; check the database and collection names"
            );
            fail_collection(engine, &mut collection, &reason).await?;
            return Ok(PlanStep::Done);
        }

        let (documents, bytes) = estimate(source, &src.database, &src.collection).await;
        ensure_target_collection(target, &dst.database, &dst.collection).await?;
        if request.options.existing_target == ExistingTarget::Fail {
            let present = target
                .database(&dst.database)
                .collection::<Document>(&dst.collection)
                .estimated_document_count()
                .await
                .unwrap_or(0);
            if present > 0 {
                let reason = format!(
                    "target collection {dst} already holds {present} documents and the job's \
                     existingTarget option is fail; empty the target or set existingTarget to merge"
                );
                fail_collection(engine, &mut collection, &reason).await?;
                return Ok(PlanStep::Done);
            }
        }
        let prepared = crate::indexes::prepare_collection(
            engine,
            source,
            target,
            request,
            source_kind,
            &mut collection,
        )
        .await?;
        if let Err(reason) = prepared {
            fail_collection(engine, &mut collection, &reason).await?;
            return Ok(PlanStep::Done);
        }
        if request.mode == Mode::Online {
            // The stream's start point is saved before any of the collection is read, so every
            // write made during the copy is replayed after it.
            match record_start_point(engine, source, source_kind, &collection.value).await {
                Ok(()) => {}
                Err(StartPointError::Unsupported(reason)) => {
                    fail_collection(engine, &mut collection, &reason).await?;
                    return Ok(PlanStep::Done);
                }
                Err(StartPointError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(CopyError::Copy(e.to_string())),
            }
        }
        collection.value.state = CollectionState::Planning;
        collection.value.estimated_documents = documents;
        collection.value.estimated_bytes = bytes;
        collection.value.started_at = Some(Utc::now());
        save_collection(engine, &mut collection).await?;
        info!(documents, bytes, "planning collection");
    }

    adopt_unrecorded_chunks(engine, &mut collection).await?;
    if collection.value.planned {
        info!(chunks = collection.value.chunks_total, "collection planned");
        return Ok(PlanStep::Done);
    }
    let resume = collection
        .value
        .plan_checkpoint
        .as_deref()
        .and_then(PlanCursor::decode);
    let source_ids = source
        .database(&src.database)
        .collection::<Document>(&src.collection);

    let engine_ref = engine;
    // The callback saves the collection row after each chunk; a mutex (never held across an
    // await) lets it replace the row with the newer ETag.
    let collection_cell = std::sync::Mutex::new(collection);
    // A pause or cancel stops planning between chunks or during a source query, so planning
    // stops reading the source as the copy does.
    let progress = plan_chunks(
        &source_ids,
        request.options.chunk_documents,
        resume,
        bounds.deadline,
        bounds.watcher.stopped(),
        |chunk: PlannedChunk| {
            let collection_cell = &collection_cell;
            async move {
                let snapshot = lock(collection_cell).clone();
                let saved = store_chunk(engine_ref, snapshot, chunk).await?;
                *lock(collection_cell) = saved;
                Ok::<(), CopyError>(())
            }
        },
    )
    .await?;
    let mut collection = collection_cell
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

    match progress {
        PlanProgress::Suspended(cursor) => {
            collection.value.plan_checkpoint = Some(cursor.encode());
            save_collection(engine, &mut collection).await?;
            if bounds.watcher.stop_requested() {
                Ok(PlanStep::Stopped)
            } else {
                Ok(PlanStep::OutOfTime)
            }
        }
        PlanProgress::Finished => {
            // The last chunk's row write usually ended the plan already.
            if !collection.value.planned {
                finish_plan(&mut collection.value);
                save_collection(engine, &mut collection).await?;
            }
            info!(chunks = collection.value.chunks_total, "collection planned");
            Ok(PlanStep::Done)
        }
    }
}

/// Adopts the chunk rows that an earlier attempt wrote but never recorded in the collection row,
/// because it crashed or its collection row write failed between the two writes. Planning then
/// goes on after the last of them. Boundaries planned again from the old checkpoint could differ
/// from the stored rows if the source changed in between, and leave a gap or an overlap.
async fn adopt_unrecorded_chunks(
    engine: &Engine,
    collection: &mut Versioned<CollectionRecord>,
) -> Result<(), CopyError> {
    let job_id = collection.value.job_id.clone();
    let mut last = None;
    while let Some(row) = engine
        .store
        .chunk(
            &job_id,
            collection.value.index,
            collection.value.chunks_total,
        )
        .await?
    {
        collection.value.chunks_total += 1;
        last = Some(row.value);
    }
    let Some(last) = last else {
        return Ok(());
    };
    let range = super::decode_document(&last.range)
        .and_then(|d| ChunkRange::from_document(&d))
        .ok_or_else(|| {
            CopyError::Copy(format!(
                "the stored range of chunk {} is unreadable; cancel the job and create it again",
                last.index
            ))
        })?;
    match PlanCursor::after(&range) {
        Some(next) => collection.value.plan_checkpoint = Some(next.encode()),
        None => finish_plan(&mut collection.value),
    }
    warn!(
        chunks = collection.value.chunks_total,
        "found chunk rows an earlier plan attempt did not record; planning goes on after them"
    );
    save_collection(engine, collection).await
}

/// Marks a collection's chunks as all written; a collection without any is already copied.
fn finish_plan(collection: &mut CollectionRecord) {
    collection.planned = true;
    collection.plan_checkpoint = None;
    collection.state = CollectionState::Copying;
    if collection.chunks_total == 0 {
        collection.state = CollectionState::Copied;
        collection.finished_at = Some(Utc::now());
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes a closed chunk's row, then moves the collection's checkpoint past it. When the second
/// write never happens, the next attempt adopts the row (see `adopt_unrecorded_chunks`).
async fn store_chunk(
    engine: &Engine,
    mut collection: Versioned<CollectionRecord>,
    chunk: PlannedChunk,
) -> Result<Versioned<CollectionRecord>, CopyError> {
    let record = ChunkRecord {
        job_id: collection.value.job_id.clone(),
        collection: collection.value.index,
        index: collection.value.chunks_total,
        range: encode_document(&chunk.range.to_document()),
        state: ChunkState::Waiting,
        checkpoint: None,
        planned_documents: chunk.documents,
        documents_copied: 0,
        bytes_copied: 0,
        owner: None,
        lease_until: None,
        throttled: 0,
        failures: 0,
        last_error: None,
        started_at: None,
        finished_at: None,
    };
    engine
        .store
        .insert_chunks(std::slice::from_ref(&record))
        .await?;
    collection.value.chunks_total += 1;
    match &chunk.next {
        Some(next) => collection.value.plan_checkpoint = Some(next.encode()),
        // The last chunk and the end of planning are saved together, so a restart after it
        // never plans the collection again.
        None => finish_plan(&mut collection.value),
    }
    save_collection(engine, &mut collection).await?;
    // Copying starts as soon as a chunk exists.
    engine.advance_job(&collection.value.job_id).await?;
    Ok(collection)
}

async fn estimate(client: &Client, database: &str, collection: &str) -> (u64, u64) {
    let stats = client
        .database(database)
        .run_command(doc! { "collStats": collection })
        .await;
    match stats {
        Ok(stats) => {
            let count = number(&stats, "count");
            let size = number(&stats, "size");
            (count, size)
        }
        Err(e) => {
            warn!(error = %crate::mongo::describe(&e), "collStats failed; estimating the count only");
            let count = client
                .database(database)
                .collection::<Document>(collection)
                .estimated_document_count()
                .await
                .unwrap_or(0);
            (count, 0)
        }
    }
}

fn number(doc: &Document, key: &str) -> u64 {
    match doc.get(key) {
        Some(bson::Bson::Int32(v)) => (*v).max(0) as u64,
        Some(bson::Bson::Int64(v)) => (*v).max(0) as u64,
        Some(bson::Bson::Double(v)) if *v > 0.0 => *v as u64,
        _ => 0,
    }
}

/// Creates the target collection so that empty collections exist on the target too.
async fn ensure_target_collection(
    target: &Client,
    database: &str,
    collection: &str,
) -> Result<(), CopyError> {
    match target
        .database(database)
        .create_collection(collection)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => match e.kind.as_ref() {
            // 48 NamespaceExists: the collection is already there.
            mongodb::error::ErrorKind::Command(c) if c.code == 48 => Ok(()),
            _ => Err(CopyError::Copy(format!(
                "creating target collection {database}.{collection} failed: {}",
                crate::mongo::describe(&e)
            ))),
        },
    }
}

async fn fail_collection(
    engine: &Engine,
    collection: &mut Versioned<CollectionRecord>,
    reason: &str,
) -> Result<(), CopyError> {
    tracing::error!(error = reason, "collection failed");
    collection.value.state = CollectionState::Failed;
    collection.value.last_error = Some(reason.to_string());
    save_collection(engine, collection).await
}

/// Replaces the collection row and keeps the new ETag. A concurrent change stops the task, so
/// its message is delivered again and decides from the new row.
pub(crate) async fn save_collection(
    engine: &Engine,
    collection: &mut Versioned<CollectionRecord>,
) -> Result<(), CopyError> {
    let job_id = collection.value.job_id.clone();
    match engine.store.replace_collection(&job_id, collection).await {
        Ok(etag) => {
            collection.etag = etag;
            Ok(())
        }
        Err(StoreError::Conflict) => Err(CopyError::Copy(
            "another task changed this collection's row; this one stopped and its message will be \
             delivered again"
                .into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Marks the job as planning under this message, or returns `None` when the message must be
/// dropped (job gone, not in a planning state, or planned by another live task).
async fn claim_planning(
    engine: &Engine,
    job_id: &str,
    message: &MessageInfo,
) -> Result<Result<Versioned<crate::state::JobRecord>, String>, CopyError> {
    loop {
        let Some(mut job) = engine.store.job(job_id).await? else {
            warn!("job not found; dropping the plan message");
            return Ok(Err(format!("job {job_id} not found")));
        };
        if !matches!(
            job.value.state,
            JobState::Queued | JobState::Planning | JobState::Copying
        ) {
            info!(
                state = job.value.state.as_str(),
                "job is not planning; dropping the plan message"
            );
            return Ok(Err(format!(
                "job {job_id} is {}, not planning",
                job.value.state.as_str()
            )));
        }
        let now = Utc::now();
        let held_by_other = job
            .value
            .plan_owner
            .as_deref()
            .is_some_and(|o| o != message.id)
            && job.value.plan_lease_until.is_some_and(|t| t > now);
        if held_by_other {
            info!("another plan task is running; dropping the duplicate message");
            return Ok(Err(format!(
                "another plan task holds job {job_id}; this message is a duplicate"
            )));
        }
        let previous = job.value.state;
        if job.value.state == JobState::Queued {
            job.value.state = JobState::Planning;
        }
        job.value.plan_owner = Some(message.id.clone());
        job.value.plan_lease_until = Some(now + engine.lease());
        job.value.updated_at = now;
        match engine.store.replace_job(&job).await {
            Ok(etag) => {
                job.etag = etag;
                engine.events.state_changed(&job.value, previous);
                return Ok(Ok(job));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Renews a running plan task's lease in the background until dropped, so the scheduler does
/// not send a second plan task while a slow plan (a throttled source, say) still runs.
struct PlanLeaseKeeper {
    handle: tokio::task::JoinHandle<()>,
}

impl PlanLeaseKeeper {
    fn start(engine: &Engine, job_id: &str, owner: &str) -> PlanLeaseKeeper {
        let engine = engine.clone();
        let job_id = job_id.to_string();
        let owner = owner.to_string();
        let interval = (engine.settings.lease / 3).max(std::time::Duration::from_millis(500));
        let handle = tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(interval).await;
                    match renew_plan_lease(&engine, &job_id, &owner).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        // The next renewal may succeed before the lease runs out.
                        Err(e) => warn!(error = %e, "renewing the plan lease failed; retrying"),
                    }
                }
            }
            .in_current_span(),
        );
        PlanLeaseKeeper { handle }
    }
}

impl Drop for PlanLeaseKeeper {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Extends the plan lease while `owner` is still the plan owner. Returns `false` once it is not.
async fn renew_plan_lease(engine: &Engine, job_id: &str, owner: &str) -> Result<bool, StoreError> {
    loop {
        let Some(mut job) = engine.store.job(job_id).await? else {
            return Ok(false);
        };
        if job.value.plan_owner.as_deref() != Some(owner) {
            return Ok(false);
        }
        job.value.plan_lease_until = Some(Utc::now() + engine.lease());
        match engine.store.replace_job(&job).await {
            Ok(_) => return Ok(true),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Clears the plan owner; `continued` keeps a lease for the continuation message.
async fn release_planning(engine: &Engine, job_id: &str, continued: bool) -> Result<(), CopyError> {
    let lease = engine.lease();
    update_job(engine, job_id, move |job| {
        job.plan_owner = None;
        job.plan_lease_until = continued.then(|| Utc::now() + lease);
    })
    .await
}

async fn update_job(
    engine: &Engine,
    job_id: &str,
    change: impl Fn(&mut crate::state::JobRecord),
) -> Result<(), CopyError> {
    loop {
        let Some(mut job) = engine.store.job(job_id).await? else {
            return Ok(());
        };
        change(&mut job.value);
        match engine.store.replace_job(&job).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
