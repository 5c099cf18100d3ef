//! The aggregator's one integration test binary: real nats-server (core and
//! JetStream), real SQLite, the HTTP router in-process.

mod cluster;
mod feed;
mod http;
mod hub;
mod ingest;
mod jetstream;
mod proof;
mod store;
mod support;
