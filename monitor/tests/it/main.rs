//! The monitor's one integration test binary (see CONTRIBUTING.md).

mod support;

mod alerts;
mod browser;
mod deploy;
mod docker;
mod docs;
mod export;
mod federation;
mod file;
mod http;
mod import;
mod layers;
mod pages;
mod parser;
mod proof;
mod store;
