//! `GET /v1/requests/{key}`: what became of a request.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::errors::{ApiError, ApiResult, ErrorCode, Params, PathParam};
use super::position::{Applied, Consistency};
use super::ApiState;
use crate::store::history::{Position, Rejection};
use crate::store::requests::{self, RequestOutcome};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawParam {
    /// Include the bytes of rejected requests as received (hex).
    pub include_raw: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestResponse {
    /// The first outcome under this key: every later identical request was a duplicate of it.
    pub request: RequestOutcome,
    /// Later requests under the same key with other contents, each refused.
    pub conflicts: Vec<Rejection>,
    pub applied: Vec<Position>,
}

/// What became of a request: posted (with its entry), rejected (with its reason and source
/// position), held or released; later conflicting requests under its key.
#[utoipa::path(get, path = "/v1/requests/{key}", tag = "requests",
    params(("key" = String, Path, description = "The request's idempotency key"), RawParam, Consistency),
    responses((status = 200, body = RequestResponse), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn request_outcome(
    State(s): State<ApiState>,
    PathParam(key): PathParam<String>,
    Params(q): Params<RawParam>,
    Applied(applied): Applied,
) -> ApiResult<RequestResponse> {
    let raw = q.include_raw.unwrap_or(false);
    let Some(request) = requests::outcome(&s.pool, &key, raw).await? else {
        return Err(ApiError::new(
            ErrorCode::NotSeen,
            format!("the ledger has not applied a request with key {key:?}"),
        ));
    };
    let conflicts = requests::conflicts(&s.pool, &key, raw).await?;
    Ok(Json(RequestResponse {
        request,
        conflicts,
        applied,
    }))
}
