//! Credential references and secret handling.
//!
//! A job names where its connection strings live: an app setting, or a Key Vault secret read
//! with the service's Microsoft Entra ID credential. Values are read only when a client or a
//! preflight check needs them, are carried in [`Redacted`], and never reach a log line, an API
//! response, a Table row or a queue message.
//!
//! Layout:
//! - `reference`: [`CredentialRef`], its shape checks and the vault host check.
//! - `reference_de`: reading a [`CredentialRef`] with errors that name the fix.
//! - `identity`: the azure_identity credential chosen by settings.
//! - `http`: the reqwest 0.12 transport for Azure SDK clients.
//! - `keyvault`: secret reads through azure_security_keyvault_secrets.
//! - `resolver`: [`SecretResolver`], the bounded cache in front of Key Vault.
//! - `redact`: [`Redacted`] and the scrubbing of connection strings from text.

mod http;
mod identity;
mod keyvault;
mod redact;
mod reference;
mod reference_de;
mod resolver;

pub use http::ReqwestTransport;
pub use identity::{build_credential, CredentialKind, IdentityError, IdentityOptions};
pub use keyvault::{CredentialSource, KeyVaultOptions, KeyVaultReader, SecretValue};
pub use redact::{redact_connection_string, scrub_secret, Redacted};
pub use reference::{
    check_secret_name, check_secret_version, check_vault_uri, CredentialRef, ResolveError,
    KEY_VAULT_HOST_SUFFIXES,
};
pub use resolver::{
    ResolvedSecret, ResolverOptions, SecretResolver, SettingLookup, DEFAULT_SECRET_CACHE_TTL,
};

/// Longest error detail kept from another system's message, in bytes.
const MAX_MESSAGE_BYTES: usize = 600;

/// Cuts `text` to [`MAX_MESSAGE_BYTES`] at a character boundary and marks the cut.
pub(crate) fn truncate_message(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}
