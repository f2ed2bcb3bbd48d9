//! Sort specifications and sorting in BSON order.

use std::cmp::Ordering;
use std::sync::Arc;

use bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use super::number::Number;
use super::order::compare;
use super::path::lookup;
use crate::error::{CommandError, CommandResult};

/// A parsed sort: paths with their direction (`true` for ascending).
#[derive(Clone, Debug, Default)]
pub struct SortSpec {
    pub keys: Vec<(String, bool)>,
}

impl SortSpec {
    pub fn parse(spec: &RawDocument) -> CommandResult<SortSpec> {
        let mut keys = Vec::new();
        for element in spec.iter() {
            let (path, value) = element?;
            let direction = match Number::from_raw(value).map(|n| n.to_f64()) {
                Some(1.0) => true,
                Some(-1.0) => false,
                _ => {
                    if let RawBsonRef::Document(_) = value {
                        return Err(CommandError::new(
                            17312,
                            format!("$meta sort on '{path}' is not supported by this emulator"),
                        ));
                    }
                    return Err(CommandError::new(
                        15975,
                        "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                    ));
                }
            };
            keys.push((path.to_string(), direction));
        }
        Ok(SortSpec { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Returns the direction when the sort is on `_id` alone, the order the storage keeps.
    pub fn id_only(&self) -> Option<bool> {
        match self.keys.as_slice() {
            [(path, ascending)] if path == "_id" => Some(*ascending),
            _ => None,
        }
    }

    /// Sorts documents stably in place.
    pub fn sort(&self, documents: &mut [Arc<RawDocumentBuf>]) {
        if self.keys.is_empty() {
            return;
        }
        let mut keyed: Vec<(Vec<Option<RawBsonRef<'_>>>, usize)> = documents
            .iter()
            .enumerate()
            .map(|(i, d)| (self.key_of(d), i))
            .collect();
        keyed.sort_by(|(a, _), (b, _)| self.compare_keys(a, b));
        let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
        let sorted: Vec<Arc<RawDocumentBuf>> =
            order.into_iter().map(|i| documents[i].clone()).collect();
        documents.clone_from_slice(&sorted);
    }

    /// Computes the sort key of a document. Each path contributes its smallest value for an
    /// ascending key and its largest for a descending one, looking inside arrays. A missing
    /// path counts as null.
    pub fn key_of<'a>(&self, document: &'a RawDocument) -> Vec<Option<RawBsonRef<'a>>> {
        self.keys
            .iter()
            .map(|(path, ascending)| {
                let mut values = Vec::new();
                lookup(document, path, &mut values);
                let mut best: Option<RawBsonRef<'a>> = None;
                let mut consider = |candidate: RawBsonRef<'a>| {
                    let better = match best {
                        None => true,
                        Some(current) => {
                            let order = compare(candidate, current);
                            if *ascending {
                                order == Ordering::Less
                            } else {
                                order == Ordering::Greater
                            }
                        }
                    };
                    if better {
                        best = Some(candidate);
                    }
                };
                for value in values {
                    match value {
                        None => consider(RawBsonRef::Null),
                        Some(RawBsonRef::Array(array)) => {
                            let mut empty = true;
                            for element in array.into_iter().flatten() {
                                empty = false;
                                consider(element);
                            }
                            if empty {
                                consider(RawBsonRef::Undefined);
                            }
                        }
                        Some(other) => consider(other),
                    }
                }
                best
            })
            .collect()
    }

    pub fn compare_keys(
        &self,
        a: &[Option<RawBsonRef<'_>>],
        b: &[Option<RawBsonRef<'_>>],
    ) -> Ordering {
        for ((x, y), (_, ascending)) in a.iter().zip(b).zip(&self.keys) {
            let x = x.unwrap_or(RawBsonRef::Null);
            let y = y.unwrap_or(RawBsonRef::Null);
            let order = compare(x, y);
            let order = if *ascending { order } else { order.reverse() };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn sorts_arrays_by_min_then_max() {
        let mut documents = vec![
            Arc::new(rawdoc! { "_id": 1, "a": [5, 1] }),
            Arc::new(rawdoc! { "_id": 2, "a": 3 }),
            Arc::new(rawdoc! { "_id": 3 }),
        ];
        let spec = SortSpec::parse(&rawdoc! { "a": 1 }).unwrap();
        spec.sort(&mut documents);
        let ids: Vec<i32> = documents
            .iter()
            .map(|d| d.get_i32("_id").unwrap())
            .collect();
        assert_eq!(
            ids,
            vec![3, 1, 2],
            "missing sorts as null, then min element 1, then 3"
        );
        let spec = SortSpec::parse(&rawdoc! { "a": -1 }).unwrap();
        spec.sort(&mut documents);
        let ids: Vec<i32> = documents
            .iter()
            .map(|d| d.get_i32("_id").unwrap())
            .collect();
        assert_eq!(ids, vec![1, 2, 3], "max element 5 sorts first descending");
    }
}
