//! One collection: documents ordered by `_id` in BSON order, plus its indexes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bson::{RawBson, RawBsonRef, RawDocument, RawDocumentBuf};

use super::index::Index;
use crate::error::{code, CommandError, CommandResult};
use crate::query::order::{canonical_rank, OrderedValue};

/// A stored document. Documents are shared with cursors and the change log, never copied.
pub type StoredDocument = Arc<RawDocumentBuf>;

#[derive(Debug)]
pub struct Collection {
    /// `db.collection`, used in error messages.
    pub namespace: String,
    /// A random UUID, as `listCollections` reports in `info.uuid`.
    pub uuid: [u8; 16],
    /// The options given to `create`, returned by `listCollections`.
    pub options: RawDocumentBuf,
    pub documents: BTreeMap<OrderedValue, StoredDocument>,
    /// Index 0 is always `_id_`.
    pub indexes: Vec<Index>,
    /// Sum of the stored documents' BSON sizes.
    pub data_size: u64,
}

impl Collection {
    pub fn new(namespace: String, options: RawDocumentBuf) -> Collection {
        let mut uuid: [u8; 16] = rand::random();
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        Collection {
            namespace,
            uuid,
            options,
            documents: BTreeMap::new(),
            indexes: vec![Index::id_index()],
            data_size: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    fn secondary_unique(&self) -> impl Iterator<Item = &Index> {
        self.indexes.iter().filter(|i| i.unique && !i.is_id_index())
    }

    /// Inserts a document that already has an `_id`. Fails with 11000 when the `_id` or a
    /// unique index key is taken.
    pub fn insert(&mut self, document: RawDocumentBuf) -> CommandResult<StoredDocument> {
        let id = id_of(&document)?;
        if self.documents.contains_key(&id) {
            return Err(self.indexes[0].duplicate_key_error(&self.namespace, &[id]));
        }
        let keys = self.check_secondary(&document, &id)?;
        let stored = Arc::new(document);
        self.add_secondary(keys, &id);
        self.data_size += stored.as_bytes().len() as u64;
        self.documents.insert(id, stored.clone());
        Ok(stored)
    }

    /// Replaces the document with `_id` `id` by `document` (which carries the same `_id`).
    pub fn replace(
        &mut self,
        id: &OrderedValue,
        document: RawDocumentBuf,
    ) -> CommandResult<StoredDocument> {
        let keys = self.check_secondary(&document, id)?;
        if let Some(old) = self.documents.get(id).cloned() {
            self.remove_secondary(&old, id);
            self.data_size -= old.as_bytes().len() as u64;
        }
        let stored = Arc::new(document);
        self.add_secondary(keys, id);
        self.data_size += stored.as_bytes().len() as u64;
        self.documents.insert(id.clone(), stored.clone());
        Ok(stored)
    }

    pub fn remove(&mut self, id: &OrderedValue) -> Option<StoredDocument> {
        let old = self.documents.remove(id)?;
        self.remove_secondary(&old, id);
        self.data_size -= old.as_bytes().len() as u64;
        Some(old)
    }

    fn check_secondary(
        &self,
        document: &RawDocument,
        id: &OrderedValue,
    ) -> CommandResult<Vec<Vec<Vec<OrderedValue>>>> {
        let mut all = Vec::new();
        for index in self.secondary_unique() {
            let keys = index.keys_of(document);
            index.check_unique(&self.namespace, &keys, id)?;
            all.push(keys);
        }
        Ok(all)
    }

    fn add_secondary(&mut self, keys: Vec<Vec<Vec<OrderedValue>>>, id: &OrderedValue) {
        let unique = self
            .indexes
            .iter_mut()
            .filter(|i| i.unique && !i.is_id_index());
        for (index, keys) in unique.zip(keys) {
            index.add_keys(keys, id);
        }
    }

    fn remove_secondary(&mut self, document: &RawDocument, id: &OrderedValue) {
        for index in self
            .indexes
            .iter_mut()
            .filter(|i| i.unique && !i.is_id_index())
        {
            let keys = index.keys_of(document);
            index.remove_keys(&keys, id);
        }
    }

    /// Adds an index, filling a unique index's key set from the existing documents. Fails
    /// with 11000 when existing documents violate the new unique index.
    pub fn add_index(&mut self, mut index: Index) -> CommandResult<()> {
        if index.unique {
            for (id, document) in &self.documents {
                let keys = index.keys_of(document);
                index.check_unique(&self.namespace, &keys, id)?;
                index.add_keys(keys, id);
            }
        }
        self.indexes.push(index);
        Ok(())
    }

    /// Iterates documents whose `_id` lies in the given bounds, in ascending or descending order.
    pub fn range(
        &self,
        lower: Bound<OrderedValue>,
        upper: Bound<OrderedValue>,
        ascending: bool,
    ) -> Box<dyn Iterator<Item = (&OrderedValue, &StoredDocument)> + '_> {
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) =
            (&lower, &upper)
        {
            if l > u {
                return Box::new(std::iter::empty());
            }
            if l == u
                && (matches!(lower, Bound::Excluded(_)) || matches!(upper, Bound::Excluded(_)))
            {
                return Box::new(std::iter::empty());
            }
        }
        let range = self.documents.range((lower, upper));
        if ascending {
            Box::new(range)
        } else {
            Box::new(range.rev())
        }
    }
}

/// Returns the `_id` of a document as an index key.
pub fn id_of(document: &RawDocument) -> CommandResult<OrderedValue> {
    match document.get("_id")? {
        Some(RawBsonRef::Array(_)) => Err(CommandError::new(
            53,
            "The '_id' value cannot be of type array",
        )),
        Some(RawBsonRef::RegularExpression(_)) => Err(CommandError::new(
            code::BAD_VALUE,
            "can't use a regex for _id",
        )),
        Some(value) => Ok(OrderedValue::from_ref(value)),
        None => Err(CommandError::new(code::NO_SUCH_KEY, "document has no _id")),
    }
}

/// Returns the smallest value of a canonical type rank, for the lower end of a type-bracketed
/// `_id` range scan. `None` for ranks that have no cheap smallest value.
pub fn smallest_of_rank(rank: i32) -> Option<RawBson> {
    let value = match rank {
        -1 => RawBson::MinKey,
        0 => RawBson::Undefined,
        5 => RawBson::Null,
        10 => RawBson::Double(f64::NAN),
        15 => RawBson::String(String::new()),
        20 => RawBson::Document(RawDocumentBuf::new()),
        25 => RawBson::Array(bson::RawArrayBuf::new()),
        35 => RawBson::ObjectId(bson::oid::ObjectId::from_bytes([0; 12])),
        40 => RawBson::Boolean(false),
        45 => RawBson::DateTime(bson::DateTime::from_millis(i64::MIN)),
        47 => RawBson::Timestamp(bson::Timestamp {
            time: 0,
            increment: 0,
        }),
        30 => RawBson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: Vec::new(),
        }),
        50 => RawBson::RegularExpression(bson::Regex {
            pattern: String::new(),
            options: String::new(),
        }),
        60 => RawBson::JavaScriptCode(String::new()),
        65 => RawBson::JavaScriptCodeWithScope(bson::RawJavaScriptCodeWithScope {
            code: String::new(),
            scope: RawDocumentBuf::new(),
        }),
        127 => RawBson::MaxKey,
        _ => return None,
    };
    debug_assert_eq!(canonical_rank(value.as_raw_bson_ref()), rank);
    Some(value)
}
