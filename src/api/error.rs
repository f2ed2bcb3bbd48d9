use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

/// An API error: an HTTP status and the body `{ "code", "message" }`, sometimes with details.
///
/// Bad input passes its reason through; internal failures are logged once here and the client
/// gets a generic message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// The body of every error response. Some errors add fields: a rejected command adds the job's
/// `state` and its `allowedCommands`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody<'a> {
    /// A stable, machine-readable code such as `notFound` or `commandNotAllowed`.
    #[schema(value_type = String, example = "notFound")]
    code: &'a str,
    /// What failed, on which value, and what to do next.
    #[schema(value_type = String, example = "no job has id 42; list jobs with GET /api/jobs")]
    message: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    details: Option<&'a Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "notFound", message)
    }

    /// An unexpected failure; `error` is logged, never sent.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        let text = crate::secrets::redact_connection_string(&error.to_string());
        tracing::error!(error = %text, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internalError",
            "the service failed to handle the request; see the service log for the cause",
        )
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Messages may quote what the caller sent, and a caller may send a connection string
        // in any field. No response repeats its password, whatever the branch that built it.
        let message = crate::secrets::redact_connection_string(&self.message);
        let body = ErrorBody {
            code: self.code,
            message: &message,
            details: self.details.as_ref(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::state::StoreError> for ApiError {
    fn from(e: crate::state::StoreError) -> Self {
        match e {
            crate::state::StoreError::NameTaken(name) => ApiError::new(
                StatusCode::CONFLICT,
                "nameTaken",
                format!("a job named {name:?} already exists; choose another name"),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::runtime::engine::EngineError> for ApiError {
    fn from(e: crate::runtime::engine::EngineError) -> Self {
        match e {
            crate::runtime::engine::EngineError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

/// Largest plain-text rejection body read back for rewriting, in bytes.
const MAX_REJECTION_BYTES: usize = 16 * 1024;

/// Rewrites axum's plain-text rejections under `/api` (a body over the size limit, a path
/// segment of the wrong type) into the API's `{code, message}` shape, so every client error
/// parses the same way.
pub(crate) async fn json_rejections(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let under_api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !under_api || !status.is_client_error() || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_REJECTION_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let text = match text.trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("the request was rejected"),
        trimmed => trimmed,
    };
    let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        // 2 MiB is axum's default body limit, which the router keeps.
        ApiError::new(
            status,
            "bodyTooLarge",
            "the request body is over the 2 MiB limit; split the job's collections across \
             several jobs",
        )
    } else {
        ApiError::new(
            status,
            "invalidRequest",
            format!("{text}; GET /api/openapi.json lists each route's parameters"),
        )
    };
    error.into_response()
}
