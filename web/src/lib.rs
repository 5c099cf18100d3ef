//! What the monitor's dashboard and the aggregator's public network page show: askama
//! templates (`web/templates/`), the view models they render (`page`), server-rendered
//! SVG charts (`chart`), display formatting (`format`) and the static assets
//! (`asset`: CSS, the small live-page scripts, the icon).
//!
//! Nothing here does I/O or knows where the figures come from: each binary builds the
//! view models from its own store and hands them to the templates. Pages work without
//! JavaScript; scripts are separate files (the CSP forbids inline script and style).

pub mod asset;
pub mod chart;
pub mod format;
pub mod network;
pub mod page;

pub use askama::Template;
