//! The live stream: server-sent events of new log entries, task changes, invoices and
//! status.
//!
//! One [`Tail`] task reads the store's feed of committed changes ([`crate::store::feed`]):
//! for each commit, and only while someone listens, it reads the rows the commit added
//! (entries and invoices by id, in commit order, and the tasks they name) and publishes
//! each event once, already serialized, on a `broadcast` channel. Ingest never waits for
//! it: the feed never waits for its readers, and the tail is just another reader. A tail
//! that fell behind the feed says which entries it skipped (`event: skipped`); a client
//! that falls behind by more than the channel holds is told so (`event: lagged`) and
//! disconnected; it may reconnect.
//!
//! Limits: `WS_MAX_CONNECTIONS` streams in all and `WS_MAX_PER_IP` per client. A stream
//! is authenticated when it opens and re-checked every [`RECHECK`]: it ends when its
//! session expires or is logged out, or its key is revoked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::auth::Principal;
use super::error::ApiError;
use super::params::{ParamSpec, Params};
use super::redact::{carries_data, Access};
use super::AppState;
use crate::model::Kind;
use crate::source::SourceStatus;
use crate::store::{Change, Commit, Store, StoreError};

/// Events a client may be behind before it is dropped.
pub const CHANNEL: usize = 4096;
/// How often an open stream re-checks its credentials.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Entries of one commit the tail sends; beyond (an import, a back-fill), it skips
/// ahead and says so.
const MAX_PER_COMMIT: u64 = 2000;

/// One event, serialized once for every client.
#[derive(Clone, Debug)]
pub struct LiveMessage {
    /// `entry`, `task`, `invoice`, `status` or `skipped`.
    pub event: &'static str,
    pub data: String,
    /// What a caller without access to task input and output gets instead of `data`
    /// ([`redact`](super::redact)); `None` when it is the same.
    pub hidden: Option<String>,
}

impl LiveMessage {
    pub fn new(event: &'static str, data: String) -> LiveMessage {
        LiveMessage {
            event,
            data,
            hidden: None,
        }
    }

    /// The data as a caller with `access` may see it.
    pub fn data_for(&self, access: Access) -> &str {
        match (&self.hidden, access) {
            (Some(hidden), Access::Hidden) => hidden,
            _ => &self.data,
        }
    }
}

pub type LiveSender = broadcast::Sender<Arc<LiveMessage>>;

/// Follows the feed of committed changes and publishes the new rows.
#[derive(Debug)]
pub struct Tail {
    store: Store,
    feed: broadcast::Receiver<Change>,
    status: watch::Receiver<SourceStatus>,
    tx: LiveSender,
    shutdown: CancellationToken,
}

impl Tail {
    /// A tail of the commits `feed` reports (from `store`'s [`Store::subscribe`]).
    pub fn new(
        store: Store,
        feed: broadcast::Receiver<Change>,
        status: watch::Receiver<SourceStatus>,
        tx: LiveSender,
        shutdown: CancellationToken,
    ) -> Tail {
        Tail {
            store,
            feed,
            status,
            tx,
            shutdown,
        }
    }

    pub async fn run(mut self) {
        // The newest entry id of the commits seen, and where a gap of lost commits begins.
        let mut seen: i64 = 0;
        let mut lost_after: Option<i64> = None;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                change = self.feed.recv() => match change {
                    Ok(Change::Committed(commit)) => {
                        let lost = lost_after.take();
                        seen = commit.entries.last;
                        if self.tx.receiver_count() == 0 {
                            // Nobody listens: nothing to read.
                            continue;
                        }
                        match self.store.call(move |st| messages(st, &commit, lost)).await {
                            Ok(messages) => self.publish(messages),
                            Err(error) => tracing::debug!(%error, "live tail cannot read the store"),
                        }
                    }
                    Ok(Change::WriteHealth(_)) => {}
                    Err(RecvError::Lagged(_)) => {
                        lost_after.get_or_insert(seen);
                    }
                    Err(RecvError::Closed) => {
                        self.shutdown.cancelled().await;
                        return;
                    }
                },
                changed = self.status.changed() => {
                    if changed.is_err() {
                        // The source is gone (shutdown); keep serving rows until cancelled.
                        self.shutdown.cancelled().await;
                        return;
                    }
                    if self.tx.receiver_count() == 0 {
                        continue;
                    }
                    let status = self.status.borrow_and_update().clone();
                    if let Ok(m) = self
                        .store
                        .call(move |st| Ok(status_message(st, &status)))
                        .await
                    {
                        self.publish(vec![m]);
                    }
                }
            }
        }
    }

    fn publish(&self, messages: Vec<LiveMessage>) {
        for m in messages {
            let _ = self.tx.send(Arc::new(m));
        }
    }
}

/// The `skipped` message: entries after `after_id` up to `resume_at_id` are not sent.
fn skipped(after_id: i64, resume_at_id: i64) -> LiveMessage {
    LiveMessage::new(
        "skipped",
        json!({ "entries_after_id": after_id, "resume_at_id": resume_at_id }).to_string(),
    )
}

/// The messages of one commit: its entries, the tasks they name, its invoices and, when
/// its entries changed the node, the node status; first, when the tail lost the commits
/// before it, which entries it skipped (those after `lost_after`).
fn messages(
    store: &Store,
    commit: &Commit,
    lost_after: Option<i64>,
) -> Result<Vec<LiveMessage>, StoreError> {
    let mut out = Vec::new();
    if let Some(after) = lost_after {
        out.push(skipped(after, commit.entries.after));
    }
    if commit.entries.count() > MAX_PER_COMMIT {
        // A burst (an import, a back-fill): skip to its newest rows and say so.
        out.push(skipped(commit.entries.after, commit.entries.last));
        return Ok(out);
    }
    if !commit.removed_entries.is_empty() {
        // Shorter versions of entries the node went on printing after a pause: a live view
        // drops them; the longer versions follow as `entry` events.
        out.push(LiveMessage::new(
            "removed",
            json!({ "entry_ids": commit.removed_entries }).to_string(),
        ));
    }
    let entries = store.entries_after(commit.entries.after, commit.entries.count() as usize)?;
    let mut executions: Vec<String> = Vec::new();
    let mut node_changed = false;
    for e in &entries {
        match e.kind {
            Kind::TaskReceived
            | Kind::TaskDownloaded
            | Kind::ExecutionStarted
            | Kind::ExecutionCompleted => {
                if let Some(id) = &e.execution_id {
                    if !executions.contains(id) {
                        executions.push(id.clone());
                    }
                }
            }
            Kind::SlotTaken | Kind::SlotReleased | Kind::NodeRegistered => node_changed = true,
            _ => {}
        }
        let shown = Access::Visible.entry(e.clone());
        let mut m = LiveMessage::new("entry", serde_json::to_string(&shown).unwrap_or_default());
        if carries_data(e.kind) {
            let hidden = Access::Hidden.entry(e.clone());
            m.hidden = Some(serde_json::to_string(&hidden).unwrap_or_default());
        }
        out.push(m);
    }
    for task in store.tasks_by_execution(&executions)? {
        // Task events never carry input or output, for anyone; the failure reason only
        // for those who may see task data.
        let hidden = task
            .error
            .is_some()
            .then(|| Access::Hidden.task_json(task.clone()).to_string());
        let mut shown = Access::Visible.task_json(task);
        if let Some(map) = shown.as_object_mut() {
            map.remove("input");
            map.remove("output");
        }
        let mut m = LiveMessage::new("task", shown.to_string());
        m.hidden = hidden;
        out.push(m);
    }
    let invoices = commit.invoices;
    for invoice in store.invoices_after(invoices.after, invoices.count() as usize)? {
        out.push(LiveMessage::new(
            "invoice",
            serde_json::to_string(&invoice).unwrap_or_default(),
        ));
    }
    if node_changed {
        if let Ok(node) = store.node_status() {
            out.push(LiveMessage::new(
                "status",
                json!({ "node": node }).to_string(),
            ));
        }
    }
    Ok(out)
}

fn status_message(store: &Store, status: &SourceStatus) -> LiveMessage {
    let node = store.node_status().ok();
    LiveMessage::new(
        "status",
        json!({ "source": status, "node": node }).to_string(),
    )
}

/// Open streams, in all and per client IP.
#[derive(Debug)]
pub struct StreamLimits {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    max_per_ip: u32,
}

impl StreamLimits {
    pub fn new(max_total: u32, max_per_ip: u32) -> StreamLimits {
        StreamLimits {
            total: Arc::new(Semaphore::new(max_total as usize)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        }
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        lock(&self.per_ip).values().map(|n| *n as usize).sum()
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<StreamSlot, ApiError> {
        let mut per_ip = lock(&self.per_ip);
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(ApiError::TooManyStreams {
                scope: "per client address, WS_MAX_PER_IP",
            });
        }
        let permit =
            Arc::clone(&self.total)
                .try_acquire_owned()
                .map_err(|_| ApiError::TooManyStreams {
                    scope: "in all, WS_MAX_CONNECTIONS",
                })?;
        *n += 1;
        Ok(StreamSlot {
            limits: Arc::clone(self),
            ip,
            _permit: permit,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A stream's place; given back when the stream ends.
#[derive(Debug)]
struct StreamSlot {
    limits: Arc<StreamLimits>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut per_ip = lock(&self.limits.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

const EVENTS_QUERY: &[ParamSpec] = &[];

/// `GET /api/events`: the live stream.
pub async fn events(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    req: Request,
) -> Result<Response, ApiError> {
    Params::parse(req.uri(), EVENTS_QUERY)?;
    let ip = s.client_ip(req.extensions(), req.headers());
    let headers = req.headers().clone();
    let slot = s.streams.acquire(ip)?;
    let rx = s.live.subscribe();
    let first = status_event(&s).await;
    let state = StreamState {
        app: s.clone(),
        principal,
        headers,
        ip,
        rx,
        first: Some(first),
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK),
        done: false,
        _slot: slot,
    };
    let stream = live_stream(state);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn status_event(s: &AppState) -> Event {
    let status = s.status.borrow().clone();
    let m = s
        .store
        .call(move |st| Ok(status_message(st, &status)))
        .await
        .unwrap_or(LiveMessage::new("status", "{}".into()));
    Event::default().event(m.event).data(m.data)
}

struct StreamState {
    app: AppState,
    principal: Principal,
    headers: axum::http::HeaderMap,
    ip: IpAddr,
    rx: broadcast::Receiver<Arc<LiveMessage>>,
    first: Option<Event>,
    recheck: tokio::time::Interval,
    done: bool,
    _slot: StreamSlot,
}

fn live_stream(state: StreamState) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(first) = st.first.take() {
            return Some((Ok(first), st));
        }
        let expires_in = match &st.principal {
            Principal::Session { expires_ns, .. } => {
                let left = expires_ns.saturating_sub(st.app.clock.now_ns()).max(0);
                Duration::from_nanos(u64::try_from(left).unwrap_or(0))
            }
            _ => Duration::from_secs(86_400 * 365),
        };
        loop {
            tokio::select! {
                () = st.app.shutdown.cancelled() => return None,
                () = tokio::time::sleep(expires_in) => {
                    st.done = true;
                    let e = Event::default().event("expired").data(r#"{"reason":"session expired"}"#);
                    return Some((Ok(e), st));
                }
                _ = st.recheck.tick() => {
                    let still = st.app.authenticate(&st.headers, st.ip).await;
                    if !same_caller(still.as_ref().ok(), &st.principal) {
                        st.done = true;
                        let e = Event::default().event("expired").data(r#"{"reason":"credentials no longer valid"}"#);
                        return Some((Ok(e), st));
                    }
                }
                msg = st.rx.recv() => match msg {
                    Ok(m) => {
                        let data = m.data_for(Access::of(&st.principal));
                        return Some((Ok(Event::default().event(m.event).data(data)), st));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        st.done = true;
                        let e = Event::default().event("lagged").data(json!({ "missed": missed, "reason": "the client read too slowly; reconnect" }).to_string());
                        return Some((Ok(e), st));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    })
}

/// The same caller, even if details (a session's expiry) were re-read.
fn same_caller(now: Option<&Principal>, before: &Principal) -> bool {
    match (now, before) {
        (
            Some(Principal::Session {
                token_sha256: a, ..
            }),
            Principal::Session {
                token_sha256: b, ..
            },
        ) => a == b,
        (Some(Principal::ConfigKey), Principal::ConfigKey) => true,
        (Some(Principal::Key { id: a, .. }), Principal::Key { id: b, .. }) => a == b,
        _ => false,
    }
}

/// Creates the channel the tail publishes on.
pub fn channel() -> LiveSender {
    broadcast::channel(CHANNEL).0
}
