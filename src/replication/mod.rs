//! Online replication: change streams that keep each target collection in step with its source
//! after the copy, reconciliation of deletes that Cosmos DB (RU) streams do not carry, lag and
//! progress, cutover, and re-copying a collection whose replication failed.
//!
//! - `start_point`: opens a collection's stream before its snapshot is read and saves where it
//!   starts.
//! - `pipeline`, `reader`, `position`: the stream's pipeline per source kind, round-trip reads and
//!   opaque resume positions.
//! - `events`, `apply`: one write per document per round trip, applied in bulk.
//! - `stream_task`, `stream_lease`: the queue-triggered, time-boxed task that runs one
//!   collection's stream, and its ownership of the stream row.
//! - `reconcile`, `reconcile_slice`: the `_id` comparison that finds deletes, run inside the
//!   stream task.
//! - `cutover`, `schedule`, `recopy`, `view`: what the engine, the scheduler and the API call.
//!
//! Copying documents is `copy`'s; this module never writes a document the stream did not report,
//! except the deletes reconciliation finds.

pub mod apply;
pub mod cutover;
pub mod errors;
pub mod events;
pub mod pipeline;
pub mod position;
pub mod reader;
pub mod reconcile;
mod reconcile_slice;
pub mod recopy;
pub mod schedule;
pub mod start_point;
pub mod stream_lease;
pub mod stream_task;
pub mod view;

pub use errors::ReplicationError;
