//! Finding the differing documents of a unit: a merge of the source and target streams, both
//! sorted by `_id`.
//!
//! The merge walks both streams in BSON order. Documents with the same `_id` bytes are compared
//! byte for byte; an `_id` that only one side has is missing on the target or extra on it. An
//! `_id` that compares equal to the other side's but has other bytes (Int32 1 on one side, Int64 1
//! on the other) is the same key to MongoDB and counts as a different document.
//!
//! A one-sided document is first held back, by `_id` bytes and content hash, in case the other
//! side delivers the same `_id` later: that happens only if the two servers order some values
//! differently from [`compare_values`]. Held documents are settled as missing or extra at the
//! end, at a checkpoint, or once more than `MAX_HELD` are held, so memory stays bounded.

use std::collections::HashMap;

use bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use super::digest::document_hash;
use super::order::compare_values;
use crate::state::{Difference, DifferenceCounts, DifferenceKind};

/// Examples kept per kind of difference in one unit.
pub const MAX_EXAMPLES_PER_KIND: usize = 10;

/// Characters of an example `_id` kept; longer ones are cut and marked.
const MAX_ID_CHARS: usize = 512;

/// One-sided documents held per side before they are settled at once.
const MAX_HELD: usize = 10_000;

/// The streams whose head document the merge consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    Source,
    Target,
    Both,
    /// Both streams are exhausted.
    Neither,
}

/// A document seen on one side only, so far.
struct Held {
    /// Arrival order, so settled examples keep `_id` order.
    sequence: u64,
    hash: [u8; 32],
    id: RawDocumentBuf,
}

/// The merge state of one unit.
pub struct Merge {
    counts: DifferenceCounts,
    examples: Vec<Difference>,
    held_source: HashMap<Vec<u8>, Held>,
    held_target: HashMap<Vec<u8>, Held>,
    sequence: u64,
}

impl Merge {
    /// Continues with the differences found before a checkpoint.
    pub fn resume(counts: DifferenceCounts, examples: Vec<Difference>) -> Merge {
        Merge {
            counts,
            examples,
            held_source: HashMap::new(),
            held_target: HashMap::new(),
            sequence: 0,
        }
    }

    pub fn counts(&self) -> DifferenceCounts {
        self.counts
    }

    pub fn examples(&self) -> &[Difference] {
        &self.examples
    }

    /// Returns whether no document waits for its counterpart, so the counts are final up to here.
    pub fn is_settled(&self) -> bool {
        self.held_source.is_empty() && self.held_target.is_empty()
    }

    /// Compares the heads of both streams and returns which to consume. The caller reports
    /// documents without a readable `_id` as errors before they get here.
    pub fn step(&mut self, source: Option<&RawDocument>, target: Option<&RawDocument>) -> Advance {
        match (source, target) {
            (None, None) => Advance::Neither,
            (Some(s), None) => {
                self.one_sided(s, Side::Source);
                Advance::Source
            }
            (None, Some(t)) => {
                self.one_sided(t, Side::Target);
                Advance::Target
            }
            (Some(s), Some(t)) => {
                let (Some(sid), Some(tid)) = (id_of(s), id_of(t)) else {
                    return Advance::Neither;
                };
                if id_key(sid) == id_key(tid) {
                    if s.as_bytes() != t.as_bytes() {
                        self.record(DifferenceKind::Different, sid);
                    }
                    return Advance::Both;
                }
                match compare_values(sid, tid) {
                    std::cmp::Ordering::Less => {
                        self.one_sided(s, Side::Source);
                        Advance::Source
                    }
                    std::cmp::Ordering::Greater => {
                        self.one_sided(t, Side::Target);
                        Advance::Target
                    }
                    std::cmp::Ordering::Equal => {
                        self.record(DifferenceKind::Different, sid);
                        Advance::Both
                    }
                }
            }
        }
    }

    /// Settles every held document as missing or extra.
    pub fn settle(&mut self) {
        let mut held: Vec<(DifferenceKind, Held)> = self
            .held_source
            .drain()
            .map(|(_, h)| (DifferenceKind::Missing, h))
            .chain(
                self.held_target
                    .drain()
                    .map(|(_, h)| (DifferenceKind::Extra, h)),
            )
            .collect();
        held.sort_by_key(|(_, h)| h.sequence);
        for (kind, document) in held {
            if let Some(id) = id_of(&document.id) {
                self.record(kind, id);
            }
        }
    }

    fn one_sided(&mut self, document: &RawDocument, side: Side) {
        let Some(id) = id_of(document) else { return };
        let key = id_key(id);
        let hash = document_hash(document.as_bytes());
        let (own, other) = match side {
            Side::Source => (&mut self.held_source, &mut self.held_target),
            Side::Target => (&mut self.held_target, &mut self.held_source),
        };
        if let Some(counterpart) = other.remove(&key) {
            if counterpart.hash != hash {
                self.record(DifferenceKind::Different, id);
            }
            return;
        }
        if own.len() >= MAX_HELD {
            self.settle();
            let kind = match side {
                Side::Source => DifferenceKind::Missing,
                Side::Target => DifferenceKind::Extra,
            };
            self.record(kind, id);
            return;
        }
        self.sequence += 1;
        let mut id_document = RawDocumentBuf::new();
        id_document.append("_id", id.to_raw_bson());
        own.insert(
            key,
            Held {
                sequence: self.sequence,
                hash,
                id: id_document,
            },
        );
    }

    fn record(&mut self, kind: DifferenceKind, id: RawBsonRef<'_>) {
        self.counts.add(kind);
        let kept = self.examples.iter().filter(|e| e.kind == kind).count();
        if kept < MAX_EXAMPLES_PER_KIND {
            self.examples.push(example(kind, id));
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
}

/// Returns the `_id` of a document, if it has one.
pub fn id_of(document: &RawDocument) -> Option<RawBsonRef<'_>> {
    document.get("_id").ok().flatten()
}

/// Encodes an `_id` exactly (type tag and value), so Int32 1 and Int64 1 differ.
fn id_key(id: RawBsonRef<'_>) -> Vec<u8> {
    let mut document = RawDocumentBuf::new();
    document.append("", id.to_raw_bson());
    document.into_bytes()
}

/// Builds an example naming `id` in canonical Extended JSON, cut to [`MAX_ID_CHARS`] characters.
fn example(kind: DifferenceKind, id: RawBsonRef<'_>) -> Difference {
    let text = match bson::Bson::try_from(id.to_raw_bson()) {
        Ok(value) => value.into_canonical_extjson().to_string(),
        Err(e) => format!("(unreadable _id: {e})"),
    };
    let truncated = text.chars().count() > MAX_ID_CHARS;
    let id = if truncated {
        text.chars().take(MAX_ID_CHARS).collect()
    } else {
        text
    };
    Difference {
        kind,
        id,
        id_truncated: truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Document};

    fn raw(document: Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&document).unwrap()
    }

    /// Runs a whole merge over two sorted lists.
    fn merge(source: &[Document], target: &[Document]) -> Merge {
        let source: Vec<RawDocumentBuf> = source.iter().cloned().map(raw).collect();
        let target: Vec<RawDocumentBuf> = target.iter().cloned().map(raw).collect();
        let mut merge = Merge::resume(DifferenceCounts::default(), Vec::new());
        let (mut i, mut j) = (0, 0);
        loop {
            let step = merge.step(
                source.get(i).map(|d| d.as_ref()),
                target.get(j).map(|d| d.as_ref()),
            );
            match step {
                Advance::Source => i += 1,
                Advance::Target => j += 1,
                Advance::Both => {
                    i += 1;
                    j += 1;
                }
                Advance::Neither => break,
            }
        }
        merge.settle();
        merge
    }

    fn ids(merge: &Merge, kind: DifferenceKind) -> Vec<String> {
        merge
            .examples()
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.id.clone())
            .collect()
    }

    #[test]
    fn identical_streams_have_no_differences() {
        let docs: Vec<Document> = (0..5).map(|i| doc! { "_id": i, "v": i }).collect();
        let result = merge(&docs, &docs);
        assert_eq!(result.counts(), DifferenceCounts::default());
        assert!(result.examples().is_empty());
    }

    #[test]
    fn each_kind_is_named_by_id() {
        let source = vec![
            doc! { "_id": 1, "v": 1 },
            doc! { "_id": 2, "v": 2 },
            doc! { "_id": 4, "v": 4 },
        ];
        let target = vec![
            doc! { "_id": 1, "v": 1 },
            doc! { "_id": 3, "v": 3 },
            doc! { "_id": 4, "v": 40 },
        ];
        let result = merge(&source, &target);
        let counts = result.counts();
        assert_eq!((counts.missing, counts.extra, counts.different), (1, 1, 1));
        assert_eq!(
            ids(&result, DifferenceKind::Missing),
            vec![r#"{"$numberInt":"2"}"#]
        );
        assert_eq!(
            ids(&result, DifferenceKind::Extra),
            vec![r#"{"$numberInt":"3"}"#]
        );
        assert_eq!(
            ids(&result, DifferenceKind::Different),
            vec![r#"{"$numberInt":"4"}"#]
        );
    }

    #[test]
    fn equal_id_of_other_type_is_different() {
        let source = vec![doc! { "_id": 1i32 }];
        let target = vec![doc! { "_id": 1i64 }];
        let result = merge(&source, &target);
        assert_eq!(result.counts().different, 1);
        assert_eq!(result.counts().missing + result.counts().extra, 0);
    }

    #[test]
    fn out_of_step_ids_still_pair() {
        // The target delivers 2 and 3 in the other order, as a server with another order
        // would; both still pair with their source documents.
        let source = vec![doc! { "_id": 1 }, doc! { "_id": 2 }, doc! { "_id": 3 }];
        let target = vec![doc! { "_id": 1 }, doc! { "_id": 3 }, doc! { "_id": 2 }];
        let result = merge(&source, &target);
        assert_eq!(result.counts(), DifferenceCounts::default());
    }

    #[test]
    fn empty_target_lists_every_document_missing() {
        let source: Vec<Document> = (0..30).map(|i| doc! { "_id": i }).collect();
        let result = merge(&source, &[]);
        assert_eq!(result.counts().missing, 30);
        let kept = ids(&result, DifferenceKind::Missing);
        assert_eq!(kept.len(), MAX_EXAMPLES_PER_KIND);
        assert_eq!(kept[0], r#"{"$numberInt":"0"}"#, "examples keep _id order");
    }

    #[test]
    fn long_ids_are_cut() {
        let long = "x".repeat(2_000);
        let result = merge(&[doc! { "_id": long }], &[]);
        let example = &result.examples()[0];
        assert!(example.id_truncated);
        assert_eq!(example.id.chars().count(), MAX_ID_CHARS);
    }

    #[test]
    fn resumed_merge_keeps_earlier_counts() {
        let earlier = DifferenceCounts {
            missing: 2,
            extra: 0,
            different: 1,
        };
        let mut merge = Merge::resume(earlier, Vec::new());
        let only = raw(doc! { "_id": 9 });
        assert_eq!(merge.step(None, Some(&only)), Advance::Target);
        assert!(!merge.is_settled());
        merge.settle();
        assert!(merge.is_settled());
        assert_eq!(merge.counts().extra, 1);
        assert_eq!(merge.counts().missing, 2);
    }
}
