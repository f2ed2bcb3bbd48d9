//! Handshake and server-information commands: hello, buildInfo, whatsmyuri, connectionStatus,
//! and Cosmos DB's getLastRequestStatistics.

use bson::{rawdoc, RawArrayBuf, RawBsonRef};

use super::Context;
use crate::error::{code, CommandError, CommandResult};
use crate::options::Personality;
use crate::wire::{DocBuilder, MAX_MESSAGE_SIZE};

/// Replies to `hello`/`isMaster` as the primary of a single-node replica set. The reply has no
/// `topologyVersion`, so drivers poll instead of using streaming (awaitable) hello.
pub fn hello(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let body = ctx.body();
    if ctx.connection.id == 0 {
        ctx.connection.id = ctx.state.next_connection_id();
    }
    if let Ok(client) = body.get_document("client") {
        if let Ok(application) = client.get_document("application") {
            ctx.connection.app_name = application.get_str("name").ok().map(str::to_string);
        }
    }

    let profile = ctx.profile();
    let host = ctx.state.host();
    let mut hosts = RawArrayBuf::new();
    hosts.push(host.as_str());
    let now = ctx.state.changes.now();
    let mut reply = rawdoc! {
        "helloOk": true,
        "ismaster": true,
        "isWritablePrimary": true,
        "setName": profile.set_name,
        "setVersion": 1,
        "hosts": hosts,
        "primary": host.as_str(),
        "me": host.as_str(),
        "electionId": bson::oid::ObjectId::from_bytes([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]),
        "lastWrite": {
            "opTime": { "ts": now, "t": 1i64 },
            "lastWriteDate": bson::DateTime::now(),
            "majorityOpTime": { "ts": now, "t": 1i64 },
            "majorityWriteDate": bson::DateTime::now(),
        },
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": MAX_MESSAGE_SIZE as i32,
        "maxWriteBatchSize": profile.max_write_batch_size,
        "localTime": bson::DateTime::now(),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": ctx.connection.id as i32,
        "minWireVersion": 0,
        "maxWireVersion": profile.max_wire_version,
        "readOnly": false,
    };

    if let Ok(user) = body.get_str("saslSupportedMechs") {
        if let Some((configured, _)) = &ctx.state.options.user {
            let wanted = user.split_once('.').map(|(_, u)| u).unwrap_or(user);
            if wanted == configured {
                let mut mechanisms = RawArrayBuf::new();
                mechanisms.push("SCRAM-SHA-256");
                reply.append("saslSupportedMechs", mechanisms);
            }
        }
    }

    if let Ok(speculative) = body.get_document("speculativeAuthenticate") {
        if let Some(first) = super::auth::speculative_start(ctx, speculative)? {
            reply.append("speculativeAuthenticate", first);
        }
    }
    Ok(DocBuilder::from_document(&reply))
}

pub fn build_info(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let profile = ctx.profile();
    let mut version_array = RawArrayBuf::new();
    for part in profile.version.split('.') {
        version_array.push(part.parse::<i32>().unwrap_or(0));
    }
    version_array.push(0);
    let reply = rawdoc! {
        "version": profile.version,
        "gitVersion": "mongo-emulator",
        "versionArray": version_array,
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "storageEngines": ["memory"],
        "modules": [],
    };
    Ok(DocBuilder::from_document(&reply))
}

pub fn whats_my_uri(_ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    Ok(DocBuilder::from_document(&rawdoc! { "you": "127.0.0.1:0" }))
}

pub fn connection_status(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    let mut users = RawArrayBuf::new();
    if let Some(user) = &ctx.connection.user {
        users.push(rawdoc! { "user": user.as_str(), "db": "admin" });
    }
    Ok(DocBuilder::from_document(&rawdoc! {
        "authInfo": { "authenticatedUsers": users, "authenticatedUserRoles": [] },
    }))
}

/// Cosmos DB (RU) reports the request charge of the previous command on this connection;
/// other servers do not know the command.
pub fn last_request_statistics(ctx: &mut Context<'_>) -> CommandResult<DocBuilder> {
    if ctx.personality() != Personality::CosmosRu {
        return Err(CommandError::new(
            code::COMMAND_NOT_FOUND,
            "no such command: 'getLastRequestStatistics'",
        ));
    }
    let (command, charge) = ctx.state.request_units.last_request();
    let mut reply = rawdoc! {
        "CommandName": command.as_str(),
        "RequestCharge": charge,
        "RequestDurationInMilliSeconds": 0i64,
    };
    reply.append_ref(
        "ActivityId",
        RawBsonRef::String("00000000-0000-0000-0000-000000000000"),
    );
    Ok(DocBuilder::from_document(&reply))
}
