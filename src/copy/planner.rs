//! Splits a collection into `_id` chunks.
//!
//! The planner reads the source's `_id`s in order (an index-only scan) and closes a chunk every
//! `chunkDocuments` ids and wherever the type bracket changes. Chunks are written as they close,
//! so copying starts before planning ends, and the planner checkpoints the start of the open chunk
//! so a restart re-reads at most one chunk's ids.

use std::time::Instant;

use bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::Hint;
use mongodb::Collection;
use tracing::warn;

use super::range::{ChunkRange, TypeBracket};
use super::{decode_document, encode_document};

/// A chunk the planner closed.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedChunk {
    pub range: ChunkRange,
    pub documents: u64,
}

/// The planning position: the open chunk's bracket and lower bound.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanCursor {
    pub bracket: TypeBracket,
    pub lower: Option<Bson>,
}

impl PlanCursor {
    pub fn encode(&self) -> String {
        let range = ChunkRange {
            bracket: self.bracket,
            lower: self.lower.clone(),
            upper: None,
        };
        encode_document(&range.to_document())
    }

    pub fn decode(text: &str) -> Option<Self> {
        let range = ChunkRange::from_document(&decode_document(text)?)?;
        Some(PlanCursor {
            bracket: range.bracket,
            lower: range.lower,
        })
    }

    /// Builds the query for every `_id` from the open chunk's start to the end of the collection.
    fn filter(&self) -> Document {
        // The open chunk's own filter covers its bracket from `lower` (NaN included when it is
        // the first number chunk); `$type` clauses add every later bracket.
        let open = ChunkRange {
            bracket: self.bracket,
            lower: self.lower.clone(),
            upper: None,
        }
        .filter(None);
        let later: Vec<Bson> = TypeBracket::ALL
            .into_iter()
            .filter(|b| *b > self.bracket)
            .flat_map(|b| b.type_aliases().iter().map(|a| Bson::String((*a).into())))
            .collect();
        if later.is_empty() {
            return open;
        }
        doc! { "$or": [open, { "_id": { "$type": later } }] }
    }
}

/// Chunk sizes start at 1/16 of the requested size (when that is at least this many documents)
/// and double with each chunk, so the first copy task can start while the planner is still
/// reading `_id`s.
const RAMP_MIN_DOCUMENTS: u64 = 1_000;

/// Folds a sorted stream of `_id`s into chunks.
#[derive(Debug)]
pub struct Splitter {
    chunk_documents: u64,
    /// The size limit of the open chunk while sizes ramp up.
    current_limit: u64,
    open: Option<(PlanCursor, u64)>,
}

impl Splitter {
    pub fn new(chunk_documents: u64, resume: Option<PlanCursor>) -> Self {
        let chunk_documents = chunk_documents.max(1);
        let first = chunk_documents / 16;
        // A resumed plan has already written its small chunks.
        let current_limit = if first >= RAMP_MIN_DOCUMENTS && resume.is_none() {
            first
        } else {
            chunk_documents
        };
        Splitter {
            chunk_documents,
            current_limit,
            open: resume.map(|cursor| (cursor, 0)),
        }
    }

    /// Adds the next `_id` in sort order; returns the chunk this closes, if any.
    #[cfg(test)]
    pub fn push(&mut self, id: &Bson) -> Option<PlannedChunk> {
        let result: Result<_, std::convert::Infallible> =
            self.push_with(TypeBracket::of(id), || Ok(id.clone()));
        result.unwrap_or_else(|never| match never {})
    }

    /// Adds the next `_id` in sort order, given its bracket, and returns the chunk this closes,
    /// if any. `decode` runs only when the `_id` becomes a chunk boundary.
    pub fn push_with<E>(
        &mut self,
        bracket: TypeBracket,
        decode: impl FnOnce() -> Result<Bson, E>,
    ) -> Result<Option<PlannedChunk>, E> {
        Ok(match self.open.take() {
            None => {
                self.open = Some((
                    PlanCursor {
                        bracket,
                        lower: None,
                    },
                    1,
                ));
                None
            }
            Some((cursor, count)) if cursor.bracket != bracket => {
                self.open = Some((
                    PlanCursor {
                        bracket,
                        lower: None,
                    },
                    1,
                ));
                Some(close(cursor, None, count))
            }
            Some((cursor, count)) if count >= self.current_limit && !bracket.is_single_valued() => {
                let id = match decode() {
                    Ok(id) => id,
                    Err(e) => {
                        self.open = Some((cursor, count));
                        return Err(e);
                    }
                };
                let next = PlanCursor {
                    bracket,
                    lower: Some(id.clone()),
                };
                self.open = Some((next, 1));
                self.current_limit = (self.current_limit * 2).min(self.chunk_documents);
                Some(close(cursor, Some(id), count))
            }
            Some((cursor, count)) => {
                self.open = Some((cursor, count + 1));
                None
            }
        })
    }

    /// Closes the last chunk at the end of the data.
    pub fn finish(&mut self) -> Option<PlannedChunk> {
        self.open
            .take()
            .filter(|(_, count)| *count > 0)
            .map(|(cursor, count)| close(cursor, None, count))
    }

    /// Returns the open chunk's start, to checkpoint.
    pub fn cursor(&self) -> Option<&PlanCursor> {
        self.open.as_ref().map(|(c, _)| c)
    }
}

fn close(cursor: PlanCursor, upper: Option<Bson>, documents: u64) -> PlannedChunk {
    PlannedChunk {
        range: ChunkRange {
            bracket: cursor.bracket,
            lower: cursor.lower,
            upper,
        },
        documents,
    }
}

/// The end state of a planning pass.
pub enum PlanProgress {
    /// Every `_id` was read.
    Finished,
    /// The time budget ran out; continue from the returned cursor.
    Suspended(PlanCursor),
}

/// Round trips a scan retries after throttling or a transient error before it fails.
const MAX_SCAN_RETRIES: u32 = 60;

/// Reads `_id`s from `resume` on and hands each closed chunk to `on_chunk`, in order. Stops at
/// `deadline` at a chunk boundary. A throttled or transient read error reopens the scan at the
/// open chunk's start after the server's hint or a backoff, so no chunk is written twice.
pub async fn scan_ids<F, Fut, E>(
    source: &Collection<Document>,
    chunk_documents: u64,
    resume: Option<PlanCursor>,
    deadline: Instant,
    mut on_chunk: F,
) -> Result<PlanProgress, E>
where
    F: FnMut(PlannedChunk) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: From<mongodb::error::Error>,
{
    let mut start = resume;
    let mut splitter = Splitter::new(chunk_documents, start.clone());
    let mut retries = 0u32;
    loop {
        let error = match scan_from(
            source,
            start.as_ref(),
            &mut splitter,
            deadline,
            &mut on_chunk,
        )
        .await
        {
            Ok(progress) => return Ok(progress),
            Err(ScanError::Callback(e)) => return Err(e),
            Err(ScanError::Read(e)) => e,
        };
        retries += 1;
        let delay = match crate::mongo::classify(&error) {
            crate::mongo::ErrorClass::Throttled(delay) if retries <= MAX_SCAN_RETRIES => delay,
            crate::mongo::ErrorClass::Transient if retries <= 8 => super::writer::backoff(retries),
            _ => return Err(error.into()),
        };
        if Instant::now() + delay >= deadline {
            if let Some(open) = splitter.cursor() {
                return Ok(PlanProgress::Suspended(open.clone()));
            }
        }
        warn!(
            attempt = retries,
            delay_ms = delay.as_millis() as u64,
            error = %crate::mongo::describe(&error),
            "reading source _ids failed; planning retries from the open chunk"
        );
        tokio::time::sleep(delay).await;
        start = splitter.cursor().cloned().or(start);
        splitter = Splitter::new(chunk_documents, start.clone());
    }
}

/// `_id`s per batch of the planner's scan.
const ID_SCAN_BATCH: u32 = 5_000;

/// Reports a source row the driver could not decode as a read error that is not retried.
fn malformed<E>(error: impl std::fmt::Display) -> ScanError<E> {
    let message = format!(
        "the source returned an _id that is not valid BSON ({error}); check the source \
         collection's documents with the server's own tools"
    );
    let error = <bson::de::Error as serde::de::Error>::custom(message);
    ScanError::Read(mongodb::error::Error::from(error))
}

/// A scan failure: a source read, which may be retried, or the chunk callback's own error.
enum ScanError<E> {
    Read(mongodb::error::Error),
    Callback(E),
}

async fn scan_from<F, Fut, E>(
    source: &Collection<Document>,
    start: Option<&PlanCursor>,
    splitter: &mut Splitter,
    deadline: Instant,
    on_chunk: &mut F,
) -> Result<PlanProgress, ScanError<E>>
where
    F: FnMut(PlannedChunk) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let filter = start.map(PlanCursor::filter).unwrap_or_default();
    // Rows stay raw: decoding each `{_id}` into a `Document` cost more than the server's reply
    // in the copy benchmark, and only chunk boundaries need a decoded `_id`.
    let mut cursor = source
        .clone_with_type::<RawDocumentBuf>()
        .find(filter)
        .projection(doc! { "_id": 1 })
        .sort(doc! { "_id": 1 })
        .hint(Hint::Keys(doc! { "_id": 1 }))
        .batch_size(ID_SCAN_BATCH)
        .await
        .map_err(ScanError::Read)?;
    while cursor.advance().await.map_err(ScanError::Read)? {
        let Some(id) = cursor.current().get("_id").map_err(malformed)? else {
            continue;
        };
        let bracket = TypeBracket::of_type(id.element_type());
        let decode = || Bson::try_from(id.to_raw_bson()).map_err(malformed);
        if let Some(chunk) = splitter.push_with(bracket, decode)? {
            on_chunk(chunk).await.map_err(ScanError::Callback)?;
            if Instant::now() >= deadline {
                if let Some(open) = splitter.cursor() {
                    return Ok(PlanProgress::Suspended(open.clone()));
                }
            }
        }
    }
    if let Some(chunk) = splitter.finish() {
        on_chunk(chunk).await.map_err(ScanError::Callback)?;
    }
    Ok(PlanProgress::Finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;

    fn split(ids: &[Bson], per_chunk: u64) -> Vec<PlannedChunk> {
        let mut splitter = Splitter::new(per_chunk, None);
        let mut chunks: Vec<PlannedChunk> = ids.iter().filter_map(|id| splitter.push(id)).collect();
        chunks.extend(splitter.finish());
        chunks
    }

    #[test]
    fn chunks_cut_by_count() {
        let ids: Vec<Bson> = (0..10).map(Bson::Int32).collect();
        let chunks = split(&ids, 4);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].range.lower, None);
        assert_eq!(chunks[0].range.upper, Some(Bson::Int32(4)));
        assert_eq!(chunks[1].range.lower, Some(Bson::Int32(4)));
        assert_eq!(chunks[2].range.upper, None);
        let total: u64 = chunks.iter().map(|c| c.documents).sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn chunks_never_span_brackets() {
        let ids = vec![
            Bson::Null,
            Bson::Int32(1),
            Bson::Double(2.5),
            Bson::String("a".into()),
            Bson::String("b".into()),
            Bson::ObjectId(ObjectId::new()),
            Bson::Boolean(true),
        ];
        let chunks = split(&ids, 100);
        let brackets: Vec<TypeBracket> = chunks.iter().map(|c| c.range.bracket).collect();
        assert_eq!(
            brackets,
            vec![
                TypeBracket::Null,
                TypeBracket::Number,
                TypeBracket::String,
                TypeBracket::ObjectId,
                TypeBracket::Bool
            ]
        );
        assert!(chunks.iter().all(|c| c.range.upper.is_none()));
    }

    #[test]
    fn resume_filter_covers_later_brackets() {
        let cursor = PlanCursor {
            bracket: TypeBracket::Number,
            lower: Some(Bson::Int32(5)),
        };
        let filter = cursor.filter();
        let branches = filter.get_array("$or").unwrap();
        assert_eq!(branches.len(), 2);
        let decoded = PlanCursor::decode(&cursor.encode()).unwrap();
        assert_eq!(decoded, cursor);
    }

    #[test]
    fn large_chunks_ramp_up() {
        let ids: Vec<Bson> = (0..200_000).map(Bson::Int32).collect();
        let chunks = split(&ids, 64_000);
        let sizes: Vec<u64> = chunks.iter().map(|c| c.documents).collect();
        assert_eq!(sizes[..4], [4_000, 8_000, 16_000, 32_000]);
        assert!(sizes[4..].iter().all(|s| *s <= 64_000));
        assert_eq!(sizes.iter().sum::<u64>(), 200_000);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(split(&[], 10).is_empty());
    }
}
