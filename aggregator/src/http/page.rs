//! The public network page.

use axum::extract::State;
use axum::response::Html;

use super::AppState;

pub(super) async fn network_page(State(_state): State<AppState>) -> Html<&'static str> {
    Html("<!doctype html><title>TrueBit network</title><h1>TrueBit network</h1>")
}
