//! The TrueBit federation aggregator: verified ingest of node window reports from NATS,
//! SQLite storage, k-anonymous network statistics signed with the aggregator's key,
//! and a read-only HTTP API and public network page. See ARCHITECTURE.md.
//!
//! Data path: [`nats`] (feed) -> [`ingest`] (verify) -> [`store`] (with [`gate`]) ->
//! [`stats`] -> [`publisher`] (sign, publish) and [`http`]. Uptime proofs: [`nats`]
//! (requests) -> [`proof`] (the node's windows from [`store`], signed, sealed) -> reply.

pub mod app;
pub mod certify;
pub mod config;
pub mod gate;
pub mod http;
pub mod ingest;
pub mod key;
pub mod metrics;
pub mod nats;
pub mod proof;
pub mod publisher;
pub mod stats;
pub mod store;

/// Wall-clock time (Unix seconds here); injected so tests control it.
pub use truebit_clock::Clock;
