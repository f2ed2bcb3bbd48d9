//! Change streams: the server-wide change log and the cursors that read it.

mod cosmos;
pub mod diff;
pub mod log;
pub mod stream;
pub mod token;

pub use log::{ChangeLog, EventKind, PendingEvent};
