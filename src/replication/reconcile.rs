//! Reconciliation: finds documents the target still has but the source no longer has, and
//! deletes them. Cosmos DB for MongoDB (RU) change streams carry no delete events, so this is how
//! its deletes reach the target.
//!
//! A pass walks the target's `_id`s in order, one BSON type bracket after another, because range
//! operators never cross brackets. Each step reads a page of target `_id`s (an index-only query),
//! looks the same `_id`s up on the source with `$in`, and deletes on the target those the source
//! lacks. Only one page of `_id`s is in memory. A pass therefore reads every
//! `_id` of the target once and looks each one up on the source once.
//!
//! The stream task runs the steps between its round trips, so no change event is applied while a
//! step runs. That order makes a delete safe: the target page is read first and the source is
//! checked after, so a document the step deletes was absent from the source after the target
//! held it. If the source inserts it again later, that insert is a change event after the
//! stream's position, and the stream applies it after the step.

use std::collections::HashSet;

use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongodb::options::Hint;
use mongodb::Collection;

use crate::copy::range::{ChunkRange, TypeBracket};
use crate::copy::{decode_value, encode_value};
use crate::state::ReconcilePass;

/// Counts of one step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepOutcome {
    pub ids_checked: u64,
    pub deleted: u64,
    /// The pass reached the end of the last bracket.
    pub finished: bool,
}

/// Compares the next page of `_id`s after the pass's position and deletes what the source
/// lacks, moving the pass forward. Empty brackets are skipped within the same step.
pub async fn step(
    source: &Collection<Document>,
    target: &Collection<Document>,
    pass: &mut ReconcilePass,
    page_size: u32,
) -> Result<StepOutcome, mongodb::error::Error> {
    let mut outcome = StepOutcome::default();
    loop {
        let Some(bracket) = TypeBracket::ALL.get(pass.bracket as usize).copied() else {
            outcome.finished = true;
            return Ok(outcome);
        };
        let after = pass.after.as_deref().and_then(decode_value);
        let ids = target_page(target, bracket, after.as_ref(), page_size).await?;
        let Some(last) = ids.last().cloned() else {
            next_bracket(pass);
            continue;
        };

        let missing = missing_on_source(source, &ids).await?;
        if !missing.is_empty() {
            target
                .delete_many(doc! { "_id": { "$in": missing.clone() } })
                .await?;
        }
        outcome.ids_checked += ids.len() as u64;
        outcome.deleted += missing.len() as u64;
        pass.ids_checked += ids.len() as u64;
        pass.deletes += missing.len() as u64;
        // A single-valued bracket (null, MinKey, MaxKey) contains at most one `_id`, and its filter
        // ignores the position, so it is done after one page.
        if bracket.is_single_valued() || (ids.len() as u32) < page_size {
            next_bracket(pass);
        } else {
            pass.after = Some(encode_value(&last));
        }
        return Ok(outcome);
    }
}

fn next_bracket(pass: &mut ReconcilePass) {
    pass.bracket += 1;
    pass.after = None;
}

async fn target_page(
    target: &Collection<Document>,
    bracket: TypeBracket,
    after: Option<&Bson>,
    page_size: u32,
) -> Result<Vec<Bson>, mongodb::error::Error> {
    let rows: Vec<Document> = target
        .find(ChunkRange::whole(bracket).filter(after))
        .projection(doc! { "_id": 1 })
        .sort(doc! { "_id": 1 })
        .hint(Hint::Keys(doc! { "_id": 1 }))
        .limit(i64::from(page_size))
        .batch_size(page_size)
        .await?
        .try_collect()
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|mut row| row.remove("_id"))
        .collect())
}

/// Returns the `_id`s of `ids` that the source does not contain.
async fn missing_on_source(
    source: &Collection<Document>,
    ids: &[Bson],
) -> Result<Vec<Bson>, mongodb::error::Error> {
    let found: Vec<Document> = source
        .find(doc! { "_id": { "$in": ids.to_vec() } })
        .projection(doc! { "_id": 1 })
        .batch_size(ids.len() as u32)
        .await?
        .try_collect()
        .await?;
    // `encode_value` is the exact BSON of the value, so Int32 1 and Int64 1 stay distinct.
    let present: HashSet<String> = found
        .iter()
        .filter_map(|row| row.get("_id"))
        .map(encode_value)
        .collect();

    // An `_id` can match by value in another numeric type (1.0 on the source for 1 on the
    // target), so a candidate missing by bytes is confirmed with the server's own equality.
    let mut missing = Vec::new();
    for id in ids.iter().filter(|id| !present.contains(&encode_value(id))) {
        let still_there = source
            .find_one(doc! { "_id": id.clone() })
            .projection(doc! { "_id": 1 })
            .await?;
        if still_there.is_none() {
            missing.push(id.clone());
        }
    }
    Ok(missing)
}
