//! delete: statements with `limit` 0 (all matches) or 1.

use bson::RawBsonRef;

use super::find::{check_hint, id_document};
use super::insert::WriteErrors;
use super::update::reject_collation;
use super::Context;
use crate::changes::{EventKind, PendingEvent};
use crate::error::{CommandError, CommandResult};
use crate::query::filter::Filter;
use crate::query::plan::{select, Query};
use crate::query::sort::SortSpec;
use crate::store::collection::id_of;
use crate::wire::DocBuilder;

pub fn delete(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection_name = ctx.collection_name()?;
    let ordered = ctx.optional_bool("ordered")?.unwrap_or(true);
    let statements = ctx.documents("deletes")?;
    let mut deleted = 0usize;
    let mut write_errors = WriteErrors::default();
    if let Some(shared) = ctx.state.collection(&ctx.db, &collection_name) {
        let mut collection = shared.write().expect("collection lock");
        let mut events = Vec::new();
        for (index, statement) in statements.iter().enumerate() {
            let result = (|| -> CommandResult<usize> {
                let filter = match statement.get("q")? {
                    Some(RawBsonRef::Document(q)) => Filter::parse(q)?,
                    _ => {
                        return Err(CommandError::failed_to_parse(
                            "delete statement needs a 'q' object",
                        ))
                    }
                };
                let limit = match statement.get("limit")? {
                    Some(value) => crate::query::number::Number::from_raw(value)
                        .map(|n| n.to_f64() as i64)
                        .unwrap_or(0),
                    None => {
                        return Err(CommandError::new(
                            40414,
                            "BSON field 'delete.deletes.limit' is missing but a required field",
                        ))
                    }
                };
                if limit != 0 && limit != 1 {
                    return Err(CommandError::failed_to_parse(format!(
                        "The limit field in delete objects must be 0 or 1. Got {limit}"
                    )));
                }
                reject_collation(ctx, statement)?;
                check_hint(Some(&collection), statement.get("hint")?)?;
                let targets = select(
                    &collection,
                    &Query {
                        filter: &filter,
                        sort: &SortSpec::default(),
                        skip: 0,
                        limit: (limit == 1).then_some(1),
                    },
                );
                for document in &targets {
                    collection.remove(&id_of(document)?);
                    events.push(PendingEvent {
                        db: ctx.db.clone(),
                        collection: collection_name.clone(),
                        kind: EventKind::Delete,
                        document_key: Some(id_document(document)?),
                        full_document: None,
                        update_description: None,
                    });
                }
                Ok(targets.len())
            })();
            match result {
                Ok(n) => deleted += n,
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
    reply.append_i32("n", deleted as i32);
    write_errors.append_to(&mut reply);
    Ok(reply)
}
