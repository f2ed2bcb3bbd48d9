//! Verification: proving, chunk by chunk, that the target contains exactly the source's
//! documents.
//!
//! A run compares one unit per copy chunk (the chunk's `_id` range) plus one per collection for
//! the `_id` type brackets no chunk covers. In `full` mode both sides of a unit are read in `_id`
//! order and reduced to a count and an order-independent digest of every document's BSON bytes
//! ([`digest`]); when they differ, a merge of both sides by `_id` ([`narrow`]) counts the
//! documents missing on the target, extra on it and different, and keeps a few `_id`s of each.
//! `counts` mode compares counts only. Units run as queue-triggered verify tasks, time-boxed and
//! checkpointed like copy tasks, and read through the copy reader, so throttling on Cosmos DB
//! (RU) sources is handled the same way.
//!
//! This module owns the run (on the job row), the unit rows and their tasks, and the report.
//! It does not decide user commands (the lifecycle table does) or copy anything.
//!
//! A run starts in three ways, and records which as its trigger:
//! - the engine moves an offline job from `copying` to `verifying` with [`begin_run`], in the
//!   same job write;
//! - the engine does the same for an online job in `cuttingOver` once its streams have ended;
//! - `POST /api/jobs/{id}/verify` starts one, beside replication for a `replicating` job.
//!
//! A finished run moves a `verifying` job to `completed` or `verificationFailed`, and leaves any
//! other state as it is.

mod compare;
pub mod digest;
pub mod narrow;
pub mod order;
pub mod report;
pub mod run;
pub mod scope;
pub mod task;

pub use run::{
    advance_verification, begin_run, requeue_affected_chunks, running_units, schedule_verification,
};
pub use task::run_verify_task;

use crate::copy::task::CopyError;
use crate::runtime::engine::EngineError;
use crate::state::StoreError;

/// A verify task that could not finish; the message is retried by the queue.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Verify(String),
}

impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> Self {
        VerifyError::Engine(EngineError::Store(e))
    }
}

impl From<CopyError> for VerifyError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Engine(e) => VerifyError::Engine(e),
            CopyError::Copy(message) => VerifyError::Verify(message),
        }
    }
}
