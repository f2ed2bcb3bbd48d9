//! The monitor page: one self-contained HTML file (inline CSS and JavaScript, no external
//! assets) that lists jobs, shows a job's collections and sends commands through the same API
//! and key as every other client.

use axum::http::header;
use axum::response::IntoResponse;

/// The page, embedded at build time.
const PAGE: &str = include_str!("monitor.html");

/// `GET /api/monitor`.
#[utoipa::path(
    get,
    path = "/api/monitor",
    tag = "service",
    operation_id = "getMonitorPage",
    summary = "Open the monitor page",
    description = "Returns an HTML page that lists jobs, refreshes their progress and steers them. \
        The page asks for the key and sends it with each API request; the page itself needs no key \
        in standalone mode.",
    security(()),
    responses((status = 200, description = "The HTML page.", content_type = "text/html"))
)]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page loads nothing from elsewhere and must not be framed by another site.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
