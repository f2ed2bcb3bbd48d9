//! `$sample` and `$bucketAuto`.

use std::cmp::Ordering;
use std::sync::Arc;

use bson::{RawBson, RawBsonRef, RawDocument, RawDocumentBuf};
use rand::seq::SliceRandom;

use super::expr::Expression;
use super::group::parse_accumulators;
use crate::error::{CommandError, CommandResult};
use crate::query::number::Number;
use crate::query::order::compare_owned;
use crate::store::StoredDocument;

/// Returns `size` documents chosen at random without repetition (all of them, shuffled, when
/// there are fewer).
pub fn sample(mut documents: Vec<StoredDocument>, size: usize) -> Vec<StoredDocument> {
    documents.shuffle(&mut rand::thread_rng());
    documents.truncate(size);
    documents
}

/// Runs `$bucketAuto`: sorts documents by `groupBy` and cuts them into `buckets` groups of
/// nearly equal size, never splitting documents with equal `groupBy` values. Each bucket's
/// `_id` is `{min, max}`, where `max` is the next bucket's `min` (the last value for the last
/// bucket).
pub fn bucket_auto(
    documents: Vec<StoredDocument>,
    spec: &RawDocument,
) -> CommandResult<Vec<StoredDocument>> {
    let group_by = Expression::parse(spec.get("groupBy")?.ok_or_else(|| {
        CommandError::new(
            40246,
            "$bucketAuto requires 'groupBy' and 'buckets' to be specified",
        )
    })?)?;
    let buckets = spec
        .get("buckets")?
        .and_then(Number::from_raw)
        .map(|n| n.to_f64())
        .ok_or_else(|| {
            CommandError::new(
                40246,
                "$bucketAuto requires 'groupBy' and 'buckets' to be specified",
            )
        })?;
    if buckets < 1.0 || buckets.fract() != 0.0 {
        return Err(CommandError::new(
            40243,
            format!("The $bucketAuto 'buckets' field must be greater than 0, but found: {buckets}"),
        ));
    }
    if spec.get("granularity")?.is_some() {
        return Err(CommandError::new(
            crate::error::code::COMMAND_NOT_SUPPORTED,
            "$bucketAuto granularity is not supported by this emulator",
        ));
    }

    let buckets = buckets as usize;
    let accumulators = match spec.get("output")? {
        Some(RawBsonRef::Document(output)) => parse_accumulators(output, &[])?,
        Some(_) => {
            return Err(CommandError::new(
                40244,
                "The $bucketAuto 'output' field must be an object",
            ))
        }
        None => parse_accumulators(&bson::rawdoc! { "count": { "$sum": 1 } }, &[])?,
    };

    let mut keyed: Vec<(RawBson, StoredDocument)> = Vec::with_capacity(documents.len());
    for document in documents {
        let key = group_by.evaluate(&document)?.unwrap_or(RawBson::Null);
        keyed.push((key, document));
    }
    keyed.sort_by(|a, b| compare_owned(&a.0, &b.0));

    let total = keyed.len();
    let approximate = total as f64 / buckets as f64;
    let mut groups: Vec<Vec<(RawBson, StoredDocument)>> = Vec::new();
    let mut iter = keyed.into_iter().peekable();
    let mut taken = 0usize;
    while iter.peek().is_some() {
        let target = if groups.len() + 1 >= buckets {
            total
        } else {
            ((approximate * (groups.len() + 1) as f64).round() as usize).max(taken + 1)
        };
        let mut bucket = Vec::new();
        while taken < target {
            let Some(entry) = iter.next() else { break };
            bucket.push(entry);
            taken += 1;
        }
        // Keep equal values together.
        while let Some(next) = iter.peek() {
            let last = &bucket.last().expect("bucket is not empty").0;
            if compare_owned(&next.0, last) != Ordering::Equal {
                break;
            }
            bucket.push(iter.next().expect("peeked"));
            taken += 1;
        }
        groups.push(bucket);
    }

    let mut out = Vec::with_capacity(groups.len());
    for index in 0..groups.len() {
        let min = groups[index][0].0.clone();
        let max = match groups.get(index + 1) {
            Some(next) => next[0].0.clone(),
            None => groups[index].last().expect("non-empty").0.clone(),
        };
        let mut states: Vec<_> = accumulators.iter().map(|a| a.initial.clone()).collect();
        for (_, document) in &groups[index] {
            for (accumulator, state) in accumulators.iter().zip(states.iter_mut()) {
                let value = accumulator.input.evaluate(document)?;
                state.add(value.as_ref());
            }
        }
        let mut id = RawDocumentBuf::new();
        id.append("min", min);
        id.append("max", max);
        let mut result = RawDocumentBuf::new();
        result.append("_id", id);
        for (accumulator, state) in accumulators.iter().zip(states) {
            result.append(&accumulator.name, state.finish());
        }
        out.push(Arc::new(result));
    }
    Ok(out)
}
