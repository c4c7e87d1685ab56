//! HTTP: `/health` (process up), `/ready` (can make progress), `/metrics` (Prometheus),
//! `/recovery` (last committed batch per partition, JSON).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;

use crate::health::Health;

/// Anything that can show its metrics in the Prometheus text format.
pub trait MetricsText: Send + Sync {
    fn render(&self) -> String;

    /// Live figures for the status page (lag per partition, counters), as JSON.
    fn snapshot(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
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
        .route("/metrics", get(metrics))
        .route("/integrity", get(integrity))
        .route("/reports/trial-balance", get(trial_balance))
        .route("/reports/balance", get(balance))
        .route("/reports/balance-sheet", get(balance_sheet))
        .route("/reports/income-statement", get(income_statement))
        .route("/reports/statement", get(statement));
    if state.group.is_some() {
        router = router
            .route("/recovery", get(recovery))
            .route("/", get(status_page))
            .route("/status", get(status));
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

async fn status_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("status.html"))
}

/// What the status page shows: readiness, partitions with lag and last committed batch,
/// counters, and the integrity check's latest finding.
async fn status(State(s): State<AppState>) -> Response {
    let group = s.group.as_deref().unwrap_or_default();
    let recovery = match crate::store::checkpoints::recovery(&s.pool, group).await {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let drifting = crate::store::anomalies::active_causes(
        &s.pool,
        crate::domain::anomaly::AnomalyKind::BalanceDrift,
    )
    .await
    .ok();
    Json(serde_json::json!({
        "group": group,
        "ready": s.health.readiness(),
        "partitions": recovery,
        "live": s.metrics.snapshot(),
        "integrity": { "drifting_accounts": drifting },
        "now": chrono::Utc::now(),
    }))
    .into_response()
}

async fn integrity(State(s): State<AppState>) -> Response {
    match crate::verify::run(&s.pool, false).await {
        Ok(report) => {
            let status = if report.ok {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            };
            (status, Json(report)).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Query parameters of the report endpoints.
#[derive(Debug, serde::Deserialize)]
struct ReportQuery {
    entity: Option<String>,
    account: Option<String>,
    from: Option<chrono::NaiveDate>,
    as_of_date: Option<chrono::NaiveDate>,
    as_of_time: Option<chrono::DateTime<chrono::Utc>>,
}

async fn trial_balance(State(s): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    match crate::store::reports::trial_balance(
        &s.pool,
        q.entity.as_deref(),
        q.as_of_date,
        q.as_of_time,
    )
    .await
    {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn balance(State(s): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let Some(account) = q.account else {
        return missing("account");
    };
    match crate::store::reports::balance_as_of(&s.pool, &account, q.as_of_date, q.as_of_time).await
    {
        Ok(b) => Json(
            serde_json::json!({ "account": account, "balance": b.to_string(),
            "as_of_date": q.as_of_date, "as_of_time": q.as_of_time }),
        )
        .into_response(),
        Err(crate::store::StoreError::NotFound(m)) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": m })),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn balance_sheet(State(s): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let Some(entity) = q.entity else {
        return missing("entity");
    };
    match crate::store::reports::balance_sheet(&s.pool, &entity, q.as_of_date, q.as_of_time).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn income_statement(State(s): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let Some(entity) = q.entity else {
        return missing("entity");
    };
    match crate::store::reports::income_statement(
        &s.pool,
        &entity,
        q.from,
        q.as_of_date,
        q.as_of_time,
    )
    .await
    {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn statement(State(s): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let Some(account) = q.account else {
        return missing("account");
    };
    match crate::store::reports::statement(&s.pool, &account, q.as_of_date, q.as_of_time).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => unavailable(e),
    }
}

fn missing(parameter: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": format!("query parameter {parameter} is required") })),
    )
        .into_response()
}

fn unavailable(e: crate::store::StoreError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response()
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
