//! The HTTP API: in-process router tests for every route (with and without
//! authentication), parameters, bodies, sessions, CSRF, rate limits, headers, CORS and the
//! live stream; and real HTTP on 127.0.0.1:0 with a real container whose line shows up on
//! the live stream.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use truebit_clock::Clock;
use truebit_monitor::alerts::handle::ServiceOptions;
use truebit_monitor::alerts::{AlertService, AlertSettings};
use truebit_monitor::app::{self, SourceChoice};
use truebit_monitor::demo::{fixture, Expected, FIXTURE_START_SECS};
use truebit_monitor::federation::config::FederationSettings;
use truebit_monitor::federation::{Federation, FederationConfig};
use truebit_monitor::http::config::HttpSettings;
use truebit_monitor::http::live::LiveMessage;
use truebit_monitor::http::routes::api_routes;
use truebit_monitor::http::{self, AppState};
use truebit_monitor::ingest::SourceContext;
use truebit_monitor::model::{ContainerAction, ContainerEvent, Kind, Level, TaskStatus};
use truebit_monitor::parser::ParserConfig;
use truebit_monitor::source::file::FileSource;
use truebit_monitor::source::import::import_files;
use truebit_monitor::source::SourceStatus;
use truebit_monitor::store::{Batch, Change, Store};

use crate::support;

pub(crate) const KEY: &str = "test-api-key-0123456789abcdef";
pub(crate) const PASSWORD: &str = "operator password 1";
const T0_NS: i64 = 1_800_000_000 * 1_000_000_000;

pub(crate) fn ip(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 40_000))
}

pub(crate) struct TestApp {
    _dir: tempfile::TempDir,
    pub(crate) store: Store,
    state: AppState,
    router: Router,
    pub(crate) clock: Clock,
    pub(crate) expected: Expected,
    pub(crate) status: watch::Sender<SourceStatus>,
}

pub(crate) fn settings() -> HttpSettings {
    HttpSettings {
        api_key: Some(KEY.into()),
        task_data_password: Some(PASSWORD.into()),
        ws_max_per_ip: Some(2),
        ws_max_connections: Some(3),
        ..Default::default()
    }
}

/// A router over a store holding a fixture of `tasks` tasks (all finished and invoiced).
pub(crate) async fn app_with(settings: HttpSettings, tasks: usize) -> TestApp {
    app_with_federation(settings, tasks, FederationConfig::default()).await
}

/// As [`app_with`], with this federation configuration.
async fn app_with_federation(
    settings: HttpSettings,
    tasks: usize,
    federation: FederationConfig,
) -> TestApp {
    app_at(settings, tasks, federation, T0_NS).await
}

/// As [`app_with_federation`], with the clock starting at `now_ns`.
pub(crate) async fn app_at(
    settings: HttpSettings,
    tasks: usize,
    federation: FederationConfig,
    now_ns: i64,
) -> TestApp {
    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let (text, expected) = fixture(7, tasks);
    if tasks > 0 {
        let file = support::write(&dir.path().join("node.log"), &text);
        import_files(&store, &[file], ParserConfig::default(), &()).expect("import");
    }
    store.flush().expect("flush");
    let (status_tx, status_rx) = watch::channel(SourceStatus::new("demo"));
    let clock = Clock::manual(now_ns);
    let state = AppState::new(
        store.clone(),
        status_rx.clone(),
        settings.resolve().expect("valid settings"),
        clock.clone(),
        CancellationToken::new(),
    );
    // By default configured without FEDERATION_NATS_URL: off, cannot be enabled.
    let federation = Federation::new(store.clone(), federation)
        .start(CancellationToken::new())
        .await;
    // Alerts with one webhook channel that cannot be reached (the test message answers
    // `sent: false`).
    let alerts = alert_service(&store, status_rx.clone(), clock.clone()).await;
    let state = state
        .with_federation(federation.handle())
        .with_alerts(alerts.handle());
    TestApp {
        router: http::router(state.clone()),
        _dir: dir,
        store,
        state,
        clock,
        expected,
        status: status_tx,
    }
}

/// The alerts as the monitor runs them, with a webhook channel at a closed port.
pub(crate) async fn alert_service(
    store: &Store,
    status: watch::Receiver<SourceStatus>,
    clock: Clock,
) -> AlertService {
    let config = AlertSettings {
        webhook_url: Some("http://127.0.0.1:9/hook".into()),
        ..AlertSettings::default()
    }
    .resolve()
    .expect("valid alert settings");
    AlertService::start(
        store.clone(),
        &config,
        status,
        ServiceOptions {
            dashboard_url: None,
            federation_enabled: false,
            clock,
            tick: Duration::from_secs(1),
        },
        CancellationToken::new(),
    )
    .await
    .expect("alerts start")
}

async fn app() -> TestApp {
    app_with(settings(), 30).await
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error answer: status, JSON body with this code.
    fn assert_error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["error"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }
}

pub(crate) fn request(
    method: Method,
    uri: &str,
    auth: Auth<'_>,
    from: SocketAddr,
) -> axum::http::request::Builder {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:8090")
        .extension(ConnectInfo(from));
    match auth {
        Auth::None => {}
        Auth::Bearer(k) => b = b.header(header::AUTHORIZATION, format!("Bearer {k}")),
        Auth::Cookie(c) => b = b.header(header::COOKIE, c),
    }
    b
}

impl TestApp {
    pub(crate) async fn send(&self, req: Request<Body>) -> Resp {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.expect("body");
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    pub(crate) async fn call(&self, method: Method, uri: &str, auth: Auth<'_>) -> Resp {
        self.send(
            request(method, uri, auth, ip(1))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub(crate) async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, Auth::Bearer(KEY)).await
    }

    pub(crate) async fn get_json(&self, uri: &str) -> Value {
        let r = self.get(uri).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{uri}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    pub(crate) async fn post_json(
        &self,
        uri: &str,
        auth: Auth<'_>,
        body: Value,
        extra: &[(&str, &str)],
    ) -> Resp {
        self.send_json(Method::POST, uri, auth, body, extra).await
    }

    async fn send_json(
        &self,
        method: Method,
        uri: &str,
        auth: Auth<'_>,
        body: Value,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b =
            request(method, uri, auth, ip(1)).header(header::CONTENT_TYPE, "application/json");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(body.to_string())).expect("request"))
            .await
    }

    /// Logs in with the password; returns the cookie header value and the CSRF token.
    pub(crate) async fn login(&self) -> (String, String) {
        let r = self
            .post_json(
                "/auth/login",
                Auth::None,
                json!({ "password": PASSWORD }),
                &[],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        let set = r.header("set-cookie").expect("set-cookie").to_owned();
        let cookie = set.split(';').next().expect("pair").to_owned();
        (
            cookie,
            r.json()["csrf_token"].as_str().expect("csrf").to_owned(),
        )
    }

    fn any_execution_id(&self) -> String {
        self.store.tasks(1).expect("tasks")[0].execution_id.clone()
    }
}

/// The OpenAPI document's component schemas as JSON Schema (OpenAPI 3.0's `nullable`
/// becomes a `null` type; a nullable enum must still list `null` itself), to validate
/// the server's answers with.
struct Schemas(Value);

impl Schemas {
    async fn of(app: &TestApp) -> Schemas {
        let doc = app.get_json("/api/openapi.json").await;
        Schemas(Self::json_schema(&doc["components"]["schemas"]))
    }

    fn json_schema(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m.iter().filter(|(k, _)| *k != "nullable") {
                    let x = match (k.as_str(), x.as_str()) {
                        ("$ref", Some(r)) => json!(r.replace("#/components/schemas/", "#/$defs/")),
                        _ => Self::json_schema(x),
                    };
                    out.insert(k.clone(), x);
                }
                if m.get("nullable") == Some(&Value::Bool(true)) {
                    if let Some(t) = out.get("type").cloned() {
                        out.insert("type".into(), json!([t, "null"]));
                    }
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(Self::json_schema).collect()),
            other => other.clone(),
        }
    }

    /// Every difference between `answer` and the schema `name`.
    fn errors(&self, name: &str, answer: &Value) -> Vec<String> {
        let schema = json!({ "$defs": self.0, "$ref": format!("#/$defs/{name}") });
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        validator
            .iter_errors(answer)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// Panics with every difference between `answer` and the schema `name`.
    fn check(&self, name: &str, answer: &Value, what: &str) {
        let errors = self.errors(name, answer);
        assert!(errors.is_empty(), "{what} against {name}: {errors:#?}");
    }
}

/// A concrete path for a route path with `{…}` parameters.
fn concrete(path: &str, execution_id: &str) -> String {
    path.replace("{execution_id}", execution_id)
        .replace("{id}", "1")
        .replace("{rule}", "silence")
        .replace("{channel}", "webhook")
}

#[tokio::test]
async fn every_api_route_and_unknown_api_path_requires_authentication() {
    let app = app().await;
    let id = app.any_execution_id();
    let routes = api_routes();
    assert!(routes.len() >= 15, "the table has every route");
    let mut n = 10;
    for route in &routes {
        assert!(
            route.path.starts_with("/api/"),
            "{} is under /api",
            route.path
        );
        let uri = concrete(route.path, &id);
        // No credentials, a wrong key, a made-up session cookie: all refused.
        for auth in [
            Auth::None,
            Auth::Bearer("not-a-key-at-all-000000"),
            Auth::Cookie("tbm_session=00ff"),
        ] {
            n += 1; // a fresh address each time: bad keys must not trip the rate limit here
            let r = app
                .send(
                    request(route.method.clone(), &uri, auth, ip(n))
                        .body(Body::empty())
                        .expect("req"),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} {uri} with {auth:?}",
                route.method
            );
            let v = r.json();
            assert!(
                v["error"] == "unauthorized" || v["error"] == "bad_credentials",
                "{v}"
            );
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    for uri in [
        "/api/nope",
        "/api/tasks/x/y",
        "/api/",
        "/api",
        "/api/openapi.yaml",
    ] {
        let r = app.call(Method::GET, uri, Auth::None).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let metrics = app.call(Method::GET, "/metrics", Auth::None).await;
    metrics.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn every_api_route_answers_a_key_and_the_document_lists_exactly_the_routes() {
    let app = app().await;
    let id = app.any_execution_id();
    let schemas = Schemas::of(&app).await;
    for route in api_routes() {
        let uri = concrete(route.path, &id);
        // A valid body for the routes that take one.
        let body = match route.request {
            Some("NewApiKey") => Some(json!({ "name": "walk" })),
            Some("FederationSettingsUpdate") => Some(json!({ "level": "strict" })),
            Some("AlertRuleUpdate") => Some(json!({ "after_seconds": 300 })),
            Some("NewAlertChannel") => {
                Some(json!({ "name": "walk", "kind": "ntfy", "url": "http://127.0.0.1:9/walk" }))
            }
            Some("AlertChannelUpdate") => Some(json!({ "url": "http://127.0.0.1:9/hook" })),
            Some(other) => panic!("no walk body for {other}"),
            None => None,
        };
        let r = if let Some(body) = body {
            app.send_json(route.method.clone(), &uri, Auth::Bearer(KEY), body, &[])
                .await
        } else if route.path == "/api/events" {
            continue; // an endless stream: see the live stream tests
        } else {
            app.call(route.method.clone(), &uri, Auth::Bearer(KEY))
                .await
        };
        let want = match route.answer {
            // Without FEDERATION_NATS_URL enabling, and asking the hub for an uptime
            // proof, are refused with the documented 409.
            _ if route.path == "/api/federation/enable"
                || route.path == "/api/federation/uptime-proof" =>
            {
                409
            }
            http::routes::Answer::Json(s, _) => s,
            http::routes::Answer::EventStream | http::routes::Answer::Download(_) => 200,
        };
        // DELETE /api/keys/1 revokes the key the POST just made (id 1).
        assert_eq!(
            r.status.as_u16(),
            want,
            "{} {uri}: {:?}",
            route.method,
            String::from_utf8_lossy(&r.body)
        );
        if let (http::routes::Answer::Download(types), 200) = (route.answer, want) {
            let got = r.headers["content-type"].to_str().expect("content type");
            assert!(
                types.iter().any(|t| got.starts_with(t)),
                "{} {uri}: {got} is one of {types:?}",
                route.method
            );
            continue;
        }
        let v = r.json();
        let what = format!("{} {uri}", route.method);
        if want >= 400 {
            let documented = route.errors.iter().any(|(s, _)| *s == want);
            assert!(documented, "{} {uri}: {want} is documented", route.method);
            assert_eq!(v["error"], "federation_not_configured", "{v}");
            schemas.check("Error", &v, &what);
        } else if let http::routes::Answer::Json(_, schema) = route.answer {
            schemas.check(schema, &v, &what);
        }
    }
    let doc = app.get_json("/api/openapi.json").await;
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .expect("ops")
                .keys()
                .map(|m| (p.clone(), m.to_uppercase()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = api_routes()
        .iter()
        .map(|r| (r.path.to_owned(), r.method.to_string()))
        .collect();
    assert_eq!(documented, served);
    for (path, method) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert_eq!(
            op["security"],
            json!([{ "bearer": [] }, { "session": [] }]),
            "{path}"
        );
        assert!(op["responses"]["401"].is_object(), "{path} documents 401");
    }
    let tasks_params: Vec<&str> = doc["paths"]["/api/tasks"]["get"]["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        tasks_params,
        ["status", "chain", "from", "to", "limit", "cursor"]
    );
}

#[tokio::test]
async fn every_admin_route_refuses_a_read_key_and_every_other_route_lets_it_in() {
    let app = app().await;
    let id = app.any_execution_id();
    let created = app
        .post_json(
            "/api/keys",
            Auth::Bearer(KEY),
            json!({ "name": "reader" }),
            &[],
        )
        .await
        .json();
    let key = created["key"].as_str().expect("key").to_owned();
    let ro = Auth::Bearer(&key);
    let mut admin = 0;
    for route in api_routes() {
        if route.path == "/api/events" {
            continue; // an endless stream: see the live stream tests
        }
        let uri = concrete(route.path, &id);
        let r = app.call(route.method.clone(), &uri, ro).await;
        if route.admin {
            admin += 1;
            r.assert_error(StatusCode::FORBIDDEN, "forbidden");
        } else {
            assert_ne!(r.status, StatusCode::FORBIDDEN, "{} {uri}", route.method);
        }
    }
    // GET /api/keys is refused by the router alone (require_auth only guards changes).
    assert_eq!(admin, 12, "the admin routes of the table");
}

#[tokio::test]
async fn answers_agree_with_the_documented_schemas_for_every_caller_and_error() {
    let app = app().await;
    let schemas = Schemas::of(&app).await;
    let id = app.any_execution_id();
    // Lists with rows in them, a task with entries and invoices.
    let earnings = format!(
        "/api/earnings?from={}&to={}",
        FIXTURE_START_SECS - 3600,
        FIXTURE_START_SECS + 10 * 86_400
    );
    for (uri, schema) in [
        ("/api/tasks?limit=500", "TaskPage"),
        ("/api/logs?limit=500", "LogPage"),
        ("/api/invoices?limit=500", "InvoicePage"),
        (earnings.as_str(), "Earnings"),
    ] {
        let v = app.get_json(uri).await;
        let rows = v.get("items").or(v.get("days")).and_then(Value::as_array);
        assert!(rows.is_some_and(|r| !r.is_empty()), "{uri} has rows");
        schemas.check(schema, &v, uri);
    }
    let detail = app.get_json(&format!("/api/tasks/{id}")).await;
    assert!(!detail["entries"].as_array().expect("entries").is_empty());
    assert!(!detail["invoices"].as_array().expect("invoices").is_empty());
    schemas.check("TaskDetail", &detail, "a task, data visible");
    // The schemas are exact: a field more, a field missing, a figure of another type, a
    // null where the schema has none are all differences.
    let task = &detail["task"];
    let mut extra = task.clone();
    extra["surprise"] = json!(1);
    let mut missing = task.clone();
    missing.as_object_mut().expect("task").remove("gas_used");
    let mut retyped = task.clone();
    retyped["gas_used"] = json!("12");
    let mut null = task.clone();
    null["status"] = Value::Null;
    let mut no_error = task.clone();
    no_error.as_object_mut().expect("task").remove("error");
    let mut error_number = task.clone();
    error_number["error"] = json!(1);
    for wrong in [extra, missing, retyped, null, no_error, error_number] {
        assert!(!schemas.errors("Task", &wrong).is_empty(), "{wrong}");
    }
    // Each kind of caller: the password's session, a named read key (data hidden).
    let (cookie, _) = app.login().await;
    let session = app
        .call(Method::GET, "/api/session", Auth::Cookie(&cookie))
        .await;
    schemas.check("Session", &session.json(), "a login session");
    let created = app
        .post_json(
            "/api/keys",
            Auth::Bearer(KEY),
            json!({ "name": "schema", "scope": "read" }),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created = created.json();
    schemas.check("CreatedApiKey", &created, "a created key");
    let ro = Auth::Bearer(created["key"].as_str().expect("key"));
    schemas.check(
        "Session",
        &app.call(Method::GET, "/api/session", ro).await.json(),
        "a named key",
    );
    let hidden = app
        .call(Method::GET, &format!("/api/tasks/{id}"), ro)
        .await
        .json();
    schemas.check("TaskDetail", &hidden, "a task, data hidden");
    // Errors of every kind have the one error shape.
    for (method, uri, auth) in [
        (Method::GET, "/api/tasks?limit=0", Auth::Bearer(KEY)),
        (Method::GET, "/api/tasks/nope", Auth::Bearer(KEY)),
        (Method::GET, "/api/tasks", Auth::None),
        (Method::GET, "/api/keys", ro),
        (Method::GET, "/api/nope", Auth::Bearer(KEY)),
    ] {
        let r = app.call(method, uri, auth).await;
        assert!(r.status.is_client_error(), "{uri}");
        schemas.check("Error", &r.json(), uri);
    }
    // `scope: null` is not a scope (the document has none); a name of spaces only is
    // refused, as the document's pattern says.
    for (body, param) in [
        (json!({ "name": "n", "scope": null }), "scope"),
        (json!({ "name": " " }), "name"),
    ] {
        let r = app
            .post_json("/api/keys", Auth::Bearer(KEY), body, &[])
            .await;
        let v = r.assert_error(StatusCode::BAD_REQUEST, "bad_parameter");
        assert_eq!(v["parameter"], param);
    }
}

#[tokio::test]
async fn health_answers_without_authentication_and_reveals_nothing() {
    let app = app().await;
    let r = app.call(Method::GET, "/health", Auth::None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({ "status": "ok" }));
}

#[tokio::test]
async fn bad_parameters_get_a_400_that_names_them() {
    let app = app().await;
    let cases = [
        ("/api/tasks?limit=0", "limit"),
        ("/api/tasks?limit=501", "limit"),
        ("/api/tasks?limit=ten", "limit"),
        ("/api/tasks?status=done", "status"),
        ("/api/tasks?from=yesterday", "from"),
        (
            "/api/tasks?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
            "from",
        ),
        ("/api/tasks?cursor=abc", "cursor"),
        ("/api/tasks?stauts=failed", "stauts"),
        ("/api/tasks?limit=5&limit=6", "limit"),
        ("/api/tasks?chain=", "chain"),
        ("/api/logs?level=trace", "level"),
        ("/api/logs?kind=everything", "kind"),
        ("/api/logs?execution_id=", "execution_id"),
        ("/api/invoices/abc", "id"),
        ("/api/invoices/0", "id"),
        ("/api/invoices?to=99999999999", "to"),
        (
            "/api/stats?from=2020-01-01T00:00:00Z&to=2022-01-01T00:00:00Z",
            "from",
        ),
        ("/api/uptime?to=soon", "to"),
        ("/api/earnings?from=-5", "from"),
        ("/api/status?verbose=1", "verbose"),
        ("/api/keys/-1", "id"),
    ];
    for (uri, param) in cases {
        let method = if uri.starts_with("/api/keys/") {
            Method::DELETE
        } else {
            Method::GET
        };
        let r = app.call(method, uri, Auth::Bearer(KEY)).await;
        let v = r.assert_error(StatusCode::BAD_REQUEST, "bad_parameter");
        assert_eq!(v["parameter"], param, "{uri}: {v}");
        assert!(
            v["message"].as_str().expect("msg").contains(param),
            "{uri}: {v}"
        );
    }
    // The page-size cap says what is allowed.
    let v = app.get("/api/tasks?limit=100000").await.json();
    assert_eq!(
        v["message"],
        "invalid parameter limit: limit must be an integer from 1 to 500"
    );
}

#[tokio::test]
async fn unknown_api_routes_and_methods_are_json_errors() {
    let app = app().await;
    app.get("/api/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "no_route");
    app.get("/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "no_route");
    app.call(Method::PUT, "/api/tasks", Auth::Bearer(KEY))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.get("/api/tasks/no-such-execution")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/invoices/999999")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let app = app().await;
    let big = "x".repeat(http::BODY_LIMIT + 1);
    let r = app
        .post_json("/api/keys", Auth::Bearer(KEY), json!({ "name": big }), &[])
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Chunked, without a length: cut off while reading.
    let chunks = futures_util::stream::iter(
        (0..40).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 1024]))),
    );
    let req = request(Method::POST, "/api/keys", Auth::Bearer(KEY), ip(1))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(chunks))
        .expect("req");
    app.send(req)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let req = request(Method::POST, "/auth/login", Auth::None, ip(1))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "10000000")
        .body(Body::from("{}"))
        .expect("req");
    app.send(req)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = app
        .post_json(
            "/api/keys",
            Auth::Bearer(KEY),
            json!({ "name": "a", "extra": 1 }),
            &[],
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_body");
    let req = request(Method::POST, "/api/keys", Auth::Bearer(KEY), ip(1))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("name=a"))
        .expect("req");
    app.send(req)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert!(
        app.store.api_keys().expect("keys").is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn task_pages_follow_the_cursor_without_gaps_or_repeats() {
    let app = app_with(settings(), 45).await;
    let all = app.store.tasks(10_000).expect("tasks");
    assert_eq!(all.len() as u64, app.expected.tasks_created);
    let mut seen = Vec::new();
    let mut uri = "/api/tasks?limit=7".to_owned();
    loop {
        let v = app.get_json(&uri).await;
        let items = v["items"].as_array().expect("items");
        assert!(items.len() <= 7);
        for t in items {
            assert!(
                t.get("input").is_none() && t.get("output").is_none(),
                "lists never carry task data"
            );
            seen.push(t["execution_id"].as_str().expect("id").to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/tasks?limit=7&cursor={c}"),
            None => break,
        }
    }
    let want: Vec<String> = all.iter().map(|t| t.execution_id.clone()).collect();
    assert_eq!(seen, want, "newest first, every task once");
    let failed = app.get_json("/api/tasks?status=failed&limit=500").await;
    assert_eq!(
        failed["items"].as_array().expect("items").len() as u64,
        app.expected.tasks_failed
    );
    let chain = all[0].chain_id.clone().expect("chain");
    let by_chain = app
        .get_json(&format!(
            "/api/tasks?chain={chain}&status=completed&limit=500"
        ))
        .await;
    let n = all
        .iter()
        .filter(|t| {
            t.chain_id.as_deref() == Some(chain.as_str()) && t.status.as_str() == "completed"
        })
        .count();
    assert_eq!(by_chain["items"].as_array().expect("items").len(), n);
    // A time range: only the tasks received inside it.
    let from_ms = all[all.len() / 2].received_ms.expect("time");
    let from = from_ms / 1000;
    let v = app
        .get_json(&format!("/api/tasks?from={from}&limit=500"))
        .await;
    let n = all
        .iter()
        .filter(|t| t.received_ms.is_some_and(|ms| ms >= from * 1000))
        .count();
    assert_eq!(v["items"].as_array().expect("items").len(), n);
}

#[tokio::test]
async fn task_input_and_output_need_the_password_or_an_admin_key() {
    let app = app().await;
    let id = app.any_execution_id();
    let full = app.store.task(&id).expect("task").expect("exists");
    assert!(full.input.is_some(), "the fixture has inputs");
    let read = app
        .post_json("/api/keys", Auth::Bearer(KEY), json!({ "name": "ro" }), &[])
        .await
        .json();
    let admin = app
        .post_json(
            "/api/keys",
            Auth::Bearer(KEY),
            json!({ "name": "rw", "scope": "admin" }),
            &[],
        )
        .await
        .json();
    let (cookie, _) = app.login().await;
    let uri = format!("/api/tasks/{id}");
    let ro = app
        .call(
            Method::GET,
            &uri,
            Auth::Bearer(read["key"].as_str().expect("key")),
        )
        .await
        .json();
    assert!(
        ro["task"].get("input").is_none() && ro["task"].get("output").is_none(),
        "{}",
        ro["task"]
    );
    assert!(ro["data_access"]
        .as_str()
        .expect("access")
        .starts_with("hidden"));
    assert!(
        !ro["entries"].as_array().expect("entries").is_empty(),
        "log entries come with the task"
    );
    for auth in [
        Auth::Bearer(admin["key"].as_str().expect("key")),
        Auth::Cookie(&cookie),
        Auth::Bearer(KEY),
    ] {
        let v = app.call(Method::GET, &uri, auth).await.json();
        assert_eq!(
            v["task"]["input"].as_str(),
            full.input.as_deref(),
            "{auth:?}"
        );
        assert_eq!(v["data_access"], "visible");
    }
}

/// An execution whose log lines carry planted input and output.
const PLANTED_ID: &str = "5ec2e7a0-0000-4000-8000-000000000001";

/// Lines of one task whose input, stderr and output are `SECRET-…` markers. It fails, so
/// its stderr is also its failure reason (`error`).
fn planted_lines() -> String {
    let h = |t: &str, level: &str| {
        format!("2025-11-24 23:00:{t} {level}: @truebit/worker-runner-node:2.4.0 ")
    };
    [
        format!(
            r#"{}Message received from task_created: {{"type":"task_created","executionId":"{PLANTED_ID}","message":{{"executionId":"{PLANTED_ID}","chainId":43113,"input":"SECRET-INPUT-41d2"}}}}"#,
            h("01", "info")
        ),
        format!(
            "{}Starting task execution executionId: {PLANTED_ID}",
            h("02", "info")
        ),
        format!(
            "{}Command execution stderr: SECRET-OUTPUT-stderr-9c",
            h("03", "error")
        ),
        format!(
            r#"{}Command execution stdout: {{"elapsed":"1000000","wasi":{{"exitCode":1}},"metering":{{"last":{{"steps":5}}}},"output":"SECRET-OUTPUT-77ab"}}"#,
            h("04", "debug")
        ),
        format!("{}Execution {PLANTED_ID} completed", h("05", "info")),
    ]
    .join("\n")
        + "\n"
}

/// Imports [`planted_lines`] into the app's store.
fn plant(app: &TestApp, name: &str) {
    import_lines(app, name, &planted_lines());
}

/// Imports node log lines into the app's store (a file `name` in its directory).
pub(crate) fn import_lines(app: &TestApp, name: &str, text: &str) {
    let file = support::write(&app._dir.path().join(name), text);
    import_files(&app.store, &[file], ParserConfig::default(), &()).expect("import");
}

/// A task_created line for the execution `id` (any text), at second `s` of a minute.
pub(crate) fn task_created_line(id: &str, s: u32, extra: &str) -> String {
    let id = serde_json::to_string(id).expect("json");
    format!(
        r#"2025-11-24 23:01:{s:02} info: @truebit/worker-runner-node:2.4.0 Message received from task_created: {{"type":"task_created","executionId":{id},"message":{{"executionId":{id}{extra}}}}}"#
    )
}

/// Every GET route a read key may call (the live stream aside), with the list filters
/// and downloads that reach the lines of the task `execution_id`.
/// Whether `uri` is an admin route's (a read key gets 403 there).
fn admin_only(uri: &str) -> bool {
    api_routes()
        .iter()
        .any(|r| r.admin && r.method == Method::GET && r.path == uri)
}

fn read_key_walk(execution_id: &str) -> Vec<String> {
    // Every GET route, and the list filters that reach the planted lines.
    let mut uris: Vec<String> = api_routes()
        .iter()
        .filter(|r| r.method == Method::GET && r.path != "/api/events")
        .map(|r| concrete(r.path, execution_id))
        .collect();
    for extra in [
        "/api/logs?limit=500",
        "/api/logs?q=SECRET",
        "/api/logs?q=secret-input",
        "/api/logs?kind=task_received",
        "/api/logs?kind=execution_metrics",
        "/api/logs?kind=execution_stderr",
        "/api/logs?kind=raw",
        "/api/logs?kind=log",
        "/api/logs?level=error",
    ] {
        uris.push(extra.to_owned());
    }
    uris.push(format!("/api/logs?execution_id={execution_id}"));
    // The downloads: the whole log, tasks in both formats.
    for extra in [
        "/api/export/logs?from=0",
        "/api/export/tasks?format=jsonl",
        "/api/export/tasks",
    ] {
        uris.push(extra.to_owned());
    }
    uris.push("/api/tasks?chain=43113".to_owned());
    uris
}

#[tokio::test]
async fn a_read_key_never_sees_task_input_or_output_on_any_route() {
    let app = app().await;
    plant(&app, "planted.log");
    let full = app.store.task(PLANTED_ID).expect("task").expect("planted");
    assert_eq!(full.input.as_deref(), Some("SECRET-INPUT-41d2"));
    assert_eq!(full.output.as_deref(), Some("SECRET-OUTPUT-77ab"));
    assert_eq!(full.error.as_deref(), Some("SECRET-OUTPUT-stderr-9c"));
    let read = app
        .post_json("/api/keys", Auth::Bearer(KEY), json!({ "name": "ro" }), &[])
        .await
        .json();
    let read = read["key"].as_str().expect("key").to_owned();
    let uris = read_key_walk(PLANTED_ID);
    for uri in &uris {
        let r = app.call(Method::GET, uri, Auth::Bearer(&read)).await;
        // Admin routes (key management, the uptime proof) are refused to a read key
        // (403); everything else answers.
        assert!(
            r.status.is_success() || (r.status == StatusCode::FORBIDDEN && admin_only(uri)),
            "{uri}: {}",
            r.status
        );
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("SECRET"), "{uri} shows hidden text: {text}");
    }
    // The planted entries are listed, with their text hidden, and the search finds none.
    // The planted lines are the newest: listed, with the text of three of them hidden.
    let newest = app
        .call(Method::GET, "/api/logs?limit=5", Auth::Bearer(&read))
        .await
        .json();
    let listed: Vec<(&str, bool)> = newest["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind"),
                e["message"] == http::redact::HIDDEN_MESSAGE,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("execution_completed", false),
            ("execution_metrics", true),
            ("execution_stderr", true),
            ("execution_started", false),
            ("task_received", true),
        ]
    );
    let found = app
        .call(Method::GET, "/api/logs?q=SECRET", Auth::Bearer(&read))
        .await
        .json();
    assert_eq!(
        found["items"],
        json!([]),
        "the search does not probe hidden text"
    );
    // The failure reason is task data: null for the read key, in the list and the task.
    let one = app
        .call(
            Method::GET,
            &format!("/api/tasks/{PLANTED_ID}"),
            Auth::Bearer(&read),
        )
        .await
        .json();
    assert_eq!(one["task"]["status"], "failed");
    assert_eq!(one["task"]["error"], Value::Null);
    let list = app
        .call(Method::GET, "/api/tasks", Auth::Bearer(&read))
        .await
        .json();
    assert_eq!(list["items"][0]["error"], Value::Null);
    // The password and admin keys see all of it, on the same routes.
    let (cookie, _) = app.login().await;
    for auth in [Auth::Bearer(KEY), Auth::Cookie(&cookie)] {
        let one = app
            .call(Method::GET, &format!("/api/tasks/{PLANTED_ID}"), auth)
            .await
            .json();
        assert_eq!(one["task"]["error"], "SECRET-OUTPUT-stderr-9c", "{auth:?}");
        let list = app.call(Method::GET, "/api/tasks", auth).await.json();
        assert_eq!(
            list["items"][0]["error"], "SECRET-OUTPUT-stderr-9c",
            "{auth:?}"
        );
        let logs = app.call(Method::GET, "/api/logs?q=SECRET", auth).await;
        let text = String::from_utf8_lossy(&logs.body);
        for secret in [
            "SECRET-INPUT-41d2",
            "SECRET-OUTPUT-77ab",
            "SECRET-OUTPUT-stderr-9c",
        ] {
            assert!(text.contains(secret), "{auth:?} {secret}: {text}");
        }
    }
}

/// A task's input printed in parts, on a real file being tailed: the node pauses after the
/// entry's first line (the source hands it over), then a line continues it (it joins the
/// stored entry, which is replaced by the longer version); then the monitor restarts and
/// one more line continues it (the entry cannot be reopened: the line is an entry of its
/// own, of the same kind). Every version and part is hidden from a read key on every route
/// and on the live stream, and shown to the admin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_never_sees_a_task_input_printed_in_parts() {
    const SPLIT_ID: &str = "5b0e2d7c-3f1a-4c8e-9d6b-2a7f4e1c8b3d";
    let app = app().await;
    let read = app
        .post_json("/api/keys", Auth::Bearer(KEY), json!({ "name": "ro" }), &[])
        .await
        .json();
    let read = read["key"].as_str().expect("key").to_owned();
    let tail = tokio::spawn(app.state.tail().run());
    let req = request(Method::GET, "/api/events", Auth::Bearer(&read), ip(1))
        .body(Body::empty())
        .expect("req");
    let response = app.router.clone().oneshot(req).await.expect("ok");
    let mut body = response.into_body().into_data_stream();
    let mut buf = String::new();
    let (event, _) = next_event(&mut body, &mut buf, Duration::from_secs(5))
        .await
        .expect("first event");
    assert_eq!(event, "status");
    let mut seen = String::new();
    let mut read_events = async |seen: &mut String, until: &str| {
        while !seen.contains(until) {
            let Some((event, data)) =
                next_event(&mut body, &mut buf, Duration::from_secs(10)).await
            else {
                panic!("{until} never arrived on the live stream: {seen}");
            };
            seen.push_str(&format!("{event}: {data}\n"));
        }
    };

    let before = app.store.summary().expect("summary").entries;
    let log = app._dir.path().join("split.log");
    let append = |text: &str| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open for append");
        f.write_all(text.as_bytes()).expect("append");
    };
    let tail_source = || {
        let (status, _) = watch::channel(SourceStatus::new("file"));
        let shutdown = CancellationToken::new();
        let source = FileSource::new(
            log.clone(),
            SourceContext::new(
                app.store.clone(),
                ParserConfig::default(),
                status,
                shutdown.clone(),
            ),
        );
        (shutdown, std::thread::spawn(move || source.run_blocking()))
    };
    let newest = async |n: usize| {
        let page = app
            .call(
                Method::GET,
                &format!("/api/logs?limit={n}"),
                Auth::Bearer(KEY),
            )
            .await
            .json();
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().expect("kind").to_owned(),
                    e["message"].as_str().expect("message").to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };

    append(&format!(
        "{}\n",
        task_created_line(SPLIT_ID, 1, r#","chainId":43113"#)
    ));
    let (shutdown, reader) = tail_source();
    // The node pauses after the entry's first line: it is handed over, stored and sent.
    read_events(&mut seen, "task_received").await;
    assert!(app.store.task(SPLIT_ID).expect("task read").is_some());
    append("  SECRET-INPUT-tail-5d\n");
    let head = task_created_line(SPLIT_ID, 1, r#","chainId":43113"#);
    let head = &head[head.find("Message").expect("message")..];
    let joined = format!("{head}\n  SECRET-INPUT-tail-5d");
    support::wait_for("the longer version", Duration::from_secs(10), || {
        let summary = app.store.summary().expect("summary");
        if summary.entries == before + 1
            && app
                .store
                .entries_after(0, 1000)
                .expect("entries")
                .last()
                .map(|e| &e.message)
                == Some(&joined)
        {
            Ok(())
        } else {
            Err(summary.entries)
        }
    })
    .await;
    // The monitor stops; one more line continues the entry; then a new entry.
    shutdown.cancel();
    reader.join().expect("the file source");
    append("  SECRET-INPUT-more-e2\n");
    let end = "2025-11-24 23:01:09 info: @truebit/worker-runner-node:2.4.0 split-end-marker";
    append(&format!("{end}\n"));
    let (shutdown, reader) = tail_source();
    support::wait_summary(
        &app.store,
        "the lines after the restart",
        Duration::from_secs(10),
        |s| s.entries >= before + 3,
    )
    .await;
    read_events(&mut seen, "split-end-marker").await;
    assert_eq!(app.store.summary().expect("summary").entries, before + 3);
    assert_eq!(
        newest(3).await,
        [
            ("log".to_owned(), "split-end-marker".to_owned()),
            (
                "task_received".to_owned(),
                "  SECRET-INPUT-more-e2".to_owned()
            ),
            ("task_received".to_owned(), joined.clone()),
        ]
    );

    for uri in read_key_walk(SPLIT_ID) {
        let r = app.call(Method::GET, &uri, Auth::Bearer(&read)).await;
        assert!(
            r.status.is_success() || (r.status == StatusCode::FORBIDDEN && admin_only(&uri)),
            "{uri}: {}",
            r.status
        );
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("SECRET"), "{uri} shows hidden text: {text}");
    }
    let listed = app
        .call(Method::GET, "/api/logs?limit=3", Auth::Bearer(&read))
        .await
        .json();
    let hidden: Vec<bool> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["message"] == http::redact::HIDDEN_MESSAGE)
        .collect();
    assert_eq!(hidden, [false, true, true], "{listed}");
    // On the live stream: the first version, the longer one, the line after the restart.
    assert!(!seen.contains("SECRET"), "read key's live stream: {seen}");
    assert_eq!(
        seen.matches(http::redact::HIDDEN_MESSAGE).count(),
        3,
        "{seen}"
    );
    // The admin key sees all of it.
    let logs = app
        .call(Method::GET, "/api/logs?q=SECRET-INPUT", Auth::Bearer(KEY))
        .await;
    let text = String::from_utf8_lossy(&logs.body);
    for secret in ["SECRET-INPUT-tail-5d", "SECRET-INPUT-more-e2"] {
        assert!(text.contains(secret), "admin key, {secret}: {text}");
    }
    shutdown.cancel();
    reader.join().expect("the file source");
    app.state.shutdown.cancel();
    let _ = tail.await;
}

#[tokio::test]
async fn the_live_stream_hides_task_input_and_output_from_a_read_key() {
    let app = app_with(settings(), 0).await;
    let read = app
        .post_json("/api/keys", Auth::Bearer(KEY), json!({ "name": "ro" }), &[])
        .await
        .json();
    let read = read["key"].as_str().expect("key").to_owned();
    let tail = tokio::spawn(app.state.tail().run());
    let open = |auth: Auth<'_>, n: u8| {
        let req = request(Method::GET, "/api/events", auth, ip(n))
            .body(Body::empty())
            .expect("req");
        app.router.clone().oneshot(req)
    };
    let mut streams = Vec::new();
    for (auth, n) in [(Auth::Bearer(&read), 1), (Auth::Bearer(KEY), 2)] {
        let response = open(auth, n).await.expect("ok");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body().into_data_stream();
        let mut buf = String::new();
        let (event, _) = next_event(&mut body, &mut buf, Duration::from_secs(5))
            .await
            .expect("first event");
        assert_eq!(event, "status");
        streams.push((body, buf));
    }
    // The tail follows the feed from its creation on: write the lines.
    plant(&app, "planted.log");
    let mut seen = Vec::new();
    for (body, buf) in &mut streams {
        let mut text = String::new();
        // Up to the task event that follows the planted entries.
        while !text.contains(r#""status":"failed""#) {
            let Some((event, data)) = next_event(body, buf, Duration::from_secs(10)).await else {
                panic!("the planted lines never arrived: {text}");
            };
            text.push_str(&format!("{event}: {data}\n"));
        }
        seen.push(text);
    }
    assert!(!seen[0].contains("SECRET"), "read key: {}", seen[0]);
    assert_eq!(
        seen[0].matches(http::redact::HIDDEN_MESSAGE).count(),
        3,
        "{}",
        seen[0]
    );
    for secret in [
        "SECRET-INPUT-41d2",
        "SECRET-OUTPUT-77ab",
        "SECRET-OUTPUT-stderr-9c",
        // The task event's failure reason.
        r#""error":"SECRET-OUTPUT-stderr-9c""#,
    ] {
        assert!(seen[1].contains(secret), "admin key, {secret}: {}", seen[1]);
    }
    app.state.shutdown.cancel();
    let _ = tail.await;
}

/// The live stream is fed by the store's feed of commits, not by polling the store: a
/// committed entry goes out when its commit reaches the tail, and not before.
#[tokio::test]
async fn a_committed_entry_reaches_the_live_stream_from_the_feed() {
    let app = app_with(settings(), 0).await;
    // The tail reads a feed the test holds: the store's own, relayed by hand.
    let mut store_feed = app.store.subscribe();
    let (relay, feed) = tokio::sync::broadcast::channel(16);
    let tail = tokio::spawn(
        http::live::Tail::new(
            app.store.clone(),
            feed,
            app.state.status.clone(),
            app.state.live.clone(),
            app.state.shutdown.clone(),
        )
        .run(),
    );
    let req = request(Method::GET, "/api/events", Auth::Bearer(KEY), ip(1))
        .body(Body::empty())
        .expect("req");
    let response = app.router.clone().oneshot(req).await.expect("ok");
    let mut body = response.into_body().into_data_stream();
    let mut buf = String::new();
    let (event, _) = next_event(&mut body, &mut buf, Duration::from_secs(5))
        .await
        .expect("first event");
    assert_eq!(event, "status");

    let line = "2025-11-24 23:00:01 info: @truebit/worker-runner-node:2.4.0 feed-marker-5e1";
    import_lines(&app, "one.log", &format!("{line}\n"));
    let change = store_feed.recv().await.expect("the commit on the feed");
    let Change::Committed(commit) = &change else {
        panic!("not a commit: {change:?}");
    };
    assert_eq!(commit.entries.count(), 1);
    // Committed, not yet relayed: nothing goes out.
    assert_eq!(
        next_event(&mut body, &mut buf, Duration::from_secs(1)).await,
        None
    );
    let entry_id = commit.entries.last;
    relay.send(change).expect("the tail listens");
    let (event, data) = next_event(&mut body, &mut buf, Duration::from_secs(5))
        .await
        .expect("the entry");
    assert_eq!(event, "entry", "{data}");
    let v: Value = serde_json::from_str(&data).expect("json");
    assert_eq!(v["id"], entry_id, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("feed-marker-5e1")),
        "{v}"
    );
    app.state.shutdown.cancel();
    let _ = tail.await;
}

/// Ids the node may print that are not URL-safe.
pub(crate) const ODD_IDS: [&str; 6] = ["with space", "a/b", "50%x", "ünï-✓", "q?x#y&z=1", ".."];

/// Imports a task for each of [`ODD_IDS`].
pub(crate) fn import_odd_ids(app: &TestApp) {
    let lines: Vec<String> = ODD_IDS
        .iter()
        .zip(1..)
        .map(|(id, s)| task_created_line(id, s, ""))
        .collect();
    import_lines(app, "odd.log", &(lines.join("\n") + "\n"));
}

#[tokio::test]
async fn a_task_with_any_execution_id_opens_through_the_api() {
    let app = app_with(settings(), 0).await;
    import_odd_ids(&app);
    let listed = app.get_json("/api/tasks").await;
    let mut ids: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["execution_id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    let mut want = ODD_IDS.to_vec();
    want.sort_unstable();
    assert_eq!(ids, want);
    for id in ODD_IDS {
        let encoded: String = url_encode(id);
        let v = app.get_json(&format!("/api/tasks/{encoded}")).await;
        assert_eq!(v["task"]["execution_id"], id, "{encoded}");
        let logs = app
            .get_json(&format!("/api/logs?execution_id={encoded}"))
            .await;
        assert_eq!(logs["items"].as_array().expect("items").len(), 1, "{id}");
    }
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn every_word_of_the_kind_status_and_level_enums_filters_and_is_documented() {
    let app = app().await;
    for kind in Kind::ALL {
        let v = app
            .get_json(&format!("/api/logs?kind={}&limit=500", kind.as_str()))
            .await;
        let items = v["items"].as_array().expect("items");
        assert!(items.iter().all(|e| e["kind"] == kind.as_str()), "{kind:?}");
        let want = app.expected.kind(kind).min(500);
        assert_eq!(items.len() as u64, want, "{kind:?}");
    }
    for status in TaskStatus::ALL {
        let v = app
            .get_json(&format!("/api/tasks?status={}&limit=500", status.as_str()))
            .await;
        let items = v["items"].as_array().expect("items");
        assert!(items.iter().all(|t| t["status"] == status.as_str()));
        assert_eq!(items.len() as u64, app.expected.tasks(status).min(500));
    }
    for level in Level::WORDS {
        let v = app.get_json(&format!("/api/logs?level={level}")).await;
        let items = v["items"].as_array().expect("items");
        assert!(items.iter().all(|e| e["level"] == level), "{level}");
    }
    let doc = app.get_json("/api/openapi.json").await;
    let param = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"]["enum"].clone())
    };
    assert_eq!(param("/api/logs", "kind"), Some(json!(Kind::WORDS)));
    assert_eq!(param("/api/logs", "level"), Some(json!(Level::WORDS)));
    assert_eq!(
        param("/api/tasks", "status"),
        Some(json!(TaskStatus::WORDS))
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Task"]["properties"]["status"]["enum"],
        json!(TaskStatus::WORDS)
    );
    assert_eq!(
        schemas["LogEntry"]["properties"]["kind"]["enum"],
        json!(Kind::WORDS)
    );
}

#[tokio::test]
async fn logs_filter_by_level_kind_text_and_execution() {
    let app = app().await;
    let id = app.any_execution_id();
    let v = app
        .get_json(&format!("/api/logs?execution_id={id}&limit=500"))
        .await;
    let items = v["items"].as_array().expect("items");
    assert!(!items.is_empty());
    assert!(items.iter().all(|e| e["execution_id"] == id.as_str()));
    let v = app.get_json("/api/logs?kind=invoice&limit=500").await;
    assert_eq!(
        v["items"].as_array().expect("items").len() as u64,
        app.expected.invoices
    );
    let v = app
        .get_json("/api/logs?q=INVOICE%20RECEIVED&limit=500")
        .await;
    assert_eq!(
        v["items"].as_array().expect("items").len() as u64,
        app.expected.invoices,
        "text search is case-insensitive"
    );
    let errors = app.get_json("/api/logs?level=error&limit=500").await;
    assert!(errors["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|e| e["level"] == "error"));
    // The pages of a filtered list hold every matching entry once.
    let whole = app.store.entries(1_000_000).expect("entries");
    let want: Vec<i64> = whole
        .iter()
        .filter(|e| e.level.as_ref().is_some_and(|l| l.as_str() == "info"))
        .map(|e| e.id)
        .collect();
    let mut got: Vec<i64> = Vec::new();
    let mut uri = "/api/logs?level=info&limit=100".to_owned();
    loop {
        let v = app.get_json(&uri).await;
        got.extend(
            v["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["id"].as_i64().expect("id")),
        );
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/logs?level=info&limit=100&cursor={c}"),
            None => break,
        }
    }
    assert!(want.len() > 100, "several pages");
    assert_eq!(got, want);
    // A NUL in the search text is refused with a clear message (it used to match every
    // entry: SQLite's LIKE ends the pattern there).
    for q in ["%00", "Execution%00zzz", "%00%00"] {
        let r = app.get(&format!("/api/logs?q={q}")).await;
        let v = r.assert_error(StatusCode::BAD_REQUEST, "bad_parameter");
        assert!(
            v["message"].as_str().expect("message").contains("NUL"),
            "{v}"
        );
    }
    let none = app.get_json("/api/logs?q=zz-not-in-any-line").await;
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn stats_invoices_earnings_and_uptime_answer_from_the_recorded_data() {
    let app = app().await;
    let e = &app.expected;
    let from = FIXTURE_START_SECS - 3600;
    let to = FIXTURE_START_SECS + 10 * 86_400;
    let stats = app
        .get_json(&format!("/api/stats?from={from}&to={to}"))
        .await;
    assert_eq!(stats["tasks"]["completed"], e.tasks_completed, "{stats}");
    assert_eq!(stats["tasks"]["failed"], e.tasks_failed);
    assert_eq!(stats["tasks"]["total"], e.tasks_created);
    let rate = e.tasks_completed as f64 / (e.tasks_completed + e.tasks_failed) as f64;
    assert!((stats["success_rate"].as_f64().expect("rate") - rate).abs() < 1e-9);
    assert_eq!(stats["interval"], "day");
    let series_total: u64 = stats["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["total"].as_u64().expect("n"))
        .sum();
    assert_eq!(series_total, e.tasks_created);
    let bucketed: u64 = stats["execution_time_ms"]["buckets"]
        .as_array()
        .expect("b")
        .iter()
        .map(|b| b["count"].as_u64().expect("n"))
        .sum();
    assert_eq!(
        bucketed,
        stats["execution_time_ms"]["count"].as_u64().expect("n")
    );
    assert_eq!(
        stats["execution_time_ms"]["count"],
        e.tasks_completed + e.tasks_failed
    );

    let invoices = app.get_json("/api/invoices?limit=500").await;
    let items = invoices["items"].as_array().expect("items");
    assert_eq!(items.len() as u64, e.invoices);
    let first = &items[0];
    let one = app
        .get_json(&format!("/api/invoices/{}", first["id"]))
        .await;
    assert_eq!(&one, first);
    assert!(one["line_items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|i| i["operation"] == "pay"));
    let earnings = app
        .get_json(&format!("/api/earnings?from={from}&to={to}"))
        .await;
    let days = earnings["days"].as_array().expect("days");
    let n: u64 = days
        .iter()
        .map(|d| d["invoices"].as_u64().expect("n"))
        .sum();
    assert_eq!(n, e.invoices);
    assert!(
        days.iter()
            .all(|d| d["earned"].as_f64().expect("earned") > 0.0),
        "{earnings}"
    );

    // Uptime from container events: started, died 10 min later, started 5 min after.
    let s = FIXTURE_START_SECS * 1_000_000_000;
    let event = |t: i64, action| ContainerEvent {
        container_id: "c1".into(),
        container_name: "runner-node".into(),
        time_ns: s + t * 1_000_000_000,
        action,
        exit_code: None,
        inferred: false,
    };
    let mut batch = Batch::new("docker-events");
    batch.container_events = vec![
        event(0, ContainerAction::Started),
        event(600, ContainerAction::Died),
        event(900, ContainerAction::Started),
    ];
    app.store.submit(batch).expect("submit");
    app.store.flush().expect("flush");
    let (f, t) = (FIXTURE_START_SECS - 60, FIXTURE_START_SECS + 3600);
    let up = app.get_json(&format!("/api/uptime?from={f}&to={t}")).await;
    assert_eq!(up["downtime_seconds"], 300.0, "{up}");
    assert_eq!(up["unknown_seconds"], 60.0);
    assert_eq!(up["uptime_seconds"], 3600.0 - 300.0);
    assert_eq!(
        up["down_intervals"],
        json!([{ "start_ns": s + 600_000_000_000, "end_ns": s + 900_000_000_000, "cause": "died", "ongoing": false, "inferred": false }])
    );
}

#[tokio::test]
async fn status_shows_source_node_ingest_and_database() {
    let app = app().await;
    let v = app.get_json("/api/status").await;
    assert_eq!(v["source"]["kind"], "demo");
    assert_eq!(v["node"]["version"], app.expected.version.as_str());
    assert!(v["ingest"]["last_log_ns"].as_i64().is_some(), "{v}");
    assert_eq!(v["ingest"]["write"]["ok"], true);
    assert!(v["database"]["size_bytes"].as_u64().expect("size") > 0);
    assert_eq!(v["monitor"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let app = app().await;
    let r = app
        .post_json(
            "/auth/login",
            Auth::None,
            json!({ "password": PASSWORD }),
            &[],
        )
        .await;
    let cookie = r.header("set-cookie").expect("cookie").to_owned();
    for attr in [
        "tbm_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{cookie} has {attr}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let csrf = r.json()["csrf_token"].as_str().expect("csrf").to_owned();
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let me = app
        .call(Method::GET, "/api/session", Auth::Cookie(&pair))
        .await
        .json();
    assert_eq!(me["auth"], "session");
    assert_eq!(me["csrf_token"], csrf.as_str());
    // Logout needs the CSRF token.
    let r = app
        .post_json("/auth/logout", Auth::Cookie(&pair), json!({}), &[])
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "csrf");
    let r = app
        .post_json(
            "/auth/logout",
            Auth::Cookie(&pair),
            json!({}),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r
        .header("set-cookie")
        .expect("cleared")
        .contains("Max-Age=0"));
    app.call(Method::GET, "/api/session", Auth::Cookie(&pair))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.post_json(
        "/auth/login",
        Auth::None,
        json!({ "password": "wrong password" }),
        &[],
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "bad_credentials");
}

#[tokio::test]
async fn generated_password_is_hashed_and_works() {
    let app = app_with(
        HttpSettings {
            api_key: Some(KEY.into()),
            ..Default::default()
        },
        0,
    )
    .await;
    let password = http::auth::ensure_password(&app.store, &app.state.config)
        .expect("ensure")
        .expect("generated on first start");
    assert_eq!(
        http::auth::ensure_password(&app.store, &app.state.config).expect("again"),
        None,
        "only once"
    );
    let stored = app.store.password_hash().expect("hash").expect("stored");
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&password));
    let r = app
        .post_json(
            "/auth/login",
            Auth::None,
            json!({ "password": password }),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_wrong_logins_is_judged_at_most_up_to_the_limit() {
    let app = app_with(
        HttpSettings {
            api_key: Some(KEY.into()),
            ..Default::default()
        },
        0,
    )
    .await;
    // The generated password: checked against its argon2id hash (the slow path).
    let password = http::auth::ensure_password(&app.store, &app.state.config)
        .expect("ensure")
        .expect("generated");
    let login = |from: SocketAddr, password: &str| {
        request(Method::POST, "/auth/login", Auth::None, from)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "password": password }).to_string()))
            .expect("req")
    };
    let attacker = ip(66);
    let burst = futures_util::future::join_all(
        (0..50).map(|i| app.send(login(attacker, &format!("guess-{i}")))),
    );
    // Meanwhile the operator logs in from another address.
    let operator = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let r = app.send(login(ip(67), &password)).await;
        (r, started.elapsed())
    };
    let (answers, (operator, took)) = tokio::join!(burst, operator);
    assert_eq!(operator.status, StatusCode::OK, "{took:?}");
    let judged = answers
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let refused = answers
        .iter()
        .filter(|r| {
            r.status == StatusCode::TOO_MANY_REQUESTS || r.status == StatusCode::SERVICE_UNAVAILABLE
        })
        .count();
    assert!(
        (1..=http::ratelimit::MAX_FAILURES as usize).contains(&judged),
        "{judged} of 50 concurrent guesses were judged"
    );
    assert_eq!(judged + refused, 50, "every other guess is refused at once");
    // The address's attempts are counted: ten failures in all, whatever the interleaving.
    let mut failures = judged;
    while failures < http::ratelimit::MAX_FAILURES as usize {
        let r = app.send(login(attacker, "again")).await;
        if r.status == StatusCode::UNAUTHORIZED {
            failures += 1;
        }
    }
    let r = app.send(login(attacker, &password)).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn secure_cookies_and_hsts_behind_https() {
    let app = app_with(
        HttpSettings {
            public_url: Some("https://monitor.example.org".into()),
            ..settings()
        },
        0,
    )
    .await;
    let r = app
        .post_json(
            "/auth/login",
            Auth::None,
            json!({ "password": PASSWORD }),
            &[("origin", "https://monitor.example.org")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.header("set-cookie").expect("cookie");
    assert!(
        cookie.starts_with("__Host-tbm_session=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(r
        .header("strict-transport-security")
        .is_some_and(|h| h.starts_with("max-age=")));
}

#[tokio::test]
async fn sessions_expire_after_their_lifetime() {
    let app = app_with(
        HttpSettings {
            session_ttl: Some("30m".into()),
            ..settings()
        },
        0,
    )
    .await;
    let (cookie, _) = app.login().await;
    app.clock.advance(Duration::from_secs(30 * 60 - 1));
    let r = app
        .call(Method::GET, "/api/session", Auth::Cookie(&cookie))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(2));
    app.call(Method::GET, "/api/session", Auth::Cookie(&cookie))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn cookie_changes_need_the_csrf_token_and_a_same_site_origin() {
    let app = app().await;
    let (cookie, csrf) = app.login().await;
    let body = json!({ "name": "from-dashboard" });
    let c = Auth::Cookie(&cookie);
    app.post_json("/api/keys", c, body.clone(), &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "csrf");
    app.post_json("/api/keys", c, body.clone(), &[("x-csrf-token", "0000")])
        .await
        .assert_error(StatusCode::FORBIDDEN, "csrf");
    app.post_json(
        "/api/keys",
        c,
        body.clone(),
        &[("x-csrf-token", &csrf), ("origin", "https://evil.example")],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "csrf");
    app.post_json(
        "/api/keys",
        c,
        body.clone(),
        &[("x-csrf-token", &csrf), ("sec-fetch-site", "cross-site")],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "csrf");
    assert!(app.store.api_keys().expect("keys").is_empty());
    let r = app
        .post_json(
            "/api/keys",
            c,
            body,
            &[("x-csrf-token", &csrf), ("origin", "http://127.0.0.1:8090")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A login form posted from another site is refused; from this one it redirects.
    let form = |origin: &'static str| {
        request(Method::POST, "/auth/login", Auth::None, ip(1))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, origin)
            .body(Body::from("password=operator+password+1&next=%2Ftasks"))
            .expect("req")
    };
    app.send(form("https://evil.example"))
        .await
        .assert_error(StatusCode::FORBIDDEN, "csrf");
    let r = app.send(form("http://127.0.0.1:8090")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/tasks"));
    assert!(r
        .header("set-cookie")
        .is_some_and(|c| c.contains("HttpOnly")));
}

#[tokio::test]
async fn failed_logins_and_bad_keys_are_rate_limited_per_client_ip() {
    let app = app_with(
        HttpSettings {
            trusted_proxies: Some("10.0.0.1".into()),
            ..settings()
        },
        0,
    )
    .await;
    let login = |from: SocketAddr, password: &str, xff: Option<&str>| {
        let mut b = request(Method::POST, "/auth/login", Auth::None, from)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(x) = xff {
            b = b.header("x-forwarded-for", x);
        }
        b.body(Body::from(json!({ "password": password }).to_string()))
            .expect("req")
    };
    let attacker = ip(66);
    for _ in 0..10 {
        app.send(login(attacker, "guess", None))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    }
    let r = app.send(login(attacker, PASSWORD, None)).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(r.header("retry-after"), Some("900"));
    // API_KEY (chosen by the operator) from the blocked address is refused too; other
    // addresses are not.
    let key_from = |from: SocketAddr, key: &str| {
        request(Method::GET, "/api/status", Auth::Bearer(key), from)
            .body(Body::empty())
            .expect("req")
    };
    app.send(key_from(attacker, KEY))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // A valid named key (256-bit random) and a session still pass from there.
    let named = app
        .post_json(
            "/api/keys",
            Auth::Bearer(KEY),
            json!({ "name": "tool" }),
            &[],
        )
        .await
        .json();
    let named = named["key"].as_str().expect("key").to_owned();
    assert_eq!(
        app.send(key_from(attacker, &named)).await.status,
        StatusCode::OK
    );
    let (cookie, _) = app.login().await;
    let with_session = request(Method::GET, "/api/status", Auth::Cookie(&cookie), attacker)
        .body(Body::empty())
        .expect("req");
    assert_eq!(app.send(with_session).await.status, StatusCode::OK);
    assert_eq!(
        app.send(login(ip(67), PASSWORD, None)).await.status,
        StatusCode::OK
    );
    // Spoofed X-Forwarded-For from an untrusted peer changes nothing.
    app.send(login(attacker, PASSWORD, Some("198.51.100.1")))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Through the trusted proxy, clients are told apart by X-Forwarded-For.
    let proxy = SocketAddr::from(([10, 0, 0, 1], 5555));
    for _ in 0..10 {
        let r = app.send(login(proxy, "guess", Some("203.0.113.5"))).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    }
    app.send(login(proxy, PASSWORD, Some("203.0.113.5")))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(
        app.send(login(proxy, PASSWORD, Some("203.0.113.6")))
            .await
            .status,
        StatusCode::OK
    );
    // Bad keys count like failed logins.
    let scanner = ip(99);
    for i in 0..10 {
        app.send(key_from(scanner, &format!("wrong-key-{i:020}")))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "bad_credentials");
    }
    app.send(key_from(scanner, KEY))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.send(key_from(
        scanner,
        "tbm_00000000_0000000000000000000000000000000000000000000000000000000000000000",
    ))
    .await
    .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.send(login(scanner, PASSWORD, None))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(
        app.send(key_from(scanner, &named)).await.status,
        StatusCode::OK
    );
    // The window passes.
    app.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        app.send(key_from(scanner, KEY)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(login(attacker, PASSWORD, None)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn security_headers_are_on_every_answer() {
    let app = app().await;
    for (uri, auth) in [
        ("/health", Auth::None),
        ("/api/status", Auth::Bearer(KEY)),
        ("/api/status", Auth::None),
        ("/nope", Auth::None),
    ] {
        let r = app.call(Method::GET, uri, auth).await;
        let csp = r.header("content-security-policy").expect("csp");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{uri}");
        assert_eq!(r.header("referrer-policy"), Some("same-origin"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(
            r.header("strict-transport-security"),
            None,
            "no HSTS on plain HTTP"
        );
    }
}

#[tokio::test]
async fn cors_answers_only_the_allowed_origins() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/tasks")
            .header(header::ORIGIN, origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .extension(ConnectInfo(ip(1)))
            .body(Body::empty())
            .expect("req")
    };
    let app = app_with(
        HttpSettings {
            allowed_origins: Some("https://dash.example.org".into()),
            ..settings()
        },
        0,
    )
    .await;
    let r = app.send(preflight("https://dash.example.org")).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://dash.example.org")
    );
    let r = app.send(preflight("https://evil.example")).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = app
        .send(
            request(Method::GET, "/api/status", Auth::Bearer(KEY), ip(1))
                .header(header::ORIGIN, "https://dash.example.org")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://dash.example.org")
    );
    let closed = app_with(settings(), 0).await;
    let r = closed.send(preflight("https://dash.example.org")).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        None,
        "no origins configured: no CORS"
    );
}

#[tokio::test]
async fn named_keys_are_shown_once_scoped_tracked_and_revocable() {
    let app = app().await;
    let created = app
        .post_json(
            "/api/keys",
            Auth::Bearer(KEY),
            json!({ "name": "grafana", "scope": "read" }),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created = created.json();
    let key = created["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with(&format!(
        "tbm_{}_",
        created["prefix"].as_str().expect("prefix")
    )));
    app.post_json(
        "/api/keys",
        Auth::Bearer(KEY),
        json!({ "name": "grafana" }),
        &[],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    app.post_json(
        "/api/keys",
        Auth::Bearer(KEY),
        json!({ "name": "bad/name" }),
        &[],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_parameter");
    let ro = Auth::Bearer(&key);
    assert_eq!(
        app.call(Method::GET, "/api/status", ro).await.status,
        StatusCode::OK
    );
    app.post_json(
        "/api/keys",
        ro,
        json!({ "name": "escalate", "scope": "admin" }),
        &[],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.call(Method::GET, "/api/keys", ro)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let id = created["id"].as_i64().expect("id");
    app.call(Method::DELETE, &format!("/api/keys/{id}"), ro)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let list = app.get_json("/api/keys").await;
    let text = list.to_string();
    assert!(!text.contains(&key[12..]), "no secrets in the list");
    tokio::time::sleep(Duration::from_millis(300)).await; // last use is written in the background
    let listed = app.get_json("/api/keys").await;
    assert_eq!(listed["items"][0]["last_used_ns"], T0_NS);
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/keys/{id}"),
            Auth::Bearer(KEY),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["revoked_ns"], T0_NS);
    app.call(Method::GET, "/api/status", ro)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "bad_credentials");
}

#[tokio::test]
async fn metrics_need_a_key_on_the_main_port_and_speak_prometheus() {
    let app = app().await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .expect("ct")
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).expect("utf8");
    let completed = format!(
        "truebit_tasks{{status=\"completed\"}} {}",
        app.expected.tasks_completed
    );
    assert!(text.contains(&completed), "{text}");
    assert!(text.contains(&format!("truebit_invoices {}", app.expected.invoices)));
    assert!(text.contains("# TYPE truebit_container_up gauge"));

    // The exposition format: every sample belongs to a family typed before it, and its
    // line is `name{labels} value`.
    let sample = regex::Regex::new(
        r#"^([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|NaN|\+Inf)$"#,
    )
    .expect("regex");
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut values = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            typed.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let caps = sample
            .captures(line)
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = &caps[1];
        let (family, kind) = typed.last().expect("a TYPE line first");
        let suffix = name.strip_prefix(family.as_str());
        let ok = match kind.as_str() {
            "histogram" => matches!(suffix, Some("_bucket" | "_sum" | "_count")),
            _ => suffix == Some(""),
        };
        assert!(ok, "{line:?} outside its family {family} ({kind})");
        values.insert(
            line.rsplit_once(' ').expect("value").0.to_owned(),
            caps[4].parse::<f64>().unwrap_or(f64::NAN),
        );
    }
    let value = |key: &str| *values.get(key).unwrap_or_else(|| panic!("no {key}"));

    // What a Grafana user charts first: earnings, slots, execution times.
    let mut earned = 0.0;
    for day in app
        .store
        .earnings_by_day(0, i64::MAX / 2)
        .expect("earnings")
    {
        for op in day.operations.iter().filter(|o| o.operation == "pay") {
            earned += op.value;
        }
    }
    assert!(earned > 0.0);
    let served = value("truebit_earned_gas_units_total");
    assert!(
        (served - earned).abs() <= earned * 1e-9,
        "{served} vs {earned}"
    );
    let node = app.store.node_status().expect("node");
    assert_eq!(
        value("truebit_slots_capacity"),
        f64::from(node.slots_total.expect("the fixture prints its slots"))
    );
    assert_eq!(
        value("truebit_slots_used"),
        f64::from(node.slots_used.expect("slots in use"))
    );
    let finished = (app.expected.tasks_completed + app.expected.tasks_failed) as f64;
    assert_eq!(value("truebit_execution_seconds_count"), finished);
    assert_eq!(
        value(r#"truebit_execution_seconds_bucket{le="+Inf"}"#),
        finished
    );
    let mut last = 0.0;
    for le in ["0.1", "0.5", "1", "5", "10", "30", "60", "+Inf"] {
        let n = value(&format!(r#"truebit_execution_seconds_bucket{{le="{le}"}}"#));
        assert!(n >= last, "buckets are cumulative: {le} has {n} < {last}");
        last = n;
    }
    assert!(value("truebit_execution_seconds_sum") > 0.0);
    // The separate METRICS_BIND router needs no key.
    let open = http::metrics_router(app.state.clone());
    let r = open
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    assert_eq!(r.status(), StatusCode::OK);
}

/// Reads SSE events (`event`, `data`) from a body until `pred` holds for one.
async fn next_event(
    body: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buf: &mut String,
    timeout: Duration,
) -> Option<(String, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if data.is_empty() && event == "message" {
                continue; // a keep-alive comment
            }
            return Some((event, data));
        }
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn live_streams_are_limited_per_ip_and_in_all() {
    let app = app_with(settings(), 0).await;
    let open = |from: SocketAddr| {
        let req = request(Method::GET, "/api/events", Auth::Bearer(KEY), from)
            .body(Body::empty())
            .expect("req");
        app.router.clone().oneshot(req)
    };
    let a1 = open(ip(1)).await.expect("ok");
    let a2 = open(ip(1)).await.expect("ok");
    assert_eq!((a1.status(), a2.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a1.headers()["content-type"], "text/event-stream");
    let a3 = open(ip(1)).await.expect("ok");
    assert_eq!(
        a3.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "WS_MAX_PER_IP = 2"
    );
    let b1 = open(ip(2)).await.expect("ok");
    assert_eq!(b1.status(), StatusCode::OK);
    let c1 = open(ip(3)).await.expect("ok");
    assert_eq!(
        c1.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "WS_MAX_CONNECTIONS = 3"
    );
    drop(a1);
    let c2 = open(ip(3)).await.expect("ok");
    assert_eq!(
        c2.status(),
        StatusCode::OK,
        "a closed stream frees its place"
    );
    drop((a2, b1, c2));
}

#[tokio::test]
async fn a_slow_live_client_is_dropped_and_never_holds_up_the_publisher() {
    let app = app_with(settings(), 0).await;
    let req = request(Method::GET, "/api/events", Auth::Bearer(KEY), ip(1))
        .body(Body::empty())
        .expect("req");
    let response = app.router.clone().oneshot(req).await.expect("ok");
    let mut body = response.into_body().into_data_stream();
    let mut buf = String::new();
    let (event, _) = next_event(&mut body, &mut buf, Duration::from_secs(5))
        .await
        .expect("first event");
    assert_eq!(event, "status");
    // The client does not read while far more events than the channel holds are published:
    // sending never waits.
    let started = std::time::Instant::now();
    for i in 0..(http::live::CHANNEL + 100) {
        let m = LiveMessage::new("entry", format!("{{\"n\":{i}}}"));
        app.state
            .live
            .send(std::sync::Arc::new(m))
            .expect("a subscriber");
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    let (event, data) = next_event(&mut body, &mut buf, Duration::from_secs(5))
        .await
        .expect("lagged");
    assert_eq!(event, "lagged", "{data}");
    assert!(
        next_event(&mut body, &mut buf, Duration::from_secs(2))
            .await
            .is_none(),
        "then the stream ends"
    );
    assert_eq!(app.state.streams.open(), 0);
}

#[tokio::test]
async fn a_live_stream_ends_when_its_session_expires() {
    let app = app_with(
        HttpSettings {
            session_ttl: Some("1m".into()),
            ..settings()
        },
        0,
    )
    .await;
    let (cookie, _) = app.login().await;
    app.clock.advance(Duration::from_secs(59));
    let req = request(Method::GET, "/api/events", Auth::Cookie(&cookie), ip(1))
        .body(Body::empty())
        .expect("req");
    let response = app.router.clone().oneshot(req).await.expect("ok");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut buf = String::new();
    assert_eq!(
        next_event(&mut body, &mut buf, Duration::from_secs(5))
            .await
            .expect("status")
            .0,
        "status"
    );
    let (event, _) = next_event(&mut body, &mut buf, Duration::from_secs(5))
        .await
        .expect("expired");
    assert_eq!(event, "expired");
    assert!(next_event(&mut body, &mut buf, Duration::from_secs(1))
        .await
        .is_none());
}

// ---- real HTTP -----------------------------------------------------------------------

/// One HTTP/1.1 request on a fresh connection; returns status and body.
async fn http_get(addr: SocketAddr, path: &str, key: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Serves the app's router on a real 127.0.0.1 port with these connection limits.
async fn serve_real(
    app: &TestApp,
    limits: http::ConnectionLimits,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        app.router.clone(),
        shutdown.clone(),
        limits,
    ));
    (addr, shutdown, server)
}

/// Reads until the server closes the connection; `Err` if it is still open after `wait`.
async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> Result<(), ()> {
    let mut buf = [0_u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // an error answer (408) before the close
            }
        }
    })
    .await
    .map_err(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_health_answers_during_a_slowloris_run() {
    let app = app_with(settings(), 0).await;
    let timeout = Duration::from_secs(2);
    let limits = http::ConnectionLimits {
        max_connections: 512,
        header_timeout: timeout,
    };
    let (addr, shutdown, server) = serve_real(&app, limits).await;
    // 300 clients that start a request and send a header line now and then, never the end.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        for i in 0..8 {
            for s in &mut slow {
                let _ = s.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        slow
    });
    // Meanwhile /health answers, each time within a second.
    for _ in 0..5 {
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(1), http_get(addr, "/health", None))
                .await
                .expect("/health answered within a second during the slowloris run");
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    }
    // The slow clients are cut off once the header timeout is over.
    let mut slow = trickle.await.expect("trickle");
    for s in &mut slow {
        closed_within(s, Duration::from_secs(10))
            .await
            .expect("a client that never finished its headers is cut off");
    }
    // A client that sends nothing at all: closed after the timeout, not before.
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    closed_within(&mut silent, Duration::from_secs(10))
        .await
        .expect("a silent client is cut off");
    assert!(started.elapsed() >= timeout / 2, "{:?}", started.elapsed());
    // So is a keep-alive connection that stays idle after an answer.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    closed_within(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection is cut off");
    shutdown.cancel();
    server.await.expect("join").expect("served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_connection_waiting_longest_makes_room_and_a_busy_one_never_does() {
    let app = app_with(settings(), 0).await;
    let limits = http::ConnectionLimits {
        max_connections: 8,
        header_timeout: Duration::from_secs(30),
    };
    let (addr, shutdown, server) = serve_real(&app, limits).await;
    // A live stream is being answered: it is busy for as long as it is open.
    let mut sse = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sse.write_all(
        format!("GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut seen = String::new();
    assert!(read_until("200 OK", &mut seen, &mut sse).await, "{seen}");
    // Seven clients that never send their headers fill the other places.
    let mut idle = Vec::new();
    for _ in 0..7 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A ninth is served at once (well before the 30 s header timeout) ...
    let (status, _) = tokio::time::timeout(Duration::from_secs(2), http_get(addr, "/health", None))
        .await
        .expect("served at once at the cap");
    assert_eq!(status, 200);
    // ... because the client that waited longest was closed to make room.
    closed_within(&mut idle[0], Duration::from_secs(2))
        .await
        .expect("the longest-waiting connection made room");
    // 500 more slow clients: each new one displaces an older one, and /health answers.
    let mut slow = Vec::new();
    for _ in 0..500 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
            slow.push(s);
        }
    }
    let (status, _) = tokio::time::timeout(Duration::from_secs(2), http_get(addr, "/health", None))
        .await
        .expect("/health answered with 500 slow clients beyond the cap");
    assert_eq!(status, 200);
    // The live stream, busy all along, was never displaced.
    let mut buf = [0_u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(300), sse.read(&mut buf)).await;
    assert!(
        !matches!(still_open, Ok(Ok(0)) | Ok(Err(_))),
        "the live stream was closed: {still_open:?}"
    );
    shutdown.cancel();
    server.await.expect("join").expect("served");
}

/// Reads from `sse` into `seen` until it contains `needle` (false on EOF or after 60 s).
async fn read_until(needle: &str, seen: &mut String, sse: &mut tokio::net::TcpStream) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0_u8; 16 * 1024];
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, sse.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_printed_by_a_real_container_appears_on_the_live_stream() {
    let docker = support::docker();
    let dir = support::tempdir();
    let name = support::unique_name("http-live");
    docker.remove(&name);
    let marker = format!("live-marker-{}", std::process::id());
    // The node prints a fixture, waits for the stream to be open, then one more line.
    let fx = dir.path().join("fx");
    std::fs::create_dir(&fx).expect("dir");
    let (text, _) = fixture(3, 5);
    support::write(&fx.join("node.log"), &text);
    let line = format!("2025-11-24 14:00:00 info: @truebit/worker-runner-node:2.4.1 {marker}");
    support::write(&fx.join("late.log"), &format!("{line}\n"));
    docker.run(
        &name,
        &[(&fx, "/fx", true)],
        "cat /fx/node.log; while [ ! -e /fx/go ]; do sleep 0.2; done; cat /fx/late.log; sleep 3600",
    );

    let mut config = support::config(&docker.host, &name, &dir.path().join("m.db"));
    config.http = HttpSettings {
        api_key: Some(KEY.into()),
        task_data_password: Some(PASSWORD.into()),
        port: Some(0),
        ..Default::default()
    }
    .resolve()
    .expect("valid");
    let listeners = http::Listeners::bind(&config.http)
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listeners.main.local_addr().expect("addr");
    assert!(addr.ip().is_loopback(), "binds loopback by default");
    support::init_tracing();
    let store = Store::open(app::store_config(&config)).expect("store");
    let shutdown = CancellationToken::new();
    let monitor = tokio::spawn(app::run_with_http(
        store.clone(),
        config,
        SourceChoice::Configured,
        Some(listeners),
        shutdown.clone(),
    ));

    // Real HTTP: health without a key, the API only with one.
    let (status, body) = http_get(addr, "/health", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    assert_eq!(http_get(addr, "/api/status", None).await.0, 401);
    let mut connected = false;
    for _ in 0..300 {
        let (code, body) = http_get(addr, "/api/status", Some(KEY)).await;
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&body).expect("json");
        if v["source"]["container"]["state"] == "running" && v["node"]["version"] == "2.4.1" {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        connected,
        "the container shows as running with its node version"
    );

    // The live stream over a real socket.
    let mut sse = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nAccept: text/event-stream\r\n\r\n");
    sse.write_all(req.as_bytes()).await.expect("write");
    let mut seen = String::new();
    assert!(
        read_until("event: status", &mut seen, &mut sse).await,
        "{seen}"
    );
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    tokio::time::sleep(Duration::from_millis(500)).await; // the tail subscribes on its next poll
    std::fs::write(fx.join("go"), b"").expect("go");
    assert!(
        read_until(&marker, &mut seen, &mut sse).await,
        "the container's line arrives: {seen}"
    );
    let at = seen.find(&marker).expect("marker");
    let event_start = seen[..at].rfind("event: ").expect("event line");
    assert!(
        seen[event_start..].starts_with("event: entry"),
        "{}",
        &seen[event_start..at]
    );

    // Shutdown: the source stops, the store closes, then HTTP stops and the stream ends.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), monitor)
        .await
        .expect("stops in time")
        .expect("task")
        .expect("clean shutdown");
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(10), sse.read_to_end(&mut rest)).await;
    assert!(eof.is_ok(), "the live stream is closed at shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is released"
    );
    let store = support::open_store(&dir.path().join("m.db"));
    let found = store
        .entries(10_000)
        .expect("entries")
        .iter()
        .any(|e| e.message.contains(&marker));
    assert!(found, "the line was committed before HTTP stopped");
    docker.remove(&name);
}

#[tokio::test]
async fn task_lists_use_an_index_in_order_and_page_through_ties() {
    use truebit_monitor::model::{Entry, Event, Kind, Pos, TaskCreated, TaskStatus};
    use truebit_monitor::store::query::{PageKey, TaskFilter};
    let app = app_with(settings(), 0).await;
    let filters = [
        TaskFilter::default(),
        TaskFilter {
            status: Some(TaskStatus::Failed),
            ..TaskFilter::default()
        },
        TaskFilter {
            chain_id: Some("43113".into()),
            ..TaskFilter::default()
        },
        TaskFilter {
            status: Some(TaskStatus::Completed),
            chain_id: Some("1".into()),
            ..TaskFilter::default()
        },
    ];
    for filter in &filters {
        for after in [None, Some(PageKey { time: 1, id: 2 })] {
            let plan = app
                .store
                .explain_task_page(filter, after)
                .expect("plan")
                .join("; ");
            assert!(plan.contains("USING INDEX tasks_"), "{filter:?}: {plan}");
            assert!(
                !plan.contains("TEMP B-TREE"),
                "no sort step: {filter:?}: {plan}"
            );
        }
    }
    // Twelve tasks received in the same second: pages of five still hold each once.
    let mut batch = Batch::new("ties");
    for i in 0..12_i64 {
        let id = format!("tie-{i:02}");
        batch.entries.push(Entry {
            pos: Pos::new(i + 1, 0),
            received_ns: None,
            node_time: Some(FIXTURE_START_SECS),
            level: None,
            logger: None,
            version: None,
            message: format!("task {id}"),
            kind: Kind::TaskReceived,
            execution_id: Some(id.clone()),
            event: Some(Event::TaskReceived(Box::new(TaskCreated {
                execution_id: id,
                ..TaskCreated::default()
            }))),
            replaces: None,
        });
    }
    app.store.submit(batch).expect("submit");
    app.store.flush().expect("flush");
    let mut seen = Vec::new();
    let mut uri = "/api/tasks?limit=5".to_owned();
    loop {
        let v = app.get_json(&uri).await;
        seen.extend(
            v["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|t| t["execution_id"].as_str().expect("id").to_owned()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/tasks?limit=5&cursor={c}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..12).rev().map(|i| format!("tie-{i:02}")).collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn stats_over_days_and_edge_hours_match_the_tasks() {
    use truebit_monitor::model::{Entry, Event, Kind, Metrics, Pos, TaskCreated};
    let app = app_with(settings(), 0).await;
    // 200 tasks, one every 83 minutes (about 11.5 days), every third one failed.
    let t0 = FIXTURE_START_SECS;
    let mut batch = Batch::new("spread");
    let mut pos = 0;
    let mut entry = |t: i64, kind: Kind, id: &str, event: Event| {
        pos += 1;
        Entry {
            pos: Pos::new(pos, 0),
            received_ns: None,
            node_time: Some(t),
            level: None,
            logger: None,
            version: None,
            message: String::new(),
            kind,
            execution_id: Some(id.to_owned()),
            event: Some(event),
            replaces: None,
        }
    };
    for i in 0..200_i64 {
        let id = format!("spread-{i}");
        let t = t0 + i * 83 * 60;
        let created = TaskCreated {
            execution_id: id.clone(),
            ..TaskCreated::default()
        };
        batch.entries.push(entry(
            t,
            Kind::TaskReceived,
            &id,
            Event::TaskReceived(Box::new(created)),
        ));
        let metrics = Metrics {
            elapsed_ns: Some((i as u64 % 7) * 900_000_000),
            exit_code: Some(i64::from(i % 3 == 0)),
            steps: Some(i as u64 * 1_000_000),
            cached: Some(i % 2 == 0),
            ..Metrics::default()
        };
        batch.entries.push(entry(
            t + 5,
            Kind::ExecutionCompleted,
            &id,
            Event::ExecutionCompleted {
                execution_id: id.clone(),
                metrics: Some(Box::new(metrics)),
                stderr: None,
            },
        ));
    }
    app.store.submit(batch).expect("submit");
    app.store.flush().expect("flush");
    let tasks = app.store.tasks(1_000).expect("tasks");
    // A range that starts and ends inside a day: whole days come from the daily table.
    let (from, to) = (t0 + 5 * 3600 + 1800, t0 + 9 * 86_400 + 7 * 3600);
    let v = app
        .get_json(&format!("/api/stats?from={from}&to={to}"))
        .await;
    assert_eq!(v["interval"], "day");
    let from_ms = from.div_euclid(3600) * 3_600_000;
    let to_ms = (to + 3599).div_euclid(3600) * 3_600_000;
    let inside: Vec<_> = tasks
        .iter()
        .filter(|t| t.received_ms.is_some_and(|ms| ms >= from_ms && ms < to_ms))
        .collect();
    let failed = inside
        .iter()
        .filter(|t| t.status.as_str() == "failed")
        .count();
    assert_eq!(v["tasks"]["total"], inside.len());
    assert_eq!(v["tasks"]["failed"], failed);
    let cached = inside.iter().filter(|t| t.cached == Some(true)).count();
    assert_eq!(v["cache"]["hits"], cached);
    let series: u64 = v["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["total"].as_u64().expect("n"))
        .sum();
    assert_eq!(series as usize, inside.len());
    // Each day of the series counts the tasks of that UTC day.
    for p in v["series"].as_array().expect("series") {
        let start_ms = p["start_ns"].as_i64().expect("start") / 1_000_000;
        let n = inside
            .iter()
            .filter(|t| {
                t.received_ms
                    .is_some_and(|ms| ms >= start_ms && ms < start_ms + 86_400_000)
            })
            .count();
        assert_eq!(p["total"], n, "{p}");
    }
    let gas_big = inside
        .iter()
        .filter(|t| t.gas_used.is_some_and(|g| g >= 100_000_000))
        .count();
    assert_eq!(v["gas_used"]["buckets"][4]["count"], gas_big);
}

#[tokio::test]
async fn federation_routes_without_a_server_show_store_settings_and_refuse_enable() {
    let app = app_with(settings(), 0).await;
    let admin = Auth::Bearer(KEY);
    // Off by default, not configured.
    let status = app.get_json("/api/federation/status").await;
    assert_eq!(status["settings"]["enabled"], false);
    assert_eq!(status["configured"], false);
    assert_eq!(status["connection"], "off");
    assert_eq!(status["sent_total"], 0);
    let settings = app.get_json("/api/federation/settings").await;
    assert_eq!(
        settings,
        json!({ "enabled": false, "level": "full", "continent": null, "source": "config" })
    );
    // Level and continent are stored and read back.
    let r = app
        .send_json(
            Method::PUT,
            "/api/federation/settings",
            admin,
            json!({ "level": "strict", "continent": "EU" }),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let want =
        json!({ "enabled": false, "level": "strict", "continent": "EU", "source": "database" });
    assert_eq!(r.json(), want);
    assert_eq!(app.get_json("/api/federation/settings").await, want);
    assert_eq!(
        app.get_json("/api/federation/status").await["settings"],
        want
    );
    // `null` removes the continent; absent fields stay.
    let r = app
        .send_json(
            Method::PUT,
            "/api/federation/settings",
            admin,
            json!({ "continent": null }),
            &[],
        )
        .await;
    assert_eq!(r.json()["continent"], Value::Null);
    assert_eq!(r.json()["level"], "strict");
    // Enabling needs a server: a 409 that says what to set, by route and by settings.
    let r = app
        .post_json("/api/federation/enable", admin, json!({}), &[])
        .await;
    let v = r.assert_error(StatusCode::CONFLICT, "federation_not_configured");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("FEDERATION_NATS_URL") && !m.contains('\n')),
        "{v}"
    );
    app.send_json(
        Method::PUT,
        "/api/federation/settings",
        admin,
        json!({ "enabled": true }),
        &[],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "federation_not_configured");
    assert_eq!(
        app.get_json("/api/federation/settings").await["enabled"],
        false
    );
    // Disabling when off is fine.
    let r = app
        .post_json("/api/federation/disable", admin, json!({}), &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["settings"]["enabled"], false);
    assert_eq!(r.json()["connection"], "off");
    // Reports and statistics: empty, null.
    assert_eq!(
        app.get_json("/api/federation/reports?limit=5").await,
        json!({ "items": [] })
    );
    assert_eq!(
        app.get_json("/api/federation/network-stats").await,
        Value::Null
    );
    // Bad limits and bodies name the parameter.
    for q in [
        "limit=0",
        "limit=501",
        "limit=x",
        "limit=1&limit=2",
        "lmit=5",
    ] {
        let v = app
            .get(&format!("/api/federation/reports?{q}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_parameter");
        let want = if q.starts_with("lmit") {
            "lmit"
        } else {
            "limit"
        };
        assert_eq!(v["parameter"], want, "{q}: {v}");
    }
    for (body, field) in [
        (json!({ "wallet": "0xabc" }), "wallet"),
        (json!({ "level": "loud" }), "level"),
        (json!({ "continent": "DE" }), "continent"),
        (json!({ "enabled": "yes" }), "enabled"),
    ] {
        let v = app
            .send_json(Method::PUT, "/api/federation/settings", admin, body, &[])
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_parameter");
        assert_eq!(v["parameter"], field, "{v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(field)),
            "{v}"
        );
    }
    app.send_json(
        Method::PUT,
        "/api/federation/settings",
        admin,
        json!([1]),
        &[],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_body");
    let r = app
        .send(
            request(Method::PUT, "/api/federation/settings", admin, ip(1))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"level\":"))
                .expect("req"),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_body");
    // Read-only keys may look but not change.
    let created = app
        .post_json(
            "/api/keys",
            admin,
            json!({ "name": "viewer", "scope": "read" }),
            &[],
        )
        .await
        .json();
    let ro = Auth::Bearer(created["key"].as_str().expect("key"));
    assert_eq!(
        app.call(Method::GET, "/api/federation/status", ro)
            .await
            .status,
        StatusCode::OK
    );
    app.send_json(
        Method::PUT,
        "/api/federation/settings",
        ro,
        json!({ "level": "full" }),
        &[],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    for path in ["/api/federation/enable", "/api/federation/disable"] {
        app.post_json(path, ro, json!({}), &[])
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(
        app.get_json("/api/federation/settings").await["level"],
        "strict"
    );
    // A cookie session needs the CSRF token to change settings.
    let (cookie, csrf) = app.login().await;
    let c = Auth::Cookie(&cookie);
    app.send_json(
        Method::PUT,
        "/api/federation/settings",
        c,
        json!({ "level": "full" }),
        &[],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "csrf");
    app.post_json("/api/federation/disable", c, json!({}), &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "csrf");
    let r = app
        .send_json(
            Method::PUT,
            "/api/federation/settings",
            c,
            json!({ "level": "full" }),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["level"], "full");
    // The counters are on /metrics.
    let text = String::from_utf8(app.get("/metrics").await.body).expect("utf8");
    for line in [
        "truebit_federation_reports_sent_total 0",
        "truebit_federation_reports_blocked_total 0",
        "truebit_federation_reports_dropped_total 0",
        "truebit_federation_enabled 0",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test]
async fn federation_enable_and_disable_through_the_api_open_and_close_the_connection() {
    let dir = support::tempdir();
    let nats = crate::federation::NatsServer::start(dir.path());
    let config = FederationSettings {
        nats_url: Some(nats.url()),
        ..FederationSettings::default()
    }
    .resolve()
    .expect("federation config");
    let app = app_with_federation(settings(), 0, config).await;
    let admin = Auth::Bearer(KEY);
    let status = app.get_json("/api/federation/status").await;
    assert_eq!(status["configured"], true);
    assert_eq!(status["connection"], "off");
    assert_eq!(
        status["node_id"],
        Value::Null,
        "no identity before the first enable"
    );
    assert_eq!(nats.connections(), 0, "off: no connection");

    let r = app
        .post_json("/api/federation/enable", admin, json!({}), &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["settings"]["enabled"], true);
    assert_eq!(r.json()["settings"]["source"], "database");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = app.get_json("/api/federation/status").await;
        if status["connection"] == "connected" && nats.connections() == 1 {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not connected: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["node_id"].as_str().map(str::len), Some(32));
    assert_eq!(status["last_error"], Value::Null);

    let r = app
        .post_json("/api/federation/disable", admin, json!({}), &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["settings"]["enabled"], false);
    assert_eq!(r.json()["connection"], "off", "closed before the answer");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nats.connections() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server still sees the connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.get_json("/api/federation/settings").await["enabled"],
        false
    );
}
