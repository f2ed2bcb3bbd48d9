//! The error type of the storage clients and its mapping from HTTP responses.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// A failed Table Storage or Queue Storage operation.
///
/// No variant contains an account key, a SAS signature or a bearer token: messages come from the
/// service's error body or from this module's own text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The entity or message does not exist (HTTP 404 with a code other than `TableNotFound` or
    /// `QueueNotFound`). A missing table or queue is reported as [`StorageError::Http`] so that it
    /// is not mistaken for a missing row.
    #[error("the entity or message was not found")]
    NotFound,

    /// The entity already exists (HTTP 409 on insert).
    #[error("the entity already exists")]
    Conflict,

    /// The `If-Match` ETag is stale because another writer changed the entity first (HTTP 412), or a
    /// queue message's pop receipt no longer matches because another consumer received it again.
    #[error("the precondition failed: the entity or message changed since it was read")]
    PreconditionFailed,

    /// The service is throttling or too busy (HTTP 429 or 503). `retry_after` is the service's
    /// `Retry-After` hint when it sent one.
    #[error("the storage service is throttling requests (HTTP {status}, code {code})")]
    Throttled {
        status: u16,
        code: String,
        retry_after: Option<Duration>,
    },

    /// The request was rejected before it was sent: an invalid key, name or property, or a value
    /// over a service limit. The text names the value and the limit.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Authentication or authorization failed (HTTP 401 or 403), with the service's error code.
    #[error("storage authorization failed (HTTP {0}, code {1}); check the account key or the identity's role assignments")]
    Auth(u16, String),

    /// Any other error response: HTTP status, service error code and message.
    #[error("storage request failed (HTTP {0}, code {1}): {2}")]
    Http(u16, String, String),

    /// The request did not complete: connection refused, timed out or reset, a credential that
    /// failed to produce a token, or a response body that could not be read or parsed.
    #[error("storage transport error: {0}")]
    Transport(String),
}

impl StorageError {
    /// Returns true when the same request may succeed if it is sent again later: throttling,
    /// transport failures, and HTTP 408, 500, 502 and 504.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Throttled { .. } | StorageError::Transport(_) => true,
            StorageError::Http(status, _, _) => matches!(status, 408 | 500 | 502 | 504),
            _ => false,
        }
    }

    /// Returns the service's `Retry-After` hint, if the error carries one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StorageError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Returns the HTTP status of an error response, if the error came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            StorageError::NotFound => Some(404),
            StorageError::Conflict => Some(409),
            StorageError::PreconditionFailed => Some(412),
            StorageError::Throttled { status, .. } => Some(*status),
            StorageError::Auth(status, _) | StorageError::Http(status, _, _) => Some(*status),
            StorageError::InvalidInput(_) | StorageError::Transport(_) => None,
        }
    }

    /// Builds the error for a non-success response from its status, headers and body.
    pub(crate) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let (body_code, message) = parse_error_body(body);
        let code = headers
            .get("x-ms-error-code")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or(body_code)
            .unwrap_or_default();
        let status_code = status.as_u16();

        match status_code {
            401 | 403 => StorageError::Auth(status_code, code),
            404 if code == "TableNotFound" || code == "QueueNotFound" => {
                StorageError::Http(status_code, code, message)
            }
            404 => StorageError::NotFound,
            409 if code == "EntityAlreadyExists" || code.is_empty() => StorageError::Conflict,
            412 => StorageError::PreconditionFailed,
            400 if code == "PopReceiptMismatch" => StorageError::PreconditionFailed,
            429 | 503 => StorageError::Throttled {
                status: status_code,
                code,
                retry_after: parse_retry_after(headers),
            },
            _ => StorageError::Http(status_code, code, message),
        }
    }
}

/// Reads the `Retry-After` header, which Azure Storage sends in whole seconds.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// Extracts the error code and message from a Table JSON body
/// (`{"odata.error":{"code":..,"message":{"value":..}}}`) or a Queue XML body
/// (`<Error><Code>..</Code><Message>..</Message></Error>`).
fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = json.get("odata.error").unwrap_or(&json);
        let code = error
            .get("code")
            .and_then(|c| c.as_str())
            .map(str::to_owned);
        let message = error
            .pointer("/message/value")
            .or_else(|| error.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        return (code, first_line(message));
    }

    let text = String::from_utf8_lossy(body);
    let code = xml_element_text(&text, "Code");
    let message = xml_element_text(&text, "Message").unwrap_or_default();
    (code, first_line(&message))
}

/// Keeps the first line of a service message: the rest is a request id and a timestamp.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

/// Returns the text of the first `<name>` element. Error bodies are small and flat, so a substring
/// search is enough here; message listings go through quick-xml.
fn xml_element_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(unescape_xml(&xml[start..end]))
}

fn unescape_xml(text: &str) -> String {
    quick_xml::escape::unescape(text)
        .map(|unescaped| unescaped.into_owned())
        .unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn table_json_error_body_parsed() {
        let body = br#"{"odata.error":{"code":"UpdateConditionNotSatisfied","message":{"lang":"en-US","value":"The update condition specified in the request was not satisfied.\nRequestId:1\nTime:2"}}}"#;
        let (code, message) = parse_error_body(body);
        assert_eq!(code.as_deref(), Some("UpdateConditionNotSatisfied"));
        assert_eq!(
            message,
            "The update condition specified in the request was not satisfied."
        );
    }

    #[test]
    fn queue_xml_error_body_parsed() {
        let body = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>QueueNotFound</Code><Message>The specified queue does not exist &amp; more.\nRequestId:1</Message></Error>";
        let (code, message) = parse_error_body(body);
        assert_eq!(code.as_deref(), Some("QueueNotFound"));
        assert_eq!(message, "The specified queue does not exist & more.");
    }

    #[test]
    fn status_codes_map_to_variants() {
        let empty = HeaderMap::new();
        let cases = [
            (404, "ResourceNotFound", StorageError::NotFound),
            (409, "EntityAlreadyExists", StorageError::Conflict),
            (
                412,
                "UpdateConditionNotSatisfied",
                StorageError::PreconditionFailed,
            ),
            (400, "PopReceiptMismatch", StorageError::PreconditionFailed),
        ];
        for (status, code, expected) in cases {
            let with_code = headers(&[("x-ms-error-code", code)]);
            let error =
                StorageError::from_response(StatusCode::from_u16(status).unwrap(), &with_code, b"");
            assert_eq!(error, expected, "status {status} code {code}");
        }

        let missing_table = StorageError::from_response(
            StatusCode::NOT_FOUND,
            &headers(&[("x-ms-error-code", "TableNotFound")]),
            b"",
        );
        assert!(
            matches!(missing_table, StorageError::Http(404, ref code, _) if code == "TableNotFound")
        );

        let forbidden = StorageError::from_response(StatusCode::FORBIDDEN, &empty, b"");
        assert!(matches!(forbidden, StorageError::Auth(403, _)));
    }

    #[test]
    fn throttling_is_transient_with_retry_after() {
        let error = StorageError::from_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("x-ms-error-code", "ServerBusy"), ("retry-after", "3")]),
            b"",
        );
        assert!(error.is_transient());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(error.status(), Some(503));
    }

    #[test]
    fn client_errors_are_not_transient() {
        assert!(!StorageError::Conflict.is_transient());
        assert!(!StorageError::PreconditionFailed.is_transient());
        assert!(!StorageError::InvalidInput("x".into()).is_transient());
        assert!(!StorageError::Http(400, "InvalidInput".into(), String::new()).is_transient());
        assert!(StorageError::Http(500, "InternalError".into(), String::new()).is_transient());
    }
}
