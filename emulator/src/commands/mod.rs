//! Command dispatch: routes a decoded request to the handler of its command and turns the
//! result into a reply.

mod aggregate;
mod auth;
mod cursor_reply;
mod delete;
mod find;
mod find_and_modify;
mod handshake;
mod indexes;
mod insert;
mod namespace;
mod stats;
mod testing;
mod update;

use std::sync::Arc;

pub use cursor_reply::MAX_BATCH_BYTES;
pub use find::id_document;

use bson::{RawBsonRef, RawDocument};

use crate::auth::ScramConversation;
use crate::error::{code, CommandError, CommandResult};
use crate::personality::Profile;
use crate::state::ServerState;
use crate::wire::{DocBuilder, Request};

/// Per-connection facts that commands read or update.
#[derive(Default)]
pub struct Connection {
    pub id: i64,
    /// `client.application.name` from the handshake, matched by fail points' `appName`.
    pub app_name: Option<String>,
    /// The authenticated user, when the server requires authentication.
    pub user: Option<String>,
    /// An unfinished SCRAM conversation.
    pub scram: Option<ScramConversation>,
}

/// Everything a command handler needs.
pub struct Context<'a> {
    pub state: &'a Arc<ServerState>,
    pub connection: &'a mut Connection,
    pub request: &'a Request,
    /// The database the command runs on (`$db`).
    pub db: String,
    /// The command name, the body's first key.
    pub name: String,
}

impl<'a> Context<'a> {
    pub fn body(&self) -> &'a RawDocument {
        self.request.body()
    }

    pub fn profile(&self) -> Profile {
        self.state.options.personality.profile()
    }

    pub fn personality(&self) -> crate::Personality {
        self.state.options.personality
    }

    /// Returns the collection named by the command's first field.
    pub fn collection_name(&self) -> CommandResult<String> {
        match self.body().iter().next().transpose()? {
            Some((_, RawBsonRef::String(name))) => {
                crate::state::validate_collection_name(&self.db, name)?;
                Ok(name.to_string())
            }
            _ => Err(CommandError::new(
                code::INVALID_NAMESPACE,
                format!("collection name has invalid type for command {}", self.name),
            )),
        }
    }

    pub fn namespace(&self, collection: &str) -> String {
        format!("{}.{}", self.db, collection)
    }

    /// Returns the documents of `field`, from a kind-1 sequence or from an array in the body.
    pub fn documents(&self, field: &str) -> CommandResult<Vec<&'a RawDocument>> {
        if let Some(sequence) = self.request.sequence(field) {
            return Ok(sequence);
        }
        match self.body().get(field)? {
            Some(RawBsonRef::Array(array)) => {
                let mut out = Vec::new();
                for item in array {
                    match item? {
                        RawBsonRef::Document(document) => out.push(document),
                        _ => {
                            return Err(CommandError::type_mismatch(format!(
                                "BSON field '{}.{field}' must contain only objects",
                                self.name
                            )))
                        }
                    }
                }
                Ok(out)
            }
            Some(_) => Err(CommandError::type_mismatch(format!(
                "BSON field '{}.{field}' is the wrong type, expected type 'array'",
                self.name
            ))),
            None => Err(CommandError::new(
                40414,
                format!(
                    "BSON field '{}.{field}' is missing but a required field",
                    self.name
                ),
            )),
        }
    }

    /// Returns an optional document field, failing on any other type.
    pub fn optional_document(&self, field: &str) -> CommandResult<Option<&'a RawDocument>> {
        match self.body().get(field)? {
            None | Some(RawBsonRef::Null) => Ok(None),
            Some(RawBsonRef::Document(document)) => Ok(Some(document)),
            Some(_) => Err(CommandError::type_mismatch(format!(
                "BSON field '{}.{field}' is the wrong type, expected type 'object'",
                self.name
            ))),
        }
    }

    /// Parses an optional filter field; a missing one matches every document.
    pub fn filter(&self, field: &str) -> CommandResult<crate::query::filter::Filter> {
        match self.optional_document(field)? {
            Some(filter) => crate::query::filter::Filter::parse(filter),
            None => Ok(crate::query::filter::Filter::match_all()),
        }
    }

    /// Parses an optional sort field; a missing one keeps storage order.
    pub fn sort(&self, field: &str) -> CommandResult<crate::query::sort::SortSpec> {
        match self.optional_document(field)? {
            Some(sort) => crate::query::sort::SortSpec::parse(sort),
            None => Ok(crate::query::sort::SortSpec::default()),
        }
    }

    /// Returns an optional integer field (any numeric type).
    pub fn optional_i64(&self, field: &str) -> CommandResult<Option<i64>> {
        match self.body().get(field)? {
            None | Some(RawBsonRef::Null) => Ok(None),
            Some(value) => match crate::query::number::Number::from_raw(value) {
                Some(n) => Ok(Some(n.to_f64() as i64)),
                None => Err(CommandError::type_mismatch(format!(
                    "BSON field '{}.{field}' is the wrong type, expected a number",
                    self.name
                ))),
            },
        }
    }

    /// Registers an open cursor for this connection's user and returns its id.
    pub fn register_cursor(&self, namespace: &str, source: crate::cursor::CursorSource) -> i64 {
        self.state
            .cursors
            .lock()
            .expect("cursor lock")
            .insert(crate::cursor::Cursor {
                namespace: namespace.to_string(),
                source,
                owner: self.connection.user.clone(),
            })
    }

    pub fn optional_bool(&self, field: &str) -> CommandResult<Option<bool>> {
        match self.body().get(field)? {
            None => Ok(None),
            Some(value) => Ok(Some(crate::aggregate::expr::is_truthy(Some(
                &value.to_raw_bson(),
            )))),
        }
    }
}

/// Commands a client may run before authenticating.
fn allowed_without_auth(name: &str) -> bool {
    matches!(
        name,
        "hello"
            | "isMaster"
            | "ismaster"
            | "saslStart"
            | "saslContinue"
            | "ping"
            | "buildInfo"
            | "buildinfo"
            | "endSessions"
            | "getnonce"
            | "whatsmyuri"
    )
}

/// Write commands, for the `RetryableWriteError` label on injected errors.
fn is_write_command(name: &str) -> bool {
    matches!(
        name,
        "insert" | "update" | "delete" | "findAndModify" | "create" | "drop" | "createIndexes"
    )
}

/// The connection's next step after a request.
pub enum Outcome {
    /// Send this reply body (prefixed for OP_MSG framing).
    Reply(DocBuilder),
    /// Close the connection without replying (fail point `closeConnection`).
    Close,
}

/// Runs one request and returns its reply.
pub async fn handle(
    state: &Arc<ServerState>,
    connection: &mut Connection,
    request: &Request,
) -> Outcome {
    let body = request.body();
    let name = match body.iter().next() {
        Some(Ok((name, _))) => name.to_string(),
        _ => {
            return Outcome::Reply(finish_error(
                state,
                CommandError::failed_to_parse("empty command object"),
            ))
        }
    };

    let db = match body.get_str("$db").ok().map(str::to_string) {
        Some(db) => db,
        None => match &request.legacy_database {
            Some(db) => db.clone(),
            None => {
                return Outcome::Reply(finish_error(
                    state,
                    CommandError::new(40571, "OP_MSG requests require a $db argument"),
                ))
            }
        },
    };

    if state.options.user.is_some() && connection.user.is_none() && !allowed_without_auth(&name) {
        return Outcome::Reply(finish_error(
            state,
            CommandError::new(
                code::UNAUTHORIZED,
                format!("Command {name} requires authentication"),
            ),
        ));
    }

    // A transaction would commit each write at once, so refuse it rather than pretend.
    let in_transaction = ["startTransaction", "autocommit"]
        .iter()
        .any(|field| body.get(field).ok().flatten().is_some());
    if in_transaction {
        return Outcome::Reply(finish_error(
            state,
            CommandError::new(
                code::ILLEGAL_OPERATION,
                "transactions are not supported by this emulator",
            ),
        ));
    }

    let collection = body
        .iter()
        .next()
        .and_then(|e| e.ok())
        .and_then(|(_, v)| v.as_str());
    let namespace = collection.map(|c| format!("{db}.{c}"));
    let injection = if name == "configureFailPoint" {
        None
    } else {
        state.fail_points.check(
            &name,
            namespace.as_deref(),
            connection.app_name.as_deref(),
            is_write_command(&name),
        )
    };

    let mut write_concern_error = None;
    if let Some(injection) = injection {
        if let Some(delay) = injection.block_for {
            tokio::time::sleep(delay).await;
        }
        if injection.close_connection {
            tracing::debug!(command = %name, "fail point closes the connection");
            return Outcome::Close;
        }
        if let Some(mut error) = injection.error {
            if error.labels.is_empty()
                && is_resumable_change_stream_failure(state, &name, body, &error)
            {
                error.labels.push("ResumableChangeStreamError".to_string());
            }
            return Outcome::Reply(finish_error(state, error));
        }
        write_concern_error = injection.write_concern_error;
    }

    let mut context = Context {
        state,
        connection,
        request,
        db,
        name: name.clone(),
    };
    match run(&mut context).await {
        Ok(mut reply) => {
            if let Some(wce) = write_concern_error {
                reply.append_document("writeConcernError", &wce);
            }
            reply.append_f64("ok", 1.0);
            append_cluster_time(state, &mut reply);
            Outcome::Reply(reply)
        }
        Err(error) => {
            tracing::debug!(command = %name, code = error.code, error = %error.message, "command failed");
            Outcome::Reply(finish_error(state, error))
        }
    }
}

/// Returns whether `mongod` would label this failed `getMore` with ResumableChangeStreamError:
/// the cursor is a change stream and the code is one drivers may resume after (the list the
/// drivers' change-stream specification gives for servers without the label).
fn is_resumable_change_stream_failure(
    state: &ServerState,
    name: &str,
    body: &RawDocument,
    error: &CommandError,
) -> bool {
    const RESUMABLE: [i32; 17] = [
        6, 7, 63, 89, 91, 133, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13388, 13435, 13436,
    ];
    if name != "getMore" || !RESUMABLE.contains(&error.code) {
        return false;
    }
    let Ok(id) = body.get_i64("getMore") else {
        return false;
    };
    state
        .cursors
        .lock()
        .expect("cursor lock")
        .is_change_stream(id)
}

fn append_cluster_time(state: &ServerState, reply: &mut DocBuilder) {
    let now = state.changes.now();
    reply.start_document("$clusterTime");
    reply.append_value("clusterTime", RawBsonRef::Timestamp(now));
    reply.start_document("signature");
    reply.append_value(
        "hash",
        RawBsonRef::Binary(bson::RawBinaryRef {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: &[0; 20],
        }),
    );
    reply.append_i64("keyId", 0);
    reply.end();
    reply.end();
    reply.append_value("operationTime", RawBsonRef::Timestamp(now));
}

fn finish_error(state: &ServerState, error: CommandError) -> DocBuilder {
    let mut reply = DocBuilder::from_document(&error.to_reply());
    append_cluster_time(state, &mut reply);
    reply
}

async fn run(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    match ctx.name.as_str() {
        "hello" | "isMaster" | "ismaster" => handshake::hello(ctx),
        "ping" => Ok(DocBuilder::with_reply_prefix()),
        "buildInfo" | "buildinfo" => handshake::build_info(ctx),
        "endSessions" | "refreshSessions" | "killAllSessions" | "killSessions" => {
            Ok(DocBuilder::with_reply_prefix())
        }
        "whatsmyuri" => handshake::whats_my_uri(ctx),
        "connectionStatus" => handshake::connection_status(ctx),
        "getLastRequestStatistics" => handshake::last_request_statistics(ctx),
        "saslStart" => auth::sasl_start(ctx),
        "saslContinue" => auth::sasl_continue(ctx),
        "logout" => auth::logout(ctx),
        "listDatabases" => namespace::list_databases(ctx),
        "listCollections" => namespace::list_collections(ctx),
        "create" => namespace::create(ctx),
        "drop" => namespace::drop(ctx),
        "dropDatabase" => namespace::drop_database(ctx),
        "renameCollection" => namespace::rename_collection(ctx),
        "collStats" => stats::coll_stats(ctx),
        "dbStats" => stats::db_stats(ctx),
        "listIndexes" => indexes::list_indexes(ctx),
        "createIndexes" => indexes::create_indexes(ctx),
        "dropIndexes" | "deleteIndexes" => indexes::drop_indexes(ctx),
        "insert" => insert::insert(ctx),
        "update" => update::update(ctx),
        "delete" => delete::delete(ctx),
        "find" => find::find(ctx),
        "getMore" => find::get_more(ctx).await,
        "killCursors" => find::kill_cursors(ctx),
        "count" => find::count(ctx),
        "distinct" => find::distinct(ctx),
        "findAndModify" | "findandmodify" => find_and_modify::find_and_modify(ctx),
        "aggregate" => aggregate::aggregate(ctx),
        "configureFailPoint" => testing::configure_fail_point(ctx),
        "shardCollection" => testing::shard_collection(ctx),
        "emulatorRecordedCommands" => testing::recorded_commands(ctx),
        "emulatorSetRuPerSecond" => testing::set_ru_per_second(ctx),
        "abortTransaction" | "commitTransaction" => Err(CommandError::new(
            code::ILLEGAL_OPERATION,
            "transactions are not supported by this emulator",
        )),
        other => Err(CommandError::new(
            code::COMMAND_NOT_FOUND,
            format!("no such command: '{other}'"),
        )),
    }
}
