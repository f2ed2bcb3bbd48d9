//! The start point of a collection's replication, taken before its snapshot is read so that
//! every write made during the copy is replayed afterwards.

use std::time::Duration;

use bson::RawDocumentBuf;
use mongodb::Client;
use tracing::info;

use super::errors::{classify_read, StreamFailure};
use super::position::Position;
use super::reader;
use crate::jobs::SourceKind;
use crate::runtime::engine::Engine;
use crate::state::{CollectionRecord, StoreError, StreamRecord, StreamState};

/// The reason no start point could be saved.
#[derive(Debug, thiserror::Error)]
pub enum StartPointError {
    /// The source cannot stream this collection as configured; planning it again cannot help.
    #[error("{0}")]
    Unsupported(String),
    /// A transient failure; the plan task's message is retried.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the collection's change stream, keeps its first resume token (or, when the server sends
/// none, the reply's operation time) on the stream row, and leaves the row waiting for the copy.
/// Taking it again before the copy starts (a replayed plan step) only moves the start later,
/// which is safe because nothing of the collection has been read yet.
pub async fn record_start_point(
    engine: &Engine,
    source: &Client,
    kind: SourceKind,
    collection: &CollectionRecord,
) -> Result<(), StartPointError> {
    let namespace = &collection.source;
    let handle = source
        .database(&namespace.database)
        .collection::<RawDocumentBuf>(&namespace.collection);
    let failure = |error: reader::ReadError| {
        let reason = format!(
            "opening the change stream of {namespace} failed: {error}; online jobs need change \
             streams on the source (a replica set or Cosmos DB for MongoDB)"
        );
        match classify_read(&error) {
            StreamFailure::Configuration(_) | StreamFailure::HistoryLost(_) => {
                StartPointError::Unsupported(reason)
            }
            _ => StartPointError::Failed(reason),
        }
    };
    // A batch size of 0 returns no events, only the position the stream starts at.
    let mut stream = reader::open(&handle, kind, None, 0, Duration::from_millis(1))
        .await
        .map_err(failure)?;
    let first = match stream.next().await {
        Some(Ok(round)) => round,
        Some(Err(error)) => return Err(failure(error)),
        None => {
            return Err(StartPointError::Failed(format!(
                "the change stream of {namespace} closed as soon as it opened"
            )))
        }
    };
    let position = match (first.resume_token, first.operation_time) {
        (Some(token), _) => Position::ResumeAfter(token),
        (None, Some(time)) => Position::StartAt(time),
        (None, None) => {
            return Err(StartPointError::Unsupported(format!(
                "the source returned neither a resume token nor an operation time when the change \
                 stream of {namespace} opened, so no start point can be saved"
            )))
        }
    };
    save_start(engine, collection, &position).await?;
    info!(collection = %namespace, "change stream start point saved");
    Ok(())
}

async fn save_start(
    engine: &Engine,
    collection: &CollectionRecord,
    position: &Position,
) -> Result<(), StoreError> {
    loop {
        match engine
            .store
            .stream(&collection.job_id, collection.index)
            .await?
        {
            None => {
                let mut row = StreamRecord::pending(&collection.job_id, collection.index);
                row.state = StreamState::Waiting;
                row.position = Some(position.encode());
                match engine.store.insert_stream(&row).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::AlreadyExists) => continue,
                    Err(e) => return Err(e),
                }
            }
            Some(mut row) => {
                row.value.state = StreamState::Waiting;
                row.value.position = Some(position.encode());
                row.value.owner = None;
                row.value.lease_until = None;
                row.value.last_error = None;
                match engine.store.replace_stream(&row).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
