//! Query planning: turns `_id` predicates into a range scan of the `_id`-ordered storage and
//! applies filter, sort, skip and limit.

use std::cmp::Ordering;
use std::ops::Bound;

use bson::{RawBson, RawBsonRef};

use super::filter::{CompareOp, Filter, InItem, Predicate};
use super::number::Number;
use super::order::{canonical_rank, OrderedValue};
use super::sort::SortSpec;
use crate::store::collection::smallest_of_rank;
use crate::store::{Collection, StoredDocument};

/// Canonical type ranks in BSON order, to find the rank after a given one.
const RANKS: [i32; 17] = [
    -1, 0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 47, 50, 55, 60, 65, 127,
];

fn next_rank(rank: i32) -> Option<i32> {
    RANKS.iter().copied().find(|r| *r > rank)
}

/// The part of the `_id` index to scan for matching documents.
enum Access {
    Range(Bound<OrderedValue>, Bound<OrderedValue>),
    Points(Vec<OrderedValue>),
}

fn tighter_lower(a: Bound<OrderedValue>, b: Bound<OrderedValue>) -> Bound<OrderedValue> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Less => b,
                Ordering::Greater => a,
                Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
                Ordering::Equal => b,
            }
        }
    }
}

fn tighter_upper(a: Bound<OrderedValue>, b: Bound<OrderedValue>) -> Bound<OrderedValue> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Less => a,
                Ordering::Greater => b,
                Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
                Ordering::Equal => b,
            }
        }
    }
}

/// Operands whose matches do not follow a simple range of the `_id` order: null and undefined
/// match each other, MinKey and MaxKey bound every type, NaN matches only NaN, and arrays match
/// by element.
fn plannable(operand: &RawBson) -> bool {
    let value = operand.as_raw_bson_ref();
    !matches!(
        value,
        RawBsonRef::Null
            | RawBsonRef::Undefined
            | RawBsonRef::MinKey
            | RawBsonRef::MaxKey
            | RawBsonRef::Array(_)
    ) && !Number::from_raw(value).is_some_and(|n| n.is_nan())
}

fn plan(filter: &Filter) -> Access {
    let mut lower = Bound::Unbounded;
    let mut upper = Bound::Unbounded;
    let mut points: Option<Vec<OrderedValue>> = None;
    for predicate in filter.id_predicates() {
        match predicate {
            Predicate::Compare(op, operand) if plannable(operand) => {
                let value = OrderedValue(operand.clone());
                let rank = canonical_rank(operand.as_raw_bson_ref());
                let rank_start = smallest_of_rank(rank).map(|v| Bound::Included(OrderedValue(v)));
                let rank_end = next_rank(rank)
                    .and_then(smallest_of_rank)
                    .map(|v| Bound::Excluded(OrderedValue(v)));
                match op {
                    CompareOp::Eq => {
                        lower = tighter_lower(lower, Bound::Included(value.clone()));
                        upper = tighter_upper(upper, Bound::Included(value));
                    }
                    CompareOp::Gt | CompareOp::Gte => {
                        let bound = if *op == CompareOp::Gt {
                            Bound::Excluded(value)
                        } else {
                            Bound::Included(value)
                        };
                        lower = tighter_lower(lower, bound);
                        if let Some(end) = rank_end {
                            upper = tighter_upper(upper, end);
                        }
                    }
                    CompareOp::Lt | CompareOp::Lte => {
                        let bound = if *op == CompareOp::Lt {
                            Bound::Excluded(value)
                        } else {
                            Bound::Included(value)
                        };
                        upper = tighter_upper(upper, bound);
                        if let Some(start) = rank_start {
                            lower = tighter_lower(lower, start);
                        }
                    }
                }
            }
            Predicate::In(items)
                if items
                    .iter()
                    .all(|i| matches!(i, InItem::Value(v) if plannable(v))) =>
            {
                let mut values: Vec<OrderedValue> = items
                    .iter()
                    .map(|i| match i {
                        InItem::Value(v) => OrderedValue(v.clone()),
                        InItem::Regex(_) => unreachable!("checked above"),
                    })
                    .collect();
                values.sort();
                values.dedup();
                points = Some(values);
            }
            _ => {}
        }
    }
    match points {
        Some(values) => Access::Points(values),
        None => Access::Range(lower, upper),
    }
}

/// The parts of a query that select and order documents.
pub struct Query<'a> {
    pub filter: &'a Filter,
    pub sort: &'a SortSpec,
    pub skip: usize,
    pub limit: Option<usize>,
}

/// Returns the documents that match, sorted, skipped and limited. Matching documents are
/// shared with the storage, not copied.
pub fn select(collection: &Collection, query: &Query<'_>) -> Vec<StoredDocument> {
    let access = plan(query.filter);
    let storage_order = match query.sort.id_only() {
        Some(ascending) => Some(ascending),
        None if query.sort.is_empty() => Some(true),
        None => None,
    };
    let mut candidates: Box<dyn Iterator<Item = &StoredDocument>> = match access {
        Access::Range(lower, upper) => Box::new(
            collection
                .range(lower, upper, storage_order.unwrap_or(true))
                .map(|(_, d)| d),
        ),
        Access::Points(values) => {
            let mut found: Vec<&StoredDocument> = values
                .iter()
                .filter_map(|v| collection.documents.get(v))
                .collect();
            if storage_order == Some(false) {
                found.reverse();
            }
            Box::new(found.into_iter())
        }
    };
    let matching = candidates
        .by_ref()
        .filter(|d| query.filter.matches(d))
        .cloned();
    match storage_order {
        Some(_) => {
            // Already in the requested order: stop as soon as the limit is reached.
            let limited = matching.skip(query.skip);
            match query.limit {
                Some(limit) => limited.take(limit).collect(),
                None => limited.collect(),
            }
        }
        None => {
            let mut all: Vec<StoredDocument> = matching.collect();
            query.sort.sort(&mut all);
            let iter = all.into_iter().skip(query.skip);
            match query.limit {
                Some(limit) => iter.take(limit).collect(),
                None => iter.collect(),
            }
        }
    }
}
