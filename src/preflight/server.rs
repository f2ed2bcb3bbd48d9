//! Connection checks for one side of a job.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bson::{doc, Document};
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::Client;

use super::{Check, CheckStatus, PreflightContext};
use crate::mongo::{client_options, describe, describe_reference, is_authentication_failure};
use crate::secrets::{scrub_secret, CredentialRef};

/// The lowest wire version the driver (mongodb 3.8) talks to: 8, MongoDB 4.2.
pub const MIN_WIRE_VERSION: i32 = 8;

/// Host suffix of Azure Cosmos DB for MongoDB (RU) accounts.
const COSMOS_RU_HOST_SUFFIX: &str = ".mongo.cosmos.azure.com";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// The checks of one side, and a client that passed them all.
pub struct Connection {
    pub checks: Vec<Check>,
    pub client: Option<Client>,
}

/// What the driver's topology events showed about the server.
#[derive(Default)]
struct Observed {
    max_wire_version: Option<i32>,
}

/// Checks, in order: the secret is readable, the connection string parses, the server answers,
/// the credentials are accepted, and the server version is supported.
pub async fn connect(
    context: &PreflightContext,
    side: Side,
    reference: &CredentialRef,
) -> Connection {
    let name = |check: &str| format!("{}.{check}", side.name());
    let mut checks = Vec::new();
    let skip_rest = |checks: &mut Vec<Check>, from: usize, reason: &str| {
        for check in &[
            "secret",
            "connectionString",
            "reachable",
            "authentication",
            "serverVersion",
        ][from..]
        {
            checks.push(Check::new(name(check), CheckStatus::Skipped, reason));
        }
    };

    let secret = match context.secrets.resolve(reference).await {
        Ok(secret) => {
            checks.push(Check::new(
                name("secret"),
                CheckStatus::Passed,
                format!(
                    "read the connection string from {}",
                    describe_reference(reference)
                ),
            ));
            secret
        }
        Err(error) => {
            checks.push(Check::new(
                name("secret"),
                CheckStatus::Failed,
                error.to_string(),
            ));
            skip_rest(
                &mut checks,
                1,
                "skipped because the secret could not be read",
            );
            return Connection {
                checks,
                client: None,
            };
        }
    };

    let mut options = match client_options(reference, &secret.value).await {
        Ok(options) => {
            checks.push(Check::new(
                name("connectionString"),
                CheckStatus::Passed,
                format!(
                    "the connection string parses: hosts {}, {}",
                    hosts(&options),
                    if options.credential.is_some() {
                        "with credentials"
                    } else {
                        "without credentials"
                    }
                ),
            ));
            options
        }
        Err(error) => {
            checks.push(Check::new(
                name("connectionString"),
                CheckStatus::Failed,
                error.to_string(),
            ));
            skip_rest(
                &mut checks,
                2,
                "skipped because the connection string is invalid",
            );
            return Connection {
                checks,
                client: None,
            };
        }
    };

    let observed = Arc::new(Mutex::new(Observed::default()));
    let handler_state = observed.clone();
    options.sdam_event_handler = Some(EventHandler::callback(move |event: SdamEvent| {
        if let SdamEvent::ServerDescriptionChanged(changed) = event {
            if let Some(version) = changed.new_description.max_wire_version() {
                if let Ok(mut observed) = handler_state.lock() {
                    observed.max_wire_version = Some(version);
                }
            }
        }
    }));
    options.server_selection_timeout = Some(context.timeout);
    options.connect_timeout = Some(context.timeout);
    options.max_pool_size = Some(2);
    options.app_name = Some("vcore-migrate-preflight".to_string());
    let has_credentials = options.credential.is_some();
    let cosmos_ru = options.hosts.iter().any(|h| {
        h.to_string()
            .to_ascii_lowercase()
            .contains(COSMOS_RU_HOST_SUFFIX)
    });
    let host_list = hosts(&options);

    let client = match Client::with_options(options) {
        Ok(client) => client,
        Err(error) => {
            checks.push(Check::new(
                name("reachable"),
                CheckStatus::Failed,
                scrub_secret(&describe(&error), secret.value.expose()),
            ));
            skip_rest(&mut checks, 3, "skipped because no client could be created");
            return Connection {
                checks,
                client: None,
            };
        }
    };

    // The driver's own timeouts end the ping; the outer timeout is a guard against a hang.
    let ping = tokio::time::timeout(
        context.timeout + Duration::from_secs(5),
        client.database("admin").run_command(doc! { "ping": 1 }),
    )
    .await;
    let wire_version = observed.lock().ok().and_then(|o| o.max_wire_version);
    let version_check = |checks: &mut Vec<Check>, build: Option<&Document>| {
        checks.push(server_version_check(
            name("serverVersion"),
            wire_version,
            build,
            cosmos_ru,
        ));
    };

    match ping {
        Ok(Ok(_)) => {
            checks.push(Check::new(
                name("reachable"),
                CheckStatus::Passed,
                format!("{host_list} answered"),
            ));
            checks.push(Check::new(
                name("authentication"),
                CheckStatus::Passed,
                if has_credentials {
                    "the server accepted the credentials"
                } else {
                    "the connection string has no credentials and the server accepted the connection"
                },
            ));
            let build = client
                .database("admin")
                .run_command(doc! { "buildInfo": 1 })
                .await
                .ok();
            version_check(&mut checks, build.as_ref());
            let passed = checks.iter().all(|c| c.status != CheckStatus::Failed);
            Connection {
                checks,
                client: passed.then_some(client),
            }
        }
        Ok(Err(error)) if is_authentication_failure(&error) => {
            checks.push(Check::new(
                name("reachable"),
                CheckStatus::Passed,
                format!("{host_list} answered"),
            ));
            checks.push(Check::new(
                name("authentication"),
                CheckStatus::Failed,
                format!(
                    "the server rejected the credentials ({}); check the user name and password in {}, \
                     percent-encode reserved characters in them, and check authSource",
                    scrub_secret(&describe(&error), secret.value.expose()),
                    describe_reference(reference)
                ),
            ));
            version_check(&mut checks, None);
            client.shutdown().await;
            Connection {
                checks,
                client: None,
            }
        }
        outcome => {
            if wire_version.is_some_and(|v| v < MIN_WIRE_VERSION) {
                checks.push(Check::new(
                    name("reachable"),
                    CheckStatus::Passed,
                    format!("{host_list} answered"),
                ));
                checks.push(Check::new(
                    name("authentication"),
                    CheckStatus::Skipped,
                    "skipped because the driver does not talk to this server version",
                ));
                version_check(&mut checks, None);
            } else {
                let detail = match outcome {
                    Ok(Err(error)) => scrub_secret(&describe(&error), secret.value.expose()),
                    _ => "no reply".to_string(),
                };
                checks.push(Check::new(
                    name("reachable"),
                    CheckStatus::Failed,
                    unreachable_message(&host_list, context, &detail),
                ));
                skip_rest(&mut checks, 3, "skipped because the server did not answer");
            }
            client.shutdown().await;
            Connection {
                checks,
                client: None,
            }
        }
    }
}

fn hosts(options: &ClientOptions) -> String {
    options
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Advice for a server that did not answer: most often a firewall that does not admit the
/// service's outbound address.
fn unreachable_message(hosts: &str, context: &PreflightContext, detail: &str) -> String {
    // A refused connection means the host is up and nothing listens on the port, so the
    // firewall advice and the driver's topology dump would only mislead.
    if detail.contains("Connection refused") {
        return format!(
            "{hosts} refused the connection, so nothing listens on that port; check the host \
             name and port in the connection string"
        );
    }
    let allow = match &context.outbound_ip {
        Some(ip) => format!(
            "allow the service's outbound IP address {ip} ({}) in the server's firewall",
            crate::config::OUTBOUND_IP
        ),
        None => format!(
            "allow the service's outbound IP addresses in the server's firewall (set {} to have \
             them named here)",
            crate::config::OUTBOUND_IP
        ),
    };
    format!(
        "{hosts} did not answer within {} s ({detail}); a firewall may be blocking the connection: \
         {allow}, and check the host name and port",
        context.timeout.as_secs()
    )
}

/// Judges the server version from the wire version the server reported in its handshake.
fn server_version_check(
    name: String,
    wire_version: Option<i32>,
    build_info: Option<&Document>,
    cosmos_ru: bool,
) -> Check {
    let Some(wire) = wire_version else {
        return Check::new(
            name,
            CheckStatus::Skipped,
            "the server did not report its wire version",
        );
    };
    let version = build_info
        .and_then(|b| b.get_str("version").ok())
        .map(|v| format!("server version {v}, "))
        .unwrap_or_default();
    if wire >= MIN_WIRE_VERSION {
        return Check::new(
            name,
            CheckStatus::Passed,
            format!("{version}wire version {wire}"),
        );
    }
    let advice = if cosmos_ru {
        "upgrade the Azure Cosmos DB for MongoDB account's server version to 4.2 or later \
         (account settings, Features, Server version)"
    } else {
        "upgrade the server to MongoDB 4.2 or later; an Azure Cosmos DB for MongoDB (RU) account \
         must have its server version upgraded to 4.2 or later"
    };
    Check::new(
        name,
        CheckStatus::Failed,
        format!(
            "the server reports wire version {wire} ({}), but the driver needs wire version \
             {MIN_WIRE_VERSION} (MongoDB 4.2) or later; {advice}",
            mongodb_version_of(wire)
        ),
    )
}

/// The MongoDB release that introduced a wire version, for messages.
fn mongodb_version_of(wire: i32) -> &'static str {
    match wire {
        i32::MIN..=5 => "MongoDB 3.4 or older",
        6 => "MongoDB 3.6",
        7 => "MongoDB 4.0",
        _ => "MongoDB 4.2 or later",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_wire_version_fails_with_upgrade_advice() {
        let check = server_version_check("source.serverVersion".into(), Some(6), None, true);
        assert_eq!(check.status, CheckStatus::Failed);
        assert!(check.message.contains("MongoDB 3.6"), "{}", check.message);
        assert!(check.message.contains("4.2 or later"), "{}", check.message);
        assert!(check.message.contains("Cosmos DB"), "{}", check.message);
    }

    #[test]
    fn wire_version_eight_passes() {
        let build = doc! { "version": "4.2.0" };
        let check =
            server_version_check("source.serverVersion".into(), Some(8), Some(&build), true);
        assert_eq!(check.status, CheckStatus::Passed);
        assert_eq!(check.message, "server version 4.2.0, wire version 8");
    }

    #[test]
    fn unreachable_names_outbound_ip() {
        let context = |ip: Option<&str>| PreflightContext {
            secrets: crate::secrets::SecretResolver::new(crate::secrets::ResolverOptions {
                cache_ttl: Duration::ZERO,
                key_vault: crate::secrets::KeyVaultOptions {
                    credential: crate::secrets::CredentialSource::Identity(Default::default()),
                    transport: None,
                },
                settings: Arc::new(|_| None),
            }),
            timeout: Duration::from_secs(3),
            outbound_ip: ip.map(str::to_string),
        };
        let with_ip = unreachable_message("h:1", &context(Some("20.1.2.3")), "timed out");
        assert!(with_ip.contains("20.1.2.3"), "{with_ip}");
        assert!(with_ip.contains("firewall"), "{with_ip}");
        assert!(with_ip.contains("within 3 s"), "{with_ip}");
        let without = unreachable_message("h:1", &context(None), "timed out");
        assert!(without.contains("VCM_OUTBOUND_IP"), "{without}");
    }
}
