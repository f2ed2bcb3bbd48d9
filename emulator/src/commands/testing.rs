//! Commands for tests: configureFailPoint, a recorded shardCollection, and the emulator's own
//! `emulatorRecordedCommands` and `emulatorSetRuPerSecond`.

use bson::{RawArrayBuf, RawBsonRef};

use super::Context;
use crate::error::{code, CommandError, CommandResult};
use crate::query::number::Number;
use crate::wire::DocBuilder;

fn require_admin(ctx: &Context<'_>) -> CommandResult<()> {
    if ctx.db != "admin" {
        return Err(CommandError::new(
            code::UNAUTHORIZED,
            format!("{} may only be run against the admin database.", ctx.name),
        ));
    }
    Ok(())
}

pub fn configure_fail_point(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    require_admin(ctx)?;
    let reply = ctx.state.fail_points.configure(ctx.body())?;
    Ok(DocBuilder::from_document(&reply))
}

/// Records `shardCollection` so tests can assert it was issued; the emulator itself stays a
/// single unsharded node, so the command changes nothing else.
pub fn shard_collection(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    require_admin(ctx)?;
    let body = ctx.body();
    let Some(RawBsonRef::String(namespace)) = body.get("shardCollection")? else {
        return Err(CommandError::type_mismatch(
            "'shardCollection' must be a namespace string",
        ));
    };
    if !namespace.contains('.') {
        return Err(CommandError::new(
            code::INVALID_NAMESPACE,
            format!("Invalid namespace specified '{namespace}'"),
        ));
    }
    if !matches!(body.get("key")?, Some(RawBsonRef::Document(_))) {
        return Err(CommandError::failed_to_parse("'key' must be an object"));
    }
    let mut recorded = bson::RawDocumentBuf::new();
    for element in body.iter() {
        let (key, value) = element?;
        if !key.starts_with('$') && !matches!(key, "lsid" | "txnNumber") {
            recorded.append_ref(key, value);
        }
    }
    ctx.state
        .recorded
        .lock()
        .expect("recorded lock")
        .push(recorded);
    let mut reply = DocBuilder::with_reply_prefix();
    reply.append_str("collectionsharded", namespace);
    Ok(reply)
}

pub fn recorded_commands(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let mut commands = RawArrayBuf::new();
    for command in ctx.state.recorded.lock().expect("recorded lock").iter() {
        commands.push(command.clone());
    }
    let mut reply = DocBuilder::with_reply_prefix();
    reply.append_value("commands", RawBsonRef::Array(&commands));
    Ok(reply)
}

/// Sets the cosmos-ru request-unit budget; 0 or a negative value removes the limit.
pub fn set_ru_per_second(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let value = match ctx.body().get("emulatorSetRuPerSecond")? {
        Some(RawBsonRef::Null) => None,
        Some(value) => match Number::from_raw(value) {
            Some(n) if n.to_f64() > 0.0 => Some(n.to_f64() as u64),
            Some(_) => None,
            None => {
                return Err(CommandError::type_mismatch(
                    "emulatorSetRuPerSecond takes a number of request units per second",
                ))
            }
        },
        None => None,
    };
    ctx.state.request_units.set_per_second(value);
    Ok(DocBuilder::with_reply_prefix())
}
