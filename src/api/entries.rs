//! Journal entries: the paged list and one entry.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::accounts::TimeQuery;
use super::errors::{ApiError, ApiResult, ErrorCode, Params, PathParam};
use super::paging::{self, Page, PageParams};
use super::position::{Applied, Consistency};
use super::ApiState;
use crate::store::history::{self, Bound, Entry, EntryKey, Position, TimeFilter};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntityQuery {
    /// Only this entity's entries.
    pub entity: Option<String>,
}

/// Entries with their lines in transaction-time order (recorded at, then id), paged.
#[utoipa::path(get, path = "/v1/entries", tag = "entries",
    params(EntityQuery, TimeQuery, PageParams, Consistency),
    responses((status = 200, body = Page<Entry>), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn entries(
    State(s): State<ApiState>,
    Params(e): Params<EntityQuery>,
    Params(q): Params<TimeQuery>,
    Params(p): Params<PageParams>,
    Applied(applied): Applied,
) -> ApiResult<Page<Entry>> {
    const LIST: &str = "entries";
    let limit = p.limit()?;
    let (walk, after) = paging::walk_of::<EntryKey>(LIST, &p, &applied)?;
    let bound = Bound::new(&walk);
    let time = TimeFilter::from(q);
    let entity = e.entity.as_deref();
    let rows = history::entries(&s.pool, entity, &bound, &time, after.as_ref(), limit + 1).await?;
    let key = |e: &Entry| EntryKey(e.recorded_at, e.id);
    Ok(Json(paging::page(LIST, rows, limit, key, walk, applied)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryResponse {
    pub entry: Entry,
    pub applied: Vec<Position>,
}

/// One entry with its lines, what it reverses and what reversed it.
#[utoipa::path(get, path = "/v1/entries/{id}", tag = "entries",
    params(("id" = Uuid, Path, description = "The entry id"), Consistency),
    responses((status = 200, body = EntryResponse), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn entry(
    State(s): State<ApiState>,
    PathParam(id): PathParam<Uuid>,
    Applied(applied): Applied,
) -> ApiResult<EntryResponse> {
    match history::entry(&s.pool, id).await? {
        Some(entry) => Ok(Json(EntryResponse { entry, applied })),
        None => Err(ApiError::new(ErrorCode::NotFound, format!("no entry {id}"))),
    }
}
