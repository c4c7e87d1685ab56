//! `ledgerline api`: the read service for upstream and downstream systems, under `/v1`, on its
//! own port with its own read-only pool. Every answer says up to which offset the ledger has
//! applied each partition (`applied`), and any request may wait for offsets it names
//! (`min_offsets`, `position.rs`). Lists are cursor-paged over a fixed walk (`paging.rs`).
//! The OpenAPI document is generated from these handlers (utoipa) and committed as
//! `docs/openapi.json`.

mod accounts;
mod entries;
pub mod errors;
mod middleware;
pub mod paging;
pub mod position;
mod rejections;
mod reports;
mod requests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sqlx::PgPool;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Secret;
use errors::{ApiError, ErrorCode};
pub use middleware::ApiMetrics;

/// The API's time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Any request but the integrity check (includes a `min_offsets` wait).
    pub request: Duration,
    /// The integrity check, which reads the whole journal.
    pub integrity: Duration,
}

#[derive(Clone)]
pub struct ApiState {
    pub pool: PgPool,
    /// The poster's consumer group, whose checkpoints say what is applied.
    pub group: Arc<str>,
    /// The postings topic that `min_offsets` names offsets of.
    pub topic: Arc<str>,
    pub token: Option<Secret>,
    pub limits: Limits,
    pub metrics: Arc<ApiMetrics>,
}

/// The routes and the OpenAPI document generated from them.
pub fn router(state: ApiState) -> (axum::Router, OpenApi) {
    let (v1, api) = routes().split_for_parts();
    let known = Arc::new(middleware::known_parameters(&api));
    let v1 = v1
        .route_layer(axum::middleware::from_fn_with_state(
            known,
            middleware::refuse_unknown_parameters,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_token,
        ));
    let document = api.clone();
    let open = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        .route("/ready", axum::routing::get(ready))
        .route("/metrics", axum::routing::get(metrics))
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move { Json(document) }),
        );
    let router = open
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state);
    (router, api)
}

fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(document_info())
        .routes(routes!(requests::request_outcome))
        .routes(routes!(accounts::accounts))
        .routes(routes!(accounts::account))
        .routes(routes!(accounts::account_entries))
        .routes(routes!(entries::entries))
        .routes(routes!(entries::entry))
        .routes(routes!(rejections::rejections))
        .routes(routes!(reports::trial_balance))
        .routes(routes!(reports::balance_sheet))
        .routes(routes!(reports::income_statement))
        .routes(routes!(reports::integrity))
}

fn document_info() -> OpenApi {
    let mut api = OpenApi::default();
    api.info.title = "ledgerline query API".into();
    api.info.version = "1".into();
    api.info.description = Some(
        "Read-only. Every answer lists `applied`: per partition of the consumer group, the \
         offset below which the ledger has applied the topic. `min_offsets` makes a request \
         wait (at most `wait_ms`) until the offsets it names are applied. Lists are paged by \
         opaque cursors over a walk fixed to the positions applied when it began. Errors are \
         typed bodies with a stable `code`."
            .into(),
    );
    let bearer = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", bearer);
    api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    api
}

/// The OpenAPI document, pretty-printed (what docs/openapi.json holds).
pub fn openapi_json() -> String {
    let (_, api) = routes().split_for_parts();
    api.to_pretty_json().expect("the document serializes")
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "the API only answers GET")
}

/// Ready when the database answers with the schema this binary knows.
async fn ready(State(s): State<ApiState>) -> Response {
    match crate::store::require_current_schema(&s.pool).await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "ready": true }))).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reasons": [e.to_string()] })),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let text = crate::metrics::render(&s.metrics.registry, "api");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Serves the API on `addr` until `shutdown` resolves.
pub async fn serve_api(
    addr: std::net::SocketAddr,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (router, _) = router(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "query API listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
