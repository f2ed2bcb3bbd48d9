//! Cutover: the point every stream must pass, what blocks a cutover, when the streams are done,
//! and the `CutoverReady` announcement.
//!
//! Cutover records the source's current operation time. Each stream task keeps applying events
//! until it has read past that point, runs a final reconciliation where deletes are not streamed,
//! and then marks its stream finished and stops. Once every stream is finished (or stopped
//! because its source collection is gone), [`progress`] reports the job drained, and no task
//! writes to the target after that. The engine then moves the job to `verifying` with a run
//! whose trigger is `cutover`, or straight to `completed` when the job's `verification` option is
//! `off`. The verification run, not this module, decides between `completed` and
//! `verificationFailed`.
//!
//! After a failed cutover verification, `resume` brings the job back to `cuttingOver` with the
//! differing chunks waiting to be copied again. The streams stay finished, and [`progress`]
//! waits for those chunks before it reports the job drained again.

use bson::doc;
use chrono::Utc;
use serde_json::json;
use tracing::info;

use crate::events::EventType;
use crate::jobs::{JobState, Mode, SourceKind};
use crate::runtime::engine::{Engine, EngineError};
use crate::state::{
    ChunkRecord, ChunkState, ClusterTime, CollectionRecord, CutoverMark, JobRecord,
    ReconcileReason, StoreError, StreamRecord, StreamState, Versioned,
};

/// Round trips without events, each started after the cutover point, that prove a Cosmos DB
/// (RU) stream is drained. RU returns an empty batch for a throttled `getMore`, so one empty
/// batch alone may mean "throttled" rather than "nothing left".
// NOTE: two is a judgement, not a documented Cosmos DB guarantee; the final reconciliation and
// verification remain the safety net.
const RU_EMPTY_ROUND_TRIPS: u32 = 2;

/// Reads the source's current operation time for a cutover request.
pub async fn read_mark(engine: &Engine, job: &JobRecord) -> Result<CutoverMark, String> {
    let requested_at = Utc::now();
    let client = engine
        .clients
        .client(&job.request.source)
        .await
        .map_err(|e| format!("source: {e}"))?;
    let reply = client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(|e| crate::mongo::describe(&e))?;
    let time = reply.get_timestamp("operationTime").ok().or_else(|| {
        reply
            .get_document("$clusterTime")
            .ok()
            .and_then(|c| c.get_timestamp("clusterTime").ok())
    });
    Ok(CutoverMark {
        requested_at,
        source_operation_time: time.map(ClusterTime::from_timestamp),
    })
}

/// Reasons in the streams that keep a job from being cut over.
pub fn blockers(
    collections: &[Versioned<CollectionRecord>],
    streams: &[Versioned<StreamRecord>],
) -> Vec<String> {
    streams
        .iter()
        .filter(|s| s.value.state == StreamState::Failed)
        .map(|s| {
            format!(
                "replication of {} failed: {}",
                namespace_of(collections, s.value.collection),
                s.value
                    .last_error
                    .as_deref()
                    .unwrap_or("no reason was recorded")
            )
        })
        .collect()
}

fn namespace_of(collections: &[Versioned<CollectionRecord>], index: u32) -> String {
    collections
        .iter()
        .find(|c| c.value.index == index)
        .map(|c| c.value.source.to_string())
        .unwrap_or_else(|| format!("collection {index}"))
}

/// Returns whether a round trip ran after the cutover point: its reply's operation time is at or after
/// the source's time at the request, or, when either time is missing, it started after the
/// request by this service's clock.
pub fn after_mark(
    mark: &CutoverMark,
    reply_time: Option<bson::Timestamp>,
    started_at: chrono::DateTime<Utc>,
) -> bool {
    match (mark.source_operation_time, reply_time) {
        (Some(point), Some(reply)) => ClusterTime::from_timestamp(reply) >= point,
        _ => started_at >= mark.requested_at,
    }
}

/// Returns whether the stream has applied every event up to the cutover point.
pub fn drained_past(stream: &StreamRecord, mark: &CutoverMark, kind: SourceKind) -> bool {
    // An applied event later than the point proves every earlier one was applied.
    if let (Some(point), Some(event)) = (mark.source_operation_time, stream.last_event_cluster_time)
    {
        if event > point {
            return true;
        }
    }
    let needed = if kind == SourceKind::CosmosRu {
        RU_EMPTY_ROUND_TRIPS
    } else {
        1
    };
    stream.drained_round_trips >= needed
}

/// Returns whether cutover must wait for a reconciliation pass on this stream: always on Cosmos DB (RU),
/// whose streams carry no deletes, and after a re-copy, which may have missed deletes.
pub fn needs_final_pass(stream: &StreamRecord, kind: SourceKind) -> bool {
    kind == SourceKind::CosmosRu
        || stream.reconcile.requested
        || stream
            .reconcile
            .pass
            .as_ref()
            .is_some_and(|p| p.reason == ReconcileReason::Recopy)
}

/// Returns whether a cutover reconciliation pass that started after the cutover point has finished.
pub fn final_pass_done(stream: &StreamRecord, mark: &CutoverMark) -> bool {
    let r = &stream.reconcile;
    r.last_reason == Some(ReconcileReason::Cutover)
        && r.last_started_at.is_some_and(|t| t >= mark.requested_at)
}

/// Returns whether the stream task may mark its stream finished.
pub fn stream_ready(stream: &StreamRecord, mark: &CutoverMark, kind: SourceKind) -> bool {
    drained_past(stream, mark, kind)
        && (!needs_final_pass(stream, kind) || final_pass_done(stream, mark))
}

/// The progress of a cutover, for the engine.
#[derive(Debug, PartialEq)]
pub enum CutoverProgress {
    Waiting,
    /// Every stream is finished or stopped and no chunk is being copied: nothing writes to the
    /// target any more, so the job verifies (or completes when verification is off).
    Drained,
    /// The cutover cannot go on; the job fails with this reason and `resume` returns it to
    /// `resume_to`.
    Blocked {
        reason: String,
        resume_to: JobState,
    },
}

/// Decides how far a cutting-over job has come.
pub fn progress(
    collections: &[Versioned<CollectionRecord>],
    chunks: &[Versioned<ChunkRecord>],
    streams: &[Versioned<StreamRecord>],
) -> CutoverProgress {
    if let Some(reason) = blockers(collections, streams).into_iter().next() {
        return CutoverProgress::Blocked {
            reason: format!(
                "cutover stopped because {reason}; resume the job, re-copy the collection, then \
                 request cutover again"
            ),
            resume_to: JobState::Replicating,
        };
    }
    let streams_done = streams
        .iter()
        .all(|s| matches!(s.value.state, StreamState::Finished | StreamState::Stopped));
    // Chunks are copied during cutover only after a failed cutover verification was resumed.
    let copying = chunks.iter().any(|c| {
        matches!(
            c.value.state,
            ChunkState::Waiting | ChunkState::Queued | ChunkState::Running
        )
    });
    if !streams_done || copying {
        return CutoverProgress::Waiting;
    }
    let failed = chunks
        .iter()
        .filter(|c| c.value.state == ChunkState::Failed)
        .count();
    if failed > 0 {
        return CutoverProgress::Blocked {
            reason: format!(
                "{failed} chunk(s) that differed at the cutover verification could not be copied \
                 again; see each collection's lastError, then resume the job to retry them"
            ),
            resume_to: JobState::CuttingOver,
        };
    }
    CutoverProgress::Drained
}

/// Publishes `CutoverReady` the first time `job` can be cut over (`canCutover` in the job view)
/// and records on the job row that it did. The row is written first, so a later pass or a
/// restarted service finds the record and sends nothing. An event still in flight when the
/// process stops is lost, like every job event.
pub async fn announce_ready(
    engine: &Engine,
    mut job: Versioned<JobRecord>,
    collections: &[Versioned<CollectionRecord>],
    streams: &[Versioned<StreamRecord>],
) -> Result<(), EngineError> {
    loop {
        let record = &job.value;
        if record.mode != Mode::Online || record.cutover_ready_at.is_some() {
            return Ok(());
        }
        if !super::view::cutover_blockers(record, collections, streams).is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        job.value.cutover_ready_at = Some(now);
        job.value.updated_at = now;
        match engine.store.replace_job(&job).await {
            Ok(_) => {
                info!(job_id = %job.value.id, "job can be cut over");
                let lag = streams
                    .iter()
                    .filter_map(|s| super::view::lag_seconds(&s.value, now))
                    .reduce(f64::max);
                let details = json!({ "collections": collections.len(), "lagSeconds": lag });
                engine
                    .events
                    .publish(EventType::CutoverReady, &job.value, None, Some(details));
                return Ok(());
            }
            Err(StoreError::Conflict) => match engine.store.job(&job.value.id).await? {
                Some(fresh) => job = fresh,
                None => return Ok(()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ReconcileRecord;
    use chrono::Duration;

    fn mark(seconds: u32) -> CutoverMark {
        CutoverMark {
            requested_at: Utc::now(),
            source_operation_time: Some(ClusterTime {
                seconds,
                increment: 1,
            }),
        }
    }

    fn idle_stream(drained: u32) -> StreamRecord {
        let mut s = StreamRecord::pending("j", 0);
        s.state = StreamState::Running;
        s.idle = true;
        s.drained_round_trips = drained;
        s
    }

    #[test]
    fn reply_after_the_point_counts() {
        let point = mark(100);
        let at = |seconds| {
            Some(bson::Timestamp {
                time: seconds,
                increment: 1,
            })
        };
        assert!(after_mark(&point, at(100), point.requested_at));
        assert!(!after_mark(&point, at(99), point.requested_at));
    }

    #[test]
    fn one_empty_round_trip_drains_mongodb() {
        assert!(drained_past(
            &idle_stream(1),
            &mark(100),
            SourceKind::MongoDb
        ));
        assert!(!drained_past(
            &idle_stream(0),
            &mark(100),
            SourceKind::MongoDb
        ));
    }

    #[test]
    fn cosmos_ru_needs_two_empty_round_trips() {
        assert!(!drained_past(
            &idle_stream(1),
            &mark(100),
            SourceKind::CosmosRu
        ));
        assert!(drained_past(
            &idle_stream(2),
            &mark(100),
            SourceKind::CosmosRu
        ));
    }

    #[test]
    fn later_event_proves_drained_while_busy() {
        let mut s = StreamRecord::pending("j", 0);
        s.last_event_cluster_time = Some(ClusterTime {
            seconds: 101,
            increment: 0,
        });
        assert!(drained_past(&s, &mark(100), SourceKind::MongoDb));
        assert!(!drained_past(&s, &mark(101), SourceKind::MongoDb));
    }

    #[test]
    fn local_clock_is_the_fallback() {
        let mut point = mark(0);
        point.source_operation_time = None;
        let reply = Some(bson::Timestamp {
            time: 5,
            increment: 1,
        });
        let before = point.requested_at - Duration::seconds(1);
        let after = point.requested_at + Duration::seconds(1);
        assert!(!after_mark(&point, reply, before));
        assert!(after_mark(&point, reply, after));
    }

    #[test]
    fn cosmos_ru_waits_for_a_final_pass() {
        let point = mark(100);
        let mut s = idle_stream(2);
        assert!(stream_ready(&s, &point, SourceKind::MongoDb));
        assert!(!stream_ready(&s, &point, SourceKind::CosmosRu));
        s.reconcile = ReconcileRecord {
            last_reason: Some(ReconcileReason::Cutover),
            last_started_at: Some(point.requested_at),
            ..ReconcileRecord::default()
        };
        assert!(stream_ready(&s, &point, SourceKind::CosmosRu));
    }

    fn versioned<T>(value: T) -> Versioned<T> {
        Versioned {
            value,
            etag: String::new(),
        }
    }

    fn stream_in(state: StreamState) -> Versioned<StreamRecord> {
        let mut s = StreamRecord::pending("j", 0);
        s.state = state;
        versioned(s)
    }

    fn chunk_in(state: ChunkState) -> Versioned<ChunkRecord> {
        versioned(ChunkRecord {
            job_id: "j".into(),
            collection: 0,
            index: 0,
            range: String::new(),
            state,
            checkpoint: None,
            planned_documents: 0,
            documents_copied: 0,
            bytes_copied: 0,
            owner: None,
            lease_until: None,
            throttled: 0,
            failures: 0,
            last_error: None,
            started_at: None,
            finished_at: None,
        })
    }

    #[test]
    fn drained_once_every_stream_ended() {
        let done = [chunk_in(ChunkState::Done)];
        let running = [
            stream_in(StreamState::Finished),
            stream_in(StreamState::Running),
        ];
        assert_eq!(progress(&[], &done, &running), CutoverProgress::Waiting);
        let ended = [
            stream_in(StreamState::Finished),
            stream_in(StreamState::Stopped),
        ];
        assert_eq!(progress(&[], &done, &ended), CutoverProgress::Drained);
    }

    #[test]
    fn recopied_chunks_hold_the_verification_back() {
        let ended = [stream_in(StreamState::Finished)];
        for state in [ChunkState::Waiting, ChunkState::Queued, ChunkState::Running] {
            let chunks = [chunk_in(ChunkState::Done), chunk_in(state)];
            assert_eq!(
                progress(&[], &chunks, &ended),
                CutoverProgress::Waiting,
                "{state:?}"
            );
        }
        let failed = [chunk_in(ChunkState::Failed)];
        match progress(&[], &failed, &ended) {
            CutoverProgress::Blocked { resume_to, reason } => {
                assert_eq!(resume_to, JobState::CuttingOver);
                assert!(reason.contains("resume the job"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failed_stream_blocks_back_to_replication() {
        let streams = [stream_in(StreamState::Failed)];
        match progress(&[], &[], &streams) {
            CutoverProgress::Blocked { resume_to, .. } => {
                assert_eq!(resume_to, JobState::Replicating)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recopy_needs_a_pass_on_any_source() {
        let mut s = idle_stream(1);
        s.reconcile.requested = true;
        assert!(needs_final_pass(&s, SourceKind::MongoDb));
    }
}
