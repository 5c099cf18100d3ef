//! The alert rules: what each one watches ([`conditions`]), and the one state machine
//! they share ([`step`]): ok -> pending -> firing -> (resolved) ok.
//!
//! Both are pure: the engine (engine.rs) gathers an [`Observation`] (the source's status,
//! the store's write health, a few store figures, what it saw on the feed), asks for each
//! rule's [`Condition`], steps the rule's stored [`RuleStatus`] and writes what changed.
//!
//! A condition is `Holds { since }` (the problem exists, and since when), `Clear`, or
//! `Unknown` (the monitor cannot tell, e.g. Docker is not connected yet after a start):
//! an unknown condition changes nothing, so a restart never resolves or fires a rule
//! before it has looked. A rule fires once its condition has held for its `after`
//! duration (0 for rules whose condition is itself a count over a window), resolves when
//! it is clear, and is clear while turned off.

use std::time::Duration;

use super::{AlertState, Notification, Rule};
use crate::model::alert::human;
pub use crate::model::alert::{RuleConfig, RuleState, RuleStatus};
use crate::model::{ContainerAction, UnixNanos};
use crate::source::{Connection, ContainerState};
use crate::store::alerts::{AlertFigures, Step};

/// Whether a rule's problem exists now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    Holds {
        since_ns: UnixNanos,
        details: String,
    },
    Clear,
    Unknown,
}

/// Every rule's settings, and the optional reminder while firing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub rules: Vec<(Rule, RuleConfig)>,
    /// While a rule fires, its notification is repeated this often (none: never).
    pub reminder: Option<Duration>,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            rules: Rule::RULES
                .iter()
                .map(|r| (*r, RuleConfig::default_for(*r)))
                .collect(),
            reminder: None,
        }
    }
}

impl RuleSet {
    pub fn get(&self, rule: Rule) -> RuleConfig {
        self.rules
            .iter()
            .find(|(r, _)| *r == rule)
            .map_or_else(|| RuleConfig::default_for(rule), |(_, c)| *c)
    }

    pub fn set(&mut self, rule: Rule, config: RuleConfig) {
        match self.rules.iter_mut().find(|(r, _)| *r == rule) {
            Some(slot) => slot.1 = config,
            None => self.rules.push((rule, config)),
        }
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// What the engine knows when it evaluates.
#[derive(Clone, Debug)]
pub struct Observation {
    /// `docker`, `file` or `demo`.
    pub source_kind: &'static str,
    pub connection: Connection,
    pub container: ContainerState,
    /// Since when the source has been unreachable (first seen by the engine).
    pub unreachable_since_ns: Option<UnixNanos>,
    /// Since when the container has been seen running, or the file followed (first seen by
    /// the engine since it started).
    pub running_since_ns: Option<UnixNanos>,
    /// Since when the container has been seen not running (first seen by the engine).
    pub down_since_ns: Option<UnixNanos>,
    /// The newest log line: from the feed, or the store's newest entry.
    pub last_line_ns: Option<UnixNanos>,
    /// The store's writes fail: since when, and why.
    pub write_failing: Option<(UnixNanos, String)>,
    /// The store's figures (none: they could not be read).
    pub figures: Option<AlertFigures>,
    /// Federation is on (the operator's stored choice, or the configuration).
    pub federation_enabled: bool,
    /// Since when the monitor has been evaluating (tasks: counts from then at the latest).
    pub started_ns: UnixNanos,
}

/// Each rule's condition in `seen` as of `now_ns`.
pub fn conditions(
    seen: &Observation,
    rules: &RuleSet,
    now_ns: UnixNanos,
) -> Vec<(Rule, Condition)> {
    Rule::RULES
        .iter()
        .map(|&rule| {
            let config = rules.get(rule);
            let condition = if config.enabled {
                condition(rule, &config, seen, now_ns)
            } else {
                Condition::Clear
            };
            (rule, condition)
        })
        .collect()
}

fn container_name(state: &ContainerState) -> &str {
    match state {
        ContainerState::Missing { name }
        | ContainerState::Running { name, .. }
        | ContainerState::Created { name, .. }
        | ContainerState::Stopped { name, .. } => name,
        ContainerState::Unknown => "the container",
    }
}

fn condition(rule: Rule, config: &RuleConfig, seen: &Observation, now_ns: UnixNanos) -> Condition {
    let docker = seen.source_kind == "docker";
    let connected = matches!(seen.connection, Connection::Connected { .. });
    let holds = |since_ns: UnixNanos, details: String| Condition::Holds { since_ns, details };
    let after = nanos(config.after);
    match rule {
        Rule::ContainerDown => {
            if !docker || !connected {
                return Condition::Unknown;
            }
            let name = container_name(&seen.container);
            let figures = seen.figures.as_ref();
            // The recorded stop, if it is newer than the recorded start.
            let stop = figures.and_then(|f| {
                f.last_stop
                    .filter(|(_, _, at)| *at >= f.last_start_ns.unwrap_or(i64::MIN))
            });
            let since = stop
                .map(|(_, _, at)| at)
                .or(seen.down_since_ns)
                .unwrap_or(now_ns);
            match &seen.container {
                ContainerState::Unknown => Condition::Unknown,
                ContainerState::Running { .. } => Condition::Clear,
                ContainerState::Missing { .. } => {
                    let removed = matches!(stop, Some((ContainerAction::Destroyed, _, _)));
                    let what = if removed {
                        "was removed"
                    } else {
                        "does not exist"
                    };
                    holds(since, format!("container {name} {what}"))
                }
                ContainerState::Created { .. } => holds(
                    since,
                    format!("container {name} was created but never started"),
                ),
                ContainerState::Stopped { exit_code, .. } => {
                    let oom = matches!(stop, Some((ContainerAction::Oom, _, _)));
                    let code = exit_code.or(stop.and_then(|(_, code, _)| code));
                    let how = match (oom, code) {
                        (true, Some(c)) => format!("was killed: out of memory (exit code {c})"),
                        (true, None) => "was killed: out of memory".to_owned(),
                        (false, Some(c)) => format!("stopped with exit code {c}"),
                        (false, None) => "stopped".to_owned(),
                    };
                    holds(since, format!("container {name} {how}"))
                }
            }
        }
        Rule::RestartLoop => {
            if !docker {
                return Condition::Clear;
            }
            let Some(f) = &seen.figures else {
                return Condition::Unknown;
            };
            if config.count > 0 && f.starts >= config.count {
                holds(
                    f.first_start_ns.unwrap_or(now_ns),
                    format!(
                        "{} starts in the last {}",
                        f.starts,
                        human(config.window.as_secs())
                    ),
                )
            } else {
                Condition::Clear
            }
        }
        Rule::Silence => {
            let running = if docker {
                if !connected {
                    return Condition::Unknown;
                }
                matches!(seen.container, ContainerState::Running { .. })
            } else {
                seen.source_kind == "file" && connected
            };
            let Some(running_since) = seen.running_since_ns.filter(|_| running) else {
                return Condition::Clear;
            };
            let quiet_since = seen
                .last_line_ns
                .map_or(running_since, |l| l.max(running_since));
            absence(
                seen.last_line_ns,
                quiet_since,
                after,
                now_ns,
                format!("no log line for {}", human(config.after.as_secs())),
            )
        }
        Rule::NoTasks => {
            let Some(f) = &seen.figures else {
                return Condition::Unknown;
            };
            let since = f
                .last_task_ns
                .map_or(seen.started_ns, |t| t.max(seen.started_ns));
            absence(
                f.last_task_ns,
                since,
                after,
                now_ns,
                format!("no task received for {}", human(config.after.as_secs())),
            )
        }
        Rule::FailureRate => {
            let Some(f) = &seen.figures else {
                return Condition::Unknown;
            };
            let enough = f.finished >= u64::from(config.count.max(1));
            if enough && f.failed * 100 >= u64::from(config.percent) * f.finished {
                // The reasons are task data (what the program printed on stderr), which
                // a message never carries (docs/ALERTS.md): it points to the dashboard.
                holds(
                    now_ns,
                    format!(
                        "{} of {} tasks failed in the last {} ({} %); reasons: see Recent failures on the dashboard",
                        f.failed,
                        f.finished,
                        human(config.window.as_secs()),
                        f.failed * 100 / f.finished
                    ),
                )
            } else {
                Condition::Clear
            }
        }
        Rule::DockerUnreachable => {
            if !docker {
                return Condition::Clear;
            }
            match &seen.connection {
                Connection::Connecting => Condition::Unknown,
                Connection::Connected { .. } => Condition::Clear,
                Connection::Unreachable { .. } => holds(
                    seen.unreachable_since_ns.unwrap_or(now_ns),
                    "the Docker API does not answer".to_owned(),
                ),
            }
        }
        Rule::DbWrite => match &seen.write_failing {
            Some((since, _)) => holds(*since, "commits to the database fail".to_owned()),
            None => Condition::Clear,
        },
        Rule::Federation => {
            if !seen.federation_enabled {
                return Condition::Clear;
            }
            let Some(f) = &seen.figures else {
                return Condition::Unknown;
            };
            if let Some(at) = f.federation_blocked_ns {
                holds(at, "a report was blocked by the privacy gate".to_owned())
            } else if config.count > 0 && f.federation_undelivered >= u64::from(config.count) {
                holds(
                    f.federation_oldest_due_ns.unwrap_or(now_ns),
                    format!("{} reports due and not delivered", f.federation_undelivered),
                )
            } else {
                Condition::Clear
            }
        }
        Rule::Test => Condition::Clear,
    }
}

/// A rule about something that stopped happening (a log line, a task): clear when the
/// `last` one is recent, holding once nothing happened for `after` since `quiet_since`
/// (which also counts from when the monitor could first see it), unknown in between: a
/// monitor that just started cannot yet tell whether a firing rule still holds.
fn absence(
    last: Option<UnixNanos>,
    quiet_since: UnixNanos,
    after: i64,
    now_ns: UnixNanos,
    details: String,
) -> Condition {
    if last.is_some_and(|l| now_ns.saturating_sub(l) < after) {
        Condition::Clear
    } else if now_ns.saturating_sub(quiet_since) >= after {
        Condition::Holds {
            since_ns: quiet_since,
            details,
        }
    } else {
        Condition::Unknown
    }
}

/// When `status` next changes by itself if its condition keeps holding: a pending rule
/// fires at `since + after`, a firing one is reminded at `notified + reminder`. The
/// engine wakes up then, so a rule fires on time rather than on the next tick.
pub fn due_ns(
    status: &RuleStatus,
    after: Duration,
    reminder: Option<Duration>,
) -> Option<UnixNanos> {
    match status.state {
        RuleState::Pending => status.since_ns.map(|s| s.saturating_add(nanos(after))),
        RuleState::Firing => {
            let last = status.notified_ns.or(status.fired_ns)?;
            reminder.map(|every| last.saturating_add(nanos(every)))
        }
        RuleState::Ok => None,
    }
}

/// The next state of a rule in `status` given its `condition` now, and what the change
/// writes and sends; `None` when nothing changes.
pub fn step(
    rule: Rule,
    status: &RuleStatus,
    condition: Condition,
    after: Duration,
    reminder: Option<Duration>,
    now_ns: UnixNanos,
) -> Option<(RuleStatus, Step)> {
    let note = |state: AlertState, since_ns: UnixNanos, details: &str| Notification {
        rule,
        state,
        since_ns,
        details: details.to_owned(),
    };
    match (status.state, condition) {
        (_, Condition::Unknown) | (RuleState::Ok, Condition::Clear) => None,
        (RuleState::Pending, Condition::Clear) => Some((RuleStatus::default(), Step::Quiet)),
        (RuleState::Firing, Condition::Clear) => Some((
            RuleStatus::default(),
            Step::Resolve(note(AlertState::Resolved, now_ns, &status.details)),
        )),
        (state, Condition::Holds { since_ns, details }) => {
            let since = match (state, status.since_ns) {
                (RuleState::Ok, _) | (_, None) => since_ns,
                (_, Some(stored)) => stored.min(since_ns),
            };
            if state == RuleState::Firing {
                let due = reminder.and_then(|every| {
                    let last = status.notified_ns.or(status.fired_ns)?;
                    (now_ns.saturating_sub(last) >= nanos(every)).then_some(())
                });
                return due.map(|()| {
                    let next = RuleStatus {
                        notified_ns: Some(now_ns),
                        ..status.clone()
                    };
                    let still = format!("{} (still firing)", status.details);
                    (next, Step::Remind(note(AlertState::Firing, since, &still)))
                });
            }
            if now_ns.saturating_sub(since) >= nanos(after) {
                let next = RuleStatus {
                    state: RuleState::Firing,
                    since_ns: Some(since),
                    fired_ns: Some(now_ns),
                    notified_ns: Some(now_ns),
                    details: details.clone(),
                };
                Some((next, Step::Fire(note(AlertState::Firing, since, &details))))
            } else if state == RuleState::Ok || status.since_ns != Some(since) {
                let next = RuleStatus {
                    state: RuleState::Pending,
                    since_ns: Some(since),
                    fired_ns: None,
                    notified_ns: None,
                    details,
                };
                Some((next, Step::Quiet))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_pending_rule_is_due_when_its_duration_has_passed_a_firing_one_at_its_reminder() {
        let pending = RuleStatus {
            state: RuleState::Pending,
            since_ns: Some(100 * S),
            ..RuleStatus::default()
        };
        let after = Duration::from_secs(60);
        assert_eq!(due_ns(&pending, after, None), Some(160 * S));
        let fired = firing(100 * S, 160 * S);
        assert_eq!(due_ns(&fired, after, None), None);
        assert_eq!(
            due_ns(&fired, after, Some(Duration::from_secs(3600))),
            Some(3760 * S)
        );
        assert_eq!(due_ns(&RuleStatus::default(), after, None), None);
        // At the due time the same rule fires (step agrees with due_ns).
        let (next, _) = step(
            Rule::ContainerDown,
            &pending,
            Condition::Holds {
                since_ns: 100 * S,
                details: "down".into(),
            },
            after,
            None,
            160 * S,
        )
        .expect("fires");
        assert_eq!(next.state, RuleState::Firing);
    }

    fn firing(since: i64, fired: i64) -> RuleStatus {
        RuleStatus {
            state: RuleState::Firing,
            since_ns: Some(since),
            fired_ns: Some(fired),
            notified_ns: Some(fired),
            details: "container runner-node stopped with exit code 137".into(),
        }
    }

    fn holds(since: i64) -> Condition {
        Condition::Holds {
            since_ns: since,
            details: "container runner-node stopped with exit code 137".into(),
        }
    }

    #[test]
    fn a_condition_goes_pending_then_fires_after_its_duration() {
        let after = Duration::from_secs(60);
        let ok = RuleStatus::default();
        let (pending, quiet) = step(
            Rule::ContainerDown,
            &ok,
            holds(100 * S),
            after,
            None,
            110 * S,
        )
        .expect("change");
        assert_eq!(quiet, Step::Quiet);
        assert_eq!(
            (pending.state, pending.since_ns),
            (RuleState::Pending, Some(100 * S))
        );
        assert_eq!(
            step(
                Rule::ContainerDown,
                &pending,
                holds(100 * S),
                after,
                None,
                159 * S
            ),
            None
        );
        let (fired, send) = step(
            Rule::ContainerDown,
            &pending,
            holds(100 * S),
            after,
            None,
            160 * S,
        )
        .expect("fires");
        assert_eq!(fired, firing(100 * S, 160 * S));
        assert_eq!(
            send,
            Step::Fire(Notification {
                rule: Rule::ContainerDown,
                state: AlertState::Firing,
                since_ns: 100 * S,
                details: "container runner-node stopped with exit code 137".into(),
            })
        );
    }

    #[test]
    fn a_firing_rule_fires_once_and_resolves_once() {
        let after = Duration::from_secs(60);
        let state = firing(100 * S, 160 * S);
        assert_eq!(
            step(
                Rule::ContainerDown,
                &state,
                holds(100 * S),
                after,
                None,
                900 * S
            ),
            None
        );
        let (ok, send) = step(
            Rule::ContainerDown,
            &state,
            Condition::Clear,
            after,
            None,
            901 * S,
        )
        .expect("resolves");
        assert_eq!(ok, RuleStatus::default());
        let Step::Resolve(note) = send else {
            panic!("not resolved: {send:?}")
        };
        assert_eq!((note.state, note.since_ns), (AlertState::Resolved, 901 * S));
        assert_eq!(
            step(
                Rule::ContainerDown,
                &ok,
                Condition::Clear,
                after,
                None,
                902 * S
            ),
            None
        );
    }

    #[test]
    fn an_unknown_condition_changes_nothing() {
        let state = firing(100 * S, 160 * S);
        assert_eq!(
            step(
                Rule::ContainerDown,
                &state,
                Condition::Unknown,
                Duration::ZERO,
                None,
                999 * S
            ),
            None
        );
    }

    #[test]
    fn a_condition_older_than_its_duration_fires_at_once() {
        let (state, send) = step(
            Rule::ContainerDown,
            &RuleStatus::default(),
            holds(0),
            Duration::from_secs(60),
            None,
            3600 * S,
        )
        .expect("fires");
        assert_eq!(state.state, RuleState::Firing);
        assert!(matches!(send, Step::Fire(_)));
    }

    #[test]
    fn a_pending_rule_that_clears_goes_back_to_ok_quietly() {
        let pending = RuleStatus {
            state: RuleState::Pending,
            since_ns: Some(5 * S),
            ..RuleStatus::default()
        };
        assert_eq!(
            step(
                Rule::DbWrite,
                &pending,
                Condition::Clear,
                Duration::from_secs(60),
                None,
                9 * S
            ),
            Some((RuleStatus::default(), Step::Quiet))
        );
    }

    #[test]
    fn the_reminder_repeats_a_firing_rule_at_its_interval_only() {
        let every = Some(Duration::from_secs(3600));
        let state = firing(0, 100 * S);
        assert_eq!(
            step(
                Rule::Silence,
                &state,
                holds(0),
                Duration::ZERO,
                every,
                3699 * S
            ),
            None
        );
        let (next, send) = step(
            Rule::Silence,
            &state,
            holds(0),
            Duration::ZERO,
            every,
            3700 * S,
        )
        .expect("remind");
        assert_eq!(next.notified_ns, Some(3700 * S));
        assert_eq!(next.fired_ns, Some(100 * S));
        let Step::Remind(note) = send else {
            panic!("no reminder: {send:?}")
        };
        assert_eq!(note.state, AlertState::Firing);
        assert!(note.details.ends_with("(still firing)"), "{}", note.details);
    }

    fn seen() -> Observation {
        Observation {
            source_kind: "docker",
            connection: Connection::Connected {
                version: "27".into(),
            },
            container: ContainerState::Running {
                id: "c1".into(),
                name: "runner-node".into(),
            },
            unreachable_since_ns: None,
            running_since_ns: Some(0),
            down_since_ns: None,
            last_line_ns: Some(0),
            write_failing: None,
            figures: Some(AlertFigures::default()),
            federation_enabled: false,
            started_ns: 0,
        }
    }

    fn of(rule: Rule, seen: &Observation, rules: &RuleSet, now: i64) -> Condition {
        conditions(seen, rules, now)
            .into_iter()
            .find(|(r, _)| *r == rule)
            .map(|(_, c)| c)
            .expect("rule")
    }

    #[test]
    fn container_down_says_how_it_stopped_and_since_when() {
        let rules = RuleSet::default();
        let mut s = seen();
        s.container = ContainerState::Stopped {
            id: "c1".into(),
            name: "runner-node".into(),
            exit_code: Some(137),
        };
        s.figures = Some(AlertFigures {
            last_start_ns: Some(10 * S),
            last_stop: Some((ContainerAction::Oom, None, 20 * S)),
            ..AlertFigures::default()
        });
        assert_eq!(
            of(Rule::ContainerDown, &s, &rules, 30 * S),
            Condition::Holds {
                since_ns: 20 * S,
                details: "container runner-node was killed: out of memory (exit code 137)".into()
            }
        );
        s.container = ContainerState::Missing {
            name: "runner-node".into(),
        };
        s.down_since_ns = Some(25 * S);
        s.figures = Some(AlertFigures::default());
        assert_eq!(
            of(Rule::ContainerDown, &s, &rules, 30 * S),
            Condition::Holds {
                since_ns: 25 * S,
                details: "container runner-node does not exist".into()
            }
        );
        s.connection = Connection::Connecting;
        assert_eq!(
            of(Rule::ContainerDown, &s, &rules, 30 * S),
            Condition::Unknown
        );
    }

    #[test]
    fn silence_counts_from_the_last_line_or_from_when_the_container_was_seen_running() {
        let rules = RuleSet::default();
        let mut s = seen();
        s.running_since_ns = Some(100 * S);
        s.last_line_ns = Some(50 * S);
        // Running for less than the duration, the last line older: cannot tell yet.
        assert_eq!(of(Rule::Silence, &s, &rules, 699 * S), Condition::Unknown);
        assert_eq!(
            of(Rule::Silence, &s, &rules, 700 * S),
            Condition::Holds {
                since_ns: 100 * S,
                details: "no log line for 10m".into()
            }
        );
        s.last_line_ns = Some(200 * S);
        assert_eq!(of(Rule::Silence, &s, &rules, 700 * S), Condition::Clear);
        s.container = ContainerState::Stopped {
            id: "c1".into(),
            name: "runner-node".into(),
            exit_code: Some(0),
        };
        assert_eq!(of(Rule::Silence, &s, &rules, 9999 * S), Condition::Clear);
    }

    #[test]
    fn failure_rate_needs_enough_finished_tasks_and_the_share() {
        let rules = RuleSet::default();
        let mut s = seen();
        s.figures = Some(AlertFigures {
            finished: 9,
            failed: 9,
            ..AlertFigures::default()
        });
        assert_eq!(of(Rule::FailureRate, &s, &rules, S), Condition::Clear);
        s.figures = Some(AlertFigures {
            finished: 10,
            failed: 4,
            ..AlertFigures::default()
        });
        assert_eq!(of(Rule::FailureRate, &s, &rules, S), Condition::Clear);
        s.figures = Some(AlertFigures {
            finished: 10,
            failed: 5,
            ..AlertFigures::default()
        });
        assert_eq!(
            of(Rule::FailureRate, &s, &rules, S),
            Condition::Holds {
                since_ns: S,
                details: "5 of 10 tasks failed in the last 1h (50 %); reasons: see Recent failures on the dashboard".into()
            }
        );
    }

    #[test]
    fn a_rule_turned_off_is_clear_and_no_tasks_is_off_by_default() {
        let mut rules = RuleSet::default();
        let mut s = seen();
        s.write_failing = Some((S, "disk full".into()));
        assert!(matches!(
            of(Rule::DbWrite, &s, &rules, 2 * S),
            Condition::Holds { .. }
        ));
        rules.set(
            Rule::DbWrite,
            RuleConfig {
                enabled: false,
                ..RuleConfig::default_for(Rule::DbWrite)
            },
        );
        assert_eq!(of(Rule::DbWrite, &s, &rules, 2 * S), Condition::Clear);
        assert_eq!(of(Rule::NoTasks, &s, &rules, 99_999 * S), Condition::Clear);
    }

    #[test]
    fn restart_loop_and_federation_count_over_their_windows() {
        let rules = RuleSet::default();
        let mut s = seen();
        s.federation_enabled = true;
        s.figures = Some(AlertFigures {
            starts: 3,
            first_start_ns: Some(7 * S),
            federation_undelivered: 3,
            federation_oldest_due_ns: Some(4 * S),
            ..AlertFigures::default()
        });
        assert_eq!(
            of(Rule::RestartLoop, &s, &rules, 9 * S),
            Condition::Holds {
                since_ns: 7 * S,
                details: "3 starts in the last 10m".into()
            }
        );
        assert_eq!(
            of(Rule::Federation, &s, &rules, 9 * S),
            Condition::Holds {
                since_ns: 4 * S,
                details: "3 reports due and not delivered".into()
            }
        );
        s.federation_enabled = false;
        assert_eq!(of(Rule::Federation, &s, &rules, 9 * S), Condition::Clear);
    }
}
