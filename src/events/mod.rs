//! Job events: CloudEvents 1.0 in structured JSON, sent to the events queue and, when a job has
//! a `callbackUrl`, POSTed to it with an HMAC-SHA256 signature.
//!
//! Publishing runs in the background with bounded retries, so it never blocks or fails the
//! migration. A delivery that still fails is recorded on the job (`eventDeliveryError`).
//! This module does not decide when a job changes state; the engine and the API call it after
//! each change they store.

mod callback;
mod cloud_event;
mod publisher;

pub use callback::{check_ip, check_url, resolve_checked, signature, AddressPolicy, CallbackError};
pub use cloud_event::{CloudEvent, EventType, JobEventData, SPEC_VERSION};
pub use publisher::Events;

/// The header that carries the callback body's signature: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the raw body, keyed with the `VCM_CALLBACK_SIGNING_KEY` setting.
pub const SIGNATURE_HEADER: &str = "x-vcm-signature";
