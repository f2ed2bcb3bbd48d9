//! JSON views of replication progress for the job API: per collection and per job.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::jobs::{transition, Command};
use crate::state::{
    CollectionRecord, JobRecord, ReconcileReason, StreamRecord, StreamState, Versioned,
};

/// A stream whose last round trip was empty and ran this recently is drained: lag 0. Round trips
/// wait at most half a second, so a running stream refreshes this far more often.
const IDLE_FRESH_SECONDS: i64 = 5;

/// One collection's replication.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamView {
    pub state: &'static str,
    /// Change events read and applied to the target.
    pub events_applied: u64,
    pub upserts: u64,
    pub deletes: u64,
    /// Cluster time of the last applied event (Cosmos DB RU: when its round trip started).
    pub last_event_time: Option<DateTime<Utc>>,
    /// Seconds between now and the point up to which the target contains every source change.
    /// It is 0 when the stream is idle and drained, and absent before the stream first ran.
    pub lag_seconds: Option<f64>,
    pub round_trips: u64,
    /// Round trips the source or target throttled (Cosmos DB 16500).
    pub throttled_requests: u64,
    pub reconciliation: ReconcileView,
    pub last_error: Option<String>,
}

/// Reconciliation of one collection: deletes found by comparing `_id` sets.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileView {
    pub running: bool,
    /// The reason for the running pass.
    pub reason: Option<ReconcileReason>,
    /// Target `_id`s compared by the running pass.
    pub ids_checked: u64,
    /// Progress of the running pass against the collection's estimated size.
    pub percent: Option<f64>,
    pub passes_completed: u32,
    /// Target documents deleted because the source no longer has them, the running pass
    /// included.
    pub deletes_found: u64,
    pub last_finished_at: Option<DateTime<Utc>>,
}

/// A job's replication, over all its collections.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSummary {
    pub events_applied: u64,
    /// The largest lag of any collection whose lag is known.
    pub lag_seconds: Option<f64>,
    pub last_event_time: Option<DateTime<Utc>>,
    pub deletes_found_by_reconciliation: u64,
    pub streams_running: u32,
    pub streams_failed: u32,
    pub streams_stopped: u32,
}

/// Returns the lag of a stream now, as [`StreamView::lag_seconds`] describes it.
pub fn lag_seconds(stream: &StreamRecord, now: DateTime<Utc>) -> Option<f64> {
    match stream.state {
        StreamState::Finished => return Some(0.0),
        StreamState::Pending | StreamState::Stopped | StreamState::Failed => return None,
        StreamState::Waiting | StreamState::Queued | StreamState::Running => {}
    }
    let fresh = stream
        .last_round_trip_at
        .is_some_and(|t| (now - t).num_seconds() <= IDLE_FRESH_SECONDS);
    if stream.idle && fresh {
        return Some(0.0);
    }
    let caught_up = stream.caught_up_at?;
    let seconds = (now - caught_up).num_milliseconds().max(0) as f64 / 1000.0;
    Some((seconds * 10.0).round() / 10.0)
}

pub fn stream_view(
    stream: &StreamRecord,
    estimated_documents: u64,
    now: DateTime<Utc>,
) -> StreamView {
    let record = &stream.reconcile;
    let pass = record.pass.as_ref();
    let percent = pass.map(|p| {
        if estimated_documents == 0 {
            0.0
        } else {
            let p = p.ids_checked as f64 * 100.0 / estimated_documents as f64;
            (p.min(99.9) * 10.0).round() / 10.0
        }
    });
    StreamView {
        state: stream.state.as_str(),
        events_applied: stream.events_applied,
        upserts: stream.upserts,
        deletes: stream.deletes,
        last_event_time: stream.last_event_time,
        lag_seconds: lag_seconds(stream, now),
        round_trips: stream.round_trips,
        throttled_requests: stream.throttled,
        reconciliation: ReconcileView {
            running: pass.is_some(),
            reason: pass.map(|p| p.reason),
            ids_checked: pass.map_or(0, |p| p.ids_checked),
            percent,
            passes_completed: record.passes_completed,
            deletes_found: record.deletes_found + pass.map_or(0, |p| p.deletes),
            last_finished_at: record.last_finished_at,
        },
        last_error: stream.last_error.clone(),
    }
}

/// Totals over a job's streams; `None` when the job has none.
pub fn summary(views: &[&StreamView]) -> Option<ReplicationSummary> {
    if views.is_empty() {
        return None;
    }
    let count =
        |state: StreamState| views.iter().filter(|v| v.state == state.as_str()).count() as u32;
    Some(ReplicationSummary {
        events_applied: views.iter().map(|v| v.events_applied).sum(),
        lag_seconds: views.iter().filter_map(|v| v.lag_seconds).reduce(f64::max),
        last_event_time: views.iter().filter_map(|v| v.last_event_time).max(),
        deletes_found_by_reconciliation: views.iter().map(|v| v.reconciliation.deletes_found).sum(),
        streams_running: count(StreamState::Running),
        streams_failed: count(StreamState::Failed),
        streams_stopped: count(StreamState::Stopped),
    })
}

/// Lists every reason cutover would be rejected now: the lifecycle table's, then failed streams'.
pub fn cutover_blockers(
    job: &JobRecord,
    collections: &[Versioned<CollectionRecord>],
    streams: &[Versioned<StreamRecord>],
) -> Vec<String> {
    let mut blockers = Vec::new();
    if let Err(rejection) = transition(job.lifecycle(), Command::Cutover) {
        blockers.push(rejection.reason);
    }
    blockers.extend(super::cutover::blockers(collections, streams));
    blockers
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn running() -> StreamRecord {
        let mut s = StreamRecord::pending("j", 0);
        s.state = StreamState::Running;
        s
    }

    #[test]
    fn idle_fresh_stream_has_no_lag() {
        let now = Utc::now();
        let mut s = running();
        s.idle = true;
        s.last_round_trip_at = Some(now - Duration::seconds(1));
        s.caught_up_at = Some(now - Duration::seconds(1));
        assert_eq!(lag_seconds(&s, now), Some(0.0));
    }

    #[test]
    fn busy_stream_lags_by_its_caught_up_point() {
        let now = Utc::now();
        let mut s = running();
        s.last_round_trip_at = Some(now);
        s.caught_up_at = Some(now - Duration::milliseconds(2_500));
        assert_eq!(lag_seconds(&s, now), Some(2.5));
    }

    #[test]
    fn stale_idle_stream_lags() {
        let now = Utc::now();
        let mut s = running();
        s.idle = true;
        s.last_round_trip_at = Some(now - Duration::seconds(60));
        s.caught_up_at = Some(now - Duration::seconds(60));
        assert_eq!(lag_seconds(&s, now), Some(60.0));
    }

    #[test]
    fn lag_is_unknown_before_the_first_round_trip() {
        assert_eq!(lag_seconds(&running(), Utc::now()), None);
        let mut finished = running();
        finished.state = StreamState::Finished;
        assert_eq!(lag_seconds(&finished, Utc::now()), Some(0.0));
    }

    #[test]
    fn summary_takes_the_largest_lag() {
        let now = Utc::now();
        let mut a = running();
        a.caught_up_at = Some(now - Duration::seconds(3));
        a.events_applied = 5;
        let mut b = running();
        b.caught_up_at = Some(now - Duration::seconds(1));
        b.events_applied = 7;
        let views = [stream_view(&a, 0, now), stream_view(&b, 0, now)];
        let refs: Vec<&StreamView> = views.iter().collect();
        let total = summary(&refs).unwrap();
        assert_eq!(total.events_applied, 12);
        assert_eq!(total.lag_seconds, Some(3.0));
        assert_eq!(total.streams_running, 2);
    }
}
