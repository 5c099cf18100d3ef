//! `/settings`: API keys (create, shown once; revoke), the password, retention.

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use truebit_web::format;
use truebit_web::page::{KeyView, Metric, NewKey, Notice, SettingsPage, Stamp};

use super::{form, layout, redirect, render_status, HasCsrf, Operator, PageError, PageResult};
use crate::http::api;

use crate::http::auth::hash_password;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::auth::ApiKeyScope;
use crate::store::settings::{SettingSource, MAX_RETENTION_DAYS};

use crate::http::auth::MIN_PASSWORD_CHARS as MIN_PASSWORD;

/// `GET /settings`
pub async fn page(State(s): State<AppState>, op: Operator, uri: axum::http::Uri) -> PageResult {
    let message = uri.query().and_then(|q| match q {
        "m=revoked" => Some(Notice::new(
            "ok",
            "The key is revoked; programs using it are refused from now on.",
        )),
        "m=password" => Some(Notice::new(
            "ok",
            "Password changed. Every other login session has ended.",
        )),
        "m=retention" => Some(Notice::new(
            "ok",
            "Retention saved; older data is being removed now.",
        )),
        _ => None,
    });
    show(&s, &op, StatusCode::OK, message, None).await
}

async fn show(
    s: &AppState,
    op: &Operator,
    status: StatusCode,
    message: Option<Notice>,
    new_key: Option<NewKey>,
) -> PageResult {
    let keys = s.store.call(|st| st.api_keys()).await?;
    let retention = s.store.retention();
    let days = |d: Option<u32>| d.unwrap_or(0).to_string();
    let ingest = {
        let store = s.store.clone();
        store.call(|st| st.totals()).await?
    };
    let page = SettingsPage {
        layout: layout(s, "Settings", "settings", op),
        keys: keys
            .iter()
            .map(|k| KeyView {
                id: k.id,
                name: k.name.clone(),
                prefix: k.prefix.clone(),
                scope: k.scope.as_str().to_owned(),
                created: Stamp::of_ns(k.created_ns),
                last_used: k.last_used_ns.map(Stamp::of_ns),
                revoked: k.revoked_ns.map(Stamp::of_ns),
            })
            .collect(),
        new_key,
        message,
        log_retention_days: days(retention.log_days),
        task_retention_days: days(retention.task_days),
        retention_source: match retention.source {
            SettingSource::Config => "from the configuration (LOG_RETENTION_DAYS, TASK_RETENTION_DAYS) until you save here".to_owned(),
            SettingSource::Database => "set here (wins over the configuration)".to_owned(),
        },
        database: vec![
            Metric {
                label: "Database file".into(),
                value: s.store.path().display().to_string(),
                note: String::new(),
            },
            Metric {
                label: "Size".into(),
                value: format::bytes(s.store.db_size_bytes()),
                note: String::new(),
            },
            Metric {
                label: "Log entries".into(),
                value: format::thousands(i64::try_from(ingest.entries_by_kind.iter().map(|(_, n)| n).sum::<u64>()).unwrap_or(i64::MAX)),
                note: String::new(),
            },
            Metric {
                label: "Tasks".into(),
                value: format::thousands(i64::try_from(ingest.tasks_by_status.iter().map(|(_, n)| n).sum::<u64>()).unwrap_or(i64::MAX)),
                note: String::new(),
            },
        ],
        session_expires: Some(Stamp::of_ns(op.expires_ns)),
    };
    render_status(status, &page)
}

/// Shows the settings page with an error notice (the status says what went wrong).
async fn refuse(s: &AppState, op: &Operator, e: ApiError) -> PageResult {
    let status = e.status().0;
    show(
        s,
        op,
        status,
        Some(Notice::new("error", super::sentence(&e.to_string()))),
        None,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyForm {
    csrf_token: String,
    name: String,
    scope: String,
}

impl HasCsrf for KeyForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

/// `POST /settings/keys`: the new key is shown on the answer page, once.
async fn create_key_form(s: &AppState, op: &Operator, f: KeyForm) -> PageResult {
    let Some(scope) = ApiKeyScope::parse(&f.scope) else {
        return refuse(
            s,
            op,
            ApiError::bad_parameter("scope", "scope must be read or admin"),
        )
        .await;
    };
    match api::keys::create_key(&s.store, f.name.trim().to_owned(), scope, s.clock.now_ns()).await {
        Ok((key, info)) => {
            let mut response = show(
                s,
                op,
                StatusCode::CREATED,
                None,
                Some(NewKey {
                    name: info.name,
                    scope: info.scope.as_str().to_owned(),
                    key,
                }),
            )
            .await?;
            // The page holds a secret: never cached (the default header says so too).
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            Ok(response)
        }
        Err(e @ (ApiError::BadParameter { .. } | ApiError::Conflict { .. })) => {
            refuse(s, op, e).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create_key(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let f: KeyForm = form(&s, &op, req).await?;
    create_key_form(&s, &op, f).await
}

/// `POST /settings/keys/{id}/revoke`
pub async fn revoke_key(
    State(s): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    req: Request,
) -> PageResult {
    let _: super::CsrfForm = form(&s, &op, req).await?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::Api(ApiError::NotFound { what: "key" }))?;
    match api::keys::revoke_key(&s, id).await? {
        Some(_) => Ok(redirect("/settings?m=revoked")),
        None => Err(PageError::Api(ApiError::NotFound { what: "active key" })),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordForm {
    csrf_token: String,
    /// The hidden user name field for password managers (there is one operator).
    #[serde(default, rename = "username")]
    _username: Option<String>,
    current: String,
    new: String,
    confirm: String,
}

impl HasCsrf for PasswordForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

/// `POST /settings/password`: needs the current one; ends every session and opens a
/// new one for this browser.
pub async fn password(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let ip = s.client_ip(req.extensions(), req.headers());
    let f: PasswordForm = form(&s, &op, req).await?;
    let fail = |m: &str| Notice::new("error", m);
    if s.password_from_config() {
        let m = fail("The password is set in the configuration (TASK_DATA_PASSWORD); change it there and restart.");
        return show(&s, &op, StatusCode::CONFLICT, Some(m), None).await;
    }
    if f.new != f.confirm {
        let m = fail("The new password and its repetition differ.");
        return show(&s, &op, StatusCode::BAD_REQUEST, Some(m), None).await;
    }
    if f.new.chars().count() < MIN_PASSWORD {
        let m = fail(&format!(
            "The new password must have at least {MIN_PASSWORD} characters."
        ));
        return show(&s, &op, StatusCode::BAD_REQUEST, Some(m), None).await;
    }
    let now = s.clock.now_ns();
    if !s.check_password_from(ip, f.current).await? {
        let m = fail("The current password is wrong.");
        return show(&s, &op, StatusCode::UNAUTHORIZED, Some(m), None).await;
    }
    let new = f.new.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|e| ApiError::Internal {
            cause: format!("hash task: {e}"),
        })?
        .map_err(|cause| ApiError::Internal { cause })?;
    let store = s.store.clone();
    store
        .call(move |st| st.replace_password_hash(hash, now))
        .await?;
    tracing::info!("operator password changed from the dashboard; every session ended");
    let (cookie, _, _) = s.open_session(ip, f.new).await?;
    let mut response = redirect("/settings?m=password");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionForm {
    csrf_token: String,
    log_retention_days: String,
    task_retention_days: String,
}

impl HasCsrf for RetentionForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

/// `POST /settings/retention`
pub async fn retention(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let f: RetentionForm = form(&s, &op, req).await?;
    let parse = |name: &str, v: &str| -> Result<u32, ApiError> {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|d| *d <= MAX_RETENTION_DAYS)
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    name,
                    format!("{name} must be a whole number of days from 0 (keep forever) to {MAX_RETENTION_DAYS}"),
                )
            })
    };
    let (log, task) = match (
        parse("log_retention_days", &f.log_retention_days),
        parse("task_retention_days", &f.task_retention_days),
    ) {
        (Ok(l), Ok(t)) => (l, t),
        (Err(e), _) | (_, Err(e)) => return refuse(&s, &op, e).await,
    };
    s.store
        .call({
            let now = s.clock.now_ns();
            move |st| st.set_retention(Some(log), Some(task), now)
        })
        .await?;
    tracing::info!(
        retention.log_days = log,
        retention.task_days = task,
        "retention changed from the dashboard"
    );
    Ok(redirect("/settings?m=retention").into_response())
}
