//! API errors: a status code and a `{"detail": "..."}` body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer; the text is the `detail` a client shows as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (JSON syntax, query parameters).
    #[error("{0}")]
    BadRequest(String),
    /// 401: a write without the right bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such model, record or endpoint.
    #[error("{0}")]
    NotFound(String),
    /// 405: the endpoint does not take that method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the model is owned by a manifest file, or the request conflicts with state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than 64 KiB.
    #[error("{0}")]
    TooLarge(String),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: a field failed validation.
    #[error("{0}")]
    Invalid(String),
    /// 429: too many log streams are followed at once.
    #[error("{0}")]
    TooManyRequests(String),
    /// 500: the server failed (a value the store could not encode or decode).
    #[error("{0}")]
    Internal(String),
    /// 503: the store met an I/O error other than a full disk; the write was not made.
    #[error("{0}")]
    Unavailable(String),
    /// 507: the disk holding the store is full; the write was not made.
    #[error("{0}")]
    InsufficientStorage(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (
            status,
            Json(serde_json::json!({ "detail": self.to_string() })),
        )
            .into_response()
    }
}
