//! The BSON comparison order MongoDB uses for sorting, range predicates and equality.
//!
//! Types are ranked first (MinKey < Undefined < Null < numbers < strings and symbols < objects <
//! arrays < binData < ObjectId < bool < date < timestamp < regex < DBPointer < JavaScript <
//! JavaScript with scope < MaxKey), then values of the same rank are compared. Strings compare by
//! their UTF-8 bytes, as MongoDB does without a collation.

use std::cmp::Ordering;

use bson::{RawArray, RawBson, RawBsonRef, RawDocument};

use super::number::Number;

/// Returns the canonical rank of a value's type. Values of different types with the same rank
/// (Int32, Int64, Double and Decimal128; String and Symbol) compare by value.
pub fn canonical_rank(value: RawBsonRef<'_>) -> i32 {
    match value {
        RawBsonRef::MinKey => -1,
        RawBsonRef::Undefined => 0,
        RawBsonRef::Null => 5,
        RawBsonRef::Int32(_)
        | RawBsonRef::Int64(_)
        | RawBsonRef::Double(_)
        | RawBsonRef::Decimal128(_) => 10,
        RawBsonRef::String(_) | RawBsonRef::Symbol(_) => 15,
        RawBsonRef::Document(_) => 20,
        RawBsonRef::Array(_) => 25,
        RawBsonRef::Binary(_) => 30,
        RawBsonRef::ObjectId(_) => 35,
        RawBsonRef::Boolean(_) => 40,
        RawBsonRef::DateTime(_) => 45,
        RawBsonRef::Timestamp(_) => 47,
        RawBsonRef::RegularExpression(_) => 50,
        RawBsonRef::DbPointer(_) => 55,
        RawBsonRef::JavaScriptCode(_) => 60,
        RawBsonRef::JavaScriptCodeWithScope(_) => 65,
        RawBsonRef::MaxKey => 127,
    }
}

/// Compares two values in full BSON order. NaN is equal to NaN and below every other number.
pub fn compare(a: RawBsonRef<'_>, b: RawBsonRef<'_>) -> Ordering {
    let rank = canonical_rank(a);
    match rank.cmp(&canonical_rank(b)) {
        Ordering::Equal => {}
        other => return other,
    }
    match (a, b) {
        (RawBsonRef::Document(x), RawBsonRef::Document(y)) => compare_documents(x, y),
        (RawBsonRef::Array(x), RawBsonRef::Array(y)) => compare_arrays(x, y),
        (RawBsonRef::Binary(x), RawBsonRef::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(y.bytes)),
        (RawBsonRef::ObjectId(x), RawBsonRef::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (RawBsonRef::Boolean(x), RawBsonRef::Boolean(y)) => x.cmp(&y),
        (RawBsonRef::DateTime(x), RawBsonRef::DateTime(y)) => {
            x.timestamp_millis().cmp(&y.timestamp_millis())
        }
        (RawBsonRef::Timestamp(x), RawBsonRef::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (RawBsonRef::RegularExpression(x), RawBsonRef::RegularExpression(y)) => x
            .pattern
            .as_bytes()
            .cmp(y.pattern.as_bytes())
            .then_with(|| x.options.as_bytes().cmp(y.options.as_bytes())),
        (RawBsonRef::DbPointer(x), RawBsonRef::DbPointer(y)) => compare_db_pointers(x, y),
        (RawBsonRef::JavaScriptCode(x), RawBsonRef::JavaScriptCode(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (RawBsonRef::JavaScriptCodeWithScope(x), RawBsonRef::JavaScriptCodeWithScope(y)) => x
            .code
            .as_bytes()
            .cmp(y.code.as_bytes())
            .then_with(|| compare_documents(x.scope, y.scope)),
        _ => match rank {
            10 => {
                let x = Number::from_raw(a).expect("rank 10 is numeric");
                let y = Number::from_raw(b).expect("rank 10 is numeric");
                x.total_cmp(y)
            }
            15 => string_of(a).as_bytes().cmp(string_of(b).as_bytes()),
            // MinKey, Undefined, Null and MaxKey have a single value each.
            _ => Ordering::Equal,
        },
    }
}

/// Compares owned values; a convenience for callers holding `RawBson`.
pub fn compare_owned(a: &RawBson, b: &RawBson) -> Ordering {
    compare(a.as_raw_bson_ref(), b.as_raw_bson_ref())
}

fn string_of(value: RawBsonRef<'_>) -> &str {
    match value {
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) => s,
        _ => "",
    }
}

fn compare_db_pointers(x: bson::RawDbPointerRef<'_>, y: bson::RawDbPointerRef<'_>) -> Ordering {
    // The raw reference type keeps its fields private, so compare through its BSON form.
    let x = bson::Bson::try_from(RawBsonRef::DbPointer(x)).ok();
    let y = bson::Bson::try_from(RawBsonRef::DbPointer(y)).ok();
    let key = |v: Option<bson::Bson>| v.map(|b| b.into_relaxed_extjson().to_string());
    key(x).cmp(&key(y))
}

/// Compares two documents element by element: type rank, then field name, then value. A
/// document that is a prefix of the other is smaller.
pub fn compare_documents(a: &RawDocument, b: &RawDocument) -> Ordering {
    let mut left = a.iter();
    let mut right = b.iter();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let (Ok((xk, xv)), Ok((yk, yv))) = (x, y) else {
                    return Ordering::Equal;
                };
                let order = canonical_rank(xv)
                    .cmp(&canonical_rank(yv))
                    .then_with(|| xk.as_bytes().cmp(yk.as_bytes()))
                    .then_with(|| compare(xv, yv));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Compares two arrays element by element; a prefix is smaller.
pub fn compare_arrays(a: &RawArray, b: &RawArray) -> Ordering {
    let mut left = a.into_iter();
    let mut right = b.into_iter();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(Ok(x)), Some(Ok(y))) => {
                let order = compare(x, y);
                if order != Ordering::Equal {
                    return order;
                }
            }
            _ => return Ordering::Equal,
        }
    }
}

/// An owned BSON value ordered by [`compare`], usable as a `BTreeMap` key (for example a
/// collection's `_id` index or a `$group` key).
#[derive(Clone, Debug)]
pub struct OrderedValue(pub RawBson);

impl OrderedValue {
    pub fn from_ref(value: RawBsonRef<'_>) -> Self {
        OrderedValue(value.to_raw_bson())
    }

    pub fn as_ref(&self) -> RawBsonRef<'_> {
        self.0.as_raw_bson_ref()
    }
}

impl PartialEq for OrderedValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for OrderedValue {}

impl PartialOrd for OrderedValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedValue {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.as_ref(), other.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{oid::ObjectId, rawdoc, Binary, DateTime, Decimal128, Regex, Timestamp};

    #[test]
    fn ranks_follow_bson_order() {
        let doc = rawdoc! {
            "minkey": bson::RawBson::MinKey,
            "undefined": bson::RawBson::Undefined,
            "null": bson::RawBson::Null,
            "number": 1,
            "string": "a",
            "object": { "a": 1 },
            "array": [1],
            "binary": Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1] },
            "oid": ObjectId::from_bytes([0; 12]),
            "bool": false,
            "date": DateTime::from_millis(0),
            "timestamp": Timestamp { time: 1, increment: 1 },
            "regex": Regex { pattern: "a".into(), options: "".into() },
            "code": bson::RawBson::JavaScriptCode("x".into()),
            "maxkey": bson::RawBson::MaxKey,
        };
        let values: Vec<_> = doc.iter().map(|e| e.unwrap().1).collect();
        for pair in values.windows(2) {
            assert_eq!(compare(pair[0], pair[1]), Ordering::Less, "{pair:?}");
        }
    }

    #[test]
    fn numbers_compare_across_types() {
        let decimal: Decimal128 = "1.0".parse().unwrap();
        assert_eq!(
            compare(RawBsonRef::Int32(1), RawBsonRef::Decimal128(decimal)),
            Ordering::Equal
        );
        assert_eq!(
            compare(RawBsonRef::Int64(3), RawBsonRef::Double(2.5)),
            Ordering::Greater
        );
    }

    #[test]
    fn documents_compare_by_field_then_value() {
        let a = rawdoc! { "a": 1 };
        let b = rawdoc! { "b": 0 };
        let c = rawdoc! { "a": 1, "b": 1 };
        assert_eq!(compare_documents(&a, &b), Ordering::Less);
        assert_eq!(compare_documents(&a, &c), Ordering::Less);
        let d = rawdoc! { "a": "x" };
        assert_eq!(
            compare_documents(&a, &d),
            Ordering::Less,
            "number ranks below string"
        );
    }

    #[test]
    fn binary_compares_length_first() {
        let short = Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![9],
        };
        let long = Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![0, 0],
        };
        let doc = rawdoc! { "s": short, "l": long };
        assert_eq!(
            compare(
                doc.get("s").unwrap().unwrap(),
                doc.get("l").unwrap().unwrap()
            ),
            Ordering::Less
        );
    }
}
