//! HTTP: `/health` (process up), `/ready` (can make progress), `/metrics` (Prometheus),
//! `/recovery` (last committed batch per partition, JSON).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;

use crate::health::Health;

/// Anything that can show its metrics in the Prometheus text format.
pub trait MetricsText: Send + Sync {
    fn render(&self) -> String;
}

#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub metrics: Arc<dyn MetricsText>,
    pub pool: PgPool,
    /// The poster's consumer group: enables `/recovery`.
    pub group: Option<String>,
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    if state.group.is_some() {
        router = router.route("/recovery", get(recovery));
    }
    router.with_state(state)
}

async fn ready(State(s): State<AppState>) -> Response {
    let r = s.health.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn recovery(State(s): State<AppState>) -> Response {
    let group = s.group.as_deref().unwrap_or_default();
    match crate::store::checkpoints::recovery(&s.pool, group).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// Binds and serves until `shutdown` resolves. Fails clearly when the address is taken.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "HTTP listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }))
}
