//! Reading connection strings from Key Vault secrets with azure_security_keyvault_secrets.
//!
//! The vault URI is checked against the Key Vault host suffixes before a client is created, so a
//! token is never requested for, or sent to, another host. The SDK's challenge handling also
//! checks that the resource named in the vault's 401 challenge matches the vault's domain.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{StatusCode, Transport};
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use tokio::sync::{Mutex, OnceCell};

use super::identity::{build_credential, client_options, IdentityOptions};
use super::reference::{check_secret_name, check_secret_version, check_vault_uri};
use super::{Redacted, ResolveError};

/// Where the Key Vault client gets its tokens.
#[derive(Clone)]
pub enum CredentialSource {
    /// Built from settings on the first Key Vault read, so a service that uses only setting
    /// references never needs an identity.
    Identity(IdentityOptions),
    /// A credential built elsewhere, shared with storage or supplied by a test.
    Fixed(Arc<dyn TokenCredential>),
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Identity(options) => {
                f.debug_tuple("Identity").field(options).finish()
            }
            CredentialSource::Fixed(_) => f.write_str("Fixed(<credential>)"),
        }
    }
}

/// Options for [`KeyVaultReader`].
#[derive(Clone, Debug)]
pub struct KeyVaultOptions {
    pub credential: CredentialSource,
    /// HTTP transport; `None` uses the service's reqwest client. Tests pass a client that trusts
    /// a local certificate.
    pub transport: Option<Transport>,
}

/// One secret value and the version it came from.
#[derive(Clone, Debug)]
pub struct SecretValue {
    pub value: Redacted<String>,
    /// The version segment of the secret id, when the vault returned one.
    pub version: Option<String>,
}

/// Reads secrets, with one SDK client per vault.
pub struct KeyVaultReader {
    options: KeyVaultOptions,
    credential: OnceCell<Arc<dyn TokenCredential>>,
    clients: Mutex<HashMap<String, Arc<SecretClient>>>,
}

impl KeyVaultReader {
    pub fn new(options: KeyVaultOptions) -> Self {
        KeyVaultReader {
            options,
            credential: OnceCell::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Reads `secret_name` (at `version`, or the current version) from the vault at `vault_uri`.
    pub async fn read(
        &self,
        vault_uri: &str,
        secret_name: &str,
        version: Option<&str>,
    ) -> Result<SecretValue, ResolveError> {
        let endpoint = check_vault_uri(vault_uri)?;
        check_secret_name(secret_name)?;
        if let Some(version) = version {
            check_secret_version(version)?;
        }
        let failed = |reason: String| ResolveError::KeyVault {
            vault_uri: vault_uri.to_string(),
            secret_name: secret_name.to_string(),
            reason,
        };

        let client = self
            .client(endpoint.origin().ascii_serialization())
            .await
            .map_err(failed)?;
        let options = SecretClientGetSecretOptions {
            secret_version: version.map(str::to_string),
            ..SecretClientGetSecretOptions::default()
        };
        let secret = client
            .get_secret(secret_name, Some(options))
            .await
            .and_then(|response| response.into_model())
            .map_err(|e| failed(describe_error(&e)))?;
        let value = secret
            .value
            .ok_or_else(|| failed("the vault returned the secret without a value".to_string()))?;
        let version = secret
            .id
            .as_deref()
            .and_then(|id| id.rsplit('/').next())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Ok(SecretValue {
            value: Redacted::new(value),
            version,
        })
    }

    async fn client(&self, origin: String) -> Result<Arc<SecretClient>, String> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&origin) {
            return Ok(client.clone());
        }
        let credential = self.credential().await?;
        let options = SecretClientOptions {
            client_options: client_options(self.options.transport.clone())?,
            ..SecretClientOptions::default()
        };
        let client = SecretClient::new(&origin, credential, Some(options))
            .map_err(|e| format!("creating the Key Vault client failed: {e}"))?;
        let client = Arc::new(client);
        clients.insert(origin, client.clone());
        Ok(client)
    }

    async fn credential(&self) -> Result<Arc<dyn TokenCredential>, String> {
        self.credential
            .get_or_try_init(|| async {
                match &self.options.credential {
                    CredentialSource::Fixed(credential) => Ok(credential.clone()),
                    CredentialSource::Identity(options) => {
                        build_credential(options).map_err(|e| e.to_string())
                    }
                }
            })
            .await
            .cloned()
    }
}

/// One line for an SDK error that says what to fix. Responses other than 200 carry no secret
/// value, and tokens never appear in SDK error text.
fn describe_error(error: &azure_core::Error) -> String {
    let text = match error.http_status() {
        Some(StatusCode::Unauthorized) => "the vault rejected the access token (401); check that \
             the identity belongs to the vault's Microsoft Entra tenant"
            .to_string(),
        Some(StatusCode::Forbidden) => "access denied (403); grant the service's identity the Key \
             Vault Secrets User role on the vault (or a get-secret access policy), and check that \
             the vault's firewall admits the service"
            .to_string(),
        Some(StatusCode::NotFound) => {
            "the secret was not found (404); check secretName and secretVersion".to_string()
        }
        Some(status) => format!(
            "the vault answered HTTP {}: {}",
            u16::from(status),
            error_chain(error)
        ),
        None => match error.kind() {
            ErrorKind::Credential => {
                format!("getting an access token failed: {}", error_chain(error))
            }
            ErrorKind::Connection | ErrorKind::Io => {
                format!("the vault could not be reached: {}", error_chain(error))
            }
            _ => error_chain(error),
        },
    };
    super::truncate_message(text)
}

/// The messages of an error and its sources, because the SDK wraps the cause (for example a
/// rejected challenge) in a generic "will not be retried" error.
fn error_chain(error: &azure_core::Error) -> String {
    let mut messages = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let message = cause.to_string();
        if !messages.iter().any(|m| m.contains(&message)) {
            messages.push(message);
        }
        source = cause.source();
    }
    messages.join(": ")
}
