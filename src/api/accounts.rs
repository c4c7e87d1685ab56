//! Accounts: the list, one account now or as of a time, and an account's history.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::errors::{ApiError, ApiResult, ErrorCode, Params, PathParam};
use super::paging::{self, Page, PageParams};
use super::position::{Applied, Consistency};
use super::ApiState;
use crate::domain::account::AccountType;
use crate::store::history::{self, AccountFilter, AccountLine, AccountSummary, Position};
use crate::store::history::{Bound, LineKey, TimeFilter};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountsQuery {
    /// Only this entity's accounts.
    pub entity: Option<String>,
    /// Only accounts of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", inline)]
    pub account_type: Option<AccountType>,
    /// Only accounts in this asset (currency code).
    pub asset: Option<String>,
}

/// Accounts in id order, with their current figures.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts",
    params(AccountsQuery, PageParams, Consistency),
    responses((status = 200, body = Page<AccountSummary>), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn accounts(
    State(s): State<ApiState>,
    Params(q): Params<AccountsQuery>,
    Params(p): Params<PageParams>,
    Applied(applied): Applied,
) -> ApiResult<Page<AccountSummary>> {
    const LIST: &str = "accounts";
    let limit = p.limit()?;
    let after: Option<String> = match &p.cursor {
        Some(text) => Some(paging::decode::<String>(LIST, text)?.1),
        None => None,
    };
    let filter = AccountFilter {
        entity: q.entity,
        account_type: q.account_type,
        asset: q.asset,
    };
    let rows = history::accounts(&s.pool, &filter, after.as_deref(), limit + 1).await?;
    let key = |a: &AccountSummary| a.id.clone();
    Ok(Json(paging::page(LIST, rows, limit, key, vec![], applied)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// The balance as of this effective date (valid time), inclusive.
    pub as_of_date: Option<NaiveDate>,
    /// The balance as the ledger had recorded it at this instant (transaction time).
    pub as_of_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountResponse {
    /// The account with its figures now (pending amounts and available balance are present-tense).
    pub account: AccountSummary,
    /// The posted balance as of `as_of_date` / `as_of_time`, when either was given.
    pub balance_as_of: Option<Decimal>,
    pub applied: Vec<Position>,
}

/// One account: balance, pending amounts, available balance and version; optionally its
/// balance as of a valid time and/or a transaction time.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "The account id"), AsOfQuery, Consistency),
    responses((status = 200, body = AccountResponse), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn account(
    State(s): State<ApiState>,
    PathParam(id): PathParam<String>,
    Params(q): Params<AsOfQuery>,
    Applied(applied): Applied,
) -> ApiResult<AccountResponse> {
    let Some(account) = history::account(&s.pool, &id).await? else {
        return Err(no_account(&id));
    };
    let balance_as_of = match (q.as_of_date, q.as_of_time) {
        (None, None) => None,
        (date, time) => Some(crate::store::reports::balance_as_of(&s.pool, &id, date, time).await?),
    };
    Ok(Json(AccountResponse {
        account,
        balance_as_of,
        applied,
    }))
}

fn no_account(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no account {id:?}"))
}

/// Valid-time and transaction-time ranges, both ends inclusive.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimeQuery {
    /// Effective dates from this day.
    pub valid_from: Option<NaiveDate>,
    /// Effective dates up to this day.
    pub valid_to: Option<NaiveDate>,
    /// Recorded at or after this instant.
    pub recorded_from: Option<DateTime<Utc>>,
    /// Recorded at or before this instant.
    pub recorded_to: Option<DateTime<Utc>>,
}

impl From<TimeQuery> for TimeFilter {
    fn from(q: TimeQuery) -> Self {
        Self {
            valid_from: q.valid_from,
            valid_to: q.valid_to,
            recorded_from: q.recorded_from,
            recorded_to: q.recorded_to,
        }
    }
}

/// An account's lines in valid-time order (effective date, then recorded at), paged.
#[utoipa::path(get, path = "/v1/accounts/{id}/entries", tag = "accounts",
    params(("id" = String, Path, description = "The account id"), TimeQuery, PageParams, Consistency),
    responses((status = 200, body = Page<AccountLine>), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn account_entries(
    State(s): State<ApiState>,
    PathParam(id): PathParam<String>,
    Params(q): Params<TimeQuery>,
    Params(p): Params<PageParams>,
    Applied(applied): Applied,
) -> ApiResult<Page<AccountLine>> {
    let list = format!("account {id}");
    let limit = p.limit()?;
    let (walk, after) = paging::walk_of::<LineKey>(&list, &p, &applied)?;
    let bound = Bound::new(&walk);
    let time = TimeFilter::from(q);
    let rows =
        history::account_lines(&s.pool, &id, &bound, &time, after.as_ref(), limit + 1).await?;
    // Only an empty page asks whether the account exists (a quiet account, or none).
    if rows.is_empty() && history::account(&s.pool, &id).await?.is_none() {
        return Err(no_account(&id));
    }
    Ok(Json(paging::page(
        &list,
        rows,
        limit,
        AccountLine::key,
        walk,
        applied,
    )))
}
