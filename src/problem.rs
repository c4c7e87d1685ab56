//! Error bodies as RFC 9457 problem details (`application/problem+json`), one shape for every
//! HTTP server of the project: the query API's errors and the services' own 401. Besides the
//! RFC's `type`, `title`, `status` and `detail`, a body carries the stable `code` clients match
//! on, and `message` (the same text as `detail`, as bodies had it before).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

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

impl ErrorCode {
    /// The problem type's summary, the same for every occurrence.
    fn title(self) -> &'static str {
        match self {
            Self::NotSeen => "Request not seen",
            Self::NotFound => "Not found",
            Self::BadRequest => "Bad request",
            Self::BadCursor => "Bad cursor",
            Self::Unauthorized => "Bearer token required",
            Self::MinOffsetsTimeout => "Offsets not applied in time",
            Self::RequestTimeout => "Request timed out",
            Self::Database => "Database unavailable",
            Self::MethodNotAllowed => "Method not allowed",
        }
    }

    /// The code as written in bodies: `NOT_SEEN`.
    fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .expect("codes serialize as strings")
    }
}

/// A problem details body (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// `urn:ledgerline:problem:` and the code: the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The stable code; clients match on this.
    pub code: ErrorCode,
    /// The same text as `detail`.
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            problem_type: format!("urn:ledgerline:problem:{}", code.name()),
            title: code.title().to_string(),
            status: code.status().as_u16(),
            detail: message.clone(),
            code,
            message,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.code == ErrorCode::Unauthorized;
        let code = self.code;
        let mut response = send(code.status(), &code.name(), code.title(), self.detail);
        if unauthorized {
            let headers = response.headers_mut();
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A problem details body with a code of the services' own endpoints (such as `MOVED`), titled
/// by its status.
pub fn response(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    send(status, code, title, detail.into())
}

/// The one place a problem details body is written: `ApiError`'s fields, for any code.
fn send(status: StatusCode, code: &str, title: &str, detail: String) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:ledgerline:problem:{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
        "message": detail,
    });
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// The answer to a request without the bearer token, on every server.
pub fn unauthorized() -> Response {
    ApiError::new(ErrorCode::Unauthorized, "a valid bearer token is required").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_error_is_a_problem_details_body_with_its_stable_code() {
        let response = ApiError::new(ErrorCode::NotSeen, "no request k").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:ledgerline:problem:NOT_SEEN", "title": "Request not seen",
                "status": 404, "detail": "no request k", "code": "NOT_SEEN",
                "message": "no request k"
            })
        );
        // The struct the OpenAPI document describes is the body sent.
        let error = ApiError::new(ErrorCode::BadCursor, "cursor x");
        let described = serde_json::to_value(&error).unwrap();
        let sent = error.into_response().into_body();
        let sent = axum::body::to_bytes(sent, 1 << 16).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&sent).unwrap(),
            described
        );
        let refused = unauthorized();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
