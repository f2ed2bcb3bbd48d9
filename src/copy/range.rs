//! `_id` ranges of chunks, and the queries that read them.
//!
//! MongoDB's range operators are type-bracketed: `{$gte: 5}` matches numbers only, never a string.
//! A chunk therefore never spans two brackets. Each chunk's filter also carries a `$type` clause
//! for its bracket. So the first chunk of a bracket needs no lower bound, because values below the
//! smallest one seen at planning time still fall into it, and the last needs no upper bound.

use bson::spec::ElementType;
use bson::{doc, Bson, Document};
use serde::{Deserialize, Serialize};

/// The groups of BSON types that compare with each other, in MongoDB's sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TypeBracket {
    MinKey,
    Null,
    Number,
    String,
    Object,
    Array,
    BinData,
    ObjectId,
    Bool,
    Date,
    Timestamp,
    Regex,
    DbPointer,
    JavaScript,
    JavaScriptWithScope,
    MaxKey,
}

impl TypeBracket {
    pub const ALL: [TypeBracket; 16] = [
        TypeBracket::MinKey,
        TypeBracket::Null,
        TypeBracket::Number,
        TypeBracket::String,
        TypeBracket::Object,
        TypeBracket::Array,
        TypeBracket::BinData,
        TypeBracket::ObjectId,
        TypeBracket::Bool,
        TypeBracket::Date,
        TypeBracket::Timestamp,
        TypeBracket::Regex,
        TypeBracket::DbPointer,
        TypeBracket::JavaScript,
        TypeBracket::JavaScriptWithScope,
        TypeBracket::MaxKey,
    ];

    /// Returns the bracket a value sorts in.
    pub fn of(value: &Bson) -> TypeBracket {
        TypeBracket::of_type(value.element_type())
    }

    /// Returns the bracket of a BSON element type, for values read without decoding them.
    pub fn of_type(kind: ElementType) -> TypeBracket {
        match kind {
            ElementType::MinKey => TypeBracket::MinKey,
            ElementType::Null | ElementType::Undefined => TypeBracket::Null,
            ElementType::Int32
            | ElementType::Int64
            | ElementType::Double
            | ElementType::Decimal128 => TypeBracket::Number,
            ElementType::String | ElementType::Symbol => TypeBracket::String,
            ElementType::EmbeddedDocument => TypeBracket::Object,
            ElementType::Array => TypeBracket::Array,
            ElementType::Binary => TypeBracket::BinData,
            ElementType::ObjectId => TypeBracket::ObjectId,
            ElementType::Boolean => TypeBracket::Bool,
            ElementType::DateTime => TypeBracket::Date,
            ElementType::Timestamp => TypeBracket::Timestamp,
            ElementType::RegularExpression => TypeBracket::Regex,
            ElementType::DbPointer => TypeBracket::DbPointer,
            ElementType::JavaScriptCode => TypeBracket::JavaScript,
            ElementType::JavaScriptCodeWithScope => TypeBracket::JavaScriptWithScope,
            ElementType::MaxKey => TypeBracket::MaxKey,
        }
    }

    /// `$type` aliases of the BSON types in this bracket.
    pub fn type_aliases(self) -> &'static [&'static str] {
        match self {
            TypeBracket::MinKey => &["minKey"],
            TypeBracket::Null => &["null", "undefined"],
            TypeBracket::Number => &["double", "int", "long", "decimal"],
            TypeBracket::String => &["string", "symbol"],
            TypeBracket::Object => &["object"],
            TypeBracket::Array => &["array"],
            TypeBracket::BinData => &["binData"],
            TypeBracket::ObjectId => &["objectId"],
            TypeBracket::Bool => &["bool"],
            TypeBracket::Date => &["date"],
            TypeBracket::Timestamp => &["timestamp"],
            TypeBracket::Regex => &["regex"],
            TypeBracket::DbPointer => &["dbPointer"],
            TypeBracket::JavaScript => &["javascript"],
            TypeBracket::JavaScriptWithScope => &["javascriptWithScope"],
            TypeBracket::MaxKey => &["maxKey"],
        }
    }

    /// Brackets whose values are all equal to each other, so a range inside them means nothing.
    pub fn is_single_valued(self) -> bool {
        matches!(
            self,
            TypeBracket::MinKey | TypeBracket::Null | TypeBracket::MaxKey
        )
    }

    fn type_clause(self) -> Bson {
        Bson::Array(
            self.type_aliases()
                .iter()
                .map(|a| Bson::String((*a).to_string()))
                .collect(),
        )
    }
}

/// A half-open `_id` range inside one bracket: `lower <= _id < upper`, where a missing bound
/// means the start or end of the bracket.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkRange {
    pub bracket: TypeBracket,
    pub lower: Option<Bson>,
    pub upper: Option<Bson>,
}

impl ChunkRange {
    /// Builds the range covering the whole of one bracket.
    pub fn whole(bracket: TypeBracket) -> Self {
        ChunkRange {
            bracket,
            lower: None,
            upper: None,
        }
    }

    /// The filter that reads this range, continuing after `after` (the last `_id` the target
    /// acknowledged) when given.
    ///
    /// NaN needs care: it sorts below every other number, but range operators never match it
    /// (only `$gte`/`$lte` NaN do). So NaN is never a chunk bound. The first chunk of the number
    /// bracket adds it by equality, and a checkpoint at NaN continues with `$gte: -Infinity`,
    /// which matches every other number.
    pub fn filter(&self, after: Option<&Bson>) -> Document {
        let mut id = doc! { "$type": self.bracket.type_clause() };
        if self.bracket.is_single_valued() {
            return doc! { "_id": id };
        }
        let mut with_nan = false;
        match after {
            Some(last) if is_nan(last) => {
                id.insert("$gte", Bson::Double(f64::NEG_INFINITY));
            }
            Some(last) => {
                id.insert("$gt", last.clone());
            }
            None => match &self.lower {
                Some(lower) => {
                    id.insert("$gte", lower.clone());
                }
                None => with_nan = self.bracket == TypeBracket::Number,
            },
        }
        if let Some(upper) = &self.upper {
            id.insert("$lt", upper.clone());
        }
        if with_nan {
            doc! { "$or": [ { "_id": id }, { "_id": f64::NAN } ] }
        } else {
            doc! { "_id": id }
        }
    }

    /// Serializes the range for a Table property.
    pub fn to_document(&self) -> Document {
        let mut d = doc! { "bracket": self.bracket as i32 };
        if let Some(lower) = &self.lower {
            d.insert("lower", lower.clone());
        }
        if let Some(upper) = &self.upper {
            d.insert("upper", upper.clone());
        }
        d
    }

    /// Reads a range written by [`ChunkRange::to_document`].
    pub fn from_document(d: &Document) -> Option<Self> {
        let index = d.get_i32("bracket").ok()?;
        let bracket = *TypeBracket::ALL.get(usize::try_from(index).ok()?)?;
        Some(ChunkRange {
            bracket,
            lower: d.get("lower").cloned(),
            upper: d.get("upper").cloned(),
        })
    }
}

pub(crate) fn is_nan(value: &Bson) -> bool {
    match value {
        Bson::Double(d) => d.is_nan(),
        Bson::Decimal128(d) => {
            // Decimal128 NaN has the combination field 11111 in bits 58-62 of the high word.
            let bytes = d.bytes();
            bytes[15] & 0x7c == 0x7c
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;

    #[test]
    fn brackets_follow_bson_order() {
        let mut sorted = TypeBracket::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, TypeBracket::ALL.to_vec());
        assert!(TypeBracket::Number < TypeBracket::String);
        assert!(TypeBracket::ObjectId < TypeBracket::Bool);
    }

    #[test]
    fn numbers_share_a_bracket() {
        for v in [Bson::Int32(1), Bson::Int64(1), Bson::Double(1.0)] {
            assert_eq!(TypeBracket::of(&v), TypeBracket::Number);
        }
        assert_eq!(
            TypeBracket::of(&Bson::Symbol("a".into())),
            TypeBracket::String
        );
    }

    #[test]
    fn middle_range_filter() {
        let range = ChunkRange {
            bracket: TypeBracket::Number,
            lower: Some(Bson::Int32(10)),
            upper: Some(Bson::Int32(20)),
        };
        let filter = range.filter(None);
        let id = filter.get_document("_id").unwrap();
        assert_eq!(id.get("$gte"), Some(&Bson::Int32(10)));
        assert_eq!(id.get("$lt"), Some(&Bson::Int32(20)));
        assert!(id.get("$type").is_some());
    }

    #[test]
    fn checkpoint_replaces_lower_bound() {
        let range = ChunkRange {
            bracket: TypeBracket::String,
            lower: Some(Bson::String("a".into())),
            upper: None,
        };
        let filter = range.filter(Some(&Bson::String("m".into())));
        let id = filter.get_document("_id").unwrap();
        assert_eq!(id.get("$gt"), Some(&Bson::String("m".into())));
        assert!(id.get("$gte").is_none());
        assert!(id.get("$lt").is_none());
    }

    #[test]
    fn nan_checkpoint_continues_above_nan() {
        let range = ChunkRange::whole(TypeBracket::Number);
        let filter = range.filter(Some(&Bson::Double(f64::NAN)));
        let id = filter.get_document("_id").unwrap();
        assert!(id.get("$gt").is_none());
        assert_eq!(id.get("$gte"), Some(&Bson::Double(f64::NEG_INFINITY)));
    }

    #[test]
    fn first_number_chunk_includes_nan() {
        let range = ChunkRange {
            bracket: TypeBracket::Number,
            lower: None,
            upper: Some(Bson::Int32(10)),
        };
        let filter = range.filter(None);
        let branches = filter.get_array("$or").unwrap();
        assert_eq!(branches.len(), 2);
        let later = ChunkRange {
            bracket: TypeBracket::Number,
            lower: Some(Bson::Int32(10)),
            upper: None,
        };
        assert!(later.filter(None).get_array("$or").is_err());
    }

    #[test]
    fn single_valued_bracket_uses_type_only() {
        let filter = ChunkRange::whole(TypeBracket::Null).filter(None);
        let id = filter.get_document("_id").unwrap();
        assert_eq!(id.len(), 1);
        let types = id.get_array("$type").unwrap();
        assert_eq!(types.len(), 2);
    }

    #[test]
    fn range_document_round_trip() {
        let range = ChunkRange {
            bracket: TypeBracket::ObjectId,
            lower: Some(Bson::ObjectId(ObjectId::new())),
            upper: Some(Bson::ObjectId(ObjectId::new())),
        };
        let back = ChunkRange::from_document(&range.to_document()).unwrap();
        assert_eq!(back, range);
    }
}
