//! The node container's logs and state through the Docker Engine API (bollard).
//!
//! Read-only by construction: this file calls only `version`, `list_containers`,
//! `inspect_container`, `logs` and `events`. It survives everything a node does: the
//! socket missing at start, the daemon restarting (reconnect with capped exponential
//! backoff), the container stopping, restarting, or being removed and recreated under the
//! same name with a new id (a cursor per container id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::{InspectContainerOptions, ListContainersOptions, LogOutput, LogsOptions};
use bollard::system::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::decode::{LineAssembler, Stream};
use super::{Backoff, Connection, ContainerState};
use crate::ingest::{Handoff, SourceContext};
use crate::model::{ContainerAction, ContainerEvent, RestartObservation, UnixNanos};

/// The default Docker endpoint.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Where the Docker Engine API is and which container to follow.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// `unix:///path/docker.sock`, a bare socket path, `tcp://host:port` or `http://host:port`.
    pub host: String,
    pub container_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker socket {path} does not exist: is Docker running, and is the socket mounted into this container? (set DOCKER_HOST or DOCKER_SOCKET_PATH)")]
    SocketMissing { path: String },
    #[error("unsupported DOCKER_HOST {host:?}: use unix:///path/to/docker.sock, tcp://host:port or http://host:port")]
    UnsupportedHost { host: String },
    #[error("Docker API error: {0}")]
    Api(#[from] bollard::errors::Error),
    #[error("the Docker {what} stream ended unexpectedly")]
    StreamEnded { what: &'static str },
}

/// Connects a client to `host` (no request is made).
pub fn client(host: &str) -> Result<Docker, DockerError> {
    const TIMEOUT_SECS: u64 = 30;
    if let Some(rest) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        return Ok(Docker::connect_with_http(
            rest,
            TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )?);
    }
    let path = host.strip_prefix("unix://").unwrap_or(host);
    if !path.starts_with('/') {
        return Err(DockerError::UnsupportedHost {
            host: host.to_owned(),
        });
    }
    if !std::path::Path::new(path).exists() {
        return Err(DockerError::SocketMissing {
            path: path.to_owned(),
        });
    }
    Ok(Docker::connect_with_unix(
        path,
        TIMEOUT_SECS,
        bollard::API_DEFAULT_VERSION,
    )?)
}

/// A found container.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    id: String,
    name: String,
    running: bool,
    exit_code: Option<i64>,
    oom_killed: bool,
    started_ns: Option<UnixNanos>,
    finished_ns: Option<UnixNanos>,
    /// Restarts by the restart policy since the last start by hand.
    restart_count: i64,
}

/// Follows one container by name; see the module docs.
#[derive(Debug)]
pub struct DockerSource {
    config: DockerConfig,
    cx: SourceContext,
    /// Numbers the container look-ups; the status shows the latest one started.
    lookups: AtomicU64,
    /// Number of the look-up the container status was last set from.
    shown_lookup: Mutex<u64>,
}

impl DockerSource {
    pub fn new(config: DockerConfig, cx: SourceContext) -> Self {
        Self {
            config,
            cx,
            lookups: AtomicU64::new(0),
            shown_lookup: Mutex::new(0),
        }
    }

    /// Runs until shutdown. Never returns an error: every failure is reported in the
    /// status and retried.
    pub async fn run(self) {
        let mut backoff = Backoff::default();
        loop {
            if self.cx.shutdown.is_cancelled() {
                break;
            }
            let result = match self.connect().await {
                Ok(docker) => {
                    backoff.reset();
                    self.session(&docker).await
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(()) => break,
                Err(err) => self.set_unreachable(&err),
            }
            let delay = backoff.next_delay();
            tokio::select! {
                () = self.cx.shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!("docker source stopped");
    }

    async fn connect(&self) -> Result<Docker, DockerError> {
        // Older engines refuse a client API version newer than theirs: agree on one first.
        let docker = client(&self.config.host)?.negotiate_version().await?;
        let version = docker.version().await?;
        let version = version.version.unwrap_or_else(|| "unknown".into());
        tracing::info!(docker.host = %self.config.host, docker.version = %version, "connected to Docker");
        self.cx.status.send_modify(|s| {
            s.connection = Connection::Connected { version };
            s.last_error = None;
        });
        Ok(docker)
    }

    fn set_unreachable(&self, err: &DockerError) {
        let reason = err.to_string();
        let changed = self.cx.status.send_if_modified(|s| {
            let new = Connection::Unreachable {
                reason: reason.clone(),
            };
            if s.connection == new {
                return false;
            }
            s.connection = new;
            s.last_error = Some(reason.clone());
            true
        });
        if changed {
            tracing::warn!(docker.host = %self.config.host, error = %reason, "Docker unreachable; retrying with backoff");
        }
    }

    fn set_container(&self, state: ContainerState) {
        let changed = self.cx.status.send_if_modified(|s| {
            if s.container == state {
                return false;
            }
            if matches!(state, ContainerState::Running { .. }) {
                // Connected and following a running container: no problem is left.
                s.last_error = None;
            }
            s.container = state.clone();
            true
        });
        if changed {
            match &state {
                ContainerState::Missing { name } => {
                    tracing::warn!(container.name = %name, "no container named {name}; waiting for it to appear (set CONTAINER_NAME if your node uses another name)")
                }
                ContainerState::Running { id, name } => {
                    tracing::info!(container.name = %name, container.id = %short(id), "following container logs")
                }
                ContainerState::Created { id, name } => {
                    tracing::warn!(container.name = %name, container.id = %short(id), "container was created but never started; waiting for it to start")
                }
                ContainerState::Stopped {
                    id,
                    name,
                    exit_code,
                } => {
                    tracing::warn!(container.name = %name, container.id = %short(id), exit_code = ?exit_code, "container is not running; waiting for it to start")
                }
                ContainerState::Unknown => {}
            }
        }
    }

    /// One connected session: events and logs side by side until the daemon goes away
    /// (error) or shutdown (Ok).
    ///
    /// First the events Docker still has since the last recorded one are recorded, then
    /// each container found is reconciled with its inspected state (what Docker forgot),
    /// then events are followed live from where the replay ended.
    async fn session(&self, docker: &Docker) -> Result<(), DockerError> {
        let replayed_until = self.replay_events(docker).await?;
        let wake = Arc::new(Notify::new());
        tokio::select! {
            r = self.watch_events(docker, replayed_until, wake.clone()) => r,
            r = self.follow(docker, wake) => r,
        }
    }

    /// The events stream of our container from `since_ns`, up to `until_ns` if given.
    fn events(
        &self,
        docker: &Docker,
        since_ns: UnixNanos,
        until_ns: Option<UnixNanos>,
    ) -> impl futures_util::Stream<Item = Result<bollard::models::EventMessage, bollard::errors::Error>>
    {
        let at = |ns: UnixNanos| {
            format!(
                "{}.{:09}",
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000)
            )
        };
        let mut filters = HashMap::new();
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        filters.insert(
            "container".to_owned(),
            vec![self.config.container_name.clone()],
        );
        docker.events(Some(EventsOptions::<String> {
            since: Some(at(since_ns)),
            until: until_ns.map(at),
            filters,
        }))
    }

    /// Records the events Docker still has since the last recorded one, up to now, and
    /// waits until they are stored; returns where the replay ended.
    async fn replay_events(&self, docker: &Docker) -> Result<UnixNanos, DockerError> {
        let since = self.resume_events_from().await;
        let until = now_ns();
        let mut stream = self.events(docker, since, Some(until));
        let mut events = Vec::new();
        let replay = async {
            while let Some(msg) = stream.next().await {
                if let Some(event) = container_event(&msg?, &self.config.container_name) {
                    events.push(event);
                }
            }
            Ok::<(), DockerError>(())
        };
        // The daemon ends the stream at `until` by its own clock; one behind ours would
        // hold the session back.
        match tokio::time::timeout(Duration::from_secs(10), replay).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!(
                "Docker did not end the event replay within 10 s; following events live from now"
            ),
        }
        if !events.is_empty() {
            tracing::info!(
                events = events.len(),
                "container events replayed from Docker"
            );
            self.cx.record_events(events).await;
            let _ = self.cx.settled().await;
        }
        Ok(until)
    }

    /// Records the container's state changes and wakes the log follower on each.
    async fn watch_events(
        &self,
        docker: &Docker,
        since_ns: UnixNanos,
        wake: Arc<Notify>,
    ) -> Result<(), DockerError> {
        let mut stream = self.events(docker, since_ns, None);
        loop {
            let msg = tokio::select! {
                () = self.cx.shutdown.cancelled() => return Ok(()),
                msg = stream.next() => msg,
            };
            let Some(msg) = msg else {
                return Err(DockerError::StreamEnded { what: "events" });
            };
            let msg = msg?;
            let Some(event) = container_event(&msg, &self.config.container_name) else {
                continue;
            };
            tracing::info!(container.id = %short(&event.container_id), action = event.action.as_str(), exit_code = ?event.exit_code, "container event");
            self.cx.record_events(vec![event]).await;
            // The status follows the container even while the follower is busy streaming
            // (a `docker run` racing with the follower's look-up left it "missing").
            self.look_up(docker).await?;
            wake.notify_one();
        }
    }

    /// Where to replay Docker events from: the last recorded one (Docker keeps a short
    /// history), but no more than a day back.
    async fn resume_events_from(&self) -> UnixNanos {
        let now = now_ns();
        let day_ago = now - 86_400 * 1_000_000_000;
        let last = self
            .cx
            .events_since(day_ago)
            .await
            .ok()
            .and_then(|events| events.iter().map(|e| e.time_ns).max());
        last.unwrap_or(now).max(day_ago)
    }

    /// Finds the container, follows its logs while it runs, waits while it does not.
    async fn follow(&self, docker: &Docker, wake: Arc<Notify>) -> Result<(), DockerError> {
        // Containers reconciled in this session (each once, right after the replay).
        let mut reconciled: Vec<String> = Vec::new();
        loop {
            if self.cx.shutdown.is_cancelled() {
                return Ok(());
            }
            if let Some(found) = self.look_up(docker).await? {
                if !reconciled.contains(&found.id) {
                    self.reconcile(&found).await;
                    reconciled.push(found.id.clone());
                }
                // A stopped container's logs are read to their end as well.
                let started = Instant::now();
                if let LogsEnd::Refused { status, message } =
                    self.follow_logs(docker, &found.id).await?
                {
                    // Not a connection problem: say what it is and wait for the next event.
                    self.note_refused(&found, status, &message);
                } else if found.running && started.elapsed() < Duration::from_secs(1) {
                    // The stream ended at once although the container runs: do not spin.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if self.cx.shutdown.is_cancelled() {
                    return Ok(());
                }
                match self.look_up(docker).await? {
                    Some(f) if !f.running => {}
                    // Running again, recreated, or gone: look again at once.
                    _ => continue,
                }
            }
            // Wait for an event about the container, with a slow poll as a safety net.
            tokio::select! {
                () = self.cx.shutdown.cancelled() => return Ok(()),
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// Looks the container up and shows what was found as the container status, unless a
    /// look-up started later was shown already (the follower and the event watcher both
    /// look, and their answers may arrive out of order).
    async fn look_up(&self, docker: &Docker) -> Result<Option<Found>, DockerError> {
        let number = self.lookups.fetch_add(1, Ordering::Relaxed) + 1;
        let found = self.find(docker).await?;
        let mut shown = self
            .shown_lookup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if number > *shown {
            *shown = number;
            self.set_container(match &found {
                None => ContainerState::Missing {
                    name: self.config.container_name.clone(),
                },
                Some(f) if f.running => ContainerState::Running {
                    id: f.id.clone(),
                    name: f.name.clone(),
                },
                Some(f) if f.started_ns.is_none() => ContainerState::Created {
                    id: f.id.clone(),
                    name: f.name.clone(),
                },
                Some(f) => ContainerState::Stopped {
                    id: f.id.clone(),
                    name: f.name.clone(),
                    exit_code: f.exit_code,
                },
            });
        }
        Ok(found)
    }

    async fn find(&self, docker: &Docker) -> Result<Option<Found>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("name".to_owned(), vec![self.config.container_name.clone()]);
        let list = docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: true,
                filters,
                ..Default::default()
            }))
            .await?;
        let wanted = format!("/{}", self.config.container_name);
        let Some(id) = list
            .into_iter()
            .find(|c| c.names.as_ref().is_some_and(|n| n.contains(&wanted)))
            .and_then(|c| c.id)
        else {
            return Ok(None);
        };
        let info = match docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => info,
            // Removed between list and inspect.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let state = info.state.unwrap_or_default();
        let ts = |s: Option<String>| {
            s.as_deref()
                .and_then(super::decode::parse_rfc3339_ns)
                .filter(|ns| *ns > 0)
        };
        Ok(Some(Found {
            id,
            name: self.config.container_name.clone(),
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            started_ns: ts(state.started_at),
            finished_ns: ts(state.finished_at),
            restart_count: info.restart_count.unwrap_or(0),
        }))
    }

    /// Records what the container's inspected state shows but the recorded events do
    /// not: its start and stop when it is new to the store (the monitor started after the
    /// node), and a stop or start that happened while the monitor or the daemon was down
    /// (Docker forgets its events when it restarts). Such events are marked inferred.
    async fn reconcile(&self, found: &Found) {
        let known = match self.cx.events_of(&found.id).await {
            Ok(known) => known,
            Err(error) => {
                tracing::error!(%error, "cannot read the recorded container events");
                return;
            }
        };
        let mut events = inferred_events(found, &known);
        if !events.is_empty() && !known.is_empty() {
            let gap = events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>();
            tracing::warn!(
                container.name = %found.name,
                container.id = %short(&found.id),
                restart_count = found.restart_count,
                "container state changed while no Docker event was seen ({}); recorded as inferred from its inspected state",
                gap.join(", ")
            );
        }
        let before = match self.cx.restart_observation(&found.id).await {
            Ok(before) => before,
            Err(error) => {
                tracing::error!(%error, "cannot read the container's last restart count");
                None
            }
        };
        let all: Vec<ContainerEvent> = known.iter().chain(&events).cloned().collect();
        let unseen = unseen_restarts(found, before, &all);
        if !unseen.is_empty() {
            tracing::warn!(
                container.name = %found.name,
                container.id = %short(&found.id),
                restart_count = found.restart_count,
                "{} restarts by Docker's restart policy were not seen as events (Docker keeps a few hundred events and forgets them when it restarts); recorded as inferred, their times unknown",
                unseen.len()
            );
        }
        events.extend(unseen);
        if !events.is_empty() {
            self.cx.record_events(events).await;
        }
        let Some(started_ns) = found.started_ns else {
            return;
        };
        // The events first: an observation stored without them would hide the restarts
        // they stand for, while events stored without the observation are seen next time.
        if self.cx.settled().await.is_ok() {
            let now = RestartObservation {
                restart_count: found.restart_count,
                started_ns,
            };
            if let Err(error) = self.cx.observe_restarts(&found.id, now).await {
                tracing::error!(%error, "cannot store the container's restart count");
            }
        }
    }

    /// Docker refused the container's logs: said once, in the status and the log.
    fn note_refused(&self, found: &Found, status: u16, message: &str) {
        let note = format!(
            "container {} ({}) is dead or being removed: Docker refused its logs ({status}: {message}); waiting for a container named {} to run",
            found.name,
            short(&found.id),
            found.name
        );
        let changed = self.cx.status.send_if_modified(|s| {
            if s.last_error.as_deref() == Some(note.as_str()) {
                return false;
            }
            s.last_error = Some(note.clone());
            true
        });
        if changed {
            tracing::warn!(container.name = %found.name, container.id = %short(&found.id), status, error = %message, "container is dead or being removed: Docker refused its logs; waiting for a container of that name to run");
        }
    }

    /// Streams the container's logs from its cursor until the stream ends (container
    /// stopped), Docker refuses them (container dead or being removed) or shutdown;
    /// commits as it goes.
    async fn follow_logs(&self, docker: &Docker, id: &str) -> Result<LogsEnd, DockerError> {
        let Ok(mut ingest) = self.cx.ingest(&format!("docker:{id}")).await else {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return Ok(LogsEnd::Ended);
        };
        // `since` is whole seconds and inclusive; one more second back so that a long line
        // split across a second boundary is joined whole. Lines up to the cursor are skipped.
        let since = ingest
            .resume_after()
            .map(|p| p.major.div_euclid(1_000_000_000) - 1)
            .unwrap_or(0)
            .max(0);
        let mut stream = docker.logs(
            id,
            Some(LogsOptions::<String> {
                follow: true,
                stdout: true,
                stderr: true,
                since,
                until: 0,
                timestamps: true,
                tail: "all".into(),
            }),
        );
        let mut asm = LineAssembler::default();
        loop {
            let deadline = ingest.deadline().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                () = self.cx.shutdown.cancelled() => {
                    ingest.commit(Handoff::Finish).await;
                    return Ok(LogsEnd::Ended);
                }
                item = stream.next() => match item {
                    Some(Ok(output)) => {
                        let (stream_kind, bytes) = match output {
                            LogOutput::StdErr { message } => (Stream::Stderr, message),
                            LogOutput::StdOut { message } | LogOutput::Console { message } | LogOutput::StdIn { message } => (Stream::Stdout, message),
                        };
                        asm.push_frame(stream_kind, &bytes, |line, meta| {
                            ingest.push(line, meta);
                        });
                        ingest.commit(Handoff::Due).await;
                    }
                    Some(Err(err)) => {
                        // Keep what is complete; the pending entry is re-read later.
                        ingest.commit(Handoff::Ready).await;
                        return match refusal(&err) {
                            Some((status, message)) => Ok(LogsEnd::Refused { status, message }),
                            None => Err(err.into()),
                        };
                    }
                    None => {
                        asm.finish(|line, meta| {
                            ingest.push(line, meta);
                        });
                        ingest.commit(Handoff::Finish).await;
                        return Ok(LogsEnd::Ended);
                    }
                },
                () = sleep_until_opt(deadline) => {
                    ingest.commit(Handoff::Idle(Instant::now())).await;
                }
            }
        }
    }
}

/// How far apart a Docker event and the inspected time of the same change may be.
const SAME_CHANGE_NS: i64 = 2_000_000_000;

/// The events a container's inspected state implies beyond the recorded ones (`known`,
/// this container's), marked inferred. Inspect tells the last start (`StartedAt`) and the
/// last stop (`FinishedAt`; the one before the current start while it runs). Each is
/// missing when no recorded event of the same direction lies within [`SAME_CHANGE_NS`] of
/// it and the recorded state just before it is not that already: a daemon restart forgets
/// the stop although the events after it are kept. A stop before the current start
/// carries no exit code (Docker resets it on start); the final stop of a stopped
/// container does.
fn inferred_events(found: &Found, known: &[ContainerEvent]) -> Vec<ContainerEvent> {
    let mut implied: Vec<(UnixNanos, bool)> = Vec::new();
    if let Some(started) = found.started_ns {
        implied.push((started, true));
    }
    if let Some(finished) = found.finished_ns {
        let before_start = found.started_ns.is_some_and(|s| finished <= s);
        if !found.running || before_start {
            implied.push((finished, false));
        }
    }
    implied.sort_unstable();
    let event = |time_ns, action, exit_code| ContainerEvent {
        container_id: found.id.clone(),
        container_name: found.name.clone(),
        time_ns,
        action,
        exit_code,
        inferred: true,
    };
    let mut out: Vec<ContainerEvent> = Vec::new();
    for (time_ns, up) in implied {
        let seen = known.iter().any(|e| {
            e.action.up_after() == Some(up) && (e.time_ns - time_ns).abs() <= SAME_CHANGE_NS
        });
        let state_before = known
            .iter()
            .chain(out.iter())
            .filter(|e| e.time_ns < time_ns && e.action.up_after().is_some())
            .max_by_key(|e| e.time_ns)
            .and_then(|e| e.action.up_after());
        if seen || state_before == Some(up) {
            continue;
        }
        if up {
            out.push(event(time_ns, ContainerAction::Started, None));
        } else {
            let last_stop = !found.running;
            if last_stop && found.oom_killed {
                out.push(event(time_ns, ContainerAction::Oom, None));
            }
            let exit_code = if last_stop { found.exit_code } else { None };
            out.push(event(time_ns, ContainerAction::Died, exit_code));
        }
    }
    out
}

/// Restarts by Docker's restart policy that no recorded event shows (`known`: this
/// container's events, those just inferred included), as inferred `restarted` events.
///
/// `RestartCount` counts the policy's restarts since the container was last started by
/// hand or by a daemon start (either resets it). Since the start `before` was taken at,
/// it grew by the restarts made since (or, after a reset, is that many at least); each
/// recorded start after that one stands for one of them. What remains was not seen:
/// Docker's event buffer holds a few hundred events and a daemon restart empties it.
/// Their times are unknown beyond "after `before`'s start and before the last stop
/// before the current start": they are placed just before that stop (a nanosecond
/// apart), where the container was up anyway, so the uptime does not change and a
/// restart-loop alert counts them as late as they can have been.
fn unseen_restarts(
    found: &Found,
    before: Option<RestartObservation>,
    known: &[ContainerEvent],
) -> Vec<ContainerEvent> {
    let (Some(before), Some(started_ns)) = (before, found.started_ns) else {
        return Vec::new();
    };
    if started_ns <= before.started_ns {
        return Vec::new();
    }
    let made = if found.restart_count >= before.restart_count {
        found.restart_count - before.restart_count
    } else {
        found.restart_count
    };
    let mut starts: Vec<UnixNanos> = known
        .iter()
        .filter(|e| {
            matches!(
                e.action,
                ContainerAction::Started | ContainerAction::Restarted
            )
        })
        .map(|e| e.time_ns)
        .filter(|t| *t > before.started_ns - SAME_CHANGE_NS && *t <= started_ns + SAME_CHANGE_NS)
        .collect();
    // The start the observation was taken at is counted in its RestartCount already.
    if let Some(at) = starts
        .iter()
        .enumerate()
        .filter(|(_, t)| (**t - before.started_ns).abs() <= SAME_CHANGE_NS)
        .min_by_key(|(_, t)| (**t - before.started_ns).abs())
        .map(|(i, _)| i)
    {
        starts.swap_remove(at);
    }
    let missing = made - i64::try_from(starts.len()).unwrap_or(i64::MAX);
    if missing <= 0 {
        return Vec::new();
    }
    let last_stop = found
        .finished_ns
        .filter(|f| *f > before.started_ns && *f <= started_ns)
        .unwrap_or(started_ns);
    (0..missing)
        .map(|i| ContainerEvent {
            container_id: found.id.clone(),
            container_name: found.name.clone(),
            time_ns: last_stop - (missing - i),
            action: ContainerAction::Restarted,
            exit_code: None,
            inferred: true,
        })
        .collect()
}

/// How a log stream ended, when the daemon is still there.
#[derive(Debug)]
enum LogsEnd {
    /// The container stopped (or shutdown).
    Ended,
    /// Docker refused the logs: the container is dead or marked for removal (409), or
    /// gone already (404).
    Refused { status: u16, message: String },
}

/// Docker's answer when it refuses a container's logs for the container's own sake, not
/// because the daemon is unreachable.
fn refusal(err: &bollard::errors::Error) -> Option<(u16, String)> {
    match err {
        bollard::errors::Error::DockerResponseServerError {
            status_code: status @ (404 | 409),
            message,
        } => Some((*status, message.trim().to_owned())),
        _ => None,
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Maps a Docker event to a container event of ours, if it is about our container and a
/// state change we record.
fn container_event(msg: &bollard::models::EventMessage, name: &str) -> Option<ContainerEvent> {
    let action = msg.action.as_deref()?;
    // `exec_start: sh` style actions carry a suffix; `health_status: healthy` too.
    let action = action.split(':').next().unwrap_or(action).trim();
    let action = ContainerAction::from_docker(action)?;
    let actor = msg.actor.as_ref()?;
    let attrs = actor.attributes.as_ref();
    let ev_name = attrs
        .and_then(|a| a.get("name"))
        .map(String::as_str)
        .unwrap_or(name);
    if ev_name != name {
        return None;
    }
    let time_ns = msg
        .time_nano
        .or_else(|| msg.time.map(|t| t * 1_000_000_000))?;
    let exit_code = attrs
        .and_then(|a| a.get("exitCode"))
        .and_then(|c| c.parse().ok());
    Some(ContainerEvent {
        container_id: actor.id.clone()?,
        container_name: ev_name.to_owned(),
        time_ns,
        action,
        exit_code,
        inferred: false,
    })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

pub(crate) use truebit_clock::now_ns;

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, EventMessage};

    fn msg(action: &str, name: &str, exit: Option<&str>) -> EventMessage {
        let mut attributes = HashMap::from([("name".to_owned(), name.to_owned())]);
        if let Some(e) = exit {
            attributes.insert("exitCode".into(), e.into());
        }
        EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(attributes),
            }),
            time: Some(1_700_000_000),
            time_nano: Some(1_700_000_000_123_456_789),
            ..Default::default()
        }
    }

    #[test]
    fn die_event_carries_its_exit_code() {
        let ev = container_event(&msg("die", "runner-node", Some("137")), "runner-node")
            .expect("recorded");
        assert_eq!(ev.action, ContainerAction::Died);
        assert_eq!(ev.exit_code, Some(137));
        assert_eq!(ev.time_ns, 1_700_000_000_123_456_789);
        assert_eq!(ev.container_id, "abc");
    }

    #[test]
    fn events_of_other_containers_and_actions_are_ignored() {
        assert!(container_event(&msg("die", "runner-node-2", None), "runner-node").is_none());
        assert!(
            container_event(&msg("exec_start: sh", "runner-node", None), "runner-node").is_none()
        );
        assert!(container_event(&msg("attach", "runner-node", None), "runner-node").is_none());
    }

    const SEC: i64 = 1_000_000_000;

    /// The container as inspected; times in seconds.
    fn found(running: bool, started: i64, finished: Option<i64>) -> Found {
        Found {
            id: "abc".into(),
            name: "runner-node".into(),
            running,
            exit_code: Some(if running { 0 } else { 137 }),
            oom_killed: false,
            started_ns: Some(started * SEC),
            finished_ns: finished.map(|f| f * SEC),
            restart_count: 0,
        }
    }

    /// A recorded event `ms` milliseconds after second `secs`.
    fn seen(secs: i64, ms: i64, action: ContainerAction) -> ContainerEvent {
        ContainerEvent {
            container_id: "abc".into(),
            container_name: "runner-node".into(),
            time_ns: secs * SEC + ms * 1_000_000,
            action,
            exit_code: None,
            inferred: false,
        }
    }

    /// (second, action, exit code, inferred)
    fn gaps(events: &[ContainerEvent]) -> Vec<(i64, ContainerAction, Option<i64>, bool)> {
        events
            .iter()
            .map(|e| (e.time_ns / SEC, e.action, e.exit_code, e.inferred))
            .collect()
    }

    #[test]
    fn a_stop_and_start_no_event_showed_are_inferred_from_the_inspected_state() {
        use ContainerAction::{Died, Started};
        // Seen: started at 100. Now: running since 500, last finished at 300.
        let known = [seen(100, 3, Started)];
        assert_eq!(
            gaps(&inferred_events(&found(true, 500, Some(300)), &known)),
            vec![(300, Died, None, true), (500, Started, None, true)]
        );
        // A daemon restart: the stop is forgotten, the start after it was replayed.
        let known = [seen(100, 3, Started), seen(500, 4, Started)];
        assert_eq!(
            gaps(&inferred_events(&found(true, 500, Some(300)), &known)),
            vec![(300, Died, None, true)]
        );
        // The stop was seen; only the start was missed.
        let known = [seen(100, 3, Started), seen(300, 1, Died)];
        assert_eq!(
            gaps(&inferred_events(&found(true, 500, Some(300)), &known)),
            vec![(500, Started, None, true)]
        );
        // Stopped while nobody watched: the final stop carries its exit code.
        let known = [seen(100, 3, Started)];
        assert_eq!(
            gaps(&inferred_events(&found(false, 100, Some(400)), &known)),
            vec![(400, Died, Some(137), true)]
        );
    }

    #[test]
    fn what_the_events_showed_is_not_inferred_again() {
        use ContainerAction::{Died, Started};
        // Docker's events come a moment after (or before) the state they report.
        let known = [
            seen(100, 3, Started),
            seen(300, 2, Died),
            seen(500, 5, Started),
        ];
        assert!(inferred_events(&found(true, 500, Some(300)), &known).is_empty());
        let known = [seen(100, 3, Started), seen(399, 998, Died)];
        assert!(inferred_events(&found(false, 100, Some(400)), &known).is_empty());
        // Inferred events already recorded count as recorded.
        let mut again = inferred_events(&found(true, 500, Some(300)), &[seen(100, 3, Started)]);
        again.insert(0, seen(100, 3, Started));
        assert!(inferred_events(&found(true, 500, Some(300)), &again).is_empty());
    }

    fn observed(restart_count: i64, started: i64) -> Option<RestartObservation> {
        Some(RestartObservation {
            restart_count,
            started_ns: started * SEC,
        })
    }

    #[test]
    fn restarts_counted_by_docker_but_never_seen_are_inferred_before_the_last_stop() {
        use ContainerAction::{Died, Restarted, Started};
        // Seen at its start at 100 s with 2 restarts; now started at 500 s (last stop at
        // 400 s) with 7: five restarts, one of them the current start.
        let mut now = found(true, 500, Some(400));
        now.restart_count = 7;
        let inferred_start = ContainerEvent {
            inferred: true,
            ..seen(500, 0, Started)
        };
        let known = [seen(100, 3, Started), inferred_start.clone()];
        let out = unseen_restarts(&now, observed(2, 100), &known);
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(out.iter().all(|e| e.action == Restarted && e.inferred));
        let times: Vec<i64> = out.iter().map(|e| e.time_ns).collect();
        assert_eq!(
            times,
            (1..=4).map(|i| 400 * SEC - 5 + i).collect::<Vec<_>>()
        );
        // Restarts the events showed are not inferred again.
        let mut shown = known.to_vec();
        for t in [150, 250] {
            shown.push(seen(t, 0, Died));
            shown.push(seen(t, 500, Started));
        }
        assert_eq!(unseen_restarts(&now, observed(2, 100), &shown).len(), 2);
        // Once recorded, the same inspect infers nothing more.
        shown.extend(unseen_restarts(&now, observed(2, 100), &shown));
        assert!(unseen_restarts(&now, observed(2, 100), &shown).is_empty());
    }

    #[test]
    fn no_restart_is_inferred_without_an_earlier_observation_a_new_start_or_a_count() {
        let mut now = found(true, 500, Some(400));
        now.restart_count = 7;
        let known = [seen(500, 0, ContainerAction::Started)];
        // Never observed: the count covers a past nobody saw (no alert for history).
        assert!(unseen_restarts(&now, None, &known).is_empty());
        // The same start as observed.
        assert!(unseen_restarts(&now, observed(7, 500), &known).is_empty());
        // Reset by a start by hand (count 0 now): nothing the count can tell.
        now.restart_count = 0;
        assert!(unseen_restarts(&now, observed(7, 100), &known).is_empty());
        // Reset, then 3 policy restarts of which the events showed one: at least 2.
        now.restart_count = 3;
        assert_eq!(unseen_restarts(&now, observed(7, 100), &known).len(), 2);
        // A stopped container: placed just before its current start.
        let mut stopped = found(false, 500, Some(600));
        stopped.restart_count = 2;
        let out = unseen_restarts(&stopped, observed(0, 100), &[]);
        assert_eq!(
            out.iter().map(|e| e.time_ns).collect::<Vec<_>>(),
            vec![500 * SEC - 2, 500 * SEC - 1]
        );
    }

    #[test]
    fn a_container_new_to_the_store_gets_its_inspected_history() {
        use ContainerAction::{Died, Oom, Started};
        assert_eq!(
            gaps(&inferred_events(&found(true, 500, None), &[])),
            vec![(500, Started, None, true)]
        );
        let mut oom = found(false, 100, Some(200));
        oom.oom_killed = true;
        assert_eq!(
            gaps(&inferred_events(&oom, &[])),
            vec![
                (100, Started, None, true),
                (200, Oom, None, true),
                (200, Died, Some(137), true)
            ]
        );
    }

    #[test]
    fn a_container_dead_or_being_removed_is_not_an_unreachable_daemon() {
        let server =
            |status_code: u16, message: &str| bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.to_owned(),
            };
        let msg = "can not get logs from container which is dead or marked for removal";
        assert_eq!(refusal(&server(409, msg)), Some((409, msg.to_owned())));
        assert_eq!(
            refusal(&server(404, "No such container: abc\n")),
            Some((404, "No such container: abc".to_owned()))
        );
        assert_eq!(refusal(&server(500, "internal")), None);
        assert_eq!(refusal(&bollard::errors::Error::RequestTimeoutError), None);
    }

    #[test]
    fn missing_socket_is_a_clear_error() {
        let err = client("unix:///nonexistent/docker.sock").expect_err("no socket");
        assert!(
            err.to_string()
                .contains("/nonexistent/docker.sock does not exist"),
            "{err}"
        );
        let err = client("ssh://host").expect_err("unsupported");
        assert!(
            err.to_string().starts_with("unsupported DOCKER_HOST"),
            "{err}"
        );
    }
}
