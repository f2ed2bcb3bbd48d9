//! Documents that cover every BSON type, the edge values a lossy copy would change, and `_id`s
//! of many types in one collection.
//!
//! `_id` values are chosen so that no two are equal under MongoDB's comparison rules, which
//! compare numbers by value across Int32, Int64, Double and Decimal128. So there is one zero
//! (`-0.0`), one NaN, and no integer that a Double of another document also has.

use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use bson::{
    doc, Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, Regex, Timestamp,
};

/// 2^53 + 1, the smallest positive integer a Double cannot hold.
const PAST_DOUBLE_PRECISION: i64 = (1 << 53) + 1;

/// Milliseconds from the Unix epoch to 0001-01-01T00:00:00Z.
const YEAR_1_MILLIS: i64 = -62_135_596_800_000;

/// Milliseconds from the Unix epoch to 10000-01-01T00:00:00Z, the first instant after year 9999.
const YEAR_10000_MILLIS: i64 = 253_402_300_800_000;

/// Database and collection the corpus is loaded into.
pub const DATABASE: &str = "fidelity";
pub const COLLECTION: &str = "bsonTypes";

/// Builds the corpus: one document per `_id` value, plus documents whose fields hold every type.
pub fn documents() -> Vec<Document> {
    let mut documents: Vec<Document> = id_values()
        .into_iter()
        .map(|(kind, id)| doc! { "_id": id, "idKind": kind })
        .collect();
    documents.push(every_type("every-type"));
    documents.push(edge_numbers());
    documents.push(edge_dates());
    documents.push(binaries());
    documents.push(unusual_keys());
    documents.push(deprecated_types());
    documents.push(deep_nesting(90));
    documents.push(large_document(1536 * 1024));
    documents
}

/// `_id` values of every type MongoDB allows in `_id` (all but arrays, regular expressions and
/// undefined), several per type, with a label naming each.
pub fn id_values() -> Vec<(&'static str, Bson)> {
    vec![
        ("minKey", Bson::MinKey),
        ("null", Bson::Null),
        ("int32 min", Bson::Int32(i32::MIN)),
        ("int32", Bson::Int32(42)),
        ("int32 max", Bson::Int32(i32::MAX)),
        ("int64 2^53+1", Bson::Int64(PAST_DOUBLE_PRECISION)),
        ("int64 -(2^53+1)", Bson::Int64(-PAST_DOUBLE_PRECISION)),
        ("int64 max", Bson::Int64(i64::MAX)),
        ("int64 min", Bson::Int64(i64::MIN)),
        ("double", Bson::Double(0.5)),
        ("double -0.0", Bson::Double(-0.0)),
        ("double NaN", Bson::Double(f64::NAN)),
        ("double +inf", Bson::Double(f64::INFINITY)),
        ("double -inf", Bson::Double(f64::NEG_INFINITY)),
        ("double smallest subnormal", Bson::Double(f64::from_bits(1))),
        ("double max", Bson::Double(f64::MAX)),
        ("decimal128", decimal("12345.6789")),
        (
            "decimal128 pi",
            decimal("3.141592653589793238462643383279503"),
        ),
        (
            "decimal128 max",
            decimal("9.999999999999999999999999999999999E+6144"),
        ),
        ("decimal128 tiny", decimal("-1E-6176")),
        ("string empty", Bson::String(String::new())),
        ("string ascii", Bson::String("plain".into())),
        ("string latin", Bson::String("Grüße, Ça va?".into())),
        ("string cjk", Bson::String("東京都".into())),
        ("string emoji", Bson::String("🦀 crab".into())),
        ("string rtl", Bson::String("שלום".into())),
        ("string with NUL", Bson::String("a\0b".into())),
        ("document", Bson::Document(doc! { "a": 1, "b": "x" })),
        (
            "document reordered",
            Bson::Document(doc! { "b": "x", "a": 1 }),
        ),
        (
            "binary generic",
            binary(BinarySubtype::Generic, b"\x00\x01\xfe\xff"),
        ),
        (
            "binary uuid old",
            binary(BinarySubtype::UuidOld, &UUID_BYTES),
        ),
        ("binary uuid", binary(BinarySubtype::Uuid, &UUID_BYTES)),
        (
            "objectId",
            Bson::ObjectId(object_id("5f1d7e2a9c1b2a3d4e5f6a7b")),
        ),
        (
            "objectId zero",
            Bson::ObjectId(object_id("000000000000000000000000")),
        ),
        ("bool false", Bson::Boolean(false)),
        ("bool true", Bson::Boolean(true)),
        (
            "date before 1970",
            Bson::DateTime(DateTime::from_millis(-1)),
        ),
        (
            "date year 1",
            Bson::DateTime(DateTime::from_millis(YEAR_1_MILLIS)),
        ),
        (
            "date after 9999",
            Bson::DateTime(DateTime::from_millis(YEAR_10000_MILLIS)),
        ),
        (
            "timestamp",
            Bson::Timestamp(Timestamp {
                time: 1,
                increment: 1,
            }),
        ),
        (
            "timestamp max",
            Bson::Timestamp(Timestamp {
                time: u32::MAX,
                increment: u32::MAX,
            }),
        ),
        ("maxKey", Bson::MaxKey),
    ]
}

/// Builds a document with one field of every BSON type that `bson` 2.x can build directly, in
/// type-number order.
fn every_type(id: &str) -> Document {
    doc! {
        "_id": id,
        "double": 1.25,
        "string": "text",
        "document": { "nested": true },
        "array": [1, "two", 3.0, null, { "four": 4 }, [5]],
        "binary": binary(BinarySubtype::Generic, b"bytes"),
        "undefined": Bson::Undefined,
        "objectId": object_id("5f1d7e2a9c1b2a3d4e5f6a7b"),
        "bool": true,
        "date": DateTime::from_millis(1_700_000_000_123),
        "null": Bson::Null,
        "regex": Regex { pattern: "^a.*z$".into(), options: "imsx".into() },
        "javascript": Bson::JavaScriptCode("function () { return 1; }".into()),
        "symbol": Bson::Symbol("sym".into()),
        "javascriptWithScope": Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
            code: "function () { return x; }".into(),
            scope: doc! { "x": 1 },
        }),
        "int32": 7_i32,
        "timestamp": Timestamp { time: 1_700_000_000, increment: 3 },
        "int64": 7_i64,
        "decimal128": decimal("0.1"),
        "minKey": Bson::MinKey,
        "maxKey": Bson::MaxKey,
        "emptyDocument": {},
        "emptyArray": [],
        "emptyString": "",
    }
}

fn edge_numbers() -> Document {
    doc! {
        "_id": "edge-numbers",
        "nan": f64::NAN,
        "negativeNan": -f64::NAN,
        "positiveInfinity": f64::INFINITY,
        "negativeInfinity": f64::NEG_INFINITY,
        "negativeZero": -0.0,
        "positiveZero": 0.0,
        "subnormal": f64::from_bits(1),
        "int64PastDoublePrecision": PAST_DOUBLE_PRECISION,
        "int64Max": i64::MAX,
        "int64Min": i64::MIN,
        "int32Min": i32::MIN,
        "decimalNan": decimal("NaN"),
        "decimalInfinity": decimal("-Infinity"),
        "decimalNegativeZero": decimal("-0"),
        "decimalTrailingZeros": decimal("1.000"),
        "decimalPrecise": decimal("0.1000000000000000000000000000000001"),
        "sameValueDifferentTypes": [1_i32, 1_i64, 1.0, decimal("1")],
    }
}

fn edge_dates() -> Document {
    doc! {
        "_id": "edge-dates",
        "epoch": DateTime::from_millis(0),
        "beforeEpoch": DateTime::from_millis(-1),
        "year1": DateTime::from_millis(YEAR_1_MILLIS),
        "beforeYear1": DateTime::from_millis(YEAR_1_MILLIS - 86_400_000),
        "year10000": DateTime::from_millis(YEAR_10000_MILLIS),
        "minimum": DateTime::from_millis(i64::MIN),
        "maximum": DateTime::from_millis(i64::MAX),
        "timestampZero": Timestamp { time: 0, increment: 0 },
    }
}

/// Binary subtypes 0, 2, 3, 4, 5 and a user-defined one. Subtypes 3 and 4 hold the same bytes,
/// because a copy that re-encodes UUIDs would change one of them.
fn binaries() -> Document {
    doc! {
        "_id": "binaries",
        "generic": binary(BinarySubtype::Generic, &[0, 1, 2, 253, 254, 255]),
        "empty": binary(BinarySubtype::Generic, &[]),
        "binaryOld": binary(BinarySubtype::BinaryOld, b"old"),
        "uuidOld": binary(BinarySubtype::UuidOld, &UUID_BYTES),
        "uuid": binary(BinarySubtype::Uuid, &UUID_BYTES),
        "md5": binary(BinarySubtype::Md5, &[0xd4; 16]),
        "userDefined": binary(BinarySubtype::UserDefined(0x80), b"custom"),
    }
}

/// Keys with dots and dollar signs, which MongoDB 5.0 and later store as written, and field
/// orders that differ only in order.
fn unusual_keys() -> Document {
    doc! {
        "_id": "unusual-keys",
        "price.usd": 10,
        "a.b.c": { "d.e": 1 },
        "nested": { "$currency": "EUR", "$amount": decimal("12.50"), "x$y": true },
        "array": [{ "$ref": "not-a-dbref" }],
        "Grüße": "non-ASCII key",
        "": "empty key",
        " ": "space key",
        "zFirst": 1,
        "aSecond": 2,
    }
}

/// Deprecated types that old data may still hold: undefined, symbol, DBPointer and
/// JavaScript code with scope.
fn deprecated_types() -> Document {
    doc! {
        "_id": "deprecated-types",
        "undefined": Bson::Undefined,
        "symbol": Bson::Symbol("legacy".into()),
        "dbPointer": db_pointer("legacy.collection", "5f1d7e2a9c1b2a3d4e5f6a7b"),
        "javascriptWithScope": Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
            code: "function () { return scoped; }".into(),
            scope: doc! { "scoped": { "deep": [1, 2] } },
        }),
    }
}

/// Builds a document nested `depth` levels deep, alternating documents and arrays. MongoDB accepts up
/// to 100 levels.
fn deep_nesting(depth: usize) -> Document {
    let mut value = Bson::String("bottom".into());
    for level in (0..depth).rev() {
        value = if level % 2 == 0 {
            Bson::Document(doc! { format!("level{level}"): value })
        } else {
            Bson::Array(vec![Bson::Int32(level as i32), value])
        };
    }
    doc! { "_id": "deep-nesting", "root": value }
}

/// Builds a document of about `bytes` bytes, below the 2 MB document limit of Cosmos DB for MongoDB
/// (RU) so the source accepts it, but large enough to fill a batch on its own.
fn large_document(bytes: usize) -> Document {
    let payload: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    doc! {
        "_id": "large-document",
        "payload": binary(BinarySubtype::Generic, &payload),
        "note": "about 1.5 MiB of binary",
    }
}

/// The UUID 00112233-4455-6677-8899-aabbccddeeff as bytes.
const UUID_BYTES: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

fn binary(subtype: BinarySubtype, bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype,
        bytes: bytes.to_vec(),
    })
}

fn decimal(text: &str) -> Bson {
    Bson::Decimal128(
        text.parse::<Decimal128>()
            .expect("corpus decimal literal is valid"),
    )
}

fn object_id(hex: &str) -> ObjectId {
    ObjectId::parse_str(hex).expect("corpus ObjectId literal is valid")
}

/// Builds a DBPointer value. `bson` 2.x has no public constructor for it, so the value is read
/// back from hand-encoded BSON, the document `{ "p": <dbPointer> }`. The element is type 0x0C,
/// then a BSON string (int32 length including the NUL, bytes, NUL), then 12 ObjectId bytes.
fn db_pointer(namespace: &str, id_hex: &str) -> Bson {
    let mut element = vec![0x0C, b'p', 0];
    element.extend_from_slice(&(namespace.len() as i32 + 1).to_le_bytes());
    element.extend_from_slice(namespace.as_bytes());
    element.push(0);
    element.extend_from_slice(&object_id(id_hex).bytes());

    let mut bytes = ((4 + element.len() + 1) as i32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&element);
    bytes.push(0);
    let document =
        Document::from_reader(bytes.as_slice()).expect("hand-encoded DBPointer is valid");
    document
        .get("p")
        .cloned()
        .expect("DBPointer field is present")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bson::spec::ElementType;

    use super::*;

    /// Collects every element type that appears anywhere in `value`, nested values included.
    fn collect_types(value: &Bson, types: &mut BTreeSet<u8>) {
        types.insert(value.element_type() as u8);
        match value {
            Bson::Document(document) => document.values().for_each(|v| collect_types(v, types)),
            Bson::Array(items) => items.iter().for_each(|v| collect_types(v, types)),
            _ => {}
        }
    }

    #[test]
    fn corpus_covers_every_element_type() {
        let mut types = BTreeSet::new();
        for document in documents() {
            collect_types(&Bson::Document(document), &mut types);
        }
        let all = [
            ElementType::Double,
            ElementType::String,
            ElementType::EmbeddedDocument,
            ElementType::Array,
            ElementType::Binary,
            ElementType::Undefined,
            ElementType::ObjectId,
            ElementType::Boolean,
            ElementType::DateTime,
            ElementType::Null,
            ElementType::RegularExpression,
            ElementType::DbPointer,
            ElementType::JavaScriptCode,
            ElementType::Symbol,
            ElementType::JavaScriptCodeWithScope,
            ElementType::Int32,
            ElementType::Timestamp,
            ElementType::Int64,
            ElementType::Decimal128,
            ElementType::MaxKey,
            ElementType::MinKey,
        ];
        for element_type in all {
            assert!(
                types.contains(&(element_type as u8)),
                "corpus lacks {element_type:?}"
            );
        }
    }

    #[test]
    fn ids_are_unique_bytes() {
        let documents = documents();
        let mut seen = BTreeSet::new();
        for document in &documents {
            let id = bson::to_vec(&doc! { "id": document.get("_id").unwrap().clone() }).unwrap();
            assert!(seen.insert(id), "duplicate _id {:?}", document.get("_id"));
        }
        assert_eq!(seen.len(), documents.len());
    }

    #[test]
    fn ids_span_many_types() {
        let types: BTreeSet<u8> = documents()
            .iter()
            .map(|d| d.get("_id").unwrap().element_type() as u8)
            .collect();
        assert!(types.len() >= 14, "only {} _id types", types.len());
    }

    #[test]
    fn numeric_ids_have_distinct_values() {
        // Numbers compare by value across types, so two equal values would collide in `_id`.
        let mut values = Vec::new();
        for (_, id) in id_values() {
            let value = match id {
                Bson::Int32(v) => v.to_string(),
                Bson::Int64(v) => v.to_string(),
                Bson::Double(v) if v.is_nan() => "NaN".into(),
                // Both zeros map to "0", because -0.0 equals 0.
                Bson::Double(v) if v.fract() == 0.0 && v.abs() < 9.2e18 => (v as i64).to_string(),
                Bson::Double(v) => format!("{v:e}"),
                Bson::Decimal128(v) => v.to_string(),
                _ => continue,
            };
            assert!(
                !values.contains(&value),
                "numeric _id value {value} appears twice"
            );
            values.push(value);
        }
    }

    #[test]
    fn db_pointer_round_trips() {
        let value = db_pointer("legacy.collection", "5f1d7e2a9c1b2a3d4e5f6a7b");
        assert_eq!(value.element_type(), ElementType::DbPointer);
        let bytes = bson::to_vec(&doc! { "p": value.clone() }).unwrap();
        let back = Document::from_reader(bytes.as_slice()).unwrap();
        assert_eq!(back.get("p"), Some(&value));
    }

    #[test]
    fn deep_nesting_has_requested_depth() {
        fn depth(value: &Bson) -> usize {
            match value {
                Bson::Document(d) => 1 + d.values().map(depth).max().unwrap_or(0),
                Bson::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        let document = deep_nesting(90);
        assert_eq!(depth(document.get("root").unwrap()), 90);
    }

    #[test]
    fn large_document_fits_ru_limit() {
        let bytes = bson::to_vec(&large_document(1536 * 1024)).unwrap();
        assert!(bytes.len() > 1536 * 1024);
        assert!(bytes.len() < 2 * 1024 * 1024);
    }
}
