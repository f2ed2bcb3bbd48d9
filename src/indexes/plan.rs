//! The index plan of one collection: each source index, what the target gets, and why.
//!
//! The plan is stored in the collection row and shown in the job. Specifications are kept as
//! base64 BSON so that option values keep their exact BSON types (an `Int64`
//! `expireAfterSeconds` stays an `Int64`).

use bson::{Bson, Document};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::copy::{decode_document, encode_document};

/// The plan's action for one source index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum IndexAction {
    /// Create the source specification unchanged.
    Create,
    /// Create a changed specification; the reason explains what changed and what it costs.
    Translate,
    /// Do not create it; the reason explains why and what the user loses.
    Skip,
}

/// When an index is built relative to the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum BuildPhase {
    BeforeCopy,
    AfterCopy,
    /// Skipped indexes are never built.
    Never,
}

/// Progress of one index build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum BuildState {
    /// Waiting for its phase.
    Pending,
    /// A `createIndexes` command was sent and has not returned yet.
    Building,
    /// The target has the index, built by this job or found with the same specification.
    Built,
    /// The target already has an index with this name and a different specification, which
    /// was left in place.
    Conflict,
    /// The target rejected the build; `error` explains why.
    Failed,
    /// The plan skips this index.
    Skipped,
}

impl BuildState {
    /// Returns whether the build still has work to do.
    pub fn is_open(self) -> bool {
        matches!(self, BuildState::Pending | BuildState::Building)
    }
}

/// One source index and its fate on the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedIndex {
    pub name: String,
    /// base64 BSON of the specification `listIndexes` returned on the source.
    pub source_spec: String,
    /// base64 BSON of the specification sent to the target; absent when skipped.
    #[serde(default)]
    pub target_spec: Option<String>,
    pub action: IndexAction,
    /// The explanation of a translation or skip, including what the target loses.
    #[serde(default)]
    pub reason: Option<String>,
    pub unique: bool,
    pub phase: BuildPhase,
    pub state: BuildState,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl PlannedIndex {
    pub fn source_document(&self) -> Option<Document> {
        decode_document(&self.source_spec)
    }

    pub fn target_document(&self) -> Option<Document> {
        self.target_spec.as_deref().and_then(decode_document)
    }

    pub(crate) fn new(
        source: &Document,
        name: &str,
        decision: super::translate::Decision,
        phase: BuildPhase,
    ) -> Self {
        let unique = matches!(source.get("unique"), Some(Bson::Boolean(true)));
        let (action, target, reason) = match decision {
            super::translate::Decision::Create(spec) => (IndexAction::Create, Some(spec), None),
            super::translate::Decision::Translate(spec, reason) => {
                (IndexAction::Translate, Some(spec), Some(reason))
            }
            super::translate::Decision::Skip(reason) => (IndexAction::Skip, None, Some(reason)),
        };
        let skipped = action == IndexAction::Skip;
        PlannedIndex {
            name: name.to_string(),
            source_spec: encode_document(source),
            target_spec: target.as_ref().map(encode_document),
            action,
            reason,
            unique,
            phase: if skipped { BuildPhase::Never } else { phase },
            state: if skipped {
                BuildState::Skipped
            } else {
                BuildState::Pending
            },
            error: None,
            started_at: None,
            finished_at: None,
        }
    }
}

/// Returns whether any index of the plan still waits to be built in `phase`.
pub fn has_open_builds(plan: &[PlannedIndex], phase: BuildPhase) -> bool {
    plan.iter().any(|i| i.phase == phase && i.state.is_open())
}

/// Counts of build states, for progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildCounts {
    /// Indexes the plan creates (created as is or translated).
    pub planned: u32,
    pub built: u32,
    pub pending: u32,
    pub failed: u32,
    pub conflicts: u32,
    pub skipped: u32,
}

pub fn build_counts(plan: &[PlannedIndex]) -> BuildCounts {
    let mut counts = BuildCounts::default();
    for index in plan {
        if index.action != IndexAction::Skip {
            counts.planned += 1;
        }
        match index.state {
            BuildState::Pending | BuildState::Building => counts.pending += 1,
            BuildState::Built => counts.built += 1,
            BuildState::Conflict => counts.conflicts += 1,
            BuildState::Failed => counts.failed += 1,
            BuildState::Skipped => counts.skipped += 1,
        }
    }
    counts
}

/// One index as the API shows it, with specifications as relaxed extended JSON.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexView {
    pub name: String,
    pub action: IndexAction,
    pub reason: Option<String>,
    pub unique: bool,
    pub phase: BuildPhase,
    pub state: BuildState,
    pub error: Option<String>,
    #[schema(value_type = Object)]
    pub source_spec: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub target_spec: Option<serde_json::Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub fn index_views(plan: &[PlannedIndex]) -> Vec<IndexView> {
    let json = |d: Document| Bson::Document(d).into_relaxed_extjson();
    plan.iter()
        .map(|i| IndexView {
            name: i.name.clone(),
            action: i.action,
            reason: i.reason.clone(),
            unique: i.unique,
            phase: i.phase,
            state: i.state,
            error: i.error.clone(),
            source_spec: i
                .source_document()
                .map(json)
                .unwrap_or(serde_json::Value::Null),
            target_spec: i.target_document().map(json),
            started_at: i.started_at,
            finished_at: i.finished_at,
        })
        .collect()
}
