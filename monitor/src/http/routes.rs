//! The `/api` route table: each route once, with its handler, parameters, access and
//! answer. The router and the OpenAPI document are both built from this table, so the
//! document describes exactly the routes served; tests walk it to prove that every
//! route needs authentication, and that an `admin` route refuses a read-only key (the
//! router enforces the flag; handlers do not check it again).

use axum::extract::Request;
use std::sync::OnceLock;

use axum::http::{header, HeaderValue, Method};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;

use super::api::alerts::{CHANNEL_PATH, INCIDENTS_QUERY, RULE_PATH};
use super::api::federation::{FEDERATION_REPORTS_QUERY, UPTIME_PROOF_QUERY};
use super::api::invoices::{INVOICES_QUERY, INVOICE_PATH};
use super::api::keys::KEY_PATH;
use super::api::tasks::TASK_PATH;
use super::api::{self, RANGE_QUERY};
use super::auth::Principal;
use super::error::ApiError;
use super::filters::{LOGS_QUERY, NO_PARAMS, TASKS_QUERY};
use super::params::ParamSpec;
pub use super::route::{Answer, Route};
use super::{live, openapi, AppState};

struct R(Route);

impl R {
    fn new(
        method: Method,
        path: &'static str,
        summary: &'static str,
        handler: MethodRouter<AppState>,
    ) -> R {
        R(Route {
            method,
            path,
            summary,
            description: "",
            query: NO_PARAMS,
            path_params: NO_PARAMS,
            admin: false,
            request: None,
            answer: Answer::Json(200, "Object"),
            errors: &[],
            handler,
        })
    }
    fn describe(mut self, d: &'static str) -> R {
        self.0.description = d;
        self
    }
    fn query(mut self, q: &'static [ParamSpec]) -> R {
        self.0.query = q;
        self
    }
    fn path_params(mut self, p: &'static [ParamSpec]) -> R {
        self.0.path_params = p;
        self
    }
    fn admin(mut self) -> R {
        self.0.admin = true;
        self
    }
    fn body(mut self, schema: &'static str) -> R {
        self.0.request = Some(schema);
        self
    }
    fn answer(mut self, a: Answer) -> R {
        self.0.answer = a;
        self
    }
    fn errors(mut self, e: &'static [(u16, &'static str)]) -> R {
        self.0.errors = e;
        self
    }
}

const FEDERATION_ERRORS: &[(u16, &str)] = &[(503, "The monitor is shutting down")];
const FEDERATION_CHANGE_ERRORS: &[(u16, &str)] = &[
    (
        409,
        "No federation server is configured (set FEDERATION_NATS_URL)",
    ),
    (503, "The monitor is shutting down"),
];

const UPTIME_PROOF_ERRORS: &[(u16, &str)] = &[
    (
        409,
        "Federation is not configured or not on, no hub keys are pinned, or the node has no identity yet",
    ),
    (
        502,
        "The hub could not be reached, or too few of the pinned keys signed one statement (the message says why)",
    ),
    (503, "The monitor is shutting down"),
];

const ALERTS_ERRORS: &[(u16, &str)] = &[(503, "The monitor is shutting down")];

/// `GET /api/openapi.json`: the document of this table (built once).
async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| openapi::document(&api_routes()).to_string());
    let mut response = doc.as_str().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Every route under `/api`.
pub fn api_routes() -> Vec<Route> {
    use Answer::Json;
    vec![
        R::new(Method::GET, "/api/openapi.json", "This document", get(openapi_json))
            .answer(Json(200, "Object")),
        R::new(Method::GET, "/api/session", "Who the caller is", get(api::session::session))
            .describe("How the request was authenticated, its scope, and for a login session the CSRF token to send in X-CSRF-Token with changes.")
            .answer(Json(200, "Session")),
        R::new(Method::GET, "/api/status", "Node, container, source and database state", get(api::status::status))
            .answer(Json(200, "Status")),
        R::new(Method::GET, "/api/tasks", "Tasks, newest first", get(api::tasks::tasks))
            .describe("Filter by status, chain and time range (received, else started, else completed time); cursor pagination. Lists never include task input or output.")
            .query(TASKS_QUERY)
            .answer(Json(200, "TaskPage")),
        R::new(Method::GET, "/api/tasks/{execution_id}", "One task with all its figures, log entries and invoices", get(api::tasks::task))
            .describe("Input and output are included only for a login session or an admin key (`data_access` says which).")
            .path_params(TASK_PATH)
            .answer(Json(200, "TaskDetail")),
        R::new(Method::GET, "/api/invoices", "Invoices with their line items, newest first", get(api::invoices::invoices))
            .query(INVOICES_QUERY)
            .answer(Json(200, "InvoicePage")),
        R::new(Method::GET, "/api/invoices/{id}", "One invoice with its line items", get(api::invoices::invoice))
            .path_params(INVOICE_PATH)
            .answer(Json(200, "Invoice")),
        R::new(Method::GET, "/api/earnings", "Invoices and line-item totals per UTC day", get(api::earnings::earnings))
            .describe("Default range: the last 30 days; at most 366 days. `earned` is the value of the `pay` line items: steps × step gas price + memory × byte gas price, in the units the node reports.")
            .query(RANGE_QUERY)
            .answer(Json(200, "Earnings")),
        R::new(Method::GET, "/api/export/tasks", "Download tasks (CSV or JSON lines)", get(api::export::tasks))
            .describe("Every task the filters select, newest first, streamed (no page size). CSV: a header row and one row per task, the columns of a task in the lists; JSON lines: one task object per line as in GET /api/tasks. Input and output are never included.")
            .query(api::export::TASKS_EXPORT_QUERY)
            .answer(Answer::Download(&["text/csv", "application/x-ndjson"])),
        R::new(Method::GET, "/api/export/invoices", "Download invoices with their line items (CSV or JSON lines)", get(api::export::invoices))
            .describe("Newest first, streamed. CSV: one row per line item, the invoice's columns repeated (an invoice without items has one row); JSON lines: one invoice with `line_items` per line, as in GET /api/invoices.")
            .query(api::export::INVOICES_EXPORT_QUERY)
            .answer(Answer::Download(&["text/csv", "application/x-ndjson"])),
        R::new(Method::GET, "/api/export/earnings", "Download daily earnings (CSV or JSON lines)", get(api::export::earnings))
            .describe("Per UTC day, oldest first; default the last 30 days, at most 366. CSV: one row per day and operation (`earned_gas_units` is the day's, `value_gas_units` the operation's); JSON lines: one day per line as in GET /api/earnings.")
            .query(api::export::EARNINGS_EXPORT_QUERY)
            .answer(Answer::Download(&["text/csv", "application/x-ndjson"])),
        R::new(Method::GET, "/api/export/logs", "Download the log of a time range (plain text)", get(api::export::logs))
            .describe("Oldest first, one entry per line as the node printed it (`YYYY-MM-DD HH:MM:SS level: logger:version message`, rebuilt from the stored parts; entries the parser could not split are as received). Default: the last 24 hours. Entries with task input or output are hidden from read-only keys as in GET /api/logs; a message is cut at 64 KiB.")
            .query(api::export::LOG_EXPORT_QUERY)
            .answer(Answer::Download(&["text/plain"])),
        R::new(Method::GET, "/api/logs", "Log entries, newest first", get(api::logs::logs))
            .query(LOGS_QUERY)
            .answer(Json(200, "LogPage")),
        R::new(Method::GET, "/api/stats", "Task counts, success rate, tasks per hour, distributions, cache hit rate", get(api::stats::stats))
            .describe("Default range: the last 24 hours; at most 366 days. Figures are per whole UTC hour: `from` is rounded down and `to` up. The series is per hour up to 7 days, per day beyond.")
            .query(RANGE_QUERY)
            .answer(Json(200, "Stats")),
        R::new(Method::GET, "/api/uptime", "The container's downtime in a range", get(api::uptime::uptime))
            .describe("From the recorded container events. Default range: the last 24 hours; it ends at the latest now. Time before the first known event is `unknown_seconds`.")
            .query(RANGE_QUERY)
            .answer(Json(200, "Uptime")),
        R::new(Method::GET, "/api/events", "Live stream of new log entries, task changes, invoices and status", get(live::events))
            .describe("Server-sent events: `entry`, `task`, `invoice`, `status`, `removed` (entries a longer version replaced), and `skipped` after a burst. A client that reads too slowly gets `lagged` and is disconnected; `expired` when its session or key is no longer valid. Limits: WS_MAX_CONNECTIONS, WS_MAX_PER_IP.")
            .answer(Answer::EventStream),
        R::new(Method::GET, "/api/keys", "Named API keys (never their secrets)", get(api::keys::keys))
            .admin()
            .answer(Json(200, "ApiKeyList")),
        R::new(Method::POST, "/api/keys", "Create a named API key; the key is shown once", post(api::keys::post_key))
            .admin()
            .body("NewApiKey")
            .errors(&[(409, "The name is taken")])
            .answer(Json(201, "CreatedApiKey")),
        R::new(Method::DELETE, "/api/keys/{id}", "Revoke a named API key", delete(api::keys::delete_key))
            .admin()
            .path_params(KEY_PATH)
            .answer(Json(200, "ApiKey")),
        R::new(Method::GET, "/api/federation/status", "Federation: settings, connection, identity (public parts), counters", get(api::federation::federation_status))
            .describe("`configured` is false without FEDERATION_NATS_URL (federation cannot be enabled then). Counters: reports sent, blocked by the privacy validator, dropped; blocked reasons of the last 7 days.")
            .errors(FEDERATION_ERRORS)
            .answer(Json(200, "FederationStatus")),
        R::new(Method::GET, "/api/federation/settings", "Federation settings in effect", get(api::federation::federation_settings))
            .describe("`source` is `config` until the operator changes a setting, then `database` (stored settings win over FEDERATION_ENABLED, _LEVEL, _CONTINENT).")
            .errors(FEDERATION_ERRORS)
            .answer(Json(200, "FederationSettings")),
        R::new(Method::PUT, "/api/federation/settings", "Change federation settings", put(api::federation::put_federation_settings))
            .describe("Absent fields stay as they are; `\"continent\": null` removes the continent. Unknown fields are refused. Enabling needs FEDERATION_NATS_URL (409 otherwise); disabling closes the connection and discards unsent reports.")
            .admin()
            .body("FederationSettingsUpdate")
            .errors(FEDERATION_CHANGE_ERRORS)
            .answer(Json(200, "FederationSettings")),
        R::new(Method::POST, "/api/federation/enable", "Turn federation on", post(api::federation::federation_enable))
            .describe("Creates the node identity on first use and connects. 409 without FEDERATION_NATS_URL. Answers the status after the change.")
            .admin()
            .errors(FEDERATION_CHANGE_ERRORS)
            .answer(Json(200, "FederationStatus")),
        R::new(Method::POST, "/api/federation/disable", "Turn federation off", post(api::federation::federation_disable))
            .describe("The connection is closed and unsent reports are discarded (logged as dropped) before this answers. Answers the status after the change.")
            .admin()
            .errors(FEDERATION_ERRORS)
            .answer(Json(200, "FederationStatus")),
        R::new(Method::GET, "/api/federation/reports", "The federation transparency log, newest first", get(api::federation::federation_reports))
            .describe("Every report queued, sent, blocked or dropped in the last 7 days, with its exact bytes (`text`).")
            .query(FEDERATION_REPORTS_QUERY)
            .errors(FEDERATION_ERRORS)
            .answer(Json(200, "FederationReportList")),
        R::new(Method::GET, "/api/federation/network-stats", "The newest network statistics", get(api::federation::federation_network_stats))
            .describe("The newest statistics that verified against the pinned aggregator key (FEDERATION_AGGREGATOR_KEY), or `null`.")
            .errors(FEDERATION_ERRORS)
            .answer(Json(200, "NetworkStatsSnapshot")),
        R::new(Method::GET, "/api/federation/uptime-proof", "Download this node's uptime proof from the hub", get(api::federation::federation_uptime_proof))
            .describe("Asks the federation hub for a certified statement of the 5-minute windows this node's pseudonymous id reported in over whole UTC days (`from` to `to`, inclusive; default the last 29 days, which a hub with the default 30-day retention holds whole; at most 31), signed with the node's key; each aggregator replica answers with its own signature. Answers the proof (JSON, `uptime-proof-FROM-TO.json`) once the pinned threshold of hub keys signed the same statement, verified; anyone can check it offline (`truebit-aggregator verify-proof`). Takes up to 5 s. 502 says why there is none (e.g. replicas refused a stale request).")
            .query(UPTIME_PROOF_QUERY)
            .admin()
            .errors(UPTIME_PROOF_ERRORS)
            .answer(Answer::Download(&["application/json"])),
        R::new(Method::GET, "/api/alerts", "Alert rules with their states, channels with their delivery results", get(api::alerts::overview))
            .describe("Each rule's settings in effect (`source`: `config`, or `database` once changed here; stored settings win over ALERT_* from then on), its state (ok, pending, firing) and since when. Channels by name and kind only: never their addresses or secrets.")
            .errors(ALERTS_ERRORS)
            .answer(Json(200, "Alerts")),
        R::new(Method::GET, "/api/alerts/incidents", "The alert incident history, newest first", get(api::alerts::incidents))
            .describe("One incident per firing: the rule, its detail, since when, when it fired and resolved, the channels that accepted a message of it and the failed delivery attempts.")
            .query(INCIDENTS_QUERY)
            .errors(ALERTS_ERRORS)
            .answer(Json(200, "AlertIncidentList")),
        R::new(Method::PUT, "/api/alerts/rules/{rule}", "Change an alert rule's settings", put(api::alerts::put_rule))
            .describe("Absent fields stay as they are; a field the rule does not use is refused (`settings` in GET /api/alerts lists them). Stored: wins over the ALERT_* settings, also after a restart; in effect at once.")
            .admin()
            .path_params(RULE_PATH)
            .body("AlertRuleUpdate")
            .errors(ALERTS_ERRORS)
            .answer(Json(200, "AlertRule")),
        R::new(Method::POST, "/api/alerts/channels", "Define an alert channel", post(api::alerts::post_channel))
            .describe("Validated like the ALERT_* settings (400 names the field). Stored: in effect at once and after a restart; a channel of the configuration with the same name must be changed (PUT) instead (409). The answer never carries the URL, secret or addresses, only which are set.")
            .admin()
            .body("NewAlertChannel")
            .errors(&[(409, "A channel of that name exists"), (503, "The monitor is shutting down")])
            .answer(Json(201, "AlertChannel")),
        R::new(Method::PUT, "/api/alerts/channels/{channel}", "Change an alert channel's settings", put(api::alerts::put_channel))
            .describe("Absent fields stay as they are (so a secret need not be sent again); an empty string unsets one. Also for a channel of the configuration: the stored settings win from then on. What was queued for the channel goes out with the new settings.")
            .admin()
            .path_params(CHANNEL_PATH)
            .body("AlertChannelUpdate")
            .errors(ALERTS_ERRORS)
            .answer(Json(200, "AlertChannel")),
        R::new(Method::POST, "/api/alerts/channels/{channel}/test", "Send a test message to an alert channel now", post(api::alerts::test_channel))
            .describe("`sent` says whether the channel took it, `error` why not (never an address or a secret). 404 when no channel of that name is configured.")
            .admin()
            .path_params(CHANNEL_PATH)
            .errors(ALERTS_ERRORS)
            .answer(Json(200, "AlertTestResult")),
        R::new(Method::DELETE, "/api/alerts/channels/{channel}", "Delete an alert channel", delete(api::alerts::delete_channel))
            .describe("The answer is the channel as it was. What was queued for it is dropped; a channel of the configuration stays deleted (stored) until it is defined again.")
            .admin()
            .path_params(CHANNEL_PATH)
            .errors(ALERTS_ERRORS)
            .answer(Json(200, "AlertChannel")),
    ]
    .into_iter()
    .map(|r| r.0)
    .collect()
}

/// Lets a request through to an `admin` route only with the password (a session) or an
/// admin key; runs after [`super::auth::require_auth`], which put the [`Principal`] there.
async fn require_admin(req: Request, next: Next) -> Response {
    if req
        .extensions()
        .get::<Principal>()
        .is_some_and(Principal::is_admin)
    {
        next.run(req).await
    } else {
        ApiError::Forbidden {
            reason: "this route needs the password or an admin key",
        }
        .into_response()
    }
}

/// The routes as an axum router to nest at `/api` (paths relative to it), the methods of
/// one path merged; an `admin` route's handler behind [`require_admin`].
pub fn api_router(routes: Vec<Route>) -> Router<AppState> {
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for route in routes {
        let path = route.path.strip_prefix("/api").unwrap_or(route.path);
        let handler = if route.admin {
            route.handler.route_layer(from_fn(require_admin))
        } else {
            route.handler
        };
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => {
                let merged = std::mem::take(existing).merge(handler);
                *existing = merged;
            }
            None => by_path.push((path, handler)),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
}
