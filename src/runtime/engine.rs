//! The engine: shared handles for tasks and the API, and the one routine that moves a job
//! through its phases.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use crate::config::Settings;
use crate::events::{AddressPolicy, Events};
use crate::jobs::{JobState, Mode, VerificationMode};
use crate::mongo::ClientCache;
use crate::queue::{CopyTask, PlanTask, TaskQueues};
use crate::replication;
use crate::replication::cutover::CutoverProgress;
use crate::state::{ChunkRecord, JobRecord, RunTrigger};
use crate::state::{ChunkState, CollectionState, Store, StoreError, Versioned};
use crate::storage::{QueueClient, StorageAccount, StorageError};

/// The Functions host moves a message to the poison queue after this many attempts
/// (`extensions.queues.maxDequeueCount` in `host.json`); the standalone consumers do the same.
pub const MAX_DEQUEUE_COUNT: u32 = 5;

/// Maximum wait before a failed message is delivered again: the standalone consumers' backoff
/// tops out at 32 s, and `host.json` sets the Functions host's `visibilityTimeout` to 30 s.
pub const MAX_REDELIVERY_DELAY: Duration = Duration::from_secs(32);

/// Everything a task or a request handler needs.
#[derive(Clone)]
pub struct Engine {
    pub settings: Arc<Settings>,
    pub account: StorageAccount,
    pub store: Store,
    pub queues: TaskQueues,
    pub clients: ClientCache,
    /// Publishes job events to the events queue and callbacks.
    pub events: Events,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queue storage failed: {0}")]
    Queue(#[from] StorageError),
}

impl Engine {
    /// Builds the engine on a storage account, with tables and queues named from the prefix.
    pub fn new(settings: Arc<Settings>, account: StorageAccount) -> Self {
        let prefix = settings.storage_prefix.clone();
        let secrets = crate::secrets::SecretResolver::from_settings(&settings);
        let store = Store::new(&account, &prefix);
        let events = Events::new(
            &account,
            store.clone(),
            &prefix,
            settings.events_queue.as_deref(),
            settings.callback_signing_key.clone(),
            AddressPolicy {
                allow_loopback: settings.callback_allow_loopback,
            },
        );
        Engine {
            store,
            events,
            queues: TaskQueues::new(&account, &prefix),
            settings,
            account,
            clients: ClientCache::new(secrets),
        }
    }

    /// Creates the tables and queues the service uses, if missing.
    pub async fn ensure_storage(&self) -> Result<(), EngineError> {
        self.store.ensure_tables().await?;
        self.queues.ensure_queues().await?;
        self.events.ensure_queue().await?;
        Ok(())
    }

    /// Returns the queue the Functions host (or a standalone consumer) moves failed messages to.
    pub fn poison_queue(&self, kind: crate::queue::TaskKind) -> QueueClient {
        self.account.queue(&crate::queue::poison_queue_name(
            &self.settings.storage_prefix,
            kind,
        ))
    }

    pub fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::minutes(5))
    }

    /// Returns how long work whose task failed is held for the queue's next delivery. A
    /// shorter hold would let the scheduler send a second message for the same work while the
    /// first waits out its retry delay, and the second message's poison notice could then fail
    /// the work again after a resume.
    pub fn redelivery_lease(&self) -> chrono::Duration {
        let wait = chrono::Duration::from_std(MAX_REDELIVERY_DELAY + Duration::from_secs(8))
            .unwrap_or(chrono::Duration::seconds(40));
        self.lease().max(wait)
    }

    /// Moves a job as far as its recorded progress allows: enqueues waiting chunks up to the
    /// job's concurrency, finishes phases whose work is done, and completes pause and cancel once
    /// no task runs. Safe to call from any task or the scheduler at any time.
    pub async fn advance_job(&self, job_id: &str) -> Result<(), EngineError> {
        loop {
            let Some(mut job) = self.store.job(job_id).await? else {
                return Ok(());
            };
            let state = job.value.state;
            if matches!(
                state,
                JobState::Completed
                    | JobState::Cancelled
                    | JobState::Paused
                    | JobState::Failed
                    | JobState::VerificationFailed
            ) {
                return Ok(());
            }
            if state == JobState::Verifying {
                return crate::verify::advance_verification(self, job_id).await;
            }
            if state == JobState::Queued {
                return Ok(());
            }

            let collections = self.store.collections(job_id).await?;
            let chunks = self.store.chunks_of_job(job_id).await?;
            let streams = match job.value.mode {
                Mode::Online => self.store.streams(job_id).await?,
                Mode::Offline => Vec::new(),
            };
            let mut running = chunks
                .iter()
                .filter(|c| c.value.state == ChunkState::Running)
                .count()
                + replication::schedule::running(&streams);
            if matches!(state, JobState::Pausing | JobState::Cancelling) {
                running += crate::verify::running_units(self, &job.value).await?;
            }

            replication::schedule::enqueue_streams(
                self,
                &job.value,
                &collections,
                &chunks,
                &streams,
            )
            .await?;
            let mut failure = None;
            let mut failed_cutover_resumes_to = JobState::Replicating;
            let next = match state {
                JobState::Pausing if running == 0 => Some(JobState::Paused),
                JobState::Cancelling if running == 0 => Some(JobState::Cancelled),
                JobState::Planning | JobState::Copying => {
                    self.enqueue_waiting(&job.value, &collections, &chunks)
                        .await?;
                    crate::indexes::task::enqueue_builds(self, job_id, &collections, &chunks)
                        .await?;
                    self.copy_phase_outcome(&job.value, &collections, &chunks)
                }
                // A re-copied collection must be planned again, which happens while copying.
                JobState::Replicating if replication::schedule::needs_planning(&collections) => {
                    Some(JobState::Copying)
                }
                JobState::CuttingOver => {
                    // Waiting chunks are those a failed cutover verification sends back.
                    self.enqueue_waiting(&job.value, &collections, &chunks)
                        .await?;
                    match replication::cutover::progress(&collections, &chunks, &streams) {
                        CutoverProgress::Waiting => None,
                        CutoverProgress::Drained
                            if job.value.request.options.verification == VerificationMode::Off =>
                        {
                            Some(JobState::Completed)
                        }
                        CutoverProgress::Drained => Some(JobState::Verifying),
                        CutoverProgress::Blocked { reason, resume_to } => {
                            failure = Some(reason);
                            failed_cutover_resumes_to = resume_to;
                            Some(JobState::Failed)
                        }
                    }
                }
                _ => None,
            };
            let Some(next) = next else {
                if state == JobState::Replicating {
                    replication::cutover::announce_ready(self, job, &collections, &streams).await?;
                }
                return Ok(());
            };

            let now = Utc::now();
            job.value.state = next;
            job.value.updated_at = now;
            match next {
                JobState::Paused => {}
                JobState::Cancelled | JobState::Completed => job.value.finished_at = Some(now),
                JobState::Failed if state == JobState::CuttingOver => {
                    job.value.resume_to = Some(failed_cutover_resumes_to);
                    job.value.last_error = failure.take();
                }
                JobState::Failed => {
                    job.value.resume_to = Some(JobState::Copying);
                    job.value.last_error = Some(failure_summary(&collections, &chunks));
                }
                JobState::Verifying => {
                    let mode = job.value.request.options.verification;
                    let trigger = if state == JobState::CuttingOver {
                        RunTrigger::Cutover
                    } else {
                        RunTrigger::Copy
                    };
                    crate::verify::begin_run(&mut job.value, mode, trigger);
                }
                JobState::Replicating | JobState::Copying => {}
                _ => {}
            }
            let copy_done = matches!(
                next,
                JobState::Replicating | JobState::Completed | JobState::Verifying
            );
            if copy_done {
                job.value.initial_copy_done = true;
            }
            match self.store.replace_job(&job).await {
                Ok(etag) => {
                    info!(
                        job_id,
                        from = state.as_str(),
                        to = next.as_str(),
                        "job state changed"
                    );
                    self.events.state_changed(&job.value, state);
                    if copy_done {
                        self.mark_collections_copied(job_id).await?;
                    }
                    if next == JobState::Verifying {
                        crate::verify::advance_verification(self, job_id).await?;
                    }
                    if next == JobState::Replicating {
                        job.etag = etag;
                        replication::cutover::announce_ready(self, job, &collections, &streams)
                            .await?;
                        return Ok(());
                    }
                    if state == JobState::Replicating && next == JobState::Copying {
                        self.mark_plan_queued(job_id).await?;
                        self.send_plan(job_id).await?;
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Decides what the copy phase leads to, if it is over.
    fn copy_phase_outcome(
        &self,
        job: &JobRecord,
        collections: &[Versioned<crate::state::CollectionRecord>],
        chunks: &[Versioned<ChunkRecord>],
    ) -> Option<JobState> {
        let all_planned = collections
            .iter()
            .all(|c| c.value.planned || c.value.state == CollectionState::Failed);
        if !all_planned {
            return None;
        }
        // Index builds after the copy belong to the copy phase: an offline job completes, and an
        // online one starts replicating, only once they are done.
        let busy = chunks.iter().any(|c| {
            matches!(
                c.value.state,
                ChunkState::Waiting | ChunkState::Queued | ChunkState::Running
            )
        }) || collections.iter().any(|c| {
            c.value.state != CollectionState::Failed && c.value.indexes.after_copy_pending()
        });
        let failed = chunks.iter().any(|c| c.value.state == ChunkState::Failed)
            || collections
                .iter()
                .any(|c| c.value.state == CollectionState::Failed);
        match (busy, failed) {
            (true, _) if job.state == JobState::Planning => Some(JobState::Copying),
            (true, _) => None,
            (false, true) => Some(JobState::Failed),
            (false, false) => Some(match job.mode {
                Mode::Offline if job.request.options.verification == VerificationMode::Off => {
                    JobState::Completed
                }
                Mode::Offline => JobState::Verifying,
                Mode::Online => JobState::Replicating,
            }),
        }
    }

    /// Sends copy messages for waiting chunks of planned or planning collections, keeping at
    /// most `concurrency` chunks queued or running.
    async fn enqueue_waiting(
        &self,
        job: &JobRecord,
        _collections: &[Versioned<crate::state::CollectionRecord>],
        chunks: &[Versioned<ChunkRecord>],
    ) -> Result<(), EngineError> {
        let in_flight = chunks
            .iter()
            .filter(|c| matches!(c.value.state, ChunkState::Queued | ChunkState::Running))
            .count();
        let limit = job.concurrency.max(1) as usize;
        if in_flight >= limit {
            return Ok(());
        }
        let mut slots = limit - in_flight;
        let mut waiting: Vec<&Versioned<ChunkRecord>> = chunks
            .iter()
            .filter(|c| c.value.state == ChunkState::Waiting)
            .collect();
        waiting.sort_by_key(|c| (c.value.collection, c.value.index));
        for chunk in waiting {
            if slots == 0 {
                break;
            }
            let mut claimed = chunk.clone();
            claimed.value.state = ChunkState::Queued;
            claimed.value.owner = None;
            claimed.value.lease_until = Some(Utc::now() + self.lease());
            match self.store.replace_chunk(&claimed).await {
                Ok(_) => {}
                // Another instance changed the chunk first; it decides for this one.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
            let task = CopyTask {
                job_id: job.id.clone(),
                collection: chunk.value.collection,
                chunk: chunk.value.index,
            };
            self.queues.send_copy(&task, None).await?;
            slots -= 1;
        }
        Ok(())
    }

    async fn mark_collections_copied(&self, job_id: &str) -> Result<(), EngineError> {
        for mut collection in self.store.collections(job_id).await? {
            if collection.value.state == CollectionState::Copying && collection.value.planned {
                collection.value.state = CollectionState::Copied;
                collection.value.finished_at.get_or_insert_with(Utc::now);
                match self.store.replace_collection(job_id, &collection).await {
                    Ok(_) | Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Sends the job's plan task; used at creation, on resume and when the scheduler finds
    /// planning stalled.
    pub async fn send_plan(&self, job_id: &str) -> Result<(), EngineError> {
        self.queues
            .send_plan(&PlanTask {
                job_id: job_id.to_string(),
            })
            .await?;
        Ok(())
    }

    /// One scheduler pass over every job that may have work: expired leases go back to
    /// waiting, then the job advances.
    pub async fn schedule_once(&self) -> Result<(), EngineError> {
        crate::runtime::standalone::sweep_poison(self).await;
        let now = Utc::now();
        for job in self.store.jobs().await? {
            let job = job.value;
            if job.state.is_terminal()
                || matches!(
                    job.state,
                    JobState::Paused | JobState::Failed | JobState::VerificationFailed
                )
            {
                continue;
            }
            crate::verify::schedule_verification(self, &job).await?;
            for chunk in self.store.chunks_of_job(&job.id).await? {
                let expired = matches!(chunk.value.state, ChunkState::Queued | ChunkState::Running)
                    && chunk.value.lease_until.is_none_or(|t| t < now);
                if !expired {
                    continue;
                }
                let mut released = chunk.clone();
                warn!(
                    job_id = %job.id,
                    collection = chunk.value.collection,
                    chunk = chunk.value.index,
                    state = chunk.value.state.as_str(),
                    "chunk lease expired; its task was lost, so the chunk waits to be queued again"
                );
                released.value.state = ChunkState::Waiting;
                released.value.owner = None;
                released.value.lease_until = None;
                match self.store.replace_chunk(&released).await {
                    Ok(_) | Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if job.mode == Mode::Online {
                replication::schedule::release_expired(self, &job.id, now).await?;
            }
            // After the initial copy, only a re-copy plans again.
            let replanning = job.state == JobState::Copying
                && job.mode == Mode::Online
                && job.initial_copy_done
                && replication::schedule::needs_planning(&self.store.collections(&job.id).await?);
            if (matches!(job.state, JobState::Queued | JobState::Planning) || replanning)
                && job.plan_lease_until.is_none_or(|t| t < now)
            {
                warn!(job_id = %job.id, "planning has no live task; sending the plan task again");
                if self.requeue_lost_plan(&job.id).await? {
                    self.send_plan(&job.id).await?;
                }
            }
            self.advance_job(&job.id).await?;
        }
        Ok(())
    }

    /// Records that a plan message is in flight, so the scheduler waits a lease before sending
    /// another.
    pub async fn mark_plan_queued(&self, job_id: &str) -> Result<(), EngineError> {
        loop {
            let Some(mut job) = self.store.job(job_id).await? else {
                return Ok(());
            };
            job.value.plan_lease_until = Some(Utc::now() + self.lease());
            match self.store.replace_job(&job).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Records that a plan message replaces one whose task was lost, so the scheduler waits a
    /// lease before sending another. The lost task's ownership is cleared too: it stopped
    /// renewing its lease, and the new message could not claim planning while the old owner is
    /// named with a live lease. Returns `false` when a plan task claimed the job meanwhile.
    async fn requeue_lost_plan(&self, job_id: &str) -> Result<bool, EngineError> {
        loop {
            let Some(mut job) = self.store.job(job_id).await? else {
                return Ok(false);
            };
            let now = Utc::now();
            if job.value.plan_lease_until.is_some_and(|t| t >= now) {
                return Ok(false);
            }
            job.value.plan_owner = None;
            job.value.plan_lease_until = Some(now + self.lease());
            match self.store.replace_job(&job).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Returns the scheduler period in standalone mode.
    pub fn scheduler_interval(&self) -> Duration {
        self.settings.scheduler_interval
    }
}

fn failure_summary(
    collections: &[Versioned<crate::state::CollectionRecord>],
    chunks: &[Versioned<ChunkRecord>],
) -> String {
    let failed_collections: Vec<String> = collections
        .iter()
        .filter(|c| c.value.state == CollectionState::Failed)
        .map(|c| {
            format!(
                "{}: {}",
                c.value.source,
                c.value.last_error.clone().unwrap_or_default()
            )
        })
        .collect();
    let failed_chunks = chunks
        .iter()
        .filter(|c| c.value.state == ChunkState::Failed)
        .count();
    let mut parts = failed_collections;
    if failed_chunks > 0 {
        parts.push(format!(
            "{failed_chunks} chunk(s) failed; see each collection's lastError, then resume the job to retry them"
        ));
    }
    parts.join("; ")
}

/// Moves a job to `failed` with a reason, from any state that is not final.
pub async fn fail_job(engine: &Engine, job_id: &str, reason: &str) -> Result<(), EngineError> {
    loop {
        let Some(mut job) = engine.store.job(job_id).await? else {
            return Ok(());
        };
        if job.value.state.is_terminal() || job.value.state == JobState::Failed {
            return Ok(());
        }
        let resume_to = if job.value.state.is_active() {
            job.value.state
        } else {
            job.value.resume_to.unwrap_or(JobState::Planning)
        };
        job.value.resume_to = Some(resume_to);
        let previous = job.value.state;
        job.value.state = JobState::Failed;
        job.value.last_error = Some(reason.to_string());
        job.value.updated_at = Utc::now();
        match engine.store.replace_job(&job).await {
            Ok(_) => {
                tracing::error!(job_id, error = reason, "job failed");
                engine.events.state_changed(&job.value, previous);
                return Ok(());
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
