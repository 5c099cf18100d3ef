//! The OpenAPI 3.0 document of a list of routes (the table in [`super::routes`] serves
//! it): paths, parameters (from the same [`ParamSpec`]s that validate requests),
//! security, and the schemas of the answers.

use serde_json::{json, Map, Value};

use super::params::{ParamKind, ParamSpec};
use super::route::{Answer, Route};
use crate::model::{Kind, TaskStatus};
use truebit_protocol::report::{Continent, Level as FederationLevel};

/// Whole Unix seconds from 0 to 7,258,118,400 (2200-01-01T00:00:00Z), leading zeros allowed.
const UNIX_SECONDS: &str = "^0*([0-9]{1,9}|[1-6][0-9]{9}|7[01][0-9]{8}|72[0-4][0-9]{7}|725[0-7][0-9]{6}|7258[01][0-9]{5}|72581[01][0-9]{4}|725811[0-7][0-9]{3}|7258118[0-3][0-9]{2}|7258118400)$";

pub fn param_schema(kind: ParamKind) -> Value {
    match kind {
        ParamKind::Enum(words) => json!({ "type": "string", "enum": words }),
        ParamKind::Int { min, max } => {
            json!({ "type": "integer", "format": "int64", "minimum": min, "maximum": max })
        }
        // What `params::parse_time_ns` accepts: an RFC 3339 time of the years 1970 to 2199
        // (the instant itself from 1970-01-01T00:00:00Z), or whole Unix seconds from 0 to
        // 7,258,118,400 (2200-01-01T00:00:00Z), leading zeros allowed.
        ParamKind::Time => json!({
            "description": "RFC 3339 (e.g. 2025-11-24T13:55:40Z) or Unix seconds; from 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z",
            "anyOf": [
                { "type": "string", "format": "date-time", "pattern": "^(19[7-9][0-9]|2[01][0-9]{2})-" },
                { "type": "string", "pattern": UNIX_SECONDS },
            ],
        }),
        ParamKind::Date => json!({
            "type": "string",
            "format": "date",
            "pattern": "^(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
        }),
        ParamKind::Text { max_len } => {
            json!({ "type": "string", "minLength": 1, "maxLength": max_len })
        }
        ParamKind::Id => {
            json!({ "type": "string", "minLength": 1, "maxLength": super::params::MAX_ID_CHARS })
        }
        ParamKind::Cursor => {
            json!({ "type": "string", "pattern": "^-?[0-9]{1,18}\\.-?[0-9]{1,18}$" })
        }
    }
}

fn parameter(spec: &ParamSpec, location: &str) -> Value {
    json!({
        "name": spec.name,
        "in": location,
        "required": location == "path",
        "description": spec.description,
        "schema": param_schema(spec.kind),
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    })
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = route
        .path_params
        .iter()
        .map(|p| parameter(p, "path"))
        .collect();
    parameters.extend(route.query.iter().map(|p| parameter(p, "query")));
    let mut responses = Map::new();
    match route.answer {
        Answer::Json(status, schema) => {
            responses.insert(
                status.to_string(),
                json!({
                    "description": "Success",
                    "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } },
                }),
            );
        }
        Answer::EventStream => {
            responses.insert(
                "200".into(),
                json!({
                    "description": "A stream of server-sent events",
                    "content": { "text/event-stream": { "schema": { "type": "string" } } },
                }),
            );
        }
        Answer::Download(types) => {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| ((*t).to_owned(), json!({ "schema": { "type": "string" } })))
                .collect();
            responses.insert(
                "200".into(),
                json!({ "description": "A file, streamed", "content": content }),
            );
        }
    }
    responses.insert(
        "400".into(),
        error_response("A parameter or the body is invalid; `parameter` names it"),
    );
    responses.insert("401".into(), error_response("Not authenticated"));
    responses.insert(
        "429".into(),
        error_response("Too many failed logins or bad keys from this address, or too many streams"),
    );
    if route.admin || route.method != axum::http::Method::GET {
        responses.insert(
            "403".into(),
            error_response("A read-only key, or a cookie request without its CSRF token"),
        );
    }
    if !route.path_params.is_empty() {
        responses.insert("404".into(), error_response("Not found"));
    }
    for (status, description) in route.errors {
        responses.insert(status.to_string(), error_response(description));
    }
    if route.request.is_some() {
        responses.insert(
            "408".into(),
            error_response("The body did not arrive within 30 s of the headers"),
        );
        responses.insert("413".into(), error_response("The body is too large"));
        responses.insert("415".into(), error_response("The body is not JSON"));
    }
    let mut op = json!({
        "operationId": operation_id(route),
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
        "security": [ { "bearer": [] }, { "session": [] } ],
    });
    if !route.description.is_empty() {
        op["description"] = json!(route.description);
    }
    if let Some(schema) = route.request {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } },
        });
    }
    op
}

fn operation_id(route: &Route) -> String {
    let words: Vec<&str> = route
        .path
        .trim_start_matches("/api/")
        .split('/')
        .map(|w| w.trim_matches(['{', '}']).trim_end_matches(".json"))
        .collect();
    format!(
        "{}_{}",
        route.method.as_str().to_ascii_lowercase(),
        words.join("_")
    )
}

/// Units of the money-like figures: every one is a JSON number (the same in every answer).
const STEPS: &str =
    "Computation steps (total_steps_computed), an integer; null where the node printed no integer";
const MEMORY: &str = "Peak memory (peak_memory_used) in the unit the node reports, an integer; null where the node printed no integer";
const VALUE: &str = "Gas units: steps × step gas price + memory × byte gas price, summed over the items whose figures and prices are numbers";

/// The document for `routes`.
pub fn document(routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "TrueBit node monitor API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Local API of truebit-monitor. Every /api route needs a login session (cookie from POST /auth/login) or an API key (`Authorization: Bearer <key>`). Times are Unix nanoseconds (`*_ns`), milliseconds (`*_ms`) or seconds (`node_time`); parameters take RFC 3339 or Unix seconds. Errors are JSON `{error, message, parameter?}`. /health (no authentication), /metrics (Prometheus text, authenticated) and /auth/login, /auth/logout are outside /api; see docs/API.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "API_KEY or a named key from `truebit-monitor api-key create`" },
                "session": { "type": "apiKey", "in": "cookie", "name": "tbm_session", "description": "`__Host-tbm_session` behind HTTPS" },
            },
            "schemas": answer_schemas_strict(schemas(), routes),
        },
    })
}

fn nullable(t: &str) -> Value {
    json!({ "type": t, "nullable": true })
}

fn schemas() -> Value {
    let int = || json!({ "type": "integer", "format": "int64" });
    let opt_int = || json!({ "type": "integer", "format": "int64", "nullable": true });
    let opt_str = || nullable("string");
    let task_props = json!({
        "execution_id": { "type": "string" },
        "status": { "type": "string", "enum": TaskStatus::WORDS },
        "task_id": opt_str(), "chain_id": opt_str(), "block_number": opt_int(), "block_hash": opt_str(),
        "requester": opt_str(), "reward": opt_str(), "created_ms": opt_int(), "received_ms": opt_int(),
        "received_ns": opt_int(), "downloaded_ms": opt_int(), "started_ms": opt_int(), "started_ns": opt_int(),
        "completed_ms": opt_int(), "completed_ns": opt_int(), "exit_code": opt_int(), "elapsed_ns": opt_int(),
        "elapsed_ms": opt_int(), "gas_used": opt_int(), "gas_limit": opt_int(), "metered_gas_limit": opt_int(),
        "memory_peak": opt_int(), "memory_limit": opt_int(), "metered_memory_limit": opt_int(),
        "call_limit": opt_int(), "call_peak": opt_int(), "frame_limit": opt_int(), "frame_peak": opt_int(),
        "execution_timeout_ms": opt_int(), "required_solutions": opt_int(), "total_solutions": opt_int(),
        "wasm_size": opt_int(), "wasm_hash": opt_str(), "cached": nullable("boolean"),
        "error": { "type": "string", "nullable": true, "description": "Why the task failed: the first line its execution printed on stderr (failed tasks only; at most 500 characters). Task data: null for a read-only key" },
        "input": { "type": "string", "nullable": true, "description": "Only in /api/tasks/{execution_id}, for a session or an admin key" },
        "output": { "type": "string", "nullable": true, "description": "As input" },
    });
    // Lists leave out input and output; the task route sends them (null when hidden).
    let task_required: Vec<&String> = task_props
        .as_object()
        .map(|p| {
            p.keys()
                .filter(|k| *k != "input" && *k != "output")
                .collect()
        })
        .unwrap_or_default();
    let entry = json!({
        "type": "object",
        "properties": {
            "id": int(), "source": { "type": "string" },
            "pos": { "type": "object", "properties": { "major": int(), "minor": int() } },
            "time_ns": int(), "received_ns": opt_int(), "node_time": opt_int(), "level": opt_str(),
            "logger": opt_str(), "version": opt_str(), "kind": { "type": "string", "enum": Kind::WORDS },
            "execution_id": opt_str(), "message": { "type": "string" },
        },
    });
    let line_item = json!({
        "type": "object",
        "properties": {
            "operation": { "type": "string", "description": "charge, pay, penalty or what else the node printed" },
            "account": opt_str(),
            "steps": { "type": "integer", "format": "int64", "nullable": true, "description": STEPS },
            "memory": { "type": "integer", "format": "int64", "nullable": true, "description": MEMORY },
            "steps_text": { "type": "string", "nullable": true, "description": "total_steps_computed as the node printed it" },
            "memory_text": { "type": "string", "nullable": true, "description": "peak_memory_used as the node printed it" },
        },
    });
    let invoice = json!({
        "type": "object",
        "properties": {
            "id": int(), "invoice_id": opt_int(), "execution_id": opt_str(), "task_id": opt_str(),
            "task_created_ts": opt_int(), "step_gas_price": opt_str(), "byte_gas_price": opt_str(),
            "time_ns": int(), "node_time": opt_int(), "received_ns": opt_int(),
            "line_items": { "type": "array", "items": { "$ref": "#/components/schemas/LineItem" } },
        },
    });
    let page = |item: &str| {
        json!({
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } },
                "next_cursor": { "type": "string", "nullable": true, "description": "Pass as `cursor` for the next page" },
            },
        })
    };
    let buckets = json!({
        "type": "object",
        "properties": {
            "count": int(), "mean": nullable("number"),
            "buckets": { "type": "array", "items": { "type": "object", "properties": { "bucket": { "type": "string" }, "count": int() } } },
        },
    });
    let key = json!({
        "type": "object",
        "properties": {
            "id": int(), "name": { "type": "string" }, "prefix": { "type": "string" },
            "scope": { "type": "string", "enum": ["read", "admin"] },
            "created_ns": int(), "last_used_ns": opt_int(), "revoked_ns": opt_int(),
        },
    });
    let mut created = key.clone();
    created["properties"]["key"] =
        json!({ "type": "string", "description": "The key; shown only in this answer" });
    let mut schemas = json!({
        "Object": { "type": "object" },
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "description": "Machine-readable code, e.g. bad_parameter" },
                "message": { "type": "string", "description": "What was wrong and what to do" },
                "parameter": { "type": "string", "description": "The parameter that was wrong" },
            },
        },
        "Session": {
            "type": "object",
            "required": ["auth", "scope", "task_data"],
            "properties": {
                "id": { "type": "integer", "format": "int64", "description": "A named key's id" },
                "auth": { "type": "string", "enum": ["session", "api_key"] },
                "scope": { "type": "string", "enum": ["read", "admin"] },
                "task_data": { "type": "boolean" }, "name": { "type": "string" },
                "csrf_token": { "type": "string" }, "expires_ns": int(),
            },
        },
        "Status": {
            "type": "object",
            "properties": {
                "monitor": { "type": "object", "properties": { "version": { "type": "string" }, "started_ns": int(), "now_ns": int() } },
                "source": { "type": "object", "description": "kind (docker|file|demo), connection, container, last_error" },
                "node": { "type": "object", "properties": {
                    "version": opt_str(), "address": opt_str(), "registered_ns": opt_int(),
                    "slots_used": opt_int(), "slots_total": opt_int(), "last_node_time": opt_int() } },
                "ingest": { "type": "object", "properties": {
                    "last_log_ns": opt_int(), "last_received_ns": opt_int(), "last_commit_ns": opt_int(),
                    "lag_ms": opt_int(), "write": { "type": "object", "properties": { "ok": { "type": "boolean" }, "error": opt_str() } } } },
                "database": { "type": "object", "properties": { "path": { "type": "string" }, "size_bytes": int() } },
            },
        },
        "Task": { "type": "object", "required": task_required, "properties": task_props },
        "TaskPage": page("Task"),
        "TaskDetail": {
            "type": "object",
            "properties": {
                "task": { "$ref": "#/components/schemas/Task" },
                "data_access": { "type": "string" },
                "entries": { "type": "array", "items": { "$ref": "#/components/schemas/LogEntry" } },
                "entries_truncated": { "type": "boolean" },
                "invoices": { "type": "array", "items": { "$ref": "#/components/schemas/Invoice" } },
            },
        },
        "LogEntry": entry,
        "LogPage": page("LogEntry"),
        "LineItem": line_item,
        "Invoice": invoice,
        "InvoicePage": page("Invoice"),
        "Earnings": {
            "type": "object",
            "properties": {
                "from_ns": int(), "to_ns": int(),
                "days": { "type": "array", "items": { "type": "object", "properties": {
                    "date": { "type": "string", "format": "date", "description": "The UTC day" }, "invoices": int(),
                    "earned": { "type": "number", "description": "The `value` of the day's `pay` line items, in gas units" },
                    "operations": {
                        "type": "object",
                        "description": "Line-item totals per operation (charge, pay, penalty, ...)",
                        "additionalProperties": { "type": "object", "properties": {
                            "items": { "type": "integer", "format": "int64", "description": "Line items" },
                            "steps": { "type": "integer", "format": "int64", "description": STEPS },
                            "memory": { "type": "integer", "format": "int64", "description": MEMORY },
                            "value": { "type": "number", "description": VALUE },
                        } },
                    } } } },
                "penalties": {
                    "type": "object",
                    "description": "The range's penalty line items (whole UTC days, as `days`): the node's own, charged to its address, and those charged to other accounts",
                    "properties": {
                        "node_address": { "type": "string", "nullable": true, "description": "The node's address, once it printed its registration (null: whose is unknown, every penalty counts as others)" },
                        "own": { "$ref": "#/components/schemas/ItemTotals" },
                        "others": { "$ref": "#/components/schemas/ItemTotals" },
                        "by_account": { "type": "array", "items": { "type": "object", "properties": {
                            "account": opt_str(),
                            "own": { "type": "boolean", "description": "The node's own address" },
                            "items": { "type": "integer", "format": "int64", "description": "Line items" },
                            "value": { "type": "number", "description": VALUE },
                        } } },
                    },
                },
            },
        },
        "ItemTotals": { "type": "object", "properties": {
            "items": { "type": "integer", "format": "int64", "description": "Line items" },
            "value": { "type": "number", "description": VALUE },
        } },
        "Stats": {
            "type": "object",
            "properties": {
                "from_ns": int(), "to_ns": int(), "success_rate": nullable("number"),
                "tasks": { "type": "object", "properties": {
                    "total": int(), "received": int(), "executing": int(), "completed": int(), "failed": int() } },
                "interval": { "type": "string", "enum": ["hour", "day"] }, "interval_ns": int(),
                "series": { "type": "array", "items": { "type": "object", "properties": {
                    "start_ns": int(), "total": int(), "completed": int(), "failed": int() } } },
                "execution_time_ms": buckets.clone(),
                "gas_used": buckets,
                "cache": { "type": "object", "properties": { "hits": int(), "known": int(), "hit_rate": nullable("number") } },
            },
        },
        "Uptime": {
            "type": "object",
            "properties": {
                "from_ns": int(), "to_ns": int(), "downtime_seconds": { "type": "number" },
                "uptime_seconds": { "type": "number" }, "unknown_seconds": { "type": "number" },
                "inferred_downtime_seconds": { "type": "number" },
                "down_intervals": { "type": "array", "items": { "type": "object", "properties": {
                    "start_ns": int(), "end_ns": int(), "cause": opt_str(), "ongoing": { "type": "boolean" },
                    "inferred": { "type": "boolean" } } } },
            },
        },
        "ApiKey": key,
        "ApiKeyList": { "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/ApiKey" } } } },
        "NewApiKey": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9 ._-]*[A-Za-z0-9._-][A-Za-z0-9 ._-]*$", "description": "1 to 64 of A-Z a-z 0-9 space - _ . (not only spaces)" },
                "scope": { "type": "string", "enum": ["read", "admin"], "default": "read" },
            },
        },
        "CreatedApiKey": created,
    });
    if let (Some(all), Value::Object(federation)) = (schemas.as_object_mut(), federation_schemas())
    {
        all.extend(federation);
    }
    if let (Some(all), Value::Object(alerts)) = (schemas.as_object_mut(), alert_schemas()) {
        all.extend(alerts);
    }
    schemas
}

/// The schemas of the `/api/alerts` answers and bodies.
fn alert_schemas() -> Value {
    let int = || json!({ "type": "integer", "format": "int64" });
    let opt_int = || json!({ "type": "integer", "format": "int64", "nullable": true });
    let rules: Vec<&str> = crate::alerts::Rule::RULES.iter().map(|r| r.id()).collect();
    let kinds: Vec<&str> = crate::alerts::Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let setting = json!({ "type": "string", "enum": ["after_seconds", "count", "window_seconds", "percent"] });
    let rule = json!({
        "type": "object",
        "properties": {
            "id": { "type": "string", "enum": rules.clone() },
            "title": { "type": "string" },
            "enabled": { "type": "boolean" },
            "after_seconds": { "type": "integer", "format": "int64", "description": "How long the condition must hold (rules with after_seconds in `settings`)" },
            "count": { "type": "integer", "format": "int64", "description": "restart_loop: starts; failure_rate: fewest finished tasks; federation: reports not delivered" },
            "window_seconds": { "type": "integer", "format": "int64", "description": "restart_loop, failure_rate: the window counted over" },
            "percent": { "type": "integer", "format": "int64", "description": "failure_rate: the share of failed tasks" },
            "settings": { "type": "array", "items": setting, "description": "The settings this rule uses besides enabled" },
            "source": { "type": "string", "enum": ["config", "database"] },
            "state": { "type": "string", "enum": ["ok", "pending", "firing"] },
            "since_ns": opt_int(), "fired_ns": opt_int(),
            "details": { "type": "string", "description": "The condition's one-line detail when it last changed" },
        },
    });
    let field = json!({ "type": "string", "enum": ["url", "secret", "chat_id", "to", "from"] });
    let text = |what: &str| json!({ "type": "string", "maxLength": 2048, "description": what });
    let settings = |with_name: bool| {
        let mut props = json!({
            "kind": { "type": "string", "enum": kinds.clone() },
            "url": text("webhook, Discord, Slack or ntfy topic URL; Telegram's API base (optional); email: the SMTP URL (smtps://user:password@host or smtp://…:587)"),
            "secret": text("webhook signing secret (16+ characters), Telegram bot token, ntfy access token; write-only"),
            "chat_id": text("Telegram chat id (a number) or @channelname"),
            "to": text("email recipients, comma separated"),
            "from": text("email sender"),
        });
        if with_name {
            props["name"] = json!({ "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$" });
        }
        props
    };
    json!({
        "AlertChannel": {
            "type": "object",
            "description": "A channel by name and kind, and which settings are set: never their values.",
            "properties": {
                "name": { "type": "string" }, "kind": { "type": "string", "enum": kinds.clone() },
                "source": { "type": "string", "enum": ["config", "database"] },
                "set": { "type": "array", "items": field },
                "queued": int(), "messages_total": int(), "delivered_total": int(),
                "failures_total": int(), "dropped_total": int(),
                "last_success_ns": opt_int(), "last_failure_ns": opt_int(), "last_error": nullable("string"),
            },
        },
        "NewAlertChannel": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "kind"],
            "properties": settings(true),
        },
        "AlertChannelUpdate": {
            "type": "object",
            "additionalProperties": false,
            "description": "Absent fields stay as they are; an empty string unsets one.",
            "properties": settings(false),
        },
        "AlertRule": rule,
        "Alerts": {
            "type": "object",
            "properties": {
                "rules": { "type": "array", "items": { "$ref": "#/components/schemas/AlertRule" } },
                "channels": { "type": "array", "items": { "$ref": "#/components/schemas/AlertChannel" } },
                "firing": int(),
                "evaluated": { "type": "boolean", "description": "False until the rules were first evaluated after a start" },
                "reminder_seconds": opt_int(),
                "heartbeat": { "type": "boolean", "description": "Whether HEARTBEAT_URL is set" },
            },
        },
        "AlertIncident": {
            "type": "object",
            "properties": {
                "id": int(), "rule": { "type": "string", "enum": rules },
                "details": { "type": "string" },
                "since_ns": int(), "fired_ns": int(), "resolved_ns": opt_int(),
                "channels_told": { "type": "array", "items": { "type": "string" } },
                "delivery_failures": int(),
            },
        },
        "AlertIncidentList": { "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/AlertIncident" } } } },
        "AlertRuleUpdate": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "enabled": { "type": "boolean" },
                "after_seconds": { "type": "integer", "minimum": 1, "maximum": 604_800 },
                "count": { "type": "integer", "minimum": 1, "maximum": 100_000 },
                "window_seconds": { "type": "integer", "minimum": 1, "maximum": 604_800 },
                "percent": { "type": "integer", "minimum": 1, "maximum": 100 },
            },
        },
        "AlertTestResult": {
            "type": "object",
            "properties": {
                "channel": { "type": "string" }, "kind": { "type": "string", "enum": kinds },
                "sent": { "type": "boolean" }, "error": nullable("string"),
            },
        },
    })
}

/// The component schemas with [`strict`] applied to all but the request bodies.
fn answer_schemas_strict(mut schemas: Value, routes: &[Route]) -> Value {
    if let Value::Object(all) = &mut schemas {
        for (name, schema) in all.iter_mut() {
            if !routes.iter().any(|r| r.request == Some(name.as_str())) {
                strict(schema);
            }
        }
    }
    schemas
}

/// Every object schema of an answer with `properties` lists exactly the fields the server
/// sends: all of them `required` unless the schema names its required ones, and no others
/// (`additionalProperties: false` unless it says otherwise). Request bodies say
/// themselves which fields they need. The tests validate the
/// server's answers against these schemas, so a field added, renamed or dropped on one
/// side only fails there.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                let names: Vec<Value> = props.keys().map(|k| json!(k)).collect();
                map.entry("required").or_insert(Value::Array(names));
                map.entry("additionalProperties").or_insert(json!(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// The schemas of the `/api/federation` answers and bodies.
fn federation_schemas() -> Value {
    let int = || json!({ "type": "integer", "format": "int64" });
    let opt_int = || json!({ "type": "integer", "format": "int64", "nullable": true });
    let opt_str = || nullable("string");
    let levels: Vec<&str> = FederationLevel::ALL.iter().map(|l| l.label()).collect();
    let level = json!({ "type": "string", "enum": levels });
    // A nullable enum lists `null` among its values (OpenAPI 3.0).
    let mut continents: Vec<Value> = Continent::ALL.iter().map(|c| json!(c.label())).collect();
    continents.push(Value::Null);
    let continent = json!({ "type": "string", "enum": continents, "nullable": true });
    let federation_settings = json!({
        "type": "object",
        "properties": {
            "enabled": { "type": "boolean" },
            "level": level.clone(),
            "continent": continent.clone(),
            "source": { "type": "string", "enum": ["config", "database"] },
        },
    });
    json!({
        "FederationSettings": federation_settings.clone(),
        "FederationSettingsUpdate": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "enabled": { "type": "boolean" },
                "level": level.clone(),
                "continent": continent.clone(),
            },
        },
        "FederationStatus": {
            "type": "object",
            "properties": {
                "settings": federation_settings,
                "configured": { "type": "boolean", "description": "Whether FEDERATION_NATS_URL is set" },
                "servers": { "type": "array", "items": { "type": "string" }, "description": "Without credentials" },
                "node_id": opt_str(), "public_key": opt_str(), "aggregator_key": opt_str(),
                "connection": { "type": "string", "description": "off, connecting, connected, disconnected" },
                "delivery": { "type": "string", "enum": ["jetstream", "core", null], "nullable": true },
                "last_error": opt_str(),
                "next_window": opt_int(), "last_sent_window": opt_int(), "last_sent_ms": opt_int(),
                "queued": int(), "sent_total": int(), "blocked_total": int(), "dropped_total": int(),
                "blocked_reasons": { "type": "array", "items": { "type": "object", "properties": { "code": { "type": "string" }, "count": int() } } },
                "stats_received": int(), "stats_rejected": int(), "last_stats_rejection": opt_str(),
            },
        },
        "FederationReport": {
            "type": "object",
            "properties": {
                "id": int(), "window": int(),
                "outcome": { "type": "string", "enum": ["queued", "sent", "blocked", "dropped"] },
                "code": opt_str(), "reason": opt_str(), "cover": nullable("boolean"),
                "task_items": opt_int(), "delay_ms": opt_int(), "created_ms": int(), "sent_ms": opt_int(),
                "text": { "type": "string", "description": "The report's exact bytes (ASCII JSON)" },
            },
        },
        "FederationReportList": { "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/FederationReport" } } } },
        "NetworkStatsSnapshot": {
            "type": "object",
            "nullable": true,
            "properties": {
                "stats": { "type": "object", "description": "The hub's certified statistics (truebit-protocol `NetworkStats`)" },
                "signers": { "type": "array", "items": { "type": "string" }, "description": "The pinned aggregator keys (hex) whose signatures over these figures verified" },
                "threshold": int(),
                "received_ms": int(),
            },
        },
    })
}
