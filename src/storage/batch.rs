//! Entity group transactions: the `$batch` multipart request and its response.
//!
//! A batch is one `multipart/mixed` request holding one changeset, with one embedded HTTP request
//! per operation. The service applies all of them or none, and answers 202 with one embedded
//! response per operation, or with a single embedded error response naming the failed operation.
//! Limits from "Performing entity group transactions": one partition, at most 100 operations, each
//! entity at most once, and a body of at most 4 MiB.

use std::collections::HashSet;

use reqwest::StatusCode;
use url::Url;

use super::entity::Entity;
use super::pipeline::StorageResponse;
use super::table::{IfMatch, ACCEPT_JSON};
use super::StorageError;

/// Maximum operations in one batch.
pub const MAX_BATCH_OPERATIONS: usize = 100;
/// Maximum size of a batch request body.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// One operation of [`super::TableClient::submit_batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOperation {
    /// Insert a new entity; fails the batch with [`StorageError::Conflict`] if it exists.
    Insert(Entity),
    /// Replace an existing entity under an ETag condition.
    Update(Entity, IfMatch),
    /// Insert or replace an entity.
    Upsert(Entity),
    /// Delete an entity under an ETag condition. Unlike [`super::TableClient::delete`], a missing
    /// entity fails the batch with [`StorageError::NotFound`].
    Delete {
        partition_key: String,
        row_key: String,
        condition: IfMatch,
    },
}

impl BatchOperation {
    fn keys(&self) -> (&str, &str) {
        match self {
            BatchOperation::Insert(entity)
            | BatchOperation::Update(entity, _)
            | BatchOperation::Upsert(entity) => (&entity.partition_key, &entity.row_key),
            BatchOperation::Delete {
                partition_key,
                row_key,
                ..
            } => (partition_key, row_key),
        }
    }
}

/// A batch request body and its `Content-Type` with the boundary.
pub(crate) struct EncodedBatch {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Checks the batch rules and builds the multipart body. `table_url` is the table's URL for
/// inserts, and `entity_path` builds the escaped `table(PartitionKey=..,RowKey=..)` path that is
/// appended to `endpoint`.
pub(crate) fn encode(
    operations: &[BatchOperation],
    endpoint: &Url,
    table_url: &Url,
    entity_path: &dyn Fn(&str, &str) -> Result<String, StorageError>,
) -> Result<EncodedBatch, StorageError> {
    validate(operations)?;

    let batch_boundary = format!("batch_{}", uuid::Uuid::new_v4());
    let changeset_boundary = format!("changeset_{}", uuid::Uuid::new_v4());
    let mut body = String::new();
    body.push_str(&format!("--{batch_boundary}\r\n"));
    body.push_str(&format!(
        "Content-Type: multipart/mixed; boundary={changeset_boundary}\r\n\r\n"
    ));

    let endpoint = endpoint.as_str().trim_end_matches('/');
    for operation in operations {
        body.push_str(&format!("--{changeset_boundary}\r\n"));
        body.push_str(
            "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n",
        );

        let (partition_key, row_key) = operation.keys();
        let entity_url = format!("{endpoint}/{}", entity_path(partition_key, row_key)?);
        let (method, url, condition, entity) = match operation {
            BatchOperation::Insert(entity) => ("POST", table_url.to_string(), None, Some(entity)),
            BatchOperation::Update(entity, condition) => {
                ("PUT", entity_url, Some(condition), Some(entity))
            }
            BatchOperation::Upsert(entity) => ("PUT", entity_url, None, Some(entity)),
            BatchOperation::Delete { condition, .. } => {
                ("DELETE", entity_url, Some(condition), None)
            }
        };

        body.push_str(&format!("{method} {url} HTTP/1.1\r\n"));
        body.push_str(&format!(
            "Accept: {ACCEPT_JSON}\r\nDataServiceVersion: 3.0\r\n"
        ));
        if let Some(condition) = condition {
            body.push_str(&format!("If-Match: {}\r\n", condition.header_value()));
        }
        match entity {
            Some(entity) => {
                let json =
                    serde_json::to_string(&entity.to_wire()?).expect("a JSON object serializes");
                body.push_str(
                    "Content-Type: application/json\r\nPrefer: return-no-content\r\n\r\n",
                );
                body.push_str(&json);
                body.push_str("\r\n");
            }
            None => body.push_str("\r\n"),
        }
    }
    body.push_str(&format!(
        "--{changeset_boundary}--\r\n--{batch_boundary}--\r\n"
    ));

    if body.len() > MAX_BATCH_BYTES {
        return Err(StorageError::InvalidInput(format!(
            "the batch body is {} bytes, over the {MAX_BATCH_BYTES}-byte limit; split it into smaller batches",
            body.len()
        )));
    }
    Ok(EncodedBatch {
        content_type: format!("multipart/mixed; boundary={batch_boundary}"),
        body: body.into_bytes(),
    })
}

fn validate(operations: &[BatchOperation]) -> Result<(), StorageError> {
    if operations.len() > MAX_BATCH_OPERATIONS {
        return Err(StorageError::InvalidInput(format!(
            "a batch has {} operations, over the limit of {MAX_BATCH_OPERATIONS}",
            operations.len()
        )));
    }
    let partition_key = operations[0].keys().0;
    let mut seen = HashSet::new();
    for (index, operation) in operations.iter().enumerate() {
        let (operation_partition, row_key) = operation.keys();
        if operation_partition != partition_key {
            return Err(StorageError::InvalidInput(format!(
                "batch operation {index} is in partition {operation_partition:?}, but a batch must stay \
                 in one partition ({partition_key:?})"
            )));
        }
        if !seen.insert(row_key) {
            return Err(StorageError::InvalidInput(format!(
                "batch operation {index} repeats RowKey {row_key:?}; a batch may touch each entity once"
            )));
        }
        match operation {
            BatchOperation::Insert(entity)
            | BatchOperation::Update(entity, _)
            | BatchOperation::Upsert(entity) => entity.validate()?,
            BatchOperation::Delete { .. } => {}
        }
    }
    Ok(())
}

/// Reads the embedded responses of a batch: success only when there is one 2xx response per
/// operation. Otherwise the first failing response becomes the error.
pub(crate) fn check_response(
    response: &StorageResponse,
    operation_count: usize,
) -> Result<(), StorageError> {
    let text = String::from_utf8_lossy(&response.body);
    let mut successes = 0;
    for (offset, line) in line_offsets(&text) {
        let Some(status) = embedded_status(line) else {
            continue;
        };
        if status.is_success() {
            successes += 1;
            continue;
        }

        let part = &text[offset..];
        let part = part.find("\r\n--").map_or(part, |end| &part[..end]);
        let body = part.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let error = StorageError::from_response(
            status,
            &reqwest::header::HeaderMap::new(),
            body.as_bytes(),
        );
        tracing::debug!(
            status = status.as_u16(),
            failed_operation = failed_index(body),
            error = %error,
            "table batch rejected"
        );
        return Err(error);
    }

    if successes == operation_count {
        Ok(())
    } else {
        Err(StorageError::Transport(format!(
            "the table service answered a batch of {operation_count} operations with {successes} results"
        )))
    }
}

fn line_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n').scan(0, |offset, line| {
        let start = *offset;
        *offset += line.len() + 1;
        Some((start, line.trim_end_matches('\r')))
    })
}

/// Parses an embedded status line such as `HTTP/1.1 204 No Content`.
fn embedded_status(line: &str) -> Option<StatusCode> {
    let rest = line.strip_prefix("HTTP/1.1 ")?;
    let code = rest.split(' ').next()?;
    StatusCode::from_bytes(code.as_bytes()).ok()
}

/// The service prefixes a batch error message with the index of the failed operation (`"3:..."`).
fn failed_index(body: &str) -> Option<usize> {
    let json: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    let message = json.pointer("/odata.error/message/value")?.as_str()?;
    message.split_once(':')?.0.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &str) -> StorageResponse {
        StorageResponse {
            headers: reqwest::header::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn successful_batch_counts_results() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\nETag: W/\"a\"\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
            --changesetresponse_2--\r\n--batchresponse_1--\r\n";
        assert!(check_response(&response(body), 2).is_ok());
        assert!(matches!(
            check_response(&response(body), 3),
            Err(StorageError::Transport(_))
        ));
    }

    #[test]
    fn failed_batch_maps_embedded_error() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 409 Conflict\r\n\
            Content-Type: application/json;odata=minimalmetadata\r\n\r\n\
            {\"odata.error\":{\"code\":\"EntityAlreadyExists\",\"message\":{\"lang\":\"en-US\",\"value\":\"1:The specified entity already exists.\"}}}\r\n\
            --changesetresponse_2--\r\n--batchresponse_1--\r\n";
        assert_eq!(
            check_response(&response(body), 2),
            Err(StorageError::Conflict)
        );
        let json = "{\"odata.error\":{\"code\":\"x\",\"message\":{\"value\":\"1:The specified entity already exists.\"}}}";
        assert_eq!(failed_index(json), Some(1));
    }

    #[test]
    fn batch_rules_enforced() {
        let insert = |pk: &str, rk: &str| BatchOperation::Insert(Entity::new(pk, rk));
        let too_many: Vec<_> = (0..101).map(|i| insert("p", &i.to_string())).collect();
        assert!(validate(&too_many)
            .unwrap_err()
            .to_string()
            .contains("101 operations"));

        let mixed = vec![insert("p", "1"), insert("q", "2")];
        assert!(validate(&mixed)
            .unwrap_err()
            .to_string()
            .contains("one partition"));

        let repeated = vec![
            insert("p", "1"),
            BatchOperation::Delete {
                partition_key: "p".into(),
                row_key: "1".into(),
                condition: IfMatch::Any,
            },
        ];
        assert!(validate(&repeated)
            .unwrap_err()
            .to_string()
            .contains("repeats RowKey"));
    }
}
