//! The read-only HTTP API: `/status`, `/metrics`, `/node/management` and `/healthz`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::agent::{metrics, status, Handle};

/// Builds the API router over the agent's shared state.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route("/node/management", get(get_management))
        .route("/healthz", get(get_healthz))
        .with_state(handle)
}

/// Binds `listen` and serves the API until `shutdown` resolves.
pub async fn serve(
    listen: SocketAddr,
    handle: Handle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "failed to listen on {listen}: {error}; set api.listen to a free address"
            )
        })?;
    tracing::info!(address = %listener.local_addr()?, "HTTP API listening");
    axum::serve(listener, router(handle))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn get_status(State(handle): State<Handle>) -> Json<serde_json::Value> {
    let shared = handle.lock();
    Json(status::status_json(&shared))
}

async fn get_metrics(State(handle): State<Handle>) -> Response {
    let text = metrics::render(&handle.lock());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn get_management(State(handle): State<Handle>) -> Json<serde_json::Value> {
    let shared = handle.lock();
    Json(status::management_json(&shared))
}

async fn get_healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}
