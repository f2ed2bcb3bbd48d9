//! The verify task: compares one unit from its checkpoint until the unit is done or the time
//! budget runs out, then continues through the queue.
//!
//! Like a copy task, the unit row names the queue message that owns it, with a lease the task
//! renews at every checkpoint. A duplicate message finds the unit held by a live task and is
//! dropped. The scheduler hands a unit whose lease expired to a new message.

use std::time::{Duration, Instant};

use bson::RawDocumentBuf;
use chrono::Utc;
use tracing::{info, warn, Instrument};

use super::compare::{count_sides, digest_sides, narrow_sides, Checkpoint, Step};
use super::scope::Scope;
use super::VerifyError;
use crate::jobs::{JobState, Mode, VerificationMode};
use crate::queue::VerifyTask;
use crate::runtime::engine::{Engine, EngineError, MAX_DEQUEUE_COUNT};
use crate::runtime::{MessageInfo, TaskOutcome};
use crate::state::{
    ChunkState, JobRecord, RunState, StoreError, UnitPhase, VerifyUnitRecord, Versioned,
};

/// How often a running unit saves its checkpoint (and so renews its lease and checks for a pause).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How many times an online job compares a differing unit again before reporting it, because
/// replication may still be applying writes made during the comparison.
const ONLINE_ATTEMPTS: u32 = 3;

/// Runs one verify task message.
pub async fn run_verify_task(
    engine: &Engine,
    task: &VerifyTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, VerifyError> {
    let span = tracing::info_span!(
        "verify_task",
        job_id = %task.job_id,
        collection = task.collection,
        unit = task.unit,
        run = task.run
    );
    async {
        let result = verify_unit(engine, task, message).await;
        if let Err(error) = &result {
            record_failure(engine, task, message, &error.to_string()).await;
        }
        result
    }
    .instrument(span)
    .await
}

async fn verify_unit(
    engine: &Engine,
    task: &VerifyTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, VerifyError> {
    let unit = match claim(engine, task, message).await? {
        Ok(unit) => unit,
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
        return Err(VerifyError::Verify(format!(
            "collection {} of job {} is missing from the state tables",
            task.collection, task.job_id
        )));
    };
    let scope = Scope::from_unit(&unit.value.scope)
        .ok_or_else(|| VerifyError::Verify("the unit's stored range is unreadable".into()))?;

    let request = &job.value.request;
    let (source_client, target_client) = engine
        .clients
        .source_and_target(request)
        .await
        .map_err(VerifyError::Verify)?;
    let sides = Sides {
        source: source_client
            .database(&collection.value.source.database)
            .collection::<RawDocumentBuf>(&collection.value.source.collection),
        target: target_client
            .database(&collection.value.target.database)
            .collection::<RawDocumentBuf>(&collection.value.target.collection),
        scope,
        batch_size: request.options.batch_size.max(1),
    };

    info!(
        phase = ?unit.value.phase,
        mode = unit.value.mode.as_str(),
        resumed = unit.value.source.after.is_some() || unit.value.narrow_after.is_some(),
        "verify task started"
    );
    let mut session = Session {
        engine,
        unit,
        deadline: Instant::now() + engine.settings.task_time_budget,
        last_save: Instant::now(),
        throttled_this_run: 0,
    };
    let step = compare_unit(&mut session, &sides).await?;
    match step {
        Step::Finished => finish(session, task).await,
        Step::OutOfTime => continue_later(session, task).await,
        Step::Stopped => stop(session).await,
    }
}

/// The two collections a unit compares, and how to read them.
pub(super) struct Sides {
    pub source: mongodb::Collection<RawDocumentBuf>,
    pub target: mongodb::Collection<RawDocumentBuf>,
    pub scope: Scope,
    pub batch_size: u32,
}

/// Runs the unit's comparison from its phase until it ends or must stop.
async fn compare_unit(session: &mut Session<'_>, sides: &Sides) -> Result<Step, VerifyError> {
    if session.unit.value.mode == VerificationMode::Counts {
        return count_sides(session, sides).await;
    }
    if session.unit.value.phase == UnitPhase::Digest {
        match digest_sides(session, sides).await? {
            Step::Finished => {}
            other => return Ok(other),
        }
        let unit = &mut session.unit.value;
        if unit.source.documents == unit.target.documents
            && unit.source.digest == unit.target.digest
        {
            unit.matched = Some(true);
            return Ok(Step::Finished);
        }
        info!(
            source_documents = unit.source.documents,
            target_documents = unit.target.documents,
            "digests differ; looking for the differing documents"
        );
        unit.phase = UnitPhase::Narrow;
        session.save().await?;
    }
    narrow_sides(session, sides).await
}

/// A claimed unit, its checkpoint timing and its deadline.
pub(super) struct Session<'a> {
    pub engine: &'a Engine,
    pub unit: Versioned<VerifyUnitRecord>,
    deadline: Instant,
    last_save: Instant,
    /// Throttled round trips of this task run, for the job's concurrency.
    pub throttled_this_run: u32,
}

impl Session<'_> {
    /// Counts throttled round trips on the unit and for this run.
    pub fn add_throttled(&mut self, count: u32) {
        self.throttled_this_run += count;
        self.unit.value.throttled += u64::from(count);
    }

    /// Returns whether a checkpoint is due; cheap enough to call after every document.
    pub fn checkpoint_due(&self) -> bool {
        self.last_save.elapsed() >= CHECKPOINT_INTERVAL || Instant::now() >= self.deadline
    }

    /// Ends the run at the deadline, or saves the unit (renewing its lease) when a checkpoint
    /// is due and stops if the job no longer lets verification run. The caller writes its
    /// progress into `unit` first.
    pub async fn checkpoint(&mut self) -> Result<Checkpoint, VerifyError> {
        if Instant::now() >= self.deadline {
            return Ok(Checkpoint::OutOfTime);
        }
        if self.last_save.elapsed() < CHECKPOINT_INTERVAL {
            return Ok(Checkpoint::Continue);
        }
        self.save().await?;
        let job = self.engine.store.job(&self.unit.value.job_id).await?;
        let may_run = job.is_some_and(|j| may_run(&j.value, self.unit.value.run));
        Ok(if may_run {
            Checkpoint::Continue
        } else {
            Checkpoint::Stopped
        })
    }

    /// Saves the unit row with its ETag. A conflict means another task took the unit over after
    /// this one's lease expired, so this one must stop.
    pub async fn save(&mut self) -> Result<(), VerifyError> {
        if self.unit.value.state == ChunkState::Running {
            self.unit.value.lease_until = Some(Utc::now() + self.engine.lease());
        }
        match self.engine.store.replace_verify_unit(&self.unit).await {
            Ok(etag) => {
                self.unit.etag = etag;
                self.last_save = Instant::now();
                Ok(())
            }
            Err(StoreError::Conflict) => Err(VerifyError::Verify(
                "another task took over this unit after its lease expired; this task stopped"
                    .into(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// Returns whether units of run `run` may be compared now: the run is the job's current one and
/// is running, and the job is in a phase that verifies.
pub(super) fn may_run(job: &JobRecord, run: u32) -> bool {
    let current = job
        .verification
        .as_ref()
        .is_some_and(|r| r.number == run && r.state == RunState::Running);
    current
        && matches!(
            job.state,
            JobState::Verifying | JobState::Replicating | JobState::CuttingOver
        )
}

/// Takes ownership of the unit for this message, or returns why the message must be dropped.
async fn claim(
    engine: &Engine,
    task: &VerifyTask,
    message: &MessageInfo,
) -> Result<Result<Versioned<VerifyUnitRecord>, String>, VerifyError> {
    loop {
        let Some(mut unit) = engine
            .store
            .verify_unit(&task.job_id, task.collection, task.unit)
            .await?
        else {
            return Ok(Err(format!(
                "verification unit {} of collection {} not found",
                task.unit, task.collection
            )));
        };
        if unit.value.run != task.run {
            return Ok(Err(format!(
                "the message belongs to verification run {}, but the unit is in run {}",
                task.run, unit.value.run
            )));
        }
        let Some(job) = engine.store.job(&task.job_id).await? else {
            return Ok(Err(format!("job {} not found", task.job_id)));
        };
        let now = Utc::now();
        let state = unit.value.state;
        let owned_by_other_live = state == ChunkState::Running
            && unit.value.owner.as_deref() != Some(message.id.as_str())
            && unit.value.lease_until.is_some_and(|t| t > now);
        if unit.value.is_finished() || owned_by_other_live {
            info!(
                state = state.as_str(),
                "unit is finished or held by another task; dropping the duplicate message"
            );
            return Ok(Err(format!(
                "unit {} is {} or held by another task",
                task.unit,
                state.as_str()
            )));
        }
        if !may_run(&job.value, task.run) {
            if state != ChunkState::Waiting {
                unit.value.state = ChunkState::Waiting;
                unit.value.owner = None;
                unit.value.lease_until = None;
                match engine.store.replace_verify_unit(&unit).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
                engine.advance_job(&task.job_id).await?;
            }
            info!("the job is not verifying; the unit waits");
            return Ok(Err(format!(
                "job {} is {}, not verifying run {}",
                task.job_id,
                job.value.state.as_str(),
                task.run
            )));
        }

        unit.value.state = ChunkState::Running;
        unit.value.owner = Some(message.id.clone());
        unit.value.lease_until = Some(now + engine.lease());
        unit.value.started_at.get_or_insert(now);
        match engine.store.replace_verify_unit(&unit).await {
            Ok(etag) => {
                unit.etag = etag;
                return Ok(Ok(unit));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn finish(mut session: Session<'_>, task: &VerifyTask) -> Result<TaskOutcome, VerifyError> {
    let engine = session.engine;
    let matched = session.unit.value.matched.unwrap_or(false);
    if !matched && retry_online(&mut session, task).await? {
        return Ok(TaskOutcome::Continued);
    }

    let unit = &mut session.unit.value;
    unit.state = ChunkState::Done;
    unit.matched = Some(matched);
    unit.owner = None;
    unit.lease_until = None;
    unit.finished_at = Some(Utc::now());
    unit.last_error = None;
    let differences = unit.differences;
    let (source_documents, target_documents) = (unit.source.documents, unit.target.documents);
    session.save().await?;
    if matched {
        info!(documents = source_documents, "unit verified");
    } else {
        warn!(
            source_documents,
            target_documents,
            missing = differences.missing,
            extra = differences.extra,
            different = differences.different,
            "unit differs between source and target"
        );
    }
    crate::copy::task::adapt_concurrency(engine, &task.job_id, session.throttled_this_run).await?;
    super::run::advance_verification(engine, &task.job_id).await?;
    engine.advance_job(&task.job_id).await?;
    Ok(TaskOutcome::Completed)
}

/// For an online job that is still replicating, starts a differing unit over after a pause, up
/// to [`ONLINE_ATTEMPTS`] times; returns whether it did.
///
/// TODO: once replication records the cluster time it has applied, wait until it passes the
/// time this comparison read the unit instead of a fixed pause.
async fn retry_online(session: &mut Session<'_>, task: &VerifyTask) -> Result<bool, VerifyError> {
    let engine = session.engine;
    let Some(job) = engine.store.job(&task.job_id).await? else {
        return Ok(false);
    };
    let replicating = job.value.mode == Mode::Online && job.value.state == JobState::Replicating;
    if !replicating || session.unit.value.attempts + 1 >= ONLINE_ATTEMPTS {
        return Ok(false);
    }

    let delay = Duration::from_secs(10 * u64::from(session.unit.value.attempts + 1));
    let unit = &mut session.unit.value;
    let attempts = unit.attempts + 1;
    let throttled = unit.throttled;
    let started_at = unit.started_at;
    *unit = VerifyUnitRecord {
        attempts,
        throttled,
        started_at,
        ..VerifyUnitRecord::new(
            &unit.job_id,
            unit.collection,
            unit.index,
            job.value
                .verification
                .as_ref()
                .ok_or_else(|| VerifyError::Verify("the job has no verification run".into()))?,
            unit.scope.clone(),
        )
    };
    unit.state = ChunkState::Queued;
    // The lease covers the pause, so the scheduler does not hand the unit out early.
    unit.lease_until =
        Some(Utc::now() + engine.lease() + chrono::Duration::from_std(delay).unwrap_or_default());
    session.save().await?;

    engine
        .queues
        .send_verify(task, Some(delay))
        .await
        .map_err(EngineError::from)?;
    info!(
        attempt = attempts,
        delay_s = delay.as_secs(),
        "unit differs while the job replicates; comparing it again after a pause"
    );
    Ok(true)
}

async fn continue_later(
    mut session: Session<'_>,
    task: &VerifyTask,
) -> Result<TaskOutcome, VerifyError> {
    let engine = session.engine;
    session.unit.value.state = ChunkState::Queued;
    session.unit.value.owner = None;
    session.unit.value.lease_until = Some(Utc::now() + engine.lease());
    session.save().await?;
    engine
        .queues
        .send_verify(task, None)
        .await
        .map_err(EngineError::from)?;
    crate::copy::task::adapt_concurrency(engine, &task.job_id, session.throttled_this_run).await?;
    info!(
        phase = ?session.unit.value.phase,
        "time budget used; the unit continues in a new task"
    );
    Ok(TaskOutcome::Continued)
}

async fn stop(mut session: Session<'_>) -> Result<TaskOutcome, VerifyError> {
    session.unit.value.state = ChunkState::Waiting;
    session.unit.value.owner = None;
    session.unit.value.lease_until = None;
    session.save().await?;
    info!("job paused or cancelled; the unit stopped at its checkpoint");
    session
        .engine
        .advance_job(&session.unit.value.job_id)
        .await?;
    Ok(TaskOutcome::Stopped)
}

/// Records a failed run on the unit; on the last attempt the queue allows, marks it failed.
async fn record_failure(engine: &Engine, task: &VerifyTask, message: &MessageInfo, reason: &str) {
    let last_attempt = message.dequeue_count >= MAX_DEQUEUE_COUNT;
    if last_attempt {
        tracing::error!(
            error = reason,
            attempts = message.dequeue_count,
            "verify task failed for the last time; the unit is marked failed"
        );
    } else {
        warn!(
            error = reason,
            attempt = message.dequeue_count,
            "verify task failed; the queue retries it"
        );
    }
    if let Err(e) = mark_unit_failed(engine, task, reason, last_attempt).await {
        warn!(error = %e, "could not record the failure on the unit");
    }
}

/// Stores `reason` on the unit and, when `final_failure`, marks it failed and advances the run.
pub async fn mark_unit_failed(
    engine: &Engine,
    task: &VerifyTask,
    reason: &str,
    final_failure: bool,
) -> Result<(), VerifyError> {
    loop {
        let Some(mut unit) = engine
            .store
            .verify_unit(&task.job_id, task.collection, task.unit)
            .await?
        else {
            return Ok(());
        };
        if unit.value.run != task.run || unit.value.is_finished() {
            return Ok(());
        }
        unit.value.failures += 1;
        unit.value.last_error = Some(reason.chars().take(2_000).collect());
        unit.value.owner = None;
        if final_failure {
            unit.value.state = ChunkState::Failed;
            unit.value.lease_until = None;
            unit.value.finished_at = Some(Utc::now());
        } else {
            // The queue redelivers the message; hold the unit for it.
            unit.value.state = ChunkState::Queued;
            unit.value.lease_until = Some(Utc::now() + engine.redelivery_lease());
        }
        match engine.store.replace_verify_unit(&unit).await {
            Ok(_) => break,
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if final_failure {
        super::run::advance_verification(engine, &task.job_id).await?;
        engine.advance_job(&task.job_id).await?;
    }
    Ok(())
}
