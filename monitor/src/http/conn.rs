//! The open HTTP connections, for the connection cap: which of them is only waiting.
//!
//! A connection is *busy* while one of its requests is being answered (from its complete
//! headers to the last byte of the answer's body, so a live stream stays busy), and
//! *waiting* otherwise: for its first request's headers, or idle between keep-alive
//! requests. When the cap is reached, the connection that has been waiting the longest
//! is closed to make room for the new one. Slow or idle clients (slowloris) therefore
//! cannot keep anyone else out, while a connection that is being answered is never
//! displaced.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Conn {
    /// Requests being answered.
    busy: usize,
    /// Since when the connection waits (for headers, or idle after an answer).
    waiting_since: Instant,
    close: CancellationToken,
}

/// The registry of open connections (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Connections {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Conn>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock leaves only counters behind: keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; it waits for its first request from now on. The
    /// returned token is cancelled when the connection is to be closed.
    pub fn open(&self) -> (ConnId, CancellationToken) {
        let close = CancellationToken::new();
        let mut registry = self.lock();
        registry.next_id += 1;
        let id = registry.next_id;
        registry.open.insert(
            id,
            Conn {
                busy: 0,
                waiting_since: Instant::now(),
                close: close.clone(),
            },
        );
        (
            ConnId {
                id,
                connections: self.clone(),
            },
            close,
        )
    }

    /// Asks the connection that has been waiting the longest to close; false when every
    /// open connection is busy.
    pub fn displace_longest_waiting(&self) -> bool {
        let registry = self.lock();
        let victim = registry
            .open
            .values()
            .filter(|c| c.busy == 0 && !c.close.is_cancelled())
            .min_by_key(|c| c.waiting_since);
        match victim {
            Some(conn) => {
                conn.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Connections open now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One registered connection; dropping it removes the connection from the registry.
#[derive(Debug)]
pub struct ConnId {
    id: u64,
    connections: Connections,
}

impl ConnId {
    /// A handle for the requests of this connection.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle {
            id: self.id,
            connections: self.connections.clone(),
        }
    }
}

impl Drop for ConnId {
    fn drop(&mut self) {
        self.connections.lock().open.remove(&self.id);
    }
}

/// What a connection's service keeps to mark its requests busy.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    id: u64,
    connections: Connections,
}

impl ConnHandle {
    /// A request's headers are complete: the connection is busy until the returned guard
    /// (moved into the answer's body with [`GuardedBody`]) is dropped.
    pub fn request_started(&self) -> Busy {
        if let Some(conn) = self.connections.lock().open.get_mut(&self.id) {
            conn.busy += 1;
        }
        Busy {
            id: self.id,
            connections: self.connections.clone(),
        }
    }
}

/// A request being answered; when dropped, the connection waits again from that moment.
#[derive(Debug)]
pub struct Busy {
    id: u64,
    connections: Connections,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(conn) = self.connections.lock().open.get_mut(&self.id) {
            conn.busy = conn.busy.saturating_sub(1);
            if conn.busy == 0 {
                conn.waiting_since = Instant::now();
            }
        }
    }
}

/// An answer's body that keeps its connection busy until it is finished or dropped.
#[derive(Debug)]
pub struct GuardedBody<B> {
    inner: B,
    _busy: Busy,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        GuardedBody { inner, _busy: busy }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for GuardedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_waiting_connection_is_displaced_and_a_busy_one_never() {
        let connections = Connections::default();
        let (first, first_close) = connections.open();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (second, second_close) = connections.open();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (third, third_close) = connections.open();
        // The first is answering a request: the second waited longest among the others.
        let busy = first.handle().request_started();
        assert!(connections.displace_longest_waiting());
        assert_eq!(
            (
                first_close.is_cancelled(),
                second_close.is_cancelled(),
                third_close.is_cancelled()
            ),
            (false, true, false)
        );
        // The answer is done: the first waits again, from now, so the third goes next.
        drop(busy);
        assert!(connections.displace_longest_waiting());
        assert!(third_close.is_cancelled() && !first_close.is_cancelled());
        drop(second);
        drop(third);
        assert_eq!(connections.len(), 1);
        // With only a busy connection left, nobody is displaced.
        let _busy = first.handle().request_started();
        assert!(!connections.displace_longest_waiting());
        drop(first);
        assert!(connections.is_empty());
    }
}
