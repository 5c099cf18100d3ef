//! What one `/api` route is: its method, path, parameters, access and answer, with its
//! handler. The table is [`super::routes`], which serves the document that
//! [`super::openapi`] writes of a list of routes; openapi knows routes only by this
//! type, so the two modules do not import each other.

use axum::http::Method;
use axum::routing::MethodRouter;

use super::params::ParamSpec;
use super::AppState;

/// What a route answers on success.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// JSON with this status and component schema.
    Json(u16, &'static str),
    /// A `text/event-stream`.
    EventStream,
    /// A file download (`Content-Disposition: attachment`) in one of these media types.
    Download(&'static [&'static str]),
}

#[derive(Debug)]
pub struct Route {
    pub method: Method,
    /// The full path, `{name}` for path parameters (axum and OpenAPI use the same syntax).
    pub path: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub query: &'static [ParamSpec],
    pub path_params: &'static [ParamSpec],
    /// Needs the password (a session) or an admin key; read-only keys get 403.
    pub admin: bool,
    /// Component schema of the JSON request body.
    pub request: Option<&'static str>,
    pub answer: Answer,
    /// Error answers of this route beyond the common ones (status, description).
    pub errors: &'static [(u16, &'static str)],
    pub handler: MethodRouter<AppState>,
}
