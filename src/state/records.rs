use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::jobs::{JobRequest, JobState, Lifecycle, Mode, Namespace, SourceKind};

/// A job as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    pub state: JobState,
    /// The active state `resume` returns to, set while paused or failed.
    #[serde(default)]
    pub resume_to: Option<JobState>,
    /// The request the job was created from (credential references only, no secrets).
    pub request: JobRequest,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Chunks copied at once right now; throttling lowers it, clean chunks raise it up to the
    /// job's `maxParallelChunks`.
    pub concurrency: u32,
    /// The source kind detected at planning time (or forced by the job options).
    #[serde(default)]
    pub source_kind: Option<SourceKind>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Whether every collection finished its initial copy.
    #[serde(default)]
    pub initial_copy_done: bool,
    /// Until when a plan task message counts as in flight.
    #[serde(default)]
    pub plan_lease_until: Option<DateTime<Utc>>,
    /// Id of the queue message whose plan task is running.
    #[serde(default)]
    pub plan_owner: Option<String>,
    /// The last job event that could not be delivered to the events queue or the callback.
    #[serde(default)]
    pub event_delivery_error: Option<String>,
    /// Events whose delivery failed after every retry.
    #[serde(default)]
    pub event_delivery_failures: u64,
    /// The latest verification run; absent until the first run starts.
    #[serde(default)]
    pub verification: Option<super::VerificationRun>,
    /// The point an online job's streams must pass before cutover completes; set when cutover
    /// is accepted.
    #[serde(default)]
    pub cutover: Option<super::CutoverMark>,
    /// The time the job first became able to cut over and `CutoverReady` was published. It is
    /// set once, so a later scheduler pass or a restart does not publish the event again.
    #[serde(default)]
    pub cutover_ready_at: Option<DateTime<Utc>>,
}

impl JobRecord {
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            state: self.state,
            mode: self.mode,
            resume_to: self.resume_to,
            initial_copy_done: self.initial_copy_done,
            verification_running: self
                .verification
                .as_ref()
                .is_some_and(|run| !run.state.is_finished()),
        }
    }
}

/// The phase of one collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CollectionState {
    /// Waiting for planning.
    Pending,
    Planning,
    Copying,
    /// Every chunk is copied.
    Copied,
    Failed,
}

impl CollectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionState::Pending => "pending",
            CollectionState::Planning => "planning",
            CollectionState::Copying => "copying",
            CollectionState::Copied => "copied",
            CollectionState::Failed => "failed",
        }
    }
}

/// One collection of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionRecord {
    pub job_id: String,
    pub index: u32,
    pub source: Namespace,
    pub target: Namespace,
    pub state: CollectionState,
    /// Document count and data size reported by the source when planning started.
    #[serde(default)]
    pub estimated_documents: u64,
    #[serde(default)]
    pub estimated_bytes: u64,
    /// Chunks written so far; final once `planned` is true.
    #[serde(default)]
    pub chunks_total: u32,
    #[serde(default)]
    pub planned: bool,
    /// Planning checkpoint: base64 of a BSON document `{v: <first _id of the open chunk>}`.
    #[serde(default)]
    pub plan_checkpoint: Option<String>,
    /// Documents counted into the open chunk at the checkpoint.
    #[serde(default)]
    pub plan_open_documents: u64,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The index plan, the target's sharding and the index build progress.
    #[serde(default)]
    pub indexes: crate::indexes::CollectionIndexes,
}

/// The phase of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChunkState {
    /// Planned; no task message is in flight for it.
    Waiting,
    /// A task message is in flight; `lease_until` says when to assume it was lost.
    Queued,
    /// A task is copying it; `owner` names the queue message that runs it.
    Running,
    Done,
    Failed,
}

impl ChunkState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkState::Waiting => "waiting",
            ChunkState::Queued => "queued",
            ChunkState::Running => "running",
            ChunkState::Done => "done",
            ChunkState::Failed => "failed",
        }
    }
}

/// One `_id` range of a collection and its copy checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkRecord {
    pub job_id: String,
    pub collection: u32,
    pub index: u32,
    /// base64 of the BSON range document (`ChunkRange::to_document`).
    pub range: String,
    pub state: ChunkState,
    /// base64 of a BSON document `{v: <last _id the target acknowledged>}`.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Documents in the range when it was planned.
    #[serde(default)]
    pub planned_documents: u64,
    #[serde(default)]
    pub documents_copied: u64,
    #[serde(default)]
    pub bytes_copied: u64,
    /// Id of the queue message whose task holds the chunk.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
    /// Source or target round trips that were throttled while copying this chunk.
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
    pub finished_at: Option<DateTime<Utc>>,
}
