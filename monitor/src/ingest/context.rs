//! What a live source gets to work with: its status, the shutdown signal, and ingest's
//! door to the store (resume, commit, container events). A source never names the store.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Ingest;
use crate::model::{ContainerEvent, RestartObservation, UnixNanos};
use crate::parser::ParserConfig;
use crate::source::SourceStatus;
use crate::store::{Batch, Store, StoreError};

/// The source name the container events are recorded under.
const CONTAINER_EVENTS: &str = "docker-events";

/// One live source's context; see the module docs.
#[derive(Debug)]
pub struct SourceContext {
    store: Store,
    parser: ParserConfig,
    /// What the source is doing, for the status API and the live stream.
    pub status: watch::Sender<SourceStatus>,
    /// Cancelled when the source is to stop (it commits what it has first).
    pub shutdown: CancellationToken,
}

impl SourceContext {
    pub fn new(
        store: Store,
        parser: ParserConfig,
        status: watch::Sender<SourceStatus>,
        shutdown: CancellationToken,
    ) -> SourceContext {
        SourceContext {
            store,
            parser,
            status,
            shutdown,
        }
    }

    /// Starts ingesting `source`, resuming after its committed cursor (async sources).
    pub async fn ingest(&self, source: &str) -> Result<Ingest, StoreError> {
        let parser = self.parser;
        let name = source.to_owned();
        self.store
            .call(move |st| Ingest::resume(st, &name, parser))
            .await
            .inspect_err(|error| {
                tracing::error!(%error, source, "cannot read the source's cursor");
            })
    }

    /// As [`SourceContext::ingest`], for a source on a thread of its own.
    pub fn ingest_blocking(&self, source: &str) -> Result<Ingest, StoreError> {
        Ingest::resume(&self.store, source, self.parser).inspect_err(|error| {
            tracing::error!(%error, source, "cannot read the source's cursor");
        })
    }

    /// Records container state changes (each once per container, time and action).
    pub async fn record_events(&self, events: Vec<ContainerEvent>) {
        let batch = Batch {
            container_events: events,
            ..Batch::new(CONTAINER_EVENTS)
        };
        if let Err(error) = self.store.submit_async(batch).await {
            tracing::error!(%error, "cannot record container events");
        }
    }

    /// Waits until everything handed to the store so far is committed.
    pub async fn settled(&self) -> Result<(), StoreError> {
        self.store.call(Store::flush).await
    }

    /// The recorded container events from `since_ns` on (all containers).
    pub async fn events_since(
        &self,
        since_ns: UnixNanos,
    ) -> Result<Vec<ContainerEvent>, StoreError> {
        self.store
            .call(move |st| st.container_events(since_ns, i64::MAX))
            .await
    }

    /// What the last inspect of a container showed of its restarts, if it was seen.
    pub async fn restart_observation(
        &self,
        container_id: &str,
    ) -> Result<Option<RestartObservation>, StoreError> {
        let id = container_id.to_owned();
        self.store.call(move |st| st.restart_observation(&id)).await
    }

    /// Stores what an inspect of a container showed of its restarts.
    pub async fn observe_restarts(
        &self,
        container_id: &str,
        observation: RestartObservation,
    ) -> Result<(), StoreError> {
        let id = container_id.to_owned();
        self.store
            .call(move |st| st.observe_restarts(&id, observation))
            .await
    }

    /// The recorded container events of one container, oldest first.
    pub async fn events_of(&self, container_id: &str) -> Result<Vec<ContainerEvent>, StoreError> {
        let id = container_id.to_owned();
        self.store.call(move |st| st.container_events_of(&id)).await
    }
}
