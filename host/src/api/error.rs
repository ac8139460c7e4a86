//! Every refusal the API gives: a status code and `{"error": {"kind", "message"}}`. The status of
//! a failed call follows its [`ErrorKind`], as the CLI's exit code does:
//!
//! | kind | status |
//! | --- | --- |
//! | `invalid_input` (a body that is not JSON, a bad query) | 400 |
//! | `invalid_input` (a tool input its schema refuses) | 422 |
//! | `unauthorized` | 401 |
//! | `denied`, `host_not_allowed` | 403 |
//! | `not_found` | 404 |
//! | `busy` | 409 |
//! | `limit_exceeded` (input, output, memory, stack, steps), `too_large` | 413 |
//! | `unsupported_media_type` | 415 |
//! | `tool_failed` | 502 |
//! | `unusable`, `interrupted`, `unavailable` | 503 |
//! | `limit_exceeded` (time) | 504 |
//! | `config`, `internal` | 500 |

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{CallError, ErrorKind, Limit};

/// A refusal, as the API sends it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The kind, a word clients branch on.
    pub kind: &'static str,
    /// What went wrong and how to fix it.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A word clients branch on: `invalid_input`, `unauthorized`, `denied`, `not_found`,
    /// `busy`, `limit_exceeded`, `tool_failed`, …
    pub kind: String,
    /// In words, with the fix.
    pub message: String,
}

impl ApiError {
    /// A refusal with this status and kind.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404: the named thing does not exist for this tenant.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: no token, or not a token of any tenant.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A failed call, with the status its kind maps to. An invalid input here is the tool's
    /// input refused by its schema or limits, hence 422.
    pub fn from_call(e: &CallError) -> ApiError {
        let (status, kind) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ErrorKind::Denied => (StatusCode::FORBIDDEN, "denied"),
            ErrorKind::ToolFailed => (StatusCode::BAD_GATEWAY, "tool_failed"),
            ErrorKind::LimitExceeded(Limit::Time) => {
                (StatusCode::GATEWAY_TIMEOUT, "limit_exceeded")
            }
            ErrorKind::LimitExceeded(_) => (StatusCode::PAYLOAD_TOO_LARGE, "limit_exceeded"),
            ErrorKind::Unusable => (StatusCode::SERVICE_UNAVAILABLE, "unusable"),
            ErrorKind::Config => (StatusCode::INTERNAL_SERVER_ERROR, "config"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ErrorKind::Busy => (StatusCode::CONFLICT, "busy"),
            ErrorKind::Interrupted => (StatusCode::SERVICE_UNAVAILABLE, "interrupted"),
            ErrorKind::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, "cancelled"),
        };
        ApiError::new(status, kind, e.message())
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> ApiError {
        ApiError::from_call(&e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_input",
        };
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "the body must be JSON: send `Content-Type: application/json`".to_string()
            }
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than `[serve] max_body_kb` allows".to_string()
            }
            other => other.body_text(),
        };
        // A body that parses but has the wrong shape is still the client's malformed request:
        // 400, like a syntax error, with serde's reason.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        ApiError::new(status, kind, message)
    }
}

/// A JSON request body whose refusals (not JSON, the wrong shape, too large, the wrong content
/// type) are [`ApiError`]s with the reason.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_errors_map_to_their_documented_statuses() {
        let cases = [
            (ErrorKind::InvalidInput, 422),
            (ErrorKind::Denied, 403),
            (ErrorKind::ToolFailed, 502),
            (ErrorKind::LimitExceeded(Limit::Time), 504),
            (ErrorKind::LimitExceeded(Limit::Output), 413),
            (ErrorKind::LimitExceeded(Limit::Input), 413),
            (ErrorKind::Unusable, 503),
            (ErrorKind::Busy, 409),
            (ErrorKind::Interrupted, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            let e = ApiError::from_call(&CallError::new(kind, "x"));
            assert_eq!(e.status.as_u16(), status, "{kind:?}");
        }
    }
}
