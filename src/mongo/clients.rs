use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio::sync::Mutex;

use crate::secrets::{redact_connection_string, CredentialRef, ResolveError};

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
/// set-up (TLS and SCRAM) off the copy path.
#[derive(Clone, Default)]
pub struct ClientCache {
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl ClientCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the client for a reference, connecting on first use.
    pub async fn client(&self, reference: &CredentialRef) -> Result<Client, ConnectError> {
        let key = serde_json::to_string(reference).unwrap_or_default();
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let uri = reference.resolve_setting(|name| std::env::var(name).ok())?;
        let describe = describe_reference(reference);
        let mut options = ClientOptions::parse(uri.expose().as_str())
            .await
            .map_err(|e| ConnectError::Invalid {
                reference: describe.clone(),
                reason: redact_connection_string(&e.to_string()),
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
        let client = Client::with_options(options).map_err(|e| ConnectError::Invalid {
            reference: describe,
            reason: redact_connection_string(&e.to_string()),
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }
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
