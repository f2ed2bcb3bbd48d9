//! MongoDB clients for sources and targets, and what their errors mean to a migration.

mod clients;
mod errors;

pub use clients::{
    client_options, describe_reference, is_authentication_failure, ClientCache, ConnectError,
    AUTHENTICATION_FAILED,
};
pub use errors::{
    classify, describe, retry_after as retry_after_message, throttle_delay, ErrorClass,
    DUPLICATE_KEY, TOO_MANY_REQUESTS,
};

use bson::doc;
use mongodb::Client;

use crate::jobs::SourceKind;

/// Detects a Cosmos DB for MongoDB (RU) server by its custom command `getLastRequestStatistics`,
/// which other servers answer with CommandNotFound.
pub async fn detect_source_kind(client: &Client, database: &str) -> SourceKind {
    let reply = client
        .database(database)
        .run_command(doc! { "getLastRequestStatistics": 1 })
        .await;
    match reply {
        Ok(_) => SourceKind::CosmosRu,
        Err(_) => SourceKind::MongoDb,
    }
}
