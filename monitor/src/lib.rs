//! TrueBit node monitor: tails a `runner-node` container's logs, parses them into tasks,
//! executions and invoices, and keeps them in SQLite. See ARCHITECTURE.md.

pub mod model;
pub mod parser;
pub mod store;
