//! JSON views of verification: the report of `GET /api/jobs/{id}/verification` and the summary
//! in the job view. Units appear as "chunks"; a collection's remainder unit is marked as such.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::run::unit_differences;
use super::scope::Scope;
use crate::jobs::VerificationMode;
use crate::state::{
    ChunkState, CollectionRecord, Difference, JobRecord, RunTrigger, UnitPhase, VerifyUnitRecord,
    Versioned,
};

/// Verification in the job view.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSummary {
    /// `preparing`, `running`, `passed` or `failed`.
    pub state: &'static str,
    pub mode: VerificationMode,
    pub run: u32,
    /// The cause of the run: `copy` (end of an offline copy), `request` or `cutover`.
    pub trigger: RunTrigger,
    pub chunks_total: u32,
    /// Chunks whose comparison finished, matched or not.
    pub chunks_verified: u32,
    /// Chunks that differ or could not be read.
    pub chunks_failed: u32,
    /// Differing documents; in `counts` mode, the sum of the count gaps.
    pub differences: u64,
    /// Collections not compared because their replication stopped (source dropped or renamed).
    pub collections_skipped: u32,
}

/// `GET /api/jobs/{id}/verification`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationReport {
    pub job_id: String,
    /// `notStarted`, or the latest run's state.
    pub state: &'static str,
    pub mode: Option<VerificationMode>,
    pub run: Option<u32>,
    pub trigger: Option<RunTrigger>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub chunks_total: u32,
    pub chunks_verified: u32,
    pub chunks_failed: u32,
    pub differences: u64,
    pub collections_skipped: u32,
    pub collections: Vec<CollectionReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionReport {
    pub source: String,
    pub target: String,
    /// `passed`, `failed` or `running`; `skipped` when the collection's replication stopped
    /// because its source collection was dropped or renamed, so there is nothing to compare.
    pub state: &'static str,
    pub chunks_total: u32,
    pub chunks_verified: u32,
    pub chunks_failed: u32,
    pub source_documents: u64,
    pub target_documents: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    pub chunks: Vec<UnitReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitReport {
    /// The copy chunk index; absent for the remainder.
    pub chunk: Option<u32>,
    /// The `_id`s compared: a chunk's bracket and bounds (relaxed Extended JSON), or the
    /// remainder's brackets.
    pub range: Value,
    /// `pending`, `running`, `matched`, `different` or `failed` (could not be read).
    pub state: &'static str,
    pub phase: UnitPhase,
    pub source_documents: u64,
    pub target_documents: u64,
    /// Whether both sides' digests are equal; absent until both sides are read, and in
    /// `counts` mode.
    pub digests_match: Option<bool>,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    pub examples: Vec<Difference>,
    pub throttled_requests: u64,
    pub last_error: Option<String>,
}

/// Builds the job view's summary of the latest run, or `None` before the first run.
pub fn summary(
    job: &JobRecord,
    units: &[Versioned<VerifyUnitRecord>],
) -> Option<VerificationSummary> {
    let run = job.verification.as_ref()?;
    let own: Vec<&VerifyUnitRecord> = current_units(job, units);
    Some(VerificationSummary {
        state: run.state.as_str(),
        mode: run.mode,
        run: run.number,
        trigger: run.trigger,
        chunks_total: run.units_total.max(own.len() as u32),
        chunks_verified: own.iter().filter(|u| u.is_finished()).count() as u32,
        chunks_failed: own.iter().filter(|u| u.has_failed()).count() as u32,
        differences: own.iter().map(|u| unit_differences(u)).sum(),
        collections_skipped: run.skipped_collections.len() as u32,
    })
}

/// Builds the full report of the latest run.
pub fn report(
    job: &JobRecord,
    collections: &[Versioned<CollectionRecord>],
    units: &[Versioned<VerifyUnitRecord>],
) -> VerificationReport {
    let own = current_units(job, units);
    let run = job.verification.as_ref();
    let mut views = Vec::with_capacity(collections.len());
    for collection in collections {
        let Some(run) = run else {
            break;
        };
        let mut mine: Vec<&VerifyUnitRecord> = own
            .iter()
            .copied()
            .filter(|u| u.collection == collection.value.index)
            .collect();
        mine.sort_by_key(|u| u.index);
        let mut view = collection_report(&collection.value, &mine);
        if run.skipped_collections.contains(&collection.value.index) {
            view.state = "skipped";
        }
        views.push(view);
    }
    let totals = summary(job, units);
    VerificationReport {
        job_id: job.id.clone(),
        state: totals.as_ref().map_or("notStarted", |t| t.state),
        mode: totals.as_ref().map(|t| t.mode),
        run: totals.as_ref().map(|t| t.run),
        trigger: run.map(|r| r.trigger),
        started_at: run.map(|r| r.started_at),
        finished_at: run.and_then(|r| r.finished_at),
        chunks_total: totals.as_ref().map_or(0, |t| t.chunks_total),
        chunks_verified: totals.as_ref().map_or(0, |t| t.chunks_verified),
        chunks_failed: totals.as_ref().map_or(0, |t| t.chunks_failed),
        differences: totals.as_ref().map_or(0, |t| t.differences),
        collections_skipped: totals.as_ref().map_or(0, |t| t.collections_skipped),
        collections: views,
    }
}

fn current_units<'a>(
    job: &JobRecord,
    units: &'a [Versioned<VerifyUnitRecord>],
) -> Vec<&'a VerifyUnitRecord> {
    let number = job.verification.as_ref().map_or(0, |r| r.number);
    units
        .iter()
        .map(|u| &u.value)
        .filter(|u| u.run == number)
        .collect()
}

fn collection_report(
    collection: &CollectionRecord,
    units: &[&VerifyUnitRecord],
) -> CollectionReport {
    let chunks: Vec<UnitReport> = units.iter().map(|u| unit_report(u)).collect();
    let failed = units.iter().filter(|u| u.has_failed()).count() as u32;
    let verified = units.iter().filter(|u| u.is_finished()).count() as u32;
    let state = if verified < units.len() as u32 {
        "running"
    } else if failed > 0 {
        "failed"
    } else {
        "passed"
    };
    CollectionReport {
        source: collection.source.to_string(),
        target: collection.target.to_string(),
        state,
        chunks_total: units.len() as u32,
        chunks_verified: verified,
        chunks_failed: failed,
        source_documents: units.iter().map(|u| u.source.documents).sum(),
        target_documents: units.iter().map(|u| u.target.documents).sum(),
        missing: units.iter().map(|u| u.differences.missing).sum(),
        extra: units.iter().map(|u| u.differences.extra).sum(),
        different: units.iter().map(|u| u.differences.different).sum(),
        chunks,
    }
}

fn unit_report(unit: &VerifyUnitRecord) -> UnitReport {
    let scope = Scope::from_unit(&unit.scope);
    let state = match (unit.state, unit.matched) {
        (ChunkState::Waiting | ChunkState::Queued, _) => "pending",
        (ChunkState::Running, _) => "running",
        (ChunkState::Failed, _) => "failed",
        (ChunkState::Done, Some(true)) => "matched",
        (ChunkState::Done, _) => "different",
    };
    let both_read = unit.source.done && unit.target.done;
    UnitReport {
        chunk: matches!(scope, Some(Scope::Range(_))).then_some(unit.index),
        range: describe_scope(scope.as_ref()),
        state,
        phase: unit.phase,
        source_documents: unit.source.documents,
        target_documents: unit.target.documents,
        digests_match: (unit.mode == VerificationMode::Full && both_read)
            .then(|| unit.source.digest == unit.target.digest),
        missing: unit.differences.missing,
        extra: unit.differences.extra,
        different: unit.differences.different,
        examples: unit.examples.clone(),
        throttled_requests: unit.throttled,
        last_error: unit.last_error.clone(),
    }
}

fn describe_scope(scope: Option<&Scope>) -> Value {
    match scope {
        Some(Scope::Range(range)) => json!({
            "bracket": range.bracket,
            "lower": range.lower.clone().map(short_extjson),
            "upper": range.upper.clone().map(short_extjson),
        }),
        Some(Scope::Remainder(brackets)) => json!({
            "remainder": true,
            "brackets": brackets.to_vec(),
        }),
        None => json!({ "unreadable": true }),
    }
}

/// Renders a bound as relaxed Extended JSON, cut to 200 characters for display.
fn short_extjson(value: bson::Bson) -> String {
    let text = value.into_relaxed_extjson().to_string();
    if text.chars().count() <= 200 {
        return text;
    }
    let head: String = text.chars().take(200).collect();
    format!("{head}... ({} characters)", text.chars().count())
}
