//! Integration tests of the public API: golden bytes, signing round trips, the
//! privacy validator's must-reject and must-accept tables, sizes.

mod contract;
mod golden;
mod must_accept;
mod must_reject;
mod signing;
mod sizes;
mod support;
