//! What a channel sends: a group of notifications rendered once into a short text (the
//! subject, one block per notification, the dashboard link) and the webhook's JSON body.
//! Each channel then cuts the text to its own limit ([`Message::text_within`]).
//!
//! Only the rule's id, state, time, title, hint and the rule's own one-line detail go in:
//! nothing from the node's task data, no secret, no wallet address, no address of the
//! machine (the dashboard link is the operator's own PUBLIC_URL).

use std::collections::BTreeMap;

use serde_json::json;
use truebit_web::format;

use super::{AlertState, Notification, Rule};

/// A rule's detail is cut to this many characters.
const MAX_DETAILS_CHARS: usize = 300;

/// One message for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// One line: `[truebit-monitor] FIRING: Node container not running`.
    pub subject: String,
    /// The subject, a block per notification, and the dashboard link.
    pub text: String,
    /// The notifications it carries, oldest first (for a summary: the latest of each rule).
    pub alerts: Vec<Notification>,
    /// How many queued notifications it stands for (more than `alerts` for a summary).
    pub queued: usize,
    pub dashboard_url: Option<String>,
}

impl Message {
    /// The notifications queued together, as one message.
    pub fn group(alerts: &[Notification], dashboard_url: Option<&str>) -> Message {
        let subject = match alerts {
            [one] => headline(one),
            _ => {
                let firing = count(alerts, AlertState::Firing);
                format!(
                    "[truebit-monitor] {} alerts: {firing} firing, {} resolved",
                    alerts.len(),
                    alerts.len() - firing
                )
            }
        };
        Message::build(subject, None, alerts.to_vec(), alerts.len(), dashboard_url)
    }

    /// More were queued than a channel should receive one by one (it was unreachable for
    /// a while): the latest state of each rule, and how many notifications it replaces.
    pub fn summary(queued: &[Notification], dashboard_url: Option<&str>) -> Message {
        let mut latest: BTreeMap<Rule, &Notification> = BTreeMap::new();
        for n in queued {
            latest.insert(n.rule, n);
        }
        let mut alerts: Vec<Notification> = latest.into_values().cloned().collect();
        alerts.sort_by_key(|n| n.since_ns);
        let firing = count(&alerts, AlertState::Firing);
        let subject = format!(
            "[truebit-monitor] {} alerts while this channel was unreachable: {firing} firing now",
            queued.len()
        );
        let intro = format!(
            "{} notifications were queued while this channel was unreachable; the latest state of each rule:",
            queued.len()
        );
        Message::build(subject, Some(intro), alerts, queued.len(), dashboard_url)
    }

    fn build(
        subject: String,
        intro: Option<String>,
        alerts: Vec<Notification>,
        queued: usize,
        dashboard_url: Option<&str>,
    ) -> Message {
        let mut text = subject.clone();
        if let Some(intro) = intro {
            text.push('\n');
            text.push_str(&intro);
        }
        for n in &alerts {
            text.push_str("\n\n");
            if alerts.len() > 1 {
                text.push_str(&format!(
                    "{}: {}\n",
                    n.state.as_str().to_uppercase(),
                    n.rule.title()
                ));
            }
            text.push_str(&block(n));
        }
        if let Some(url) = dashboard_url {
            text.push_str(&format!("\n\nDashboard: {url}"));
        }
        Message {
            subject,
            text,
            alerts,
            queued,
            dashboard_url: dashboard_url.map(str::to_owned),
        }
    }

    /// Whether anything in it is firing (channels with priorities raise it).
    pub fn any_firing(&self) -> bool {
        count(&self.alerts, AlertState::Firing) > 0
    }

    /// The text, cut to at most `max_chars` characters (with a mark where it was cut).
    pub fn text_within(&self, max_chars: usize) -> String {
        cut(&self.text, max_chars)
    }

    /// The webhook's JSON body (docs/ALERTS.md): the first notification's fields at the
    /// top level, every notification in `alerts`.
    pub fn webhook_body(&self) -> serde_json::Value {
        let one = |n: &Notification| {
            json!({
                "rule": n.rule.id(),
                "state": n.state.as_str(),
                "since": format::iso(n.since_ns),
                "title": n.rule.title(),
                "details": details(n),
            })
        };
        let first = self.alerts.first();
        json!({
            "rule": first.map(|n| n.rule.id()),
            "state": first.map(|n| n.state.as_str()),
            "since": first.map(|n| format::iso(n.since_ns)),
            "message": self.text,
            "subject": self.subject,
            "dashboard_url": self.dashboard_url,
            "queued": self.queued,
            "alerts": self.alerts.iter().map(one).collect::<Vec<_>>(),
        })
    }
}

fn headline(n: &Notification) -> String {
    if n.rule == Rule::Test {
        return format!("[truebit-monitor] {}", n.rule.title());
    }
    format!(
        "[truebit-monitor] {}: {}",
        n.state.as_str().to_uppercase(),
        n.rule.title()
    )
}

fn block(n: &Notification) -> String {
    let since = format::utc(n.since_ns);
    let mut b = match (n.rule, n.state) {
        (Rule::Test, _) => format!("Sent at {since} UTC."),
        (_, AlertState::Firing) => format!("Since {since} UTC."),
        (_, AlertState::Resolved) => format!("Resolved at {since} UTC."),
    };
    let details = details(n);
    if !details.is_empty() {
        b.push(' ');
        b.push_str(&details);
    }
    if n.state == AlertState::Firing {
        b.push_str(&format!("\nCheck {}.", n.rule.check()));
    }
    b
}

fn details(n: &Notification) -> String {
    let one_line: String = n
        .details
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cut(one_line.trim(), MAX_DETAILS_CHARS)
}

fn count(alerts: &[Notification], state: AlertState) -> usize {
    alerts.iter().filter(|n| n.state == state).count()
}

/// `s` cut to at most `max` characters, the last one `…` when it was cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_300_000_000_000_000; // 2026-12-03 12:13:20 UTC

    fn n(rule: Rule, state: AlertState, since_ns: i64, details: &str) -> Notification {
        Notification {
            rule,
            state,
            since_ns,
            details: details.into(),
        }
    }

    #[test]
    fn one_notification_says_what_since_when_what_to_check_and_where() {
        let m = Message::group(
            &[n(
                Rule::ContainerDown,
                AlertState::Firing,
                T0,
                "exited with code 137 (OOM-killed)",
            )],
            Some("https://monitor.example.org"),
        );
        assert_eq!(
            m.text,
            "[truebit-monitor] FIRING: Node container not running\n\n\
             Since 2026-12-03 12:13:20 UTC. exited with code 137 (OOM-killed)\n\
             Check `docker ps -a` and the container's last log lines.\n\n\
             Dashboard: https://monitor.example.org"
        );
        assert_eq!(m.queued, 1);
    }

    #[test]
    fn a_group_has_one_subject_and_a_block_per_notification() {
        let m = Message::group(
            &[
                n(Rule::ContainerDown, AlertState::Resolved, T0, ""),
                n(
                    Rule::Silence,
                    AlertState::Firing,
                    T0 + 1,
                    "no line for 10 min",
                ),
            ],
            None,
        );
        assert_eq!(
            m.subject,
            "[truebit-monitor] 2 alerts: 1 firing, 1 resolved"
        );
        assert_eq!(
            m.text,
            "[truebit-monitor] 2 alerts: 1 firing, 1 resolved\n\n\
             RESOLVED: Node container not running\nResolved at 2026-12-03 12:13:20 UTC.\n\n\
             FIRING: Node silent: no log line\nSince 2026-12-03 12:13:20 UTC. no line for 10 min\n\
             Check that the node process runs and reaches its network."
        );
    }

    #[test]
    fn a_summary_keeps_the_latest_state_of_each_rule() {
        let mut queued = Vec::new();
        for i in 0..10 {
            let state = if i % 2 == 0 {
                AlertState::Firing
            } else {
                AlertState::Resolved
            };
            queued.push(n(Rule::ContainerDown, state, T0 + i, ""));
        }
        queued.push(n(Rule::DbWrite, AlertState::Firing, T0 + 5, "disk full"));
        let m = Message::summary(&queued, None);
        assert_eq!(m.queued, 11);
        let states: Vec<(Rule, AlertState, i64)> = m
            .alerts
            .iter()
            .map(|a| (a.rule, a.state, a.since_ns))
            .collect();
        assert_eq!(
            states,
            vec![
                (Rule::DbWrite, AlertState::Firing, T0 + 5),
                (Rule::ContainerDown, AlertState::Resolved, T0 + 9),
            ]
        );
        assert!(m.text.starts_with(
            "[truebit-monitor] 11 alerts while this channel was unreachable: 1 firing now\n\
             11 notifications were queued"
        ));
    }

    #[test]
    fn details_are_one_short_line() {
        let long = format!("a\nb{}", "x".repeat(1000));
        let m = Message::group(&[n(Rule::Silence, AlertState::Firing, T0, &long)], None);
        let body = m.webhook_body();
        let details = body["alerts"][0]["details"].as_str().expect("details");
        assert_eq!(details.chars().count(), MAX_DETAILS_CHARS);
        assert!(details.starts_with("a bxxx") && details.ends_with('…'));
        assert_eq!(m.text_within(20), "[truebit-monitor] F…");
    }

    #[test]
    fn webhook_body_carries_rule_state_since_and_message() {
        let m = Message::group(
            &[n(
                Rule::FailureRate,
                AlertState::Firing,
                T0,
                "6 of 10 failed",
            )],
            Some("https://m.example"),
        );
        let body = m.webhook_body();
        assert_eq!(body["rule"], "failure_rate");
        assert_eq!(body["state"], "firing");
        assert_eq!(body["since"], "2026-12-03T12:13:20Z");
        assert_eq!(body["message"], m.text.as_str());
        assert_eq!(body["dashboard_url"], "https://m.example");
        assert_eq!(body["queued"], 1);
        assert_eq!(body["alerts"][0]["details"], "6 of 10 failed");
    }
}
