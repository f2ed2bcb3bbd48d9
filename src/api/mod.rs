//! The HTTP API (axum): job routes, health, the Functions invocation route, and the API key
//! check for standalone mode. The OpenAPI document and the monitor page need no key, so they sit
//! outside the API key layer.

mod auth;
mod body;
mod error;
mod jobs;
mod monitor;
pub mod openapi;
mod preflight;
mod verification;
mod view;

pub use error::ApiError;

use axum::routing::{get, post};
use axum::Router;

use crate::runtime::engine::Engine;

/// How the router is mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount {
    /// Behind the Functions host: it checks function keys and invokes triggers at `/{function}`.
    FunctionsHost,
    /// Standalone: the API key protects `/api`, and no trigger routes exist.
    Standalone,
}

/// Builds the router for `engine`.
pub fn router(engine: Engine, mount: Mount) -> Router {
    let api = Router::new()
        .route("/api/health", get(jobs::health))
        .route("/api/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route("/api/jobs/validate", post(preflight::validate_job))
        .route("/api/jobs/{id}", get(jobs::get_job))
        .route("/api/jobs/{id}/verify", post(verification::verify_job))
        .route(
            "/api/jobs/{id}/verification",
            get(verification::get_verification),
        )
        .route("/api/jobs/{id}/{command}", post(jobs::run_command))
        .route(
            "/api/jobs/{id}/collections/{index}/recopy",
            post(jobs::recopy_collection),
        )
        .fallback(jobs::unknown_route)
        .method_not_allowed_fallback(jobs::method_not_allowed);

    let api = match mount {
        Mount::Standalone => api.layer(axum::middleware::from_fn_with_state(
            engine.clone(),
            auth::require_api_key,
        )),
        Mount::FunctionsHost => api,
    };

    let mut app = Router::new()
        .route("/", get(jobs::root))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/monitor", get(monitor::page))
        .merge(api);
    if mount == Mount::FunctionsHost {
        app = app.route("/{function}", post(crate::runtime::functions::invoke));
    }
    app.layer(axum::middleware::from_fn(error::json_rejections))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(engine)
}
