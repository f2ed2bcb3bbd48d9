//! Databases and collections: listDatabases, listCollections, create, drop, dropDatabase and
//! renameCollection.

use std::sync::Arc;

use bson::{rawdoc, spec::BinarySubtype, Binary, RawBsonRef, RawDocumentBuf};

use super::cursor_reply::single_batch_reply;
use super::Context;
use crate::changes::{EventKind, PendingEvent};
use crate::error::{code, CommandError, CommandResult};
use crate::options::Personality;
use crate::query::filter::Filter;
use crate::state::validate_collection_name;
use crate::wire::DocBuilder;

/// Databases a fresh `mongod` replica set always lists.
const SYSTEM_DATABASES: [&str; 3] = ["admin", "config", "local"];

pub fn list_databases(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name_only = ctx.optional_bool("nameOnly")?.unwrap_or(false);
    let filter = match ctx.optional_document("filter")? {
        Some(filter) => Some(Filter::parse(filter)?),
        None => None,
    };
    let mut entries: Vec<(String, u64, bool)> = Vec::new();
    {
        let catalog = ctx.state.catalog.read().expect("catalog lock");
        for (name, database) in &catalog.databases {
            let size: u64 = database
                .collections
                .values()
                .map(|c| c.read().expect("collection lock").data_size)
                .sum();
            entries.push((name.clone(), size.max(4096), false));
        }
    }
    if ctx.personality() == Personality::MongoDb {
        for system in SYSTEM_DATABASES {
            if !entries.iter().any(|(n, _, _)| n == system) {
                entries.push((system.to_string(), 8192, false));
            }
        }
        entries.sort();
    }
    let mut databases = bson::RawArrayBuf::new();
    let mut total = 0u64;
    for (name, size, empty) in entries {
        let entry = if name_only {
            rawdoc! { "name": name.as_str() }
        } else {
            rawdoc! { "name": name.as_str(), "sizeOnDisk": size as i64, "empty": empty }
        };
        if filter.as_ref().is_some_and(|f| !f.matches(&entry)) {
            continue;
        }
        total += size;
        databases.push(entry);
    }
    let mut reply = rawdoc! { "databases": databases };
    if !name_only {
        reply.append("totalSize", total as i64);
        reply.append("totalSizeMb", (total / (1024 * 1024)) as i64);
    }
    Ok(DocBuilder::from_document(&reply))
}

pub fn list_collections(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name_only = ctx.optional_bool("nameOnly")?.unwrap_or(false);
    let filter = match ctx.optional_document("filter")? {
        Some(filter) => Some(Filter::parse(filter)?),
        None => None,
    };
    let collections: Vec<(String, crate::store::SharedCollection)> = {
        let catalog = ctx.state.catalog.read().expect("catalog lock");
        catalog
            .databases
            .get(&ctx.db)
            .map(|d| {
                d.collections
                    .iter()
                    .map(|(n, c)| (n.clone(), c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut entries = Vec::new();
    for (name, shared) in collections {
        let collection = shared.read().expect("collection lock");
        let entry = if name_only {
            rawdoc! { "name": name.as_str(), "type": "collection" }
        } else {
            rawdoc! {
                "name": name.as_str(),
                "type": "collection",
                "options": collection.options.clone(),
                "info": {
                    "readOnly": false,
                    "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: collection.uuid.to_vec() },
                },
                "idIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
            }
        };
        if filter.as_ref().is_some_and(|f| !f.matches(&entry)) {
            continue;
        }
        entries.push(Arc::new(entry));
    }
    let namespace = format!("{}.$cmd.listCollections", ctx.db);
    single_batch_reply(ctx, entries, &namespace)
}

pub fn create(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name = ctx.collection_name()?;
    let mut options = RawDocumentBuf::new();
    for element in ctx.body().iter().skip(1) {
        let (key, value) = element?;
        if key.starts_with('$')
            || matches!(
                key,
                "lsid" | "txnNumber" | "writeConcern" | "comment" | "apiVersion"
            )
        {
            continue;
        }
        if matches!(key, "viewOn" | "pipeline" | "timeseries" | "clusteredIndex") {
            return Err(CommandError::new(
                code::COMMAND_NOT_SUPPORTED,
                format!("create option '{key}' is not supported by this emulator"),
            ));
        }
        if key == "collation" && ctx.personality() == Personality::VCore {
            return Err(CommandError::new(
                code::COMMAND_NOT_SUPPORTED,
                "collation is not supported on Azure Cosmos DB for MongoDB (vCore)",
            ));
        }
        options.append_ref(key, value);
    }
    let mut catalog = ctx.state.catalog.write().expect("catalog lock");
    if let Some(existing) = catalog.collection(&ctx.db, &name) {
        // Since MongoDB 7.0, creating an existing collection with the same options succeeds.
        let same =
            existing.read().expect("collection lock").options.as_bytes() == options.as_bytes();
        if same && ctx.personality() != Personality::CosmosRu {
            return Ok(DocBuilder::with_reply_prefix());
        }
        return Err(CommandError::new(
            code::NAMESPACE_EXISTS,
            format!("Collection {}.{name} already exists.", ctx.db),
        ));
    }
    catalog.create_collection(&ctx.db, &name, options);
    Ok(DocBuilder::with_reply_prefix())
}

/// Removes a collection, records the drop event and closes its cursors. Returns the number of
/// indexes it had, or `None` when it did not exist.
fn drop_collection(ctx: &Context<'_>, db: &str, name: &str) -> Option<usize> {
    let mut catalog = ctx.state.catalog.write().expect("catalog lock");
    let removed = catalog.drop_collection(db, name)?;
    let indexes = removed.read().expect("collection lock").indexes.len();
    ctx.state.changes.append(vec![PendingEvent {
        db: db.to_string(),
        collection: name.to_string(),
        kind: EventKind::Drop,
        document_key: None,
        full_document: None,
        update_description: None,
    }]);
    std::mem::drop(catalog);
    ctx.state
        .cursors
        .lock()
        .expect("cursor lock")
        .remove_namespace(&format!("{db}.{name}"));
    Some(indexes)
}

pub fn drop(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name = ctx.collection_name()?;
    let mut reply = DocBuilder::with_reply_prefix();
    if let Some(indexes) = drop_collection(ctx, &ctx.db, &name) {
        reply.append_i32("nIndexesWas", indexes as i32);
        reply.append_str("ns", &ctx.namespace(&name));
    } else if ctx.personality() == Personality::CosmosRu {
        // Servers before 7.0 (and Cosmos DB at 4.2) report a missing collection.
        return Err(CommandError::new(code::NAMESPACE_NOT_FOUND, "ns not found"));
    }
    Ok(reply)
}

pub fn drop_database(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let names: Vec<String> = {
        let catalog = ctx.state.catalog.read().expect("catalog lock");
        catalog
            .databases
            .get(&ctx.db)
            .map(|d| d.collections.keys().cloned().collect())
            .unwrap_or_default()
    };
    if names.is_empty() {
        return Ok(DocBuilder::with_reply_prefix());
    }
    for name in &names {
        drop_collection(ctx, &ctx.db, name);
    }
    ctx.state.changes.append(vec![PendingEvent {
        db: ctx.db.clone(),
        collection: String::new(),
        kind: EventKind::DropDatabase,
        document_key: None,
        full_document: None,
        update_description: None,
    }]);
    let mut reply = DocBuilder::with_reply_prefix();
    reply.append_str("dropped", &ctx.db);
    Ok(reply)
}

fn split_namespace(value: Option<RawBsonRef<'_>>, field: &str) -> CommandResult<(String, String)> {
    let Some(RawBsonRef::String(namespace)) = value else {
        return Err(CommandError::type_mismatch(format!(
            "'{field}' must be a namespace string"
        )));
    };
    let (db, collection) = namespace.split_once('.').ok_or_else(|| {
        CommandError::new(
            code::INVALID_NAMESPACE,
            format!("Invalid namespace specified '{namespace}'"),
        )
    })?;
    validate_collection_name(db, collection)?;
    Ok((db.to_string(), collection.to_string()))
}

pub fn rename_collection(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    if ctx.db != "admin" {
        return Err(CommandError::new(
            code::UNAUTHORIZED,
            "renameCollection may only be run against the admin database.",
        ));
    }
    let body = ctx.body();
    let (from_db, from) = split_namespace(body.get("renameCollection")?, "renameCollection")?;
    let (to_db, to) = split_namespace(body.get("to")?, "to")?;
    let drop_target = ctx.optional_bool("dropTarget")?.unwrap_or(false);
    if from_db == to_db && from == to {
        return Err(CommandError::new(
            code::ILLEGAL_OPERATION,
            "Can't rename a collection to itself",
        ));
    }

    let mut catalog = ctx.state.catalog.write().expect("catalog lock");
    if catalog.collection(&from_db, &from).is_none() {
        return Err(CommandError::new(
            code::NAMESPACE_NOT_FOUND,
            "Source collection does not exist",
        ));
    }

    let mut events = Vec::new();
    if catalog.collection(&to_db, &to).is_some() {
        if !drop_target {
            return Err(CommandError::new(
                code::NAMESPACE_EXISTS,
                "target namespace exists",
            ));
        }
        catalog.drop_collection(&to_db, &to);
        events.push(PendingEvent {
            db: to_db.clone(),
            collection: to.clone(),
            kind: EventKind::Drop,
            document_key: None,
            full_document: None,
            update_description: None,
        });
    }
    let moved = catalog
        .drop_collection(&from_db, &from)
        .expect("checked above");
    moved.write().expect("collection lock").namespace = format!("{to_db}.{to}");
    catalog
        .databases
        .entry(to_db.clone())
        .or_default()
        .collections
        .insert(to.clone(), moved);
    events.push(PendingEvent {
        db: from_db.clone(),
        collection: from.clone(),
        kind: EventKind::Rename {
            to_db,
            to_collection: to,
        },
        document_key: None,
        full_document: None,
        update_description: None,
    });
    ctx.state.changes.append(events);
    std::mem::drop(catalog);
    ctx.state
        .cursors
        .lock()
        .expect("cursor lock")
        .remove_namespace(&format!("{from_db}.{from}"));
    Ok(DocBuilder::with_reply_prefix())
}
