//! The monitor's one integration test binary (see STYLE.md).

mod support;

mod docker;
mod file;
mod import;
mod parser;
mod store;
