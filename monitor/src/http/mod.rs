//! The HTTP server (axum), in the same process as ingest: the JSON API under `/api`
//! (table in [`routes`], document in [`openapi`]), login and logout under `/auth`,
//! `/health`, `/metrics`, and the live event stream.
//!
//! Every `/api` route, known or not, goes through [`auth::require_auth`]: a route added
//! to the table (or a sub-router nested under `/api`, e.g. federation's) is protected
//! without doing anything. Handlers read through the store's typed methods off the
//! runtime; errors are one [`error::ApiError`].

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod conn;
pub mod error;
pub mod figures;
pub mod filters;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod params;
pub mod ratelimit;
pub mod redact;
pub mod route;
pub mod routes;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

use self::auth::AuthState;
use self::config::HttpConfig;
use self::error::ApiError;
use self::live::{LiveSender, StreamLimits};
use crate::federation::FederationHandle;
use crate::source::SourceStatus;
use crate::store::Store;
use truebit_clock::Clock;

/// Largest request body accepted (bodies are small JSON or form posts).
pub const BODY_LIMIT: usize = 16 * 1024;
/// How long shutdown waits for open requests before closing them.
const DRAIN: Duration = Duration::from_secs(5);

/// What every handler gets: cheap handles, cloned per request.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub status: watch::Receiver<SourceStatus>,
    pub config: Arc<HttpConfig>,
    pub auth: Arc<AuthState>,
    pub live: LiveSender,
    pub streams: Arc<StreamLimits>,
    pub clock: Clock,
    /// Cancelled when the HTTP server stops: live streams end.
    pub shutdown: CancellationToken,
    pub started_ns: i64,
    /// The federation controls (`/api/federation/...`); `None` answers 503 there.
    pub federation: Option<FederationHandle>,
    /// API keys created on the settings page, waiting to be shown once.
    pub key_stash: Arc<pages::KeyStash>,
    /// The alerts (`/api/alerts/...`, the Alerts page, /metrics); `None` answers 503.
    pub alerts: Option<crate::alerts::AlertsHandle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        store: Store,
        status: watch::Receiver<SourceStatus>,
        config: HttpConfig,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> AppState {
        let streams = StreamLimits::new(config.ws_max_connections, config.ws_max_per_ip);
        AppState {
            auth: Arc::new(AuthState::new(&config)),
            store,
            status,
            config: Arc::new(config),
            live: live::channel(),
            streams: Arc::new(streams),
            started_ns: clock.now_ns(),
            clock,
            shutdown,
            federation: None,
            key_stash: Arc::default(),
            alerts: None,
        }
    }

    /// Serves the federation routes with `handle`.
    pub fn with_federation(mut self, handle: FederationHandle) -> AppState {
        self.federation = Some(handle);
        self
    }

    pub fn with_alerts(mut self, handle: crate::alerts::AlertsHandle) -> AppState {
        self.alerts = Some(handle);
        self
    }

    /// The task that feeds the live stream; spawn it next to the server.
    pub fn tail(&self) -> live::Tail {
        live::Tail::new(
            self.store.clone(),
            self.store.subscribe(),
            self.status.clone(),
            self.live.clone(),
            self.shutdown.clone(),
        )
    }
}

/// The whole application: `/api` (authenticated), `/auth`, `/health`, `/metrics`.
pub fn router(state: AppState) -> Router {
    let api = routes::api_router(routes::api_routes())
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), auth::require_auth));
    let metrics = Router::new()
        .route("/metrics", get(metrics::metrics))
        .layer(from_fn_with_state(state.clone(), auth::require_auth));
    let mut app = Router::new()
        .route("/health", get(health))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .merge(metrics)
        .merge(pages::router())
        .nest("/api", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn(refuse_large_bodies));
    if let Some(cors) = cors(&state.config) {
        app = app.layer(cors);
    }
    app.layer(from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
}

/// `/metrics` alone, without authentication, for `METRICS_BIND`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
}

fn cors(config: &HttpConfig) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(auth::CSRF_HEADER),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Headers on every answer: a CSP without inline script, no framing, no sniffing, no
/// referrer; no caching of API answers; HSTS behind HTTPS.
async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "same-origin");
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(header::CACHE_CONTROL, "no-store");
    if state.config.https {
        set(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    response
}

/// Refuses a declared body over the limit before anything reads it.
async fn refuse_large_bodies(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return ApiError::PayloadTooLarge { limit: BODY_LIMIT }.into_response();
    }
    next.run(req).await
}

/// How long a request's body may take to arrive once its headers are in: a body is at
/// most [`BODY_LIMIT`] bytes, so only a client that stalls takes longer, and a stalled
/// body would keep its connection (and a place under the connection cap) forever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the dashboard is reached from this machine: the bound address, with a loopback
/// one in place of "every address" (`0.0.0.0`, `::`), which a browser cannot open.
fn dashboard_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, addr.port()))
}

/// Reads a request body of at most [`BODY_LIMIT`] bytes, arriving within [`BODY_TIMEOUT`].
pub async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    read_body_within(req, BODY_TIMEOUT).await
}

async fn read_body_within(req: Request, limit: Duration) -> Result<Bytes, ApiError> {
    tokio::time::timeout(limit, axum::body::to_bytes(req.into_body(), BODY_LIMIT))
        .await
        .map_err(|_| ApiError::BodyTimeout {
            secs: limit.as_secs(),
        })?
        .map_err(|e| {
            // axum reports the limit as "length limit exceeded".
            let too_large = e.to_string().contains("length limit");
            if too_large {
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                ApiError::BadBody {
                    message: "the body could not be read".into(),
                }
            }
        })
}

/// `GET /health`: up or not, nothing else (no authentication).
async fn health(State(state): State<AppState>) -> Response {
    if state.store.write_health().is_ok() {
        (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "degraded" })),
        )
            .into_response()
    }
}

async fn api_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        path: uri.path().chars().take(200).collect(),
    }
}

/// Unknown paths outside the nested `/api` router; `/api` itself and `/api/` included,
/// which need authentication like every `/api` path. A browser asking for a page gets
/// an HTML page.
async fn not_found(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        let ip = state.client_ip(req.extensions(), req.headers());
        if let Err(e) = state.authenticate(req.headers(), ip).await {
            return e.into_response();
        }
    } else if pages::wants_html(req.headers()) {
        return pages::not_found_page(path);
    }
    ApiError::RouteNotFound {
        path: path.chars().take(200).collect(),
    }
    .into_response()
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}

/// The listeners of the HTTP server: the main one and, with `METRICS_BIND`, the metrics one.
#[derive(Debug)]
pub struct Listeners {
    pub main: TcpListener,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds `HOST:PORT` (and `METRICS_BIND`); the error names the address.
    pub async fn bind(config: &HttpConfig) -> anyhow::Result<Listeners> {
        use anyhow::Context as _;
        let addr = config.bind_addr();
        let main = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (HOST/PORT): is another program using the port?")
        })?;
        let metrics = match config.metrics_bind {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "cannot listen on {addr} (METRICS_BIND): is another program using the port?"
                )
            })?),
            None => None,
        };
        Ok(Listeners { main, metrics })
    }
}

/// The HTTP server as a task: serves until `state.shutdown` is cancelled, then lets
/// open requests finish (live streams end at once) for a few seconds.
#[derive(Debug)]
pub struct HttpServer {
    state: AppState,
    listeners: Listeners,
}

impl HttpServer {
    pub fn new(state: AppState, listeners: Listeners) -> HttpServer {
        HttpServer { state, listeners }
    }

    pub async fn run(self) -> std::io::Result<()> {
        let shutdown = self.state.shutdown.clone();
        if let Ok(addr) = self.listeners.main.local_addr() {
            tracing::info!(http.addr = %addr, "HTTP API listening");
            // One plain line for the operator, whatever the log format and level.
            eprintln!("Dashboard: {}", dashboard_url(addr));
            if !addr.ip().is_loopback() {
                tracing::warn!(http.addr = %addr, "the HTTP API is reachable from the network (HOST); protect it with a firewall or a reverse proxy with TLS");
            }
        }
        let limits = ConnectionLimits::of(&self.state.config);
        let metrics = self.listeners.metrics.map(|listener| {
            let app = metrics_router(self.state.clone());
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(metrics.addr = %addr, "metrics listening (no authentication)");
                }
                serve(listener, app, shutdown, limits).await
            })
        });
        let app = router(self.state.clone());
        let result = serve(self.listeners.main, app, shutdown, limits).await;
        if let Some(task) = metrics {
            let _ = task.await;
        }
        result
    }
}

/// What a connection may take: how many are served at once and how long one has to send
/// a request's headers (`HTTP_MAX_CONNECTIONS`, `HTTP_HEADER_TIMEOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    pub fn of(config: &HttpConfig) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: config.max_connections as usize,
            header_timeout: config.header_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then drains for at most [`DRAIN`].
///
/// Its own accept loop rather than `axum::serve`, for the limits: at most
/// `max_connections` connections at once, so idle connections cannot use up the file
/// descriptors; at the cap, a new connection displaces the one that has waited longest
/// for a request (see [`conn`]: a connection being answered is never displaced; when all
/// are, the new one waits until one ends). A connection that has not sent a request's
/// headers within `header_timeout` of opening or of its previous answer is closed. Slow
/// or idle clients therefore cannot hold their place or keep anyone else out.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connections = conn::Connections::default();
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::debug!(%error, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let displaced = connections.displace_longest_waiting();
                // Said at most once a minute.
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    warned = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        http.max_connections = limits.max_connections,
                        http.displaced = displaced,
                        "HTTP_MAX_CONNECTIONS connections are open; the one waiting longest for a request makes room, or the new one waits until one ends"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let (registered, close) = connections.open();
        let handle = registered.handle();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let busy = handle.request_started();
            let answer = tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new));
            async move {
                let response = answer.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| conn::GuardedBody::new(body, busy)),
                )
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(error) = ended {
                        tracing::debug!(%error, "HTTP connection ended with an error");
                    }
                }
                // Displaced at the cap: dropping the connection closes it.
                () = close.cancelled() => {}
            }
            drop(registered);
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("HTTP connections still open after {DRAIN:?}; closing them");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    #[test]
    fn the_dashboard_url_can_be_opened_from_this_machine() {
        let url = |a: &str| dashboard_url(a.parse().expect("address"));
        assert_eq!(url("127.0.0.1:8090"), "http://127.0.0.1:8090/");
        assert_eq!(url("0.0.0.0:8090"), "http://127.0.0.1:8090/");
        assert_eq!(url("[::]:8090"), "http://[::1]:8090/");
        assert_eq!(url("192.0.2.7:80"), "http://192.0.2.7:80/");
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_cut_off_with_408_and_a_whole_one_is_read() {
        // Headers in, then a first chunk, then nothing more.
        let first =
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"password="))]);
        let stalled = first.chain(futures_util::stream::pending());
        let req = Request::new(axum::body::Body::from_stream(stalled));
        let error = read_body_within(req, Duration::from_millis(50))
            .await
            .expect_err("the body never ends");
        assert!(
            matches!(error, ApiError::BodyTimeout { secs: 0 }),
            "{error:?}"
        );
        assert_eq!(
            error.status(),
            (StatusCode::REQUEST_TIMEOUT, "body_timeout")
        );

        let req = Request::new(axum::body::Body::from("password=x"));
        let body = read_body_within(req, Duration::from_millis(50))
            .await
            .expect("a whole body");
        assert_eq!(&body[..], b"password=x");
    }
}
