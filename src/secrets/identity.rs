//! The Microsoft Entra ID credential that every Azure call of the service uses: Key Vault reads
//! and, with identity-based storage, Table and Queue Storage.
//!
//! azure_identity 1.x has no `DefaultAzureCredential`, so the kind is chosen by a setting:
//! managed identity on Azure (system-assigned, or user-assigned by client id), workload identity
//! on Kubernetes, or the developer's Azure CLI login on a laptop.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_core::time::Duration;
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};

use super::http::ReqwestTransport;

/// Which azure_identity credential the service uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CredentialKind {
    /// `ManagedIdentityCredential`: the App Service and Functions identity endpoint
    /// (`IDENTITY_ENDPOINT`) when the platform sets it, otherwise the VM instance metadata service.
    #[default]
    ManagedIdentity,
    /// `WorkloadIdentityCredential`: Kubernetes workload identity through `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity,
    /// `AzureCliCredential`: the signed-in Azure CLI user, for local runs.
    AzureCli,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ManagedIdentity => "managedidentity",
            CredentialKind::WorkloadIdentity => "workloadidentity",
            CredentialKind::AzureCli => "azurecli",
        }
    }
}

impl FromStr for CredentialKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "managedidentity" => Ok(CredentialKind::ManagedIdentity),
            "workloadidentity" => Ok(CredentialKind::WorkloadIdentity),
            "azurecli" => Ok(CredentialKind::AzureCli),
            _ => Err("expected managedidentity, workloadidentity or azurecli".to_string()),
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to build the credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityOptions {
    pub kind: CredentialKind,
    /// Client id of a user-assigned managed identity; `None` selects the system-assigned identity.
    /// Workload identity uses it in place of `AZURE_CLIENT_ID` when set.
    pub client_id: Option<String>,
}

/// A credential that could not be built from the settings.
#[derive(Debug, thiserror::Error)]
#[error("the {kind} credential could not be created: {reason}")]
pub struct IdentityError {
    pub kind: CredentialKind,
    pub reason: String,
}

/// SDK client options that send through the service's reqwest client and retry a few times, so
/// an unreachable endpoint fails within seconds instead of the SDK's default minute.
pub fn client_options(transport: Option<Transport>) -> Result<ClientOptions, String> {
    let transport = match transport {
        Some(transport) => transport,
        None => ReqwestTransport::with_defaults()
            .map_err(|e| format!("building the HTTP client failed: {e}"))?
            .into_transport(),
    };
    Ok(ClientOptions {
        transport: Some(transport),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: Duration::milliseconds(200),
            max_retries: 3,
            max_total_elapsed: Duration::seconds(20),
            max_delay: Duration::seconds(5),
        }),
        ..ClientOptions::default()
    })
}

/// Builds the credential. Nothing is requested from the network here; the first token request
/// happens when a Key Vault or storage call needs one.
pub fn build_credential(
    options: &IdentityOptions,
) -> Result<Arc<dyn TokenCredential>, IdentityError> {
    let failed = |reason: String| IdentityError {
        kind: options.kind,
        reason,
    };
    match options.kind {
        CredentialKind::ManagedIdentity => {
            let credential =
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: options.client_id.clone().map(UserAssignedId::ClientId),
                    client_options: client_options(None).map_err(failed)?,
                }))
                .map_err(|e| failed(e.to_string()))?;
            Ok(credential)
        }
        CredentialKind::WorkloadIdentity => {
            let credential =
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(None).map_err(failed)?,
                    },
                    client_id: options.client_id.clone(),
                    ..WorkloadIdentityCredentialOptions::default()
                }))
                .map_err(|e| failed(e.to_string()))?;
            Ok(credential)
        }
        CredentialKind::AzureCli => {
            let credential = AzureCliCredential::new(None).map_err(|e| failed(e.to_string()))?;
            Ok(credential)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_case_insensitively() {
        assert_eq!(
            "ManagedIdentity".parse::<CredentialKind>(),
            Ok(CredentialKind::ManagedIdentity)
        );
        assert_eq!(
            "workloadidentity".parse::<CredentialKind>(),
            Ok(CredentialKind::WorkloadIdentity)
        );
        assert_eq!(
            " azurecli ".parse::<CredentialKind>(),
            Ok(CredentialKind::AzureCli)
        );
        assert!("default".parse::<CredentialKind>().is_err());
    }

    #[test]
    fn workload_identity_without_environment_fails_clearly() {
        // No tenant id, token file or client id is configured in the test environment, so the
        // constructor fails before any request.
        if std::env::var_os("AZURE_TENANT_ID").is_some() {
            return;
        }
        let error = build_credential(&IdentityOptions {
            kind: CredentialKind::WorkloadIdentity,
            client_id: None,
        })
        .expect_err("workload identity needs AZURE_TENANT_ID");
        assert_eq!(error.kind, CredentialKind::WorkloadIdentity);
        assert!(error.to_string().contains("workloadidentity"), "{error}");
    }
}
