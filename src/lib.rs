//! vcore-migrate: moves MongoDB collections from Azure Cosmos DB for MongoDB (RU), or any
//! MongoDB, to Azure Cosmos DB for MongoDB (vCore) or any MongoDB-compatible cluster.
//!
//! Layout:
//! - `config`: settings read from the environment, and the list of their names.
//! - `events`: job events as CloudEvents, to the events queue and signed HTTPS callbacks.
//! - `api`: the axum router (job routes, health, Functions invocations) and its error type.
//! - `jobs`: the job request, its validation, and the lifecycle table for user commands.
//! - `state`: job, collection and chunk rows on Table Storage with ETag concurrency.
//! - `queue`: task messages on Queue Storage (ids only).
//! - `copy`: chunk planning by `_id`, the copy task, the reader and the idempotent writer.
//! - `indexes`: index plans (translated for vCore), target shard keys and index builds.
//! - `mongo`: driver clients per credential reference and error classification.
//! - `preflight`: the checks that run before a job starts, and their report.
//! - `replication`: change streams, delete reconciliation, lag and cutover for online jobs.
//! - `runtime`: the engine that advances jobs, the Functions contract and standalone workers.
//! - `secrets`: credential references, Key Vault reads, the identity credential, vault host
//!   checks and redaction.
//! - `storage`: Table and Queue Storage clients.
//! - `verify`: verification runs that compare target and source chunk by chunk, and the report.

pub mod api;
pub mod config;
pub mod copy;
pub mod events;
pub mod indexes;
pub mod jobs;
pub mod mongo;
pub mod preflight;
pub mod queue;
pub mod replication;
pub mod runtime;
pub mod secrets;
pub mod state;
pub mod storage;
pub mod verify;
