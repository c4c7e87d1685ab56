//! `GET /v1/rejections`: refused requests with their reasons, paged.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::errors::{ApiError, ApiResult, Params};
use super::paging::{self, Page, PageParams};
use super::position::{Applied, Consistency};
use super::ApiState;
use crate::store::history::{self, Bound, Rejection, RejectionFilter, RejectionKey};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RejectionsQuery {
    /// Only this reason code (e.g. UNBALANCED).
    pub reason: Option<String>,
    /// Only requests from this source system.
    pub source: Option<String>,
    /// Rejected at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Rejected at or before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Include each request's bytes as received (hex).
    pub include_raw: Option<bool>,
}

/// Rejected requests in time order (rejected at, then id), paged.
#[utoipa::path(get, path = "/v1/rejections", tag = "rejections",
    params(RejectionsQuery, PageParams, Consistency),
    responses((status = 200, body = Page<Rejection>), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn rejections(
    State(s): State<ApiState>,
    Params(q): Params<RejectionsQuery>,
    Params(p): Params<PageParams>,
    Applied(applied): Applied,
) -> ApiResult<Page<Rejection>> {
    const LIST: &str = "rejections";
    let limit = p.limit()?;
    let (walk, after) = paging::walk_of::<RejectionKey>(LIST, &p, &applied)?;
    let filter = RejectionFilter {
        reason: q.reason,
        source: q.source,
        from: q.from,
        to: q.to,
        include_raw: q.include_raw.unwrap_or(false),
    };
    let bound = Bound::new(&walk);
    let rows = history::rejections(&s.pool, &filter, &bound, after.as_ref(), limit + 1).await?;
    let key = |r: &Rejection| RejectionKey(r.rejected_at, r.id);
    Ok(Json(paging::page(LIST, rows, limit, key, walk, applied)))
}
