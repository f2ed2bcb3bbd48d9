//! Table entities: typed property access, the JSON wire form and the service's limits.
//!
//! Properties live in a `serde_json::Map`. Typed values that JSON cannot tell apart carry an OData
//! annotation on the wire (`"Name@odata.type": "Edm.Int64"`), and this module hides the common
//! cases:
//! - Int64 travels as a string with its annotation and is a JSON integer in [`Entity::properties`],
//!   so values above 2^53 keep every digit. Every JSON integer is written as Int64. An Int32 read
//!   from the service is therefore written back as Int64.
//! - Double travels as a number with an `Edm.Double` annotation, so `3.0` stays a double. NaN and
//!   the infinities are strings (`"NaN"`, `"Infinity"`, `"-Infinity"`) that keep their annotation.
//! - DateTime, Guid and Binary stay strings, and their annotation stays in the map under
//!   `"Name@odata.type"`, so a read-modify-write keeps their type.
//!
//! Null properties are not sent, because Table Storage has no null: a missing property is the null.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};

use super::StorageError;

/// Maximum size of a PartitionKey or RowKey: 1 KiB, counted as UTF-16 bytes (512 code units).
///
/// NOTE: the service documents "up to 1 KiB" without naming the encoding, and Azurite 3.35 accepts
/// up to 1024 UTF-16 code units. This client applies the stricter UTF-16 reading.
pub const MAX_KEY_BYTES: usize = 1024;
/// Maximum size of one string or binary property: 64 KiB, a string counted as UTF-16 bytes.
pub const MAX_PROPERTY_BYTES: usize = 64 * 1024;
/// Maximum size of one entity, estimated with the service's published size formula.
pub const MAX_ENTITY_BYTES: usize = 1024 * 1024;
/// Custom properties per entity: 255 minus PartitionKey, RowKey and Timestamp.
const MAX_CUSTOM_PROPERTIES: usize = 252;
/// Maximum length of a property name in characters.
const MAX_PROPERTY_NAME_CHARS: usize = 255;

const ODATA_TYPE_SUFFIX: &str = "@odata.type";
const EDM_INT32: &str = "Edm.Int32";
const EDM_INT64: &str = "Edm.Int64";
const EDM_DOUBLE: &str = "Edm.Double";
const EDM_DATETIME: &str = "Edm.DateTime";
const EDM_BINARY: &str = "Edm.Binary";
const EDM_GUID: &str = "Edm.Guid";

/// One table row: its keys, the ETag it was read with, and its custom properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entity {
    pub partition_key: String,
    pub row_key: String,
    /// The ETag from the last read or write, used with [`super::IfMatch::Etag`]. `None` for an
    /// entity built locally.
    pub etag: Option<String>,
    /// Custom properties, without PartitionKey, RowKey and Timestamp. See the module docs for how
    /// typed values are represented.
    pub properties: Map<String, Value>,
}

impl Entity {
    /// Creates an entity with no properties.
    pub fn new(partition_key: impl Into<String>, row_key: impl Into<String>) -> Self {
        Self {
            partition_key: partition_key.into(),
            row_key: row_key.into(),
            etag: None,
            properties: Map::new(),
        }
    }

    fn annotation(&self, name: &str) -> Option<&str> {
        self.properties
            .get(&annotation_key(name))
            .and_then(Value::as_str)
    }

    /// Returns a string property. DateTime, Guid and Binary properties are strings too.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.properties.get(name).and_then(Value::as_str)
    }

    /// Returns an integer property (Int32 or Int64).
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.properties.get(name).and_then(Value::as_i64)
    }

    /// Returns a Double property, NaN and the infinities included. An integer property is returned
    /// as a double too.
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        match self.properties.get(name)? {
            Value::Number(number) => number.as_f64(),
            Value::String(text) if self.annotation(name) == Some(EDM_DOUBLE) => match text.as_str()
            {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
    }

    /// Returns a Boolean property.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.properties.get(name).and_then(Value::as_bool)
    }

    /// Returns a DateTime property, or a string property that holds an RFC 3339 timestamp.
    pub fn get_datetime(&self, name: &str) -> Option<DateTime<Utc>> {
        let text = self.get_str(name)?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|value| value.with_timezone(&Utc))
    }

    /// Returns a Binary property's bytes.
    pub fn get_binary(&self, name: &str) -> Option<Vec<u8>> {
        if self.annotation(name) != Some(EDM_BINARY) {
            return None;
        }
        base64::engine::general_purpose::STANDARD
            .decode(self.get_str(name)?)
            .ok()
    }

    /// Sets a String property.
    pub fn set_str(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.set_typed(name, Value::String(value.into()), None)
    }

    /// Sets an Int64 property.
    pub fn set_i64(&mut self, name: &str, value: i64) -> &mut Self {
        self.set_typed(name, Value::Number(value.into()), None)
    }

    /// Sets a Double property. NaN and the infinities are stored in their wire form.
    pub fn set_f64(&mut self, name: &str, value: f64) -> &mut Self {
        match Number::from_f64(value) {
            Some(number) => self.set_typed(name, Value::Number(number), None),
            None => {
                let text = if value.is_nan() {
                    "NaN"
                } else if value > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                self.set_typed(name, Value::String(text.to_owned()), Some(EDM_DOUBLE))
            }
        }
    }

    /// Sets a Boolean property.
    pub fn set_bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.set_typed(name, Value::Bool(value), None)
    }

    /// Sets a DateTime property. Table Storage keeps 100-nanosecond precision, so finer digits are
    /// dropped.
    pub fn set_datetime(&mut self, name: &str, value: DateTime<Utc>) -> &mut Self {
        let text = format!(
            "{}.{:07}Z",
            value.format("%Y-%m-%dT%H:%M:%S"),
            value.timestamp_subsec_nanos() / 100
        );
        self.set_typed(name, Value::String(text), Some(EDM_DATETIME))
    }

    /// Sets a Binary property (at most [`MAX_PROPERTY_BYTES`] bytes).
    pub fn set_binary(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let text = base64::engine::general_purpose::STANDARD.encode(value);
        self.set_typed(name, Value::String(text), Some(EDM_BINARY))
    }

    /// Removes a property and its type annotation, and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.properties.remove(&annotation_key(name));
        self.properties.remove(name)
    }

    fn set_typed(&mut self, name: &str, value: Value, edm_type: Option<&str>) -> &mut Self {
        let key = annotation_key(name);
        match edm_type {
            Some(edm_type) => self
                .properties
                .insert(key, Value::String(edm_type.to_owned())),
            None => self.properties.remove(&key),
        };
        self.properties.insert(name.to_owned(), value);
        self
    }

    /// Checks keys, property names, property sizes and the entity size against the service's
    /// limits, naming the offending key or property.
    pub(crate) fn validate(&self) -> Result<(), StorageError> {
        validate_key("PartitionKey", &self.partition_key)?;
        validate_key("RowKey", &self.row_key)?;

        let mut count = 0;
        let mut size = 4 + 2 * (utf16_len(&self.partition_key) + utf16_len(&self.row_key));
        for (name, value) in self.properties.iter() {
            if name.ends_with(ODATA_TYPE_SUFFIX) || value.is_null() {
                continue;
            }
            count += 1;
            self.validate_property_name(name)?;
            size += 8 + 2 * utf16_len(name) + self.property_size(name, value)?;
        }

        if count > MAX_CUSTOM_PROPERTIES {
            return Err(self.invalid(format!(
                "has {count} properties, over the limit of {MAX_CUSTOM_PROPERTIES}"
            )));
        }
        if size > MAX_ENTITY_BYTES {
            return Err(self.invalid(format!(
                "is about {size} bytes, over the {MAX_ENTITY_BYTES}-byte entity limit; \
                 move large values to separate rows"
            )));
        }
        Ok(())
    }

    fn validate_property_name(&self, name: &str) -> Result<(), StorageError> {
        if name.is_empty() || name.chars().count() > MAX_PROPERTY_NAME_CHARS {
            return Err(self.invalid(format!(
                "has a property name of {} characters; names must be 1 to {MAX_PROPERTY_NAME_CHARS}",
                name.chars().count()
            )));
        }
        if matches!(name, "PartitionKey" | "RowKey" | "Timestamp") || name.starts_with("odata.") {
            return Err(self.invalid(format!(
                "has a property named {name:?}, which is reserved by the service"
            )));
        }
        Ok(())
    }

    /// Returns the stored size of one property value by the service's size formula, and checks the
    /// 64 KiB limit of strings and binaries.
    fn property_size(&self, name: &str, value: &Value) -> Result<usize, StorageError> {
        let annotation = self.annotation(name);
        let size = match value {
            Value::Bool(_) => 1,
            Value::Number(_) if annotation == Some(EDM_INT32) => 4,
            Value::Number(_) => 8,
            Value::String(text) => match annotation {
                Some(EDM_BINARY) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|_| {
                            self.invalid(format!("has Binary property {name:?} that is not base64"))
                        })?;
                    self.check_property_limit(name, bytes.len(), "bytes")?;
                    4 + bytes.len()
                }
                Some(EDM_INT64) | Some(EDM_DOUBLE) | Some(EDM_DATETIME) => 8,
                Some(EDM_GUID) => 16,
                _ => {
                    let bytes = 2 * utf16_len(text);
                    self.check_property_limit(name, bytes, "bytes as UTF-16")?;
                    4 + bytes
                }
            },
            Value::Null => 0,
            Value::Array(_) | Value::Object(_) => {
                return Err(self.invalid(format!(
                    "has property {name:?} with a JSON array or object; \
                     Table Storage stores only strings, numbers, booleans and dates"
                )))
            }
        };
        Ok(size)
    }

    fn check_property_limit(
        &self,
        name: &str,
        bytes: usize,
        unit: &str,
    ) -> Result<(), StorageError> {
        if bytes > MAX_PROPERTY_BYTES {
            return Err(self.invalid(format!(
                "has property {name:?} of {bytes} {unit}, over the {MAX_PROPERTY_BYTES}-byte property limit; \
                 split the value across properties or rows"
            )));
        }
        Ok(())
    }

    fn invalid(&self, problem: String) -> StorageError {
        StorageError::InvalidInput(format!(
            "entity (PartitionKey {}, RowKey {}) {problem}",
            shorten(&self.partition_key),
            shorten(&self.row_key)
        ))
    }

    /// Builds the JSON body sent to the service. Call [`Entity::validate`] first.
    pub(crate) fn to_wire(&self) -> Result<Map<String, Value>, StorageError> {
        let mut wire = Map::new();
        wire.insert(
            "PartitionKey".into(),
            Value::String(self.partition_key.clone()),
        );
        wire.insert("RowKey".into(), Value::String(self.row_key.clone()));

        for (name, value) in self.properties.iter() {
            if name.ends_with(ODATA_TYPE_SUFFIX) {
                continue;
            }
            let annotation = self.annotation(name);
            let (wire_value, wire_type) = match value {
                Value::Null => continue,
                Value::Number(number) => self.number_to_wire(name, number, annotation)?,
                _ => (value.clone(), annotation.map(str::to_owned)),
            };
            wire.insert(name.clone(), wire_value);
            if let Some(wire_type) = wire_type {
                wire.insert(annotation_key(name), Value::String(wire_type));
            }
        }
        Ok(wire)
    }

    fn number_to_wire(
        &self,
        name: &str,
        number: &Number,
        annotation: Option<&str>,
    ) -> Result<(Value, Option<String>), StorageError> {
        let as_double = || (Value::Number(number.clone()), Some(EDM_DOUBLE.to_owned()));
        match annotation {
            Some(EDM_DOUBLE) => Ok(as_double()),
            None if number.is_f64() => Ok(as_double()),
            Some(EDM_INT32) if number.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {
                Ok((Value::Number(number.clone()), Some(EDM_INT32.to_owned())))
            }
            None | Some(EDM_INT64) => match number.as_i64() {
                Some(integer) => Ok((Value::String(integer.to_string()), Some(EDM_INT64.to_owned()))),
                None => Err(self.invalid(format!(
                    "has property {name:?} = {number}, which does not fit in a signed 64-bit integer"
                ))),
            },
            Some(other) => Err(self.invalid(format!(
                "has property {name:?} with a number value but type annotation {other:?}"
            ))),
        }
    }

    /// Reads an entity from the service's JSON (`odata=minimalmetadata`). `header_etag` is the
    /// response's `ETag` header, used when the body has no `odata.etag`.
    pub(crate) fn from_wire(
        mut wire: Map<String, Value>,
        header_etag: Option<&str>,
    ) -> Result<Self, StorageError> {
        let mut take_key = |name: &str| match wire.remove(name) {
            Some(Value::String(key)) => Ok(key),
            _ => Err(StorageError::Transport(format!(
                "the table service returned an entity without a string {name}"
            ))),
        };
        let partition_key = take_key("PartitionKey")?;
        let row_key = take_key("RowKey")?;
        let etag = match wire.get("odata.etag") {
            Some(Value::String(etag)) => Some(etag.clone()),
            _ => header_etag.map(str::to_owned),
        };

        let mut properties = Map::new();
        for (name, value) in wire.iter() {
            if name.starts_with("odata.")
                || name.ends_with(ODATA_TYPE_SUFFIX)
                || name == "Timestamp"
            {
                continue;
            }
            let annotation = wire.get(&annotation_key(name)).and_then(Value::as_str);
            match (annotation, value) {
                (Some(EDM_INT64), Value::String(text)) => {
                    let integer: i64 = text.parse().map_err(|_| {
                        StorageError::Transport(format!(
                            "the table service returned Int64 property {name:?} with a non-integer value"
                        ))
                    })?;
                    properties.insert(name.clone(), Value::Number(integer.into()));
                }
                (Some(EDM_DOUBLE), Value::Number(number)) => {
                    let double = number.as_f64().and_then(Number::from_f64);
                    properties.insert(
                        name.clone(),
                        double.map(Value::Number).unwrap_or(Value::Null),
                    );
                }
                (Some(EDM_INT32), _) | (None, _) => {
                    properties.insert(name.clone(), value.clone());
                }
                (Some(other), _) => {
                    properties.insert(name.clone(), value.clone());
                    properties.insert(annotation_key(name), Value::String(other.to_owned()));
                }
            }
        }

        Ok(Self {
            partition_key,
            row_key,
            etag,
            properties,
        })
    }
}

/// Quotes a value as an OData string literal for a `$filter`, doubling single quotes:
/// `o'brien` becomes `'o''brien'`. The request URL is percent-encoded separately.
pub fn odata_string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Checks a PartitionKey or RowKey: at most [`MAX_KEY_BYTES`] as UTF-16 and none of `/ \ # ?` or
/// the control characters U+0000 to U+001F and U+007F to U+009F.
pub(crate) fn validate_key(kind: &str, key: &str) -> Result<(), StorageError> {
    let bytes = 2 * utf16_len(key);
    if bytes > MAX_KEY_BYTES {
        return Err(StorageError::InvalidInput(format!(
            "{kind} {} is {bytes} bytes as UTF-16, over the {MAX_KEY_BYTES}-byte key limit; \
             encode or hash long keys",
            shorten(key)
        )));
    }
    if let Some(forbidden) = key.chars().find(|c| is_forbidden_key_char(*c)) {
        return Err(StorageError::InvalidInput(format!(
            "{kind} {} contains the forbidden character U+{:04X}; keys may not contain / \\ # ? \
             or control characters, so encode them first",
            shorten(key),
            u32::from(forbidden)
        )));
    }
    Ok(())
}

fn is_forbidden_key_char(c: char) -> bool {
    matches!(c, '/' | '\\' | '#' | '?' | '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

fn annotation_key(name: &str) -> String {
    format!("{name}{ODATA_TYPE_SUFFIX}")
}

fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Formats a key for an error message, cut to 80 characters so a 1 KiB key does not flood logs.
fn shorten(key: &str) -> String {
    const MAX_CHARS: usize = 80;
    if key.chars().count() <= MAX_CHARS {
        format!("{key:?}")
    } else {
        let prefix: String = key.chars().take(MAX_CHARS).collect();
        format!("{prefix:?}…")
    }
}

#[cfg(test)]
#[path = "entity_tests.rs"]
mod tests;
