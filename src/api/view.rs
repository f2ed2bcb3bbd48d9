//! JSON views of jobs for the API, computed from the job, collection and chunk rows.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::indexes::plan::{build_counts, index_views, BuildCounts, IndexView};
use crate::jobs::{allowed_commands, Command, JobState, Mode, SourceKind};
use crate::replication::view::{
    cutover_blockers, stream_view, summary, ReplicationSummary, StreamView,
};
use crate::state::{ChunkRecord, ChunkState, CollectionRecord, JobRecord, StreamRecord, Versioned};

/// One row of `GET /api/jobs`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    pub state: JobState,
    pub percent: f64,
    pub documents_per_second: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub allowed_commands: Vec<Command>,
}

/// `GET /api/jobs`: every job, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobSummary>,
}

/// `GET /api/jobs/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    pub state: JobState,
    pub percent: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub allowed_commands: Vec<Command>,
    pub source_kind: Option<SourceKind>,
    /// Chunks copied at once now (adapted to throttling).
    pub concurrency: u32,
    pub last_error: Option<String>,
    pub documents_copied: u64,
    pub documents_estimated: u64,
    pub bytes_copied: u64,
    pub documents_per_second: f64,
    /// The last job event that could not be delivered, if any.
    pub event_delivery_error: Option<String>,
    pub event_delivery_failures: u64,
    /// Whether `POST /api/jobs/{id}/cutover` would be accepted now.
    pub can_cutover: bool,
    /// Reasons cutover would be rejected now; empty when it would be accepted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cutover_blockers: Vec<String>,
    /// When the online job first became able to cut over, which is when the `cutoverReady`
    /// event was published; absent until then and for offline jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutover_ready_at: Option<DateTime<Utc>>,
    /// Change-stream progress over all collections (online jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub replication: Option<ReplicationSummary>,
    pub collections: Vec<CollectionView>,
    /// The latest verification run (its `trigger` says `cutover` for the one cutover runs);
    /// absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub verification: Option<crate::verify::report::VerificationSummary>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectionView {
    pub source: String,
    pub target: String,
    #[schema(value_type = String, example = "copying")]
    pub state: &'static str,
    pub documents_estimated: u64,
    pub documents_copied: u64,
    pub bytes_copied: u64,
    pub chunks_total: u32,
    pub chunks_completed: u32,
    pub chunks_failed: u32,
    /// Round trips the source or target throttled (Cosmos DB 16500).
    pub throttled_requests: u64,
    /// Whether every chunk is known (planning finished).
    pub planned: bool,
    pub percent: f64,
    pub documents_per_second: f64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Each source index with its action (create, translate, skip), reason and build state.
    pub indexes: Vec<IndexView>,
    /// Build progress over `indexes`.
    pub index_builds: BuildCounts,
    /// Whether the target collection was sharded on the job's `targetShardKey`.
    pub target_sharded: bool,
    /// The collection's change stream (online jobs, once its start point is saved).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub replication: Option<StreamView>,
}

pub fn collection_view(
    collection: &CollectionRecord,
    chunks: &[&ChunkRecord],
    now: DateTime<Utc>,
) -> CollectionView {
    let copied: u64 = chunks.iter().map(|c| c.documents_copied).sum();
    let bytes: u64 = chunks.iter().map(|c| c.bytes_copied).sum();
    let completed = chunks
        .iter()
        .filter(|c| c.state == ChunkState::Done)
        .count() as u32;
    let failed: Vec<&&ChunkRecord> = chunks
        .iter()
        .filter(|c| c.state == ChunkState::Failed)
        .collect();
    let last_error = collection.last_error.clone().or_else(|| {
        chunks
            .iter()
            .filter(|c| c.state != ChunkState::Done)
            .filter_map(|c| {
                c.last_error
                    .as_ref()
                    .map(|e| format!("chunk {}: {e}", c.index))
            })
            .next_back()
    });
    let finished = collection.planned && chunks.iter().all(|c| c.state == ChunkState::Done);
    let percent = if finished {
        100.0
    } else {
        percent(copied, collection.estimated_documents)
    };
    CollectionView {
        source: collection.source.to_string(),
        target: collection.target.to_string(),
        state: collection.state.as_str(),
        documents_estimated: collection.estimated_documents,
        documents_copied: copied,
        bytes_copied: bytes,
        chunks_total: collection.chunks_total,
        chunks_completed: completed,
        chunks_failed: failed.len() as u32,
        throttled_requests: chunks.iter().map(|c| c.throttled).sum(),
        planned: collection.planned,
        percent,
        documents_per_second: rate(copied, collection.started_at, collection.finished_at, now),
        started_at: collection.started_at,
        finished_at: collection.finished_at,
        last_error,
        indexes: index_views(&collection.indexes.plan),
        index_builds: build_counts(&collection.indexes.plan),
        target_sharded: collection.indexes.target_sharded,
        replication: None,
    }
}

pub fn job_detail(
    job: &JobRecord,
    collections: &[Versioned<CollectionRecord>],
    chunks: &[Versioned<ChunkRecord>],
    streams: &[Versioned<StreamRecord>],
) -> JobDetail {
    let now = Utc::now();
    let mut views = Vec::with_capacity(collections.len());
    for collection in collections {
        let own: Vec<&ChunkRecord> = chunks
            .iter()
            .map(|c| &c.value)
            .filter(|c| c.collection == collection.value.index)
            .collect();
        let mut view = collection_view(&collection.value, &own, now);
        view.replication = streams
            .iter()
            .find(|s| s.value.collection == collection.value.index)
            .map(|s| stream_view(&s.value, collection.value.estimated_documents, now));
        views.push(view);
    }

    let stream_views: Vec<&StreamView> = views
        .iter()
        .filter_map(|v| v.replication.as_ref())
        .collect();
    let replication = summary(&stream_views);
    let blockers = cutover_blockers(job, collections, streams);

    let copied: u64 = views.iter().map(|v| v.documents_copied).sum();
    let estimated: u64 = views.iter().map(|v| v.documents_estimated).sum();
    let bytes: u64 = views.iter().map(|v| v.bytes_copied).sum();
    let started = views.iter().filter_map(|v| v.started_at).min();
    let percent = if job.state == JobState::Completed || job.initial_copy_done {
        100.0
    } else {
        percent(copied, estimated)
    };
    JobDetail {
        id: job.id.clone(),
        name: job.name.clone(),
        mode: job.mode,
        state: job.state,
        percent,
        created_at: job.created_at,
        updated_at: job.updated_at,
        finished_at: job.finished_at,
        allowed_commands: allowed_commands(job.lifecycle()),
        source_kind: job.source_kind,
        concurrency: job.concurrency,
        last_error: job.last_error.clone(),
        documents_copied: copied,
        documents_estimated: estimated,
        bytes_copied: bytes,
        documents_per_second: rate(copied, started, job.finished_at, now),
        event_delivery_error: job.event_delivery_error.clone(),
        event_delivery_failures: job.event_delivery_failures,
        can_cutover: blockers.is_empty(),
        cutover_blockers: blockers,
        cutover_ready_at: job.cutover_ready_at,
        replication,
        collections: views,
        verification: None,
    }
}

pub fn job_summary(detail: &JobDetail) -> JobSummary {
    JobSummary {
        id: detail.id.clone(),
        name: detail.name.clone(),
        mode: detail.mode,
        state: detail.state,
        percent: detail.percent,
        documents_per_second: detail.documents_per_second,
        created_at: detail.created_at,
        updated_at: detail.updated_at,
        allowed_commands: detail.allowed_commands.clone(),
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let p = done as f64 * 100.0 / total as f64;
    // Estimates come from collection statistics and can be low; stay below 100 until done.
    (p.min(99.9) * 10.0).round() / 10.0
}

fn rate(
    documents: u64,
    started: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> f64 {
    let Some(started) = started else { return 0.0 };
    let end = finished.unwrap_or(now);
    let seconds = (end - started).num_milliseconds() as f64 / 1000.0;
    if seconds <= 0.0 {
        return 0.0;
    }
    (documents as f64 / seconds).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_caps_below_done() {
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(50, 100), 50.0);
        assert_eq!(percent(150, 100), 99.9);
    }

    #[test]
    fn rate_uses_elapsed_time() {
        let start = Utc::now();
        let end = start + chrono::Duration::seconds(4);
        assert_eq!(rate(400, Some(start), Some(end), end), 100.0);
        assert_eq!(rate(400, None, None, end), 0.0);
    }
}
