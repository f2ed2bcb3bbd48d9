//! The meaning of change-stream errors for replication, and the task's error type.

use std::time::Duration;

use mongodb::error::ErrorKind;

use super::reader::ReadError;
use crate::mongo::{classify, ErrorClass};
use crate::runtime::engine::EngineError;
use crate::state::StoreError;

/// Server codes after which the saved position can never be resumed: ChangeStreamHistoryLost
/// (286), ChangeStreamFatalError (280), InvalidResumeToken (260, also what a Cosmos DB RU token
/// of a recreated collection gets) and CappedPositionLost (136, older servers' oplog rollover).
const HISTORY_LOST_CODES: &[i32] = &[286, 280, 260, 136];

/// Server codes that mean the stream as configured is not allowed: BadValue (2, the Cosmos DB RU
/// pipeline-shape error), FailedToParse (9), Unauthorized (13), TypeMismatch (14),
/// IllegalOperation (20), CommandNotSupported (115), unrecognized pipeline stage (40324), unknown
/// `$changeStream` field (40415) and "change streams need a replica set" (40573).
const CONFIGURATION_CODES: &[i32] = &[2, 9, 13, 14, 20, 115, 40324, 40415, 40573];

/// NamespaceNotFound: Cosmos DB RU refuses a stream on a collection that no longer exists.
const NAMESPACE_NOT_FOUND: i32 = 26;

/// Cursor codes after which the stream is simply opened again: CursorNotFound (43) and
/// CursorKilled (237).
const REOPEN_CODES: &[i32] = &[43, 237];

/// The kind of a change-stream failure, which decides what the task does next.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamFailure {
    /// The resume position is gone: the collection must be copied again.
    HistoryLost(String),
    /// The source refuses the stream as configured; retrying cannot help.
    Configuration(String),
    /// The source collection does not exist any more.
    NamespaceGone(String),
    Throttled(Duration),
    /// Open the stream again from the last applied position.
    Transient(String),
    Permanent(String),
}

/// Classifies a failed open or round trip of a change stream.
pub fn classify_read(error: &ReadError) -> StreamFailure {
    let server = match error {
        ReadError::Server(server) => server,
        ReadError::Reply(_) => return StreamFailure::Permanent(error.to_string()),
    };
    let text = error.to_string();
    if let ErrorKind::Command(command) = server.kind.as_ref() {
        if HISTORY_LOST_CODES.contains(&command.code) {
            return StreamFailure::HistoryLost(text);
        }
        if CONFIGURATION_CODES.contains(&command.code) {
            return StreamFailure::Configuration(text);
        }
        if command.code == NAMESPACE_NOT_FOUND {
            return StreamFailure::NamespaceGone(text);
        }
        if REOPEN_CODES.contains(&command.code) {
            return StreamFailure::Transient(text);
        }
    }
    match classify(server) {
        ErrorClass::Throttled(delay) => StreamFailure::Throttled(delay),
        ErrorClass::Transient => StreamFailure::Transient(text),
        ErrorClass::Permanent => StreamFailure::Permanent(text),
    }
}

/// A replication task that could not finish; the queue delivers its message again.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for ReplicationError {
    fn from(e: StoreError) -> Self {
        ReplicationError::Engine(EngineError::Store(e))
    }
}

impl From<crate::storage::StorageError> for ReplicationError {
    fn from(e: crate::storage::StorageError) -> Self {
        ReplicationError::Engine(EngineError::Queue(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_error(code: i32) -> ReadError {
        let reply = bson::doc! { "ok": 0, "code": code, "errmsg": "failed", "codeName": "X" };
        let error: mongodb::error::Error = mongodb::error::ErrorKind::Command(
            bson::from_document(reply).expect("command error shape"),
        )
        .into();
        ReadError::Server(error)
    }

    #[test]
    fn history_loss_is_recognised() {
        for code in [286, 260] {
            assert!(matches!(
                classify_read(&command_error(code)),
                StreamFailure::HistoryLost(_)
            ));
        }
    }

    #[test]
    fn pipeline_shape_error_is_configuration() {
        assert!(matches!(
            classify_read(&command_error(2)),
            StreamFailure::Configuration(_)
        ));
    }

    #[test]
    fn throttle_and_cursor_loss_retry() {
        assert!(matches!(
            classify_read(&command_error(16500)),
            StreamFailure::Throttled(_)
        ));
        assert!(matches!(
            classify_read(&command_error(43)),
            StreamFailure::Transient(_)
        ));
        assert!(matches!(
            classify_read(&command_error(26)),
            StreamFailure::NamespaceGone(_)
        ));
    }
}
