//! The acquirer service: the merchant payment API, code routing, the acquirer side of the MPP
//! protocol, the ledger postings, the notification outbox and the reconciler.
//!
//! - [`service`]: the use cases (pay, inquiry, cancel, refund, wallet notifications) on top of
//!   the core state machine.
//! - [`background`]: notifier and reconciler, driven from the store.
//! - [`api`]: the HTTP edge; [`wire`]: rows → wire responses; [`store`]: the SQL.
//! - [`registry`]: clients, merchants, wallets and routes as an in-memory snapshot.
//!
//! API boundary: [`router`] builds the whole HTTP surface from an [`Acquirer`]; tests drive it
//! over a real socket on port 0.

pub mod api;
pub mod background;
pub mod config;
pub mod registry;
pub mod service;
pub mod store;
pub mod wallet_client;
pub mod wire;

pub use config::{AcquirerConfig, Limits};
pub use service::{Acquirer, ApiError, Clock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// The acquirer's whole HTTP surface.
pub fn router(acq: Acquirer) -> Router {
    metrics_handle();
    let body_max = acq.config().limits.request_body_max_bytes;
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics_text))
        .route(paycode_proto::mpp::NOTIFY_PATH, post(api::wallet_notify))
        .route("/admin/v1/payments/{id}", get(api::admin_payment))
        .route("/admin/v1/notifications", get(api::admin_notifications))
        .route(
            "/admin/v1/notifications/{id}/resend",
            post(api::admin_resend),
        )
        .route("/admin/v1/routes/lookup", get(api::admin_route_lookup))
        .route("/admin/v1/ledger/balances", get(api::admin_balances))
        .fallback(api::merchant_api)
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(acq)
}
