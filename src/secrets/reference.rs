use serde::Serialize;

use super::Redacted;

/// The location of a job's connection string. Requests carry only this reference, never the
/// value. `Deserialize` is written by hand in `reference_de` so that a wrong shape gets an error
/// that names the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CredentialRef {
    /// An app setting (or environment variable) that contains the connection string.
    Setting { setting: String },
    /// A Key Vault secret that contains the connection string.
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
    #[error(
        "setting {0} belongs to the service or its host, so a job cannot read it; put the \
         connection string in an app setting of its own and name that one"
    )]
    ReservedSetting(String),
    #[error(
        "invalid setting name {0}: name an app setting with 1 to 256 letters, digits, '_', '.' or \
         '-', and put the connection string in that setting"
    )]
    InvalidSettingName(String),
    #[error("invalid Key Vault URI {uri}: {reason}")]
    InvalidVaultUri { uri: String, reason: String },
    #[error("invalid Key Vault secret {field} {value}: {reason}")]
    InvalidSecretName {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("reading Key Vault secret {secret_name:?} from {vault_uri} failed: {reason}")]
    KeyVault {
        vault_uri: String,
        secret_name: String,
        reason: String,
    },
}

/// Prefixes of the settings that the service, the Functions host, App Service and the Azure
/// identity libraries read. They hold the service's own secrets (its storage account, its API
/// key, its signing key, a client secret), so a job may not name them.
const RESERVED_SETTING_PREFIXES: &[&str] = &[
    "vcm_",
    "azurewebjobs",
    "functions_",
    "website_",
    "appsetting_",
    "applicationinsights_",
    "identity_",
    "msi_",
    "azure_",
];

/// Returns true for a setting of the service or its host, compared without case as Windows
/// compares environment variables.
fn is_reserved_setting(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED_SETTING_PREFIXES
        .iter()
        .any(|prefix| lower.starts_with(prefix))
}

/// Longest rejected value an error repeats, in characters.
const SHOWN_CHARS: usize = 80;

/// Formats a rejected reference value for an error message: quoted and cut short, or withheld
/// when it looks like it carries a credential, as a connection string pasted into the wrong field
/// does.
fn shown(value: &str) -> String {
    if carries_credential(value) {
        return "(value not shown: it looks like a connection string or carries a password)".into();
    }
    let mut cut: String = value.chars().take(SHOWN_CHARS).collect();
    if cut.len() < value.len() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

/// Returns true for text with an '@' (user info, with or without a scheme, which no valid
/// reference contains) or with the key words of connection strings.
fn carries_credential(value: &str) -> bool {
    value.contains('@') || super::redact_connection_string(value) != value
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
                if !valid {
                    return Err(ResolveError::InvalidSettingName(shown(setting)));
                }
                if is_reserved_setting(setting) {
                    return Err(ResolveError::ReservedSetting(setting.clone()));
                }
                Ok(())
            }
            CredentialRef::KeyVault {
                vault_uri,
                secret_name,
                secret_version,
            } => {
                check_vault_uri(vault_uri)?;
                check_secret_name(secret_name)?;
                if let Some(version) = secret_version {
                    check_secret_version(version)?;
                }
                Ok(())
            }
        }
    }

    /// Reads the connection string a setting reference points to, through `lookup`; Key Vault
    /// references are read by [`super::SecretResolver`].
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
                Err(ResolveError::KeyVault {
                    vault_uri: vault_uri.clone(),
                    secret_name: secret_name.clone(),
                    reason: "a Key Vault reference is read through the secret resolver, not as a \
                             setting"
                        .into(),
                })
            }
        }
    }
}

/// Parses a vault URI and accepts it only if it is `https` with a Key Vault host of an Azure
/// cloud: `<vault-name><suffix>` where the name follows the Key Vault naming rules, with no user
/// info, no port other than 443, no IP literal, no trailing dot, and no path, query or fragment.
///
/// Hosts are compared after the URL parser's IDNA processing, so a look-alike written with
/// non-ASCII letters becomes an `xn--` label and fails the suffix or the vault-name check.
pub fn check_vault_uri(uri: &str) -> Result<url::Url, ResolveError> {
    let invalid = |reason: &str| ResolveError::InvalidVaultUri {
        uri: shown(uri),
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
    if host.ends_with('.') {
        return Err(invalid("remove the trailing dot from the host"));
    }
    let vault_name = KEY_VAULT_HOST_SUFFIXES
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix));
    let Some(vault_name) = vault_name else {
        return Err(invalid(
            "the host must be <vault-name> followed by a Key Vault suffix such as .vault.azure.net",
        ));
    };
    if !is_vault_name(vault_name) {
        return Err(invalid(
            "the vault name must be 3 to 24 letters, digits and single hyphens, starting with a \
             letter and ending with a letter or digit",
        ));
    }
    if parsed.path() != "/" {
        return Err(invalid(
            "a path is not allowed; use https://<vault-name>.vault.azure.net/",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(parsed)
}

/// Key Vault and Managed HSM names: 3 to 24 characters, ASCII letters, digits and hyphens,
/// starting with a letter, not ending with a hyphen, and without consecutive hyphens.
fn is_vault_name(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Secret names are 1 to 127 ASCII letters, digits and hyphens. The SDK puts the name into the
/// request path without encoding it, so anything else is rejected here.
pub fn check_secret_name(name: &str) -> Result<(), ResolveError> {
    let valid = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ResolveError::InvalidSecretName {
            field: "secretName",
            value: shown(name),
            reason: "use 1 to 127 letters, digits and hyphens",
        })
    }
}

/// Secret versions are the 32 hexadecimal characters the vault assigns; up to 64 letters and
/// digits are accepted.
pub fn check_secret_version(version: &str) -> Result<(), ResolveError> {
    let valid =
        (1..=64).contains(&version.len()) && version.chars().all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(ResolveError::InvalidSecretName {
            field: "secretVersion",
            value: shown(version),
            reason: "use the version id the vault shows, letters and digits only",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_settings_cannot_be_referenced() {
        for name in [
            "AzureWebJobsStorage",
            "AzureWebJobsStorage__accountName",
            "VCM_API_KEY",
            "vcm_callback_signing_key",
            "AZURE_CLIENT_SECRET",
            "IDENTITY_HEADER",
        ] {
            let error = CredentialRef::Setting {
                setting: name.into(),
            }
            .validate()
            .unwrap_err();
            assert!(matches!(error, ResolveError::ReservedSetting(_)), "{name}");
            assert!(error.to_string().contains("of its own"), "{error}");
        }
        let own = CredentialRef::Setting {
            setting: "SOURCE_URI".into(),
        };
        assert!(own.validate().is_ok());
    }

    #[test]
    fn rejected_values_with_credentials_are_not_repeated() {
        let errors = [
            CredentialRef::Setting {
                setting: "mongodb://app:hunter2@db.example:10255/?ssl=true".into(),
            }
            .validate()
            .unwrap_err(),
            check_vault_uri("https://app:hunter2@myvault.vault.azure.net/").unwrap_err(),
            check_secret_name("AccountEndpoint=x;AccountKey=hunter2").unwrap_err(),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("value not shown"), "{text}");
        }
        let text = check_secret_name(&"x".repeat(200)).unwrap_err().to_string();
        assert!(
            text.contains(&format!("\"{}...\"", "x".repeat(80))),
            "{text}"
        );
        let text = check_vault_uri("http://myvault.vault.azure.net/")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("\"http://myvault.vault.azure.net/\""),
            "{text}"
        );
    }

    #[test]
    fn vault_uris_of_each_cloud_accepted() {
        for uri in [
            "https://myvault.vault.azure.net/",
            "https://myvault.vault.azure.net",
            "https://MyVault.Vault.Azure.Net/",
            "https://vault1.vault.azure.cn/",
            "https://vault1.vault.usgovcloudapi.net/",
            "https://vault1.vault.microsoftazure.de/",
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
    fn lookalike_and_encoded_vault_uris_rejected() {
        for uri in [
            // Cyrillic letters in the suffix and in the vault name become xn-- labels.
            "https://myvault.v\u{0430}ult.azure.net/",
            "https://m\u{0443}vault.vault.azure.net/",
            "https://xn--mvault-3ve.vault.azure.net/",
            // Full-width dot and letters are mapped by IDNA; the result must still be checked.
            "https://evil\u{FF0E}example\u{FF0E}com/",
            // Trailing dots, encoded separators and backslashes.
            "https://myvault.vault.azure.net./",
            "https://myvault.vault.azure.net../",
            "https://evil.example%2F.vault.azure.net/",
            "https://evil.example%23.vault.azure.net/",
            "https://myvault.vault.azure.net%00.evil.example/",
            "https://myvault.vault.azure.net\\@evil.example/",
            "https://myvault.vault.azure.net/secrets/x",
            "https://myvault.vault.azure.net#@evil.example/",
            // IP literals in other notations.
            "https://2130706433/",
            "https://0x7f.0.0.1/",
            "https://127.1/",
            "https://[::ffff:169.254.169.254]/",
            // Vault names outside the naming rules.
            "https://ab.vault.azure.net/",
            "https://1vault.vault.azure.net/",
            "https://my--vault.vault.azure.net/",
            "https://myvault-.vault.azure.net/",
            "https://averyveryverylongvaultname1.vault.azure.net/",
            "https://my_vault.vault.azure.net/",
            // Suffixes of clouds that are not in the list, and schemes that look alike.
            "https://myvault.vault.azure.com/",
            "https://myvault.vault.azure.net.cn/",
            "HTTP://myvault.vault.azure.net/",
        ] {
            assert!(check_vault_uri(uri).is_err(), "{uri} should be rejected");
        }
    }

    #[test]
    fn encoded_but_equal_host_accepted() {
        // Percent-encoded dots decode to the same host, so the token still goes to the vault.
        let parsed = check_vault_uri("https://myvault%2Evault.azure.net/").unwrap();
        assert_eq!(parsed.host_str(), Some("myvault.vault.azure.net"));
        // A missing slash after the scheme parses to the same https host as well.
        let parsed = check_vault_uri("https:/myvault.vault.azure.net/").unwrap();
        assert_eq!(parsed.host_str(), Some("myvault.vault.azure.net"));
    }

    #[test]
    fn secret_names_and_versions_checked() {
        assert!(check_secret_name("source-uri-1").is_ok());
        for name in [
            "",
            "a/b",
            "../keys/k",
            "a?b",
            "a#b",
            "a b",
            "é",
            &"x".repeat(128),
        ] {
            assert!(
                check_secret_name(name).is_err(),
                "{name:?} should be rejected"
            );
        }
        assert!(check_secret_version("0123456789abcdef0123456789abcdef").is_ok());
        for version in ["", "v/1", "..", "a-b", &"0".repeat(65)] {
            assert!(
                check_secret_version(version).is_err(),
                "{version:?} should be rejected"
            );
        }
    }

    #[test]
    fn vault_reference_validates_secret_name() {
        let reference = CredentialRef::KeyVault {
            vault_uri: "https://myvault.vault.azure.net/".into(),
            secret_name: "../keys/signing".into(),
            secret_version: None,
        };
        let error = reference.validate().unwrap_err();
        assert!(error.to_string().contains("secretName"), "{error}");
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
