//! The one error type at the HTTP edge. Each variant maps to a status code in one `match`
//! ([`ApiError::status`]); the body is always JSON: `{"error": code, "message": text}`
//! plus `"parameter"` when a parameter was wrong. Internal causes are logged once and
//! never shown to clients.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::federation::proof::ProofFetchError;
use crate::federation::FederationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid parameter {name}: {message}")]
    BadParameter { name: String, message: String },

    #[error("invalid request body: {message}")]
    BadBody { message: String },

    #[error("no route {path}; the routes are listed in /api/openapi.json")]
    RouteNotFound { path: String },

    #[error("method {method} is not allowed here; see /api/openapi.json")]
    MethodNotAllowed { method: String },

    #[error("{what} not found")]
    NotFound { what: &'static str },

    #[error("authentication required: log in, or send `Authorization: Bearer <API key>`")]
    Unauthorized,

    #[error("wrong password or API key")]
    BadCredentials,

    #[error("forbidden: {reason}")]
    Forbidden { reason: &'static str },

    #[error("cross-site request refused: {reason}")]
    Csrf { reason: &'static str },

    #[error(
        "too many failed logins or bad keys from your address; try again in {retry_after_secs} s"
    )]
    RateLimited { retry_after_secs: u64 },

    #[error("too many live streams open ({scope}); close one or try again later")]
    TooManyStreams { scope: &'static str },

    #[error("request body too large: at most {limit} bytes")]
    PayloadTooLarge { limit: usize },

    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },

    #[error("unsupported content type: send {expected}")]
    UnsupportedMediaType { expected: &'static str },

    #[error("{message}")]
    Conflict { message: String },

    #[error("{message}")]
    FederationNotConfigured { message: String },

    /// The federation hub did not give what was asked (unreachable, refused, not
    /// certified); the message says why and what to do.
    #[error("{message}")]
    Hub { message: String },

    #[error("the monitor is shutting down; try again in a moment")]
    Unavailable,

    #[error("too many logins are being checked right now; try again in a few seconds")]
    LoginBusy,

    #[error("internal error; the monitor's log says more")]
    Internal { cause: String },
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
}

impl ApiError {
    pub fn bad_parameter(name: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadParameter {
            name: name.into(),
            message: message.into(),
        }
    }

    /// Status code and machine-readable code of each error.
    pub(crate) fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadParameter { .. } => (StatusCode::BAD_REQUEST, "bad_parameter"),
            ApiError::BadBody { .. } => (StatusCode::BAD_REQUEST, "bad_body"),
            ApiError::RouteNotFound { .. } => (StatusCode::NOT_FOUND, "no_route"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf { .. } => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::TooManyStreams { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApiError::FederationNotConfigured { .. } => {
                (StatusCode::CONFLICT, "federation_not_configured")
            }
            ApiError::Hub { .. } => (StatusCode::BAD_GATEWAY, "hub"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::LoginBusy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Closed => ApiError::Unavailable,
            other => ApiError::Internal {
                cause: other.to_string(),
            },
        }
    }
}

impl From<ProofFetchError> for ApiError {
    fn from(error: ProofFetchError) -> ApiError {
        use ProofFetchError as E;
        match error {
            e @ E::NotConfigured => ApiError::FederationNotConfigured {
                message: e.to_string(),
            },
            e @ (E::NoKeys | E::NotEnabled | E::NoIdentity) => ApiError::Conflict {
                message: e.to_string(),
            },
            E::Period(e) => ApiError::bad_parameter(e.parameter(), e.to_string()),
            e @ (E::Unreachable(_) | E::NotCertified(_)) => ApiError::Hub {
                message: e.to_string(),
            },
            E::Store(e) => ApiError::from(e),
        }
    }
}

impl From<FederationError> for ApiError {
    fn from(error: FederationError) -> ApiError {
        match error {
            e @ FederationError::NotConfigured => ApiError::FederationNotConfigured {
                message: e.to_string(),
            },
            FederationError::Store(e) => ApiError::from(e),
            FederationError::Stopped => ApiError::Unavailable,
            e @ FederationError::Insecure(_) => ApiError::Internal {
                cause: e.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if let ApiError::Internal { cause } = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let parameter = match &self {
            ApiError::BadParameter { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let body = Body {
            error: code,
            message: self.to_string(),
            parameter,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized | ApiError::BadCredentials => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::TooManyStreams { .. } | ApiError::Unavailable | ApiError::LoginBusy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(5_u64));
            }
            _ => {}
        }
        response
    }
}
