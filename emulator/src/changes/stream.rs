//! Change-stream cursors.

use bson::RawDocumentBuf;

use crate::commands::Context;
use crate::error::{code, CommandError, CommandResult};
use crate::wire::DocBuilder;

/// The state of an open change stream.
pub struct StreamCursor {}

pub fn open(
    _ctx: &mut Context<'_>,
    _collection: Option<String>,
    _spec: RawDocumentBuf,
    _pipeline: Vec<RawDocumentBuf>,
    _batch_size: Option<usize>,
) -> CommandResult<DocBuilder> {
    Err(CommandError::new(
        code::COMMAND_NOT_SUPPORTED,
        "change streams are not supported yet",
    ))
}

pub async fn get_more(
    _ctx: &mut Context<'_>,
    _stream: &mut StreamCursor,
    _id: i64,
    _batch_size: usize,
    _max_time_ms: Option<i64>,
) -> CommandResult<DocBuilder> {
    Err(CommandError::new(
        code::COMMAND_NOT_SUPPORTED,
        "change streams are not supported yet",
    ))
}
