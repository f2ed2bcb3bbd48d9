//! Change-stream rows of online jobs: one per collection, in the `<prefix>streams` table
//! (partition the job id, row the collection index).
//!
//! The stream row lives apart from the collection row so that a stream task saving its resume
//! position after every round trip never races with planning and copy updates of the collection.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, Versioned};

/// The replication phase of one collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamState {
    /// No start point yet: planning (or a re-copy) has not opened the stream.
    Pending,
    /// The start point is saved; the stream waits for the collection's copy, a resume, or a
    /// task message.
    Waiting,
    /// A task message is in flight; after `lease_until` it counts as lost.
    Queued,
    /// A stream task is reading; `owner` names the queue message that runs it.
    Running,
    /// Caught up with the cutover point; no further event is applied.
    Finished,
    /// The source collection was dropped or renamed; `last_error` names which.
    Stopped,
    /// Replication cannot continue (history lost or an invalid token); `last_error` names the
    /// recovery.
    Failed,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Pending => "pending",
            StreamState::Waiting => "waiting",
            StreamState::Queued => "queued",
            StreamState::Running => "running",
            StreamState::Finished => "finished",
            StreamState::Stopped => "stopped",
            StreamState::Failed => "failed",
        }
    }
}

/// A cluster time as the source reports it: seconds since the epoch and an increment that orders
/// operations within one second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterTime {
    pub seconds: u32,
    pub increment: u32,
}

impl ClusterTime {
    pub fn from_timestamp(timestamp: bson::Timestamp) -> Self {
        ClusterTime {
            seconds: timestamp.time,
            increment: timestamp.increment,
        }
    }

    pub fn to_timestamp(self) -> bson::Timestamp {
        bson::Timestamp {
            time: self.seconds,
            increment: self.increment,
        }
    }

    /// Returns the wall-clock second this cluster time falls in.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(self.seconds), 0).unwrap_or_default()
    }
}

/// The reason a reconciliation pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReconcileReason {
    /// The job's `reconcileIntervalSeconds` elapsed.
    Periodic,
    /// The collection was copied again, so deletes missed in between must be found.
    Recopy,
    /// Cutover needs the target to hold no document the source lacks.
    Cutover,
}

/// A reconciliation pass in progress: it walks the target's `_id`s bracket by bracket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilePass {
    pub reason: ReconcileReason,
    pub started_at: DateTime<Utc>,
    /// Index into the BSON type brackets, in sort order.
    pub bracket: u32,
    /// base64 of `{v: <last target _id compared>}` inside the bracket; none at its start.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub ids_checked: u64,
    #[serde(default)]
    pub deletes: u64,
}

/// Reconciliation history and the pass in progress, if any.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRecord {
    #[serde(default)]
    pub pass: Option<ReconcilePass>,
    /// A pass must run once the collection's copy is done, whatever the source kind.
    #[serde(default)]
    pub requested: bool,
    #[serde(default)]
    pub passes_completed: u32,
    /// Target documents deleted because the source no longer had them, over all passes.
    #[serde(default)]
    pub deletes_found: u64,
    #[serde(default)]
    pub last_started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_finished_at: Option<DateTime<Utc>>,
    /// The reason of the last finished pass; cutover waits for a `cutover` pass.
    #[serde(default)]
    pub last_reason: Option<ReconcileReason>,
}

/// One collection's change stream: its resume position, lease and progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    pub job_id: String,
    pub collection: u32,
    pub state: StreamState,
    /// base64 of a BSON document `{resumeAfter: <token>}` or `{startAtOperationTime: <ts>}`.
    /// The token is the server's opaque bytes, stored and sent back unchanged.
    #[serde(default)]
    pub position: Option<String>,
    /// Id of the queue message whose task owns the stream.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
    /// Change events read and applied (after coalescing, one per document per round trip).
    #[serde(default)]
    pub events_applied: u64,
    #[serde(default)]
    pub upserts: u64,
    #[serde(default)]
    pub deletes: u64,
    #[serde(default)]
    pub round_trips: u64,
    /// Cluster time of the last applied event; Cosmos DB (RU) events carry none, so for them it is
    /// the time the round trip that returned the event started.
    #[serde(default)]
    pub last_event_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_event_cluster_time: Option<ClusterTime>,
    /// Every source change made before this instant is on the target: the start of the last
    /// round trip that returned less than a full batch, once its events were applied.
    #[serde(default)]
    pub caught_up_at: Option<DateTime<Utc>>,
    /// Whether the last round trip returned no event.
    #[serde(default)]
    pub idle: bool,
    /// Consecutive round trips without events that ran after the job's cutover point; 0 while
    /// no cutover is in progress.
    #[serde(default)]
    pub drained_round_trips: u32,
    #[serde(default)]
    pub last_round_trip_at: Option<DateTime<Utc>>,
    /// Source or target round trips that were throttled.
    #[serde(default)]
    pub throttled: u64,
    /// Task runs that ended in an error.
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reconcile: ReconcileRecord,
}

impl StreamRecord {
    /// Returns a row waiting for its start point.
    pub fn pending(job_id: &str, collection: u32) -> Self {
        StreamRecord {
            job_id: job_id.to_string(),
            collection,
            state: StreamState::Pending,
            position: None,
            owner: None,
            lease_until: None,
            events_applied: 0,
            upserts: 0,
            deletes: 0,
            round_trips: 0,
            last_event_time: None,
            last_event_cluster_time: None,
            caught_up_at: None,
            idle: false,
            drained_round_trips: 0,
            last_round_trip_at: None,
            throttled: 0,
            failures: 0,
            last_error: None,
            started_at: None,
            reconcile: ReconcileRecord::default(),
        }
    }
}

/// The cutover point that a cutover request recorded, which every stream must pass before the
/// job completes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CutoverMark {
    /// When the request was accepted, by this service's clock.
    pub requested_at: DateTime<Utc>,
    /// The source's operation time when the request was accepted, if the source reports one.
    #[serde(default)]
    pub source_operation_time: Option<ClusterTime>,
}

fn stream_row_key(collection: u32) -> String {
    format!("{collection:05}")
}

impl Store {
    pub async fn stream(
        &self,
        job_id: &str,
        collection: u32,
    ) -> Result<Option<Versioned<StreamRecord>>, StoreError> {
        if !super::is_plain_key(job_id) {
            return Ok(None);
        }
        self.streams.get(job_id, &stream_row_key(collection)).await
    }

    /// Returns every stream row of a job.
    pub async fn streams(&self, job_id: &str) -> Result<Vec<Versioned<StreamRecord>>, StoreError> {
        self.streams.query_partition(job_id).await
    }

    /// Stores a new stream row; fails with [`StoreError::AlreadyExists`] when there is one.
    pub async fn insert_stream(&self, stream: &StreamRecord) -> Result<String, StoreError> {
        self.streams
            .insert(
                &stream.job_id,
                &stream_row_key(stream.collection),
                stream,
                &[("State", stream.state.as_str())],
            )
            .await
    }

    pub async fn replace_stream(
        &self,
        stream: &Versioned<StreamRecord>,
    ) -> Result<String, StoreError> {
        let s = &stream.value;
        self.streams
            .replace(
                &s.job_id,
                &stream_row_key(s.collection),
                s,
                &[("State", s.state.as_str())],
                &stream.etag,
            )
            .await
    }

    /// Deletes every chunk row of one collection, so that planning it again starts from chunk 0.
    pub async fn delete_collection_chunks(
        &self,
        job_id: &str,
        collection: u32,
    ) -> Result<(), StoreError> {
        let partition = super::chunk_partition(job_id, collection);
        for chunk in self.chunks_of_collection(job_id, collection).await? {
            self.chunks
                .client()
                .delete(
                    &partition,
                    &super::chunk_row_key(chunk.value.index),
                    crate::storage::IfMatch::Any,
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_rows_read_with_defaults() {
        let json = r#"{"jobId":"j","collection":2,"state":"waiting"}"#;
        let row: StreamRecord = serde_json::from_str(json).unwrap();
        assert_eq!(row.state, StreamState::Waiting);
        assert_eq!(row.reconcile, ReconcileRecord::default());
        assert!(row.position.is_none());
    }

    #[test]
    fn cluster_times_order_by_seconds_then_increment() {
        let a = ClusterTime {
            seconds: 10,
            increment: 5,
        };
        let b = ClusterTime {
            seconds: 11,
            increment: 1,
        };
        assert!(a < b);
        assert_eq!(ClusterTime::from_timestamp(a.to_timestamp()), a);
        assert_eq!(a.to_datetime().timestamp(), 10);
    }
}
