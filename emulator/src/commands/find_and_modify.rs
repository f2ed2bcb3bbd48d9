//! findAndModify: update, replace or remove one document and return it.

use bson::{rawdoc, RawBsonRef, RawDocumentBuf};

use super::find::{check_hint, id_document};
use super::update::{apply_to_stored, reject_collation, upsert_new};
use super::Context;
use crate::changes::{EventKind, PendingEvent};
use crate::error::{CommandError, CommandResult};
use crate::query::plan::{select, Query};
use crate::query::projection::Projection;
use crate::query::update::Update;
use crate::store::collection::id_of;
use crate::store::StoredDocument;
use crate::wire::DocBuilder;

pub fn find_and_modify(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection_name = ctx.collection_name()?;
    let body = ctx.body();
    let filter = ctx.filter("query")?;
    let sort = ctx.sort("sort")?;
    let projection = match ctx.optional_document("fields")? {
        Some(fields) if !fields.is_empty() => Some(Projection::parse(fields)?),
        _ => None,
    };
    let remove = ctx.optional_bool("remove")?.unwrap_or(false);
    let return_new = ctx.optional_bool("new")?.unwrap_or(false);
    let upsert = ctx.optional_bool("upsert")?.unwrap_or(false);
    let update = match body.get("update")? {
        Some(update) => Some(Update::parse(update)?),
        None => None,
    };
    match (&update, remove) {
        (Some(_), true) => {
            return Err(CommandError::failed_to_parse(
                "Cannot specify both an update and remove=true",
            ))
        }
        (None, false) => {
            return Err(CommandError::failed_to_parse(
                "Either an update or remove=true must be specified",
            ))
        }
        _ => {}
    }
    if remove && (upsert || return_new) {
        return Err(CommandError::failed_to_parse(
            "Cannot specify both upsert=true and remove=true, or new=true and remove=true",
        ));
    }
    reject_collation(ctx, body)?;

    let shared = ctx.state.collection_or_create(&ctx.db, &collection_name)?;
    let mut collection = shared.write().expect("collection lock");
    check_hint(Some(&collection), body.get("hint")?)?;
    let current = select(
        &collection,
        &Query {
            filter: &filter,
            sort: &sort,
            skip: 0,
            limit: Some(1),
        },
    )
    .pop();

    let mut events = Vec::new();
    let mut last_error = rawdoc! {};
    let value: Option<StoredDocument> = match (current, update) {
        (Some(current), None) => {
            collection.remove(&id_of(&current)?);
            events.push(PendingEvent {
                db: ctx.db.clone(),
                collection: collection_name.clone(),
                kind: EventKind::Delete,
                document_key: Some(id_document(&current)?),
                full_document: None,
                update_description: None,
            });
            last_error.append("n", 1);
            Some(current)
        }
        (Some(current), Some(update)) => {
            let updated = apply_to_stored(
                ctx,
                &collection_name,
                &mut collection,
                &update,
                &current,
                &mut events,
            )?;
            last_error.append("n", 1);
            last_error.append("updatedExisting", true);
            if return_new {
                Some(updated.unwrap_or(current))
            } else {
                Some(current)
            }
        }
        (None, Some(update)) if upsert => {
            let stored = upsert_new(
                ctx,
                &collection_name,
                &mut collection,
                &filter,
                &update,
                &mut events,
            )?;
            last_error.append("n", 1);
            last_error.append("updatedExisting", false);
            if let Some(id) = stored.get("_id")? {
                last_error.append_ref("upserted", id);
            }
            return_new.then_some(stored)
        }
        (None, _) => {
            last_error.append("n", 0);
            if !remove {
                last_error.append("updatedExisting", false);
            }
            None
        }
    };
    ctx.state.changes.append(events);
    drop(collection);

    let mut reply = DocBuilder::with_reply_prefix();
    reply.append_document("lastErrorObject", &last_error);
    match value {
        Some(document) => {
            let shown: RawDocumentBuf = match &projection {
                Some(projection) => projection.apply(&document)?,
                None => document.as_ref().clone(),
            };
            reply.append_document("value", &shown);
        }
        None => reply.append_value("value", RawBsonRef::Null),
    }
    Ok(reply)
}
