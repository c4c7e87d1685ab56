//! What every API request goes through: a request id, the time limit, the bearer token, and
//! the per-route metrics and log line.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::errors::{ApiError, ErrorCode};
use super::ApiState;

pub const REQUEST_ID: &str = "x-request-id";

/// Per-route request counts by status and latencies.
pub struct ApiMetrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl ApiMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ledgerline_api_requests_total",
                "Query API requests by route and HTTP status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ledgerline_api_request_duration_seconds",
                "Query API request time by route, including any min_offsets wait",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique");
        Self {
            registry,
            requests,
            latency,
        }
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The caller's `x-request-id` when it is a sensible token, a new one otherwise; echoed back.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Request id, time limit, metrics and one log line per request.
pub async fn observe(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unmatched)".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let limit = match route.as_str() {
        "/v1/integrity" => s.limits.integrity + std::time::Duration::from_secs(5),
        _ => s.limits.request,
    };
    let started = Instant::now();
    let span = tracing::info_span!("api", request_id = %id, %route);
    let run = tracing::Instrument::instrument(next.run(request), span);
    let mut response = match tokio::time::timeout(limit, run).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    };
    let elapsed = started.elapsed();
    let status = response.status();
    s.metrics
        .requests
        .with_label_values(&[&route, status.as_str()])
        .inc();
    s.metrics
        .latency
        .with_label_values(&[&route])
        .observe(elapsed.as_secs_f64());
    let ms = elapsed.as_secs_f64() * 1e3;
    match status.as_u16() {
        500.. => {
            tracing::warn!(request_id = %id, %method, %route, status = status.as_u16(), ms, "request failed")
        }
        400.. => {
            tracing::info!(request_id = %id, %method, %route, status = status.as_u16(), ms, "request refused")
        }
        _ => {
            tracing::debug!(request_id = %id, %method, %route, status = status.as_u16(), ms, "request")
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Refuses a request without the configured bearer token (compared in constant time).
pub async fn require_token(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(request).await;
    };
    if crate::http::bearer_matches(request.headers(), token) {
        next.run(request).await
    } else {
        crate::problem::unauthorized()
    }
}

/// Per route (as the OpenAPI document names it), the query parameters it takes.
pub type KnownParameters = std::collections::HashMap<String, std::collections::HashSet<String>>;

/// The query parameters of every GET operation of the document.
pub fn known_parameters(api: &utoipa::openapi::OpenApi) -> KnownParameters {
    use utoipa::openapi::path::ParameterIn;
    api.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let names = item
                .get
                .iter()
                .flat_map(|op| op.parameters.iter().flatten())
                .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                .map(|p| p.name.clone())
                .collect();
            (path.clone(), names)
        })
        .collect()
}

/// Refuses a query parameter the route does not take: a misspelt filter would otherwise be
/// ignored and answer with more than was asked for.
pub async fn refuse_unknown_parameters(
    State(known): State<std::sync::Arc<KnownParameters>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str());
    let allowed = route.and_then(|r| known.get(r));
    let given = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri());
    if let (Some(allowed), Ok(given)) = (allowed, given) {
        if let Some((name, _)) = given.0.iter().find(|(n, _)| !allowed.contains(n)) {
            let mut names: Vec<&String> = allowed.iter().collect();
            names.sort();
            let message = format!("unknown query parameter {name:?}; this route takes {names:?}");
            return ApiError::bad_request(message).into_response();
        }
    }
    next.run(request).await
}
