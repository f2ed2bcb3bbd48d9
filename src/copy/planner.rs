//! Splits a collection into `_id` chunks.
//!
//! The planner queries the source for each chunk boundary directly: sorted by `_id` from the open
//! chunk's lower bound, the `_id` after `chunkDocuments` skipped ones closes the chunk. The
//! server walks its `_id` index for the skip, so no `_id` crosses the network except the
//! boundaries. A chunk never spans two type brackets: when a bracket has no boundary left, its
//! last chunk runs to the end of the bracket, and the planner moves to the next bracket that has
//! documents. Chunks are written as they close, so copying starts after the first boundary.
//!
//! NOTE: what a large `skip` costs on a real Cosmos DB (RU) account is not measured. The
//! emulator charges every skipped document as a read, so planning costs about one read per
//! document there.

use std::future::IntoFuture;
use std::time::Instant;

use bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::Hint;
use mongodb::Collection;
use tracing::warn;

use super::range::{is_nan, ChunkRange, TypeBracket};
use super::{decode_document, encode_document};

/// A chunk the planner closed.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedChunk {
    pub range: ChunkRange,
    /// Documents in the range when it was planned.
    pub documents: u64,
    /// The planning position after this chunk, or `None` when it is the collection's last.
    pub next: Option<PlanCursor>,
}

/// The planning position: the open chunk's bracket and lower bound. A bracket with no lower
/// bound starts at its smallest value, and may hold no documents.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanCursor {
    pub bracket: TypeBracket,
    pub lower: Option<Bson>,
}

impl PlanCursor {
    /// Returns the cursor that starts a plan: the first bracket in BSON order.
    pub fn start() -> Self {
        PlanCursor {
            bracket: TypeBracket::ALL[0],
            lower: None,
        }
    }

    pub fn encode(&self) -> String {
        encode_document(&self.open_range().to_document())
    }

    pub fn decode(text: &str) -> Option<Self> {
        let range = ChunkRange::from_document(&decode_document(text)?)?;
        Some(PlanCursor {
            bracket: range.bracket,
            lower: range.lower,
        })
    }

    /// Returns the planning position right after a chunk, or `None` after a last-bracket
    /// chunk that runs to its end. After a bracket's last chunk, planning goes on at the next
    /// bracket, which may hold no documents.
    pub fn after(range: &ChunkRange) -> Option<Self> {
        match &range.upper {
            Some(upper) => Some(PlanCursor {
                bracket: range.bracket,
                lower: Some(upper.clone()),
            }),
            None => TypeBracket::ALL
                .into_iter()
                .find(|b| *b > range.bracket)
                .map(|bracket| PlanCursor {
                    bracket,
                    lower: None,
                }),
        }
    }

    /// Returns the range from this cursor to the end of its bracket.
    fn open_range(&self) -> ChunkRange {
        ChunkRange {
            bracket: self.bracket,
            lower: self.lower.clone(),
            upper: None,
        }
    }
}

/// Builds the filter that matches every `_id` in a bracket after `bracket`, or returns `None`
/// for the last bracket.
fn later_brackets(bracket: TypeBracket) -> Option<Document> {
    let aliases: Vec<Bson> = TypeBracket::ALL
        .into_iter()
        .filter(|b| *b > bracket)
        .flat_map(|b| b.type_aliases().iter().map(|a| Bson::String((*a).into())))
        .collect();
    (!aliases.is_empty()).then(|| doc! { "_id": { "$type": aliases } })
}

/// The end state of a planning pass.
#[derive(Debug)]
pub enum PlanProgress {
    /// Every chunk was written.
    Finished,
    /// The time budget ran out; continue from the returned cursor.
    Suspended(PlanCursor),
}

/// Round trips a query retries after transient errors in a row before the plan fails.
/// Throttling is retried until the deadline, which suspends the plan cleanly.
const MAX_TRANSIENT_RETRIES: u32 = 8;

/// Plans chunks of `chunk_documents` from `resume` on (from the start when `None`) and hands
/// each one to `on_chunk`, in `_id` order. Stops at `deadline`, after a chunk or while a
/// throttled query waits, or as soon as `stop` completes unless `on_chunk` is running, and
/// returns where to continue.
pub async fn plan_chunks<F, Fut, E>(
    source: &Collection<Document>,
    chunk_documents: u64,
    resume: Option<PlanCursor>,
    deadline: Instant,
    stop: impl std::future::Future<Output = ()>,
    mut on_chunk: F,
) -> Result<PlanProgress, E>
where
    F: FnMut(PlannedChunk) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: From<mongodb::error::Error>,
{
    let source = source.clone_with_type::<RawDocumentBuf>();
    let chunk_documents = chunk_documents.max(1);
    let mut cursor = resume.unwrap_or_else(PlanCursor::start);
    let mut stop = std::pin::pin!(stop);
    loop {
        // A step only reads, so dropping it when the stop comes loses nothing: the cursor still
        // points after the last chunk handed out.
        let step = tokio::select! {
            biased;
            () = &mut stop => return Ok(PlanProgress::Suspended(cursor)),
            step = step(&source, chunk_documents, &cursor, deadline) => step?,
        };
        let Some(Step { chunk, next }) = step else {
            return Ok(PlanProgress::Suspended(cursor));
        };
        if let Some(chunk) = chunk {
            on_chunk(chunk).await?;
        }
        let Some(next) = next else {
            return Ok(PlanProgress::Finished);
        };
        cursor = next;
        if Instant::now() >= deadline {
            return Ok(PlanProgress::Suspended(cursor));
        }
    }
}

/// The outcome of one planning step: the chunk it closed, if any, and where planning goes on.
struct Step {
    chunk: Option<PlannedChunk>,
    /// `None` once the collection has no documents after the chunk.
    next: Option<PlanCursor>,
}

/// Closes the open chunk at its next boundary, or at the end of its bracket. Returns `None`
/// when the deadline comes while a query waits to be retried.
async fn step(
    source: &Collection<RawDocumentBuf>,
    chunk_documents: u64,
    cursor: &PlanCursor,
    deadline: Instant,
) -> Result<Option<Step>, mongodb::error::Error> {
    let open = cursor.open_range();
    if !cursor.bracket.is_single_valued() {
        let Some(boundary) = retried(deadline, || {
            id_at(source, open.filter(None), chunk_documents)
        })
        .await?
        else {
            return Ok(None);
        };
        // Only the first number may be NaN, so a skip of one or more never lands on it. The
        // check keeps NaN out of chunk bounds even on a server that stores two NaN `_id`s.
        if let Some(upper) = boundary.filter(|id| !is_nan(id)) {
            let next = PlanCursor {
                bracket: cursor.bracket,
                lower: Some(upper.clone()),
            };
            let chunk = PlannedChunk {
                range: ChunkRange {
                    upper: Some(upper),
                    ..open
                },
                documents: chunk_documents,
                next: Some(next.clone()),
            };
            return Ok(Some(Step {
                chunk: Some(chunk),
                next: Some(next),
            }));
        }
    }

    let Some(documents) = retried(deadline, || {
        source.count_documents(open.filter(None)).into_future()
    })
    .await?
    else {
        return Ok(None);
    };
    let next = match later_brackets(cursor.bracket) {
        Some(filter) => {
            let Some(first) = retried(deadline, || id_at(source, filter.clone(), 0)).await? else {
                return Ok(None);
            };
            first.map(|id| PlanCursor {
                bracket: TypeBracket::of(&id),
                lower: None,
            })
        }
        None => None,
    };
    // The range after a boundary always becomes a chunk, even when its documents were deleted
    // since, so every `_id` from the bracket's start on belongs to exactly one chunk.
    let chunk = (documents > 0 || open.lower.is_some()).then(|| PlannedChunk {
        range: open,
        documents,
        next: next.clone(),
    });
    Ok(Some(Step { chunk, next }))
}

/// Runs a source query, retrying it after throttling (after the delay the server's hint gives)
/// or a transient error (after a backoff). Returns `None` when the next attempt would start after `deadline`.
/// Each query retries on its own, so a step's earlier queries are not repeated.
async fn retried<T, Fut>(
    deadline: Instant,
    mut query: impl FnMut() -> Fut,
) -> Result<Option<T>, mongodb::error::Error>
where
    Fut: std::future::Future<Output = Result<T, mongodb::error::Error>>,
{
    let mut throttled = 0u32;
    let mut transient = 0u32;
    loop {
        let error = match query().await {
            Ok(value) => return Ok(Some(value)),
            Err(error) => error,
        };
        let delay = match crate::mongo::classify(&error) {
            crate::mongo::ErrorClass::Throttled(hint) => {
                throttled += 1;
                // A growing floor keeps a tiny or missing hint from spinning.
                hint.max(super::writer::throttle_floor(throttled))
            }
            crate::mongo::ErrorClass::Transient if transient < MAX_TRANSIENT_RETRIES => {
                transient += 1;
                super::writer::backoff(transient)
            }
            _ => return Err(error),
        };
        if Instant::now() + delay >= deadline {
            return Ok(None);
        }
        warn!(
            attempt = throttled + transient,
            delay_ms = delay.as_millis() as u64,
            error = %crate::mongo::describe(&error),
            "reading a chunk boundary failed; planning retries the read"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Returns the `_id` at position `skip` (from zero) among the `_id`s `filter` matches, in order.
async fn id_at(
    source: &Collection<RawDocumentBuf>,
    filter: Document,
    skip: u64,
) -> Result<Option<Bson>, mongodb::error::Error> {
    let row = source
        .find_one(filter)
        .projection(doc! { "_id": 1 })
        .sort(doc! { "_id": 1 })
        .hint(Hint::Keys(doc! { "_id": 1 }))
        .skip(skip)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id = row
        .get("_id")
        .map_err(malformed)?
        .ok_or_else(|| malformed("the row has no _id"))?;
    Bson::try_from(id.to_raw_bson())
        .map(Some)
        .map_err(malformed)
}

/// Reports a source row the driver could not decode as an error that is not retried.
fn malformed(error: impl std::fmt::Display) -> mongodb::error::Error {
    let message = format!(
        "the source returned an _id that is not valid BSON ({error}); check the source \
         collection's documents with the server's own tools"
    );
    let error = <bson::de::Error as serde::de::Error>::custom(message);
    mongodb::error::Error::from(error)
}

#[cfg(test)]
mod tests;
