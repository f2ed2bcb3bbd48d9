use serde::{Deserialize, Serialize};

use super::Redacted;

/// Where a job's connection string lives. Requests carry only this reference, never the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CredentialRef {
    /// An app setting (or environment variable) that holds the connection string.
    Setting { setting: String },
    /// A Key Vault secret that holds the connection string.
    KeyVault {
        #[serde(rename = "vaultUri")]
        vault_uri: String,
        #[serde(rename = "secretName")]
        secret_name: String,
        #[serde(
            rename = "secretVersion",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        secret_version: Option<String>,
    },
}

/// A credential reference that could not be turned into a connection string.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "app setting {0} is not set; set it to the connection string, or reference another setting"
    )]
    SettingMissing(String),
    #[error("invalid Key Vault URI {uri:?}: {reason}")]
    InvalidVaultUri { uri: String, reason: String },
    #[error("reading Key Vault secret {secret_name:?} from {vault_uri} failed: {reason}")]
    KeyVault {
        vault_uri: String,
        secret_name: String,
        reason: String,
    },
}

/// Key Vault host suffixes of the Azure clouds: public, China, US Government, the retired
/// Germany cloud, and Managed HSM.
pub const KEY_VAULT_HOST_SUFFIXES: &[&str] = &[
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
    ".managedhsm.azure.net",
];

impl CredentialRef {
    /// Checks the reference's shape without reading anything: setting names are plausible and
    /// vault URIs point at an Azure Key Vault host.
    pub fn validate(&self) -> Result<(), ResolveError> {
        match self {
            CredentialRef::Setting { setting } => {
                let valid = !setting.is_empty()
                    && setting.len() <= 256
                    && setting
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
                if valid {
                    Ok(())
                } else {
                    Err(ResolveError::SettingMissing(setting.clone()))
                }
            }
            CredentialRef::KeyVault { vault_uri, .. } => check_vault_uri(vault_uri).map(|_| ()),
        }
    }

    /// Reads the connection string the reference points to, through `lookup` for settings.
    pub fn resolve_setting(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Redacted<String>, ResolveError> {
        match self {
            CredentialRef::Setting { setting } => lookup(setting)
                .filter(|v| !v.trim().is_empty())
                .map(Redacted::new)
                .ok_or_else(|| ResolveError::SettingMissing(setting.clone())),
            CredentialRef::KeyVault {
                vault_uri,
                secret_name,
                ..
            } => {
                check_vault_uri(vault_uri)?;
                // TODO: read the secret with a managed identity through the Key Vault client; until
                // then a vault reference fails here, before any token is requested.
                Err(ResolveError::KeyVault {
                    vault_uri: vault_uri.clone(),
                    secret_name: secret_name.clone(),
                    reason: "Key Vault references are not supported by this build; use a setting \
                             reference"
                        .into(),
                })
            }
        }
    }
}

/// Parses a vault URI and accepts it only if it is `https` with a Key Vault host of an Azure
/// cloud, no user info, no explicit port other than 443, and no IP literal.
pub fn check_vault_uri(uri: &str) -> Result<url::Url, ResolveError> {
    let invalid = |reason: &str| ResolveError::InvalidVaultUri {
        uri: uri.to_string(),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(uri).map_err(|e| invalid(&format!("not a URI ({e})")))?;
    if parsed.scheme() != "https" {
        return Err(invalid("the scheme must be https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("user info is not allowed"));
    }
    if parsed.port().is_some_and(|p| p != 443) {
        return Err(invalid("only the default https port is allowed"));
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(_) => return Err(invalid("an IP address is not a Key Vault host")),
        None => return Err(invalid("the URI has no host")),
    };
    let host = host.trim_end_matches('.');
    let allowed = KEY_VAULT_HOST_SUFFIXES.iter().any(|suffix| {
        host.len() > suffix.len()
            && host.ends_with(suffix)
            && !host[..host.len() - suffix.len()].contains('.')
    });
    if !allowed {
        return Err(invalid(
            "the host must be <vault-name> followed by a Key Vault suffix such as .vault.azure.net",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_uris_of_each_cloud_accepted() {
        for uri in [
            "https://myvault.vault.azure.net/",
            "https://myvault.vault.azure.net",
            "https://MyVault.Vault.Azure.Net/",
            "https://v1.vault.azure.cn/",
            "https://v1.vault.usgovcloudapi.net/",
            "https://v1.vault.microsoftazure.de/",
            "https://hsm1.managedhsm.azure.net/",
            "https://myvault.vault.azure.net:443/",
        ] {
            assert!(check_vault_uri(uri).is_ok(), "{uri} should be accepted");
        }
    }

    #[test]
    fn hostile_vault_uris_rejected() {
        for uri in [
            "http://myvault.vault.azure.net/",
            "https://evil.example/",
            "https://myvault.vault.azure.net.evil.example/",
            "https://evilvault.azure.net/",
            "https://vault.azure.net/",
            "https://a.b.vault.azure.net/",
            "https://myvault.vault.azure.net@evil.example/",
            "https://user:pw@myvault.vault.azure.net/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://169.254.169.254/",
            "https://myvault.vault.azure.net:8443/",
            "https://myvault.vault.azure.net/?x=1",
            "https://myvaultvault.azure.net/",
            "ftp://myvault.vault.azure.net/",
            "myvault.vault.azure.net",
            "",
        ] {
            assert!(check_vault_uri(uri).is_err(), "{uri} should be rejected");
        }
    }

    #[test]
    fn setting_reference_resolves() {
        let reference = CredentialRef::Setting {
            setting: "SOURCE_URI".into(),
        };
        let value = reference
            .resolve_setting(|n| (n == "SOURCE_URI").then(|| "mongodb://x".to_string()))
            .unwrap();
        assert_eq!(value.expose(), "mongodb://x");
    }

    #[test]
    fn missing_setting_names_it() {
        let reference = CredentialRef::Setting {
            setting: "NOPE".into(),
        };
        let err = reference.resolve_setting(|_| None).unwrap_err();
        assert!(err.to_string().contains("NOPE"));
    }

    #[test]
    fn reference_parses_both_shapes() {
        let a: CredentialRef = serde_json::from_str(r#"{"setting":"X"}"#).unwrap();
        assert!(matches!(a, CredentialRef::Setting { .. }));
        let b: CredentialRef =
            serde_json::from_str(r#"{"vaultUri":"https://v.vault.azure.net/","secretName":"s"}"#)
                .unwrap();
        assert!(matches!(b, CredentialRef::KeyVault { .. }));
    }
}
