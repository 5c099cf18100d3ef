//! TrueBit node monitor: tails a `runner-node` container's logs, parses them into tasks,
//! executions and invoices, and keeps them in SQLite. See ARCHITECTURE.md.

pub mod alerts;
pub mod app;
pub mod config;
pub mod demo;
pub mod federation;
pub mod http;
pub mod ingest;
pub mod model;
pub mod parser;
pub mod setting;
pub mod source;
pub mod store;
