//! listIndexes, createIndexes and dropIndexes.

use std::sync::Arc;

use bson::{rawdoc, RawBsonRef, RawDocument};

use super::cursor_reply::single_batch_reply;
use super::Context;
use crate::error::{code, CommandError, CommandResult};
use crate::options::Personality;
use crate::query::number::Number;
use crate::store::index::Index;
use crate::wire::DocBuilder;

pub fn list_indexes(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name = ctx.collection_name()?;
    let namespace = ctx.namespace(&name);
    let Some(shared) = ctx.state.collection(&ctx.db, &name) else {
        return Err(CommandError::new(
            code::NAMESPACE_NOT_FOUND,
            format!("ns does not exist: {namespace}"),
        ));
    };
    let specs: Vec<_> = shared
        .read()
        .expect("collection lock")
        .indexes
        .iter()
        .map(|i| Arc::new(i.spec.clone()))
        .collect();
    single_batch_reply(ctx, specs, &namespace)
}

/// Rejects key patterns and options the personality does not accept.
fn validate_spec(ctx: &Context<'_>, spec: &RawDocument) -> CommandResult<()> {
    let key = spec.get_document("key").map_err(|_| {
        CommandError::failed_to_parse("The 'key' field of an index specification must be an object")
    })?;
    if key.is_empty() {
        return Err(CommandError::new(
            code::CANNOT_CREATE_INDEX,
            "Index keys cannot be an empty field.",
        ));
    }
    for element in key.iter() {
        let (field, value) = element?;
        let valid = match value {
            RawBsonRef::String(kind) => {
                matches!(kind, "hashed" | "text" | "2dsphere" | "2d" | "wildcard")
            }
            other => Number::from_raw(other).is_some_and(|n| n.to_f64() != 0.0),
        };
        if !valid {
            return Err(CommandError::new(
                code::CANNOT_CREATE_INDEX,
                format!("Values in the index key pattern can only be numbers or strings; bad value for field '{field}'"),
            ));
        }
    }
    if spec.get("collation")?.is_some() && ctx.personality() == Personality::VCore {
        return Err(CommandError::new(
            code::CANNOT_CREATE_INDEX,
            "Index option 'collation' is not supported on Azure Cosmos DB for MongoDB (vCore)",
        ));
    }
    let id_only = key.get("_id")?.is_some() && key.iter().count() == 1;
    if id_only && matches!(spec.get("unique")?, Some(RawBsonRef::Boolean(_))) {
        return Err(CommandError::new(
            code::INVALID_OPTIONS,
            "The field 'unique' is not valid for an _id index specification",
        ));
    }
    Ok(())
}

/// Two specifications describe the same index when everything but the name and version
/// matches.
fn same_options(existing: &Index, spec: &RawDocument) -> bool {
    let normalized = |document: &RawDocument| -> Vec<(String, Vec<u8>)> {
        let mut fields: Vec<(String, Vec<u8>)> = document
            .iter()
            .flatten()
            .filter(|(k, _)| !matches!(*k, "v" | "name" | "ns" | "background"))
            .map(|(k, v)| {
                let mut single = bson::RawDocumentBuf::new();
                single.append_ref("v", v);
                (k.to_string(), single.into_bytes())
            })
            .collect();
        fields.sort();
        fields
    };
    normalized(&existing.spec) == normalized(spec)
}

pub fn create_indexes(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name = ctx.collection_name()?;
    let specs = ctx.documents("indexes")?;
    if specs.is_empty() {
        return Err(CommandError::bad_value(
            "Must specify at least one index to create",
        ));
    }
    for spec in &specs {
        validate_spec(ctx, spec)?;
    }

    let created_collection = ctx.state.collection(&ctx.db, &name).is_none();
    let shared = ctx.state.collection_or_create(&ctx.db, &name)?;
    let mut collection = shared.write().expect("collection lock");
    if ctx.personality() == Personality::CosmosRu && !collection.is_empty() {
        if let Some(spec) = specs
            .iter()
            .find(|s| matches!(s.get("unique"), Ok(Some(RawBsonRef::Boolean(true)))))
        {
            let _ = spec;
            return Err(CommandError::new(
                code::CANNOT_CREATE_INDEX,
                "Cannot create unique index when collection contains documents",
            ));
        }
    }

    let before = collection.indexes.len();
    for spec in specs {
        let index = Index::from_spec(spec)?;
        if let Some(existing) = collection.indexes.iter().find(|i| i.name == index.name) {
            if same_options(existing, spec) {
                continue;
            }
            return Err(CommandError::new(
                code::INDEX_KEY_SPECS_CONFLICT,
                format!(
                    "An existing index has the same name as the requested index. Requested index: {:?}, existing index: {:?}",
                    index.spec, existing.spec
                ),
            ));
        }
        if let Some(existing) = collection
            .indexes
            .iter()
            .find(|i| i.key.as_bytes() == index.key.as_bytes())
        {
            let message = if same_options(existing, spec) || existing.unique == index.unique {
                format!(
                    "Index already exists with a different name: {}",
                    existing.name
                )
            } else {
                format!(
                    "An index with the same key pattern but different options already exists: {}",
                    existing.name
                )
            };
            return Err(CommandError::new(code::INDEX_OPTIONS_CONFLICT, message));
        }
        collection.add_index(index)?;
    }

    let after = collection.indexes.len();
    let mut reply = rawdoc! {
        "numIndexesBefore": before as i32,
        "numIndexesAfter": after as i32,
        "createdCollectionAutomatically": created_collection,
    };
    if before == after {
        reply.append("note", "all indexes already exist");
    }
    Ok(DocBuilder::from_document(&reply))
}

pub fn drop_indexes(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let name = ctx.collection_name()?;
    let namespace = ctx.namespace(&name);
    let Some(shared) = ctx.state.collection(&ctx.db, &name) else {
        return Err(CommandError::new(
            code::NAMESPACE_NOT_FOUND,
            format!("ns not found {namespace}"),
        ));
    };
    let mut collection = shared.write().expect("collection lock");
    let was = collection.indexes.len();

    let target = ctx.body().get("index")?.ok_or_else(|| {
        CommandError::new(
            40414,
            "BSON field 'dropIndexes.index' is missing but a required field",
        )
    })?;
    let mut names: Vec<String> = Vec::new();
    match target {
        RawBsonRef::String("*") => {
            collection.indexes.truncate(1);
        }
        RawBsonRef::String(index_name) => names.push(index_name.to_string()),
        RawBsonRef::Array(list) => {
            for item in list {
                if let Some(n) = item?.as_str() {
                    names.push(n.to_string());
                }
            }
        }
        RawBsonRef::Document(key) => {
            let found = collection
                .indexes
                .iter()
                .find(|i| i.key.as_bytes() == key.as_bytes())
                .map(|i| i.name.clone());
            match found {
                Some(n) => names.push(n),
                None => {
                    return Err(CommandError::new(
                        code::INDEX_NOT_FOUND,
                        format!("can't find index with key: {key:?}"),
                    ))
                }
            }
        }
        _ => {
            return Err(CommandError::type_mismatch(
                "'index' must be a string, array or object",
            ))
        }
    }

    for index_name in &names {
        if index_name == "_id_" {
            return Err(CommandError::new(
                code::INVALID_OPTIONS,
                "cannot drop _id index",
            ));
        }
        if !collection.indexes.iter().any(|i| &i.name == index_name) {
            return Err(CommandError::new(
                code::INDEX_NOT_FOUND,
                format!("index not found with name [{index_name}]"),
            ));
        }
    }

    collection.indexes.retain(|i| !names.contains(&i.name));
    let mut reply = DocBuilder::with_reply_prefix();
    reply.append_i32("nIndexesWas", was as i32);
    Ok(reply)
}
