//! `ledgerline api`: the read service for upstream and downstream systems, under `/v1`, with
//! its own port and pool (issue 22; this is its first slice: request outcomes, accounts, the
//! applied positions and the generated OpenAPI document). Every response says up to which
//! offset the ledger has applied each partition of the postings topic.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::openapi::OpenApi;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::holds::Holdings;
use crate::store::requests::RequestOutcome;
use crate::store::StoreError;

#[derive(Clone)]
pub struct ApiState {
    pub pool: PgPool,
    pub group: Arc<str>,
    pub topic: Arc<str>,
}

/// Every error, as a typed body with a stable code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// NOT_SEEN, NOT_FOUND or DATABASE.
    pub code: &'static str,
    pub message: String,
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (status, Json(ApiError { code, message })).into_response()
}

fn database(e: StoreError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "DATABASE", e.to_string())
}

/// How far the ledger has applied one partition: every offset below `next_offset`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    pub partition: i32,
    pub next_offset: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestResponse {
    pub request: RequestOutcome,
    pub applied: Vec<Applied>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountResponse {
    pub account: String,
    pub holdings: Holdings,
    pub applied: Vec<Applied>,
}

async fn applied(s: &ApiState) -> Result<Vec<Applied>, Response> {
    let rows = crate::store::requests::applied(&s.pool, &s.group, &s.topic)
        .await
        .map_err(database)?;
    Ok(rows
        .into_iter()
        .map(|(partition, next_offset)| Applied {
            partition,
            next_offset,
        })
        .collect())
}

/// What became of a request: posted, rejected (with its reason), held or released.
#[utoipa::path(get, path = "/v1/requests/{key}",
    params(("key" = String, Path, description = "The request's idempotency key")),
    responses((status = 200, body = RequestResponse), (status = 404, body = ApiError),
               (status = 503, body = ApiError)))]
async fn request_outcome(State(s): State<ApiState>, Path(key): Path<String>) -> Response {
    let outcome = match crate::store::requests::outcome(&s.pool, &key).await {
        Ok(o) => o,
        Err(e) => return database(e),
    };
    let applied = match applied(&s).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match outcome {
        Some(request) => Json(RequestResponse { request, applied }).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_SEEN",
            format!("the ledger has not seen a request with key {key:?} yet"),
        ),
    }
}

/// An account's posted balance, pending amounts and available balance now.
#[utoipa::path(get, path = "/v1/accounts/{id}",
    params(("id" = String, Path, description = "The account id")),
    responses((status = 200, body = AccountResponse), (status = 404, body = ApiError),
               (status = 503, body = ApiError)))]
async fn account(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let holdings = match crate::store::holds::holdings(&s.pool, &id).await {
        Ok(h) => h,
        Err(e) => return database(e),
    };
    let applied = match applied(&s).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match holdings {
        Some(holdings) => Json(AccountResponse {
            account: id,
            holdings,
            applied,
        })
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no account {id:?}"),
        ),
    }
}

/// The routes and the OpenAPI document generated from them.
pub fn router(state: ApiState) -> (axum::Router, OpenApi) {
    let (router, api) = routes().with_state(state).split_for_parts();
    let document = api.clone();
    let router = router.route(
        "/v1/openapi.json",
        axum::routing::get(move || async move { Json(document) }),
    );
    (router, api)
}

fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(document_info())
        .routes(routes!(request_outcome))
        .routes(routes!(account))
}

fn document_info() -> OpenApi {
    let mut api = OpenApi::default();
    api.info.title = "ledgerline query API".into();
    api.info.version = "1".into();
    api.info.description = Some("Read-only: request outcomes, accounts, positions applied.".into());
    api
}

/// The OpenAPI document, pretty-printed (what docs/openapi.json holds).
pub fn openapi_json() -> String {
    let (_, api) = routes().split_for_parts();
    api.to_pretty_json().expect("the document serializes")
}

/// Serves the API on `addr` until the process is stopped.
pub async fn serve(addr: std::net::SocketAddr, state: ApiState) -> anyhow::Result<()> {
    let (router, _) = router(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "query API listening");
    axum::serve(listener, router).await?;
    Ok(())
}
