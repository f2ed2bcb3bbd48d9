//! Azure Table Storage and Queue Storage clients over the REST APIs.
//!
//! The service keeps job state in tables with ETag concurrency and moves work through queues. This
//! module owns the wire protocol and authorization only: table layouts, key encoding and message
//! contents belong to the state and queue modules that use it.
//!
//! Why a hand-written client on reqwest: the service must work with Shared Key (connection strings,
//! Azurite) and with Microsoft Entra ID tokens from one `azure_core` 1.x `TokenCredential`. As of
//! azure_storage_queue 1.0 the maintained queue crate accepts only Entra ID tokens or SAS URLs and
//! sends tokens over https only, and the only table crate (azure_data_tables 0.21) is built on
//! azure_core 0.21, whose credential trait is not the 1.x one. The REST calls used here are few and
//! stable, so one small client covers both auth modes, both services and Azurite.
//!
//! Layout:
//! - `connection_string`: parsing of connection strings.
//! - `auth`: Shared Key signing and bearer-token caching.
//! - `pipeline`: common headers, retries of transient failures, request logging.
//! - `entity`: [`Entity`], its typed property helpers, wire form and limit checks.
//! - `table`: [`TableClient`]; `batch`: entity group transactions.
//! - `queue`: [`QueueClient`] with base64 message text.

mod auth;
mod batch;
mod connection_string;
mod entity;
mod error;
mod pipeline;
mod queue;
mod table;
mod url_path;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{SecretBytes, TokenCredential};
use url::Url;

pub use auth::{StorageAuth, STORAGE_SCOPE};
pub use batch::BatchOperation;
pub use entity::{
    odata_string_literal, Entity, MAX_ENTITY_BYTES, MAX_KEY_BYTES, MAX_PROPERTY_BYTES,
};
pub use error::StorageError;
pub use pipeline::RetryOptions;
pub use queue::{QueueClient, QueueMessage, MAX_MESSAGE_BYTES};
pub use table::{IfMatch, TableClient};

use auth::Authorizer;
use pipeline::Pipeline;

/// Timeout for establishing a TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout for one whole request, body included. A 4 MiB batch over a slow link fits well inside.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A storage account: its table and queue endpoints and how requests to it are authorized.
///
/// Cloning is cheap and clones share one HTTP connection pool and one token cache.
#[derive(Clone)]
pub struct StorageAccount {
    table_endpoint: Url,
    queue_endpoint: Url,
    pipeline: Arc<Pipeline>,
}

impl StorageAccount {
    /// Parses an Azure Storage connection string: `UseDevelopmentStorage=true`, or
    /// `DefaultEndpointsProtocol=..;AccountName=..;AccountKey=..;[TableEndpoint=..;QueueEndpoint=..;EndpointSuffix=..]`.
    /// Errors never contain the key.
    pub fn from_connection_string(connection_string: &str) -> Result<Self, StorageError> {
        let parsed = connection_string::parse(connection_string)?;
        let auth = StorageAuth::SharedKey {
            account: parsed.account,
            key: SecretBytes::new(parsed.key),
        };
        Self::new(parsed.table_endpoint, parsed.queue_endpoint, auth)
    }

    /// Identity-based, as Azure Functions configures it (`<prefix>__accountName`, or
    /// `<prefix>__tableServiceUri` and `<prefix>__queueServiceUri`): an explicit service URI wins,
    /// otherwise the public-cloud endpoint of `account_name` is used.
    ///
    /// Bearer tokens are sent over https only, except to a loopback host (127.0.0.0/8, `[::1]`,
    /// `localhost`) where a local emulator may run on http.
    pub fn with_token(
        account_name: Option<&str>,
        table_uri: Option<Url>,
        queue_uri: Option<Url>,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Self, StorageError> {
        let endpoint = |explicit: Option<Url>, name: &str, service: &str| {
            let url = match (explicit, account_name) {
                (Some(url), _) => url,
                (None, Some(account)) => {
                    validate_account_name(account)?;
                    Url::parse(&format!("https://{account}.{service}.core.windows.net"))
                        .map_err(|error| StorageError::InvalidInput(format!("{name}: {error}")))?
                }
                (None, None) => {
                    return Err(StorageError::InvalidInput(format!(
                        "neither an account name nor {name} is configured for identity-based storage access"
                    )))
                }
            };
            let url = connection_string::parse_endpoint(name, url.as_str())?;
            if url.scheme() != "https" && !is_loopback(&url) {
                return Err(StorageError::InvalidInput(format!(
                    "{name} must use https, because bearer tokens are never sent over plain http to a remote host"
                )));
            }
            Ok(url)
        };

        let table_endpoint = endpoint(table_uri, "table service URI", "table")?;
        let queue_endpoint = endpoint(queue_uri, "queue service URI", "queue")?;
        Self::new(
            table_endpoint,
            queue_endpoint,
            StorageAuth::Token(credential),
        )
    }

    /// Builds an account from explicit endpoints, with default HTTP and retry settings.
    pub fn new(
        table_endpoint: Url,
        queue_endpoint: Url,
        auth: StorageAuth,
    ) -> Result<Self, StorageError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| {
                StorageError::Transport(format!("failed to build the HTTP client: {error}"))
            })?;
        Ok(Self {
            table_endpoint,
            queue_endpoint,
            pipeline: Arc::new(Pipeline {
                http,
                authorizer: Authorizer::new(auth),
                retry: RetryOptions::default(),
            }),
        })
    }

    /// Returns a copy that uses `retry` for transient failures. The copy has its own token cache.
    pub fn with_retry(&self, retry: RetryOptions) -> Self {
        self.rebuild(self.pipeline.http.clone(), retry)
    }

    /// Returns a copy that sends requests through `http`, for example a client that trusts an extra
    /// root certificate. The copy has its own token cache.
    pub fn with_http_client(&self, http: reqwest::Client) -> Self {
        self.rebuild(http, self.pipeline.retry.clone())
    }

    fn rebuild(&self, http: reqwest::Client, retry: RetryOptions) -> Self {
        Self {
            table_endpoint: self.table_endpoint.clone(),
            queue_endpoint: self.queue_endpoint.clone(),
            pipeline: Arc::new(Pipeline {
                http,
                authorizer: Authorizer::new(self.pipeline.authorizer.auth().clone()),
                retry,
            }),
        }
    }

    /// Returns a client for the table `name`. The name is checked when a request is made.
    pub fn table(&self, name: &str) -> TableClient {
        TableClient::new(self.clone(), name)
    }

    /// Returns a client for the queue `name`. The name is checked when a request is made.
    pub fn queue(&self, name: &str) -> QueueClient {
        QueueClient::new(self.clone(), name)
    }

    pub(crate) fn table_endpoint(&self) -> &Url {
        &self.table_endpoint
    }

    pub(crate) fn queue_endpoint(&self) -> &Url {
        &self.queue_endpoint
    }

    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl fmt::Debug for StorageAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageAccount")
            .field("table_endpoint", &self.table_endpoint.as_str())
            .field("queue_endpoint", &self.queue_endpoint.as_str())
            .field("auth", self.pipeline.authorizer.auth())
            .finish()
    }
}

/// Storage account names are 3 to 24 lowercase letters and digits.
fn validate_account_name(name: &str) -> Result<(), StorageError> {
    let valid = (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(StorageError::InvalidInput(format!(
            "storage account name {name:?} is invalid: use 3 to 24 lowercase letters and digits"
        )))
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests;
