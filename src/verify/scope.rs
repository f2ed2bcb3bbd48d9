//! The `_id`s a verification unit reads, as queries that can continue after a given `_id`.

use bson::{doc, Bson, Document};

use crate::copy::decode_document;
use crate::copy::range::{ChunkRange, TypeBracket};
use crate::state::UnitScope;

/// A unit's `_id`s: a copy chunk's range, or the brackets no chunk covers.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    Range(Box<ChunkRange>),
    /// Brackets in BSON order.
    Remainder(Vec<TypeBracket>),
}

impl Scope {
    /// Reads a stored unit scope; `None` when the stored range is unreadable.
    pub fn from_unit(scope: &UnitScope) -> Option<Scope> {
        match scope {
            UnitScope::Chunk { range } => ChunkRange::from_document(&decode_document(range)?)
                .map(|r| Scope::Range(Box::new(r))),
            UnitScope::Remainder { brackets } => {
                let mut brackets = brackets.clone();
                brackets.sort();
                brackets.dedup();
                Some(Scope::Remainder(brackets))
            }
        }
    }

    /// The filter for the unit's `_id`s after `after` (all of them when `None`), or `None` when
    /// no `_id` can follow `after`.
    ///
    /// A single-valued bracket (null, MinKey, MaxKey) contains at most one `_id`, so nothing in it
    /// follows an `_id` of that bracket.
    pub fn filter(&self, after: Option<&Bson>) -> Option<Document> {
        match self {
            Scope::Range(range) => match after {
                Some(_) if range.bracket.is_single_valued() => None,
                _ => Some(range.filter(after)),
            },
            Scope::Remainder(brackets) => remainder_filter(brackets, after),
        }
    }
}

fn remainder_filter(brackets: &[TypeBracket], after: Option<&Bson>) -> Option<Document> {
    let Some(after) = after else {
        return type_filter(brackets);
    };
    let current = TypeBracket::of(after);
    let mut parts = Vec::new();
    if brackets.contains(&current) && !current.is_single_valued() {
        parts.push(ChunkRange::whole(current).filter(Some(after)));
    }
    let later: Vec<TypeBracket> = brackets.iter().copied().filter(|b| *b > current).collect();
    parts.extend(type_filter(&later));
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(doc! { "$or": parts }),
    }
}

/// `{_id: {$type: [...]}}` over every BSON type of `brackets`, or `None` for no brackets.
fn type_filter(brackets: &[TypeBracket]) -> Option<Document> {
    if brackets.is_empty() {
        return None;
    }
    let aliases: Vec<Bson> = brackets
        .iter()
        .flat_map(|b| b.type_aliases().iter())
        .map(|alias| Bson::String((*alias).to_string()))
        .collect();
    Some(doc! { "_id": { "$type": aliases } })
}

/// Returns the brackets that `covered` lacks, in BSON order.
pub fn uncovered_brackets(covered: &[TypeBracket]) -> Vec<TypeBracket> {
    TypeBracket::ALL
        .into_iter()
        .filter(|b| !covered.contains(b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::encode_document;

    #[test]
    fn stored_chunk_scope_round_trips() {
        let range = ChunkRange {
            bracket: TypeBracket::Number,
            lower: Some(Bson::Int32(5)),
            upper: None,
        };
        let stored = UnitScope::Chunk {
            range: encode_document(&range.to_document()),
        };
        assert_eq!(
            Scope::from_unit(&stored),
            Some(Scope::Range(Box::new(range)))
        );
        let broken = UnitScope::Chunk {
            range: "not base64".into(),
        };
        assert_eq!(Scope::from_unit(&broken), None);
    }

    #[test]
    fn single_valued_range_ends_after_its_id() {
        let scope = Scope::Range(Box::new(ChunkRange::whole(TypeBracket::Null)));
        assert!(scope.filter(None).is_some());
        assert!(scope.filter(Some(&Bson::Null)).is_none());
    }

    #[test]
    fn remainder_starts_with_every_type() {
        let scope = Scope::Remainder(vec![TypeBracket::String, TypeBracket::Bool]);
        let filter = scope.filter(None).unwrap();
        let types = filter
            .get_document("_id")
            .unwrap()
            .get_array("$type")
            .unwrap();
        assert_eq!(types.len(), 3, "{filter}");
    }

    #[test]
    fn remainder_continues_in_bracket_then_later_ones() {
        let scope = Scope::Remainder(vec![
            TypeBracket::Number,
            TypeBracket::String,
            TypeBracket::Bool,
        ]);
        let filter = scope.filter(Some(&Bson::String("m".into()))).unwrap();
        let branches = filter.get_array("$or").unwrap();
        assert_eq!(branches.len(), 2, "{filter}");
        let first = branches[0]
            .as_document()
            .unwrap()
            .get_document("_id")
            .unwrap();
        assert_eq!(first.get("$gt"), Some(&Bson::String("m".into())));
        let second = branches[1]
            .as_document()
            .unwrap()
            .get_document("_id")
            .unwrap();
        assert_eq!(
            second.get_array("$type").unwrap(),
            &vec![Bson::String("bool".into())]
        );
    }

    #[test]
    fn remainder_ends_after_last_bracket() {
        let scope = Scope::Remainder(vec![TypeBracket::Null, TypeBracket::MaxKey]);
        assert!(scope.filter(Some(&Bson::MaxKey)).is_none());
        let after_null = scope.filter(Some(&Bson::Null)).unwrap();
        let types = after_null
            .get_document("_id")
            .unwrap()
            .get_array("$type")
            .unwrap();
        assert_eq!(types, &vec![Bson::String("maxKey".into())]);
    }

    #[test]
    fn uncovered_excludes_covered() {
        let left = uncovered_brackets(&[TypeBracket::ObjectId]);
        assert_eq!(left.len(), TypeBracket::ALL.len() - 1);
        assert!(!left.contains(&TypeBracket::ObjectId));
    }
}
