//! Where a job's trace begins: the gateway's span of each request that can make jobs (every
//! `POST`), a child of the caller's `traceparent` when it sent one. The span's context is the
//! task's current trace ([`traces::scope`]) while the request runs, so every job it publishes
//! and every sync call it makes carries it on. The gRPC door does the same per call.

use std::time::SystemTime;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use orbit_runtime::traces::{self, Attribute, Details, Kind, TRACEPARENT};

/// The middleware.
pub async fn trace(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let parent = traces::parse(
        request
            .headers()
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok()),
    );
    if !traces::enabled() {
        return match parent {
            None => next.run(request).await,
            Some(parent) => traces::scope(Some(parent), next.run(request)).await,
        };
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let mut span = traces::open(
        format!("POST {route}"),
        parent,
        SystemTime::now(),
        Details {
            kind: Some(Kind::Server),
            attributes: vec![
                Attribute::new("http.request.method", "POST"),
                Attribute::new("http.route", route),
            ],
            links: Vec::new(),
        },
    );
    let response = traces::scope(span.context(), next.run(request)).await;
    let status = response.status();
    span.set_attribute(Attribute::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.fail(status.to_string());
    }
    span.end();
    response
}
