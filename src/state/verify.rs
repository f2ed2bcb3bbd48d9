//! Verification records: the run kept on the job row, and one row per verification unit in
//! `<prefix>verify` (partition `<job id>-<collection index>`, row the unit index).
//!
//! A unit is one copy chunk's `_id` range, or the remainder of a collection: the `_id` type
//! brackets no chunk covers. Unit rows carry the run number, so rows and task messages left by an
//! earlier run are recognised and ignored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{chunk_partition, chunk_row_key, is_plain_key};
use super::{ChunkState, Store, StoreError, Versioned};
use crate::copy::range::TypeBracket;
use crate::jobs::VerificationMode;

/// Unit index of a collection's remainder; copy chunk indexes stay far below it.
pub const REMAINDER_UNIT: u32 = 9_999_999;

/// State of a verification run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunState {
    /// Unit rows are being written.
    Preparing,
    Running,
    /// Every unit matched.
    Passed,
    /// A unit found differences or could not be read.
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Preparing => "preparing",
            RunState::Running => "running",
            RunState::Passed => "passed",
            RunState::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Passed | RunState::Failed)
    }
}

/// Event that started a verification run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunTrigger {
    /// The end of an offline job's copy.
    Copy,
    /// `POST /api/jobs/{id}/verify`.
    Request,
    /// The last step of an online job's cutover.
    Cutover,
}

/// One verification run of a job, stored on the job row so that the run and the job state
/// change together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRun {
    /// Starts at 1 and grows by one per run.
    pub number: u32,
    /// `full` or `counts`; a run never has mode `off`.
    pub mode: VerificationMode,
    pub state: RunState,
    pub trigger: RunTrigger,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Units of the run, known once preparation wrote their rows.
    #[serde(default)]
    pub units_total: u32,
    /// Units that found differences or could not be read, set when the run finishes.
    #[serde(default)]
    pub units_failed: u32,
    /// Differing documents over all units, set when the run finishes.
    #[serde(default)]
    pub differences: u64,
    /// Indexes of the collections the run does not compare because their replication stopped
    /// (the source collection was dropped or renamed), set when the unit rows are written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_collections: Vec<u32>,
}

/// The `_id`s a unit compares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnitScope {
    /// A copy chunk's range: base64 of the BSON range document, as on the chunk row.
    Chunk { range: String },
    /// Every `_id` whose type bracket has no copy chunk in the collection.
    Remainder { brackets: Vec<TypeBracket> },
}

/// The step a full comparison is at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnitPhase {
    /// Both sides are counted and digested independently.
    #[default]
    Digest,
    /// The digests differed: both sides are merged by `_id` to find the differing documents.
    Narrow,
}

/// Count and digest of one side of a unit, as far as it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideDigest {
    pub documents: u64,
    pub bytes: u64,
    /// Hex of the 256-bit sum of the SHA-256 hashes of the documents' BSON bytes.
    #[serde(default)]
    pub digest: String,
    /// base64 of a BSON document `{v: <last _id read>}`.
    #[serde(default)]
    pub after: Option<String>,
    /// Whether the side was read to its end.
    #[serde(default)]
    pub done: bool,
}

/// Kind of difference between a source and a target document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DifferenceKind {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// On both sides with other bytes.
    Different,
}

/// One differing document, named by its `_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub kind: DifferenceKind,
    /// The `_id` as canonical Extended JSON.
    pub id: String,
    /// Whether `id` was cut to keep the row small; a cut `id` is not valid Extended JSON.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub id_truncated: bool,
}

/// Differing documents of a unit, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DifferenceCounts {
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
}

impl DifferenceCounts {
    pub fn total(&self) -> u64 {
        self.missing + self.extra + self.different
    }

    pub fn add(&mut self, kind: DifferenceKind) {
        match kind {
            DifferenceKind::Missing => self.missing += 1,
            DifferenceKind::Extra => self.extra += 1,
            DifferenceKind::Different => self.different += 1,
        }
    }
}

/// One unit of a verification run and its checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyUnitRecord {
    pub job_id: String,
    pub collection: u32,
    /// The copy chunk index, or [`REMAINDER_UNIT`].
    pub index: u32,
    /// The run this row belongs to.
    pub run: u32,
    pub mode: VerificationMode,
    pub scope: UnitScope,
    pub state: ChunkState,
    #[serde(default)]
    pub phase: UnitPhase,
    #[serde(default)]
    pub source: SideDigest,
    #[serde(default)]
    pub target: SideDigest,
    /// Narrowing checkpoint: base64 of `{v: <last _id merged>}`.
    #[serde(default)]
    pub narrow_after: Option<String>,
    /// Differences found by narrowing so far.
    #[serde(default)]
    pub differences: DifferenceCounts,
    /// A bounded sample of the differences, in `_id` order per kind.
    #[serde(default)]
    pub examples: Vec<Difference>,
    /// Set when the unit is done: whether both sides hold the same documents.
    #[serde(default)]
    pub matched: Option<bool>,
    /// Source or target round trips throttled while verifying this unit.
    #[serde(default)]
    pub throttled: u64,
    /// Comparisons started over because the data was still changing (online jobs).
    #[serde(default)]
    pub attempts: u32,
    /// Id of the queue message whose task owns the unit.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
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

impl VerifyUnitRecord {
    /// Creates a unit waiting for its first task.
    pub fn new(
        job_id: &str,
        collection: u32,
        index: u32,
        run: &VerificationRun,
        scope: UnitScope,
    ) -> Self {
        VerifyUnitRecord {
            job_id: job_id.to_string(),
            collection,
            index,
            run: run.number,
            mode: run.mode,
            scope,
            state: ChunkState::Waiting,
            phase: UnitPhase::Digest,
            source: SideDigest::default(),
            target: SideDigest::default(),
            narrow_after: None,
            differences: DifferenceCounts::default(),
            examples: Vec::new(),
            matched: None,
            throttled: 0,
            attempts: 0,
            owner: None,
            lease_until: None,
            failures: 0,
            last_error: None,
            started_at: None,
            finished_at: None,
        }
    }

    /// Returns whether the unit finished, matched or not.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, ChunkState::Done | ChunkState::Failed)
    }

    /// Returns whether the unit found differences or could not be read.
    pub fn has_failed(&self) -> bool {
        self.state == ChunkState::Failed || self.matched == Some(false)
    }
}

impl Store {
    pub async fn verify_unit(
        &self,
        job_id: &str,
        collection: u32,
        index: u32,
    ) -> Result<Option<Versioned<VerifyUnitRecord>>, StoreError> {
        if !is_plain_key(job_id) {
            return Ok(None);
        }
        self.verify
            .get(&chunk_partition(job_id, collection), &chunk_row_key(index))
            .await
    }

    /// Reads every unit row of a job, of any run.
    pub async fn verify_units_of_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<Versioned<VerifyUnitRecord>>, StoreError> {
        if !is_plain_key(job_id) {
            return Ok(Vec::new());
        }
        // Unit partitions are `<job id>-<n>`; '.' follows '-' in ASCII.
        let filter = format!("PartitionKey ge '{job_id}-' and PartitionKey lt '{job_id}.'");
        self.verify.query(&filter).await
    }

    /// Replaces a unit row if no other writer changed it since it was read.
    pub async fn replace_verify_unit(
        &self,
        unit: &Versioned<VerifyUnitRecord>,
    ) -> Result<String, StoreError> {
        let u = &unit.value;
        self.verify
            .replace(
                &chunk_partition(&u.job_id, u.collection),
                &chunk_row_key(u.index),
                u,
                &[],
                &unit.etag,
            )
            .await
    }

    /// Writes unit rows whatever rows exist under their keys, grouped into one batch per
    /// collection partition.
    pub async fn upsert_verify_units(&self, units: &[VerifyUnitRecord]) -> Result<(), StoreError> {
        let mut by_partition: std::collections::BTreeMap<String, Vec<(String, &VerifyUnitRecord)>> =
            std::collections::BTreeMap::new();
        for unit in units {
            by_partition
                .entry(chunk_partition(&unit.job_id, unit.collection))
                .or_default()
                .push((chunk_row_key(unit.index), unit));
        }
        for (partition, rows) in by_partition {
            self.verify.upsert_rows(&partition, &rows).await?;
        }
        Ok(())
    }
}
