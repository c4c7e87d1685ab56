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
    /// When set, endpoints that reveal ledger data require `Authorization: Bearer <token>`.
    pub token: Option<crate::config::Secret>,
}

/// `/health`, `/ready`, `/metrics` and the status page's static HTML stay open; everything that
/// reveals ledger data (recovery, status figures) is behind the token when one is configured
/// (`LEDGERLINE_HTTP_TOKEN` or `LEDGERLINE_HTTP_TOKEN_FILE`; `config::http_token` refuses an
/// empty one, which would match a request without a token).
pub fn router(state: AppState) -> Router {
    let mut open = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    for (old, new) in MOVED {
        open = open.route(old, get(move || moved(new)));
    }
    if state.group.is_some() {
        // The poster's: the reporter has no protected routes (a layer over none is refused).
        let protected: Router<AppState> = Router::new()
            .route("/recovery", get(recovery))
            .route("/status", get(status))
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                require_token,
            ));
        open = open.route("/", get(status_page)).merge(protected);
    }
    open.with_state(state)
}

async fn require_token(
    State(s): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &s.token else {
        return next.run(request).await;
    };
    if bearer_matches(request.headers(), token) {
        next.run(request).await
    } else {
        // The same problem details body as the query API's 401.
        crate::problem::unauthorized()
    }
}

/// Whether the request's `Authorization: Bearer ...` is `token` (compared in constant time).
pub(crate) fn bearer_matches(
    headers: &axum::http::HeaderMap,
    token: &crate::config::Secret,
) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.expose().as_bytes())
}

/// Compares without revealing, through timing, how much of the token was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
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
        Err(e) => {
            crate::problem::response(StatusCode::SERVICE_UNAVAILABLE, "DATABASE", e.to_string())
        }
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
        Err(e) => return store_error(e),
    };
    let drifting = crate::store::anomalies::active_causes(
        &s.pool,
        crate::domain::anomaly::AnomalyKind::BalanceDrift,
    )
    .await
    .ok();
    let holds = crate::store::holds::open_counts(&s.pool)
        .await
        .ok()
        .map(|(open, overdue)| serde_json::json!({ "open": open, "past_expiry": overdue }));
    let audit = crate::store::audit::recent(&s.pool, None, 10).await.ok();
    Json(serde_json::json!({
        "group": group,
        "ready": s.health.readiness(),
        "partitions": recovery,
        "live": s.metrics.snapshot(),
        "integrity": { "drifting_accounts": drifting },
        "holds": holds,
        "audit": audit,
        "now": chrono::Utc::now(),
    }))
    .into_response()
}

/// The report endpoints this port had, and where the query API (`ledgerline api`) answers
/// them now: reports read on their own pool there, so this pool serves commits only.
const MOVED: [(&str, &str); 6] = [
    ("/integrity", "/v1/integrity"),
    ("/reports/trial-balance", "/v1/reports/trial-balance"),
    ("/reports/balance", "/v1/accounts/{id}"),
    ("/reports/balance-sheet", "/v1/reports/balance-sheet"),
    ("/reports/income-statement", "/v1/reports/income-statement"),
    ("/reports/statement", "/v1/accounts/{id}/entries"),
];

async fn moved(new: &'static str) -> Response {
    let detail = format!("moved to the query API (ledgerline api): GET {new}");
    crate::problem::response(StatusCode::GONE, "MOVED", detail)
}

/// The one mapping of store errors to HTTP: not found 404, conflict 409, a database that
/// cannot be reached or refuses work 503, anything else 500; a problem details body.
fn store_error(e: crate::store::StoreError) -> Response {
    use crate::store::posting::{classify, SqlErrorKind};
    use crate::store::StoreError;
    let (status, code) = match &e {
        StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        StoreError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
        StoreError::Connect(_) => (StatusCode::SERVICE_UNAVAILABLE, "DATABASE"),
        StoreError::Sql(sql) if classify(sql) == SqlErrorKind::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "DATABASE")
        }
        StoreError::Sql(_) | StoreError::Migrate(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
        }
    };
    crate::problem::response(status, code, e.to_string())
}

/// Serves a service's operations endpoints (/health, /ready, /metrics, /recovery, /status)
/// until `shutdown` resolves. Fails clearly when the address is taken.
pub async fn serve_ops(
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
