use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::error::{Error, ErrorKind};
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio::sync::Mutex;
use tracing::warn;

use crate::secrets::{scrub_secret, CredentialRef, Redacted, ResolveError, SecretResolver};

/// MongoDB's AuthenticationFailed server code.
pub const AUTHENTICATION_FAILED: i32 = 18;

/// A connection string that could not be used; the message never holds the secret.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("the connection string from {reference} is invalid: {reason}")]
    Invalid { reference: String, reason: String },
}

/// One driver client per credential reference, shared by all tasks of the process.
///
/// The driver pools connections per client, so reusing clients across tasks keeps connection
/// set-up (TLS and SCRAM) off the copy path. A client is replaced when its secret changes: the
/// resolver re-reads a Key Vault secret after its cache lifetime, and at once after a server
/// rejected the client's credentials, so a rotated password is picked up mid-job.
#[derive(Clone)]
pub struct ClientCache {
    secrets: SecretResolver,
    clients: Arc<Mutex<HashMap<String, CachedClient>>>,
}

struct CachedClient {
    client: Client,
    /// SHA-256 of the connection string the client was built from.
    digest: [u8; 32],
    /// Set by the driver's topology events when a connection failed to authenticate.
    auth_failed: Arc<AtomicBool>,
}

impl ClientCache {
    pub fn new(secrets: SecretResolver) -> Self {
        ClientCache {
            secrets,
            clients: Arc::default(),
        }
    }

    /// The resolver this cache reads connection strings through.
    pub fn secrets(&self) -> &SecretResolver {
        &self.secrets
    }

    /// Returns the clients of a job's source and target. The error names the side that failed.
    pub async fn source_and_target(
        &self,
        request: &crate::jobs::JobRequest,
    ) -> Result<(Client, Client), String> {
        let source = self
            .client(&request.source)
            .await
            .map_err(|e| format!("source: {e}"))?;
        let target = self
            .client(&request.target)
            .await
            .map_err(|e| format!("target: {e}"))?;
        Ok((source, target))
    }

    /// Returns the client for a reference, connecting on first use and again when its
    /// connection string changed.
    pub async fn client(&self, reference: &CredentialRef) -> Result<Client, ConnectError> {
        let key = serde_json::to_string(reference).unwrap_or_default();
        let mut clients = self.clients.lock().await;
        let auth_failed = clients
            .get(&key)
            .is_some_and(|cached| cached.auth_failed.swap(false, Ordering::SeqCst));
        if auth_failed {
            warn!(
                reference = %describe_reference(reference),
                "the server rejected the credentials; reading the secret again"
            );
            self.secrets.invalidate(reference).await;
        }
        let secret = self.secrets.resolve(reference).await?;
        if let Some(cached) = clients.get(&key) {
            if cached.digest == secret.digest {
                return Ok(cached.client.clone());
            }
        }

        let mut options = client_options(reference, &secret.value).await?;
        let flag = Arc::new(AtomicBool::new(false));
        options.sdam_event_handler = Some(auth_failure_handler(flag.clone()));
        let client = Client::with_options(options).map_err(|e| ConnectError::Invalid {
            reference: describe_reference(reference),
            reason: scrub_secret(&e.to_string(), secret.value.expose()),
        })?;
        clients.insert(
            key,
            CachedClient {
                client: client.clone(),
                digest: secret.digest,
                auth_failed: flag,
            },
        );
        Ok(client)
    }

    /// Drops the client and the cached secret of `reference` after `error`, when the error
    /// says the server rejected the credentials. Returns whether it did.
    pub async fn forget_after(&self, reference: &CredentialRef, error: &Error) -> bool {
        if !is_authentication_failure(error) {
            return false;
        }
        let key = serde_json::to_string(reference).unwrap_or_default();
        self.clients.lock().await.remove(&key);
        self.secrets.invalidate(reference).await;
        true
    }
}

/// Parses a connection string into driver options with the service's defaults. Parse errors
/// are scrubbed of the connection string and its user name and password.
pub async fn client_options(
    reference: &CredentialRef,
    uri: &Redacted<String>,
) -> Result<ClientOptions, ConnectError> {
    let text = uri.expose().trim_start();
    if !(text.starts_with("mongodb://") || text.starts_with("mongodb+srv://")) {
        // The driver's message quotes the start of the value, which may be another service's
        // secret, such as a storage connection string.
        return Err(ConnectError::Invalid {
            reference: describe_reference(reference),
            reason: "the value is not a MongoDB connection string; it must start with mongodb:// \
                     or mongodb+srv://"
                .into(),
        });
    }
    let mut options = ClientOptions::parse(uri.expose().as_str())
        .await
        .map_err(|e| ConnectError::Invalid {
            reference: describe_reference(reference),
            reason: parse_failure(&e, uri),
        })?;
    if options.app_name.is_none() {
        options.app_name = Some("vcore-migrate".to_string());
    }
    // Cosmos DB closes idle connections after about four minutes; dropping them first
    // avoids a failed first command after a quiet period.
    options
        .max_idle_time
        .get_or_insert(Duration::from_secs(120));
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(20));
    options
        .connect_timeout
        .get_or_insert(Duration::from_secs(10));
    Ok(options)
}

/// Describes a connection-string parse failure without quoting the string. The driver's text
/// is kept only when, after scrubbing, it shares no run of three characters with the user info,
/// because an unencoded password can be split at its reserved characters and quoted in pieces.
fn parse_failure(error: &Error, uri: &Redacted<String>) -> String {
    const HINT: &str = "a user name or password that contains @ : / ? # [ ] or % must be \
                        percent-encoded (for example @ as %40)";
    let detail = match error.kind.as_ref() {
        ErrorKind::InvalidArgument { message, .. } => message.clone(),
        _ => error.to_string(),
    };
    let detail = scrub_secret(&detail, uri.expose());
    let secret = uri.expose();
    let user_info = secret
        .find("://")
        .and_then(|start| {
            let rest = &secret[start + 3..];
            rest.rfind('@').map(|end| &rest[..end])
        })
        .unwrap_or("");
    let chars: Vec<char> = user_info.chars().collect();
    let leaks = chars.windows(3).any(|w| {
        let piece: String = w.iter().collect();
        detail.contains(&piece)
    });
    if leaks {
        format!("it could not be parsed; {HINT}")
    } else {
        format!("{detail}; {HINT}")
    }
}

/// Whether `error` says the server rejected the credentials: the driver's authentication
/// error, or the server's AuthenticationFailed (18).
pub fn is_authentication_failure(error: &Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Authentication { .. } => true,
        ErrorKind::Command(c) => c.code == AUTHENTICATION_FAILED,
        _ => false,
    }
}

/// A topology event handler that sets `flag` when a server is marked unknown because a
/// connection failed to authenticate, which is how the driver reports handshake failures.
fn auth_failure_handler(flag: Arc<AtomicBool>) -> EventHandler<SdamEvent> {
    EventHandler::callback(move |event: SdamEvent| {
        if let SdamEvent::ServerDescriptionChanged(changed) = event {
            if changed
                .new_description
                .error()
                .is_some_and(is_authentication_failure)
            {
                flag.store(true, Ordering::SeqCst);
            }
        }
    })
}

/// Names a reference in messages without its value.
pub fn describe_reference(reference: &CredentialRef) -> String {
    match reference {
        CredentialRef::Setting { setting } => format!("setting {setting}"),
        CredentialRef::KeyVault {
            vault_uri,
            secret_name,
            ..
        } => format!("Key Vault secret {secret_name} in {vault_uri}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting() -> CredentialRef {
        CredentialRef::Setting {
            setting: "SOURCE_URI".into(),
        }
    }

    #[tokio::test]
    async fn unencoded_password_fails_without_echo() {
        let uri =
            Redacted::new("mongodb://miguser:p@ss:w/rd%?#1@source.example.net:27017/".to_string());
        let error = client_options(&setting(), &uri).await.unwrap_err();
        let text = error.to_string();
        eprintln!("{text}");
        assert!(text.contains("invalid"), "{text}");
        assert!(text.contains("setting SOURCE_URI"), "{text}");
        for piece in ["p@ss", "w/rd", "rd%", "?#1", "ss:w"] {
            assert!(!text.contains(piece), "{piece:?} leaked: {text}");
        }
    }

    #[tokio::test]
    async fn encoded_password_parses_and_decodes_once() {
        let uri = Redacted::new(
            "mongodb://miguser:p%40ss%3Aw%2Frd%25%3F%231@127.0.0.1:27017/?authSource=admin"
                .to_string(),
        );
        let options = client_options(&setting(), &uri).await.unwrap();
        let credential = options.credential.expect("credential parsed");
        assert_eq!(credential.username.as_deref(), Some("miguser"));
        assert_eq!(credential.password.as_deref(), Some("p@ss:w/rd%?#1"));
        assert_eq!(options.app_name.as_deref(), Some("vcore-migrate"));
    }

    #[tokio::test]
    async fn other_parse_errors_are_scrubbed() {
        for raw in [
            "mongodb://user:secretpw@host:notaport/",
            "mongodb://user:secretpw@/",
            "mongodb://user:secretpw@host/?unknownOption=secretpw&tls=maybe",
            "notmongo://user:secretpw@host/",
        ] {
            let uri = Redacted::new(raw.to_string());
            let text = client_options(&setting(), &uri)
                .await
                .unwrap_err()
                .to_string();
            eprintln!("{text}");
            assert!(!text.contains("secretpw"), "{text}");
            assert!(!text.contains("user:"), "{text}");
        }
    }
}
