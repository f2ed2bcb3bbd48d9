//! Change-stream cursors: opening a stream with `aggregate` and reading it with `getMore`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{rawdoc, RawBsonRef, RawDocumentBuf, Timestamp};

use super::cosmos::{coalesce_by_document_key, cosmos_shape_error, is_cosmos_pipeline};
use super::log::{ChangeEvent, EventKind};
use super::token::{invalid_token, ResumeToken, TokenKind};
use crate::aggregate::Stage;
use crate::commands::Context;
use crate::cursor::CursorSource;
use crate::error::{code, CommandError, CommandResult};
use crate::options::Personality;
use crate::wire::DocBuilder;

/// How long a `getMore` waits for new events when the client sets no `maxTimeMS`, as `mongod`
/// waits for an awaitData cursor.
const DEFAULT_AWAIT: Duration = Duration::from_secs(1);
/// Events read from the log per pass while filling a batch.
const READ_CHUNK: usize = 1024;

/// The namespaces a stream watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Collection { db: String, collection: String },
    Database { db: String },
    Cluster,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullDocument {
    Default,
    UpdateLookup,
    WhenAvailable,
    Required,
}

/// The state of an open change stream.
pub struct StreamCursor {
    scope: Scope,
    full_document: FullDocument,
    stages: Vec<Stage>,
    /// Sequence of the last change-log entry examined.
    position: u64,
    /// Cluster time of the last entry examined, for high-water-mark tokens.
    position_time: Timestamp,
    /// An invalidate event is due after the event at `position`.
    invalidate_pending: bool,
    /// The invalidate event was returned; the cursor is closed after this batch.
    finished: bool,
    /// Cosmos DB (RU) event shape.
    cosmos: bool,
}

fn unknown_option(name: &str) -> CommandError {
    CommandError::new(
        40415,
        format!("BSON field '$changeStream.{name}' is an unknown field."),
    )
}

fn is_system_database(db: &str) -> bool {
    matches!(db, "admin" | "config" | "local")
}

/// Opens a change stream for `aggregate` with a leading `$changeStream` stage.
pub fn open(
    ctx: &mut Context<'_>,
    collection: Option<String>,
    spec: RawDocumentBuf,
    pipeline: Vec<RawDocumentBuf>,
    batch_size: Option<usize>,
) -> CommandResult<DocBuilder> {
    let cosmos = ctx.personality() == Personality::CosmosRu;
    let mut full_document = FullDocument::Default;
    let mut resume_after = None;
    let mut start_after = None;
    let mut start_at = None;
    let mut all_changes_for_cluster = false;
    for element in spec.iter() {
        let (name, value) = element?;
        match name {
            "fullDocument" => {
                full_document = match value.as_str() {
                    Some("default") => FullDocument::Default,
                    Some("updateLookup") => FullDocument::UpdateLookup,
                    Some("whenAvailable") => FullDocument::WhenAvailable,
                    Some("required") => FullDocument::Required,
                    _ => {
                        return Err(CommandError::bad_value(format!(
                            "'{value:?}' is not a valid value for fullDocument"
                        )))
                    }
                }
            }
            "fullDocumentBeforeChange" => {
                if value.as_str() != Some("off") {
                    return Err(CommandError::new(
                        code::COMMAND_NOT_SUPPORTED,
                        "fullDocumentBeforeChange is not supported by this emulator",
                    ));
                }
            }
            "resumeAfter" => resume_after = Some(ResumeToken::decode(value)?),
            "startAfter" => start_after = Some(ResumeToken::decode(value)?),
            "startAtOperationTime" => match value {
                RawBsonRef::Timestamp(ts) => start_at = Some(ts),
                _ => {
                    return Err(CommandError::type_mismatch(
                        "startAtOperationTime must be a timestamp",
                    ))
                }
            },
            "allChangesForCluster" => all_changes_for_cluster = value.as_bool().unwrap_or(false),
            "showExpandedEvents" => {}
            other => return Err(unknown_option(other)),
        }
    }

    let resume_options = [
        resume_after.is_some(),
        start_after.is_some(),
        start_at.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if resume_options > 1 {
        return Err(CommandError::new(
            40674,
            "Only one type of resume option is allowed, but multiple were found.",
        ));
    }

    let scope = match (&collection, all_changes_for_cluster) {
        (Some(collection), false) => Scope::Collection {
            db: ctx.db.clone(),
            collection: collection.clone(),
        },
        (None, true) if ctx.db == "admin" => Scope::Cluster,
        (None, false) if ctx.db != "admin" => Scope::Database { db: ctx.db.clone() },
        _ => {
            return Err(CommandError::new(
                code::INVALID_NAMESPACE,
                "$changeStream may not be opened on the given database: allChangesForCluster must be set for admin, and only for admin",
            ))
        }
    };

    if cosmos {
        if !matches!(scope, Scope::Collection { .. }) {
            return Err(CommandError::bad_value(
                "Expected type string but found int",
            ));
        }
        if !is_cosmos_pipeline(&pipeline) || full_document != FullDocument::UpdateLookup {
            return Err(cosmos_shape_error());
        }
        if let Scope::Collection { db, collection } = &scope {
            if ctx.state.collection(db, collection).is_none() {
                return Err(CommandError::new(
                    code::NAMESPACE_NOT_FOUND,
                    format!("Collection {db}.{collection} not found"),
                ));
            }
        }
    }

    let stages = if cosmos {
        // The accepted pipeline only selects the event kinds every Cosmos DB event has.
        Vec::new()
    } else {
        let mut stages = Vec::new();
        for stage in &pipeline {
            let parsed = Stage::parse(stage)?;
            if !matches!(
                parsed,
                Stage::Match(_) | Stage::Project(_) | Stage::AddFields(_) | Stage::ReplaceRoot(_)
            ) {
                // NOTE: mongod reports this with its own numbered assertion code; 20 is an
                // approximation.
                return Err(CommandError::new(
                    code::ILLEGAL_OPERATION,
                    format!("Stage not allowed in a change stream pipeline: {stage:?}"),
                ));
            }
            stages.push(parsed);
        }
        stages
    };

    let changes = &ctx.state.changes;
    let (mut position, mut position_time) = changes.position();
    let invalidate_pending = false;
    let token = resume_after.or(start_after);
    if let Some(token) = token {
        if token.kind == TokenKind::Invalidate && resume_after.is_some() {
            return Err(invalid_token(
                "cannot resume a stream after an invalidate event; use startAfter",
            ));
        }
        if token.sequence > position {
            return Err(invalid_token(
                "resume token is from the future of this server",
            ));
        }
        if token.sequence + 1 < changes.oldest_sequence() {
            return Err(history_lost());
        }
        position = token.sequence;
        position_time = token.cluster_time;
    } else if let Some(time) = start_at {
        let (at, lost) = changes.position_at_time(time);
        if lost {
            return Err(history_lost());
        }
        position = at;
        position_time = time;
    }

    let mut stream = StreamCursor {
        scope,
        full_document,
        stages,
        position,
        position_time,
        invalidate_pending,
        finished: false,
        cosmos,
    };
    let namespace = stream.namespace();
    let batch = stream.next_batch(ctx, batch_size.unwrap_or(101))?;
    let id = if stream.finished {
        0
    } else {
        ctx.register_cursor(&namespace, CursorSource::ChangeStream(Box::new(stream)))
    };
    Ok(batch.into_reply("firstBatch", id, &namespace))
}

/// Error 286 ChangeStreamHistoryLost with the label that stops drivers from resuming.
pub fn history_lost() -> CommandError {
    CommandError::new(
        code::CHANGE_STREAM_HISTORY_LOST,
        "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
    )
    .with_label("NonResumableChangeStreamError")
}

/// A batch of event documents and the token to resume after it.
struct Batch {
    events: Vec<RawDocumentBuf>,
    post_batch_token: RawDocumentBuf,
}

impl Batch {
    fn into_reply(self, field: &str, id: i64, namespace: &str) -> DocBuilder {
        let mut reply = DocBuilder::with_reply_prefix();
        reply.start_document("cursor");
        reply.start_array(field);
        for (index, event) in self.events.iter().enumerate() {
            reply.append_document(&index.to_string(), event);
        }
        reply.end();
        reply.append_document("postBatchResumeToken", &self.post_batch_token);
        reply.append_i64("id", id);
        reply.append_str("ns", namespace);
        reply.end();
        reply
    }
}

impl StreamCursor {
    fn namespace(&self) -> String {
        match &self.scope {
            Scope::Collection { db, collection } => format!("{db}.{collection}"),
            Scope::Database { db } => format!("{db}.$cmd.aggregate"),
            Scope::Cluster => "admin.$cmd.aggregate".to_string(),
        }
    }

    /// Returns whether the stream reports `event`, and whether it invalidates the stream.
    fn relevance(&self, event: &ChangeEvent) -> (bool, bool) {
        let e = &event.event;
        if self.cosmos
            && !matches!(
                e.kind,
                EventKind::Insert | EventKind::Update | EventKind::Replace
            )
        {
            return (false, false);
        }
        match &self.scope {
            Scope::Collection { db, collection } => {
                let here = &e.db == db && &e.collection == collection;
                let invalidates =
                    here && matches!(e.kind, EventKind::Drop | EventKind::Rename { .. });
                (here, invalidates)
            }
            Scope::Database { db } => {
                let here = &e.db == db && !e.collection.starts_with("system.");
                (here, here && e.kind == EventKind::DropDatabase)
            }
            Scope::Cluster => (!is_system_database(&e.db), false),
        }
    }

    fn token(&self, event: &ChangeEvent, kind: TokenKind) -> RawDocumentBuf {
        ResumeToken {
            cluster_time: event.cluster_time,
            sequence: event.sequence,
            kind,
        }
        .encode()
    }

    fn high_water_mark(&self) -> RawDocumentBuf {
        ResumeToken {
            cluster_time: self.position_time,
            sequence: self.position,
            kind: TokenKind::HighWaterMark,
        }
        .encode()
    }

    /// Builds the event document MongoDB returns for `event`.
    fn render(
        &self,
        ctx: &Context<'_>,
        event: &ChangeEvent,
    ) -> CommandResult<Option<RawDocumentBuf>> {
        let e = &event.event;
        let mut out = RawDocumentBuf::new();
        out.append("_id", self.token(event, TokenKind::Event));
        if !self.cosmos {
            out.append("operationType", e.kind.operation_type());
            out.append("clusterTime", event.cluster_time);
            out.append("wallTime", event.wall_time);
        }

        let full_document = match (&e.kind, self.full_document) {
            (EventKind::Insert | EventKind::Replace, _) => e.full_document.clone(),
            (EventKind::Update, FullDocument::WhenAvailable | FullDocument::Required) => {
                e.full_document.clone()
            }
            (EventKind::Update, FullDocument::UpdateLookup) => {
                let key = document_key(e)?;
                let current = ctx
                    .state
                    .collection(&e.db, &e.collection)
                    .and_then(|shared| {
                        let collection = shared.read().expect("collection lock");
                        let id = key.get("_id").ok().flatten()?;
                        collection
                            .documents
                            .get(&crate::query::order::OrderedValue::from_ref(id))
                            .cloned()
                    });
                match current {
                    Some(document) => Some(document),
                    None => {
                        out.append("fullDocument", bson::RawBson::Null);
                        None
                    }
                }
            }
            _ => None,
        };

        if let Some(document) = full_document {
            out.append("fullDocument", document.as_ref().clone());
        }
        if !matches!(e.kind, EventKind::DropDatabase) {
            out.append(
                "ns",
                rawdoc! { "db": e.db.as_str(), "coll": e.collection.as_str() },
            );
        } else {
            out.append("ns", rawdoc! { "db": e.db.as_str() });
        }
        if let EventKind::Rename {
            to_db,
            to_collection,
        } = &e.kind
        {
            out.append(
                "to",
                rawdoc! { "db": to_db.as_str(), "coll": to_collection.as_str() },
            );
        }
        if matches!(
            e.kind,
            EventKind::Insert | EventKind::Update | EventKind::Replace | EventKind::Delete
        ) {
            out.append("documentKey", document_key(e)?);
        }
        if let (false, Some(description)) = (self.cosmos, &e.update_description) {
            out.append("updateDescription", description.clone());
        }

        if self.stages.is_empty() {
            return Ok(Some(out));
        }

        let original_id = out.get("_id")?.map(|v| v.to_raw_bson());
        let mut documents = vec![Arc::new(out)];
        for stage in &self.stages {
            documents = stage.run(documents)?;
        }
        let Some(result) = documents.pop() else {
            return Ok(None);
        };
        if result.get("_id")?.map(|v| v.to_raw_bson()) != original_id {
            return Err(CommandError::new(
                code::CHANGE_STREAM_FATAL_ERROR,
                "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline. Modifying the _id field of an event makes it impossible to resume the stream from that point.",
            )
            .with_label("NonResumableChangeStreamError"));
        }
        Ok(Some(
            Arc::try_unwrap(result).unwrap_or_else(|shared| shared.as_ref().clone()),
        ))
    }

    /// Reads the events available now, up to `batch_size`, advancing the stream position.
    fn next_batch(&mut self, ctx: &Context<'_>, batch_size: usize) -> CommandResult<Batch> {
        let changes = &ctx.state.changes;
        if self.position + 1 < changes.oldest_sequence() {
            return Err(history_lost());
        }
        let batch_start = self.high_water_mark();

        let mut events = Vec::new();
        // Sequence and token of the last event put in the batch.
        let mut last: Option<(u64, RawDocumentBuf)> = None;
        let mut bytes = 0usize;
        'read: while events.len() < batch_size && !self.finished {
            if self.invalidate_pending {
                let token = ResumeToken {
                    cluster_time: self.position_time,
                    sequence: self.position,
                    kind: TokenKind::Invalidate,
                }
                .encode();
                let mut invalidate = RawDocumentBuf::new();
                invalidate.append("_id", token.clone());
                invalidate.append("operationType", "invalidate");
                invalidate.append("clusterTime", self.position_time);
                invalidate.append("wallTime", bson::DateTime::now());
                events.push(invalidate);
                last = Some((self.position, token));
                self.invalidate_pending = false;
                self.finished = true;
                break;
            }

            let chunk = changes.read_after(self.position, READ_CHUNK);
            if chunk.is_empty() {
                break;
            }
            for event in chunk {
                if events.len() >= batch_size || bytes > crate::commands::MAX_BATCH_BYTES {
                    break 'read;
                }
                let (relevant, invalidates) = self.relevance(&event);
                if relevant {
                    if let Some(document) = self.render(ctx, &event)? {
                        bytes += document.as_bytes().len();
                        let token = document.get_document("_id")?.to_raw_document_buf();
                        last = Some((event.sequence, token));
                        events.push(document);
                    }
                }
                self.position = event.sequence;
                self.position_time = event.cluster_time;
                if invalidates && !self.cosmos {
                    self.invalidate_pending = !matches!(self.scope, Scope::Cluster);
                    continue 'read;
                }
            }
        }

        // The post-batch token is the last event's when the batch ends on it, otherwise the
        // position reached.
        let post_batch_token = match last {
            Some((sequence, token)) if sequence == self.position && !self.invalidate_pending => {
                token
            }
            _ => self.high_water_mark(),
        };

        if self.cosmos {
            events = coalesce_by_document_key(events);
            // Cosmos DB gives every event of a batch the same resume token: the continuation
            // the batch was read from, so resuming from any event replays the whole batch.
            for event in &mut events {
                let mut rewritten = RawDocumentBuf::new();
                rewritten.append("_id", batch_start.clone());
                for (key, value) in event.iter().flatten() {
                    if key != "_id" {
                        rewritten.append_ref(key, value);
                    }
                }
                *event = rewritten;
            }
        }
        Ok(Batch {
            events,
            post_batch_token,
        })
    }
}

fn document_key(event: &super::log::PendingEvent) -> CommandResult<RawDocumentBuf> {
    if let Some(key) = &event.document_key {
        return Ok(key.clone());
    }
    match &event.full_document {
        Some(document) => crate::commands::id_document(document),
        None => Ok(RawDocumentBuf::new()),
    }
}

/// Runs `getMore` on a change stream: returns the available events, or waits up to
/// `maxTimeMS` for the first one.
pub async fn get_more(
    ctx: &mut Context<'_>,
    stream: &mut StreamCursor,
    id: i64,
    batch_size: usize,
    max_time_ms: Option<i64>,
) -> CommandResult<(DocBuilder, bool)> {
    let wait = max_time_ms
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms as u64))
        .unwrap_or(DEFAULT_AWAIT);
    let deadline = Instant::now() + wait;
    let mut newest = ctx.state.changes.subscribe();
    let namespace = stream.namespace();
    if stream.cosmos {
        // A throttled Cosmos DB change stream returns an empty batch, not an error.
        if ctx.state.request_units.charge("getMore", 1.0).is_err() {
            let batch = Batch {
                events: Vec::new(),
                post_batch_token: stream.high_water_mark(),
            };
            return Ok((batch.into_reply("nextBatch", id, &namespace), false));
        }
    }
    loop {
        newest.borrow_and_update();
        let batch = stream.next_batch(ctx, batch_size)?;
        let now = Instant::now();
        if !batch.events.is_empty() || now >= deadline {
            let finished = stream.finished;
            let reply_id = if finished { 0 } else { id };
            return Ok((
                batch.into_reply("nextBatch", reply_id, &namespace),
                finished,
            ));
        }
        let _ = tokio::time::timeout(deadline - now, newest.changed()).await;
    }
}
