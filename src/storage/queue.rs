//! The Queue Storage client.
//!
//! Message text is base64-encoded on the wire, as the Azure Functions queue trigger expects with its
//! default `messageEncoding: base64`, and decoded on receive and peek. Messages are sent with
//! `messagettl=-1`, so they never expire: work that waits through a long pause is not lost.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;

use super::auth::Service;
use super::pipeline::{StorageRequest, StorageResponse};
use super::url_path::{encode, resource_url};
use super::{StorageAccount, StorageError};

/// Maximum size of a message on the wire, after base64 encoding: 64 KiB, so at most 49,152 bytes of
/// UTF-8 text.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Maximum messages per receive or peek.
const MAX_MESSAGES_PER_CALL: u32 = 32;
/// Maximum visibility timeout or delay: 7 days.
const MAX_VISIBILITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A received or peeked message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: String,
    /// The receipt that [`QueueClient::delete`] and [`QueueClient::extend`] need. It changes on
    /// every receive and extend, and it is empty for a peeked message.
    pub pop_receipt: String,
    /// How many times the message has been received, this receive included.
    pub dequeue_count: u32,
    /// The decoded message text.
    pub text: String,
    pub inserted_on: Option<DateTime<Utc>>,
}

/// A client for one queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct QueueClient {
    account: StorageAccount,
    name: String,
}

impl QueueClient {
    pub(crate) fn new(account: StorageAccount, name: &str) -> Self {
        Self {
            account,
            name: name.to_owned(),
        }
    }

    /// Returns the queue name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the queue, or does nothing if it exists.
    pub async fn create_if_not_exists(&self) -> Result<(), StorageError> {
        let request = self.request("create_queue", Method::PUT, String::new(), &[], Vec::new())?;
        match self.execute(&request).await {
            Ok(_) => Ok(()),
            // 409 means the queue exists with other metadata; this client never sets metadata.
            Err(StorageError::Http(409, code, _)) if code == "QueueAlreadyExists" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Deletes the queue and its messages. A missing queue is not an error.
    pub async fn delete_queue(&self) -> Result<(), StorageError> {
        let request = self.request(
            "delete_queue",
            Method::DELETE,
            String::new(),
            &[],
            Vec::new(),
        )?;
        match self.execute(&request).await {
            Ok(_) => Ok(()),
            Err(StorageError::Http(404, code, _)) if code == "QueueNotFound" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Sends a message that becomes visible after `visibility_delay` (immediately when `None`).
    /// Text over [`MAX_MESSAGE_BYTES`] after base64 encoding is rejected before sending.
    ///
    /// NOTE: when a transient failure hides whether the first attempt was stored, the retry may
    /// enqueue the message twice, so consumers must tolerate duplicates.
    pub async fn send(
        &self,
        text: &str,
        visibility_delay: Option<Duration>,
    ) -> Result<(), StorageError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        if encoded.len() > MAX_MESSAGE_BYTES {
            return Err(StorageError::InvalidInput(format!(
                "a message of {} bytes is {} bytes after base64 encoding, over the {MAX_MESSAGE_BYTES}-byte \
                 queue message limit; send ids and keep the data in a table",
                text.len(),
                encoded.len()
            )));
        }
        let delay = whole_seconds(
            visibility_delay.unwrap_or(Duration::ZERO),
            "visibility delay",
            0,
        )?;
        // Base64 text contains no XML special characters, so it needs no escaping.
        let body = format!("<QueueMessage><MessageText>{encoded}</MessageText></QueueMessage>");
        let request = self.request(
            "send_message",
            Method::POST,
            "/messages".to_owned(),
            &[("visibilitytimeout", &delay), ("messagettl", "-1")],
            body.into_bytes(),
        )?;
        self.execute(&request).await.map(|_| ())
    }

    /// Receives up to `max` messages (1 to 32) and hides them from other consumers for
    /// `visibility_timeout` (1 second to 7 days, rounded up to whole seconds).
    pub async fn receive(
        &self,
        max: u32,
        visibility_timeout: Duration,
    ) -> Result<Vec<QueueMessage>, StorageError> {
        let count = message_count(max)?;
        let timeout = whole_seconds(visibility_timeout, "visibility timeout", 1)?;
        let request = self.request(
            "receive_messages",
            Method::GET,
            "/messages".to_owned(),
            &[("numofmessages", &count), ("visibilitytimeout", &timeout)],
            Vec::new(),
        )?;
        let response = self.execute(&request).await?;
        self.parse_messages(&response.body)
    }

    /// Returns up to `max` visible messages (1 to 32) without receiving them: the messages stay
    /// visible and their dequeue counts do not change.
    pub async fn peek(&self, max: u32) -> Result<Vec<QueueMessage>, StorageError> {
        let count = message_count(max)?;
        let request = self.request(
            "peek_messages",
            Method::GET,
            "/messages".to_owned(),
            &[("peekonly", "true"), ("numofmessages", &count)],
            Vec::new(),
        )?;
        let response = self.execute(&request).await?;
        self.parse_messages(&response.body)
    }

    /// Deletes a received message. A message that is already gone is `Ok(())`; a message that
    /// another consumer has received since is [`StorageError::PreconditionFailed`].
    pub async fn delete(&self, message: &QueueMessage) -> Result<(), StorageError> {
        let path = format!("/messages/{}", encode(&message.id));
        let request = self.request(
            "delete_message",
            Method::DELETE,
            path,
            &[("popreceipt", &message.pop_receipt)],
            Vec::new(),
        )?;
        match self.execute(&request).await {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Hides a received message for `visibility_timeout` from now (0 seconds to 7 days) and returns
    /// the new pop receipt, which replaces the message's old one.
    pub async fn extend(
        &self,
        message: &QueueMessage,
        visibility_timeout: Duration,
    ) -> Result<String, StorageError> {
        let timeout = whole_seconds(visibility_timeout, "visibility timeout", 0)?;
        let path = format!("/messages/{}", encode(&message.id));
        let request = self.request(
            "extend_message",
            Method::PUT,
            path,
            &[
                ("popreceipt", &message.pop_receipt),
                ("visibilitytimeout", &timeout),
            ],
            Vec::new(),
        )?;
        let response = self.execute(&request).await?;
        response
            .header("x-ms-popreceipt")
            .map(str::to_owned)
            .ok_or_else(|| {
                StorageError::Transport(
                    "the queue service returned no pop receipt for an update".into(),
                )
            })
    }

    /// Returns the service's approximate number of messages, invisible ones included.
    pub async fn approximate_count(&self) -> Result<u64, StorageError> {
        let request = self.request(
            "get_queue_metadata",
            Method::GET,
            String::new(),
            &[("comp", "metadata")],
            Vec::new(),
        )?;
        let response = self.execute(&request).await?;
        response
            .header("x-ms-approximate-messages-count")
            .and_then(|count| count.parse().ok())
            .ok_or_else(|| {
                StorageError::Transport(
                    "the queue service returned no approximate message count".into(),
                )
            })
    }

    /// Deletes every message in the queue.
    pub async fn clear(&self) -> Result<(), StorageError> {
        let request = self.request(
            "clear_messages",
            Method::DELETE,
            "/messages".to_owned(),
            &[],
            Vec::new(),
        )?;
        self.execute(&request).await.map(|_| ())
    }

    fn request(
        &self,
        operation: &'static str,
        method: Method,
        suffix: String,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<StorageRequest<'_>, StorageError> {
        validate_queue_name(&self.name)?;
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        if !body.is_empty() {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/xml")));
        }
        Ok(StorageRequest {
            service: Service::Queue,
            operation,
            resource: &self.name,
            method,
            url: resource_url(
                self.account.queue_endpoint(),
                &format!("{}{suffix}", self.name),
                query,
            )?,
            headers,
            body,
        })
    }

    async fn execute(&self, request: &StorageRequest<'_>) -> Result<StorageResponse, StorageError> {
        self.account.pipeline().send(request).await
    }

    fn parse_messages(&self, body: &[u8]) -> Result<Vec<QueueMessage>, StorageError> {
        let text = std::str::from_utf8(body).map_err(|_| {
            StorageError::Transport(
                "the queue service returned a message list that is not UTF-8".into(),
            )
        })?;
        let list: WireMessageList = quick_xml::de::from_str(text).map_err(|error| {
            StorageError::Transport(format!(
                "the queue service returned an invalid message list: {error}"
            ))
        })?;
        Ok(list
            .messages
            .into_iter()
            .map(|wire| self.decode_message(wire))
            .collect())
    }

    fn decode_message(&self, wire: WireMessage) -> QueueMessage {
        let raw = wire.message_text.unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let text = match decoded {
            Some(text) => text,
            None => {
                // Another producer may have sent plain text. Returning it as is lets the consumer
                // decide, instead of failing every other message of the same receive.
                tracing::warn!(
                    queue = %self.name,
                    message_id = %wire.message_id,
                    "queue message text is not base64-encoded UTF-8; returning it undecoded"
                );
                raw
            }
        };
        QueueMessage {
            id: wire.message_id,
            pop_receipt: wire.pop_receipt.unwrap_or_default(),
            dequeue_count: wire.dequeue_count.unwrap_or(0),
            text,
            inserted_on: wire
                .insertion_time
                .and_then(|time| DateTime::parse_from_rfc2822(&time).ok())
                .map(|time| time.with_timezone(&Utc)),
        }
    }
}

#[derive(Deserialize)]
struct WireMessageList {
    #[serde(rename = "QueueMessage", default)]
    messages: Vec<WireMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireMessage {
    message_id: String,
    insertion_time: Option<String>,
    pop_receipt: Option<String>,
    dequeue_count: Option<u32>,
    message_text: Option<String>,
}

/// Queue names are 3 to 63 lowercase letters, digits and single hyphens, starting and ending with a
/// letter or digit.
fn validate_queue_name(name: &str) -> Result<(), StorageError> {
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(StorageError::InvalidInput(format!(
            "queue name {name:?} is invalid: use 3 to 63 lowercase letters, digits and single hyphens, \
             starting and ending with a letter or digit"
        )))
    }
}

fn message_count(max: u32) -> Result<String, StorageError> {
    if (1..=MAX_MESSAGES_PER_CALL).contains(&max) {
        Ok(max.to_string())
    } else {
        Err(StorageError::InvalidInput(format!(
            "cannot request {max} messages: use 1 to {MAX_MESSAGES_PER_CALL}"
        )))
    }
}

/// Rounds a duration up to whole seconds and checks it against `min_seconds` and 7 days.
fn whole_seconds(duration: Duration, what: &str, min_seconds: u64) -> Result<String, StorageError> {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    if seconds < min_seconds || duration > MAX_VISIBILITY {
        return Err(StorageError::InvalidInput(format!(
            "{what} of {duration:?} is out of range: use {min_seconds} seconds to 7 days"
        )));
    }
    Ok(seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_checked() {
        for name in ["abc", "copy-tasks", "a1-b2", &"q".repeat(63)] {
            assert!(validate_queue_name(name).is_ok(), "{name}");
        }
        for name in ["ab", "Copy", "-abc", "abc-", "a--b", "a_b", &"q".repeat(64)] {
            assert!(validate_queue_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn durations_rounded_up_and_bounded() {
        assert_eq!(
            whole_seconds(Duration::from_millis(1500), "t", 1).unwrap(),
            "2"
        );
        assert_eq!(whole_seconds(Duration::ZERO, "t", 0).unwrap(), "0");
        assert!(whole_seconds(Duration::ZERO, "t", 1).is_err());
        assert!(whole_seconds(MAX_VISIBILITY + Duration::from_secs(1), "t", 0).is_err());
    }

    #[test]
    fn message_list_parsed() {
        let account = StorageAccount::from_connection_string("UseDevelopmentStorage=true").unwrap();
        let queue = account.queue("work");
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><QueueMessagesList><QueueMessage>\
            <MessageId>id-1</MessageId><InsertionTime>Fri, 09 Oct 2009 21:04:30 GMT</InsertionTime>\
            <ExpirationTime>Fri, 16 Oct 2009 21:04:30 GMT</ExpirationTime><PopReceipt>AgAAAA+/=</PopReceipt>\
            <TimeNextVisible>Fri, 09 Oct 2009 23:29:20 GMT</TimeNextVisible><DequeueCount>2</DequeueCount>\
            <MessageText>aMOpbGxv</MessageText></QueueMessage><QueueMessage><MessageId>id-2</MessageId>\
            <MessageText>not base64!</MessageText></QueueMessage></QueueMessagesList>";
        let messages = queue.parse_messages(xml.as_bytes()).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].id, "id-1");
        assert_eq!(messages[0].pop_receipt, "AgAAAA+/=");
        assert_eq!(messages[0].dequeue_count, 2);
        assert_eq!(messages[0].text, "héllo");
        assert_eq!(
            messages[0].inserted_on.map(|time| time.to_rfc3339()),
            Some("2009-10-09T21:04:30+00:00".to_owned())
        );
        assert_eq!(messages[1].text, "not base64!");

        let empty = queue
            .parse_messages(b"<?xml version=\"1.0\" encoding=\"utf-8\"?><QueueMessagesList />")
            .unwrap();
        assert!(empty.is_empty());
    }
}
