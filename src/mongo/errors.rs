//! Classification of driver errors for the copy loop: retry after a delay, treat as already
//! done, or give up.

use std::time::Duration;

use mongodb::error::{Error, ErrorKind, WriteFailure};

/// Server codes after which the same request may succeed when sent again. The list follows the
/// driver's retryable-read and resumable change-stream codes, plus `ExceededTimeLimit` (50), which
/// Cosmos DB returns when its server-side retry of a throttled request gave up.
const TRANSIENT_CODES: &[i32] = &[
    6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// Cosmos DB for MongoDB (RU) rejects a request over its request-unit budget with this code.
pub const TOO_MANY_REQUESTS: i32 = 16500;

pub const DUPLICATE_KEY: i32 = 11000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttled: retry after the server's hint.
    Throttled(Duration),
    /// A network error or a transient server state: retry with backoff.
    Transient,
    /// Anything else: retrying will not help.
    Permanent,
}

/// Classifies a driver error.
pub fn classify(error: &Error) -> ErrorClass {
    if let Some(delay) = throttle_delay(error) {
        return ErrorClass::Throttled(delay);
    }
    if error.contains_label("RetryableWriteError")
        || error.contains_label("TransientTransactionError")
        || error.contains_label("ResumableChangeStreamError")
    {
        return ErrorClass::Transient;
    }
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => ErrorClass::Transient,
        ErrorKind::Command(c) if TRANSIENT_CODES.contains(&c.code) => ErrorClass::Transient,
        ErrorKind::Write(WriteFailure::WriteConcernError(w))
            if TRANSIENT_CODES.contains(&w.code) =>
        {
            ErrorClass::Transient
        }
        _ => ErrorClass::Permanent,
    }
}

/// Returns the delay a throttled request requests, if the error is a throttle.
pub fn throttle_delay(error: &Error) -> Option<Duration> {
    match error.kind.as_ref() {
        ErrorKind::Command(c) if c.code == TOO_MANY_REQUESTS => Some(retry_after(&c.message)),
        ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == TOO_MANY_REQUESTS => {
            Some(retry_after(&w.message))
        }
        _ => None,
    }
}

/// Describes a driver error in one line for job state and logs: the server's message with its
/// code and code name where there is one, never the raw server reply. Connection strings are
/// redacted.
pub fn describe(error: &Error) -> String {
    let text = match error.kind.as_ref() {
        ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            format!("{} (code {})", w.message, w.code)
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
            format!("write concern error: {} (code {})", w.message, w.code)
        }
        ErrorKind::InsertMany(e) => match e.write_errors.as_deref().and_then(|w| w.first()) {
            Some(w) => format!("{} (code {})", w.message, w.code),
            None => "insert failed with a write concern error".to_string(),
        },
        ErrorKind::ServerSelection { message, .. } => {
            format!("no server could be selected: {message}")
        }
        ErrorKind::Authentication { message, .. } => format!("authentication failed: {message}"),
        ErrorKind::Io(io) => format!("network error: {io}"),
        _ => error.to_string(),
    };
    let mut text = crate::secrets::redact_connection_string(&text);
    if text.len() > 1_000 {
        let mut cut = 1_000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Reads `RetryAfterMs=N` from a Cosmos DB error message; 100 ms when absent.
pub fn retry_after(message: &str) -> Duration {
    const DEFAULT: Duration = Duration::from_millis(100);
    let Some(start) = message.find("RetryAfterMs=") else {
        return DEFAULT;
    };
    let digits: String = message[start + "RetryAfterMs=".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse::<u64>()
        .map(|ms| Duration::from_millis(ms.min(60_000)))
        .unwrap_or(DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_parsed() {
        let message = "Error=16500, RetryAfterMs=34, Details='Request rate is large'";
        assert_eq!(retry_after(message), Duration::from_millis(34));
    }

    #[test]
    fn retry_after_defaults_and_caps() {
        assert_eq!(
            retry_after("Request rate is large"),
            Duration::from_millis(100)
        );
        assert_eq!(
            retry_after("RetryAfterMs=999999999"),
            Duration::from_secs(60)
        );
        assert_eq!(retry_after("RetryAfterMs=x"), Duration::from_millis(100));
    }
}
