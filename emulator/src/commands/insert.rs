//! insert: ordered and unordered batches with per-document write errors.

use bson::{rawdoc, RawArrayBuf, RawDocument, RawDocumentBuf};

use super::Context;
use crate::changes::{EventKind, PendingEvent};
use crate::error::{code, CommandError, CommandResult};
use crate::options::Personality;
use crate::personality::write_charge;
use crate::wire::DocBuilder;

/// Prepares a document for storage: `mongod` generates a missing `_id` and moves `_id` to the
/// front; every other byte is kept as sent.
pub fn prepare_for_insert(
    ctx: &Context<'_>,
    document: &RawDocument,
) -> CommandResult<RawDocumentBuf> {
    let profile = ctx.profile();
    if document.as_bytes().len() > profile.max_document_size {
        return Err(CommandError::new(
            code::BSON_OBJECT_TOO_LARGE,
            if ctx.personality() == Personality::CosmosRu {
                "Request size is too large".to_string()
            } else {
                format!(
                    "object to insert exceeds the maximum size of {} bytes",
                    profile.max_document_size
                )
            },
        ));
    }
    let first_is_id = matches!(document.iter().next(), Some(Ok(("_id", _))));
    let prepared = if first_is_id {
        document.to_raw_document_buf()
    } else {
        let mut out = RawDocumentBuf::new();
        match document.get("_id")? {
            Some(id) => out.append_ref("_id", id),
            None => out.append("_id", bson::oid::ObjectId::new()),
        }
        for element in document.iter() {
            let (key, value) = element?;
            if key != "_id" {
                out.append_ref(key, value);
            }
        }
        out
    };
    if let Some(max) = profile.max_id_size {
        let id = crate::commands::find::id_document(&prepared)?;
        if id.as_bytes().len() > max {
            return Err(CommandError::bad_value(format!(
                "_id value is larger than the {max}-byte limit"
            )));
        }
    }
    for element in prepared.iter() {
        let (key, _) = element?;
        if key.starts_with('$') {
            return Err(CommandError::new(
                52,
                format!("Document can't have $ prefixed field names: {key}"),
            ));
        }
    }
    Ok(prepared)
}

/// The `writeErrors` array of a write command's reply.
#[derive(Default)]
pub struct WriteErrors {
    entries: RawArrayBuf,
    count: usize,
}

impl WriteErrors {
    /// Records the failure of statement `index`. Returns true when an ordered batch must stop.
    pub fn record(&mut self, index: usize, error: &CommandError, ordered: bool) -> bool {
        let mut entry = rawdoc! {
            "index": index as i32,
            "code": error.code,
            "errmsg": error.message.as_str(),
        };
        if !error.code_name.is_empty() {
            entry.append("codeName", error.code_name.as_str());
        }
        if let Some(extra) = &error.extra {
            for (key, value) in extra.iter().flatten() {
                entry.append_ref(key, value);
            }
        }
        self.entries.push(entry);
        self.count += 1;
        ordered
    }

    /// Adds `writeErrors` to the reply when any statement failed.
    pub fn append_to(&self, reply: &mut DocBuilder) {
        if self.count > 0 {
            reply.append_value("writeErrors", bson::RawBsonRef::Array(&self.entries));
        }
    }
}

pub fn insert(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let collection_name = ctx.collection_name()?;
    let ordered = ctx.optional_bool("ordered")?.unwrap_or(true);
    let documents = ctx.documents("documents")?;
    if documents.is_empty() || documents.len() > ctx.profile().max_write_batch_size as usize {
        return Err(CommandError::new(
            code::INVALID_LENGTH,
            format!(
                "Write batch sizes must be between 1 and {}. Got {} operations.",
                ctx.profile().max_write_batch_size,
                documents.len()
            ),
        ));
    }

    let shared = ctx.state.collection_or_create(&ctx.db, &collection_name)?;
    let throttled = ctx.personality() == Personality::CosmosRu;
    let mut inserted = 0usize;
    let mut write_errors = WriteErrors::default();
    let mut events = Vec::with_capacity(documents.len());
    {
        let mut collection = shared.write().expect("collection lock");
        for (index, document) in documents.iter().enumerate() {
            let result = prepare_for_insert(ctx, document).and_then(|prepared| {
                if throttled {
                    let units = write_charge(prepared.as_bytes().len());
                    ctx.state.request_units.charge("insert", units)?;
                }
                collection.insert(prepared)
            });
            match result {
                Ok(stored) => {
                    inserted += 1;
                    events.push(PendingEvent {
                        db: ctx.db.clone(),
                        collection: collection_name.clone(),
                        kind: EventKind::Insert,
                        document_key: None,
                        full_document: Some(stored),
                        update_description: None,
                    });
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
    reply.append_i32("n", inserted as i32);
    write_errors.append_to(&mut reply);
    Ok(reply)
}
