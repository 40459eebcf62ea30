//! The customer API the phone app calls (contract in `paycode_proto::customer`): register and
//! rotate a device, list pending challenges, confirm with the password or decline, balance and
//! history. Plain JSON; a device authenticates with `Authorization: Bearer <deviceToken>`.
//!
//! Passwords are checked with Argon2 on the blocking pool *before* the database job; the job then
//! applies the outcome (count a wrong attempt, lock, or pay) after re-reading the challenge, so a
//! concurrent cancel or expiry still wins or loses atomically.

use crate::challenges::{self, ChallengeAnswer};
use crate::devices::{self, DeviceCredentials, RegisterOutcome};
use crate::payment_state::PayState;
use crate::payments::PaymentRow;
use crate::users;
use crate::{Inner, WalletError, iso_ms};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paycode_core::ResultCode;
use paycode_proto::customer::{
    Balance, Challenge, ChallengeList, ChallengeOutcome, ConfirmRequest, DeviceMaterial, History,
    HistoryItem, RegisterDeviceRequest,
};
use paycode_proto::{Amount, ResultInfo};
use serde::Serialize;
use std::sync::Arc;

type St = State<Arc<Inner>>;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/customer/v1/devices/register", post(register))
        .route("/customer/v1/devices/rotate", post(rotate))
        .route("/customer/v1/challenges", get(challenges))
        .route(
            "/customer/v1/challenges/{challenge_id}/confirm",
            post(confirm),
        )
        .route(
            "/customer/v1/challenges/{challenge_id}/decline",
            post(decline),
        )
        .route("/customer/v1/balance", get(balance))
        .route("/customer/v1/history", get(history))
}

fn fail(code: ResultCode, message: impl Into<String>) -> ResultInfo {
    ResultInfo::new(code.as_str(), code.status().as_str(), message)
}

#[derive(Serialize)]
struct ResultOnly {
    result: ResultInfo,
}

fn reply<T: Serialize>(body: T) -> Response {
    Json(body).into_response()
}

fn reply_fail(result: ResultInfo) -> Response {
    reply(ResultOnly { result })
}

fn internal(e: &WalletError) -> Response {
    tracing::error!(error = %e, "customer request failed inside the wallet");
    reply_fail(fail(
        ResultCode::UNKNOWN_EXCEPTION,
        "internal error; try again",
    ))
}

/// The `(device_id, user_name)` of the bearer token, or the answer to give.
async fn authenticate(
    inner: &Arc<Inner>,
    headers: &HeaderMap,
) -> Result<(String, String), Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(reply_fail(fail(
            ResultCode::ACCESS_DENIED,
            "missing device token; register the device",
        )));
    };
    match devices::device_by_token(inner, token).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(reply_fail(fail(
            ResultCode::ACCESS_DENIED,
            "unknown device token; register the device again",
        ))),
        Err(e) => Err(internal(&e)),
    }
}

pub(crate) fn material(inner: &Inner, user: &str, creds: &DeviceCredentials) -> DeviceMaterial {
    DeviceMaterial {
        result: ResultInfo::success(),
        device_id: Some(creds.device_id.clone()),
        device_token: Some(creds.token.clone()),
        code_secret: Some(creds.secret_b64()),
        slot: Some(creds.slot.clone()),
        cii: Some(inner.config.cii.clone()),
        code_step_s: Some(inner.config.code_step_s),
        code_validity_s: Some(inner.config.code_validity_s),
        user_name: Some(user.to_string()),
        currency: Some(inner.config.currency.code().to_string()),
    }
}

fn locked_result() -> ResultInfo {
    fail(
        ResultCode::USER_PAYMENT_VERIFICATION_FAILED,
        "the payment password is locked after too many wrong attempts; ask the wallet to unlock it",
    )
}

async fn register(State(inner): St, body: Bytes) -> Response {
    let req: RegisterDeviceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply_fail(fail(
                ResultCode::PARAM_ILLEGAL,
                format!("body: {}", paycode_http::brief(&e.to_string())),
            ));
        }
    };
    let auth = match users::user_auth(&inner, &req.user_name).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return reply_fail(fail(
                ResultCode::USER_NOT_EXIST,
                "no such user at this wallet",
            ));
        }
        Err(e) => return internal(&e),
    };
    if auth.locked {
        return reply_fail(locked_result());
    }
    let ok = crate::password::verify_async(req.password.clone(), auth.password_hash).await;
    match devices::register_device(&inner, req.user_name.clone(), req.device_name.clone(), ok).await
    {
        Ok(RegisterOutcome::Registered(creds)) => {
            tracing::info!(wallet = %inner.config.name, device_id = %creds.device_id, "device registered");
            reply(material(&inner, &req.user_name, &creds))
        }
        Ok(RegisterOutcome::WrongPassword { remaining }) => reply_fail(fail(
            ResultCode::USER_PAYMENT_VERIFICATION_FAILED,
            format!("wrong password; {remaining} attempts left"),
        )),
        Ok(RegisterOutcome::Locked) => reply_fail(locked_result()),
        Err(e) => internal(&e),
    }
}

async fn rotate(State(inner): St, headers: HeaderMap) -> Response {
    let (device_id, user) = match authenticate(&inner, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match devices::rotate_device(&inner, device_id).await {
        Ok(creds) => reply(material(&inner, &user, &creds)),
        Err(e) => internal(&e),
    }
}

fn challenge_of(p: &PaymentRow) -> Challenge {
    Challenge {
        challenge_id: p.payment_id.clone(),
        payment_request_id: p.payment_request_id.clone(),
        merchant_name: p.merchant_name.clone(),
        store_name: p.store_name.clone(),
        payment_amount: Amount::new(&p.payment_currency, p.payment_amount_minor),
        pay_to_amount: p.pay_to_amount(),
        quote_price: p.quote_price.clone(),
        create_time: iso_ms(p.created_at_ms),
        expiry_time: iso_ms(p.deadline_ms.unwrap_or(p.created_at_ms)),
        reason: p.challenge_reason.clone().unwrap_or_default(),
    }
}

async fn challenges(State(inner): St, headers: HeaderMap) -> Response {
    let (_, user) = match authenticate(&inner, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match challenges::pending_challenges(&inner, user).await {
        Ok(rows) => reply(ChallengeList {
            result: ResultInfo::success(),
            challenges: rows.iter().map(challenge_of).collect(),
        }),
        Err(e) => internal(&e),
    }
}

fn outcome(a: ChallengeAnswer) -> Response {
    reply(ChallengeOutcome {
        result: a.result,
        payment_status: a.payment_status.map(str::to_string),
        remaining_attempts: a.remaining_attempts,
    })
}

async fn confirm(
    State(inner): St,
    Path(challenge_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, user) = match authenticate(&inner, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: ConfirmRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply_fail(fail(
                ResultCode::PARAM_ILLEGAL,
                format!("body: {}", paycode_http::brief(&e.to_string())),
            ));
        }
    };
    let auth = match users::user_auth(&inner, &user).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return reply_fail(fail(
                ResultCode::USER_NOT_EXIST,
                "no such user at this wallet",
            ));
        }
        Err(e) => return internal(&e),
    };
    // A locked user's password is not even checked; the job fails the challenge.
    let ok = !auth.locked && crate::password::verify_async(req.password, auth.password_hash).await;
    match challenges::confirm(&inner, user, challenge_id, ok).await {
        Ok(a) => outcome(a),
        Err(e) => internal(&e),
    }
}

async fn decline(
    State(inner): St,
    Path(challenge_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, user) = match authenticate(&inner, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match challenges::decline(&inner, user, challenge_id).await {
        Ok(a) => outcome(a),
        Err(e) => internal(&e),
    }
}

async fn balance(State(inner): St, headers: HeaderMap) -> Response {
    let (_, user) = match authenticate(&inner, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match users::balance_view(&inner, user).await {
        Ok(b) => {
            let status = if b.frozen {
                "FROZEN"
            } else if b.locked {
                "PASSWORD_LOCKED"
            } else {
                "ACTIVE"
            };
            reply(Balance {
                result: ResultInfo::success(),
                balance: Some(Amount::new(inner.config.currency.code(), b.balance_minor)),
                user_status: Some(status.to_string()),
            })
        }
        Err(e) => internal(&e),
    }
}

async fn history(State(inner): St, headers: HeaderMap) -> Response {
    let (_, user) = match authenticate(&inner, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let currency = inner.config.currency.code();
    match users::history(&inner, user, 100).await {
        Ok(rows) => reply(History {
            result: ResultInfo::success(),
            items: rows
                .into_iter()
                .map(|h| HistoryItem {
                    kind: h.kind.as_str().to_string(),
                    amount: Amount::new(currency, h.amount_minor),
                    status: history_status(h.state).to_string(),
                    merchant_name: h.merchant_name.filter(|m| !m.is_empty()),
                    payment_request_id: h.payment_request_id,
                    time: iso_ms(h.at_ms),
                })
                .collect(),
        }),
        Err(e) => internal(&e),
    }
}

/// A history item's `status`: the payment's state as the phone shows it.
fn history_status(state: PayState) -> &'static str {
    match state {
        PayState::Processing => "PROCESSING",
        PayState::Success => "SUCCESS",
        PayState::Fail => "FAIL",
        PayState::Tombstone => "CANCELLED",
    }
}
