//! Control: [`FederationHandle`], what the HTTP API and the dashboard call: settings,
//! status, and starting and stopping the session.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use tokio_util::sync::CancellationToken;
use truebit_protocol::proof::UptimeProof;
use truebit_protocol::report::{Continent, Level};
use truebit_protocol::window::window_of;

use super::anonymizer::Sharing;
use super::identity::Identity;
use super::nats::{Delivery, LinkState};
use super::proof::{self, ProofFetchError, ProofPeriod};
use super::session;
use super::shared::{Control, NetworkStatsSnapshot, Session, Shared};
use crate::store::federation::{ReasonCount, ReportRecord, StoredSettings};
use crate::store::{Store, StoreError};

/// Why a federation call failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error(
        "federation has no server configured: set FEDERATION_NATS_URL and restart the monitor"
    )]
    NotConfigured,
    #[error("cannot make the database private (chmod 600) before storing the federation key: {0}; check the file's owner")]
    Insecure(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("federation is stopped (the monitor is shutting down)")]
    Stopped,
}

/// The operator's choices, as the API shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationSettingsView {
    pub enabled: bool,
    /// `full` or `strict` (node status and window counts only).
    pub level: Level,
    /// Continent code sent with `full` reports; `null`: none.
    pub continent: Option<Continent>,
    /// `config` until the operator changes a setting, then `database`.
    pub source: SettingsSource,
}

/// Where the settings in effect come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingsSource {
    /// The configuration's initial defaults (FEDERATION_ENABLED, _LEVEL, _CONTINENT).
    Config,
    /// Stored by the operator through the API or the dashboard (wins from then on).
    Database,
}

/// A change of settings: absent fields stay as they are; `"continent": null` removes
/// the continent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default, deserialize_with = "present")]
    pub continent: Option<Option<Continent>>,
}

/// Maps a present field (even `null`) to `Some`, so `null` differs from absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Everything the dashboard shows about federation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FederationStatus {
    pub settings: FederationSettingsView,
    /// Whether a server is configured (FEDERATION_NATS_URL): without one federation
    /// cannot be enabled.
    pub configured: bool,
    /// Configured servers, without credentials.
    pub servers: Vec<String>,
    /// The node id on the wire (hex of the first 16 bytes of SHA-256(public key)).
    pub node_id: Option<String>,
    pub public_key: Option<String>,
    /// The pinned aggregator key(s), comma separated (FEDERATION_AGGREGATOR_KEY, or
    /// FEDERATION_AGGREGATOR_KEYS).
    pub aggregator_key: Option<String>,
    pub connection: LinkState,
    /// `jetstream` or `core` once the first report went out on this connection.
    pub delivery: Option<Delivery>,
    pub last_error: Option<String>,
    /// The next window to report (Unix seconds of its start).
    pub next_window: Option<u64>,
    pub last_sent_window: Option<u64>,
    pub last_sent_ms: Option<u64>,
    /// Reports waiting in the outbox.
    pub queued: u64,
    pub sent_total: u64,
    /// Reports the privacy validator stopped (a cover report went in their place).
    pub blocked_total: u64,
    /// Reports never sent: expired after 7 days in the outbox, or discarded on disable.
    pub dropped_total: u64,
    /// Blocked reports of the last 7 days by reason.
    pub blocked_reasons: Vec<ReasonCount>,
    pub stats_received: u64,
    pub stats_rejected: u64,
    pub last_stats_rejection: Option<String>,
}

impl Shared {
    /// The settings in effect: the stored ones, else the configuration's defaults.
    async fn effective(&self) -> Result<FederationSettingsView, FederationError> {
        let stored = self.store.call(Store::federation_settings).await?;
        Ok(match stored {
            Some(s) => FederationSettingsView {
                enabled: s.enabled,
                level: s.level,
                continent: s.continent,
                source: SettingsSource::Database,
            },
            None => FederationSettingsView {
                enabled: self.config.initial.enabled,
                level: self.config.initial.level,
                continent: self.config.initial.continent,
                source: SettingsSource::Config,
            },
        })
    }

    fn set_sharing(&self, s: &FederationSettingsView) {
        self.share(Sharing {
            level: s.level,
            continent: s.continent,
        });
    }

    /// Applies the settings in effect at start-up.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<(), FederationError> {
        let mut control = self.control.lock().await;
        let settings = self.effective().await?;
        self.set_sharing(&settings);
        let now_ms = self.clock.now_ms();
        if self.store.call(Store::federation_identity).await?.is_some() {
            self.store
                .federation_protect_files()
                .map_err(FederationError::Insecure)?;
        }
        if settings.enabled && self.config.is_configured() {
            let start = window_of(now_ms / 1000).as_secs();
            self.store
                .call(move |s| s.federation_schedule(true, Some(start)))
                .await?;
            self.start_session(&mut control).await?;
        } else {
            if settings.enabled {
                tracing::warn!(
                    "federation is enabled but FEDERATION_NATS_URL is not set: nothing is sent"
                );
                self.runtime().last_error = Some(FederationError::NotConfigured.to_string());
            }
            let state = self.store.call(Store::federation_state).await?;
            if state.next_window.is_some() || state.outbox_len > 0 {
                self.store
                    .call(move |s| s.federation_schedule(false, None))
                    .await?;
            }
        }
        Ok(())
    }

    async fn start_session(self: &Arc<Self>, control: &mut Control) -> Result<(), FederationError> {
        if control.session.is_some() {
            return Ok(());
        }
        let fresh = Identity::generate().to_row();
        let identity = self
            .store
            .call(move |s| s.federation_ensure_identity(fresh))
            .await
            .map(Identity::from_row)?;
        self.store
            .federation_protect_files()
            .map_err(FederationError::Insecure)?;
        tracing::info!(node.id = %identity.node_id(), "federation: on");
        let cancel = CancellationToken::new();
        let started_ms = self.clock.now_ms();
        let task = tokio::spawn(session::run(
            Arc::clone(self),
            identity,
            started_ms,
            cancel.clone(),
        ));
        control.session = Some(Session { cancel, task });
        Ok(())
    }

    async fn stop_session(&self, control: &mut Control) {
        if let Some(session) = control.session.take() {
            session.cancel.cancel();
            if let Err(error) = session.task.await {
                tracing::error!(%error, "federation session ended badly");
            }
            tracing::info!("federation: off");
        }
    }

    async fn apply(self: &Arc<Self>, update: SettingsUpdate) -> Result<(), FederationError> {
        let mut control = self.control.lock().await;
        if control.stopped {
            return Err(FederationError::Stopped);
        }
        let current = self.effective().await?;
        let next = StoredSettings {
            enabled: update.enabled.unwrap_or(current.enabled),
            level: update.level.unwrap_or(current.level),
            continent: update.continent.unwrap_or(current.continent),
        };
        if next.enabled && !self.config.is_configured() {
            return Err(FederationError::NotConfigured);
        }
        if !next.enabled {
            // Stop first, so nothing is queued or sent after the operator said stop.
            self.stop_session(&mut control).await;
        }
        let now_ms = self.clock.now_ms();
        let start = window_of(now_ms / 1000).as_secs();
        self.store
            .call(move |s| s.federation_save_settings(next, Some(start), now_ms))
            .await?;
        self.set_sharing(&FederationSettingsView {
            enabled: next.enabled,
            level: next.level,
            continent: next.continent,
            source: SettingsSource::Database,
        });
        if next.enabled {
            self.runtime().last_error = None;
            self.start_session(&mut control).await?;
        }
        Ok(())
    }

    /// Stops the session for good (shutdown).
    pub(crate) async fn shutdown(&self) {
        let mut control = self.control.lock().await;
        control.stopped = true;
        self.stop_session(&mut control).await;
    }

    async fn status(&self) -> Result<FederationStatus, FederationError> {
        let settings = self.effective().await?;
        let state = self.store.call(Store::federation_state).await?;
        let identity = self
            .store
            .call(Store::federation_identity)
            .await?
            .map(Identity::from_row);
        let blocked_reasons = self.store.call(Store::federation_blocked_reasons).await?;
        let runtime = self.runtime();
        let (connection, link_error) = match &runtime.link {
            None => (LinkState::Off, None),
            Some(link) => {
                let link = link.borrow();
                (link.state, link.last_error.clone())
            }
        };
        Ok(FederationStatus {
            settings,
            configured: self.config.is_configured(),
            servers: self.config.servers.iter().map(|s| s.redacted()).collect(),
            node_id: identity.as_ref().map(|i| i.node_id().to_string()),
            public_key: identity.as_ref().map(|i| i.public_key().to_string()),
            aggregator_key: self.config.aggregator_keys.as_ref().map(|k| {
                k.keys()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            connection,
            delivery: runtime.delivery,
            last_error: runtime.last_error.clone().or(link_error),
            next_window: state.next_window,
            last_sent_window: state.last_sent_window,
            last_sent_ms: state
                .last_sent_ns
                .and_then(|ns| u64::try_from(ns / 1_000_000).ok()),
            queued: state.outbox_len,
            sent_total: state.sent_total,
            blocked_total: state.blocked_total,
            dropped_total: state.dropped_total,
            blocked_reasons,
            stats_received: runtime.stats_received,
            stats_rejected: runtime.stats_rejected,
            last_stats_rejection: runtime.last_stats_rejection.clone(),
        })
    }
}

/// The federation controls, for the HTTP API and the dashboard. Cheap to clone.
///
/// Every call is safe to make concurrently; changes are serialized. Settings changed
/// here are stored in the database and win over the configuration's initial defaults
/// from then on.
#[derive(Clone)]
pub struct FederationHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for FederationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationHandle").finish_non_exhaustive()
    }
}

impl FederationHandle {
    /// Connection, counters, identity (public parts only) and settings.
    pub async fn status(&self) -> Result<FederationStatus, FederationError> {
        self.shared.status().await
    }

    /// The settings in effect.
    pub async fn settings(&self) -> Result<FederationSettingsView, FederationError> {
        self.shared.effective().await
    }

    /// Changes settings (absent fields unchanged) and returns the new ones. Turning
    /// federation on creates the identity on first use and connects; turning it off
    /// closes the connection and discards reports not yet sent.
    pub async fn put_settings(
        &self,
        update: SettingsUpdate,
    ) -> Result<FederationSettingsView, FederationError> {
        self.shared.apply(update).await?;
        self.shared.effective().await
    }

    /// Turns federation on (see [`FederationHandle::put_settings`]).
    pub async fn enable(&self) -> Result<FederationStatus, FederationError> {
        self.shared
            .apply(SettingsUpdate {
                enabled: Some(true),
                ..SettingsUpdate::default()
            })
            .await?;
        self.shared.status().await
    }

    /// Turns federation off: the connection is closed before this returns.
    pub async fn disable(&self) -> Result<FederationStatus, FederationError> {
        self.shared
            .apply(SettingsUpdate {
                enabled: Some(false),
                ..SettingsUpdate::default()
            })
            .await?;
        self.shared.status().await
    }

    /// The transparency log, newest first: the exact bytes of every report queued, sent,
    /// blocked or dropped in the last 7 days.
    pub async fn reports(&self, limit: usize) -> Result<Vec<ReportRecord>, FederationError> {
        Ok(self
            .shared
            .store
            .call(move |s| s.federation_reports(limit))
            .await?)
    }

    /// The newest network statistics that verified against the pinned aggregator key.
    pub async fn network_stats(&self) -> Option<NetworkStatsSnapshot> {
        self.shared.latest_stats().clone()
    }

    /// This node's uptime proof from the hub over the UTC days `from` to `to`
    /// (`YYYY-MM-DD`, inclusive, defaults: the last 29 whole days), verified against
    /// the pinned keys ([`super::proof`]): federation must be configured, on, with
    /// keys pinned.
    pub async fn uptime_proof(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(ProofPeriod, UptimeProof), ProofFetchError> {
        let shared = &self.shared;
        proof::fetch_for_operator(
            &shared.store,
            &shared.config,
            (from, to),
            &shared.clock,
            proof::DEFAULT_PROOF_WAIT,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_update_tells_null_from_absent() {
        let u: SettingsUpdate = serde_json::from_str(r#"{"level":"strict"}"#).expect("parse");
        assert_eq!(u.level, Some(Level::Strict));
        assert_eq!(u.continent, None);
        assert_eq!(u.enabled, None);
        let u: SettingsUpdate = serde_json::from_str(r#"{"continent":null}"#).expect("parse");
        assert_eq!(u.continent, Some(None));
        let u: SettingsUpdate =
            serde_json::from_str(r#"{"enabled":true,"continent":"EU"}"#).expect("parse");
        assert_eq!(u.continent, Some(Some(Continent::Europe)));
        assert!(serde_json::from_str::<SettingsUpdate>(r#"{"continent":"DE"}"#).is_err());
        assert!(serde_json::from_str::<SettingsUpdate>(r#"{"wallet":"x"}"#).is_err());
    }
}
