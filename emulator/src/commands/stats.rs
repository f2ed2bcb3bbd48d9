//! collStats and dbStats: document counts and sizes. Storage and index sizes are estimates,
//! since the emulator keeps everything in memory.

use bson::{rawdoc, RawDocumentBuf};

use super::Context;
use crate::error::{code, CommandError, CommandResult};
use crate::wire::DocBuilder;

/// Estimated bytes per index entry, used for `totalIndexSize` and `indexSizes`.
const INDEX_ENTRY_BYTES: u64 = 32;

pub fn coll_stats(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name = ctx.collection_name()?;
    let namespace = ctx.namespace(&name);
    let Some(shared) = ctx.state.collection(&ctx.db, &name) else {
        return Err(CommandError::new(
            code::NAMESPACE_NOT_FOUND,
            format!("Collection [{namespace}] not found."),
        ));
    };
    let collection = shared.read().expect("collection lock");
    let count = collection.len() as u64;
    let size = collection.data_size;
    let index_size = count * INDEX_ENTRY_BYTES;
    let mut index_sizes = RawDocumentBuf::new();
    for index in &collection.indexes {
        index_sizes.append(&index.name, index_size as i64);
    }
    let reply = rawdoc! {
        "ns": namespace.as_str(),
        "size": size as i64,
        "count": count as i64,
        "avgObjSize": size.checked_div(count).unwrap_or(0) as i64,
        "storageSize": size as i64,
        "nindexes": collection.indexes.len() as i32,
        "totalIndexSize": index_size as i64 * collection.indexes.len() as i64,
        "totalSize": (size + index_size * collection.indexes.len() as u64) as i64,
        "indexSizes": index_sizes,
        "scaleFactor": 1,
    };
    Ok(DocBuilder::from_document(&reply))
}

pub fn db_stats(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collections: Vec<crate::store::SharedCollection> = {
        let catalog = ctx.state.catalog.read().expect("catalog lock");
        catalog
            .databases
            .get(&ctx.db)
            .map(|d| d.collections.values().cloned().collect())
            .unwrap_or_default()
    };
    let (mut objects, mut data_size, mut indexes, mut index_size) = (0u64, 0u64, 0u64, 0u64);
    for shared in &collections {
        let collection = shared.read().expect("collection lock");
        objects += collection.len() as u64;
        data_size += collection.data_size;
        indexes += collection.indexes.len() as u64;
        index_size += collection.len() as u64 * INDEX_ENTRY_BYTES * collection.indexes.len() as u64;
    }
    let reply = rawdoc! {
        "db": ctx.db.as_str(),
        "collections": collections.len() as i64,
        "views": 0i64,
        "objects": objects as i64,
        "avgObjSize": if objects == 0 { 0.0 } else { data_size as f64 / objects as f64 },
        "dataSize": data_size as f64,
        "storageSize": data_size as f64,
        "indexes": indexes as i64,
        "indexSize": index_size as f64,
        "totalSize": (data_size + index_size) as f64,
        "scaleFactor": 1i64,
    };
    Ok(DocBuilder::from_document(&reply))
}
