//! Credential references and secret handling.
//!
//! A job names where its connection strings live (an app setting now, a Key Vault secret later);
//! the values are read only when a task needs a client and are carried in [`Redacted`] so they
//! never reach a log line, an API response or a Table row.

mod redact;
mod reference;

pub use redact::{redact_connection_string, Redacted};
pub use reference::{CredentialRef, ResolveError};
