//! Settings the service reads from its environment (Functions app settings or a shell).
//!
//! Every name the code reads is a constant here and appears in [`ALL_SETTINGS`], so deployment
//! templates and `local.settings.example.json` can be checked against one list.

use std::net::SocketAddr;
use std::time::Duration;

pub const STORAGE_CONNECTION: &str = "AzureWebJobsStorage";
pub const STORAGE_ACCOUNT_NAME: &str = "AzureWebJobsStorage__accountName";
pub const STORAGE_TABLE_URI: &str = "AzureWebJobsStorage__tableServiceUri";
pub const STORAGE_QUEUE_URI: &str = "AzureWebJobsStorage__queueServiceUri";
pub const STORAGE_CREDENTIAL: &str = "AzureWebJobsStorage__credential";
pub const STORAGE_CLIENT_ID: &str = "AzureWebJobsStorage__clientId";
pub const HANDLER_PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
pub const MANAGED_IDENTITY_CLIENT_ID: &str = "VCM_MANAGED_IDENTITY_CLIENT_ID";
pub const API_KEY: &str = "VCM_API_KEY";
pub const API_KEY_DISABLED: &str = "VCM_API_KEY_DISABLED";
pub const LISTEN_ADDR: &str = "VCM_LISTEN_ADDR";
pub const STORAGE_PREFIX: &str = "VCM_STORAGE_PREFIX";
pub const TASK_TIME_BUDGET: &str = "VCM_TASK_TIME_BUDGET_SECONDS";
pub const LEASE: &str = "VCM_LEASE_SECONDS";
pub const WORKER_CONCURRENCY: &str = "VCM_WORKER_CONCURRENCY";
pub const SCHEDULER_INTERVAL: &str = "VCM_SCHEDULER_INTERVAL_SECONDS";
pub const OUTBOUND_IP: &str = "VCM_OUTBOUND_IP";
pub const EVENTS_QUEUE: &str = "VCM_EVENTS_QUEUE";
pub const LOG_FORMAT: &str = "VCM_LOG_FORMAT";
pub const AZURE_CREDENTIAL: &str = "VCM_AZURE_CREDENTIAL";
pub const SECRET_CACHE: &str = "VCM_SECRET_CACHE_SECONDS";
pub const PREFLIGHT_TIMEOUT: &str = "VCM_PREFLIGHT_TIMEOUT_SECONDS";
pub const CALLBACK_SIGNING_KEY: &str = "VCM_CALLBACK_SIGNING_KEY";
pub const CALLBACK_ALLOW_LOOPBACK: &str = "VCM_CALLBACK_ALLOW_LOOPBACK";

/// Every setting name the service reads.
pub const ALL_SETTINGS: &[&str] = &[
    STORAGE_CONNECTION,
    STORAGE_ACCOUNT_NAME,
    STORAGE_TABLE_URI,
    STORAGE_QUEUE_URI,
    STORAGE_CREDENTIAL,
    STORAGE_CLIENT_ID,
    HANDLER_PORT,
    MANAGED_IDENTITY_CLIENT_ID,
    API_KEY,
    API_KEY_DISABLED,
    LISTEN_ADDR,
    STORAGE_PREFIX,
    TASK_TIME_BUDGET,
    LEASE,
    WORKER_CONCURRENCY,
    SCHEDULER_INTERVAL,
    OUTBOUND_IP,
    EVENTS_QUEUE,
    LOG_FORMAT,
    AZURE_CREDENTIAL,
    SECRET_CACHE,
    PREFLIGHT_TIMEOUT,
    CALLBACK_SIGNING_KEY,
    CALLBACK_ALLOW_LOOPBACK,
];

/// A setting that is present but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}={value:?}: {reason}")]
pub struct SettingError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// Where the service keeps its tables and queues.
#[derive(Clone, Debug)]
pub enum StorageSettings {
    /// A storage connection string; the value is a secret and never printed.
    ConnectionString(crate::secrets::Redacted<String>),
    /// Microsoft Entra ID access with a managed identity, the way Functions configures
    /// identity-based connections.
    Identity {
        account_name: Option<String>,
        table_uri: Option<String>,
        queue_uri: Option<String>,
        client_id: Option<String>,
    },
}

/// Settings shared by `serve` and `standalone`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub storage: StorageSettings,
    /// Lowercase letters and digits that start every table and queue name.
    pub storage_prefix: String,
    pub api_key: Option<crate::secrets::Redacted<String>>,
    pub api_key_disabled: bool,
    pub listen_addr: SocketAddr,
    pub task_time_budget: Duration,
    pub lease: Duration,
    pub worker_concurrency: usize,
    pub scheduler_interval: Duration,
    pub outbound_ip: Option<String>,
    pub events_queue: Option<String>,
    /// HMAC-SHA256 key that signs callback bodies; jobs with a `callbackUrl` need it.
    pub callback_signing_key: Option<crate::secrets::Redacted<String>>,
    /// Lets callbacks reach loopback addresses over plain http; for tests on one machine only.
    pub callback_allow_loopback: bool,
    pub managed_identity_client_id: Option<String>,
    /// The Microsoft Entra ID credential for Key Vault and identity-based storage.
    pub azure_credential: crate::secrets::CredentialKind,
    /// How long a Key Vault secret is reused before it is read again.
    pub secret_cache_ttl: Duration,
    /// How long a preflight check waits for a server before it reports a timeout.
    pub preflight_timeout: Duration,
}

impl Settings {
    /// The credential options for Key Vault: the service's managed identity client id, or the
    /// storage connection's when only that one is set.
    pub fn identity_options(&self) -> crate::secrets::IdentityOptions {
        let storage_client_id = match &self.storage {
            StorageSettings::Identity { client_id, .. } => client_id.clone(),
            StorageSettings::ConnectionString(_) => None,
        };
        crate::secrets::IdentityOptions {
            kind: self.azure_credential,
            client_id: self
                .managed_identity_client_id
                .clone()
                .or(storage_client_id),
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, which returns a setting's value by name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let storage = match get(STORAGE_CONNECTION) {
            Some(cs) => StorageSettings::ConnectionString(crate::secrets::Redacted::new(cs)),
            None => {
                let account_name = get(STORAGE_ACCOUNT_NAME);
                let table_uri = get(STORAGE_TABLE_URI);
                let queue_uri = get(STORAGE_QUEUE_URI);
                if account_name.is_none() && (table_uri.is_none() || queue_uri.is_none()) {
                    return Err(SettingError {
                        name: STORAGE_CONNECTION,
                        value: String::new(),
                        reason: format!(
                            "no storage is configured: set {STORAGE_CONNECTION} to a connection string \
                             (for Azurite: UseDevelopmentStorage=true), or {STORAGE_ACCOUNT_NAME} for \
                             identity-based access"
                        ),
                    });
                }
                if let Some(credential) = get(STORAGE_CREDENTIAL) {
                    if !credential.eq_ignore_ascii_case("managedidentity") {
                        return Err(SettingError {
                            name: STORAGE_CREDENTIAL,
                            value: credential,
                            reason: "the only supported value is managedidentity".into(),
                        });
                    }
                }
                StorageSettings::Identity {
                    account_name,
                    table_uri,
                    queue_uri,
                    client_id: get(STORAGE_CLIENT_ID),
                }
            }
        };

        let storage_prefix = get(STORAGE_PREFIX).unwrap_or_else(|| "vcm".to_string());
        validate_prefix(&storage_prefix)?;

        let listen_addr = match get(LISTEN_ADDR) {
            Some(v) => v.parse().map_err(|e| SettingError {
                name: LISTEN_ADDR,
                value: v.clone(),
                reason: format!("expected an address such as 127.0.0.1:8080 ({e})"),
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };

        Ok(Settings {
            storage,
            storage_prefix,
            api_key: get(API_KEY).map(crate::secrets::Redacted::new),
            api_key_disabled: parse_bool(API_KEY_DISABLED, get(API_KEY_DISABLED))?.unwrap_or(false),
            listen_addr,
            task_time_budget: seconds(TASK_TIME_BUDGET, get(TASK_TIME_BUDGET), 60, 1, 3600)?,
            lease: seconds(LEASE, get(LEASE), 300, 2, 86_400)?,
            worker_concurrency: number(WORKER_CONCURRENCY, get(WORKER_CONCURRENCY), 4, 1, 256)?
                as usize,
            scheduler_interval: seconds(SCHEDULER_INTERVAL, get(SCHEDULER_INTERVAL), 5, 1, 3600)?,
            outbound_ip: get(OUTBOUND_IP),
            events_queue: get(EVENTS_QUEUE),
            callback_signing_key: get(CALLBACK_SIGNING_KEY).map(crate::secrets::Redacted::new),
            callback_allow_loopback: parse_bool(
                CALLBACK_ALLOW_LOOPBACK,
                get(CALLBACK_ALLOW_LOOPBACK),
            )?
            .unwrap_or(false),
            managed_identity_client_id: get(MANAGED_IDENTITY_CLIENT_ID),
            azure_credential: match get(AZURE_CREDENTIAL) {
                Some(value) => value.parse().map_err(|reason| SettingError {
                    name: AZURE_CREDENTIAL,
                    value,
                    reason,
                })?,
                None => crate::secrets::CredentialKind::default(),
            },
            secret_cache_ttl: seconds(SECRET_CACHE, get(SECRET_CACHE), 300, 0, 86_400)?,
            preflight_timeout: seconds(PREFLIGHT_TIMEOUT, get(PREFLIGHT_TIMEOUT), 15, 1, 300)?,
        })
    }
}

fn validate_prefix(prefix: &str) -> Result<(), SettingError> {
    let valid = (2..=20).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(SettingError {
            name: STORAGE_PREFIX,
            value: prefix.to_string(),
            reason: "use 2 to 20 lowercase letters and digits, starting with a letter, because it \
                     begins table and queue names"
                .into(),
        })
    }
}

fn parse_bool(name: &'static str, value: Option<String>) -> Result<Option<bool>, SettingError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(_) => Err(SettingError {
            name,
            value: value.unwrap_or_default(),
            reason: "expected true or false".into(),
        }),
    }
}

fn number(
    name: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, SettingError> {
    let Some(raw) = value else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(SettingError {
            name,
            value: raw,
            reason: format!("expected a whole number from {min} to {max}"),
        }),
    }
}

fn seconds(
    name: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, SettingError> {
    number(name, value, default, min, max).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_with_connection_string() {
        let s = settings(&[(STORAGE_CONNECTION, "UseDevelopmentStorage=true")]).unwrap();
        assert_eq!(s.storage_prefix, "vcm");
        assert_eq!(s.task_time_budget, Duration::from_secs(60));
        assert_eq!(s.listen_addr.to_string(), "127.0.0.1:8080");
        assert!(!s.api_key_disabled);
    }

    #[test]
    fn missing_storage_is_rejected() {
        let err = settings(&[]).unwrap_err();
        assert_eq!(err.name, STORAGE_CONNECTION);
        assert!(err.reason.contains("UseDevelopmentStorage=true"));
    }

    #[test]
    fn identity_storage_accepted() {
        let s = settings(&[
            (STORAGE_ACCOUNT_NAME, "acct"),
            (STORAGE_CREDENTIAL, "managedidentity"),
        ])
        .unwrap();
        assert!(matches!(s.storage, StorageSettings::Identity { .. }));
    }

    #[test]
    fn bad_prefix_is_rejected() {
        let err =
            settings(&[(STORAGE_CONNECTION, "x"), (STORAGE_PREFIX, "Bad-Prefix")]).unwrap_err();
        assert_eq!(err.name, STORAGE_PREFIX);
    }

    #[test]
    fn out_of_range_number_is_rejected() {
        let err = settings(&[(STORAGE_CONNECTION, "x"), (TASK_TIME_BUDGET, "0")]).unwrap_err();
        assert_eq!(err.name, TASK_TIME_BUDGET);
        assert!(err.reason.contains("from 1 to 3600"));
    }

    #[test]
    fn credential_kind_and_secret_cache_read() {
        let s = settings(&[
            (STORAGE_CONNECTION, "x"),
            (AZURE_CREDENTIAL, "AzureCli"),
            (SECRET_CACHE, "0"),
        ])
        .unwrap();
        assert_eq!(s.azure_credential, crate::secrets::CredentialKind::AzureCli);
        assert_eq!(s.secret_cache_ttl, Duration::ZERO);
        assert_eq!(s.preflight_timeout, Duration::from_secs(15));
        let err =
            settings(&[(STORAGE_CONNECTION, "x"), (AZURE_CREDENTIAL, "default")]).unwrap_err();
        assert_eq!(err.name, AZURE_CREDENTIAL);
    }

    #[test]
    fn identity_client_id_falls_back_to_storage() {
        let s = settings(&[(STORAGE_ACCOUNT_NAME, "acct"), (STORAGE_CLIENT_ID, "c1")]).unwrap();
        assert_eq!(s.identity_options().client_id.as_deref(), Some("c1"));
        let s = settings(&[
            (STORAGE_ACCOUNT_NAME, "acct"),
            (STORAGE_CLIENT_ID, "c1"),
            (MANAGED_IDENTITY_CLIENT_ID, "c2"),
        ])
        .unwrap();
        assert_eq!(s.identity_options().client_id.as_deref(), Some("c2"));
    }

    #[test]
    fn connection_string_not_in_debug() {
        let s = settings(&[(STORAGE_CONNECTION, "AccountKey=topsecret")]).unwrap();
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
