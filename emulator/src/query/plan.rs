//! Query planning: turns `_id` predicates into a range scan of the `_id`-ordered storage and
//! applies filter, sort, skip and limit.

use std::cmp::Ordering;
use std::ops::Bound;

use bson::{RawBson, RawBsonRef};

use super::filter::{CompareOp, Filter, InItem, Predicate, TypeSpec};
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

/// The part of the `_id` index to scan for matching documents. Every access is a superset of
/// the matches: the filter still runs on each document it yields.
enum Access {
    Range(Bound<OrderedValue>, Bound<OrderedValue>),
    Points(Vec<OrderedValue>),
}

impl Access {
    fn everything() -> Access {
        Access::Range(Bound::Unbounded, Bound::Unbounded)
    }

    /// Documents that both accesses may yield.
    fn intersect(self, other: Access) -> Access {
        match (self, other) {
            (Access::Range(l1, u1), Access::Range(l2, u2)) => {
                Access::Range(tighter_lower(l1, l2), tighter_upper(u1, u2))
            }
            (Access::Points(a), Access::Points(b)) => {
                Access::Points(if a.len() <= b.len() { a } else { b })
            }
            (points @ Access::Points(_), Access::Range(..))
            | (Access::Range(..), points @ Access::Points(_)) => points,
        }
    }

    /// Documents that either access may yield: the smallest range that covers both.
    fn union(self, other: Access) -> Access {
        match (self.into_range(), other.into_range()) {
            (None, other) | (other, None) => match other {
                Some((lower, upper)) => Access::Range(lower, upper),
                None => Access::Points(Vec::new()),
            },
            (Some((l1, u1)), Some((l2, u2))) => {
                Access::Range(looser_lower(l1, l2), looser_upper(u1, u2))
            }
        }
    }

    /// Returns the range covering this access, or `None` when it yields nothing.
    fn into_range(self) -> Option<(Bound<OrderedValue>, Bound<OrderedValue>)> {
        match self {
            Access::Range(lower, upper) => Some((lower, upper)),
            Access::Points(mut values) => {
                values.sort();
                let first = values.first()?.clone();
                let last = values.pop()?;
                Some((Bound::Included(first), Bound::Included(last)))
            }
        }
    }
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

fn looser_lower(a: Bound<OrderedValue>, b: Bound<OrderedValue>) -> Bound<OrderedValue> {
    match (&a, &b) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => Bound::Unbounded,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Less => a,
                Ordering::Greater => b,
                Ordering::Equal if matches!(a, Bound::Included(_)) => a,
                Ordering::Equal => b,
            }
        }
    }
}

fn looser_upper(a: Bound<OrderedValue>, b: Bound<OrderedValue>) -> Bound<OrderedValue> {
    match (&a, &b) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => Bound::Unbounded,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Less => b,
                Ordering::Greater => a,
                Ordering::Equal if matches!(a, Bound::Included(_)) => a,
                Ordering::Equal => b,
            }
        }
    }
}

/// Returns the canonical rank of the values a `$type` operand matches.
fn rank_of_type(spec: TypeSpec) -> Option<i32> {
    let code = match spec {
        TypeSpec::Number => return Some(10),
        TypeSpec::Code(code) => code,
    };
    Some(match code {
        -1 => -1,
        6 => 0,
        10 => 5,
        1 | 16 | 18 | 19 => 10,
        2 | 14 => 15,
        3 => 20,
        4 => 25,
        5 => 30,
        7 => 35,
        8 => 40,
        9 => 45,
        17 => 47,
        11 => 50,
        12 => 55,
        13 => 60,
        15 => 65,
        127 => 127,
        _ => return None,
    })
}

/// Returns the `_id` range that contains every value of the given `$type` operands.
fn type_range(specs: &[TypeSpec]) -> Access {
    let ranks: Option<Vec<i32>> = specs.iter().map(|s| rank_of_type(*s)).collect();
    let Some(ranks) = ranks else {
        return Access::everything();
    };
    let (Some(first), Some(last)) = (ranks.iter().min(), ranks.iter().max()) else {
        return Access::everything();
    };
    let lower =
        smallest_of_rank(*first).map_or(Bound::Unbounded, |v| Bound::Included(OrderedValue(v)));
    let upper = next_rank(*last)
        .and_then(smallest_of_rank)
        .map_or(Bound::Unbounded, |v| Bound::Excluded(OrderedValue(v)));
    Access::Range(lower, upper)
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

/// Plans the `_id` index scan of a filter: the predicates on `_id` bound it, `$and` narrows it
/// and `$or` widens it to cover every branch, as a server's index bounds do.
fn plan(filter: &Filter) -> Access {
    match filter {
        Filter::Field { path, predicates } if path == "_id" => plan_predicates(predicates),
        Filter::And(clauses) => clauses
            .iter()
            .map(plan)
            .fold(Access::everything(), Access::intersect),
        Filter::Or(branches) => branches
            .iter()
            .map(plan)
            .reduce(Access::union)
            .unwrap_or_else(Access::everything),
        _ => Access::everything(),
    }
}

fn plan_predicates(predicates: &[Predicate]) -> Access {
    let mut lower = Bound::Unbounded;
    let mut upper = Bound::Unbounded;
    let mut points: Option<Vec<OrderedValue>> = None;
    let mut types = Access::everything();
    for predicate in predicates {
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
            Predicate::Compare(CompareOp::Eq, operand)
                if Number::from_raw(operand.as_raw_bson_ref()).is_some_and(|n| n.is_nan()) =>
            {
                // Every NaN, Double or Decimal128, sorts at the same place.
                let nan = OrderedValue(RawBson::Double(f64::NAN));
                lower = tighter_lower(lower, Bound::Included(nan.clone()));
                upper = tighter_upper(upper, Bound::Included(nan));
            }
            Predicate::Type(specs) => types = types.intersect(type_range(specs)),
            _ => {}
        }
    }
    let access = match points {
        Some(values) => Access::Points(values),
        None => Access::Range(lower, upper),
    };
    access.intersect(types)
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
    select_with(collection, query, |_| {})
}

/// Runs [`select`], handing `on_unreturned` each document the scan read but did not return:
/// those the filter rejected and those the query skipped. A request-unit budget charges for
/// reading them.
pub fn select_with(
    collection: &Collection,
    query: &Query<'_>,
    on_unreturned: impl FnMut(&StoredDocument),
) -> Vec<StoredDocument> {
    let on_unreturned = std::cell::RefCell::new(on_unreturned);
    let storage_order = match query.sort.id_only() {
        Some(ascending) => Some(ascending),
        None if query.sort.is_empty() => Some(true),
        None => None,
    };
    let matching = candidates(collection, plan(query.filter), storage_order != Some(false))
        .filter(|d| {
            let matched = query.filter.matches(d);
            if !matched {
                (on_unreturned.borrow_mut())(d);
            }
            matched
        })
        .cloned();
    let mut ordered: Box<dyn Iterator<Item = StoredDocument>> = match storage_order {
        // Already in the requested order: stop as soon as the limit is reached.
        Some(_) => Box::new(matching),
        None => {
            let mut all: Vec<StoredDocument> = matching.collect();
            query.sort.sort(&mut all);
            Box::new(all.into_iter())
        }
    };
    for skipped in ordered.by_ref().take(query.skip) {
        (on_unreturned.borrow_mut())(&skipped);
    }
    match query.limit {
        Some(limit) => ordered.take(limit).collect(),
        None => ordered.collect(),
    }
}

/// Iterates the stored documents an access yields, in `_id` order.
fn candidates<'a>(
    collection: &'a Collection,
    access: Access,
    ascending: bool,
) -> Box<dyn Iterator<Item = &'a StoredDocument> + 'a> {
    match access {
        Access::Range(lower, upper) => {
            Box::new(collection.range(lower, upper, ascending).map(|(_, d)| d))
        }
        Access::Points(values) => {
            let mut found: Vec<&StoredDocument> = values
                .iter()
                .filter_map(|v| collection.documents.get(v))
                .collect();
            if !ascending {
                found.reverse();
            }
            Box::new(found.into_iter())
        }
    }
}

#[cfg(test)]
mod tests {
    use bson::oid::ObjectId;
    use bson::{rawdoc, Decimal128, RawDocumentBuf};

    use super::*;

    /// Builds a collection with one document per `_id`, across the type brackets of real data.
    fn mixed_collection() -> Collection {
        let mut collection = Collection::new("db.mixed".into(), RawDocumentBuf::new());
        let mut ids: Vec<RawBson> = vec![
            RawBson::MinKey,
            RawBson::Null,
            RawBson::Double(f64::NAN),
            RawBson::Double(f64::NEG_INFINITY),
            RawBson::Decimal128("2.5".parse::<Decimal128>().expect("decimal")),
            RawBson::Double(f64::INFINITY),
            RawBson::String(String::new()),
            RawBson::String("a".into()),
            RawBson::Symbol("b".into()),
            RawBson::Document(rawdoc! { "k": 1 }),
            RawBson::ObjectId(ObjectId::from_bytes([1; 12])),
            RawBson::ObjectId(ObjectId::from_bytes([2; 12])),
            RawBson::Boolean(false),
            RawBson::Boolean(true),
            RawBson::DateTime(bson::DateTime::from_millis(-5)),
            RawBson::DateTime(bson::DateTime::from_millis(5)),
            RawBson::MaxKey,
        ];
        ids.extend((0..200).map(RawBson::Int32));
        ids.extend((200..300).map(|n| RawBson::Int64(n as i64)));
        for id in ids {
            let mut document = RawDocumentBuf::new();
            document.append("_id", id);
            collection.insert(document).expect("unique _id");
        }
        collection
    }

    fn query(filter: &Filter) -> Query<'_> {
        static NO_SORT: std::sync::OnceLock<SortSpec> = std::sync::OnceLock::new();
        Query {
            filter,
            sort: NO_SORT.get_or_init(SortSpec::default),
            skip: 0,
            limit: None,
        }
    }

    /// Checks the planned scan against a full scan, and returns how many documents it visited.
    fn planned_and_visited(collection: &Collection, filter: RawDocumentBuf) -> (usize, usize) {
        let filter = Filter::parse(&filter).expect("filter parses");
        let everything: Vec<StoredDocument> = collection
            .documents
            .values()
            .filter(|d| filter.matches(d))
            .cloned()
            .collect();
        let planned = select(collection, &query(&filter));
        assert_eq!(planned, everything, "planned scan differs from a full scan");
        let visited = candidates(collection, plan(&filter), true).count();
        (planned.len(), visited)
    }

    #[test]
    fn or_with_nan_scans_numbers() {
        let collection = mixed_collection();
        // The filter of the first number chunk that the migration service sends.
        let filter = rawdoc! { "$or": [
            { "_id": { "$type": ["double", "int", "long", "decimal"], "$lt": 10 } },
            { "_id": f64::NAN },
        ] };
        let (matched, visited) = planned_and_visited(&collection, filter);
        assert_eq!(matched, 1 + 2 + 10, "NaN, -Infinity, 2.5 and 0 to 9");
        assert!(visited <= matched + 1, "visited {visited} documents");
    }

    #[test]
    fn decimal_nan_equality_finds_double_nan() {
        let collection = mixed_collection();
        let nan = RawBson::Decimal128("NaN".parse::<Decimal128>().expect("decimal NaN"));
        let (matched, visited) = planned_and_visited(&collection, rawdoc! { "_id": nan });
        assert_eq!((matched, visited), (1, 1));
    }

    #[test]
    fn type_bounds_scan_to_brackets() {
        let collection = mixed_collection();
        let cases = [
            (rawdoc! { "_id": { "$type": ["string", "symbol"] } }, 3),
            (rawdoc! { "_id": { "$type": "objectId" } }, 2),
            (rawdoc! { "_id": { "$type": 2 } }, 2),
            (rawdoc! { "_id": { "$type": ["bool", "date"] } }, 4),
            (rawdoc! { "_id": { "$type": "minKey" } }, 1),
            (rawdoc! { "_id": { "$type": "maxKey" } }, 1),
            (rawdoc! { "_id": { "$type": ["null", "undefined"] } }, 1),
            (rawdoc! { "_id": { "$type": "object" } }, 1),
        ];
        for (filter, expected) in cases {
            let label = format!("{filter:?}");
            let (matched, visited) = planned_and_visited(&collection, filter);
            assert_eq!(matched, expected, "{label}");
            assert!(visited <= 4, "{label} visited {visited} documents");
        }
    }

    #[test]
    fn number_alias_covers_numeric_types() {
        let collection = mixed_collection();
        let (matched, _) =
            planned_and_visited(&collection, rawdoc! { "_id": { "$type": "number" } });
        assert_eq!(matched, 4 + 300);
    }

    #[test]
    fn or_covers_later_brackets() {
        let collection = mixed_collection();
        // The planner's query for the rest of a collection after a number checkpoint.
        let filter = rawdoc! { "$or": [
            { "_id": { "$type": ["double", "int", "long", "decimal"], "$gte": 250 } },
            { "_id": { "$type": ["string", "symbol", "object", "objectId", "bool", "date", "maxKey"] } },
        ] };
        let (matched, visited) = planned_and_visited(&collection, filter);
        assert_eq!(matched, 50 + 1 + 3 + 1 + 2 + 2 + 2 + 1);
        assert!(visited <= matched + 1, "visited {visited} documents");
    }

    #[test]
    fn unplanned_or_branch_scans_all() {
        let collection = mixed_collection();
        let filter = rawdoc! { "$or": [ { "_id": 5 }, { "other": 1 } ] };
        let (matched, visited) = planned_and_visited(&collection, filter);
        assert_eq!(matched, 1);
        assert_eq!(visited, collection.len());
    }

    #[test]
    fn and_intersects_or_unions_points() {
        let collection = mixed_collection();
        let filter = rawdoc! { "$and": [ { "_id": { "$gte": 10 } }, { "_id": { "$lt": 20 } } ] };
        assert_eq!(planned_and_visited(&collection, filter), (10, 10));
        let filter = rawdoc! { "$or": [ { "_id": { "$in": [1, 3] } }, { "_id": "a" } ] };
        let (matched, _) = planned_and_visited(&collection, filter);
        assert_eq!(matched, 3);
    }

    #[test]
    fn rejected_documents_are_reported() {
        let collection = mixed_collection();
        // The `_id` bounds cover 0 to 9, and the filter rejects the odd ones.
        let filter = Filter::parse(&rawdoc! {
            "_id": { "$gte": 0, "$lt": 10 },
            "$expr": { "$eq": [{ "$mod": ["$_id", 2] }, 0] },
        })
        .expect("filter parses");
        let mut unreturned = 0;
        let found = select_with(&collection, &query(&filter), |_| unreturned += 1);
        assert_eq!(found.len(), 5);
        assert_eq!(unreturned, 6, "five odd numbers and 2.5");
    }

    #[test]
    fn skipped_documents_are_reported() {
        let collection = mixed_collection();
        let filter = Filter::parse(&rawdoc! { "_id": { "$gte": 0 } }).expect("filter parses");
        let mut request = query(&filter);
        request.skip = 250;
        request.limit = Some(1);
        let mut skipped = 0;
        let found = select_with(&collection, &request, |_| skipped += 1);
        assert_eq!(skipped, 250);
        assert_eq!(found.len(), 1);
        // 0 to 248 and 2.5 are skipped.
        assert_eq!(
            found[0].get("_id").expect("valid"),
            Some(RawBsonRef::Int64(249))
        );
    }
}
