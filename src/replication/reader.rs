//! Reads a collection's change stream one server round trip at a time.
//!
//! The driver's `ChangeStream` hands out events one by one and hides where a server batch ends,
//! so it cannot tell when to save the `postBatchResumeToken` of an empty batch. The stream is
//! therefore opened as a plain `aggregate` with a `$changeStream` stage and read through the
//! driver's raw batch cursor, which returns each server reply (the `aggregate`, then one per
//! `getMore`) whole: its events, its `postBatchResumeToken` and its `operationTime`. The driver's
//! automatic resume is not needed: after any error the task reopens from its last applied
//! position.

use std::time::Duration;

use bson::{Bson, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp};
use futures::StreamExt;
use mongodb::raw_batch_cursor::RawBatchCursor;
use mongodb::Collection;

use super::pipeline::pipeline;
use super::position::Position;
use crate::jobs::SourceKind;

/// One server reply of the change stream.
#[derive(Debug, Default)]
pub struct RoundTrip {
    pub events: Vec<RawDocumentBuf>,
    /// The token to resume after this round trip: the `postBatchResumeToken`, or else the last
    /// event's `_id`.
    pub resume_token: Option<Bson>,
    /// The source's `operationTime` in the reply, when it sends one.
    pub operation_time: Option<Timestamp>,
}

/// A failed read: the server's error, or a reply without the expected fields.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}", crate::mongo::describe(.0))]
    Server(mongodb::error::Error),
    #[error("the source sent an unreadable change-stream reply: {0}")]
    Reply(String),
}

/// An open change stream.
pub struct StreamReader {
    cursor: RawBatchCursor,
}

/// Opens the change stream of `source` at `position`; each `getMore` waits up to `max_await` for
/// events and returns at most `batch_size` of them.
pub async fn open(
    source: &Collection<RawDocumentBuf>,
    kind: SourceKind,
    position: Option<&Position>,
    batch_size: u32,
    max_await: Duration,
) -> Result<StreamReader, ReadError> {
    let cursor = source
        .aggregate(pipeline(kind, position))
        .batch_size(batch_size)
        .max_await_time(max_await)
        .batch()
        .await
        .map_err(ReadError::Server)?;
    Ok(StreamReader { cursor })
}

impl StreamReader {
    /// Returns the next round trip: first the reply of the `aggregate` that opened the stream,
    /// then one `getMore` reply per call. `None` means the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<RoundTrip, ReadError>> {
        let batch = self.cursor.next().await?;
        Some(match batch {
            Ok(batch) => parse_reply(batch.as_raw_document()),
            Err(error) => Err(ReadError::Server(error)),
        })
    }
}

/// Reads events, the resume token and the operation time from a cursor reply.
pub fn parse_reply(reply: &RawDocument) -> Result<RoundTrip, ReadError> {
    let bad = |e: bson::raw::Error| ReadError::Reply(e.to_string());
    let cursor = reply
        .get_document("cursor")
        .map_err(|e| ReadError::Reply(format!("the reply has no cursor document ({e})")))?;
    let batch = match cursor.get("firstBatch").map_err(bad)? {
        Some(batch) => batch,
        None => cursor
            .get("nextBatch")
            .map_err(bad)?
            .ok_or_else(|| ReadError::Reply("the cursor has no batch".into()))?,
    };
    let RawBsonRef::Array(batch) = batch else {
        return Err(ReadError::Reply("the cursor batch is not an array".into()));
    };

    let mut events = Vec::new();
    for event in batch {
        match event.map_err(bad)? {
            RawBsonRef::Document(event) => events.push(event.to_raw_document_buf()),
            _ => return Err(ReadError::Reply("a change event is not a document".into())),
        }
    }
    let token = match cursor.get("postBatchResumeToken").map_err(bad)? {
        Some(token) => Some(token.to_raw_bson()),
        None => events
            .last()
            .and_then(|event| event.get("_id").ok().flatten())
            .map(|id| id.to_raw_bson()),
    };
    let resume_token = token
        .map(Bson::try_from)
        .transpose()
        .map_err(|e| ReadError::Reply(format!("unreadable resume token: {e}")))?;
    let operation_time = match reply.get("operationTime").map_err(bad)? {
        Some(RawBsonRef::Timestamp(time)) => Some(time),
        _ => None,
    };
    Ok(RoundTrip {
        events,
        resume_token,
        operation_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn post_batch_token_is_preferred() {
        let time = Timestamp {
            time: 3,
            increment: 4,
        };
        let reply = rawdoc! {
            "cursor": {
                "nextBatch": [ { "_id": { "_data": "a" }, "operationType": "insert" } ],
                "postBatchResumeToken": { "_data": "b" },
                "id": 5_i64,
            },
            "operationTime": time,
            "ok": 1.0,
        };
        let round = parse_reply(&reply).unwrap();
        assert_eq!(round.events.len(), 1);
        assert_eq!(
            round.resume_token,
            Some(Bson::Document(bson::doc! { "_data": "b" }))
        );
        assert_eq!(round.operation_time, Some(time));
    }

    #[test]
    fn last_event_token_without_post_batch_token() {
        let reply = rawdoc! {
            "cursor": {
                "firstBatch": [ { "_id": { "_data": "a" } }, { "_id": { "_data": "c" } } ],
                "id": 5_i64,
            },
            "ok": 1.0,
        };
        let round = parse_reply(&reply).unwrap();
        assert_eq!(
            round.resume_token,
            Some(Bson::Document(bson::doc! { "_data": "c" }))
        );
        assert_eq!(round.operation_time, None);
    }

    #[test]
    fn empty_batch_without_token_keeps_none() {
        let reply = rawdoc! { "cursor": { "nextBatch": [], "id": 5_i64 }, "ok": 1.0 };
        let round = parse_reply(&reply).unwrap();
        assert!(round.events.is_empty());
        assert!(round.resume_token.is_none());
    }

    #[test]
    fn reply_without_cursor_is_an_error() {
        assert!(parse_reply(&rawdoc! { "ok": 1.0 }).is_err());
    }
}
