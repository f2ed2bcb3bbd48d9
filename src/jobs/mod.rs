//! Jobs: the request a user sends, its validation, and the lifecycle table.
//!
//! Storage of jobs is in `state`; the work they cause is in `copy` and `runtime`.

pub mod lifecycle;
pub mod model;
mod validate;

pub use lifecycle::{allowed_commands, transition, Command, JobState, Lifecycle, Rejection};
pub use model::{
    CollectionSpec, JobOptions, JobRequest, Mode, Namespace, SourceKind, VerificationMode,
};
pub use validate::{validate_request, FieldError};
