//! Alerts: telling the operator when the node needs them (docs/ALERTS.md).
//!
//! - [`rules`]: what each rule watches and the one state machine they share (pure);
//!   [`engine`]: the task that evaluates them (every second, on the source's status, on
//!   the store's feed of commits) and writes each state change together with its
//!   outbox rows, and the dead-man heartbeat; [`handle`]: the service as the monitor
//!   starts it, and the control the API, the pages and /metrics use.
//! - [`Notification`]: the one thing a rule produces (rule id, firing/resolved, since
//!   when, a short detail); [`message`] renders a group of them into one short text per
//!   channel (what, since when, what to check, a link to the dashboard).
//! - [`channel`]: the destinations (webhook with an optional HMAC signature, Telegram,
//!   Discord, Slack-compatible webhooks, ntfy, e-mail over SMTP), each with an
//!   overridable base URL, and [`config`] to define and validate them.
//! - [`outbox`]: notifications are queued in SQLite, one row per channel; each channel has
//!   its own task that groups what arrived within a few seconds into one message,
//!   retries with capped backoff, sends a summary instead of a flood after a long outage,
//!   and records its results for the dashboard and /metrics. A slow or dead channel
//!   delays no other channel and never touches ingest.
//! - [`cli`]: `truebit-monitor alert test CHANNEL`.

pub mod channel;
pub mod cli;
pub mod config;
pub mod engine;
pub mod handle;
pub mod message;
pub mod outbox;
pub mod rules;

pub use crate::model::alert::{AlertState, Notification, Rule};
pub use crate::store::alerts::Incident;
pub use channel::{Channel, Kind, SendError, Sender};
pub use config::{AlertConfig, AlertSettings, ChannelSpec, Delivery};
pub use handle::{AlertService, AlertsHandle};
pub use message::Message;
pub use outbox::{AlertError, Alerts, ChannelStats};
