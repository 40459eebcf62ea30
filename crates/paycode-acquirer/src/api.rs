//! The HTTP edge of the acquirer: the merchant API, the wallets' `notifyPayment`, and the
//! operator endpoints (health, metrics, admin).
//!
//! The merchant API answers **every** request — unknown paths, bad signatures, oversized or
//! malformed bodies included — with HTTP 200, a JSON `result`, and the signed lower-case
//! headers, because the SDKs treat anything else as a transport failure. Wire DTOs are turned
//! into validated domain input here, naming the offending field in every error; this is the only
//! module that knows about HTTP status codes.

use crate::service::{Acquirer, ApiError, PayInput, RefundInput};
use crate::store::NotificationStatus;
use crate::wire;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use paycode_core::code::PaymentCode;
use paycode_core::{Currency, Money, ResultCode};
use paycode_http::{RequestRejection, SignedRequest, signed_response};
use paycode_proto::{ResultInfo, merchant, mpp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Instant;

const MERCHANT_PREFIXES: [&str; 2] = ["/ams/api/v1/payments/", "/ams/sandbox/api/v1/payments/"];

/// Parses JSON, naming the path of the first offending field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // The path names the caller's own keys, so it is cut short like any echo.
        let field = if path == "." {
            "body".to_string()
        } else {
            paycode_http::brief(&path)
        };
        let inner = e.inner().to_string();
        let why = paycode_http::brief(inner.split(" at line ").next().unwrap_or(&inner));
        ApiError::param(&field, why)
    })
}

/// Decodes and validates the body of a merchant API request to `op` (`pay`, `refund`,
/// `inquiryPayment`, `cancel`, `inquiryRefund`, `inquiryCodeIssuer`, `inquireExchangeRate`)
/// exactly as the handler does once the signature and time have been checked, without touching
/// the store: the entry point of the decoder fuzz target.
pub fn decode_request(op: &str, client_id: &str, body: &[u8]) -> Result<(), ApiError> {
    match op {
        "pay" => pay_input(client_id.to_string(), parse_json(body)?).map(drop),
        "refund" => refund_input(client_id.to_string(), parse_json(body)?).map(drop),
        "inquiryPayment" | "cancel" => parse_json::<merchant::PaymentRef>(body).map(drop),
        "inquiryRefund" => parse_json::<merchant::InquiryRefundRequest>(body).map(drop),
        "inquiryCodeIssuer" => parse_json::<merchant::CodeIssuerRequest>(body).map(drop),
        "inquireExchangeRate" => parse_json::<ExchangeRateRequest>(body).map(drop),
        other => Err(ApiError::new(
            ResultCode::INVALID_API,
            format!("no API {other}"),
        )),
    }
}

fn error_body(e: &ApiError) -> Vec<u8> {
    #[derive(Serialize)]
    struct Only {
        result: ResultInfo,
    }
    serde_json::to_vec(&Only {
        result: wire::result(e.code, &e.message),
    })
    .expect("result serializes")
}

fn to_body<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("wire types always serialize")
}

/// A response body with the result code it carries (for metrics).
fn answer<T: Serialize>(v: &T, result: &ResultInfo) -> (Vec<u8>, String) {
    (to_body(v), result.result_code.clone())
}

/// The merchant API: one handler for every path, so that unknown ones still get a signed answer.
pub async fn merchant_api(
    State(acq): State<Acquirer>,
    req: Result<SignedRequest, RequestRejection>,
) -> Response {
    let started = Instant::now();
    let (path, client_id, outcome, op) = match req {
        Err(rej) => {
            let e = unread_error(&acq, &rej);
            (
                rej.path,
                rej.client_id.unwrap_or_default(),
                Err(e),
                "unreadable",
            )
        }
        Ok(req) => {
            let op = operation(&req.path);
            let outcome = handle_merchant(&acq, &req, op).await;
            (
                req.path,
                req.client_id.unwrap_or_default(),
                outcome,
                op.unwrap_or("unknown"),
            )
        }
    };
    let (body, code) = match outcome {
        Ok((body, code)) => (body, code),
        Err(e) => {
            if e.code.status() != paycode_core::ResultStatus::U {
                tracing::info!(op, code = %e.code, message = %e.message, "request refused");
            }
            (error_body(&e), e.code.as_str().to_string())
        }
    };
    metrics::counter!("paycode_requests_total", "op" => op, "code" => code).increment(1);
    metrics::histogram!("paycode_request_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    signed_response(&acq.config().signer, &path, &client_id, body).await
}

/// `PARAM_ILLEGAL` naming the part of a request that could not be read (headers or body).
fn unread_error(acq: &Acquirer, rej: &RequestRejection) -> ApiError {
    ApiError::param(
        rej.field(),
        rej.describe(acq.config().limits.request_body_max_bytes),
    )
}

/// The operation named by a merchant API path (query string ignored).
fn operation(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = MERCHANT_PREFIXES
        .iter()
        .find_map(|p| path.strip_prefix(p))?;
    match rest {
        "pay" => Some("pay"),
        "inquiryPayment" => Some("inquiryPayment"),
        "cancel" => Some("cancel"),
        "refund" => Some("refund"),
        "inquiryRefund" => Some("inquiryRefund"),
        "inquireExchangeRate" => Some("inquireExchangeRate"),
        "inquiryCodeIssuer" => Some("inquiryCodeIssuer"),
        _ => None,
    }
}

/// Checks the client and the signature; returns the client id.
fn authenticate(acq: &Acquirer, req: &SignedRequest) -> Result<String, ApiError> {
    let client_id = req
        .client_id
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ResultCode::CLIENT_INVALID,
                "the Client-Id header is missing",
            )
        })?;
    let snap = acq.snapshot();
    let client = snap.clients.get(&client_id).ok_or_else(|| {
        ApiError::new(
            ResultCode::CLIENT_INVALID,
            format!("client id {client_id:?} is not registered"),
        )
    })?;
    if !client.active {
        return Err(ApiError::new(
            ResultCode::CLIENT_INVALID,
            format!("client {client_id} is suspended"),
        ));
    }
    let header = req.signature_header().map_err(|e| {
        ApiError::new(
            ResultCode::SIGNATURE_INVALID,
            format!("Signature header: {e}"),
        )
    })?;
    let key = client.keys.get(&header.key_version).ok_or_else(|| {
        ApiError::new(
            ResultCode::KEY_NOT_FOUND,
            format!(
                "no active key version {} for client {client_id}",
                header.key_version
            ),
        )
    })?;
    req.verify(&header, key).map_err(|_| {
        ApiError::new(
            ResultCode::SIGNATURE_INVALID,
            "signature does not match POST <path>\\n<client-id>.<request-time>.<body>",
        )
    })?;
    check_fresh(acq, req, "merchant")?;
    Ok(client_id)
}

/// Refuses a verified request whose `Request-Time` is missing, unreadable or outside the
/// window, before anything is read or written for it. Runs after the signature check: only a
/// signed time says when the sender sent it, so a captured request cannot be freshened, and a
/// forged one is answered as forged, never with a hint about our clock.
fn check_fresh(acq: &Acquirer, req: &SignedRequest, from: &'static str) -> Result<(), ApiError> {
    paycode_http::check_request_time(
        req.request_time.as_deref(),
        acq.clock().now_ms(),
        acq.config().limits.request_time_window_s,
    )
    .map(|_| ())
    .map_err(|e| {
        metrics::counter!("paycode_request_time_refused_total", "from" => from).increment(1);
        ApiError::new(ResultCode::PARAM_ILLEGAL, e.to_string())
    })
}

async fn handle_merchant(
    acq: &Acquirer,
    req: &SignedRequest,
    op: Option<&'static str>,
) -> Result<(Vec<u8>, String), ApiError> {
    let op = op.ok_or_else(|| {
        ApiError::new(
            ResultCode::INVALID_API,
            format!("no API at {}", req.path.split('?').next().unwrap_or("")),
        )
    })?;
    let signer = authenticate(acq, req)?;
    // With an Agent-Token the signer is an integrator acting as the merchant's client, for one
    // merchant; without one the signer acts for itself.
    let (client_id, grant) = match req.agent_token.as_deref().filter(|t| !t.is_empty()) {
        None => (signer, None),
        Some(token) => {
            let g = acq.agent_grant(token, &signer, op).await?;
            (g.client_id.clone(), Some(g))
        }
    };
    // A payment of another merchant is answered as one that does not exist (SPEC §11).
    let serves = |merchant: &str| -> Result<(), ApiError> {
        match &grant {
            Some(g) if g.reference_merchant_id != merchant => Err(ApiError::new(
                ResultCode::ORDER_NOT_EXIST,
                ResultCode::ORDER_NOT_EXIST.default_message(),
            )),
            _ => Ok(()),
        }
    };
    match op {
        "pay" => {
            let wire: merchant::PayRequest = parse_json(&req.body)?;
            if let Some(g) = &grant
                && wire.order.merchant.reference_merchant_id != g.reference_merchant_id
            {
                return Err(ApiError::new(
                    ResultCode::ACCESS_DENIED,
                    format!(
                        "the Agent-Token acts for merchant {} only",
                        g.reference_merchant_id
                    ),
                ));
            }
            let input = pay_input(client_id, wire)?;
            let p = acq.pay(input).await?;
            Ok(answer(&wire::pay_response(&p), &wire::payment_result(&p)))
        }
        "inquiryPayment" => {
            let wire: merchant::PaymentRef = parse_json(&req.body)?;
            let p = acq
                .find_payment(
                    &client_id,
                    wire.payment_id.as_deref(),
                    wire.payment_request_id.as_deref(),
                )
                .await?;
            serves(&p.reference_merchant_id)?;
            let refunds = acq.refunds_of(&p.payment_id).await?;
            Ok((
                to_body(&wire::inquiry_response(&p, &refunds)),
                "SUCCESS".into(),
            ))
        }
        "cancel" => {
            let wire: merchant::PaymentRef = parse_json(&req.body)?;
            let p = acq
                .find_payment(
                    &client_id,
                    wire.payment_id.as_deref(),
                    wire.payment_request_id.as_deref(),
                )
                .await?;
            serves(&p.reference_merchant_id)?;
            let (p, at) = acq.cancel(p).await?;
            let resp = merchant::CancelResponse {
                result: Some(wire::result(ResultCode::SUCCESS, "")),
                payment_request_id: Some(p.payment_request_id.clone()),
                payment_id: Some(p.payment_id.clone()),
                cancel_time: Some(wire::iso(at)),
            };
            Ok((to_body(&resp), "SUCCESS".into()))
        }
        "refund" => {
            let wire: merchant::RefundRequest = parse_json(&req.body)?;
            let input = refund_input(client_id, wire)?;
            if grant.is_some() {
                let p = acq
                    .find_payment(&input.client_id, Some(&input.payment_id), None)
                    .await?;
                serves(&p.reference_merchant_id)?;
            }
            let r = acq.refund(input).await?;
            let resp = wire::refund_response(&r);
            let result = resp.result.clone().unwrap_or_else(ResultInfo::success);
            Ok(answer(&resp, &result))
        }
        "inquiryRefund" => {
            let wire: merchant::InquiryRefundRequest = parse_json(&req.body)?;
            let r = acq
                .find_refund(
                    &client_id,
                    wire.refund_id.as_deref(),
                    wire.refund_request_id.as_deref(),
                )
                .await?;
            if grant.is_some() {
                let p = acq
                    .find_payment(&client_id, Some(&r.payment_id), None)
                    .await?;
                serves(&p.reference_merchant_id)?;
            }
            Ok((
                to_body(&wire::refund_inquiry_response(&r)),
                "SUCCESS".into(),
            ))
        }
        "inquireExchangeRate" => {
            let wire: ExchangeRateRequest = parse_json(&req.body)?;
            let quotes = exchange_rates(acq, &client_id, wire).await?;
            let body = serde_json::json!({"result": wire::result(ResultCode::SUCCESS, ""), "quotes": quotes});
            Ok((to_body(&body), "SUCCESS".into()))
        }
        "inquiryCodeIssuer" => {
            let wire: merchant::CodeIssuerRequest = parse_json(&req.body)?;
            Ok((to_body(&code_issuer(acq, &wire)?), "SUCCESS".into()))
        }
        other => Err(ApiError::new(
            ResultCode::INVALID_API,
            format!("no API {other}"),
        )),
    }
}

/// `inquiryCodeIssuer`: which wallet issued a scanned code, from the in-memory routing table
/// alone (nothing is written, no wallet is called). Refusals are those of `pay`.
fn code_issuer(
    acq: &Acquirer,
    w: &merchant::CodeIssuerRequest,
) -> Result<merchant::CodeIssuerResponse, ApiError> {
    let code = PaymentCode::parse(w.payment_code.trim())
        .map_err(|e| ApiError::new(ResultCode::INVALID_CODE, format!("paymentCode: {e}")))?;
    let snap = acq.snapshot();
    let wallet = crate::service::accepting_wallet(&snap, &code)?;
    Ok(merchant::CodeIssuerResponse {
        result: Some(wire::result(ResultCode::SUCCESS, "")),
        psp_name: Some(wallet.psp_name.clone()),
        wallet_name: Some(wallet.name.clone()),
    })
}

/// `inquireExchangeRate`: `currencyPairs` (`sellCurrency`/`buyCurrency`), a single
/// `sellCurrency` + `buyCurrency`, or a `paymentCurrency` quoted against every wallet currency.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeRateRequest {
    #[serde(default)]
    payment_currency: Option<String>,
    #[serde(default)]
    currency_pairs: Option<Vec<CurrencyPair>>,
    #[serde(default)]
    sell_currency: Option<String>,
    #[serde(default)]
    buy_currency: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CurrencyPair {
    sell_currency: String,
    buy_currency: String,
}

/// Most pairs quoted by one request.
const QUOTE_PAIRS_MAX: usize = 50;

async fn exchange_rates(
    acq: &Acquirer,
    client_id: &str,
    w: ExchangeRateRequest,
) -> Result<Vec<paycode_proto::Quote>, ApiError> {
    let mut pairs: Vec<(Currency, Currency)> = Vec::new();
    for (i, p) in w.currency_pairs.iter().flatten().enumerate() {
        pairs.push((
            parse_currency(
                &format!("currencyPairs[{i}].sellCurrency"),
                &p.sell_currency,
            )?,
            parse_currency(&format!("currencyPairs[{i}].buyCurrency"), &p.buy_currency)?,
        ));
    }
    match (&w.sell_currency, &w.buy_currency) {
        (Some(s), Some(b)) => pairs.push((
            parse_currency("sellCurrency", s)?,
            parse_currency("buyCurrency", b)?,
        )),
        (None, None) => {}
        _ => {
            return Err(ApiError::param(
                "buyCurrency",
                "sellCurrency and buyCurrency go together",
            ));
        }
    }
    if pairs.is_empty() {
        // The payment currency (or each of the client's contracted ones) against every wallet.
        let snap = acq.snapshot();
        let bases: Vec<String> = match &w.payment_currency {
            Some(c) => vec![parse_currency("paymentCurrency", c)?.code().to_string()],
            None => snap
                .merchants
                .values()
                .filter(|m| m.client_id == client_id)
                .flat_map(|m| m.currencies.clone())
                .collect(),
        };
        for b in bases {
            for wallet in snap.wallets.values().filter(|w| w.enabled) {
                for q in &wallet.currencies {
                    if let (Ok(b), Ok(q)) = (Currency::parse(&b), Currency::parse(q))
                        && b != q
                        && !pairs.contains(&(b, q))
                    {
                        pairs.push((b, q));
                    }
                }
            }
        }
    }
    if pairs.len() > QUOTE_PAIRS_MAX {
        return Err(ApiError::param(
            "currencyPairs",
            format!("at most {QUOTE_PAIRS_MAX} pairs per request"),
        ));
    }
    let rates = acq.rates();
    let now = acq.clock().now_ms();
    let validity_ms = acq.config().limits.quote_validity_s * 1000;
    let mut quotes = Vec::new();
    for (sell, buy) in pairs {
        if sell == buy {
            return Err(ApiError::param(
                "currencyPairs",
                format!("{sell}/{buy} is not a pair"),
            ));
        }
        let q = rates
            .quote(
                acq.next_quote_id(),
                sell,
                buy,
                paycode_core::fx::QuoteSide::Ask,
                now,
                validity_ms,
            )
            .map_err(|e| {
                ApiError::new(
                    ResultCode::CURRENCY_NOT_SUPPORT,
                    format!("{sell}/{buy}: {e}"),
                )
            })?;
        quotes.push(crate::service::wire_quote(&q).0);
    }
    let stored = quotes.clone();
    let expiry = now + validity_ms;
    acq.db()
        .write(move |c| {
            for q in &stored {
                crate::store::insert_quote(c, q, now, expiry, "INQUIRY")?;
            }
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(quotes)
}

fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::param(field, "must not be empty"));
    }
    if value.chars().count() > 64 {
        return Err(ApiError::param(field, "must be at most 64 characters"));
    }
    Ok(())
}

fn parse_currency(field: &str, code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code).map_err(|e| ApiError::param(field, e))
}

fn parse_positive_amount(field: &str, a: &paycode_proto::Amount) -> Result<Money, ApiError> {
    let currency = parse_currency(&format!("{field}.currency"), &a.currency)?;
    let m = Money::from_minor_str(&a.value, currency).map_err(|_| {
        ApiError::param(
            &format!("{field}.value"),
            format!(
                "{:?} is not a whole number of {currency} minor units",
                paycode_http::brief(&a.value)
            ),
        )
    })?;
    if !m.is_positive() {
        return Err(ApiError::param(
            &format!("{field}.value"),
            "must be greater than zero",
        ));
    }
    Ok(m)
}

fn check_url(field: &str, url: &Option<String>) -> Result<(), ApiError> {
    match url.as_deref() {
        None | Some("") => Ok(()),
        Some(u) if (u.starts_with("http://") || u.starts_with("https://")) && u.len() <= 1024 => {
            Ok(())
        }
        Some(_) => Err(ApiError::param(
            field,
            "must be an http(s) URL of at most 1024 characters",
        )),
    }
}

fn pay_input(client_id: String, w: merchant::PayRequest) -> Result<PayInput, ApiError> {
    if w.product_code != "IN_STORE_PAYMENT" {
        return Err(ApiError::param("productCode", "must be IN_STORE_PAYMENT"));
    }
    if let Some(s) = w
        .payment_factor
        .as_ref()
        .and_then(|f| f.in_store_payment_scenario.as_deref())
        && s != "PaymentCode"
    {
        return Err(ApiError::param(
            "paymentFactor.inStorePaymentScenario",
            "must be PaymentCode (user-presented mode)",
        ));
    }
    check_id("paymentRequestId", &w.payment_request_id)?;
    let amount = parse_positive_amount("paymentAmount", &w.payment_amount)?;
    if w.payment_method.payment_method_type != "CONNECT_WALLET" {
        return Err(ApiError::param(
            "paymentMethod.paymentMethodType",
            "must be CONNECT_WALLET",
        ));
    }
    let code = PaymentCode::parse(w.payment_method.payment_method_id.trim()).map_err(|e| {
        ApiError::new(
            ResultCode::INVALID_CODE,
            format!("paymentMethod.paymentMethodId: {e}"),
        )
    })?;
    check_id(
        "order.merchant.referenceMerchantId",
        &w.order.merchant.reference_merchant_id,
    )?;
    if let Some(s) = &w.order.merchant.store {
        check_id(
            "order.merchant.store.referenceStoreId",
            &s.reference_store_id,
        )?;
    }
    check_url("paymentNotifyUrl", &w.payment_notify_url)?;
    let expiry_ms = match w.payment_expiry_time.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    ApiError::param(
                        "paymentExpiryTime",
                        format!("{:?} is not ISO-8601: {e}", paycode_http::brief(t)),
                    )
                })?
                .timestamp_millis(),
        ),
    };
    let settlement_currency = match w
        .settlement_strategy
        .as_ref()
        .and_then(|s| s.settlement_currency.as_deref())
    {
        None | Some("") => None,
        Some(c) => Some(parse_currency("settlementStrategy.settlementCurrency", c)?),
    };
    Ok(PayInput {
        client_id,
        payment_request_id: w.payment_request_id,
        amount,
        code,
        order: w.order,
        notify_url: w.payment_notify_url.filter(|u| !u.is_empty()),
        expiry_ms,
        settlement_currency,
    })
}

fn refund_input(client_id: String, w: merchant::RefundRequest) -> Result<RefundInput, ApiError> {
    check_id("refundRequestId", &w.refund_request_id)?;
    check_id("paymentId", &w.payment_id)?;
    let amount = parse_positive_amount("refundAmount", &w.refund_amount)?;
    check_url("refundNotifyUrl", &w.refund_notify_url)?;
    if w.refund_reason
        .as_deref()
        .is_some_and(|r| r.chars().count() > 256)
    {
        return Err(ApiError::param(
            "refundReason",
            "must be at most 256 characters",
        ));
    }
    Ok(RefundInput {
        client_id,
        refund_request_id: w.refund_request_id,
        payment_id: w.payment_id,
        amount,
        reason: w.refund_reason,
        notify_url: w.refund_notify_url.filter(|u| !u.is_empty()),
    })
}

/// `notifyPayment` from a wallet, signed with the wallet's key (its `Client-Id` is its name).
pub async fn wallet_notify(
    State(acq): State<Acquirer>,
    req: Result<SignedRequest, RequestRejection>,
) -> Response {
    let a = acq.clone();
    wallet_callback(
        &acq,
        req,
        "wallet notification refused",
        |wallet, body| async move {
            let n: mpp::NotifyPayment = parse_json(&body)?;
            a.wallet_notified(&wallet, n).await
        },
    )
    .await
}

/// A wallet's customer risk report (`BLOCKED` or `CLEARED`), signed like its notifications.
pub async fn wallet_customer_risk(
    State(acq): State<Acquirer>,
    req: Result<SignedRequest, RequestRejection>,
) -> Response {
    let a = acq.clone();
    wallet_callback(
        &acq,
        req,
        "customer risk report refused",
        |wallet, body| async move {
            let r: mpp::CustomerRiskReport = parse_json(&body)?;
            a.wallet_reported_customer(&wallet, r).await
        },
    )
    .await
}

/// A call from a wallet: checks who signed it, hands the body to `handle` with the wallet's
/// name, and answers signed, `S` or the refusal.
async fn wallet_callback<F, Fut>(
    acq: &Acquirer,
    req: Result<SignedRequest, RequestRejection>,
    refused: &'static str,
    handle: F,
) -> Response
where
    F: FnOnce(String, axum::body::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    let (path, client_id, outcome) = match req {
        Err(rej) => {
            let e = unread_error(acq, &rej);
            (rej.path, rej.client_id.unwrap_or_default(), Err(e))
        }
        Ok(req) => {
            let outcome = match verified_wallet(acq, &req) {
                Ok(wallet) => handle(wallet.name, req.body.clone()).await,
                Err(e) => Err(e),
            };
            (req.path, req.client_id.unwrap_or_default(), outcome)
        }
    };
    let body = match outcome {
        Ok(()) => to_body(&merchant::NotifyAck {
            result: ResultInfo::success(),
        }),
        Err(e) => {
            tracing::warn!(wallet = %client_id, code = %e.code, message = %e.message, "{refused}");
            error_body(&e)
        }
    };
    signed_response(&acq.config().signer, &path, &client_id, body).await
}

/// The registered wallet that signed `req`, or why not.
fn verified_wallet(
    acq: &Acquirer,
    req: &SignedRequest,
) -> Result<crate::registry::Wallet, ApiError> {
    let wallet_name = req.client_id.clone().unwrap_or_default();
    let wallet = acq
        .snapshot()
        .wallets
        .get(&wallet_name)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                ResultCode::CLIENT_INVALID,
                format!("{wallet_name:?} is not a registered wallet"),
            )
        })?;
    let header = req.signature_header().map_err(|e| {
        ApiError::new(
            ResultCode::SIGNATURE_INVALID,
            format!("Signature header: {e}"),
        )
    })?;
    req.verify(&header, &wallet.public_key)
        .map_err(|_| ApiError::new(ResultCode::SIGNATURE_INVALID, "signature does not match"))?;
    check_fresh(acq, req, "wallet")?;
    Ok(wallet)
}

// ------------------------------------------------------------------ operator endpoints

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(acq): State<Acquirer>) -> Response {
    match acq
        .db()
        .read(|c| crate::store::ping(c).map_err(ApiError::from))
        .await
    {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.message).into_response(),
    }
}

pub async fn metrics_text() -> Response {
    match crate::metrics_handle() {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render() + &process_metrics(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

/// The standard process metrics where the system tells them (Linux `/proc`): resident memory
/// and open file descriptors, for watching a long run.
fn process_metrics() -> String {
    let mut out = String::new();
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    if let Some(kib) = rss_kib {
        out.push_str(&format!(
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
            kib * 1024
        ));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push_str(&format!(
            "# TYPE process_open_fds gauge\nprocess_open_fds {}\n",
            dir.count()
        ));
    }
    out
}

pub(crate) fn admin_allowed(acq: &Acquirer, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = acq.config().admin_token.as_deref() else {
        return Err(Box::new(
            (StatusCode::NOT_FOUND, "the admin API is disabled").into_response(),
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time comparison of the token.
    if given.is_some_and(|g| {
        aws_lc_rs::constant_time::verify_slices_are_equal(g.as_bytes(), token.as_bytes()).is_ok()
    }) {
        Ok(())
    } else {
        Err(Box::new(
            (StatusCode::UNAUTHORIZED, "admin token missing or wrong").into_response(),
        ))
    }
}

/// The HTTP status of an error of the operator's surfaces (admin API, dashboard).
pub(crate) fn operator_status(code: ResultCode) -> StatusCode {
    match code {
        ResultCode::ORDER_NOT_EXIST => StatusCode::NOT_FOUND,
        ResultCode::ACCESS_DENIED => StatusCode::FORBIDDEN,
        ResultCode::PARAM_ILLEGAL => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn admin_error(e: ApiError) -> Response {
    let status = operator_status(e.code);
    (
        status,
        Json(serde_json::json!({"error": e.code.as_str(), "message": e.message})),
    )
        .into_response()
}

/// A payment's whole story for operators: the row, its timeline, postings, refunds and
/// notifications.
pub async fn admin_payment(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let result = acq
        .db()
        .read(move |c| {
            use crate::store::*;
            let p = payment_by_id(c, &id)?.ok_or_else(|| ApiError::new(ResultCode::ORDER_NOT_EXIST, "no such payment"))?;
            let events = events_of_payment(c, &id)?;
            let postings = postings_of_payment(c, &id)?;
            let refunds = refunds_of_payment(c, &id)?;
            let notes = notifications_of_payment(c, &id)?;
            let risk = risk::decision(c, &id)?.map(|d| {
                let list = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap_or_default();
                serde_json::json!({"rulesVersion": d.rules_version, "verdict": d.verdict,
                                   "hits": list(&d.hits), "shadow": list(&d.shadow)})
            });
            Ok::<_, ApiError>(serde_json::json!({
                "payment": wire::inquiry_response(&p, &refunds),
                "customerId": p.psp_customer_id, "buyer": p.buyer, "risk": risk,
                "merchant": {"clientId": p.client_id, "referenceMerchantId": p.reference_merchant_id,
                             "referenceStoreId": p.reference_store_id, "terminalId": p.terminal_id},
                "wallet": p.wallet, "code": p.code_masked,
                "timeline": events.iter().map(|e| serde_json::json!({"time": wire::iso(e.at_ms), "kind": e.kind, "detail": e.detail})).collect::<Vec<_>>(),
                "postings": postings.iter().map(|x| serde_json::json!({"entryId": x.entry_id, "kind": x.kind, "account": x.account, "side": x.side, "amountMinor": x.amount_minor, "currency": x.currency})).collect::<Vec<_>>(),
                "notifications": notes.iter().map(notification_json).collect::<Vec<_>>(),
            }))
        })
        .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

fn notification_json(n: &crate::store::OutboxRow) -> serde_json::Value {
    serde_json::json!({
        "id": n.outbox_id, "kind": n.kind.as_str(), "paymentId": n.payment_id,
        "refundId": n.refund_id, "url": n.url, "status": n.status.as_str(), "attempts": n.n_attempts,
        "nextAttempt": wire::iso(n.next_attempt_ms), "lastError": n.last_error,
        "deliveredAt": n.delivered_ms.map(wire::iso),
    })
}

#[derive(serde::Deserialize)]
pub struct NotificationQuery {
    status: Option<String>,
    limit: Option<usize>,
}

pub async fn admin_notifications(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Query<NotificationQuery>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let limit = q.limit.unwrap_or(100).min(1000);
    let status = match q
        .status
        .as_deref()
        .map(|s| (s, NotificationStatus::parse(s)))
    {
        None => None,
        Some((_, Some(status))) => Some(status),
        Some((s, None)) => {
            return admin_error(ApiError::new(
                ResultCode::PARAM_ILLEGAL,
                format!("status: {s:?} is not PENDING, DELIVERED or PARKED"),
            ));
        }
    };
    match acq
        .db()
        .read(move |c| crate::store::notifications(c, status, limit).map_err(ApiError::from))
        .await
    {
        Ok(rows) => Json(rows.iter().map(notification_json).collect::<Vec<_>>()).into_response(),
        Err(e) => admin_error(e),
    }
}

pub async fn admin_resend(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let now = acq.clock().now_ms();
    match acq
        .db()
        .write(move |c| crate::store::resend_notification(c, id, now).map_err(ApiError::from))
        .await
    {
        Ok(true) => Json(serde_json::json!({"id": id, "status": "PENDING"})).into_response(),
        Ok(false) => admin_error(ApiError::new(
            ResultCode::ORDER_NOT_EXIST,
            "no such notification",
        )),
        Err(e) => admin_error(e),
    }
}

#[derive(serde::Deserialize)]
pub struct LookupQuery {
    code: String,
}

/// "Which wallet is this code?" for operators (merchants ask `inquiryCodeIssuer`).
pub async fn admin_route_lookup(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let code = match PaymentCode::parse(q.code.trim()) {
        Ok(c) => c,
        Err(e) => return admin_error(ApiError::param("code", e)),
    };
    let snap = acq.snapshot();
    match snap.route(&code) {
        Some(w) => Json(serde_json::json!({
            "code": code.masked(), "wallet": w.name, "pspName": w.psp_name,
            "enabled": w.enabled, "currencies": w.currencies,
        }))
        .into_response(),
        None => admin_error(ApiError::new(
            ResultCode::ORDER_NOT_EXIST,
            "no wallet issues this code",
        )),
    }
}

pub async fn admin_balances(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let result = acq
        .db()
        .read(|c| {
            let rows = crate::store::balances(c)?;
            Ok::<_, ApiError>(
                rows.into_iter()
                    .map(|b| {
                        serde_json::json!({"account": b.account, "currency": b.currency, "balanceMinor": b.balance_minor})
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the merchant-request fuzz target: a body that is one long JSON string was
    /// quoted back whole in the error (2,012 bytes for a 1,956-byte body; up to the body limit).
    #[test]
    fn a_hostile_body_is_not_echoed_back_whole() {
        let body = format!("\"{}\"", "7".repeat(5_000));
        for op in ["pay", "refund", "inquiryPayment"] {
            let e = decode_request(op, "client-1", body.as_bytes()).unwrap_err();
            assert_eq!(e.code, ResultCode::PARAM_ILLEGAL, "{op}");
            assert!(
                e.message.starts_with("body: invalid type: string"),
                "{op}: {}",
                e.message
            );
            assert!(e.message.len() < 400, "{op}: {} bytes", e.message.len());
        }
        // Found next: a deep path of the caller's own keys is cut short too.
        let mut nested = String::from("1");
        for i in 0..200 {
            nested = format!("{{\"refundRequestIdRequestId{i}\":{nested}}}");
        }
        let body = format!("{{\"refundRequestId\":{nested}}}");
        let e = decode_request("refund", "client-1", body.as_bytes()).unwrap_err();
        assert!(
            e.message
                .starts_with("refundRequestId.refundRequestIdRequestId199."),
            "{}",
            e.message
        );
        assert!(
            e.message.contains('…') && e.message.len() < 600,
            "{} bytes: {}",
            e.message.len(),
            e.message
        );
    }
}
