//! aggregate: collection pipelines and change streams.

use bson::RawBsonRef;

use super::cursor_reply::{batch_size_of, finish_cursor, write_batch, DEFAULT_FIRST_BATCH};
use super::find::{charge_reads, check_hint};
use super::update::reject_collation;
use super::Context;
use crate::aggregate::{parse_pipeline, run_pipeline};
use crate::cursor::DocumentBatches;
use crate::error::{code, CommandError, CommandResult};
use crate::personality::read_charge;
use crate::store::StoredDocument;
use crate::wire::DocBuilder;

pub fn aggregate(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let body = ctx.body();
    let collection_name = match body.get("aggregate")? {
        Some(RawBsonRef::String(_)) => Some(ctx.collection_name()?),
        Some(value) if crate::query::number::Number::from_raw(value).is_some() => None,
        _ => {
            return Err(CommandError::type_mismatch(
                "BSON field 'aggregate.aggregate' must be a collection name or 1",
            ))
        }
    };
    let pipeline = match body.get("pipeline")? {
        Some(RawBsonRef::Array(pipeline)) => pipeline,
        _ => {
            return Err(CommandError::type_mismatch(
                "'pipeline' option must be specified as an array",
            ))
        }
    };
    if body.get("explain")?.is_some() {
        return Err(CommandError::new(
            code::COMMAND_NOT_SUPPORTED,
            "explain is not supported by this emulator",
        ));
    }
    let cursor_options =
        match body.get("cursor")? {
            Some(RawBsonRef::Document(options)) => options,
            _ => return Err(CommandError::failed_to_parse(
                "The 'cursor' option is required, except for aggregate with the explain argument",
            )),
        };
    let batch_size = batch_size_of(cursor_options.get("batchSize")?);
    reject_collation(ctx, body)?;

    if let Some(Ok(RawBsonRef::Document(first))) = pipeline.into_iter().next() {
        if let Ok(Some(spec)) = first.get("$changeStream") {
            let spec = match spec {
                RawBsonRef::Document(spec) => spec.to_raw_document_buf(),
                _ => {
                    return Err(CommandError::type_mismatch(
                        "$changeStream must be an object",
                    ))
                }
            };
            let rest: Vec<bson::RawDocumentBuf> = pipeline
                .into_iter()
                .skip(1)
                .filter_map(|s| {
                    s.ok()
                        .and_then(|s| s.as_document().map(|d| d.to_raw_document_buf()))
                })
                .collect();
            return crate::changes::stream::open(ctx, collection_name, spec, rest, batch_size);
        }
    }
    let Some(collection_name) = collection_name else {
        return Err(CommandError::new(
            code::INVALID_NAMESPACE,
            "{aggregate: 1} is not valid for a pipeline that does not start with $changeStream",
        ));
    };
    let stages = parse_pipeline(pipeline)?;
    let namespace = ctx.namespace(&collection_name);
    let hint = body.get("hint")?;
    // The cosmos-ru budget is charged for every document the pipeline reads, not for what it
    // returns: a `$group` that counts a million documents costs a million reads.
    let mut read_units = 0.0;
    let charge = |d: &StoredDocument| read_units += read_charge(d.as_bytes().len());
    let documents = match ctx.state.collection(&ctx.db, &collection_name) {
        None => run_pipeline(None, &stages, charge)?,
        Some(shared) => {
            let collection = shared.read().expect("collection lock");
            check_hint(Some(&collection), hint)?;
            run_pipeline(Some(&collection), &stages, charge)?
        }
    };
    charge_reads(ctx, &[], read_units)?;
    let mut documents = DocumentBatches::new(documents, None);
    let reply = write_batch(
        &mut documents,
        "firstBatch",
        batch_size.unwrap_or(DEFAULT_FIRST_BATCH),
    )?;
    Ok(finish_cursor(ctx, reply, documents, &namespace, false))
}
