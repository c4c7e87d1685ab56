//! Every error the API answers with: a typed JSON body with a stable code.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The stable codes; clients match on these, not on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No request with this idempotency key has been applied (yet).
    NotSeen,
    /// No such account or entry, or no such route.
    NotFound,
    /// A parameter is missing, malformed or out of range.
    BadRequest,
    /// The cursor is not one this list handed out.
    BadCursor,
    /// A bearer token is required and the one given (if any) is not it.
    Unauthorized,
    /// The ledger did not apply the requested `min_offsets` within the wait.
    MinOffsetsTimeout,
    /// The request took longer than the API's time limit.
    RequestTimeout,
    /// The database cannot be reached or refused the work.
    Database,
    /// The route exists but not with this method.
    MethodNotAllowed,
}

impl ErrorCode {
    fn status(self) -> StatusCode {
        match self {
            Self::NotSeen | Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest | Self::BadCursor => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            // The client's own precondition was not met in time: not a server failure.
            Self::MinOffsetsTimeout => StatusCode::PRECONDITION_FAILED,
            Self::RequestTimeout | Self::Database => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        match self.code {
            ErrorCode::Unauthorized => {
                (status, [(header::WWW_AUTHENTICATE, "Bearer")], Json(self)).into_response()
            }
            _ => (status, Json(self)).into_response(),
        }
    }
}

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
