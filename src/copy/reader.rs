//! Reads a chunk from the source in `_id` order, ahead of the writer.
//!
//! The reader runs as its own task and hands batches over a small channel, so reading the next
//! batch overlaps with writing the current one. After a throttle or a transient error it reopens
//! the query after the last `_id` it handed over, so nothing is skipped or read twice.

use std::time::Duration;

use bson::{doc, Bson, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::options::Hint;
use mongodb::Collection;
use tokio::sync::mpsc;
use tracing::warn;

use super::range::ChunkRange;
use super::writer::backoff;
use crate::mongo::{classify, ErrorClass};

/// Documents read from the source, in `_id` order.
pub struct Batch {
    pub docs: Vec<RawDocumentBuf>,
    pub bytes: u64,
    /// `_id` of the last document in `docs`.
    pub last_id: Bson,
    /// Source round trips throttled while reading this batch.
    pub throttled: u32,
}

/// An error that ended the read.
#[derive(Debug)]
pub struct ReadError(pub String);

const MAX_TRANSIENT_ATTEMPTS: u32 = 8;

/// Starts reading `range` after `after`, sending batches of up to `batch_size` documents.
pub fn spawn_reader(
    source: Collection<RawDocumentBuf>,
    range: ChunkRange,
    after: Option<Bson>,
    batch_size: u32,
) -> mpsc::Receiver<Result<Batch, ReadError>> {
    spawn_filtered_reader(
        source,
        move |after| Some(range.filter(after)),
        after,
        batch_size,
    )
}

/// Starts reading the documents that `filter(after)` selects, in `_id` order. After an
/// interruption the reader asks `filter` again with the last `_id` it sent; `None` means
/// nothing is left to read.
pub fn spawn_filtered_reader<F>(
    source: Collection<RawDocumentBuf>,
    filter: F,
    after: Option<Bson>,
    batch_size: u32,
) -> mpsc::Receiver<Result<Batch, ReadError>>
where
    F: Fn(Option<&Bson>) -> Option<Document> + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        if let Err(e) = read_range(&source, &filter, after, batch_size, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn read_range(
    source: &Collection<RawDocumentBuf>,
    filter: &impl Fn(Option<&Bson>) -> Option<Document>,
    mut after: Option<Bson>,
    batch_size: u32,
    tx: &mpsc::Sender<Result<Batch, ReadError>>,
) -> Result<(), ReadError> {
    let mut attempts = 0u32;
    let mut throttled = 0u32;
    loop {
        let Some(query) = filter(after.as_ref()) else {
            return Ok(());
        };
        let mut cursor = match source
            .find(query)
            .sort(doc! { "_id": 1 })
            .hint(Hint::Keys(doc! { "_id": 1 }))
            .batch_size(batch_size)
            .await
        {
            Ok(cursor) => cursor,
            Err(e) => {
                wait_or_fail(&e, &mut attempts, &mut throttled).await?;
                continue;
            }
        };

        let mut docs = Vec::with_capacity(batch_size as usize);
        let mut bytes = 0u64;
        loop {
            match cursor.try_next().await {
                Ok(Some(doc)) => {
                    bytes += doc.as_bytes().len() as u64;
                    docs.push(doc);
                    if docs.len() >= batch_size as usize {
                        let batch = take_batch(&mut docs, &mut bytes, &mut throttled)?;
                        after = Some(batch.last_id.clone());
                        attempts = 0;
                        if tx.send(Ok(batch)).await.is_err() {
                            // The writer stopped (pause, time budget, lost lease).
                            return Ok(());
                        }
                    }
                }
                Ok(None) => {
                    if !docs.is_empty() {
                        let batch = take_batch(&mut docs, &mut bytes, &mut throttled)?;
                        let _ = tx.send(Ok(batch)).await;
                    }
                    return Ok(());
                }
                Err(e) => {
                    // Hand over what was read before the error, then reopen after it.
                    if !docs.is_empty() {
                        let batch = take_batch(&mut docs, &mut bytes, &mut throttled)?;
                        after = Some(batch.last_id.clone());
                        if tx.send(Ok(batch)).await.is_err() {
                            return Ok(());
                        }
                    }
                    wait_or_fail(&e, &mut attempts, &mut throttled).await?;
                    break;
                }
            }
        }
    }
}

fn take_batch(
    docs: &mut Vec<RawDocumentBuf>,
    bytes: &mut u64,
    throttled: &mut u32,
) -> Result<Batch, ReadError> {
    let taken = std::mem::take(docs);
    let last = taken
        .last()
        .ok_or_else(|| ReadError("empty batch".into()))?;
    let last_id = match last.get("_id") {
        Ok(Some(value)) => Bson::try_from(value.to_raw_bson())
            .map_err(|e| ReadError(format!("unreadable _id: {e}")))?,
        _ => return Err(ReadError("a source document has no _id".into())),
    };
    let batch = Batch {
        docs: taken,
        bytes: *bytes,
        last_id,
        throttled: *throttled,
    };
    *bytes = 0;
    *throttled = 0;
    Ok(batch)
}

/// Waits before a retry of a throttled or transient read, counting it, or returns the error
/// that ends the read.
pub(crate) async fn wait_or_fail(
    error: &mongodb::error::Error,
    attempts: &mut u32,
    throttled: &mut u32,
) -> Result<(), ReadError> {
    match classify(error) {
        ErrorClass::Throttled(delay) => {
            *throttled += 1;
            warn!(
                delay_ms = delay.as_millis() as u64,
                "source throttled a read; retrying"
            );
            tokio::time::sleep(delay).await;
            Ok(())
        }
        ErrorClass::Transient if *attempts < MAX_TRANSIENT_ATTEMPTS => {
            *attempts += 1;
            warn!(attempt = *attempts, error = %crate::mongo::describe(error), "source read failed; retrying");
            tokio::time::sleep(backoff(*attempts).min(Duration::from_secs(10))).await;
            Ok(())
        }
        _ => Err(ReadError(format!(
            "reading the source failed: {}",
            crate::mongo::describe(error)
        ))),
    }
}
