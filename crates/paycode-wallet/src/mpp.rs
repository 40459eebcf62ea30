//! The MPP API the acquirer calls (SPEC §5, contract in `paycode_proto::mpp`): `pay`,
//! `inquiryPayment`, `cancelPayment`, `refund`.
//!
//! Every request is verified before anything else (the `Client-Id` must be the acquirer's, the
//! signature must match its key over the raw path and body, and its `Request-Time` must be
//! within the configured window of the wallet's clock); every answer, failures included, is
//! HTTP 200 with a `result` and is signed. This module only converts wire types to validated
//! inputs and outcomes back to wire types; the decisions live in `payments`, `payment_state` and `policy`.

use crate::code_check::CodeSource;
use crate::payment_state::PayState;
use crate::payments::{self, PayOutcome, PaymentRow};
use crate::{Inner, WalletError, iso_ms};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use paycode_core::{Currency, Money, ResultCode};
use paycode_http::{RequestRejection, SignedRequest, signed_response};
use paycode_proto::ResultInfo;
use paycode_proto::mpp::{
    CANCEL_PATH, CancelResponse, INQUIRY_PATH, InquiryResponse, PAY_PATH, PayRequest, PayResponse,
    PaymentRef, REFUND_PATH, RefundRequest, RefundResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

type St = State<Arc<Inner>>;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(PAY_PATH, post(pay))
        .route(INQUIRY_PATH, post(inquiry))
        .route(CANCEL_PATH, post(cancel))
        .route(REFUND_PATH, post(refund))
}

fn fail(code: ResultCode, message: impl Into<String>) -> ResultInfo {
    ResultInfo::new(code.as_str(), code.status().as_str(), message)
}

#[derive(Serialize)]
struct ResultOnly {
    result: ResultInfo,
}

async fn answer<T: Serialize>(inner: &Inner, req: &SignedRequest, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode an MPP answer");
        br#"{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultStatus":"U","resultMessage":"cannot encode the answer"}}"#.to_vec()
    });
    let client_id = req.client_id.clone().unwrap_or_default();
    signed_response(&inner.config.signer, &req.path, &client_id, bytes).await
}

/// The request, or the signed `PARAM_ILLEGAL` answering one whose headers or body could not be
/// read (the acquirer treats any unsigned or non-200 answer as an unknown outcome).
async fn readable(
    inner: &Inner,
    req: Result<SignedRequest, RequestRejection>,
) -> Result<SignedRequest, Response> {
    let rej = match req {
        Ok(req) => return Ok(req),
        Err(rej) => rej,
    };
    let message = format!(
        "{}: {}",
        rej.field(),
        rej.describe(inner.config.max_body_bytes)
    );
    let body = serde_json::to_vec(&ResultOnly {
        result: fail(ResultCode::PARAM_ILLEGAL, message),
    })
    .expect("a result always serializes");
    let client_id = rej.client_id.unwrap_or_default();
    Err(signed_response(&inner.config.signer, &rej.path, &client_id, body).await)
}

/// Verifies the caller and parses the body; `Err` is the result to answer with.
fn verify_and_parse<T: DeserializeOwned>(
    inner: &Inner,
    req: &SignedRequest,
) -> Result<T, ResultInfo> {
    if req.client_id.as_deref() != Some(inner.config.acquirer_client_id.as_str()) {
        return Err(fail(ResultCode::CLIENT_INVALID, "unknown Client-Id"));
    }
    let header = req
        .signature_header()
        .map_err(|e| fail(ResultCode::SIGNATURE_INVALID, e.to_string()))?;
    req.verify(&header, &inner.config.acquirer_public_key)
        .map_err(|e| fail(ResultCode::SIGNATURE_INVALID, e.to_string()))?;
    // After the signature: only a signed time says when the acquirer sent it (see
    // `paycode_http::request_time`). Nothing has been read or written yet.
    paycode_http::check_request_time(
        req.request_time.as_deref(),
        inner.now_ms(),
        inner.config.request_time_window_s,
    )
    .map_err(|e| {
        tracing::warn!(wallet = %inner.config.name, path = %req.path, error = %e, "acquirer request refused");
        fail(ResultCode::PARAM_ILLEGAL, e.to_string())
    })?;
    serde_json::from_slice(&req.body).map_err(|e| {
        fail(
            ResultCode::PARAM_ILLEGAL,
            format!("body: {}", paycode_http::brief(&e.to_string())),
        )
    })
}

fn internal(e: &WalletError) -> ResultInfo {
    tracing::error!(error = %e, "MPP request failed inside the wallet");
    fail(
        ResultCode::UNKNOWN_EXCEPTION,
        "internal error; inquire or retry with the same parameters",
    )
}

/// Any path the wallet does not serve.
pub(crate) async fn invalid_api(
    State(inner): St,
    req: Result<SignedRequest, RequestRejection>,
) -> Response {
    let req = match readable(&inner, req).await {
        Ok(req) => req,
        Err(answer) => return answer,
    };
    let body = ResultOnly {
        result: fail(
            ResultCode::INVALID_API,
            format!("no API at {}", req.path.split('?').next().unwrap_or("")),
        ),
    };
    answer(&inner, &req, &body).await
}

/// Decodes and validates the body of an MPP request to `op` (`pay`, `inquiryPayment`, `cancel`,
/// `refund`) exactly as the handlers do once the signature and time have been checked, without
/// touching the store: the entry point of the decoder fuzz target and of protocol checks.
pub fn decode_request(op: &str, acquirer: &str, body: &[u8]) -> Result<(), ResultInfo> {
    fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ResultInfo> {
        serde_json::from_slice(body).map_err(|e| {
            fail(
                ResultCode::PARAM_ILLEGAL,
                format!("body: {}", paycode_http::brief(&e.to_string())),
            )
        })
    }
    match op {
        "pay" => pay_input(&parse::<PayRequest>(body)?, acquirer).map(drop),
        "inquiryPayment" | "cancel" => request_id(
            "paymentRequestId",
            &parse::<PaymentRef>(body)?.payment_request_id,
        ),
        "refund" => refund_input(&parse::<RefundRequest>(body)?).map(drop),
        other => Err(fail(ResultCode::INVALID_API, format!("no API {other}"))),
    }
}

fn request_id(field: &str, value: &str) -> Result<(), ResultInfo> {
    if value.is_empty() || value.len() > 64 {
        return Err(fail(
            ResultCode::PARAM_ILLEGAL,
            format!("{field} must be 1 to 64 characters"),
        ));
    }
    Ok(())
}

fn money(field: &str, a: &paycode_proto::Amount) -> Result<Money, ResultInfo> {
    let currency = Currency::parse(&a.currency)
        .map_err(|e| fail(ResultCode::PARAM_ILLEGAL, format!("{field}.currency: {e}")))?;
    let m = Money::from_minor_str(&a.value, currency)
        .map_err(|e| fail(ResultCode::PARAM_ILLEGAL, format!("{field}.value: {e}")))?;
    if !m.is_positive() {
        return Err(fail(
            ResultCode::PARAM_ILLEGAL,
            format!("{field}.value must be positive"),
        ));
    }
    Ok(m)
}

fn pay_input(r: &PayRequest, acquirer: &str) -> Result<payments::PayInput, ResultInfo> {
    request_id("paymentRequestId", &r.payment_request_id)?;
    let pay_to = money("payToAmount", &r.pay_to_amount)?;
    let amount = money("paymentAmount", &r.payment_amount)?;
    let expiry = chrono::DateTime::parse_from_rfc3339(&r.payment_expiry_time)
        .map_err(|e| fail(ResultCode::PARAM_ILLEGAL, format!("paymentExpiryTime: {e}")))?;
    let code = r.payment_method.payment_method_id.clone();
    let merchant = &r.order.merchant;
    let store = merchant.store.as_ref();
    let store_name = store.and_then(|s| s.store_name.clone());
    let merchant_name = merchant
        .merchant_name
        .clone()
        .or_else(|| store_name.clone())
        .unwrap_or_else(|| merchant.reference_merchant_id.clone());
    let key = format!(
        "v1|{}|{}|{}|{}|{}",
        pay_to.currency(),
        pay_to.amount_minor(),
        amount.currency(),
        amount.amount_minor(),
        code
    );
    Ok(payments::PayInput {
        prid: r.payment_request_id.clone(),
        key_hash: crate::random::sha256_hex(key.as_bytes()),
        code,
        amount_minor: pay_to.amount_minor(),
        currency: pay_to.currency().code().to_string(),
        payment_amount_minor: amount.amount_minor(),
        payment_currency: amount.currency().code().to_string(),
        quote_price: r.payment_quote.as_ref().map(|q| q.quote_price.clone()),
        merchant_name,
        store_name,
        expiry_ms: expiry.timestamp_millis(),
        notify_url: r.payment_notify_url.clone().filter(|u| !u.is_empty()),
        verification_required: r
            .payment_factor
            .as_ref()
            .and_then(|f| f.user_verification_required)
            .unwrap_or(false),
        source: CodeSource {
            acquirer: acquirer.to_string(),
            merchant: merchant.reference_merchant_id.clone(),
            terminal: r
                .order
                .env
                .as_ref()
                .and_then(|e| e.store_terminal_id.clone())
                .filter(|t| !t.is_empty()),
        },
    })
}

fn pay_response(p: &PaymentRow) -> PayResponse {
    if p.state == PayState::Tombstone {
        return only(p.result());
    }
    PayResponse {
        result: p.result(),
        payment_id: Some(p.payment_id.clone()),
        payment_time: p.paid_at_ms.map(iso_ms),
        pay_to_amount: Some(p.pay_to_amount()),
        customer_id: p.customer_id.clone(),
    }
}

fn only(result: ResultInfo) -> PayResponse {
    PayResponse {
        result,
        payment_id: None,
        payment_time: None,
        pay_to_amount: None,
        customer_id: None,
    }
}

async fn pay(State(inner): St, req: Result<SignedRequest, RequestRejection>) -> Response {
    let req = match readable(&inner, req).await {
        Ok(req) => req,
        Err(answer) => return answer,
    };
    let body = match verify_and_parse::<PayRequest>(&inner, &req)
        .and_then(|r| pay_input(&r, req.client_id.as_deref().unwrap_or_default()))
    {
        Err(result) => only(result),
        Ok(input) => {
            let prid = input.prid.clone();
            let masked = paycode_core::code::mask(&input.code);
            match payments::pay(&inner, input).await {
                Ok(PayOutcome::Row(p)) => {
                    tracing::debug!(wallet = %inner.config.name, payment_request_id = %prid, code = %masked,
                        result = %p.result().result_code, "pay");
                    pay_response(&p)
                }
                Ok(PayOutcome::Inconsistent) => {
                    let c = ResultCode::REPEAT_REQ_INCONSISTENT;
                    only(fail(c, c.default_message()))
                }
                Err(e) => only(internal(&e)),
            }
        }
    };
    answer(&inner, &req, &body).await
}

fn inquiry_only(result: ResultInfo) -> InquiryResponse {
    InquiryResponse {
        result,
        payment_result: None,
        payment_id: None,
        payment_time: None,
        pay_to_amount: None,
        customer_id: None,
    }
}

async fn inquiry(State(inner): St, req: Result<SignedRequest, RequestRejection>) -> Response {
    let req = match readable(&inner, req).await {
        Ok(req) => req,
        Err(answer) => return answer,
    };
    let body = match verify_and_parse::<PaymentRef>(&inner, &req)
        .and_then(|r| request_id("paymentRequestId", &r.payment_request_id).map(|_| r))
    {
        Err(result) => inquiry_only(result),
        Ok(r) => match payments::inquire(&inner, &r.payment_request_id).await {
            Ok(None) => {
                let c = ResultCode::ORDER_NOT_EXIST;
                inquiry_only(fail(c, "the wallet never saw this payment"))
            }
            Ok(Some(p)) if p.state == PayState::Tombstone => InquiryResponse {
                payment_result: Some(p.result()),
                ..inquiry_only(ResultInfo::success())
            },
            Ok(Some(p)) => InquiryResponse {
                result: ResultInfo::success(),
                payment_result: Some(p.result()),
                payment_id: Some(p.payment_id.clone()),
                payment_time: p.paid_at_ms.map(iso_ms),
                pay_to_amount: Some(p.pay_to_amount()),
                customer_id: p.customer_id.clone(),
            },
            Err(e) => inquiry_only(internal(&e)),
        },
    };
    answer(&inner, &req, &body).await
}

async fn cancel(State(inner): St, req: Result<SignedRequest, RequestRejection>) -> Response {
    let req = match readable(&inner, req).await {
        Ok(req) => req,
        Err(answer) => return answer,
    };
    let body = match verify_and_parse::<PaymentRef>(&inner, &req)
        .and_then(|r| request_id("paymentRequestId", &r.payment_request_id).map(|_| r))
    {
        Err(result) => CancelResponse {
            result,
            cancel_time: None,
        },
        Ok(r) => match payments::cancel(&inner, r.payment_request_id.clone()).await {
            Ok(o) => {
                tracing::info!(wallet = %inner.config.name, payment_request_id = %r.payment_request_id,
                    result = %o.result.result_code, "cancelPayment");
                CancelResponse {
                    result: o.result,
                    cancel_time: o.cancel_time_ms.map(iso_ms),
                }
            }
            Err(e) => CancelResponse {
                result: internal(&e),
                cancel_time: None,
            },
        },
    };
    answer(&inner, &req, &body).await
}

fn refund_input(r: &RefundRequest) -> Result<payments::RefundInput, ResultInfo> {
    request_id("refundRequestId", &r.refund_request_id)?;
    request_id("paymentRequestId", &r.payment_request_id)?;
    let amount = money("refundAmount", &r.refund_amount)?;
    Ok(payments::RefundInput {
        refund_request_id: r.refund_request_id.clone(),
        prid: r.payment_request_id.clone(),
        amount_minor: amount.amount_minor(),
        currency: amount.currency().code().to_string(),
    })
}

async fn refund(State(inner): St, req: Result<SignedRequest, RequestRejection>) -> Response {
    let req = match readable(&inner, req).await {
        Ok(req) => req,
        Err(answer) => return answer,
    };
    let none = |result| RefundResponse {
        result,
        refund_id: None,
        refund_time: None,
        refund_amount: None,
    };
    let body = match verify_and_parse::<RefundRequest>(&inner, &req).and_then(|r| refund_input(&r))
    {
        Err(result) => none(result),
        Ok(r) => match payments::refund(&inner, r).await {
            Ok(o) => RefundResponse {
                result: o.result,
                refund_id: o.refund_id,
                refund_time: o.refund_time_ms.map(iso_ms),
                refund_amount: o.amount,
            },
            Err(e) => none(internal(&e)),
        },
    };
    answer(&inner, &req, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wallet's decoders cut an echoed hostile body short like the acquirer's.
    #[test]
    fn a_hostile_body_is_not_echoed_back_whole() {
        let body = format!("\"{}\"", "7".repeat(5_000));
        for op in ["pay", "refund", "cancel"] {
            let r = decode_request(op, "paycode-acquirer", body.as_bytes()).unwrap_err();
            assert_eq!(r.result_code, "PARAM_ILLEGAL", "{op}");
            assert!(
                r.result_message.len() < 400,
                "{op}: {} bytes",
                r.result_message.len()
            );
        }
    }
}
