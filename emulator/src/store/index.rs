//! Index specifications and the key sets that enforce unique indexes.

use std::collections::BTreeMap;

use bson::{rawdoc, RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::{code, CommandError, CommandResult};
use crate::query::filter::Filter;
use crate::query::order::OrderedValue;
use crate::query::path::lookup;

/// One index of a collection.
#[derive(Debug)]
pub struct Index {
    pub name: String,
    /// The key pattern, such as `{a: 1, b: -1}`.
    pub key: RawDocumentBuf,
    pub unique: bool,
    pub sparse: bool,
    pub partial_filter: Option<Filter>,
    /// The specification as `listIndexes` returns it.
    pub spec: RawDocumentBuf,
    /// For unique indexes other than `_id`: each key tuple and the `_id` holding it.
    entries: BTreeMap<Vec<OrderedValue>, OrderedValue>,
}

impl Index {
    pub fn id_index() -> Index {
        Index {
            name: "_id_".to_string(),
            key: rawdoc! { "_id": 1 },
            unique: true,
            sparse: false,
            partial_filter: None,
            spec: rawdoc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
            entries: BTreeMap::new(),
        }
    }

    /// Builds an index from a `createIndexes` specification that has already been validated.
    pub fn from_spec(spec: &RawDocument) -> CommandResult<Index> {
        let key = spec.get_document("key").map_err(|_| {
            CommandError::failed_to_parse("The 'key' field of an index specification is required")
        })?;
        let name = spec.get_str("name").map_err(|_| {
            CommandError::failed_to_parse("The 'name' field of an index specification is required")
        })?;
        let flag = |field: &str| matches!(spec.get(field), Ok(Some(RawBsonRef::Boolean(true))));
        let partial_filter = match spec.get("partialFilterExpression")? {
            Some(RawBsonRef::Document(filter)) => Some(Filter::parse(filter)?),
            Some(_) => {
                return Err(CommandError::type_mismatch(
                    "partialFilterExpression must be an object",
                ))
            }
            None => None,
        };
        let mut stored = rawdoc! { "v": 2, "key": key.to_raw_document_buf(), "name": name };
        for element in spec.iter() {
            let (field, value) = element?;
            if !matches!(field, "v" | "key" | "name" | "ns") {
                stored.append_ref(field, value);
            }
        }
        Ok(Index {
            name: name.to_string(),
            key: key.to_raw_document_buf(),
            unique: flag("unique"),
            sparse: flag("sparse"),
            partial_filter,
            spec: stored,
            entries: BTreeMap::new(),
        })
    }

    pub fn is_id_index(&self) -> bool {
        self.name == "_id_"
    }

    /// Returns the key tuples of a document, one per combination of array elements (a
    /// multikey index), or none when a sparse or partial index skips the document.
    pub fn keys_of(&self, document: &RawDocument) -> Vec<Vec<OrderedValue>> {
        if let Some(filter) = &self.partial_filter {
            if !filter.matches(document) {
                return Vec::new();
            }
        }
        let mut tuples: Vec<Vec<OrderedValue>> = vec![Vec::new()];
        let mut any_present = false;
        for element in self.key.iter().flatten() {
            let (path, _) = element;
            let mut found = Vec::new();
            lookup(document, path, &mut found);
            let mut values: Vec<OrderedValue> = Vec::new();
            for value in found {
                match value {
                    None => values.push(OrderedValue::from_ref(RawBsonRef::Null)),
                    Some(RawBsonRef::Array(array)) => {
                        any_present = true;
                        let before = values.len();
                        for element in array.into_iter().flatten() {
                            values.push(OrderedValue::from_ref(element));
                        }
                        if values.len() == before {
                            values.push(OrderedValue::from_ref(RawBsonRef::Undefined));
                        }
                    }
                    Some(other) => {
                        any_present = true;
                        values.push(OrderedValue::from_ref(other));
                    }
                }
            }
            values.sort();
            values.dedup();
            tuples = tuples
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut tuple = prefix.clone();
                        tuple.push(v.clone());
                        tuple
                    })
                })
                .collect();
        }
        if self.sparse && !any_present {
            return Vec::new();
        }
        tuples
    }

    /// Returns a duplicate-key error if another document already has one of `keys`.
    pub fn check_unique(
        &self,
        namespace: &str,
        keys: &[Vec<OrderedValue>],
        id: &OrderedValue,
    ) -> CommandResult<()> {
        for key in keys {
            if let Some(owner) = self.entries.get(key) {
                if owner != id {
                    return Err(self.duplicate_key_error(namespace, key));
                }
            }
        }
        Ok(())
    }

    pub fn add_keys(&mut self, keys: Vec<Vec<OrderedValue>>, id: &OrderedValue) {
        for key in keys {
            self.entries.insert(key, id.clone());
        }
    }

    pub fn remove_keys(&mut self, keys: &[Vec<OrderedValue>], id: &OrderedValue) {
        for key in keys {
            if self.entries.get(key) == Some(id) {
                self.entries.remove(key);
            }
        }
    }

    /// Builds the 11000 error `mongod` returns, with `keyPattern` and `keyValue`.
    pub fn duplicate_key_error(&self, namespace: &str, key: &[OrderedValue]) -> CommandError {
        let mut key_value = RawDocumentBuf::new();
        for ((path, _), value) in self.key.iter().flatten().zip(key) {
            key_value.append(path, value.0.clone());
        }
        let shown = key_value
            .to_document()
            .map(|d| {
                let text = d.to_string();
                text.trim_start_matches('{')
                    .trim_end_matches('}')
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let message = format!(
            "E11000 duplicate key error collection: {namespace} index: {} dup key: {{ {shown} }}",
            self.name
        );
        CommandError::new(code::DUPLICATE_KEY, message).with_extra(rawdoc! {
            "keyPattern": self.key.clone(),
            "keyValue": key_value,
        })
    }
}
