//! Starting the service: building the engine from settings, and the two server modes.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use super::engine::Engine;
use super::standalone::spawn_workers;
use crate::api::{router, Mount};
use crate::config::{Settings, StorageSettings};
use crate::mongo::ClientCache;
use crate::secrets::{build_credential, CredentialSource, IdentityOptions, SecretResolver};
use crate::storage::StorageAccount;
use azure_core::credentials::TokenCredential;

/// Builds the engine for `settings` and creates its tables and queues.
///
/// With identity-based storage, one managed identity credential serves Table Storage, Queue
/// Storage and Key Vault, so its tokens are cached once.
pub async fn build_engine(settings: Settings) -> anyhow::Result<Engine> {
    let (account, credential) = match &settings.storage {
        StorageSettings::ConnectionString(cs) => {
            let account = StorageAccount::from_connection_string(cs.expose())
                .map_err(|e| anyhow::anyhow!("{}: {e}", crate::config::STORAGE_CONNECTION))?;
            (account, None)
        }
        StorageSettings::Identity {
            account_name,
            table_uri,
            queue_uri,
            client_id,
        } => {
            let credential = storage_credential(&settings, client_id.clone())?;
            let parse = |name: &str, value: &Option<String>| {
                value
                    .as_deref()
                    .map(url::Url::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{name} is not a URL: {e}"))
            };
            let account = StorageAccount::with_token(
                account_name.as_deref(),
                parse(crate::config::STORAGE_TABLE_URI, table_uri)?,
                parse(crate::config::STORAGE_QUEUE_URI, queue_uri)?,
                credential.clone(),
            )
            .map_err(|e| anyhow::anyhow!("identity-based storage: {e}"))?;
            info!(
                credential = %settings.azure_credential,
                user_assigned = client_id.is_some() || settings.managed_identity_client_id.is_some(),
                "storage uses Microsoft Entra ID tokens"
            );
            (account, Some(credential))
        }
    };
    let secrets = match credential {
        // Key Vault shares the storage credential when both use the same identity.
        Some(credential)
            if settings.identity_options().client_id == storage_client_id(&settings) =>
        {
            SecretResolver::with_credential(&settings, CredentialSource::Fixed(credential))
        }
        _ => SecretResolver::from_settings(&settings),
    };
    let mut engine = Engine::new(Arc::new(settings), account);
    engine.clients = ClientCache::new(secrets);
    engine
        .ensure_storage()
        .await
        .map_err(|e| anyhow::anyhow!("preparing tables and queues failed: {e}"))?;
    Ok(engine)
}

/// The client id that identity-based storage uses: `AzureWebJobsStorage__clientId`, else the
/// service's `VCM_MANAGED_IDENTITY_CLIENT_ID`, else none for the system-assigned identity.
fn storage_client_id(settings: &Settings) -> Option<String> {
    match &settings.storage {
        StorageSettings::Identity { client_id, .. } => client_id
            .clone()
            .or_else(|| settings.managed_identity_client_id.clone()),
        StorageSettings::ConnectionString(_) => None,
    }
}

fn storage_credential(
    settings: &Settings,
    client_id: Option<String>,
) -> anyhow::Result<Arc<dyn TokenCredential>> {
    let options = IdentityOptions {
        kind: settings.azure_credential,
        client_id: client_id.or_else(|| settings.managed_identity_client_id.clone()),
    };
    build_credential(&options).map_err(|e| anyhow::anyhow!("identity-based storage: {e}"))
}

/// Runs as an Azure Functions custom handler on `127.0.0.1:port` until `shutdown` resolves.
pub async fn serve_functions(
    engine: Engine,
    port: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    info!(address = %listener.local_addr()?, "custom handler listening");
    axum::serve(listener, router(engine, Mount::FunctionsHost))
        .with_graceful_shutdown(shutdown)
        .await?;
    info!("custom handler stopped");
    Ok(())
}

/// Checks that standalone mode is protected: an API key, or an explicit opt-out on loopback.
pub fn check_standalone_access(settings: &Settings, addr: SocketAddr) -> anyhow::Result<()> {
    if settings.api_key.is_some() {
        return Ok(());
    }
    if !settings.api_key_disabled {
        anyhow::bail!(
            "standalone mode needs an API key: set {} (clients send it in x-api-key), or set {}=true \
             to run without one on a loopback address",
            crate::config::API_KEY,
            crate::config::API_KEY_DISABLED
        );
    }
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "{}=true is allowed only on a loopback address, but {} is {addr}; set {}",
            crate::config::API_KEY_DISABLED,
            crate::config::LISTEN_ADDR,
            crate::config::API_KEY
        );
    }
    Ok(())
}

/// How long a shutdown waits for running tasks before it stops them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// A running standalone service.
pub struct Standalone {
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Standalone {
    /// Binds `listener` and starts the API, the queue consumers and the scheduler.
    pub async fn start(engine: Engine, listener: TcpListener) -> anyhow::Result<Standalone> {
        let address = listener.local_addr()?;
        check_standalone_access(&engine.settings, address)?;
        let (stop, stopped) = watch::channel(false);
        let workers = spawn_workers(engine.clone(), stopped.clone());
        let app = router(engine, Mount::Standalone);
        let mut server_stop = stopped;
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "API server failed");
            }
        });
        info!(address = %address, "standalone service listening");
        Ok(Standalone {
            address,
            stop,
            server,
            workers,
        })
    }

    /// Stops accepting work and waits for consumers to finish their current task, for at most
    /// [`SHUTDOWN_GRACE`]. Tasks still running then are aborted: their leases expire and the
    /// scheduler runs them again from their last checkpoint.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let aborts: Vec<_> = self.workers.iter().map(|w| w.abort_handle()).collect();
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            let _ = self.server.await;
            for worker in self.workers {
                let _ = worker.await;
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
                "tasks still running at shutdown were stopped; they resume from their checkpoints"
            );
            for abort in aborts {
                abort.abort();
            }
        }
        info!("standalone service stopped");
    }

    /// Stops at once without waiting for running tasks, as a killed process would.
    pub fn abort(self) {
        let _ = self.stop.send(true);
        self.server.abort();
        for worker in self.workers {
            worker.abort();
        }
    }
}
