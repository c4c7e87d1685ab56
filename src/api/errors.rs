//! Every error the API answers with: a problem details body with a stable code
//! (`crate::problem`), from the store's errors and the extractors' refusals.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::Json;

pub use crate::problem::{ApiError, ErrorCode};
use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            StoreError::Conflict(m) => Self::bad_request(m),
            // A data exception (class 22): a value PostgreSQL cannot take, such as a NUL byte
            // in a text parameter, is the request's fault.
            StoreError::Sql(sqlx::Error::Database(db))
                if db.code().is_some_and(|c| c.starts_with("22")) =>
            {
                Self::bad_request(db.message().to_string())
            }
            e => {
                tracing::warn!(error = %e, "query failed");
                Self::new(ErrorCode::Database, e.to_string())
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

/// A query string parsed into `T`, refused with a typed body.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Params<T>(pub T);

/// A path parameter parsed into `T`, refused with a typed body.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParam<T>(pub T);

/// The answer of every handler.
pub type ApiResult<T> = Result<Json<T>, ApiError>;
