//! JSON text to BSON values, with the number types of the literals and the key order of the text.
//!
//! Integer literals become Int32 when they fit and Int64 otherwise, literals with a fraction or an
//! exponent become Double, and object keys keep their order.
//!
//! The conversion is written by hand because neither ready path keeps both properties.
//! `serde_json::Value` sorts object keys unless the `preserve_order` feature is on, and that
//! feature would reach every package in the workspace build. bson's own `Deserialize` reads keys
//! such as `$oid` or `$date` as Extended JSON, which would turn plain data into other types.

use std::fmt;

use bson::{Bson, Document};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// Parses JSON text into one BSON value.
pub fn parse_value(text: &[u8]) -> serde_json::Result<Bson> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = BsonSeed.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Parses JSON text that must be one object.
pub fn parse_document(text: &[u8]) -> anyhow::Result<Document> {
    match parse_value(text)? {
        Bson::Document(document) => Ok(document),
        other => anyhow::bail!("expected a JSON object, found {:?}", other.element_type()),
    }
}

/// Parses JSON text that must be an array of objects, as most tabular datasets are.
pub fn parse_documents(text: &[u8]) -> anyhow::Result<Vec<Document>> {
    let Bson::Array(items) = parse_value(text)? else {
        anyhow::bail!("expected a JSON array of objects");
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Bson::Document(document) => Ok(document),
            other => anyhow::bail!(
                "item {index} is {:?}, but every item must be a JSON object",
                other.element_type()
            ),
        })
        .collect()
}

/// Builds one BSON value from the next JSON value of the deserializer.
struct BsonSeed;

impl<'de> DeserializeSeed<'de> for BsonSeed {
    type Value = Bson;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Bson, D::Error> {
        deserializer.deserialize_any(BsonVisitor)
    }
}

struct BsonVisitor;

impl<'de> Visitor<'de> for BsonVisitor {
    type Value = Bson;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Bson, E> {
        Ok(Bson::Boolean(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Bson, E> {
        Ok(match i32::try_from(value) {
            Ok(small) => Bson::Int32(small),
            Err(_) => Bson::Int64(value),
        })
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Bson, E> {
        // An integer above i64::MAX has no exact BSON integer type, so it is rejected rather than
        // rounded to a Double.
        let signed = i64::try_from(value).map_err(|_| {
            E::custom(format!(
                "integer {value} is larger than the largest BSON Int64"
            ))
        })?;
        self.visit_i64(signed)
    }

    fn visit_f64<E>(self, value: f64) -> Result<Bson, E> {
        Ok(Bson::Double(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Bson, E> {
        Ok(Bson::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Bson, E> {
        Ok(Bson::String(value))
    }

    fn visit_unit<E>(self) -> Result<Bson, E> {
        Ok(Bson::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bson, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(BsonSeed)? {
            items.push(item);
        }
        Ok(Bson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bson, A::Error> {
        let mut document = Document::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                return Err(A::Error::custom(format!(
                    "key {key:?} contains a NUL character, which BSON keys cannot hold"
                )));
            }
            let value = map.next_value_seed(BsonSeed)?;
            document.insert(key, value);
        }
        Ok(Bson::Document(document))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_take_smallest_exact_type() {
        let document = parse_document(br#"{"small": 7, "negative": -2147483648, "large": 2147483648, "huge": -9223372036854775808}"#).unwrap();
        assert_eq!(document.get("small"), Some(&Bson::Int32(7)));
        assert_eq!(document.get("negative"), Some(&Bson::Int32(i32::MIN)));
        assert_eq!(document.get("large"), Some(&Bson::Int64(2_147_483_648)));
        assert_eq!(document.get("huge"), Some(&Bson::Int64(i64::MIN)));
    }

    #[test]
    fn fraction_or_exponent_gives_double() {
        let document =
            parse_document(br#"{"zero": 0.0, "negativeZero": -0.0, "exponent": 1e3}"#).unwrap();
        assert_eq!(document.get("zero"), Some(&Bson::Double(0.0)));
        let negative_zero = document.get_f64("negativeZero").unwrap();
        assert_eq!(negative_zero, 0.0);
        assert!(negative_zero.is_sign_negative());
        assert_eq!(document.get("exponent"), Some(&Bson::Double(1000.0)));
    }

    #[test]
    fn integer_above_int64_is_rejected() {
        let error = parse_value(b"9223372036854775808").unwrap_err();
        assert!(error
            .to_string()
            .contains("larger than the largest BSON Int64"));
    }

    #[test]
    fn key_order_is_kept() {
        let document = parse_document(br#"{"z": 1, "a": 2, "m": {"y": 1, "b": 2}}"#).unwrap();
        let keys: Vec<&str> = document.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        let nested: Vec<&str> = document
            .get_document("m")
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(nested, ["y", "b"]);
    }

    #[test]
    fn extended_json_keys_stay_plain() {
        let document = parse_document(
            br#"{"id": {"$oid": "5f1d7e2a9c1b2a3d4e5f6a7b"}, "when": {"$date": 0}}"#,
        )
        .unwrap();
        let id = document.get_document("id").unwrap();
        assert_eq!(
            id.get("$oid"),
            Some(&Bson::String("5f1d7e2a9c1b2a3d4e5f6a7b".into()))
        );
        let when = document.get_document("when").unwrap();
        assert_eq!(when.get("$date"), Some(&Bson::Int32(0)));
    }

    #[test]
    fn null_bool_string_and_array() {
        let document = parse_document(
            r#"{"n": null, "b": true, "s": "Grüße 東京", "a": [1, "x", [null]]}"#.as_bytes(),
        )
        .unwrap();
        assert_eq!(document.get("n"), Some(&Bson::Null));
        assert_eq!(document.get("b"), Some(&Bson::Boolean(true)));
        assert_eq!(document.get_str("s").unwrap(), "Grüße 東京");
        let expected = Bson::Array(vec![
            Bson::Int32(1),
            Bson::String("x".into()),
            Bson::Array(vec![Bson::Null]),
        ]);
        assert_eq!(document.get("a"), Some(&expected));
    }

    #[test]
    fn nul_in_key_is_rejected() {
        let error = parse_document(br#"{"a\u0000b": 1}"#).unwrap_err();
        assert!(error.to_string().contains("NUL"));
    }

    #[test]
    fn array_items_must_be_objects() {
        let error = parse_documents(br#"[{"a": 1}, 2]"#).unwrap_err();
        assert!(error.to_string().contains("item 1"));
    }

    #[test]
    fn trailing_text_is_rejected() {
        assert!(parse_value(b"{} {}").is_err());
    }
}
