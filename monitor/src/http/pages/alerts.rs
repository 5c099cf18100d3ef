//! `/alerts`: the rules with their states, the channels with their last delivery results,
//! a test button and the forms that add, change and delete them, the incident history.

use axum::extract::{Path, Request, State};
use axum::http::Uri;
use serde::Deserialize;
use truebit_web::format;
use truebit_web::page::{
    AlertChannelView, AlertRuleView, AlertsPage, IncidentView, Notice, RuleField, Stamp,
};

use super::view::form_pairs;
use super::{form, layout, redirect, render, HasCsrf, Operator, PageError, PageResult};
use crate::alerts::handle::{ChannelPatch, ChannelView, RuleUpdate, RuleView, UpdateError};
use crate::alerts::rules::RuleState;
use crate::alerts::{AlertError, Incident};
use crate::alerts::{ChannelSpec, Kind};
use crate::http::api::alerts::channel_change_error;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::model::alert::human;

const INCIDENTS: u32 = 50;

/// `GET /alerts`
pub async fn page(State(s): State<AppState>, op: Operator, uri: Uri) -> PageResult {
    let message = form_pairs(&uri)
        .into_iter()
        .find(|(k, _)| k == "m")
        .and_then(|(_, v)| match v.as_str() {
            "sent" => Some(Notice::new("ok", "The test message was sent.")),
            "rule" => Some(Notice::new(
                "ok",
                "Rule saved; it is in effect now and wins over the configuration.",
            )),
            "failed" => Some(Notice::new(
                "error",
                "The channel did not take the test message; its last failure below says why.",
            )),
            "channel-added" => Some(Notice::new(
                "ok",
                "Channel added; it gets every alert from now on. Send it a test message below.",
            )),
            "channel-saved" => Some(Notice::new(
                "ok",
                "Channel saved; its new settings are in effect now and win over the configuration.",
            )),
            "channel-deleted" => Some(Notice::new(
                "ok",
                "Channel deleted; what was queued for it was dropped.",
            )),
            _ => None,
        });
    let Some(h) = s.alerts.clone() else {
        return render(&AlertsPage {
            layout: layout(&s, "Alerts", "alerts", &op),
            available: false,
            rules: vec![],
            channels: vec![],
            kinds: kinds(),
            incidents: vec![],
            heartbeat: false,
            message,
        });
    };
    let overview = h.overview().await.map_err(ApiError::from)?;
    let incidents = h.incidents(INCIDENTS).await.map_err(ApiError::from)?;
    render(&AlertsPage {
        layout: layout(&s, "Alerts", "alerts", &op),
        available: true,
        rules: overview.rules.iter().map(rule_view).collect(),
        channels: overview.channels.iter().map(channel_view).collect(),
        kinds: kinds(),
        incidents: incidents.iter().map(incident_view).collect(),
        heartbeat: overview.heartbeat,
        message,
    })
}

fn kinds() -> Vec<&'static str> {
    Kind::ALL.iter().map(|k| k.as_str()).collect()
}

fn secs(s: u64) -> String {
    format::duration_ms(s.saturating_mul(1000))
}

fn rule_view(r: &RuleView) -> AlertRuleView {
    let (state, class) = match (r.enabled, r.state) {
        (_, RuleState::Firing) => ("firing", "bad"),
        (_, RuleState::Pending) => ("pending", "warn"),
        (false, RuleState::Ok) => ("off", ""),
        (true, RuleState::Ok) => ("ok", "ok"),
    };
    let settings = r
        .settings
        .iter()
        .map(|name| match *name {
            "after_seconds" => format!("after {}", secs(r.after_seconds)),
            "window_seconds" => format!("within {}", secs(r.window_seconds)),
            "percent" => format!("{} % failed", r.percent),
            "count" => format!("count {}", r.count),
            other => other.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    AlertRuleView {
        id: r.id.to_owned(),
        title: r.title.to_owned(),
        state: state.to_owned(),
        class,
        since: r
            .since_ns
            .filter(|_| r.state != RuleState::Ok)
            .map(Stamp::of_ns),
        details: if r.state == RuleState::Ok {
            String::new()
        } else {
            r.details.clone()
        },
        settings: if settings.is_empty() {
            "—".to_owned()
        } else {
            settings
        },
        source: if r.source == "database" {
            "changed on this monitor".to_owned()
        } else {
            "configuration".to_owned()
        },
        enabled: r.enabled,
        fields: r
            .settings
            .iter()
            .filter_map(|name| {
                let (name, label, value) = match *name {
                    "after_seconds" => ("after", "After", human(r.after_seconds)),
                    "window_seconds" => ("window", "Within", human(r.window_seconds)),
                    "count" => ("count", "Count", r.count.to_string()),
                    "percent" => ("percent", "Failed %", r.percent.to_string()),
                    _ => return None,
                };
                Some(RuleField { name, label, value })
            })
            .collect(),
    }
}

fn channel_view(c: &ChannelView) -> AlertChannelView {
    let n = |v: u64| format::thousands(i64::try_from(v).unwrap_or(i64::MAX));
    AlertChannelView {
        name: c.name.clone(),
        kind: c.kind.to_owned(),
        source: if c.source == "database" {
            "set on this monitor".to_owned()
        } else {
            "configuration".to_owned()
        },
        set: c.set.join(", "),
        delivered: n(c.delivered_total),
        failures: n(c.failures_total),
        queued: n(c.queued),
        last_success: c.last_success_ns.map(Stamp::of_ns),
        last_failure: c.last_failure_ns.map(Stamp::of_ns),
        last_error: c.last_error.clone().unwrap_or_default(),
    }
}

fn incident_view(i: &Incident) -> IncidentView {
    let duration = i.resolved_ns.map_or_else(String::new, |end| {
        format::duration_ms(u64::try_from((end - i.since_ns) / 1_000_000).unwrap_or(0))
    });
    IncidentView {
        rule: i.rule.id().to_owned(),
        details: i.details.clone(),
        fired: Stamp::of_ns(i.fired_ns),
        resolved: i.resolved_ns.map(Stamp::of_ns),
        duration,
        channels: if i.channels_told.is_empty() {
            "—".to_owned()
        } else {
            i.channels_told.join(", ")
        },
        failures: i.delivery_failures.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestForm {
    csrf_token: String,
    channel: String,
}

impl HasCsrf for TestForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

/// `POST /alerts/test`: a test message to one channel now.
pub async fn test(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let f: TestForm = form(&s, &op, req).await?;
    let h = s
        .alerts
        .as_ref()
        .ok_or(PageError::Api(ApiError::Unavailable))?;
    match h.test_channel(&f.channel).await {
        Ok(result) if result.sent => Ok(redirect("/alerts?m=sent")),
        Ok(_) => Ok(redirect("/alerts?m=failed")),
        Err(AlertError::UnknownChannel { .. }) => Err(PageError::Api(ApiError::NotFound {
            what: "configured alert channel",
        })),
        Err(AlertError::Store(e)) => Err(PageError::Api(e.into())),
        Err(AlertError::Send { error, .. }) => Err(PageError::Api(ApiError::Internal {
            cause: error.to_string(),
        })),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleForm {
    csrf_token: String,
    enabled: Option<String>,
    after: Option<String>,
    window: Option<String>,
    count: Option<String>,
    percent: Option<String>,
}

impl HasCsrf for RuleForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

impl RuleForm {
    /// The change the form asks for; a value that does not read is a 400 naming it.
    fn update(&self) -> Result<RuleUpdate, ApiError> {
        let duration = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|t| {
                    crate::http::config::parse_duration(t.trim())
                        .map(|d| d.as_secs())
                        .ok_or_else(|| {
                            ApiError::bad_parameter(
                                field,
                                format!("{field}: {t:?} is not a duration (e.g. 90s, 10m, 6h)"),
                            )
                        })
                })
                .transpose()
        };
        let number = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|t| {
                    t.trim().parse::<u64>().map_err(|_| {
                        ApiError::bad_parameter(
                            field,
                            format!("{field}: {t:?} is not a whole number"),
                        )
                    })
                })
                .transpose()
        };
        let enabled = match self.enabled.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_parameter(
                    "enabled",
                    format!("enabled: {other:?} is neither true nor false"),
                ))
            }
        };
        Ok(RuleUpdate {
            enabled,
            after_seconds: duration("after", &self.after)?,
            window_seconds: duration("window", &self.window)?,
            count: number("count", &self.count)?,
            percent: number("percent", &self.percent)?,
        })
    }
}

/// `POST /alerts/rules/{rule}`: the form under a rule; stored, in effect at once.
pub async fn update_rule(
    State(s): State<AppState>,
    op: Operator,
    Path(rule): Path<String>,
    req: Request,
) -> PageResult {
    let f: RuleForm = form(&s, &op, req).await?;
    let update = f.update().map_err(PageError::Api)?;
    let h = s
        .alerts
        .as_ref()
        .ok_or(PageError::Api(ApiError::Unavailable))?;
    match h.update_rule(&rule, update).await {
        Ok(_) => Ok(redirect("/alerts?m=rule")),
        Err(UpdateError::UnknownRule(_)) => {
            Err(PageError::Api(ApiError::NotFound { what: "alert rule" }))
        }
        Err(UpdateError::Invalid { field, message }) => Err(PageError::Api(
            ApiError::bad_parameter(field, format!("{field}: {message}")),
        )),
        Err(UpdateError::Store(e)) => Err(PageError::Api(e.into())),
    }
}

/// The fields of the forms that add and change a channel. On a change, a field left
/// empty keeps its value (secrets are never shown, so they are not sent back).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelForm {
    csrf_token: String,
    name: Option<String>,
    kind: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    chat_id: Option<String>,
    to: Option<String>,
    from: Option<String>,
}

impl HasCsrf for ChannelForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

/// The form's value, `None` when left empty.
fn filled(v: Option<String>) -> Option<String> {
    v.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn handle(s: &AppState) -> Result<&crate::alerts::AlertsHandle, PageError> {
    s.alerts
        .as_ref()
        .ok_or(PageError::Api(ApiError::Unavailable))
}

/// `POST /alerts/channels`: a new channel, stored and in effect at once.
pub async fn add_channel(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let f: ChannelForm = form(&s, &op, req).await?;
    let spec = ChannelSpec {
        name: filled(f.name).unwrap_or_default(),
        kind: filled(f.kind).unwrap_or_default(),
        url: filled(f.url),
        secret: filled(f.secret),
        chat_id: filled(f.chat_id),
        to: filled(f.to),
        from: filled(f.from),
    };
    handle(&s)?
        .create_channel(spec)
        .await
        .map_err(|e| PageError::Api(channel_change_error(e)))?;
    Ok(redirect("/alerts?m=channel-added"))
}

/// `POST /alerts/channels/{channel}`: the fields filled in replace the channel's.
pub async fn change_channel(
    State(s): State<AppState>,
    op: Operator,
    Path(channel): Path<String>,
    req: Request,
) -> PageResult {
    let f: ChannelForm = form(&s, &op, req).await?;
    let patch = ChannelPatch {
        kind: filled(f.kind),
        url: filled(f.url),
        secret: filled(f.secret),
        chat_id: filled(f.chat_id),
        to: filled(f.to),
        from: filled(f.from),
    };
    handle(&s)?
        .update_channel(&channel, patch)
        .await
        .map_err(|e| PageError::Api(channel_change_error(e)))?;
    Ok(redirect("/alerts?m=channel-saved"))
}

/// `POST /alerts/channels/{channel}/delete`
pub async fn delete_channel(
    State(s): State<AppState>,
    op: Operator,
    Path(channel): Path<String>,
    req: Request,
) -> PageResult {
    let _: super::CsrfForm = form(&s, &op, req).await?;
    handle(&s)?
        .delete_channel(&channel)
        .await
        .map_err(|e| PageError::Api(channel_change_error(e)))?;
    Ok(redirect("/alerts?m=channel-deleted"))
}
