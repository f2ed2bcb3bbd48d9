//! Turning credential references into connection strings, with a bounded cache for Key Vault
//! secrets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracing::{debug, info};

use super::keyvault::{CredentialSource, KeyVaultOptions, KeyVaultReader};
use super::{CredentialRef, Redacted, ResolveError};

/// How long a Key Vault secret is used before it is read again, unless a setting says otherwise.
pub const DEFAULT_SECRET_CACHE_TTL: Duration = Duration::from_secs(300);

/// Reads the value of an app setting or environment variable by name.
pub type SettingLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Options for [`SecretResolver`].
#[derive(Clone)]
pub struct ResolverOptions {
    /// How long a Key Vault secret is reused; zero reads the vault on every resolve.
    pub cache_ttl: Duration,
    pub key_vault: KeyVaultOptions,
    /// Where setting references are read; the process environment unless a test says otherwise.
    pub settings: SettingLookup,
}

/// A resolved connection string and a digest that tells whether it changed, so callers can
/// compare values without keeping or comparing the secret itself.
#[derive(Clone, Debug)]
pub struct ResolvedSecret {
    pub value: Redacted<String>,
    pub digest: [u8; 32],
}

impl ResolvedSecret {
    fn new(value: Redacted<String>) -> Self {
        let digest = Sha256::digest(value.expose().as_bytes()).into();
        ResolvedSecret { value, digest }
    }
}

struct CachedSecret {
    secret: ResolvedSecret,
    read_at: Instant,
}

/// Resolves credential references. Settings are read on every call because they are cheap and
/// the platform restarts the app when they change; Key Vault secrets are cached for
/// [`ResolverOptions::cache_ttl`] and dropped by [`SecretResolver::invalidate`].
///
/// Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct SecretResolver {
    inner: Arc<Inner>,
}

struct Inner {
    cache_ttl: Duration,
    settings: SettingLookup,
    vault: KeyVaultReader,
    cache: Mutex<HashMap<String, CachedSecret>>,
}

impl SecretResolver {
    pub fn new(options: ResolverOptions) -> Self {
        SecretResolver {
            inner: Arc::new(Inner {
                cache_ttl: options.cache_ttl,
                settings: options.settings,
                vault: KeyVaultReader::new(options.key_vault),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Returns the connection string `reference` points to.
    pub async fn resolve(&self, reference: &CredentialRef) -> Result<ResolvedSecret, ResolveError> {
        let (vault_uri, secret_name, secret_version) = match reference {
            CredentialRef::Setting { .. } => {
                let value = reference.resolve_setting(|name| (self.inner.settings)(name))?;
                return Ok(ResolvedSecret::new(value));
            }
            CredentialRef::KeyVault {
                vault_uri,
                secret_name,
                secret_version,
            } => (vault_uri, secret_name, secret_version.as_deref()),
        };

        let key = cache_key(reference);
        // The lock is held across the vault read so that tasks resolving the same expired
        // secret at once cause one read, not one each.
        let mut cache = self.inner.cache.lock().await;
        if let Some(cached) = cache.get(&key) {
            if cached.read_at.elapsed() < self.inner.cache_ttl {
                return Ok(cached.secret.clone());
            }
        }
        let read = self
            .inner
            .vault
            .read(vault_uri, secret_name, secret_version)
            .await?;
        let secret = ResolvedSecret::new(read.value);
        let changed = cache
            .get(&key)
            .is_some_and(|old| old.secret.digest != secret.digest);
        if changed {
            info!(vault_uri = %vault_uri, secret_name = %secret_name, version = read.version.as_deref().unwrap_or(""), "Key Vault secret changed since the last read");
        } else {
            debug!(vault_uri = %vault_uri, secret_name = %secret_name, version = read.version.as_deref().unwrap_or(""), "Key Vault secret read");
        }
        cache.insert(
            key,
            CachedSecret {
                secret: secret.clone(),
                read_at: Instant::now(),
            },
        );
        Ok(secret)
    }

    /// Drops the cached value of `reference`, so the next resolve reads the vault again. Called
    /// after an authentication failure, because the secret may have been rotated.
    pub async fn invalidate(&self, reference: &CredentialRef) {
        if matches!(reference, CredentialRef::KeyVault { .. }) {
            self.inner.cache.lock().await.remove(&cache_key(reference));
        }
    }
}

/// The reference in canonical JSON; it holds names only, never a value.
pub(crate) fn cache_key(reference: &CredentialRef) -> String {
    serde_json::to_string(reference).unwrap_or_default()
}

impl SecretResolver {
    /// A resolver for the service: the process environment for settings, and Key Vault through
    /// the credential the settings choose, built on first use.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self::with_credential(
            settings,
            CredentialSource::Identity(settings.identity_options()),
        )
    }

    /// Like [`SecretResolver::from_settings`], with the Key Vault credential given.
    pub fn with_credential(
        settings: &crate::config::Settings,
        credential: CredentialSource,
    ) -> Self {
        SecretResolver::new(ResolverOptions {
            cache_ttl: settings.secret_cache_ttl,
            key_vault: KeyVaultOptions {
                credential,
                transport: None,
            },
            settings: Arc::new(|name| std::env::var(name).ok()),
        })
    }
}
