//! Idempotent batch writes to the target.
//!
//! A batch goes out as one unordered bulk insert. A duplicate key on `_id` means an earlier run
//! already wrote that document, after a crash or in a throttled batch the server partly
//! committed. The writer then reads the target's copy and replaces it when its bytes differ from
//! the source, so a stale version from an earlier attempt is overwritten. Throttled documents
//! are retried alone after the server's hint.

use std::time::{Duration, Instant};

use bson::{doc, Bson, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::Collection;
use tracing::warn;

use crate::mongo::{
    classify, describe, retry_after_message, ErrorClass, DUPLICATE_KEY, TOO_MANY_REQUESTS,
};

/// Counts of one batch write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub inserted: u64,
    /// Documents whose `_id` was already on the target with the same bytes.
    pub already_present: u64,
    /// Documents whose `_id` was on the target with other bytes, now replaced.
    pub replaced: u64,
    /// Round trips that the target throttled.
    pub throttled: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the task's time budget ran out while the target was throttling or unavailable")]
    DeadlineReached,
    #[error(
        "the target kept throttling (16500 TooManyRequests, HTTP 429) through {0} retries of one \
         batch; raise the target's throughput or lower the job's maxParallelChunks, then resume"
    )]
    Throttled(u32),
    #[error("the target rejected the document with _id {id}: {message} (code {code})")]
    Rejected {
        id: String,
        code: i32,
        message: String,
    },
    #[error("writing to the target failed: {0}")]
    Failed(String),
}

const MAX_TRANSIENT_ATTEMPTS: u32 = 8;

/// Consecutive throttled round trips of one batch before the write gives up.
pub const MAX_THROTTLED_ATTEMPTS: u32 = 60;

/// Inserts `docs` so that each ends up on the target once and byte-identical, retrying
/// throttled and transient failures until `deadline` or the retry limits.
pub async fn write_batch(
    target: &Collection<RawDocumentBuf>,
    docs: Vec<RawDocumentBuf>,
    deadline: Instant,
) -> Result<WriteOutcome, WriteError> {
    let mut outcome = WriteOutcome::default();
    let mut pending = docs;
    let mut transient_attempts = 0u32;
    let mut throttled_attempts = 0u32;

    while !pending.is_empty() {
        let sent = pending.len() as u64;
        let error = match target.insert_many(&pending).ordered(false).await {
            Ok(_) => {
                outcome.inserted += sent;
                return Ok(outcome);
            }
            Err(error) => error,
        };

        if let ErrorKind::InsertMany(failure) = error.kind.as_ref() {
            let write_errors = failure.write_errors.as_deref().unwrap_or_default();
            let mut retry = Vec::new();
            let mut duplicates = Vec::new();
            let mut delay = Duration::ZERO;
            for write_error in write_errors {
                let Some(doc) = pending.get(write_error.index) else {
                    continue;
                };
                if write_error.code == DUPLICATE_KEY && is_id_duplicate(&write_error.message) {
                    duplicates.push(doc.clone());
                } else if write_error.code == TOO_MANY_REQUESTS {
                    delay = delay.max(retry_after_message(&write_error.message));
                    retry.push(doc.clone());
                } else {
                    return Err(WriteError::Rejected {
                        id: describe_id(doc),
                        code: write_error.code,
                        message: write_error.message.clone(),
                    });
                }
            }
            if failure.write_concern_error.is_some() && write_errors.is_empty() {
                // Applied but not confirmed at the requested level: sending the batch again is
                // safe because duplicates are checked against the source.
                transient_attempts += 1;
                if transient_attempts > MAX_TRANSIENT_ATTEMPTS {
                    return Err(WriteError::Failed(describe(&error)));
                }
                sleep_until(backoff(transient_attempts), deadline).await?;
                continue;
            }
            outcome.inserted += sent - write_errors.len() as u64;
            if !duplicates.is_empty() {
                reconcile_duplicates(target, &duplicates, &mut outcome).await?;
            }
            if !retry.is_empty() {
                outcome.throttled += 1;
                throttled_attempts += 1;
                if throttled_attempts > MAX_THROTTLED_ATTEMPTS {
                    return Err(WriteError::Throttled(MAX_THROTTLED_ATTEMPTS));
                }
                warn!(
                    documents = retry.len(),
                    delay_ms = delay.as_millis() as u64,
                    "target throttled part of a batch; retrying only those documents"
                );
                sleep_until(delay.max(throttle_floor(throttled_attempts)), deadline).await?;
            }
            pending = retry;
            continue;
        }

        match classify(&error) {
            ErrorClass::Throttled(delay) => {
                outcome.throttled += 1;
                throttled_attempts += 1;
                if throttled_attempts > MAX_THROTTLED_ATTEMPTS {
                    return Err(WriteError::Throttled(MAX_THROTTLED_ATTEMPTS));
                }
                warn!(
                    delay_ms = delay.as_millis() as u64,
                    "target throttled a batch; retrying"
                );
                sleep_until(delay.max(throttle_floor(throttled_attempts)), deadline).await?;
            }
            ErrorClass::Transient => {
                transient_attempts += 1;
                if transient_attempts > MAX_TRANSIENT_ATTEMPTS {
                    return Err(WriteError::Failed(describe(&error)));
                }
                warn!(attempt = transient_attempts, error = %describe(&error), "batch write failed; retrying");
                sleep_until(backoff(transient_attempts), deadline).await?;
            }
            ErrorClass::Permanent => {
                if let ErrorKind::Write(WriteFailure::WriteError(w)) = error.kind.as_ref() {
                    return Err(WriteError::Rejected {
                        id: "?".into(),
                        code: w.code,
                        message: w.message.clone(),
                    });
                }
                return Err(WriteError::Failed(describe(&error)));
            }
        }
    }
    Ok(outcome)
}

/// Compares the target's copies of `docs` with the source bytes and replaces those that differ.
async fn reconcile_duplicates(
    target: &Collection<RawDocumentBuf>,
    docs: &[RawDocumentBuf],
    outcome: &mut WriteOutcome,
) -> Result<(), WriteError> {
    let mut ids = Vec::with_capacity(docs.len());
    for doc in docs {
        ids.push(id_of(doc)?);
    }
    let mut existing = std::collections::HashMap::new();
    let mut cursor = target
        .find(doc! { "_id": { "$in": ids.clone() } })
        .await
        .map_err(|e| {
            WriteError::Failed(format!(
                "reading documents already on the target: {}",
                describe(&e)
            ))
        })?;
    while let Some(found) = cursor.try_next().await.map_err(|e| {
        WriteError::Failed(format!(
            "reading documents already on the target: {}",
            describe(&e)
        ))
    })? {
        existing.insert(id_key(&id_of(&found)?), found);
    }
    for (doc, id) in docs.iter().zip(ids) {
        let same = existing
            .get(&id_key(&id))
            .is_some_and(|found| found.as_bytes() == doc.as_bytes());
        if same {
            outcome.already_present += 1;
            continue;
        }
        target
            .replace_one(doc! { "_id": id }, doc)
            .upsert(true)
            .await
            .map_err(|e| {
                WriteError::Failed(format!(
                    "replacing a stale target document: {}",
                    describe(&e)
                ))
            })?;
        outcome.replaced += 1;
    }
    Ok(())
}

fn id_of(doc: &RawDocumentBuf) -> Result<Bson, WriteError> {
    match doc.get("_id") {
        Ok(Some(value)) => Bson::try_from(value.to_raw_bson())
            .map_err(|e| WriteError::Failed(format!("unreadable _id: {e}"))),
        _ => Err(WriteError::Failed("a document has no _id".into())),
    }
}

/// Encodes an `_id` as its exact BSON bytes for a map key, so Int32 1 and Int64 1 stay distinct.
fn id_key(id: &Bson) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = doc! { "v": id.clone() }.to_writer(&mut bytes);
    bytes
}

/// Returns whether a duplicate-key message names the `_id` index, which means "already copied".
fn is_id_duplicate(message: &str) -> bool {
    message.contains("index: _id_") || !message.contains("index:")
}

/// Renders a document's `_id` as relaxed Extended JSON for messages.
pub fn describe_id(doc: &RawDocumentBuf) -> String {
    match id_of(doc) {
        Ok(id) => {
            let text = id.into_relaxed_extjson().to_string();
            if text.chars().count() > 200 {
                let head: String = text.chars().take(200).collect();
                format!("{head}... ({} characters)", text.chars().count())
            } else {
                text
            }
        }
        Err(_) => "(unreadable)".into(),
    }
}

/// Capped exponential backoff with jitter: about 100 ms, 200 ms, … up to 10 s.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

/// Returns a growing minimum wait under repeated throttling, so a tiny hint does not spin.
pub fn throttle_floor(attempts: u32) -> Duration {
    Duration::from_millis((5u64 << attempts.min(8)).min(1_000))
}

async fn sleep_until(delay: Duration, deadline: Instant) -> Result<(), WriteError> {
    if Instant::now() + delay >= deadline {
        return Err(WriteError::DeadlineReached);
    }
    tokio::time::sleep(delay).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_duplicates_recognised() {
        assert!(is_id_duplicate(
            "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 1 }"
        ));
        assert!(!is_id_duplicate(
            "E11000 duplicate key error collection: db.c index: email_1 dup key: { email: \"a\" }"
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert!(backoff(1) <= Duration::from_millis(200));
        assert!(backoff(20) <= Duration::from_secs(10));
        assert!(backoff(20) >= Duration::from_secs(5));
    }

    #[test]
    fn id_keys_keep_types_apart() {
        assert_ne!(id_key(&Bson::Int32(1)), id_key(&Bson::Int64(1)));
        assert_eq!(id_key(&Bson::Int32(1)), id_key(&Bson::Int32(1)));
    }
}
