//! MongoDB's BSON comparison order, used to merge two `_id`-sorted streams.
//!
//! Values compare by type rank first (MinKey < undefined < null < numbers < strings and symbols <
//! objects < arrays < binData < ObjectId < bool < date < timestamp < regex < DBPointer <
//! JavaScript < JavaScript with scope < MaxKey), then by value: numbers by numeric value (NaN
//! below every other number), strings by their UTF-8 bytes (no collation), objects and arrays
//! element by element (type rank, then field name, then value), binData by length, then subtype,
//! then bytes. The order is the MongoDB manual's "Comparison/Sort Order" page.
//! The workspace's MongoDB emulator implements the same order for its server side. The service
//! keeps its own copy because it does not depend on a test tool.
//!
//! NOTE: Decimal128 values are compared through their nearest double, so two decimals that
//! differ only beyond double precision compare equal here. The merge tolerates such a slip: it
//! pairs documents whose `_id` bytes match even when they arrive out of step.

use std::cmp::Ordering;

use bson::{RawArray, RawBsonRef, RawDocument};

/// Compares two values in BSON order.
pub fn compare_values(a: RawBsonRef<'_>, b: RawBsonRef<'_>) -> Ordering {
    match rank(a).cmp(&rank(b)) {
        Ordering::Equal => {}
        other => return other,
    }
    match (a, b) {
        (
            RawBsonRef::String(x) | RawBsonRef::Symbol(x),
            RawBsonRef::String(y) | RawBsonRef::Symbol(y),
        ) => x.as_bytes().cmp(y.as_bytes()),
        (RawBsonRef::Document(x), RawBsonRef::Document(y)) => compare_elements(x, y),
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
        (RawBsonRef::JavaScriptCode(x), RawBsonRef::JavaScriptCode(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (RawBsonRef::JavaScriptCodeWithScope(x), RawBsonRef::JavaScriptCodeWithScope(y)) => x
            .code
            .as_bytes()
            .cmp(y.code.as_bytes())
            .then_with(|| compare_elements(x.scope, y.scope)),
        (RawBsonRef::DbPointer(_), RawBsonRef::DbPointer(_)) => {
            // The driver does not expose a DBPointer's parts. Their encoding orders the namespace
            // length first, which is close enough for a type that new data never uses.
            encoded(a).cmp(&encoded(b))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => compare_numbers(x, y),
            // MinKey, MaxKey, null and undefined: every value of the rank is equal.
            _ => Ordering::Equal,
        },
    }
}

/// Returns the canonical type rank MongoDB sorts by. Types of equal rank compare by value.
fn rank(value: RawBsonRef<'_>) -> u8 {
    match value {
        RawBsonRef::MinKey => 0,
        RawBsonRef::Undefined => 1,
        RawBsonRef::Null => 2,
        RawBsonRef::Int32(_)
        | RawBsonRef::Int64(_)
        | RawBsonRef::Double(_)
        | RawBsonRef::Decimal128(_) => 3,
        RawBsonRef::String(_) | RawBsonRef::Symbol(_) => 4,
        RawBsonRef::Document(_) => 5,
        RawBsonRef::Array(_) => 6,
        RawBsonRef::Binary(_) => 7,
        RawBsonRef::ObjectId(_) => 8,
        RawBsonRef::Boolean(_) => 9,
        RawBsonRef::DateTime(_) => 10,
        RawBsonRef::Timestamp(_) => 11,
        RawBsonRef::RegularExpression(_) => 12,
        RawBsonRef::DbPointer(_) => 13,
        RawBsonRef::JavaScriptCode(_) => 14,
        RawBsonRef::JavaScriptCodeWithScope(_) => 15,
        RawBsonRef::MaxKey => 16,
    }
}

/// Compares documents or arrays element by element: type rank, then field name, then value;
/// a prefix sorts first.
fn compare_elements(a: &RawDocument, b: &RawDocument) -> Ordering {
    let mut left = a.iter().filter_map(Result::ok);
    let mut right = b.iter().filter_map(Result::ok);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let order = rank(va)
                    .cmp(&rank(vb))
                    .then_with(|| ka.as_bytes().cmp(kb.as_bytes()))
                    .then_with(|| compare_values(va, vb));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Compares arrays as documents keyed "0", "1", ...: equal positions share a name, so type
/// rank and value decide.
fn compare_arrays(a: &RawArray, b: &RawArray) -> Ordering {
    let mut left = a.into_iter().filter_map(Result::ok);
    let mut right = b.into_iter().filter_map(Result::ok);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(va), Some(vb)) => {
                let order = rank(va).cmp(&rank(vb)).then_with(|| compare_values(va, vb));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Number {
    Integer(i64),
    Float(f64),
}

fn number(value: RawBsonRef<'_>) -> Option<Number> {
    match value {
        RawBsonRef::Int32(v) => Some(Number::Integer(i64::from(v))),
        RawBsonRef::Int64(v) => Some(Number::Integer(v)),
        RawBsonRef::Double(v) => Some(Number::Float(v)),
        RawBsonRef::Decimal128(d) => Some(Number::Float(decimal_to_f64(&d.to_string()))),
        _ => None,
    }
}

/// Converts the decimal text of a Decimal128 (`1.25`, `-1E+3`, `NaN`, `-Infinity`) to a double.
fn decimal_to_f64(text: &str) -> f64 {
    match text {
        "NaN" | "-NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

fn compare_numbers(a: Number, b: Number) -> Ordering {
    match (a, b) {
        (Number::Integer(x), Number::Integer(y)) => x.cmp(&y),
        (Number::Float(x), Number::Float(y)) => compare_floats(x, y),
        (Number::Integer(x), Number::Float(y)) => compare_integer_float(x, y),
        (Number::Float(x), Number::Integer(y)) => compare_integer_float(y, x).reverse(),
    }
}

/// Orders doubles with NaN equal to NaN and below everything; -0 equals 0.
fn compare_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Compares an integer with a double exactly, without rounding the integer to a double.
fn compare_integer_float(integer: i64, float: f64) -> Ordering {
    // 2^63: every i64 is below it, and every double at or above it is above every i64.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if float.is_nan() {
        return Ordering::Greater;
    }
    if float >= TWO_POW_63 {
        return Ordering::Less;
    }
    if float < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let whole = float.trunc();
    // In range and integral, so the cast is exact.
    match integer.cmp(&(whole as i64)) {
        Ordering::Equal => compare_floats(0.0, float - whole),
        other => other,
    }
}

fn encoded(value: RawBsonRef<'_>) -> Vec<u8> {
    let mut document = bson::RawDocumentBuf::new();
    document.append("v", value.to_raw_bson());
    document.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Bson, RawDocumentBuf};

    /// Compares two `Bson` values through their raw form.
    fn cmp(a: Bson, b: Bson) -> Ordering {
        let a = RawDocumentBuf::from_document(&doc! { "v": a }).unwrap();
        let b = RawDocumentBuf::from_document(&doc! { "v": b }).unwrap();
        compare_values(a.get("v").unwrap().unwrap(), b.get("v").unwrap().unwrap())
    }

    fn decimal(text: &str) -> Bson {
        Bson::Decimal128(text.parse().unwrap())
    }

    #[test]
    fn type_ranks_follow_bson_order() {
        let ordered = [
            Bson::MinKey,
            Bson::Null,
            Bson::Int32(5),
            Bson::String("a".into()),
            Bson::Document(doc! {}),
            Bson::Array(vec![]),
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![],
            }),
            Bson::ObjectId(bson::oid::ObjectId::from_bytes([0; 12])),
            Bson::Boolean(false),
            Bson::DateTime(bson::DateTime::from_millis(0)),
            Bson::Timestamp(bson::Timestamp {
                time: 0,
                increment: 0,
            }),
            Bson::RegularExpression(bson::Regex {
                pattern: "a".into(),
                options: String::new(),
            }),
            Bson::MaxKey,
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                cmp(pair[0].clone(), pair[1].clone()),
                Ordering::Less,
                "{:?} < {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn numbers_compare_by_value_across_types() {
        assert_eq!(cmp(Bson::Int32(1), Bson::Int64(1)), Ordering::Equal);
        assert_eq!(cmp(Bson::Int32(1), Bson::Double(1.0)), Ordering::Equal);
        assert_eq!(cmp(Bson::Int64(2), Bson::Double(1.5)), Ordering::Greater);
        assert_eq!(cmp(Bson::Double(-0.0), Bson::Int32(0)), Ordering::Equal);
        assert_eq!(cmp(decimal("1.25"), Bson::Double(1.5)), Ordering::Less);
        assert_eq!(
            cmp(decimal("-Infinity"), Bson::Int64(i64::MIN)),
            Ordering::Less
        );
    }

    #[test]
    fn large_integers_compare_exactly() {
        let big = 9_007_199_254_740_993i64;
        assert_eq!(
            cmp(Bson::Int64(big), Bson::Double(9_007_199_254_740_992.0)),
            Ordering::Greater
        );
        assert_eq!(
            cmp(Bson::Int64(i64::MAX), Bson::Double(9.3e18)),
            Ordering::Less
        );
        assert_eq!(
            cmp(Bson::Int64(i64::MIN), Bson::Double(-9.3e18)),
            Ordering::Greater
        );
    }

    #[test]
    fn nan_sorts_below_numbers() {
        assert_eq!(
            cmp(Bson::Double(f64::NAN), Bson::Double(f64::NEG_INFINITY)),
            Ordering::Less
        );
        assert_eq!(cmp(Bson::Double(f64::NAN), decimal("NaN")), Ordering::Equal);
        assert_eq!(
            cmp(Bson::Int32(0), Bson::Double(f64::NAN)),
            Ordering::Greater
        );
    }

    #[test]
    fn strings_compare_by_bytes() {
        assert_eq!(
            cmp(Bson::String("B".into()), Bson::String("a".into())),
            Ordering::Less
        );
        assert_eq!(
            cmp(Bson::String("a".into()), Bson::String("ab".into())),
            Ordering::Less
        );
        assert_eq!(
            cmp(Bson::Symbol("a".into()), Bson::String("a".into())),
            Ordering::Equal
        );
    }

    #[test]
    fn binary_compares_length_then_subtype() {
        let bin = |subtype: u8, bytes: Vec<u8>| {
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::from(subtype),
                bytes,
            })
        };
        assert_eq!(
            cmp(bin(4, vec![0; 16]), bin(3, vec![0; 16])),
            Ordering::Greater
        );
        assert_eq!(cmp(bin(0, vec![9]), bin(0, vec![0, 0])), Ordering::Less);
        assert_eq!(cmp(bin(0, vec![1, 2]), bin(0, vec![1, 3])), Ordering::Less);
    }

    #[test]
    fn documents_compare_element_by_element() {
        let a = Bson::Document(doc! { "k": 1 });
        let b = Bson::Document(doc! { "k": 1, "a": [1, 2] });
        assert_eq!(cmp(a.clone(), b.clone()), Ordering::Less);
        let by_name = Bson::Document(doc! { "j": 5 });
        assert_eq!(cmp(by_name, a.clone()), Ordering::Less);
        let by_type = Bson::Document(doc! { "k": "x" });
        assert_eq!(cmp(a, by_type), Ordering::Less);
        assert_eq!(
            cmp(
                Bson::Array(vec![Bson::Int32(1)]),
                Bson::Array(vec![Bson::Int32(2)])
            ),
            Ordering::Less
        );
    }

    #[test]
    fn dates_and_timestamps_compare_by_value() {
        assert_eq!(
            cmp(
                Bson::DateTime(bson::DateTime::from_millis(-5)),
                Bson::DateTime(bson::DateTime::from_millis(3))
            ),
            Ordering::Less
        );
        let ts = |time, increment| Bson::Timestamp(bson::Timestamp { time, increment });
        assert_eq!(cmp(ts(5, 1), ts(5, 2)), Ordering::Less);
        assert_eq!(cmp(ts(6, 0), ts(5, 9)), Ordering::Greater);
    }
}
