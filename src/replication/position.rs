//! Resume positions: where a collection's change stream continues.
//!
//! A resume token is the server's opaque value. It is stored as the BSON it arrived as and sent
//! back unchanged; nothing here looks inside it.

use base64::Engine as _;
use bson::{doc, Bson, Document, Timestamp};

const RESUME_AFTER: &str = "resumeAfter";
const START_AT: &str = "startAtOperationTime";

/// A point to open a change stream at.
#[derive(Clone, Debug, PartialEq)]
pub enum Position {
    /// Continue after the event or batch this token names.
    ResumeAfter(Bson),
    /// Start with the first event at or after this cluster time; used when the server returned
    /// no token when the stream was first opened.
    StartAt(Timestamp),
}

impl Position {
    /// The `$changeStream` option that opens the stream here.
    pub fn stage_option(&self) -> (&'static str, Bson) {
        match self {
            Position::ResumeAfter(token) => (RESUME_AFTER, token.clone()),
            Position::StartAt(time) => (START_AT, Bson::Timestamp(*time)),
        }
    }

    /// Encodes the position as base64 of a BSON document, for a Table property.
    pub fn encode(&self) -> String {
        let (name, value) = self.stage_option();
        let mut bytes = Vec::new();
        // Writing a document into a Vec cannot fail.
        let _ = doc! { name: value }.to_writer(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads a position written by [`Position::encode`].
    pub fn decode(text: &str) -> Option<Position> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        let document = Document::from_reader(bytes.as_slice()).ok()?;
        if let Some(token) = document.get(RESUME_AFTER) {
            return Some(Position::ResumeAfter(token.clone()));
        }
        match document.get(START_AT) {
            Some(Bson::Timestamp(time)) => Some(Position::StartAt(*time)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::spec::BinarySubtype;
    use bson::Binary;

    #[test]
    fn tokens_round_trip_byte_for_byte() {
        // A Cosmos DB (RU) token holds binary data; a MongoDB token holds a hex string.
        let tokens = [
            Bson::Document(doc! {
                "_data": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 2, 255] },
                "_kind": 1,
            }),
            Bson::Document(doc! { "_data": "8265F0A1B2000000012B0229296E04" }),
        ];
        for token in tokens {
            let position = Position::ResumeAfter(token.clone());
            let back = Position::decode(&position.encode()).unwrap();
            let (_, value) = back.stage_option();
            let mut a = Vec::new();
            let mut b = Vec::new();
            doc! { "t": token }.to_writer(&mut a).unwrap();
            doc! { "t": value }.to_writer(&mut b).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn operation_time_round_trips() {
        let time = Timestamp {
            time: 1_700_000_000,
            increment: 7,
        };
        let position = Position::StartAt(time);
        assert_eq!(Position::decode(&position.encode()), Some(position));
    }

    #[test]
    fn garbage_is_not_a_position() {
        assert_eq!(Position::decode("not base64!"), None);
        let empty = base64::engine::general_purpose::STANDARD.encode([5, 0, 0, 0, 0]);
        assert_eq!(Position::decode(&empty), None);
    }
}
