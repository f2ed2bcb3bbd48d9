//! Indexes and shard keys of target collections.
//!
//! At planning time each collection gets an index plan from the source's `listIndexes`: every
//! index is created as is, created translated, or skipped, with the reason
//! ([`translate`]). The plan task then shards the target when the job requests it ([`shard`]) and
//! builds the indexes of the before-copy phase: unique ones always, because vCore blocks writes
//! while it builds them and data copied first could fail them, and all of them with the job
//! option `indexes: beforeCopy`. The other indexes are built after the collection's copy by
//! index tasks ([`task`]), one collection per message, checkpointed per index. This module does
//! not copy documents and never drops or replaces a target index.

pub mod build;
pub mod plan;
pub mod shard;
pub mod task;
pub mod translate;

use bson::{doc, Document};
use chrono::{DateTime, Utc};
use mongodb::Client;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::copy::task::CopyError;
use crate::jobs::{JobRequest, Namespace, SourceKind};
use crate::runtime::engine::Engine;
use crate::state::{CollectionRecord, Versioned};
pub use build::{build_index, BuildOutcome};
pub use plan::{BuildPhase, BuildState, IndexAction, PlannedIndex};

/// The index and shard state of one collection, stored in its row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionIndexes {
    /// Whether `plan` was computed from the source.
    #[serde(default)]
    pub planned: bool,
    #[serde(default)]
    pub plan: Vec<PlannedIndex>,
    /// Whether `shardCollection` succeeded on the target for the job's shard key.
    #[serde(default)]
    pub target_sharded: bool,
    /// Id of the queue message whose index task owns the after-copy builds.
    #[serde(default)]
    pub build_owner: Option<String>,
    /// Until when an index task message counts as in flight.
    #[serde(default)]
    pub build_lease_until: Option<DateTime<Utc>>,
}

impl CollectionIndexes {
    /// Returns whether indexes still wait to be built after it.
    pub fn after_copy_pending(&self) -> bool {
        plan::has_open_builds(&self.plan, BuildPhase::AfterCopy)
    }

    /// Sets failed builds back to pending, so that resuming a failed job builds them again
    /// instead of finishing without them.
    pub fn retry_failed(&mut self) {
        for index in &mut self.plan {
            if index.state == BuildState::Failed {
                index.state = BuildState::Pending;
                index.error = None;
                index.finished_at = None;
            }
        }
        self.build_owner = None;
        self.build_lease_until = None;
    }
}

/// Lists a collection's index specifications as the server returns them.
pub async fn list_indexes(
    client: &Client,
    namespace: &Namespace,
) -> Result<Vec<Document>, mongodb::error::Error> {
    let database = client.database(&namespace.database);
    let mut reply = database
        .run_command(doc! { "listIndexes": &namespace.collection })
        .await?;
    let mut specs = Vec::new();
    loop {
        let cursor = reply.get_document("cursor").cloned().unwrap_or_default();
        let batch_field = if cursor.contains_key("firstBatch") {
            "firstBatch"
        } else {
            "nextBatch"
        };
        if let Ok(batch) = cursor.get_array(batch_field) {
            specs.extend(batch.iter().filter_map(|b| b.as_document().cloned()));
        }
        let id = cursor.get_i64("id").unwrap_or(0);
        if id == 0 {
            return Ok(specs);
        }
        reply = database
            .run_command(doc! { "getMore": id, "collection": &namespace.collection })
            .await?;
    }
}

/// Plans the indexes of a pending collection, shards its target when asked, and builds the
/// before-copy indexes. Each step is saved, so a re-run continues where a crash left off.
/// Returns `Ok(Err(reason))` when the collection must fail.
pub async fn prepare_collection(
    engine: &Engine,
    source: &Client,
    target: &Client,
    request: &JobRequest,
    source_kind: SourceKind,
    collection: &mut Versioned<CollectionRecord>,
) -> Result<Result<(), String>, CopyError> {
    let spec = request.collections.get(collection.value.index as usize);
    let src = collection.value.source.clone();
    let dst = collection.value.target.clone();

    if !collection.value.indexes.planned {
        let specs = list_indexes(source, &src).await.map_err(|e| {
            CopyError::Copy(format!(
                "listing the indexes of {src} failed: {}",
                crate::mongo::describe(&e)
            ))
        })?;
        let context = translate::PlanContext {
            source_kind,
            timing: request.options.indexes,
        };
        collection.value.indexes.plan = translate::plan_indexes(&specs, &context);
        collection.value.indexes.planned = true;
        crate::copy::plan_task::save_collection(engine, collection).await?;
        let counts = plan::build_counts(&collection.value.indexes.plan);
        info!(
            planned = counts.planned,
            skipped = counts.skipped,
            "index plan computed"
        );
    }

    // NOTE: MongoDB rejects a unique index on a sharded collection unless the shard key is its
    // prefix; vCore documents no such rule, so unique builds after sharding are tried as planned.
    let shard_key = spec.and_then(|s| s.target_shard_key.as_ref());
    if let (Some(key), false) = (shard_key, collection.value.indexes.target_sharded) {
        let field = match shard::shard_field(key) {
            Ok(field) => field,
            Err(message) => return Ok(Err(message)),
        };
        if let Err(e) = shard::shard_target(target, &dst, field).await {
            let message = crate::mongo::describe(&e);
            if crate::mongo::classify(&e) != crate::mongo::ErrorClass::Permanent {
                return Err(CopyError::Copy(format!(
                    "sharding {dst} failed and will be retried: {message}"
                )));
            }
            return Ok(Err(format!(
                "sharding target collection {dst} on {{{field}: \"hashed\"}} failed: {message}"
            )));
        }
        collection.value.indexes.target_sharded = true;
        crate::copy::plan_task::save_collection(engine, collection).await?;
        info!(field, "target collection sharded");
    }

    build_phase(engine, target, collection, BuildPhase::BeforeCopy, None).await
}

/// Builds every open index of `phase`, saving the row around each build. Stops early, with the
/// remaining builds still pending, once `deadline` has passed. Returns `Ok(Err(reason))` when
/// the target rejected an index, which fails the collection.
pub async fn build_phase(
    engine: &Engine,
    target: &Client,
    collection: &mut Versioned<CollectionRecord>,
    phase: BuildPhase,
    deadline: Option<std::time::Instant>,
) -> Result<Result<(), String>, CopyError> {
    let namespace = collection.value.target.clone();
    loop {
        let Some(position) = collection
            .value
            .indexes
            .plan
            .iter()
            .position(|i| i.phase == phase && i.state.is_open())
        else {
            return Ok(Ok(()));
        };
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(Ok(()));
        }
        let entry = &mut collection.value.indexes.plan[position];
        let Some(spec) = entry.target_document() else {
            entry.state = BuildState::Failed;
            entry.error = Some("the stored target specification is unreadable".into());
            crate::copy::plan_task::save_collection(engine, collection).await?;
            continue;
        };
        let name = entry.name.clone();
        entry.state = BuildState::Building;
        entry.started_at.get_or_insert_with(Utc::now);
        if collection.value.indexes.build_owner.is_some() {
            // An index task renews its lease before each build, so the scheduler does not send
            // a second task while this one is still working through the list.
            collection.value.indexes.build_lease_until = Some(Utc::now() + engine.lease());
        }
        crate::copy::plan_task::save_collection(engine, collection).await?;
        info!(index = %name, "building index");

        let outcome = build_index(target, &namespace, &spec)
            .await
            .map_err(|e| CopyError::Copy(e.to_string()))?;
        let entry = &mut collection.value.indexes.plan[position];
        entry.finished_at = Some(Utc::now());
        let failure = match outcome {
            BuildOutcome::Built => {
                entry.state = BuildState::Built;
                entry.error = None;
                info!(index = %name, "index built");
                None
            }
            BuildOutcome::Conflict(message) => {
                warn!(index = %name, error = %message, "index left as the target has it");
                entry.state = BuildState::Conflict;
                entry.error = Some(message);
                None
            }
            BuildOutcome::Rejected(message) => {
                error!(index = %name, error = %message, "index build rejected");
                entry.state = BuildState::Failed;
                entry.error = Some(message.clone());
                Some(format!("index {name} on {namespace}: {message}"))
            }
        };
        crate::copy::plan_task::save_collection(engine, collection).await?;
        if let Some(reason) = failure {
            return Ok(Err(reason));
        }
    }
}
