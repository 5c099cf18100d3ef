//! The dashboard: server-rendered HTML pages (templates and view models in the
//! `truebit-web` crate), for the operator logged in with the password.
//!
//! Every page needs a login session (the [`Operator`] extractor sends anyone else to
//! `/login`); API keys are for programs and open no page. Forms post here with the
//! session's CSRF token in a hidden field and the same origin checks as the API. Pages
//! read through the same store methods and figures as the JSON API, so the two agree.

mod alerts;
mod federation;
mod invoices;
mod logs;
mod overview;
mod settings;
pub use settings::KeyStash;
mod tasks;
mod view;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use truebit_web::page::{ErrorPage, Layout, LoginPage, Notice};
use truebit_web::Template;

pub(crate) use super::auth::redirect;
use super::auth::{body_kind, ct_eq, decode_body, safe_next, BodyKind, LoginForm, Principal};
use super::error::ApiError;
use super::redact::Access;
use super::AppState;
use crate::source::{Connection, ContainerState};
use crate::store::WriteHealth;

/// The page routes (merged into the application router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{execution_id}", get(tasks::one))
        .route("/invoices", get(invoices::page))
        .route("/logs", get(logs::page))
        .route("/federation", get(federation::page))
        .route("/federation/enable", post(federation::enable))
        .route("/federation/disable", post(federation::disable))
        .route("/federation/settings", post(federation::settings))
        .route("/alerts", get(alerts::page))
        .route("/alerts/test", post(alerts::test))
        .route("/alerts/rules/{rule}", post(alerts::update_rule))
        .route("/alerts/channels", post(alerts::add_channel))
        .route("/alerts/channels/{channel}", post(alerts::change_channel))
        .route(
            "/alerts/channels/{channel}/delete",
            post(alerts::delete_channel),
        )
        .route("/settings", get(settings::page))
        .route("/settings/keys", post(settings::create_key))
        .route("/settings/keys/{id}/revoke", post(settings::revoke_key))
        .route("/settings/password", post(settings::password))
        .route("/settings/retention", post(settings::retention))
        .route("/static/{name}", get(asset))
        .layer(axum::middleware::from_fn(server_timing))
        // Pages and their assets are text: gzip when the browser accepts it.
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
}

/// Adds `Server-Timing: app;dur=…` (milliseconds spent producing the page), which a
/// browser's developer tools show and benchmarks read.
async fn server_timing(req: Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("server-timing"), v);
    }
    response
}

/// The operator, logged in with the password (a session cookie).
#[derive(Clone, Debug)]
pub struct Operator {
    pub csrf_token: String,
    pub token_sha256: Vec<u8>,
    pub expires_ns: i64,
}

impl Operator {
    /// The operator sees task input and output (the same rule as the API's).
    pub fn access(&self) -> Access {
        Access::Visible
    }
}

/// Why a page was not shown: not logged in (go to the login page) or an error page.
#[derive(Debug)]
pub enum PageError {
    Login { next: String },
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::Api(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> PageError {
        PageError::Api(ApiError::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login { next } => {
                let to = if next == "/" {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", encode(&next))
                };
                redirect(&to)
            }
            PageError::Api(e) => error_page(&e),
        }
    }
}

pub type PageResult = Result<Response, PageError>;

impl FromRequestParts<AppState> for Operator {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Operator, PageError> {
        let ip = s.client_ip(&parts.extensions, &parts.headers);
        let next = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        // Only the session cookie opens pages: drop any Authorization header first.
        let mut headers = parts.headers.clone();
        headers.remove(header::AUTHORIZATION);
        match s.authenticate(&headers, ip).await {
            Ok(Principal::Session {
                csrf_token,
                token_sha256,
                expires_ns,
            }) => Ok(Operator {
                csrf_token,
                token_sha256,
                expires_ns,
            }),
            Ok(_) | Err(ApiError::Unauthorized | ApiError::BadCredentials) => {
                Err(PageError::Login { next })
            }
            Err(e) => Err(PageError::Api(e)),
        }
    }
}

/// Percent-encodes a path for a query value.
fn encode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)])
        .map(|q| q.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}

/// Renders a template as a page (`200`, HTML).
pub(crate) fn render(t: &impl Template) -> PageResult {
    render_status(StatusCode::OK, t)
}

pub(crate) fn render_status(status: StatusCode, t: &impl Template) -> PageResult {
    match t.render() {
        Ok(html) => Ok((status, Html(html)).into_response()),
        Err(e) => Err(PageError::Api(ApiError::Internal {
            cause: format!("template: {e}"),
        })),
    }
}

/// The layout of a page for the operator, with notices about the node's state.
pub(crate) fn layout(s: &AppState, title: &str, active: &'static str, op: &Operator) -> Layout {
    let mut layout = Layout::new(title, active, op.csrf_token.clone());
    layout.version = env!("CARGO_PKG_VERSION").to_owned();
    layout.notices = notices(s);
    layout
}

/// What is wrong right now, one line each: Docker, the container, the database.
fn notices(s: &AppState) -> Vec<Notice> {
    let mut out = Vec::new();
    let status = s.status.borrow().clone();
    if status.kind == "docker" {
        match &status.connection {
            Connection::Unreachable { reason } => out.push(Notice::new(
                "warn",
                format!(
                    "Docker is unreachable ({reason}). The monitor keeps retrying; what you see is what was recorded before."
                ),
            )),
            Connection::Connecting | Connection::Connected { .. } => {}
        }
        match &status.container {
            ContainerState::Missing { name } => out.push(Notice::new(
                "warn",
                format!(
                    "No container named \"{name}\" exists. Start the node, or set TBM_CONTAINER_NAME (or CONTAINER_NAME) to its name."
                ),
            )),
            ContainerState::Created { name, .. } => out.push(Notice::new(
                "error",
                format!("The node container \"{name}\" exists but has never been started."),
            )),
            ContainerState::Stopped { name, exit_code, .. } => out.push(Notice::new(
                "error",
                match exit_code {
                    Some(code) => format!("The node container \"{name}\" has stopped (exit code {code})."),
                    None => format!("The node container \"{name}\" has stopped."),
                },
            )),
            ContainerState::Unknown | ContainerState::Running { .. } => {}
        }
    }
    if let Some(alerts) = &s.alerts {
        for rule in alerts.rules() {
            if rule.state == crate::alerts::rules::RuleState::Firing {
                out.push(Notice::new(
                    "error",
                    format!(
                        "Alert firing: {}: {} (see Alerts).",
                        rule.title, rule.details
                    ),
                ));
            }
        }
    }
    if let WriteHealth::Failing { error, .. } = s.store.write_health() {
        out.push(Notice::new(
            "error",
            format!(
                "The database cannot be written ({error}); new log lines wait and nothing is lost."
            ),
        ));
    }
    out
}

/// An error as a page; internal causes are logged, not shown.
fn error_page(e: &ApiError) -> Response {
    let (status, _) = e.status();
    if let ApiError::Internal { cause } = e {
        tracing::error!(error = %cause, "page failed");
    }
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        StatusCode::SERVICE_UNAVAILABLE => "Not available right now",
        s if s.is_client_error() => "That did not work",
        _ => "Something went wrong",
    };
    let mut layout = Layout::new(heading, "", "");
    layout.version = env!("CARGO_PKG_VERSION").to_owned();
    let page = ErrorPage {
        layout,
        status: status.as_u16(),
        heading: heading.to_owned(),
        message: e.to_string(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, e.to_string()).into_response(),
    }
}

/// The HTML answer for an unknown page path.
pub fn not_found_page(path: &str) -> Response {
    error_page(&ApiError::NotFound {
        what: if path.starts_with("/static/") {
            "file"
        } else {
            "page"
        },
    })
}

/// Whether a request prefers HTML (a browser navigating).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// Decodes a form body and checks the session's CSRF token and the origin.
pub(crate) async fn form<T: serde::de::DeserializeOwned + HasCsrf>(
    s: &AppState,
    op: &Operator,
    req: Request,
) -> Result<T, PageError> {
    s.check_origin(req.headers())?;
    let kind = body_kind(req.headers()).ok_or(ApiError::UnsupportedMediaType {
        expected: "application/x-www-form-urlencoded",
    })?;
    let body = super::read_body(req).await?;
    let form: T = decode_body(kind, &body)?;
    if !ct_eq(form.csrf().as_bytes(), op.csrf_token.as_bytes()) {
        return Err(PageError::Api(ApiError::Csrf {
            reason: "the form is out of date; reload the page and try again",
        }));
    }
    Ok(form)
}

/// Forms carry the session's CSRF token.
pub(crate) trait HasCsrf {
    fn csrf(&self) -> &str;
}

/// A form with nothing but the CSRF token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CsrfForm {
    csrf_token: String,
}

impl HasCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

// ---- login, logout, static -----------------------------------------------------------

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_layout() -> Layout {
    let mut layout = Layout::new("Log in", "", "");
    layout.version = env!("CARGO_PKG_VERSION").to_owned();
    layout
}

/// `GET /login`
async fn login_page(State(s): State<AppState>, req: Request) -> PageResult {
    let next = axum::extract::Query::<NextQuery>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.next);
    let next = safe_next(next);
    let (mut parts, _) = req.into_parts();
    if Operator::from_request_parts(&mut parts, &s).await.is_ok() {
        return Ok(redirect(&next));
    }
    render(&LoginPage {
        layout: login_layout(),
        error: None,
        next,
    })
}

/// `POST /login`: the password form; a wrong password shows the form again.
async fn login(State(s): State<AppState>, req: Request) -> PageResult {
    let ip = s.client_ip(req.extensions(), req.headers());
    s.check_origin(req.headers())?;
    let kind = body_kind(req.headers()).unwrap_or(BodyKind::Form);
    let body = super::read_body(req).await?;
    let form: LoginForm = decode_body(kind, &body)?;
    let next = safe_next(form.next);
    match s.open_session(ip, form.password).await {
        Ok((cookie, _, _)) => {
            let mut response = redirect(&next);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(e @ (ApiError::BadCredentials | ApiError::RateLimited { .. })) => {
            let status = e.status().0;
            let message = match e {
                ApiError::BadCredentials => "Wrong password.".to_owned(),
                other => sentence(&other.to_string()),
            };
            render_status(
                status,
                &LoginPage {
                    layout: login_layout(),
                    error: Some(message),
                    next,
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// An error message as a sentence on a page: capital first letter, full stop.
pub(crate) fn sentence(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str() + ".")
        .unwrap_or_default()
}

/// `POST /logout`: ends the session.
async fn logout(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let _: CsrfForm = form(&s, &op, req).await?;
    s.store
        .call({
            let t = op.token_sha256.clone();
            move |st| st.delete_session(&t)
        })
        .await?;
    let mut response = redirect("/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, s.session_cookie("", 0));
    Ok(response)
}

/// `GET /static/{name}`: the CSS, scripts and icon (public: they hold no data).
async fn asset(Path(name): Path<String>, uri: Uri) -> Response {
    let Some(a) = truebit_web::asset::get(&name) else {
        return not_found_page(uri.path());
    };
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, a.cache_control(uri.query())),
        ],
        a.bytes,
    )
        .into_response()
}
