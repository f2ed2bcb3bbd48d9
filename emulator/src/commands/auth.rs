//! saslStart, saslContinue and speculative authentication in hello.

use bson::{rawdoc, spec::BinarySubtype, Binary, RawBsonRef, RawDocument, RawDocumentBuf};

use super::Context;
use crate::auth::{self, ScramError};
use crate::error::{code, CommandError, CommandResult};
use crate::wire::DocBuilder;

fn authentication_failed(reason: ScramError) -> CommandError {
    tracing::info!(?reason, "authentication failed");
    CommandError::new(code::AUTHENTICATION_FAILED, "Authentication failed.")
}

fn payload_of(body: &RawDocument) -> CommandResult<Vec<u8>> {
    match body.get("payload")? {
        Some(RawBsonRef::Binary(binary)) => Ok(binary.bytes.to_vec()),
        Some(RawBsonRef::String(text)) => Ok(text.as_bytes().to_vec()),
        _ => Err(CommandError::failed_to_parse("saslStart needs a 'payload'")),
    }
}

fn binary(text: String) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: text.into_bytes(),
    }
}

/// Runs a SCRAM client-first message and returns the reply fields.
fn start_conversation(ctx: &mut Context<'_>, body: &RawDocument) -> CommandResult<RawDocumentBuf> {
    let mechanism = body.get_str("mechanism").unwrap_or("");
    if mechanism != "SCRAM-SHA-256" {
        return Err(CommandError::new(
            334,
            format!("Received authentication for mechanism {mechanism} which is not enabled"),
        ));
    }
    let Some(credential) = ctx.state.credential() else {
        return Err(CommandError::new(
            code::AUTHENTICATION_FAILED,
            "Authentication failed.",
        ));
    };
    let (conversation, server_first) =
        auth::start(credential, &payload_of(body)?).map_err(authentication_failed)?;
    ctx.connection.scram = Some(conversation);
    Ok(rawdoc! {
        "conversationId": 1,
        "done": false,
        "payload": binary(server_first),
    })
}

pub fn sasl_start(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let body = ctx.body().to_raw_document_buf();
    Ok(DocBuilder::from_document(&start_conversation(ctx, &body)?))
}

/// Handles `speculativeAuthenticate` in hello; `None` when the mechanism is not SCRAM-SHA-256.
pub fn speculative_start(
    ctx: &mut Context<'_>,
    body: &RawDocument,
) -> CommandResult<Option<RawDocumentBuf>> {
    if body.get_str("mechanism") != Ok("SCRAM-SHA-256") || ctx.state.credential().is_none() {
        return Ok(None);
    }
    start_conversation(ctx, body).map(Some)
}

pub fn sasl_continue(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let payload = payload_of(ctx.body())?;
    let Some(conversation) = ctx.connection.scram.take() else {
        // The empty final round of a client that did not ask to skip it.
        if ctx.connection.user.is_some() && payload.is_empty() {
            return Ok(DocBuilder::from_document(&rawdoc! {
                "conversationId": 1,
                "done": true,
                "payload": binary(String::new()),
            }));
        }
        return Err(CommandError::new(17, "No SASL session state found"));
    };
    let credential = ctx
        .state
        .credential()
        .ok_or_else(|| authentication_failed(ScramError::UnknownUser))?;
    let server_final =
        auth::finish(credential, &conversation, &payload).map_err(authentication_failed)?;
    ctx.connection.user = Some(conversation.user.clone());
    tracing::debug!(user = %conversation.user, "client authenticated");
    Ok(DocBuilder::from_document(&rawdoc! {
        "conversationId": 1,
        "done": true,
        "payload": binary(server_final),
    }))
}

pub fn logout(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    ctx.connection.user = None;
    Ok(DocBuilder::with_reply_prefix())
}
