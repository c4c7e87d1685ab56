//! Reports and the integrity check, moved here from the poster's port so that its pool serves
//! commits only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::accounts::AsOfQuery;
use super::errors::{ApiError, ApiResult, ErrorCode, Params};
use super::position::{Applied, Consistency};
use super::ApiState;
use crate::store::history::Position;
use crate::store::reports::{self, AccountBalanceRow, TrialBalanceRow};
use crate::verify::IntegrityReport;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnyEntity {
    /// Only this entity (default: every entity).
    pub entity: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OneEntity {
    /// The entity reported on.
    pub entity: String,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Period {
    /// The first effective date counted (default: the beginning); the last is `as_of_date`.
    pub from: Option<NaiveDate>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Report<T: ToSchema> {
    pub rows: Vec<T>,
    pub applied: Vec<Position>,
}

/// Debit and credit totals per entity and currency (equal when the ledger balances).
#[utoipa::path(get, path = "/v1/reports/trial-balance", tag = "reports",
    params(AnyEntity, AsOfQuery, Consistency),
    responses((status = 200, body = Report<TrialBalanceRow>), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn trial_balance(
    State(s): State<ApiState>,
    Params(e): Params<AnyEntity>,
    Params(t): Params<AsOfQuery>,
    Applied(applied): Applied,
) -> ApiResult<Report<TrialBalanceRow>> {
    let entity = e.entity.as_deref();
    let rows = reports::trial_balance(&s.pool, entity, t.as_of_date, t.as_of_time).await?;
    Ok(Json(Report { rows, applied }))
}

/// An entity's assets, liabilities and equity (with current earnings) per currency.
#[utoipa::path(get, path = "/v1/reports/balance-sheet", tag = "reports",
    params(OneEntity, AsOfQuery, Consistency),
    responses((status = 200, body = Report<AccountBalanceRow>), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn balance_sheet(
    State(s): State<ApiState>,
    Params(e): Params<OneEntity>,
    Params(t): Params<AsOfQuery>,
    Applied(applied): Applied,
) -> ApiResult<Report<AccountBalanceRow>> {
    let rows = reports::balance_sheet(&s.pool, &e.entity, t.as_of_date, t.as_of_time).await?;
    Ok(Json(Report { rows, applied }))
}

/// An entity's income and expense accounts with their activity from `from`.
#[utoipa::path(get, path = "/v1/reports/income-statement", tag = "reports",
    params(OneEntity, Period, AsOfQuery, Consistency),
    responses((status = 200, body = Report<AccountBalanceRow>), (status = "4XX", body = ApiError, content_type = "application/problem+json"),
              (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn income_statement(
    State(s): State<ApiState>,
    Params(e): Params<OneEntity>,
    Params(p): Params<Period>,
    Params(t): Params<AsOfQuery>,
    Applied(applied): Applied,
) -> ApiResult<Report<AccountBalanceRow>> {
    let (from, date, time) = (p.from, t.as_of_date, t.as_of_time);
    let rows = reports::income_statement(&s.pool, &e.entity, from, date, time).await?;
    Ok(Json(Report { rows, applied }))
}

/// Every integrity check (hash chains, balances, pending amounts, ...): 200 when all pass,
/// 409 with the violations otherwise; stopped with REQUEST_TIMEOUT after the API's
/// `--integrity-timeout`.
#[utoipa::path(get, path = "/v1/integrity", tag = "reports",
    responses((status = 200, body = IntegrityReport), (status = 409, body = IntegrityReport),
              (status = "4XX", body = ApiError, content_type = "application/problem+json"), (status = 503, body = ApiError, content_type = "application/problem+json")))]
pub async fn integrity(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let run = crate::verify::run(&s.pool, false);
    let report = match tokio::time::timeout(s.limits.integrity, run).await {
        Ok(report) => report?,
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the integrity check did not finish within {} s",
                    s.limits.integrity.as_secs()
                ),
            ))
        }
    };
    let status = match report.ok {
        true => StatusCode::OK,
        false => StatusCode::CONFLICT,
    };
    Ok((status, Json(report)).into_response())
}
