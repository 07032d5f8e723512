//! API errors: one enum, mapped to status codes in one exhaustive `match`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::hub::HubError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("please log in first")]
    Unauthenticated,
    #[error("the user name or password is wrong")]
    BadCredentials,
    #[error("your account may not do this")]
    Forbidden,
    #[error("the page was open too long: reload it and try again")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts: wait a minute and try again")]
    RateLimited,
    /// Every licensed seat is taken; the message says so plainly.
    #[error("{0}")]
    NoSeat(String),
    /// A service of the appliance (licence manager, supervisor) did not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "something went wrong on the support box; try again, and tell the administrator if it persists"
    )]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub error: &'static str,
    /// A sentence a person can act on.
    pub message: String,
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::NoSeat(_) => (StatusCode::FORBIDDEN, "no_licence_seat"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(e) = &self {
            let chain = crate::error_chain(e.as_ref());
            tracing::error!(error = %chain, "request failed");
        }
        let mut resp = (
            status,
            Json(ErrorBody {
                error: code,
                message: self.to_string(),
            }),
        )
            .into_response();
        if matches!(self, ApiError::RateLimited) {
            resp.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("60"));
        }
        resp
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::NotFound => ApiError::NotFound(e.to_string()),
            HubError::Forbidden => ApiError::Forbidden,
            HubError::AlreadyTaken
            | HubError::WrongState
            | HubError::Offline
            | HubError::NeedsView
            | HubError::AlreadyGranted => ApiError::Conflict(e.to_string()),
            HubError::Db(d) => d.into(),
        }
    }
}
