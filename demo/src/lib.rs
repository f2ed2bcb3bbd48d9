//! The end-to-end demo of vcore-migrate: real datasets and a BSON type corpus are loaded into an
//! emulated Cosmos DB for MongoDB (RU) account, migrated by the service in standalone mode to an
//! emulated vCore cluster (online, under a live workload, or offline), and compared byte for
//! byte.
//!
//! Layout:
//! - `run`: the demo from start to end.
//! - `json`: JSON text to BSON values with exact number types and key order.
//! - `datasets`: the public datasets from the `vega-datasets` npm package, as documents.
//! - `corpus`: documents covering every BSON type and many `_id` types.
//! - `stack`: the emulators, the seeded source and the in-process service.
//! - `api`: the HTTP client for the job API.
//! - `driver`: creates the job, pauses and resumes it once, cuts an online job over, and waits
//!   for it.
//! - `workload`: the seeded mix of writes an online demo sends to the source, and its runner.
//! - `progress`: one progress bar per collection while the job runs.
//! - `compare`: byte-for-byte comparison of a target collection with its source.
//! - `report`: the copy and comparison tables printed at the end.

pub mod api;
pub mod compare;
pub mod corpus;
pub mod datasets;
pub mod driver;
pub mod json;
pub mod progress;
pub mod report;
pub mod run;
pub mod stack;
pub mod workload;
