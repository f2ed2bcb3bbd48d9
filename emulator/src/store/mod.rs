//! In-memory storage: databases, collections and their indexes.

pub mod collection;
pub mod index;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bson::RawDocumentBuf;

pub use collection::{Collection, StoredDocument};

/// A shared, lockable collection. Handlers clone the `Arc` out of the catalog and release the
/// catalog lock before locking the collection.
pub type SharedCollection = Arc<RwLock<Collection>>;

#[derive(Debug, Default)]
pub struct Database {
    pub collections: BTreeMap<String, SharedCollection>,
}

/// Every database of the server.
#[derive(Debug, Default)]
pub struct Catalog {
    pub databases: BTreeMap<String, Database>,
}

impl Catalog {
    pub fn collection(&self, db: &str, name: &str) -> Option<SharedCollection> {
        self.databases.get(db)?.collections.get(name).cloned()
    }

    /// Creates the collection if needed. Returns it and whether it was created.
    pub fn create_collection(
        &mut self,
        db: &str,
        name: &str,
        options: RawDocumentBuf,
    ) -> (SharedCollection, bool) {
        let database = self.databases.entry(db.to_string()).or_default();
        if let Some(existing) = database.collections.get(name) {
            return (existing.clone(), false);
        }
        let collection = Arc::new(RwLock::new(Collection::new(
            format!("{db}.{name}"),
            options,
        )));
        database
            .collections
            .insert(name.to_string(), collection.clone());
        (collection, true)
    }

    pub fn drop_collection(&mut self, db: &str, name: &str) -> Option<SharedCollection> {
        let database = self.databases.get_mut(db)?;
        let removed = database.collections.remove(name);
        if database.collections.is_empty() {
            self.databases.remove(db);
        }
        removed
    }
}
