//! update: replacement and operator updates, multi, and upsert.

use bson::{rawdoc, RawArrayBuf, RawBsonRef, RawDocument, RawDocumentBuf};

use super::find::check_hint;
use super::insert::{prepare_for_insert, WriteErrors};
use super::Context;
use crate::changes::diff::update_description;
use crate::changes::{EventKind, PendingEvent};
use crate::error::{CommandError, CommandResult};
use crate::personality::write_charge;
use crate::query::filter::{CompareOp, Filter, Predicate};
use crate::query::plan::{select, Query};
use crate::query::sort::SortSpec;
use crate::query::update::{set_path, Update};
use crate::store::collection::id_of;
use crate::store::{Collection, StoredDocument};
use crate::wire::DocBuilder;

/// Result of one update statement.
#[derive(Default)]
struct Outcome {
    matched: usize,
    modified: usize,
    upserted_id: Option<bson::RawBson>,
}

/// Builds the document an upsert starts from: the filter's equality conditions on plain paths.
fn upsert_seed(filter: &Filter) -> CommandResult<bson::Document> {
    let mut seed = bson::Document::new();
    let mut add = |path: &str, predicates: &[Predicate]| -> CommandResult<()> {
        for predicate in predicates {
            if let Predicate::Compare(CompareOp::Eq, value) = predicate {
                set_path(&mut seed, path, bson::Bson::try_from(value.clone())?)?;
            }
        }
        Ok(())
    };
    match filter {
        Filter::Field { path, predicates } => add(path, predicates)?,
        Filter::And(clauses) => {
            for clause in clauses {
                if let Filter::Field { path, predicates } = clause {
                    add(path, predicates)?;
                }
            }
        }
        _ => {}
    }
    Ok(seed)
}

fn update_one_statement(
    ctx: &Context<'_>,
    collection_name: &str,
    collection: &mut Collection,
    statement: &RawDocument,
    events: &mut Vec<PendingEvent>,
) -> CommandResult<Outcome> {
    let filter = match statement.get("q")? {
        Some(RawBsonRef::Document(q)) => Filter::parse(q)?,
        _ => {
            return Err(CommandError::failed_to_parse(
                "update statement needs a 'q' object",
            ))
        }
    };
    let update = Update::parse(
        statement
            .get("u")?
            .ok_or_else(|| CommandError::failed_to_parse("update statement needs a 'u' field"))?,
    )?;

    let flag = |name: &str| matches!(statement.get(name), Ok(Some(RawBsonRef::Boolean(true))));
    let multi = flag("multi");
    let upsert = flag("upsert");
    if multi && update.is_replacement() {
        return Err(CommandError::failed_to_parse(
            "multi update is not supported for replacement-style update",
        ));
    }
    if statement.get("arrayFilters")?.is_some() {
        return Err(CommandError::new(
            crate::error::code::COMMAND_NOT_SUPPORTED,
            "arrayFilters are not supported by this emulator",
        ));
    }
    reject_collation(ctx, statement)?;
    check_hint(Some(collection), statement.get("hint")?)?;

    let sort = SortSpec::default();
    let targets = select(
        collection,
        &Query {
            filter: &filter,
            sort: &sort,
            skip: 0,
            limit: if multi { None } else { Some(1) },
        },
    );

    let mut outcome = Outcome::default();
    for current in targets {
        outcome.matched += 1;
        if apply_to_stored(ctx, collection_name, collection, &update, &current, events)?.is_some() {
            outcome.modified += 1;
        }
    }

    if outcome.matched == 0 && upsert {
        let stored = upsert_new(ctx, collection_name, collection, &filter, &update, events)?;
        outcome.upserted_id = stored.get("_id")?.map(|v| v.to_raw_bson());
    }
    Ok(outcome)
}

/// Applies `update` to a stored document and records the event. Returns the new document, or
/// `None` when the update changed nothing.
pub fn apply_to_stored(
    ctx: &Context<'_>,
    collection_name: &str,
    collection: &mut Collection,
    update: &Update,
    current: &StoredDocument,
    events: &mut Vec<PendingEvent>,
) -> CommandResult<Option<StoredDocument>> {
    let updated = update.apply(current, false)?;
    if updated.as_bytes() == current.as_bytes() {
        return Ok(None);
    }
    charge_write(ctx, &updated)?;
    let id = id_of(&updated)?;
    let stored = collection.replace(&id, updated)?;
    let (kind, description) = if update.is_replacement() {
        (EventKind::Replace, None)
    } else {
        (
            EventKind::Update,
            Some(update_description(current, &stored)),
        )
    };
    events.push(PendingEvent {
        db: ctx.db.clone(),
        collection: collection_name.to_string(),
        kind,
        document_key: Some(super::find::id_document(&stored)?),
        full_document: Some(stored.clone()),
        update_description: description,
    });
    Ok(Some(stored))
}

/// Inserts the document an upsert creates from the filter's equalities and the update, and
/// records the event.
pub fn upsert_new(
    ctx: &Context<'_>,
    collection_name: &str,
    collection: &mut Collection,
    filter: &Filter,
    update: &Update,
    events: &mut Vec<PendingEvent>,
) -> CommandResult<StoredDocument> {
    let from_filter = upsert_seed(filter)?;
    let seed = if update.is_replacement() {
        // A replacement keeps only the filter's `_id`.
        let mut seed = bson::Document::new();
        if let Some(id) = from_filter.get("_id") {
            seed.insert("_id", id.clone());
        }
        seed
    } else {
        from_filter
    };
    let seed = RawDocumentBuf::from_document(&seed)?;
    let created = update.apply(&seed, true)?;
    let prepared = prepare_for_insert(ctx, &created)?;
    charge_write(ctx, &prepared)?;
    let stored = collection.insert(prepared)?;
    events.push(PendingEvent {
        db: ctx.db.clone(),
        collection: collection_name.to_string(),
        kind: EventKind::Insert,
        document_key: None,
        full_document: Some(stored.clone()),
        update_description: None,
    });
    Ok(stored)
}

pub fn charge_write(ctx: &Context<'_>, document: &RawDocument) -> CommandResult<()> {
    if ctx.personality() == crate::Personality::CosmosRu {
        ctx.state
            .request_units
            .charge(&ctx.name, write_charge(document.as_bytes().len()))?;
    }
    Ok(())
}

/// vCore rejects collation (case-insensitive) options; the other personalities ignore it.
pub fn reject_collation(ctx: &Context<'_>, options: &RawDocument) -> CommandResult<()> {
    if ctx.personality() == crate::Personality::VCore && options.get("collation")?.is_some() {
        return Err(CommandError::new(
            crate::error::code::COMMAND_NOT_SUPPORTED,
            "collation is not supported on Azure Cosmos DB for MongoDB (vCore)",
        ));
    }
    Ok(())
}

pub fn update(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection_name = ctx.collection_name()?;
    let ordered = ctx.optional_bool("ordered")?.unwrap_or(true);
    let statements = ctx.documents("updates")?;

    // Like mongod, an update creates the collection only when an upsert may insert.
    let may_insert = statements
        .iter()
        .any(|s| matches!(s.get("upsert"), Ok(Some(RawBsonRef::Boolean(true)))));
    let shared = if may_insert {
        ctx.state.collection_or_create(&ctx.db, &collection_name)?
    } else {
        match ctx.state.collection(&ctx.db, &collection_name) {
            Some(shared) => shared,
            None => {
                let mut reply = DocBuilder::with_reply_prefix();
                reply.append_i32("n", 0);
                reply.append_i32("nModified", 0);
                return Ok(reply);
            }
        }
    };
    let mut matched = 0usize;
    let mut modified = 0usize;
    let mut upserted = RawArrayBuf::new();
    let mut any_upserted = false;
    let mut write_errors = WriteErrors::default();
    {
        let mut collection = shared.write().expect("collection lock");
        let mut events = Vec::new();
        for (index, statement) in statements.iter().enumerate() {
            match update_one_statement(
                ctx,
                &collection_name,
                &mut collection,
                statement,
                &mut events,
            ) {
                Ok(outcome) => {
                    matched += outcome.matched;
                    modified += outcome.modified;
                    if let Some(id) = outcome.upserted_id {
                        matched += 1;
                        any_upserted = true;
                        let mut entry = rawdoc! { "index": index as i32 };
                        entry.append("_id", id);
                        upserted.push(entry);
                    }
                }
                Err(error) => {
                    if write_errors.record(index, &error, ordered) {
                        break;
                    }
                }
            }
        }
        ctx.state.changes.append(events);
    }

    let mut reply = DocBuilder::with_reply_prefix();
    reply.append_i32("n", matched as i32);
    reply.append_i32("nModified", modified as i32);
    if any_upserted {
        reply.append_value("upserted", RawBsonRef::Array(&upserted));
    }
    write_errors.append_to(&mut reply);
    Ok(reply)
}
