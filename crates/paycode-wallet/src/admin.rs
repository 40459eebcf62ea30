//! The operator API (`/admin/v1/…`) and `/healthz`. Unsigned: it is meant to be reachable only
//! on the wallet's own port, by its operator (demo seeding, top-ups, freezing a user).

use crate::devices;
use crate::users::{self, UserFlag};
use crate::{Inner, NewUser, WalletError};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paycode_core::ResultCode;
use paycode_proto::{Amount, ResultInfo};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type St = State<Arc<Inner>>;

pub(crate) fn routes(inner: Arc<Inner>) -> Router<Arc<Inner>> {
    let operator = Router::new()
        .route("/admin/v1/users", post(create_user))
        .route("/admin/v1/users/{name}", get(user))
        .route("/admin/v1/users/{name}/topup", post(top_up))
        .route("/admin/v1/users/{name}/freeze", post(freeze))
        .route("/admin/v1/users/{name}/unfreeze", post(unfreeze))
        .route("/admin/v1/users/{name}/unlock", post(unlock))
        .route("/admin/v1/users/{name}/devices", post(provision))
        .route_layer(axum::middleware::from_fn_with_state(inner, operator_only));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(operator)
}

/// Lets a request through only with the configured bearer token (constant-time comparison).
async fn operator_only(
    State(inner): St,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = inner.config.admin_token.as_deref() else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "the operator API is disabled",
        )
            .into_response();
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        aws_lc_rs::constant_time::verify_slices_are_equal(g.as_bytes(), token.as_bytes()).is_ok()
    });
    if !ok {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            "operator token missing or wrong",
        )
            .into_response();
    }
    next.run(req).await
}

/// Most devices provisioned by one request.
const PROVISION_MAX: usize = 100_000;

#[derive(Deserialize)]
struct Provision {
    count: usize,
}

/// Provisions devices without a password (operator only): `{"count": N}` → `{"devices": [DeviceMaterial…]}`.
async fn provision(State(inner): St, Path(name): Path<String>, body: Bytes) -> Response {
    let p: Provision = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return param_illegal(format!("body: {}", paycode_http::brief(&e.to_string()))),
    };
    if p.count == 0 || p.count > PROVISION_MAX {
        return param_illegal(format!("count must be between 1 and {PROVISION_MAX}"));
    }
    match devices::provision_devices(&inner, name.clone(), p.count).await {
        Ok(creds) => Json(serde_json::json!({
            "result": ResultInfo::success(),
            "devices": creds.iter().map(|c| crate::customer::material(&inner, &name, c)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => failed(&e),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdminAnswer {
    result: ResultInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<Amount>,
}

fn ok(balance: Option<Amount>) -> Response {
    Json(AdminAnswer {
        result: ResultInfo::success(),
        balance,
    })
    .into_response()
}

fn failed(e: &WalletError) -> Response {
    let (code, msg) = match e {
        WalletError::UnknownUser(_) => (ResultCode::USER_NOT_EXIST, e.to_string()),
        WalletError::InvalidUser(_) => (ResultCode::PARAM_ILLEGAL, e.to_string()),
        _ => {
            tracing::error!(error = %e, "admin request failed");
            (ResultCode::PROCESS_FAIL, "internal error".to_string())
        }
    };
    Json(AdminAnswer {
        result: ResultInfo::new(code.as_str(), code.status().as_str(), msg),
        balance: None,
    })
    .into_response()
}

fn param_illegal(msg: String) -> Response {
    let c = ResultCode::PARAM_ILLEGAL;
    Json(AdminAnswer {
        result: ResultInfo::new(c.as_str(), "F", msg),
        balance: None,
    })
    .into_response()
}

async fn healthz(State(inner): St) -> Response {
    Json(
        serde_json::json!({ "status": "ok", "wallet": inner.config.name, "cii": inner.config.cii }),
    )
    .into_response()
}

async fn create_user(State(inner): St, body: Bytes) -> Response {
    let u: NewUser = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return param_illegal(format!("body: {}", paycode_http::brief(&e.to_string()))),
    };
    let name = u.name.clone();
    match users::create_user(&inner, u).await {
        Ok(()) => match users::balance_of(&inner, &name).await {
            Ok(b) => ok(Some(Amount::new(inner.config.currency.code(), b))),
            Err(e) => failed(&e),
        },
        Err(e) => failed(&e),
    }
}

async fn user(State(inner): St, Path(name): Path<String>) -> Response {
    match users::balance_of(&inner, &name).await {
        Ok(b) => ok(Some(Amount::new(inner.config.currency.code(), b))),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopUp {
    amount_minor: i64,
}

async fn top_up(State(inner): St, Path(name): Path<String>, body: Bytes) -> Response {
    let t: TopUp = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return param_illegal(format!("body: {}", paycode_http::brief(&e.to_string()))),
    };
    match users::top_up(&inner, &name, t.amount_minor).await {
        Ok(b) => ok(Some(Amount::new(inner.config.currency.code(), b))),
        Err(e) => failed(&e),
    }
}

async fn set(inner: &Arc<Inner>, name: &str, flag: UserFlag) -> Response {
    match users::set_flag(inner, name, flag).await {
        Ok(()) => ok(None),
        Err(e) => failed(&e),
    }
}

async fn freeze(State(inner): St, Path(name): Path<String>) -> Response {
    set(&inner, &name, UserFlag::Frozen(true)).await
}

async fn unfreeze(State(inner): St, Path(name): Path<String>) -> Response {
    set(&inner, &name, UserFlag::Frozen(false)).await
}

async fn unlock(State(inner): St, Path(name): Path<String>) -> Response {
    set(&inner, &name, UserFlag::Unlock).await
}
