//! find, getMore, killCursors and count.

use bson::{rawdoc, RawArrayBuf, RawBsonRef, RawDocument};

use super::cursor_reply::{batch_size_of, finish_cursor, write_batch, DEFAULT_FIRST_BATCH};
use super::Context;
use crate::cursor::{CursorSource, DocumentBatches};
use crate::error::{code, CommandError, CommandResult};
use crate::personality::read_charge;
use crate::query::filter::Filter;
use crate::query::plan::{select, select_with, Query};
use crate::query::projection::Projection;
use crate::query::sort::SortSpec;
use crate::store::{Collection, StoredDocument};
use crate::wire::DocBuilder;

/// Checks that a `hint` names an index of the collection, by name or key pattern.
pub fn check_hint(
    collection: Option<&Collection>,
    hint: Option<RawBsonRef<'_>>,
) -> CommandResult<()> {
    let Some(hint) = hint else {
        return Ok(());
    };
    let found = match (collection, hint) {
        (_, RawBsonRef::Document(d)) if d.is_empty() => true,
        (None, _) => true,
        (Some(collection), RawBsonRef::String(name)) => {
            collection.indexes.iter().any(|i| i.name == name)
        }
        (Some(collection), RawBsonRef::Document(key)) => collection
            .indexes
            .iter()
            .any(|i| i.key.as_bytes() == key.as_bytes()),
        _ => {
            return Err(CommandError::failed_to_parse(
                "hint must be a string or an object",
            ))
        }
    };
    if found {
        Ok(())
    } else {
        Err(CommandError::bad_value(
            "hint provided does not correspond to an existing index",
        ))
    }
}

/// Charges the cosmos-ru budget for reading `documents`, plus `unreturned` units for the
/// documents the scan read without returning them (rejected by the filter, or skipped).
pub fn charge_reads(
    ctx: &Context<'_>,
    documents: &[StoredDocument],
    unreturned: f64,
) -> CommandResult<()> {
    if ctx.personality() != crate::Personality::CosmosRu {
        return Ok(());
    }
    let units: f64 = documents
        .iter()
        .map(|d| read_charge(d.as_bytes().len()))
        .sum::<f64>()
        + unreturned;
    ctx.state.request_units.charge(&ctx.name, units.max(1.0))
}

pub fn find(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection_name = ctx.collection_name()?;
    let namespace = ctx.namespace(&collection_name);
    let body = ctx.body();
    if body.get_bool("tailable").unwrap_or(false) {
        return Err(CommandError::bad_value(format!(
            "error processing query: ns={namespace}: tailable cursor requested on non capped collection"
        )));
    }
    let filter = ctx.filter("filter")?;
    let sort = ctx.sort("sort")?;
    let projection = match ctx.optional_document("projection")? {
        Some(p) if !p.is_empty() => Some(Projection::parse(p)?),
        _ => None,
    };
    let skip = non_negative(ctx, "skip")?.unwrap_or(0);
    let raw_limit = ctx.optional_i64("limit")?.unwrap_or(0);
    let mut single_batch = ctx.optional_bool("singleBatch")?.unwrap_or(false);
    if raw_limit < 0 {
        single_batch = true;
    }
    let limit = (raw_limit != 0).then_some(raw_limit.unsigned_abs() as usize);
    let batch_size = non_negative(ctx, "batchSize")?;
    let hint = body.get("hint")?;

    let mut unreturned_units = 0.0;
    let documents = match ctx.state.collection(&ctx.db, &collection_name) {
        None => {
            check_hint(None, hint)?;
            Vec::new()
        }
        Some(shared) => {
            let collection = shared.read().expect("collection lock");
            check_hint(Some(&collection), hint)?;
            select_with(
                &collection,
                &Query {
                    filter: &filter,
                    sort: &sort,
                    skip,
                    limit,
                },
                |d| unreturned_units += read_charge(d.as_bytes().len()),
            )
        }
    };
    // The cosmos-ru budget is charged for the whole result up front, so a throttled find
    // returns no batch at all.
    charge_reads(ctx, &documents, unreturned_units)?;
    let first_batch = batch_size
        .unwrap_or(DEFAULT_FIRST_BATCH)
        .min(limit.unwrap_or(usize::MAX));
    let mut documents = DocumentBatches::new(documents, projection);
    let reply = write_batch(&mut documents, "firstBatch", first_batch)?;
    Ok(finish_cursor(
        ctx,
        reply,
        documents,
        &namespace,
        single_batch,
    ))
}

fn non_negative(ctx: &Context<'_>, field: &str) -> CommandResult<Option<usize>> {
    match ctx.optional_i64(field)? {
        Some(value) if value < 0 => Err(CommandError::bad_value(format!(
            "{field} must be non-negative, but received: {value}"
        ))),
        other => Ok(other.map(|v| v as usize)),
    }
}

pub async fn get_more(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let body = ctx.body();
    let id = match body.iter().next().transpose()? {
        Some((_, RawBsonRef::Int64(id))) => id,
        _ => {
            return Err(CommandError::type_mismatch(
                "BSON field 'getMore.getMore' is the wrong type, expected type 'long'",
            ))
        }
    };
    let collection = body.get_str("collection").map_err(|_| {
        CommandError::new(
            40414,
            "BSON field 'getMore.collection' is missing but a required field",
        )
    })?;

    let namespace = ctx.namespace(collection);
    let batch_size = batch_size_of(body.get("batchSize")?).unwrap_or(usize::MAX);
    let max_time_ms = ctx.optional_i64("maxTimeMS")?;

    let cursor = ctx.state.cursors.lock().expect("cursor lock").take(id);
    let Some(mut cursor) = cursor else {
        return Err(CommandError::new(
            code::CURSOR_NOT_FOUND,
            format!("cursor id {id} not found"),
        ));
    };
    if cursor.namespace != namespace {
        let message = format!(
            "Requested getMore on namespace '{namespace}', but cursor belongs to a different namespace {}",
            cursor.namespace
        );
        ctx.state
            .cursors
            .lock()
            .expect("cursor lock")
            .restore(id, cursor);
        return Err(CommandError::new(code::UNAUTHORIZED, message));
    }

    let outcome = match &mut cursor.source {
        CursorSource::Documents(documents) => {
            write_batch(documents, "nextBatch", batch_size).map(|mut reply| {
                let exhausted = documents.is_exhausted();
                reply.append_i64("id", if exhausted { 0 } else { id });
                reply.append_str("ns", &namespace);
                reply.end();
                (reply, exhausted)
            })
        }
        CursorSource::ChangeStream(stream) => {
            crate::changes::stream::get_more(ctx, stream, id, batch_size, max_time_ms).await
        }
    };

    // A change stream whose getMore failed stays open, so the client may retry or kill it. A
    // document cursor closes, because the failed batch already consumed documents and a retry
    // would skip them.
    let (reply, exhausted) = match outcome {
        Ok(result) => result,
        Err(error) => {
            if matches!(cursor.source, CursorSource::ChangeStream(_)) {
                ctx.state
                    .cursors
                    .lock()
                    .expect("cursor lock")
                    .restore(id, cursor);
            }
            return Err(error);
        }
    };
    if !exhausted {
        ctx.state
            .cursors
            .lock()
            .expect("cursor lock")
            .restore(id, cursor);
    }
    Ok(reply)
}

pub fn kill_cursors(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection = ctx.collection_name()?;
    let namespace = ctx.namespace(&collection);
    let ids = match ctx.body().get("cursors")? {
        Some(RawBsonRef::Array(ids)) => ids,
        _ => {
            return Err(CommandError::new(
                40414,
                "BSON field 'killCursors.cursors' is missing but a required field",
            ))
        }
    };
    let mut killed = RawArrayBuf::new();
    let mut not_found = RawArrayBuf::new();
    let mut cursors = ctx.state.cursors.lock().expect("cursor lock");
    for id in ids {
        let Some(id) = id?.as_i64() else {
            return Err(CommandError::type_mismatch(
                "BSON field 'killCursors.cursors' must hold longs",
            ));
        };
        match cursors.take(id) {
            Some(cursor) if cursor.namespace == namespace => killed.push(id),
            Some(cursor) => {
                cursors.restore(id, cursor);
                not_found.push(id);
            }
            None => not_found.push(id),
        }
    }
    Ok(DocBuilder::from_document(&rawdoc! {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    }))
}

pub fn count(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection_name = ctx.collection_name()?;
    let filter = ctx.filter("query")?;
    let skip = non_negative(ctx, "skip")?.unwrap_or(0);
    let limit = ctx
        .optional_i64("limit")?
        .filter(|l| *l != 0)
        .map(|l| l.unsigned_abs() as usize);
    let hint = ctx.body().get("hint")?;
    let mut unreturned_units = 0.0;
    let n = match ctx.state.collection(&ctx.db, &collection_name) {
        None => 0,
        Some(shared) => {
            let collection = shared.read().expect("collection lock");
            check_hint(Some(&collection), hint)?;
            if matches!(filter, Filter::And(ref c) if c.is_empty()) {
                collection
                    .len()
                    .saturating_sub(skip)
                    .min(limit.unwrap_or(usize::MAX))
            } else {
                let counted = select_with(
                    &collection,
                    &Query {
                        filter: &filter,
                        sort: &SortSpec::default(),
                        skip,
                        limit,
                    },
                    |d| unreturned_units += read_charge(d.as_bytes().len()),
                );
                // A count reads the documents it counts as a find does.
                charge_reads(ctx, &counted, unreturned_units)?;
                counted.len()
            }
        }
    };
    Ok(DocBuilder::from_document(&rawdoc! { "n": n as i32 }))
}

/// Returns a document's `_id` as a `{_id: value}` document.
pub fn id_document(document: &RawDocument) -> CommandResult<bson::RawDocumentBuf> {
    let mut key = bson::RawDocumentBuf::new();
    if let Some(id) = document.get("_id")? {
        key.append_ref("_id", id);
    }
    Ok(key)
}

/// Runs `distinct`: the distinct values of a field among matching documents, with array
/// elements counted one by one, in BSON order.
pub fn distinct(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection_name = ctx.collection_name()?;
    let key = ctx.body().get_str("key").map_err(|_| {
        CommandError::new(
            40414,
            "BSON field 'distinct.key' is missing but a required field",
        )
    })?;
    let filter = ctx.filter("query")?;
    let mut values = std::collections::BTreeSet::new();
    if let Some(shared) = ctx.state.collection(&ctx.db, &collection_name) {
        let collection = shared.read().expect("collection lock");
        let query = Query {
            filter: &filter,
            sort: &SortSpec::default(),
            skip: 0,
            limit: None,
        };
        for document in select(&collection, &query) {
            let mut found = Vec::new();
            crate::query::path::lookup(&document, key, &mut found);
            for value in found.into_iter().flatten() {
                match value {
                    RawBsonRef::Array(items) => {
                        for item in items.into_iter().flatten() {
                            values.insert(crate::query::order::OrderedValue::from_ref(item));
                        }
                    }
                    other => {
                        values.insert(crate::query::order::OrderedValue::from_ref(other));
                    }
                }
            }
        }
    }
    let mut array = RawArrayBuf::new();
    for value in values {
        array.push(value.0);
    }
    let mut reply = DocBuilder::with_reply_prefix();
    reply.append_value("values", RawBsonRef::Array(&array));
    Ok(reply)
}
