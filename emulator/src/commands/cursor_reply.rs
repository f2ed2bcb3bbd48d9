//! Cursor replies shared by find, aggregate, getMore, listCollections and listIndexes.

use bson::RawBsonRef;

use super::Context;
use crate::cursor::{CursorSource, DocumentBatches};
use crate::error::CommandResult;
use crate::store::StoredDocument;
use crate::wire::DocBuilder;

/// Default number of documents in a first batch, as `mongod` uses.
pub const DEFAULT_FIRST_BATCH: usize = 101;
/// Replies stay under the 16 MB BSON limit, leaving room for the cursor envelope.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024 - 16 * 1024;

/// Writes `{cursor: {<batch_field>: [...]` with up to `batch_size` documents from `documents`,
/// stopping early when the reply would outgrow 16 MB. The caller finishes the reply with
/// [`finish_cursor`] or, for `getMore`, with the cursor id and namespace.
pub fn write_batch(
    documents: &mut DocumentBatches,
    batch_field: &str,
    batch_size: usize,
) -> CommandResult<DocBuilder> {
    let mut reply = DocBuilder::with_reply_prefix();
    reply.start_document("cursor");
    reply.start_array(batch_field);
    let mut count = 0usize;
    let mut key = String::new();
    while count < batch_size {
        let Some(document) = documents.next_document()? else {
            break;
        };
        if count > 0 && reply.len() + document.as_bytes().len() > MAX_BATCH_BYTES {
            documents.put_back(document);
            break;
        }
        key.clear();
        use std::fmt::Write;
        write!(key, "{count}").expect("writing to a String");
        reply.append_document(&key, &document);
        count += 1;
    }
    reply.end();
    Ok(reply)
}

/// Finishes a cursor reply: registers a cursor for the remaining documents (unless
/// `single_batch`) and writes `id` and `ns`.
pub fn finish_cursor(
    ctx: &Context<'_>,
    mut reply: DocBuilder,
    remaining: DocumentBatches,
    namespace: &str,
    single_batch: bool,
) -> DocBuilder {
    let id = if remaining.is_exhausted() || single_batch {
        0
    } else {
        ctx.register_cursor(namespace, CursorSource::Documents(remaining))
    };
    reply.append_i64("id", id);
    reply.append_str("ns", namespace);
    reply.end();
    reply
}

/// Replies with every document in one first batch and cursor id 0.
pub fn single_batch_reply(
    ctx: &Context<'_>,
    documents: Vec<StoredDocument>,
    namespace: &str,
) -> CommandResult<DocBuilder> {
    let mut documents = DocumentBatches::new(documents, None);
    let reply = write_batch(&mut documents, "firstBatch", usize::MAX)?;
    Ok(finish_cursor(ctx, reply, documents, namespace, true))
}

/// Returns the `batchSize` inside a `cursor: {batchSize}` option or a top-level field.
pub fn batch_size_of(value: Option<RawBsonRef<'_>>) -> Option<usize> {
    value
        .and_then(crate::query::number::Number::from_raw)
        .map(|n| n.to_f64().max(0.0) as usize)
}
