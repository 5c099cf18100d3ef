//! The monitor's one integration test binary (see STYLE.md).

mod support;

mod browser;
mod deploy;
mod docker;
mod federation;
mod file;
mod http;
mod import;
mod pages;
mod parser;
mod store;
