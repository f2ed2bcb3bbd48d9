//! The Cosmos DB for MongoDB (RU) change-stream rules: the one accepted pipeline and the
//! merging of events per document.

use bson::{RawBsonRef, RawDocumentBuf};

use crate::error::CommandError;

/// Checks the one pipeline shape Cosmos DB (RU) accepts: `$match` on `operationType` in
/// insert/update/replace, then `$project` of `_id`, `fullDocument`, `ns` and `documentKey`.
pub fn is_cosmos_pipeline(pipeline: &[RawDocumentBuf]) -> bool {
    let [first, second] = pipeline else {
        return false;
    };
    let Ok(Some(RawBsonRef::Document(filter))) = first.get("$match") else {
        return false;
    };
    let Ok(Some(RawBsonRef::Document(condition))) = filter.get("operationType") else {
        return false;
    };
    if filter.iter().count() != 1 || condition.iter().count() != 1 {
        return false;
    }

    let Ok(Some(RawBsonRef::Array(kinds))) = condition.get("$in") else {
        return false;
    };
    let mut kinds: Vec<&str> = kinds
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str())
        .collect();
    kinds.sort_unstable();
    if kinds != ["insert", "replace", "update"] {
        return false;
    }

    let Ok(Some(RawBsonRef::Document(projection))) = second.get("$project") else {
        return false;
    };
    let mut fields: Vec<&str> = Vec::new();
    for (name, value) in projection.iter().flatten() {
        if !crate::aggregate::expr::is_truthy(Some(&value.to_raw_bson())) {
            return false;
        }
        fields.push(name);
    }
    fields.sort_unstable();
    fields == ["_id", "documentKey", "fullDocument", "ns"]
}

pub fn cosmos_shape_error() -> CommandError {
    CommandError::bad_value("Change stream must be followed by a match and then a project stage")
}

/// Keeps only the last event of each document in a batch, as Cosmos DB (RU) may merge rapid
/// updates to one document into one event.
pub fn coalesce_by_document_key(events: Vec<RawDocumentBuf>) -> Vec<RawDocumentBuf> {
    let key_of = |event: &RawDocumentBuf| {
        event
            .get_document("documentKey")
            .map(|k| k.as_bytes().to_vec())
            .ok()
    };
    let mut kept: Vec<RawDocumentBuf> = Vec::with_capacity(events.len());
    for event in events {
        let key = key_of(&event);
        if key.is_some() {
            kept.retain(|earlier| key_of(earlier) != key);
        }
        kept.push(event);
    }
    kept
}
