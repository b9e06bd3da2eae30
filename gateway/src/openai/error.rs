//! Errors in OpenAI's shape: `{"error": {"message", "type", "param",
//! "code"}}` with the HTTP status its SDKs map to their exception types
//! (400 `BadRequestError`, 401 `AuthenticationError`, 403
//! `PermissionDeniedError`, 404 `NotFoundError`, 429 `RateLimitError` with
//! `Retry-After`, 5xx `InternalServerError`). A gRPC status from the shared
//! request path becomes one here, in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;

use crate::request::error::RETRY_AFTER;

/// Longest message an error carries (the request path's messages are
/// bounded already; this bounds what a decoder wrote around a value).
const MAX_MESSAGE_BYTES: usize = 240;

/// One error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`,
    /// `permission_error`, `not_found_error`, `rate_limit_error`,
    /// `server_error`.
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A stable machine-readable code (`invalid_api_key`,
    /// `model_not_found`, `rate_limit_exceeded`, ...).
    pub code: Option<&'static str>,
    /// Seconds after which a retry may succeed (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400, naming the field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::bad_request(message)
        }
    }

    /// 400 for the request as a whole (a body that is not JSON).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 for a field this front does not serve, or a value it does not.
    pub fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some("unsupported_parameter"),
            ..ApiError::invalid(param, message)
        }
    }

    /// 404 for a path that is not part of the API.
    pub fn no_route(path: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no such endpoint `{}`: this gateway serves POST /v1/chat/completions, \
                 POST /v1/completions, POST /v1/embeddings and GET /v1/models",
                mig_serve::limits::shown(path)
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("unknown_url"),
            retry_after: None,
        }
    }

    /// 405 for a known path called with another method.
    pub fn method_not_allowed() -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "method not allowed on this endpoint".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("method_not_allowed"),
            retry_after: None,
        }
    }

    /// The answer to a gRPC status from the request path.
    pub fn from_status(status: &tonic::Status) -> ApiError {
        let message =
            mig_serve::limits::shown_within(status.message(), MAX_MESSAGE_BYTES).into_owned();
        let retry_after = status
            .metadata()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let (status, kind, code, param) = match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None, None)
            }
            Code::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                Some("invalid_api_key"),
                None,
            ),
            Code::PermissionDenied => (
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("model_not_allowed"),
                Some("model"),
            ),
            Code::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found_error",
                Some("model_not_found"),
                Some("model"),
            ),
            Code::ResourceExhausted => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                None,
            ),
            Code::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("unavailable"),
                None,
            ),
            Code::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                Some("timeout"),
                None,
            ),
            Code::Cancelled => (
                // nginx's "client closed request": nobody reads it.
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                Some("cancelled"),
                None,
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
        };
        ApiError {
            status,
            message,
            kind,
            param: param.map(str::to_string),
            code,
            retry_after,
        }
    }

    /// The `{"error": {...}}` object (also an SSE event's data).
    pub fn body(&self) -> serde_json::Value {
        let message = mig_serve::limits::shown_within(&self.message, MAX_MESSAGE_BYTES);
        json!({
            "error": {
                "message": message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body());
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `value` as an `application/json` response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_refusal_is_429_with_retry_after() {
        let mut status = tonic::Status::resource_exhausted("tenant `a` is over its tokens");
        status
            .metadata_mut()
            .insert(RETRY_AFTER, tonic::metadata::MetadataValue::from(7u64));
        let e = ApiError::from_status(&status);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(7));
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn every_code_has_an_http_status_and_a_type() {
        for (code, http) in [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::ResourceExhausted, 429),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ] {
            let e = ApiError::from_status(&tonic::Status::new(code, "x"));
            assert_eq!(e.status.as_u16(), http, "{code:?}");
            let body = e.body();
            assert_eq!(body["error"]["message"], "x");
            assert!(body["error"]["type"].is_string());
        }
    }

    #[test]
    fn a_long_message_is_cut() {
        let e = ApiError::invalid("prompt", "x".repeat(10_000));
        let shown = e.body()["error"]["message"].as_str().unwrap().len();
        assert!(shown < 400, "{shown} bytes");
    }
}
