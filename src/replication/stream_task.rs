//! The stream task: reads one collection's change stream, applies each round trip to the target,
//! and saves the resume position until its time budget runs out. Then it continues through the
//! queue.
//!
//! Order of effects per round trip, fixed so a crash anywhere replays events and never skips
//! one: read the events, write them to the target, then save the position with an ETag check.
//! A replayed event rewrites the whole document (or deletes it again), so a replay changes
//! nothing. The position is saved after every round trip, empty ones included, so a quiet
//! collection's position keeps up with the source's history. The stream row names the queue
//! message that owns it; a duplicate message finds it owned by another live message and is
//! dropped.

use std::time::{Duration, Instant};

use bson::{Document, RawDocumentBuf};
use chrono::{DateTime, Utc};
use mongodb::Collection;
use tracing::{error, info, warn, Instrument};

use super::apply::{apply, ApplyError, ApplyOutcome};
use super::errors::{classify_read, ReplicationError, StreamFailure};
use super::events::{plan, Planned, StreamEnd};
use super::position::Position;
use super::reader::{self, ReadError, RoundTrip, StreamReader};
use super::stream_lease::{claim, record_failure};
use super::{cutover, reconcile_slice, schedule};
use crate::jobs::{JobState, SourceKind};
use crate::queue::StreamTask;
use crate::runtime::engine::{fail_job, Engine};
use crate::runtime::{MessageInfo, TaskOutcome};
use crate::state::{ClusterTime, JobRecord, StoreError, StreamRecord, StreamState, Versioned};

/// How long a `getMore` waits for new events before it returns an empty batch.
const MAX_AWAIT: Duration = Duration::from_millis(500);
/// How often a running stream re-reads its job to see pause, cancel and cutover.
const JOB_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Reopens after transient errors within one task run before the task fails and the queue
/// retries it.
const MAX_REOPENS: u32 = 8;

/// Runs one stream task message.
pub async fn run_stream_task(
    engine: &Engine,
    task: &StreamTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, ReplicationError> {
    let span = tracing::info_span!(
        "stream_task",
        job_id = %task.job_id,
        collection = task.collection
    );
    async {
        let result = replicate(engine, task, message).await;
        if let Err(error) = &result {
            record_failure(engine, task, message, &error.to_string()).await;
        }
        result
    }
    .instrument(span)
    .await
}

async fn replicate(
    engine: &Engine,
    task: &StreamTask,
    message: &MessageInfo,
) -> Result<TaskOutcome, ReplicationError> {
    let (stream, job) = match claim(engine, task, message).await? {
        Ok(claimed) => claimed,
        Err(reason) => return Ok(TaskOutcome::Dropped(reason)),
    };
    let collection = engine
        .store
        .collection(&task.job_id, task.collection)
        .await?
        .ok_or_else(|| {
            ReplicationError::Failed(format!(
                "collection {} of job {} is missing from the state tables",
                task.collection, task.job_id
            ))
        })?;
    let request = &job.value.request;
    let (source, target) = engine
        .clients
        .source_and_target(request)
        .await
        .map_err(ReplicationError::Failed)?;
    let src = &collection.value.source;
    let dst = &collection.value.target;
    let kind = match job.value.source_kind {
        Some(SourceKind::CosmosRu) => SourceKind::CosmosRu,
        _ => SourceKind::MongoDb,
    };

    let mut run = StreamRun {
        engine,
        task,
        namespace: src.to_string(),
        kind,
        batch_size: request.options.batch_size,
        source: source.database(&src.database).collection(&src.collection),
        target: target.database(&dst.database).collection(&dst.collection),
        source_ids: source.database(&src.database).collection(&src.collection),
        target_ids: target.database(&dst.database).collection(&dst.collection),
        deadline: Instant::now() + engine.settings.task_time_budget,
        stream,
        job: job.value,
    };
    info!(kind = ?run.kind, "stream task started");
    run.run().await
}

/// One task run over one collection's stream.
pub(super) struct StreamRun<'a> {
    pub(super) engine: &'a Engine,
    task: &'a StreamTask,
    pub(super) namespace: String,
    pub(super) kind: SourceKind,
    batch_size: u32,
    source: Collection<RawDocumentBuf>,
    target: Collection<RawDocumentBuf>,
    pub(super) source_ids: Collection<Document>,
    pub(super) target_ids: Collection<Document>,
    pub(super) deadline: Instant,
    pub(super) stream: Versioned<StreamRecord>,
    pub(super) job: JobRecord,
}

/// The next step after a failed read.
enum AfterFailure {
    Reopen,
    Finish(TaskOutcome),
}

impl StreamRun<'_> {
    async fn run(&mut self) -> Result<TaskOutcome, ReplicationError> {
        let mut reader: Option<StreamReader> = None;
        let mut reopens = 0u32;
        let mut last_job_check = Instant::now();
        loop {
            if Instant::now() >= self.deadline {
                return self.continue_later().await;
            }
            let open = match reader.as_mut() {
                Some(open) => open,
                None => match self.open().await {
                    Ok(opened) => reader.insert(opened),
                    Err(failure) => match self.after_failure(failure, &mut reopens).await? {
                        AfterFailure::Reopen => continue,
                        AfterFailure::Finish(outcome) => return Ok(outcome),
                    },
                },
            };

            let started_at = Utc::now();
            let round = match open.next().await {
                Some(Ok(round)) => round,
                Some(Err(failure)) => {
                    reader = None;
                    match self.after_failure(failure, &mut reopens).await? {
                        AfterFailure::Reopen => continue,
                        AfterFailure::Finish(outcome) => return Ok(outcome),
                    }
                }
                None => {
                    // The server closed the cursor without an invalidate event; open it again.
                    reader = None;
                    tokio::time::sleep(MAX_AWAIT).await;
                    continue;
                }
            };
            reopens = 0;

            let planned =
                plan(&round.events).map_err(|e| ReplicationError::Failed(e.to_string()))?;
            let outcome = match apply(&self.target, &planned.changes, self.deadline).await {
                Ok(outcome) => outcome,
                // Nothing of this round trip is saved; the continuation reads it again.
                Err(ApplyError::DeadlineReached) => return self.continue_later().await,
                Err(e) => return Err(ReplicationError::Failed(e.to_string())),
            };
            self.record_round(&round, &planned, &outcome, started_at);
            if let Some(end) = &planned.end {
                return self.stop_for_end(end).await;
            }

            reconcile_slice::run(self).await?;
            self.save().await?;

            if last_job_check.elapsed() >= JOB_CHECK_INTERVAL
                || self.job.state == JobState::CuttingOver
            {
                last_job_check = Instant::now();
                if let Some(job) = self.engine.store.job(&self.task.job_id).await? {
                    self.job = job.value;
                }
            }
            if !schedule::streams_run_in(self.job.state) {
                return self.stop_for_job_state().await;
            }
            if self.cutover_reached() {
                return self.finish().await;
            }
        }
    }

    async fn open(&self) -> Result<StreamReader, ReadError> {
        let position = self
            .stream
            .value
            .position
            .as_deref()
            .and_then(Position::decode);
        reader::open(
            &self.source,
            self.kind,
            position.as_ref(),
            self.batch_size,
            MAX_AWAIT,
        )
        .await
    }

    /// Decides what a failed open or round trip leads to.
    async fn after_failure(
        &mut self,
        failure: ReadError,
        reopens: &mut u32,
    ) -> Result<AfterFailure, ReplicationError> {
        match classify_read(&failure) {
            StreamFailure::Throttled(delay) => {
                self.stream.value.throttled += 1;
                warn!(
                    delay_ms = delay.as_millis() as u64,
                    "source throttled the change stream; retrying"
                );
                tokio::time::sleep(delay.max(Duration::from_millis(10))).await;
                Ok(AfterFailure::Reopen)
            }
            StreamFailure::Transient(reason) => {
                *reopens += 1;
                if *reopens > MAX_REOPENS {
                    return Err(ReplicationError::Failed(format!(
                        "reading the change stream failed {MAX_REOPENS} times in a row: {reason}"
                    )));
                }
                warn!(attempt = *reopens, error = %reason, "change stream read failed; reopening");
                tokio::time::sleep(crate::copy::writer::backoff(*reopens)).await;
                Ok(AfterFailure::Reopen)
            }
            StreamFailure::HistoryLost(reason) => {
                Ok(AfterFailure::Finish(self.fail_history_lost(&reason).await?))
            }
            StreamFailure::Configuration(reason) => Ok(AfterFailure::Finish(
                self.fail_configuration(&reason).await?,
            )),
            StreamFailure::NamespaceGone(_) => {
                let end = StreamEnd::Dropped;
                Ok(AfterFailure::Finish(self.stop_for_end(&end).await?))
            }
            StreamFailure::Permanent(reason) => Err(ReplicationError::Failed(format!(
                "reading the change stream failed: {reason}"
            ))),
        }
    }

    /// Updates the row after the target acknowledged a round trip.
    fn record_round(
        &mut self,
        round: &RoundTrip,
        planned: &Planned,
        outcome: &ApplyOutcome,
        started_at: DateTime<Utc>,
    ) {
        let s = &mut self.stream.value;
        s.round_trips += 1;
        s.last_round_trip_at = Some(started_at);
        if let Some(token) = &round.resume_token {
            s.position = Some(Position::ResumeAfter(token.clone()).encode());
        }
        s.events_applied += planned.events;
        s.upserts += outcome.upserts;
        s.deletes += outcome.deletes;
        s.throttled += u64::from(outcome.throttled);
        let event_time = planned.last_cluster_time.map(ClusterTime::from_timestamp);
        if planned.events > 0 {
            s.last_event_cluster_time = event_time.or(s.last_event_cluster_time);
            s.last_event_time = Some(event_time.map_or(started_at, ClusterTime::to_datetime));
        }

        s.idle = round.events.is_empty();
        // Counted only while cutting over, so a mark left from an earlier cutover never counts.
        let cutting_over = self.job.state == JobState::CuttingOver;
        s.drained_round_trips = match &self.job.cutover {
            Some(mark)
                if cutting_over
                    && s.idle
                    && cutover::after_mark(mark, round.operation_time, started_at) =>
            {
                s.drained_round_trips + 1
            }
            _ => 0,
        };
        // A batch below the limit held everything the server had when the round trip started.
        if (round.events.len() as u64) < u64::from(self.batch_size.max(1)) {
            s.caught_up_at = Some(started_at);
        } else if let Some(time) = event_time {
            s.caught_up_at = s.caught_up_at.max(Some(time.to_datetime()));
        }
    }

    fn cutover_reached(&self) -> bool {
        if self.job.state != JobState::CuttingOver {
            return false;
        }
        let Some(mark) = &self.job.cutover else {
            return false;
        };
        cutover::stream_ready(&self.stream.value, mark, self.kind)
    }

    /// Saves the row with its ETag and renews the lease. A conflict means that another task took
    /// the stream over after this one's lease expired, so this one must stop.
    async fn save(&mut self) -> Result<(), ReplicationError> {
        if self.stream.value.state == StreamState::Running {
            self.stream.value.lease_until = Some(Utc::now() + self.engine.lease());
        }
        match self.engine.store.replace_stream(&self.stream).await {
            Ok(etag) => {
                self.stream.etag = etag;
                Ok(())
            }
            Err(StoreError::Conflict) => Err(ReplicationError::Failed(
                "another task took over this stream after its lease expired; this task stopped"
                    .into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Leaves the stream in `state` without an owner and saves it.
    async fn release(&mut self, state: StreamState) -> Result<(), ReplicationError> {
        self.stream.value.state = state;
        self.stream.value.owner = None;
        self.stream.value.lease_until = None;
        self.save().await
    }

    async fn continue_later(&mut self) -> Result<TaskOutcome, ReplicationError> {
        self.stream.value.state = StreamState::Queued;
        self.stream.value.owner = None;
        self.stream.value.lease_until = Some(Utc::now() + self.engine.lease());
        self.save().await?;
        self.engine.queues.send_stream(self.task, None).await?;
        info!(
            events = self.stream.value.events_applied,
            "time budget used; the stream continues in a new task"
        );
        Ok(TaskOutcome::Continued)
    }

    async fn stop_for_job_state(&mut self) -> Result<TaskOutcome, ReplicationError> {
        self.release(StreamState::Waiting).await?;
        info!(
            state = self.job.state.as_str(),
            "job is not replicating; the stream stopped at its saved position"
        );
        self.engine.advance_job(&self.task.job_id).await?;
        Ok(TaskOutcome::Stopped)
    }

    async fn finish(&mut self) -> Result<TaskOutcome, ReplicationError> {
        self.release(StreamState::Finished).await?;
        info!(
            events = self.stream.value.events_applied,
            "stream drained past the cutover point; replication of this collection finished"
        );
        self.engine.advance_job(&self.task.job_id).await?;
        Ok(TaskOutcome::Completed)
    }

    async fn stop_for_end(&mut self, end: &StreamEnd) -> Result<TaskOutcome, ReplicationError> {
        let reason = format!(
            "{}; replication of this collection stopped and the target keeps the documents \
             replicated so far. If the collection exists again, re-copy it with POST \
             /api/jobs/{}/collections/{}/recopy",
            end.describe(&self.namespace),
            self.task.job_id,
            self.task.collection
        );
        warn!(reason = %reason, "change stream ended");
        self.stream.value.last_error = Some(reason);
        self.release(StreamState::Stopped).await?;
        self.engine.advance_job(&self.task.job_id).await?;
        Ok(TaskOutcome::Completed)
    }

    async fn fail_history_lost(&mut self, reason: &str) -> Result<TaskOutcome, ReplicationError> {
        let message = format!(
            "the change stream's resume point is no longer in the source's history ({reason}), \
             so the changes since then cannot be replayed. Re-copy the collection with POST \
             /api/jobs/{}/collections/{}/recopy; the other collections keep replicating",
            self.task.job_id, self.task.collection
        );
        error!(error = %message, "replication of the collection failed");
        self.stream.value.last_error = Some(message);
        self.release(StreamState::Failed).await?;
        self.engine.advance_job(&self.task.job_id).await?;
        Ok(TaskOutcome::Completed)
    }

    /// Fails the job, not only the collection: every collection's stream has the same shape, so
    /// the fix (source settings or privileges) is the user's, and `resume` retries from the
    /// saved position.
    async fn fail_configuration(&mut self, reason: &str) -> Result<TaskOutcome, ReplicationError> {
        let message = format!(
            "the source rejected the change stream of {} as configured: {reason}. This is a \
             configuration problem (change streams need a replica set, the changeStream and find \
             privileges, and on Cosmos DB for MongoDB RU the supported pipeline); fix it, then \
             resume the job",
            self.namespace
        );
        self.stream.value.last_error = Some(message.clone());
        self.release(StreamState::Waiting).await?;
        fail_job(self.engine, &self.task.job_id, &message).await?;
        Ok(TaskOutcome::Completed)
    }
}
