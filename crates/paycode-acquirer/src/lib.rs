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

pub mod admin;
pub mod admin_money;
pub mod admin_risk;
pub mod agent;
pub mod api;
pub mod audit;
pub mod background;
pub mod config;
pub mod dashboard;
pub mod history;
pub mod registry;
pub mod risk;
pub mod risk_try;
pub mod service;
pub mod settlement;
pub mod store;
pub mod wallet_client;
pub mod wire;

pub use config::{AcquirerConfig, Limits};
pub use service::{Acquirer, ApiError, Clock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
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
        .route(
            paycode_proto::mpp::CUSTOMER_RISK_PATH,
            post(api::wallet_customer_risk),
        )
        .route("/admin/v1/payments/{id}", get(api::admin_payment))
        .route("/admin/v1/notifications", get(api::admin_notifications))
        .route(
            "/admin/v1/notifications/{id}/resend",
            post(api::admin_resend),
        )
        .route("/admin/v1/routes/lookup", get(api::admin_route_lookup))
        .route("/admin/v1/registry", get(admin::get_registry))
        .route(
            "/admin/v1/risk/rules",
            get(admin_risk::get_rules).post(admin_risk::put_rules),
        )
        .route("/admin/v1/risk/try", post(admin_risk::try_rules))
        .route(
            "/admin/v1/risk/blocked-customers",
            get(admin_risk::list_blocked).post(admin_risk::block),
        )
        .route(
            "/admin/v1/risk/blocked-customers/{wallet}/{customer}",
            delete(admin_risk::unblock),
        )
        .route("/admin/v1/risk/decisions", get(admin_risk::decisions))
        .route("/admin/v1/operator-log", get(admin::get_operator_log))
        .route(
            "/admin/v1/agent-tokens",
            get(admin::list_agent_tokens).post(admin::issue_agent_token),
        )
        .route(
            "/admin/v1/agent-tokens/{id}",
            delete(admin::revoke_agent_token),
        )
        .route("/admin/v1/clients", post(admin::put_client))
        .route("/admin/v1/clients/{id}/keys", post(admin::put_client_key))
        .route("/admin/v1/merchants", post(admin::put_merchant))
        .route(
            "/admin/v1/merchants/{client}/{merchant}/stores",
            post(admin::put_store),
        )
        .route("/admin/v1/wallets", post(admin::put_wallet))
        .route("/admin/v1/ledger/balances", get(api::admin_balances))
        .route("/admin/v1/settlement/batches", get(admin_money::batches))
        .route(
            "/admin/v1/settlement/batches/{id}/summary.csv",
            get(admin_money::batch_summary),
        )
        .route(
            "/admin/v1/settlement/batches/{id}/detail.csv",
            get(admin_money::batch_detail),
        )
        .route("/admin/v1/settlement/close", post(admin_money::close))
        .route("/admin/v1/clearing", get(admin_money::clearings))
        .route(
            "/admin/v1/clearing/{id}/report.csv",
            get(admin_money::clearing_report),
        )
        .route(
            "/admin/v1/rates",
            get(admin_money::rates).post(admin_money::set_rates),
        )
        .route("/admin/v1/rates/ecb", post(admin_money::import_ecb))
        .route("/admin/v1/audit", get(admin_money::audit))
        .route(
            "/admin/v1/dashboard-users",
            get(dashboard::users::list_users).post(dashboard::users::put_user),
        )
        .merge(dashboard::routes())
        .fallback(api::merchant_api)
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(acq)
}
