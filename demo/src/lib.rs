//! The end-to-end demo of vcore-migrate: real datasets and a BSON type corpus are loaded into an
//! emulated Cosmos DB for MongoDB (RU) account, migrated by the service in standalone mode to an
//! emulated vCore cluster, and compared byte for byte.
//!
//! Layout:
//! - `json`: JSON text to BSON values with exact number types and key order.
//! - `datasets`: the public datasets from the `vega-datasets` npm package, as documents.
//! - `corpus`: documents covering every BSON type and many `_id` types.
//! - `compare`: byte-for-byte comparison of a target collection with its source.
//! - `report`: the copy and comparison tables printed at the end.

pub mod compare;
pub mod corpus;
pub mod datasets;
pub mod json;
pub mod report;
