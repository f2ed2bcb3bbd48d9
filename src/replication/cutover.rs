//! Cutover: the point every stream must pass, what blocks a cutover, and when it is complete.
//!
//! Cutover records the source's current operation time. Each stream task keeps applying events
//! until it has read past that point, runs a final reconciliation where deletes are not streamed,
//! and then marks its stream finished and stops. Once every stream is finished (or stopped
//! because its source collection is gone), [`before_complete`] runs and the job completes. No
//! task writes to the target after that.

use bson::doc;
use chrono::Utc;

use crate::jobs::SourceKind;
use crate::runtime::engine::Engine;
use crate::state::{
    ClusterTime, CollectionRecord, CutoverMark, JobRecord, ReconcileReason, StreamRecord,
    StreamState, Versioned,
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
    Complete,
    /// The cutover cannot finish; the job fails with this reason.
    Blocked(String),
}

/// Decides whether a cutting-over job can complete.
pub async fn progress(
    engine: &Engine,
    job: &JobRecord,
    collections: &[Versioned<CollectionRecord>],
    streams: &[Versioned<StreamRecord>],
) -> CutoverProgress {
    if let Some(reason) = blockers(collections, streams).into_iter().next() {
        return CutoverProgress::Blocked(format!(
            "cutover stopped because {reason}; resume the job, re-copy the collection, then \
             request cutover again"
        ));
    }
    let done = streams
        .iter()
        .all(|s| matches!(s.value.state, StreamState::Finished | StreamState::Stopped));
    if !done {
        return CutoverProgress::Waiting;
    }
    match before_complete(engine, job).await {
        Ok(()) => CutoverProgress::Complete,
        Err(reason) => CutoverProgress::Blocked(reason),
    }
}

/// Runs the last step before an online job completes. Every stream is drained past the cutover
/// point and reconciled by then, and nothing writes to the target any more. An error fails the
/// job with that reason.
// TODO: call the verification step here once it exists; until then cutover completes without
// comparing the collections.
pub async fn before_complete(_engine: &Engine, _job: &JobRecord) -> Result<(), String> {
    Ok(())
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

    #[test]
    fn recopy_needs_a_pass_on_any_source() {
        let mut s = idle_stream(1);
        s.reconcile.requested = true;
        assert!(needs_final_pass(&s, SourceKind::MongoDb));
    }
}
