//! The copy phase: planning `_id` chunks, and copy tasks that move one chunk each.

pub mod plan_task;
pub mod planner;
pub mod range;
pub mod reader;
pub mod task;
mod watch;
pub mod writer;

use base64::Engine as _;
use bson::{doc, Bson, Document};

/// Encodes a value as base64 of the BSON document `{v: value}`, for a Table property.
pub fn encode_value(value: &Bson) -> String {
    encode_document(&doc! { "v": value.clone() })
}

/// Decodes a value written by [`encode_value`].
pub fn decode_value(text: &str) -> Option<Bson> {
    decode_document(text)?.get("v").cloned()
}

pub fn encode_document(document: &Document) -> String {
    let mut bytes = Vec::new();
    // Writing a document into a Vec cannot fail.
    let _ = document.to_writer(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_document(text: &str) -> Option<Document> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Document::from_reader(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::spec::BinarySubtype;
    use bson::Binary;

    #[test]
    fn values_round_trip_exactly() {
        let values = [
            Bson::Int64(9_007_199_254_740_993),
            Bson::Double(f64::NAN),
            Bson::Binary(Binary {
                subtype: BinarySubtype::UuidOld,
                bytes: vec![1; 16],
            }),
            Bson::Document(doc! { "b": 1, "a": 2 }),
        ];
        for value in values {
            let back = decode_value(&encode_value(&value)).unwrap();
            let mut a = Vec::new();
            let mut b = Vec::new();
            doc! { "v": value }.to_writer(&mut a).unwrap();
            doc! { "v": back }.to_writer(&mut b).unwrap();
            assert_eq!(a, b);
        }
    }
}
