//! Byte-for-byte comparison of a target collection with its source.
//!
//! Both sides are read sorted by `_id` as raw BSON, so a document counts as identical only when
//! its encoding is: same fields in the same order, same types, same bytes (a Double NaN payload or
//! a `-0.0` included). Both servers sort `_id` values of mixed types in BSON comparison order,
//! which pairs the documents up.

use bson::{Bson, RawDocument, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::options::FindOptions;
use mongodb::Collection;

/// Documents fetched per round trip on each side.
const BATCH_SIZE: u32 = 2_000;

/// Maximum rendering length of a value in a difference description, in characters.
const MAX_VALUE_CHARS: usize = 120;

/// The outcome of comparing one collection.
#[derive(Debug, Default)]
pub struct Comparison {
    pub source_namespace: String,
    pub target_namespace: String,
    pub source_documents: u64,
    pub target_documents: u64,
    /// Pairs (in `_id` order) whose raw bytes are equal.
    pub identical_documents: u64,
    /// Pairs whose bytes differ, plus documents that only one side has.
    pub differing_documents: u64,
    /// The first difference found, described for the console.
    pub first_difference: Option<String>,
}

impl Comparison {
    pub fn is_identical(&self) -> bool {
        self.differing_documents == 0
            && self.source_documents == self.target_documents
            && self.identical_documents == self.source_documents
    }

    fn record_difference(&mut self, description: impl FnOnce() -> String) {
        self.differing_documents += 1;
        if self.first_difference.is_none() {
            self.first_difference = Some(description());
        }
    }
}

/// Compares every document of `target` with the document of `source` at the same position in
/// `_id` order.
pub async fn compare_collections(
    source: &Collection<RawDocumentBuf>,
    target: &Collection<RawDocumentBuf>,
) -> mongodb::error::Result<Comparison> {
    let mut comparison = Comparison {
        source_namespace: source.namespace().to_string(),
        target_namespace: target.namespace().to_string(),
        ..Comparison::default()
    };
    let mut source_cursor = source
        .find(bson::doc! {})
        .with_options(sorted_by_id())
        .await?;
    let mut target_cursor = target
        .find(bson::doc! {})
        .with_options(sorted_by_id())
        .await?;

    loop {
        let (source_document, target_document) =
            tokio::try_join!(source_cursor.try_next(), target_cursor.try_next())?;
        match (source_document, target_document) {
            (None, None) => break,
            (Some(source_document), Some(target_document)) => {
                comparison.source_documents += 1;
                comparison.target_documents += 1;
                if source_document.as_bytes() == target_document.as_bytes() {
                    comparison.identical_documents += 1;
                } else {
                    comparison.record_difference(|| {
                        describe_difference(&source_document, &target_document)
                    });
                }
            }
            (Some(source_document), None) => {
                comparison.source_documents += 1;
                comparison.record_difference(|| {
                    format!(
                        "the target has no document for source _id {}",
                        render_id(&source_document)
                    )
                });
            }
            (None, Some(target_document)) => {
                comparison.target_documents += 1;
                comparison.record_difference(|| {
                    format!(
                        "the target has an extra document with _id {}",
                        render_id(&target_document)
                    )
                });
            }
        }
    }
    Ok(comparison)
}

fn sorted_by_id() -> FindOptions {
    FindOptions::builder()
        .sort(bson::doc! { "_id": 1 })
        .batch_size(BATCH_SIZE)
        .build()
}

/// Describes how two documents at the same position differ: their `_id`s when those differ,
/// otherwise the first field whose name, position or encoded value differs.
pub fn describe_difference(source: &RawDocument, target: &RawDocument) -> String {
    let source_id = render_id(source);
    let target_id = render_id(target);
    if source_id != target_id {
        return format!(
            "documents out of step: source _id {source_id} is paired with target _id {target_id}, \
             so a document is missing or extra on one side"
        );
    }

    let mut source_fields = source.iter_elements();
    let mut target_fields = target.iter_elements();
    let mut position = 0;
    loop {
        match (source_fields.next(), target_fields.next()) {
            (Some(Ok(source_field)), Some(Ok(target_field))) => {
                let same_key = source_field.key() == target_field.key();
                let same_value = encode_value(&source_field) == encode_value(&target_field);
                if !same_key || !same_value {
                    return format!(
                        "_id {source_id}: field {position} differs: source {:?} = {}, target {:?} = {}",
                        source_field.key(),
                        render_element(&source_field),
                        target_field.key(),
                        render_element(&target_field),
                    );
                }
            }
            (Some(Ok(source_field)), None) => {
                return format!(
                    "_id {source_id}: the target lacks field {:?}",
                    source_field.key()
                );
            }
            (None, Some(Ok(target_field))) => {
                return format!(
                    "_id {source_id}: the target has extra field {:?}",
                    target_field.key()
                );
            }
            (None, None) => {
                return format!("_id {source_id}: the fields match but the encodings differ");
            }
            (Some(Err(error)), _) | (_, Some(Err(error))) => {
                return format!("_id {source_id}: invalid BSON: {error}");
            }
        }
        position += 1;
    }
}

/// Renders a document's `_id` as canonical Extended JSON, which shows the BSON type.
pub fn render_id(document: &RawDocument) -> String {
    match document.get("_id") {
        Ok(Some(id)) => match Bson::try_from(id) {
            Ok(id) => truncate(id.into_canonical_extjson().to_string()),
            Err(error) => format!("<unreadable _id: {error}>"),
        },
        Ok(None) => "<no _id>".to_string(),
        Err(error) => format!("<invalid _id: {error}>"),
    }
}

/// Encodes an element's value alone, so values compare by bytes: `-0.0` differs from `0.0`, and a
/// NaN equals a NaN with the same payload.
fn encode_value(element: &bson::raw::RawElement<'_>) -> Option<Vec<u8>> {
    let mut holder = RawDocumentBuf::new();
    holder.append_ref("v", element.value().ok()?);
    Some(holder.into_bytes())
}

fn render_element(element: &bson::raw::RawElement<'_>) -> String {
    match element.value().and_then(Bson::try_from) {
        Ok(value) => truncate(value.into_canonical_extjson().to_string()),
        Err(error) => format!("<invalid value: {error}>"),
    }
}

fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_VALUE_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn raw(document: bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&document).unwrap()
    }

    #[test]
    fn difference_names_changed_type() {
        let source = raw(doc! { "_id": 1, "a": "x", "n": 1_i64 });
        let target = raw(doc! { "_id": 1, "a": "x", "n": 1_i32 });
        let description = describe_difference(&source, &target);
        assert!(description.contains("field 2 differs"), "{description}");
        assert!(description.contains("$numberLong"), "{description}");
        assert!(description.contains("$numberInt"), "{description}");
    }

    #[test]
    fn difference_names_negative_zero() {
        let source = raw(doc! { "_id": "z", "v": -0.0 });
        let target = raw(doc! { "_id": "z", "v": 0.0 });
        let description = describe_difference(&source, &target);
        assert!(description.contains("-0.0"), "{description}");
    }

    #[test]
    fn difference_names_reordered_fields() {
        let source = raw(doc! { "_id": 1, "a": 1, "b": 2 });
        let target = raw(doc! { "_id": 1, "b": 2, "a": 1 });
        let description = describe_difference(&source, &target);
        assert!(description.contains("field 1 differs"), "{description}");
    }

    #[test]
    fn difference_names_missing_field() {
        let source = raw(doc! { "_id": 1, "a": 1, "b": 2 });
        let target = raw(doc! { "_id": 1, "a": 1 });
        let description = describe_difference(&source, &target);
        assert!(description.contains("lacks field \"b\""), "{description}");
    }

    #[test]
    fn difference_names_mismatched_ids() {
        let source = raw(doc! { "_id": 1 });
        let target = raw(doc! { "_id": 2 });
        let description = describe_difference(&source, &target);
        assert!(description.contains("out of step"), "{description}");
    }

    #[test]
    fn long_values_are_truncated() {
        let text = truncate("é".repeat(500));
        assert_eq!(text.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn identical_requires_equal_counts() {
        let complete = Comparison {
            source_documents: 3,
            target_documents: 3,
            identical_documents: 3,
            ..Comparison::default()
        };
        assert!(complete.is_identical());
        let short = Comparison {
            source_documents: 3,
            target_documents: 2,
            identical_documents: 2,
            differing_documents: 1,
            ..Comparison::default()
        };
        assert!(!short.is_identical());
    }
}
