//! An in-memory server that speaks the MongoDB wire protocol, for tests and local rehearsals.
//!
//! It imitates a single-node replica-set primary of MongoDB, Azure Cosmos DB for MongoDB (RU) or
//! Azure Cosmos DB for MongoDB (vCore), closely enough that the official drivers work against it
//! unchanged.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emulator = mongo_emulator::start(mongo_emulator::EmulatorOptions::default()).await?;
//! let uri = emulator.uri(); // mongodb://127.0.0.1:PORT/?directConnection=true
//! # let _ = uri;
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Personalities
//! - `mongodb`: a MongoDB 7.0 replica-set primary (wire version 21) named `rs0`.
//! - `cosmos-ru`: Cosmos DB for MongoDB (RU), reported as a 6.0 account named `globaldb`. Change
//!   streams work only per collection, only with the pipeline `$match` on `operationType` in
//!   insert/update/replace followed by `$project` of `_id`, `fullDocument`, `ns` and
//!   `documentKey`, and only with `fullDocument: updateLookup`. Events carry no `operationType`
//!   or `updateDescription`, deletes are not reported, updates to one document within a batch
//!   merge into one event, and every event of a batch has the same resume token (the position
//!   the batch was read from, so resuming from it replays the batch). Documents are
//!   limited to 2 MB. A request-unit budget (`ru_per_second`) makes reads and writes fail with
//!   16500 and `RetryAfterMs=N`, per document inside bulk inserts. A read costs 1 RU per
//!   started kilobyte of each document it scans, returned or not: skipped documents, documents
//!   the filter rejects and the input of a count or `$group` are charged too. `getLastRequestStatistics` reports
//!   the last request's charge.
//! - `vcore`: Cosmos DB for MongoDB (vCore): 25,000 writes per batch, `_id` values up to 2 KB,
//!   and collation options rejected.
//!
//! # Commands for tests
//! - `configureFailPoint` with `failCommand`, as on `mongod` started with test commands.
//! - `shardCollection` (admin) is accepted and recorded; `{emulatorRecordedCommands: 1}` lists
//!   the recorded commands.
//! - `{emulatorSetRuPerSecond: N}` changes the cosmos-ru budget at run time; 0 removes it.
//!
//! # Layout
//! - `wire`: message framing, OP_MSG sections, CRC-32C checksums, and the OP_QUERY handshake.
//! - `server`: the listener, the per-connection loop and [`EmulatorHandle`].
//! - `commands`: the dispatcher and one file per command family.
//! - `query`: BSON comparison order, exact numeric comparison, filters, projection, sort,
//!   update operators and `_id` range planning.
//! - `aggregate`: pipeline stages, expressions and accumulators.
//! - `changes`: the server-wide change log and change-stream cursors.
//! - `store`: collections ordered by `_id` and their indexes.
//! - `failpoint`: `configureFailPoint` with `failCommand`.
//! - `auth`: the server side of SCRAM-SHA-256.
//! - `personality`: what differs between MongoDB, Cosmos DB (RU) and vCore.
//!
//! # Known limits
//! - Data lives in memory only and is lost at shutdown.
//! - Transactions are not supported: a command that starts or continues one fails with 20
//!   IllegalOperation, as do `commitTransaction` and `abortTransaction`.
//! - Retryable writes are not deduplicated: a retried insert can fail with 11000.
//! - Secondary indexes other than unique ones do not speed up queries; only `_id` ranges and
//!   `$in` lists on `_id` avoid a collection scan. Text, geospatial and wildcard index keys are
//!   stored but not used.
//! - Update operators run on decoded documents; positional paths (`a.$`, `a.$[]`),
//!   `arrayFilters` and pipeline-style updates fail with 115 CommandNotSupported.
//! - Find projections support inclusion, exclusion, expressions and `$slice`; `$elemMatch` and
//!   `$meta` projections fail with 2 BadValue.
//! - Aggregation supports `$match`, `$sort`, `$skip`, `$limit`, `$project`, `$addFields`/`$set`,
//!   `$unset`, `$count`, `$group`, `$unwind`, `$replaceRoot`/`$replaceWith`, `$sample`,
//!   `$bucketAuto` (without `granularity`) and `$changeStream`. Any other stage fails with 40324,
//!   and any other expression operator with 168.
//! - Decimal128 values compare exactly, but arithmetic on them goes through a double.
//! - Regular expressions use Rust's `regex` syntax, which lacks PCRE look-around and
//!   backreferences.
//! - `explain`, views, capped collections, time series and collations are not supported.
//! - Commands outside the list in `commands` (for example `mapReduce`, `collMod` or
//!   `serverStatus`) fail with 59 CommandNotFound.
//! - SCRAM-SHA-1 and other mechanisms are not offered; passwords are not SASLprep-normalised.

pub mod aggregate;
pub mod auth;
pub mod changes;
mod commands;
pub mod cursor;
pub mod error;
pub mod failpoint;
mod options;
pub mod personality;
pub mod query;
mod server;
pub mod state;
pub mod store;
pub mod wire;

pub use options::{EmulatorOptions, Personality};
pub use server::{start, EmulatorHandle};
