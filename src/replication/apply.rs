//! Applies planned changes to the target collection in bulk.
//!
//! Upserts go out as `update` commands with many replacement statements and `upsert: true`, and
//! deletes as `delete` commands with an `_id` `$in` list. The driver's own mixed bulk write
//! (`Client::bulk_write`) needs the `bulkWrite` command of MongoDB 8.0, which Cosmos DB does not
//! offer, and `replace_one` costs one round trip per document. The multi-statement `update` and
//! `delete` commands are the bulk form every MongoDB-compatible server accepts. Every statement
//! is idempotent, so a batch retried after a timeout or a throttle changes nothing twice.

use std::time::{Duration, Instant};

use bson::{Bson, Document, RawArrayBuf, RawBson, RawDocumentBuf};
use mongodb::{Collection, Database};
use tracing::warn;

use super::events::{Change, Write};
use crate::copy::writer::{backoff, throttle_floor};
use crate::mongo::{classify, describe, retry_after_message, ErrorClass, TOO_MANY_REQUESTS};

/// Maximum statements per command, well below every server's `maxWriteBatchSize` (25,000 on vCore).
const MAX_STATEMENTS: usize = 500;
/// Document bytes per command, leaving room below the 16 MiB command size limit.
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;
const MAX_TRANSIENT_ATTEMPTS: u32 = 8;
const MAX_THROTTLED_ATTEMPTS: u32 = 60;
/// Rounds of retrying statements that hit a duplicate key on a secondary unique index. Such a
/// conflict can be transient when two documents swap a unique value within one round trip.
const MAX_DUPLICATE_ROUNDS: u32 = 3;
const DUPLICATE_KEY: i32 = 11000;

/// Counts of one apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub upserts: u64,
    pub deletes: u64,
    /// Round trips the target throttled.
    pub throttled: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the task's time budget ran out while the target was throttling or unavailable")]
    DeadlineReached,
    #[error("the target rejected the write of _id {id}: {message} (code {code})")]
    Rejected {
        id: String,
        code: i32,
        message: String,
    },
    #[error("writing to the target failed: {0}")]
    Failed(String),
}

/// Applies `changes` to `target`, retrying throttled and transient failures until `deadline`.
pub async fn apply(
    target: &Collection<RawDocumentBuf>,
    changes: &[Change],
    deadline: Instant,
) -> Result<ApplyOutcome, ApplyError> {
    let database = target.client().database(target.namespace().db.as_str());
    let name = target.name().to_string();
    let mut outcome = ApplyOutcome::default();
    let mut retry = Retry::new(deadline);

    let mut upserts: Vec<(&RawBson, &RawDocumentBuf)> = Vec::new();
    let mut operator_like: Vec<(&RawBson, &RawDocumentBuf)> = Vec::new();
    let mut deletes: Vec<&RawBson> = Vec::new();
    for change in changes {
        match &change.write {
            Write::Upsert(document) if has_dollar_field(document) => {
                operator_like.push((&change.id, document))
            }
            Write::Upsert(document) => upserts.push((&change.id, document)),
            Write::Delete => deletes.push(&change.id),
        }
    }

    for batch in split_by_size(&upserts) {
        let statements: Vec<RawDocumentBuf> = batch
            .iter()
            .map(|(id, document)| upsert_statement(id, document))
            .collect();
        run_statements(&database, "update", &name, statements, &mut retry).await?;
        outcome.upserts += batch.len() as u64;
    }
    for chunk in deletes.chunks(MAX_STATEMENTS) {
        let statement = delete_statement(chunk);
        run_statements(&database, "delete", &name, vec![statement], &mut retry).await?;
        outcome.deletes += chunk.len() as u64;
    }
    for (id, document) in operator_like {
        replace_by_delete_and_insert(&database, &name, id, document, &mut retry).await?;
        outcome.upserts += 1;
    }
    outcome.throttled = retry.throttled;
    Ok(outcome)
}

/// Returns whether a first-level field name starts with `$`. A replacement with such a name
/// would be read as update operators, so these documents are written by a delete and an insert.
fn has_dollar_field(document: &RawDocumentBuf) -> bool {
    document
        .iter()
        .flatten()
        .any(|(key, _)| key.starts_with('$'))
}

fn split_by_size<'a>(
    upserts: &'a [(&'a RawBson, &'a RawDocumentBuf)],
) -> Vec<&'a [(&'a RawBson, &'a RawDocumentBuf)]> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, document)) in upserts.iter().enumerate() {
        let size = document.as_bytes().len();
        let full = i - start >= MAX_STATEMENTS || (bytes + size > MAX_COMMAND_BYTES && i > start);
        if full {
            batches.push(&upserts[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < upserts.len() {
        batches.push(&upserts[start..]);
    }
    batches
}

fn id_filter(id: &RawBson) -> RawDocumentBuf {
    let mut filter = RawDocumentBuf::new();
    filter.append("_id", id.clone());
    filter
}

fn upsert_statement(id: &RawBson, document: &RawDocumentBuf) -> RawDocumentBuf {
    let mut statement = RawDocumentBuf::new();
    statement.append("q", id_filter(id));
    statement.append("u", document.clone());
    statement.append("upsert", true);
    statement
}

fn delete_statement(ids: &[&RawBson]) -> RawDocumentBuf {
    let mut list = RawArrayBuf::new();
    for id in ids {
        list.push((*id).clone());
    }
    let mut condition = RawDocumentBuf::new();
    condition.append("$in", list);
    let mut filter = RawDocumentBuf::new();
    filter.append("_id", condition);
    let mut statement = RawDocumentBuf::new();
    statement.append("q", filter);
    statement.append("limit", 0);
    statement
}

/// Sends one `update` or `delete` command, retrying the statements that were throttled or hit a
/// transient duplicate key, until every statement succeeded.
async fn run_statements(
    database: &Database,
    command: &str,
    collection: &str,
    mut statements: Vec<RawDocumentBuf>,
    retry: &mut Retry,
) -> Result<(), ApplyError> {
    let field = if command == "update" {
        "updates"
    } else {
        "deletes"
    };
    let mut duplicate_rounds = 0u32;
    while !statements.is_empty() {
        let mut list = RawArrayBuf::new();
        for statement in &statements {
            list.push(statement.clone());
        }
        let mut body = RawDocumentBuf::new();
        body.append(command, collection);
        body.append(field, list);
        body.append("ordered", false);

        let reply = match database.run_raw_command(body).await {
            Ok(reply) => reply,
            Err(error) => {
                retry.after_error(&error).await?;
                continue;
            }
        };
        if reply.contains_key("writeConcernError") && !reply.contains_key("writeErrors") {
            // Applied but not confirmed at the requested level; the statements are idempotent.
            retry.after_transient("write concern error").await?;
            continue;
        }
        let Ok(errors) = reply.get_array("writeErrors") else {
            return Ok(());
        };
        let mut again = Vec::new();
        let mut delay = Duration::ZERO;
        let mut throttled = false;
        for error in errors.iter().filter_map(Bson::as_document) {
            let index = error_index(error);
            let code = error.get_i32("code").unwrap_or(0);
            let message = error.get_str("errmsg").unwrap_or_default().to_string();
            let Some(statement) = index.and_then(|i| statements.get(i)) else {
                return Err(ApplyError::Failed(format!(
                    "the target reported a write error for an unknown statement: {message}"
                )));
            };
            if code == TOO_MANY_REQUESTS {
                throttled = true;
                delay = delay.max(retry_after_message(&message));
                again.push(statement.clone());
            } else if code == DUPLICATE_KEY && duplicate_rounds < MAX_DUPLICATE_ROUNDS {
                again.push(statement.clone());
            } else {
                return Err(ApplyError::Rejected {
                    id: describe_statement_id(statement),
                    code,
                    message,
                });
            }
        }
        if throttled {
            retry.after_throttle(delay).await?;
        } else {
            duplicate_rounds += 1;
        }
        statements = again;
    }
    Ok(())
}

fn error_index(error: &Document) -> Option<usize> {
    match error.get("index") {
        Some(Bson::Int32(i)) => usize::try_from(*i).ok(),
        Some(Bson::Int64(i)) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn describe_statement_id(statement: &RawDocumentBuf) -> String {
    let id = statement
        .get_document("q")
        .ok()
        .and_then(|q| q.get("_id").ok().flatten())
        .and_then(|id| Bson::try_from(id.to_raw_bson()).ok());
    match id {
        Some(id) => {
            let text = id.into_relaxed_extjson().to_string();
            text.chars().take(200).collect()
        }
        None => "(several documents)".into(),
    }
}

async fn replace_by_delete_and_insert(
    database: &Database,
    collection: &str,
    id: &RawBson,
    document: &RawDocumentBuf,
    retry: &mut Retry,
) -> Result<(), ApplyError> {
    run_statements(
        database,
        "delete",
        collection,
        vec![delete_statement(&[id])],
        retry,
    )
    .await?;
    let target = database.collection::<RawDocumentBuf>(collection);
    loop {
        match target.insert_one(document).await {
            Ok(_) => return Ok(()),
            // A retry after an unconfirmed insert finds the document it wrote.
            Err(error) if is_duplicate_key(&error) => return Ok(()),
            Err(error) => retry.after_error(&error).await?,
        }
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w))
            if w.code == DUPLICATE_KEY
    )
}

/// Retry bookkeeping for one apply: throttles wait for the server's hint, transient errors back
/// off, and nothing waits past the deadline.
struct Retry {
    deadline: Instant,
    transient: u32,
    throttled_in_a_row: u32,
    throttled: u32,
}

impl Retry {
    fn new(deadline: Instant) -> Self {
        Retry {
            deadline,
            transient: 0,
            throttled_in_a_row: 0,
            throttled: 0,
        }
    }

    async fn after_error(&mut self, error: &mongodb::error::Error) -> Result<(), ApplyError> {
        match classify(error) {
            ErrorClass::Throttled(delay) => self.after_throttle(delay).await,
            ErrorClass::Transient => self.after_transient(&describe(error)).await,
            ErrorClass::Permanent => Err(ApplyError::Failed(describe(error))),
        }
    }

    async fn after_throttle(&mut self, hint: Duration) -> Result<(), ApplyError> {
        self.throttled += 1;
        self.throttled_in_a_row += 1;
        if self.throttled_in_a_row > MAX_THROTTLED_ATTEMPTS {
            return Err(ApplyError::Failed(format!(
                "the target throttled (16500 TooManyRequests) {MAX_THROTTLED_ATTEMPTS} times in a row"
            )));
        }
        let floor = throttle_floor(self.throttled_in_a_row);
        warn!(
            delay_ms = hint.max(floor).as_millis() as u64,
            "target throttled a change batch; retrying"
        );
        self.sleep(hint.max(floor)).await
    }

    async fn after_transient(&mut self, reason: &str) -> Result<(), ApplyError> {
        self.transient += 1;
        if self.transient > MAX_TRANSIENT_ATTEMPTS {
            return Err(ApplyError::Failed(reason.to_string()));
        }
        warn!(
            attempt = self.transient,
            error = reason,
            "change batch write failed; retrying"
        );
        self.sleep(backoff(self.transient)).await
    }

    async fn sleep(&self, delay: Duration) -> Result<(), ApplyError> {
        if Instant::now() + delay >= self.deadline {
            return Err(ApplyError::DeadlineReached);
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn batches_respect_statement_count() {
        let id = RawBson::Int32(1);
        let document = rawdoc! { "_id": 1 };
        let upserts: Vec<(&RawBson, &RawDocumentBuf)> =
            (0..1_201).map(|_| (&id, &document)).collect();
        let sizes: Vec<usize> = split_by_size(&upserts).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
    }

    #[test]
    fn batches_respect_bytes() {
        let id = RawBson::Int32(1);
        let big = rawdoc! { "_id": 1, "s": "x".repeat(3 * 1024 * 1024) };
        let upserts: Vec<(&RawBson, &RawDocumentBuf)> = (0..5).map(|_| (&id, &big)).collect();
        let sizes: Vec<usize> = split_by_size(&upserts).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
    }

    #[test]
    fn dollar_fields_take_the_insert_path() {
        assert!(has_dollar_field(&rawdoc! { "_id": 1, "$price": 3 }));
        assert!(!has_dollar_field(&rawdoc! { "_id": 1, "a.$b": 3 }));
    }

    #[test]
    fn delete_statement_lists_every_id() {
        let a = RawBson::Int32(1);
        let b = RawBson::String("x".into());
        let statement = delete_statement(&[&a, &b]);
        let list = statement
            .get_document("q")
            .unwrap()
            .get_document("_id")
            .unwrap()
            .get_array("$in")
            .unwrap();
        assert_eq!(list.into_iter().count(), 2);
        assert_eq!(statement.get_i32("limit").unwrap(), 0);
    }
}
