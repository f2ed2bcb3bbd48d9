use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::runtime::engine::Engine;

/// Checks the standalone API key in `x-api-key` (or `x-functions-key`, so clients written for the
/// Functions deployment work unchanged). The health route stays open for probes.
pub async fn require_api_key(
    State(engine): State<Engine>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/api/health" || engine.settings.api_key_disabled {
        return next.run(request).await;
    }
    let Some(expected) = engine.settings.api_key.as_ref() else {
        return ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the service has no API key configured; set VCM_API_KEY",
        )
        .into_response();
    };
    let presented = request
        .headers()
        .get("x-api-key")
        .or_else(|| request.headers().get("x-functions-key"))
        .and_then(|v| v.to_str().ok());
    match presented {
        Some(key) if constant_time_eq(key.as_bytes(), expected.expose().as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the API key is wrong; send the key from VCM_API_KEY in the x-api-key header",
        )
        .into_response(),
        None => ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is required; send it in the x-api-key header",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
