//! The HTTP surface, one module per area; `router` puts them together.

pub mod deadletter;
pub mod health;
pub mod inference;
pub mod openapi;
pub mod panel;
pub mod statistics;
pub mod v2;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use crate::dashboard;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let dashboard = ServeDir::new(&state.config.dashboard_dir);
    Router::new()
        .route("/api/v1/inference/submit", post(inference::submit))
        .route("/api/v1/inference/batch", post(inference::batch))
        .route("/api/v1/inference/run", post(inference::run))
        .route(
            "/api/v1/inference/panel",
            // The only route whose body may be larger than ORBIT_MAX_BODY_BYTES: this layer,
            // inside the router's, has the last word for it.
            post(panel::panel).layer(DefaultBodyLimit::max(state.config.panel.max_body_bytes)),
        )
        .route("/api/v1/inference/results", get(inference::results))
        .route("/api/v1/inference/{job_id}", get(inference::status))
        .route("/api/v1/inference/{job_id}/record", get(inference::record))
        .route(
            crate::auth::RELAY_ROUTE,
            get(dashboard::connection::upgrade),
        )
        .route("/api/v1/statistics", get(statistics::statistics))
        .route("/api/v1/models", get(statistics::models))
        .route("/api/v1/deadletter", get(deadletter::list))
        .route("/api/v1/deadletter/redrive", post(deadletter::redrive_many))
        .route("/api/v1/deadletter/{id}", get(deadletter::one))
        .route(
            "/api/v1/deadletter/{id}/redrive",
            post(deadletter::redrive_one),
        )
        .route("/api/{*rest}", any(unknown_route))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/stats", get(v2::stats::all))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route("/v2/models/{model}/config", get(v2::model_config))
        .route("/v2/models/{model}/stats", get(v2::stats::model))
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(v2::version_metadata),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(v2::version_ready),
        )
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(v2::stats::version),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .route("/v2/repository/index", post(v2::repository_index))
        .fallback_service(dashboard)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            crate::auth::authorize,
        ))
        .layer(middleware::from_fn(count_requests))
        .layer(middleware::from_fn(crate::request_trace::trace))
        // The request's path, never its query: `?access_token=` carries a key.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .with_state(state)
}

/// Counts every request by route template (`/api/v1/inference/{job_id}`, never the id
/// itself, so the series stay few), method and status, and times it: what OpenFaaS's
/// `gateway_function_invocation_total` and `gateway_functions_seconds` give per function.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |path| path.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("orbit_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("orbit_http_requests_total", "route" => route, "method" => method,
        "status" => status)
    .increment(1);
    response
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound("no such API route; see README.md for the API".into())
}
