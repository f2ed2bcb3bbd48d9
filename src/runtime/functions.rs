//! The Azure Functions custom-handler contract for queue and timer triggers.
//!
//! The host POSTs `{"Data": {...}, "Metadata": {...}}` to `/<function name>` and expects
//! `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`; any non-2xx status fails the
//! invocation, so the host retries the queue message and, after `maxDequeueCount` attempts,
//! moves it to `<queue>-poison`. Values may arrive with an extra layer of JSON string quoting
//! (the host serializes non-object values with Json.NET), so every value is unwrapped leniently.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tracing::{error, info};

use super::engine::Engine;
use super::{run_task, MessageInfo};
use crate::queue::TaskKind;

/// Name of the timer-triggered function that runs one scheduler pass.
pub const SCHEDULER_FUNCTION: &str = "scheduler";

/// A parsed queue-trigger invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueInvocation {
    pub body: String,
    pub message_id: String,
    pub dequeue_count: u32,
}

/// Reads the queue message text, id and dequeue count from an invocation envelope.
pub fn parse_queue_invocation(envelope: &Value) -> Result<QueueInvocation, String> {
    let data = envelope
        .get("Data")
        .and_then(Value::as_object)
        .ok_or("the invocation has no Data object")?;
    // The trigger binding's name is set in function.json; take the only value rather than
    // depend on it.
    let (_, raw) = data
        .iter()
        .next()
        .ok_or("the invocation's Data object is empty")?;
    let body = match unwrap_value(raw) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let metadata = envelope.get("Metadata").cloned().unwrap_or(Value::Null);
    let message_id = metadata
        .get("Id")
        .map(unwrap_value)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let dequeue_count = metadata
        .get("DequeueCount")
        .map(unwrap_value)
        .and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .unwrap_or(1) as u32;
    Ok(QueueInvocation {
        body,
        message_id,
        dequeue_count,
    })
}

/// Removes up to two layers of JSON string encoding: `"\"{\\\"a\\\":1}\""` becomes `{"a":1}`.
fn unwrap_value(value: &Value) -> Value {
    let mut current = value.clone();
    for _ in 0..2 {
        let Value::String(text) = &current else { break };
        let trimmed = text.trim_start();
        if !(trimmed.starts_with('"') || trimmed.starts_with('{') || trimmed.starts_with('[')) {
            break;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::String(inner)) => current = Value::String(inner),
            Ok(Value::Object(_)) | Ok(Value::Array(_)) => {
                // The message text is JSON; keep it as text for the task parser.
                current = Value::String(text.clone());
                break;
            }
            _ => break,
        }
    }
    current
}

fn result_body(logs: Vec<String>) -> Value {
    json!({ "Outputs": {}, "Logs": logs, "ReturnValue": null })
}

/// `POST /{function}`: one queue- or timer-triggered invocation.
pub async fn invoke(
    State(engine): State<Engine>,
    Path(function): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let envelope: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            error!(function, error = %e, "invocation body is not JSON");
            return (
                StatusCode::BAD_REQUEST,
                Json(result_body(vec![format!(
                    "invocation body is not JSON: {e}"
                )])),
            )
                .into_response();
        }
    };

    if function == SCHEDULER_FUNCTION {
        return match engine.schedule_once().await {
            Ok(()) => Json(result_body(vec!["scheduler pass finished".into()])).into_response(),
            Err(e) => {
                error!(error = %e, "scheduler pass failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(result_body(vec![format!("scheduler pass failed: {e}")])),
                )
                    .into_response()
            }
        };
    }

    let Some(kind) = TaskKind::from_function_name(&function) else {
        return (
            StatusCode::NOT_FOUND,
            Json(result_body(vec![format!("no function named {function}")])),
        )
            .into_response();
    };
    let invocation = match parse_queue_invocation(&envelope) {
        Ok(i) => i,
        Err(reason) => {
            error!(function, reason, "invalid invocation envelope");
            return (
                StatusCode::BAD_REQUEST,
                Json(result_body(vec![format!("invalid invocation: {reason}")])),
            )
                .into_response();
        }
    };
    let message = MessageInfo {
        id: invocation.message_id.clone(),
        dequeue_count: invocation.dequeue_count,
    };
    match run_task(&engine, kind, &invocation.body, &message).await {
        Ok(outcome) => {
            info!(function, outcome = %outcome.describe(), "task finished");
            Json(result_body(vec![format!(
                "{} task {}",
                kind.as_str(),
                outcome.describe()
            )]))
            .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(result_body(vec![format!(
                "{} task failed: {e}",
                kind.as_str()
            )])),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_envelope_parsed() {
        let envelope = json!({
            "Data": { "msg": "{\"jobId\":\"j\",\"collection\":0,\"chunk\":1}" },
            "Metadata": { "Id": "m1", "DequeueCount": 2 }
        });
        let parsed = parse_queue_invocation(&envelope).unwrap();
        assert_eq!(parsed.body, r#"{"jobId":"j","collection":0,"chunk":1}"#);
        assert_eq!(parsed.message_id, "m1");
        assert_eq!(parsed.dequeue_count, 2);
    }

    #[test]
    fn double_encoded_envelope_parsed() {
        let inner = r#"{"jobId":"j","collection":0,"chunk":1}"#;
        let once = serde_json::to_string(inner).unwrap();
        let envelope = json!({
            "Data": { "msg": once },
            "Metadata": { "Id": "\"m1\"", "DequeueCount": "\"3\"" }
        });
        let parsed = parse_queue_invocation(&envelope).unwrap();
        assert_eq!(parsed.body, inner);
        assert_eq!(parsed.message_id, "m1");
        assert_eq!(parsed.dequeue_count, 3);
    }

    #[test]
    fn object_message_parsed() {
        let envelope = json!({ "Data": { "msg": { "jobId": "j" } }, "Metadata": {} });
        let parsed = parse_queue_invocation(&envelope).unwrap();
        assert_eq!(parsed.body, r#"{"jobId":"j"}"#);
        assert_eq!(parsed.dequeue_count, 1);
    }

    #[test]
    fn missing_data_rejected() {
        assert!(parse_queue_invocation(&json!({ "Metadata": {} })).is_err());
        assert!(parse_queue_invocation(&json!({ "Data": {} })).is_err());
    }
}
