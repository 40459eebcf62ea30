//! Operator endpoints for money: settlement batches and their report files, wallet clearing,
//! closing batches on demand, the rate table (rate file or the ECB's daily XML) and the audit.
//!
//! Same admin bearer token as the other `/admin/v1/…` endpoints. Batch ids hold the merchant's
//! ledger name (`client/merchant`), so a client percent-encodes the `/` (`%2F`) in the path.

use crate::api::{admin_allowed, admin_error};
use crate::service::{Acquirer, ApiError};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paycode_core::ResultCode;

#[derive(serde::Deserialize)]
pub struct ListQuery {
    merchant: Option<String>,
    wallet: Option<String>,
    limit: Option<usize>,
}

const LIST_LIMIT_DEFAULT: usize = 100;
const LIST_LIMIT_MAX: usize = 1_000;

fn limit(q: &ListQuery) -> usize {
    q.limit.unwrap_or(LIST_LIMIT_DEFAULT).min(LIST_LIMIT_MAX)
}

/// A CSV download named `name`.
pub(crate) fn csv(name: &str, text: String) -> Response {
    let mut resp = text.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

fn not_found(what: &str) -> Response {
    admin_error(ApiError::new(ResultCode::ORDER_NOT_EXIST, what))
}

/// `GET /admin/v1/settlement/batches?merchant=&limit=`
pub async fn batches(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let n = limit(&q);
    match acq.settlement_batches(q.merchant, n).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn batch_report(acq: &Acquirer, headers: &HeaderMap, id: &str, detail: bool) -> Response {
    if let Err(r) = admin_allowed(acq, headers) {
        return *r;
    }
    match acq.batch_reports(id).await {
        Ok(Some((summary, detail_text))) => {
            let stem = crate::settlement::file_stem(id);
            if detail {
                csv(&format!("{stem}-detail.csv"), detail_text)
            } else {
                csv(&format!("{stem}-summary.csv"), summary)
            }
        }
        Ok(None) => not_found("no such settlement batch"),
        Err(e) => admin_error(e),
    }
}

/// `GET /admin/v1/settlement/batches/{id}/summary.csv`
pub async fn batch_summary(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    batch_report(&acq, &headers, &id, false).await
}

/// `GET /admin/v1/settlement/batches/{id}/detail.csv`
pub async fn batch_detail(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    batch_report(&acq, &headers, &id, true).await
}

#[derive(serde::Deserialize)]
pub struct CloseQuery {
    now: Option<bool>,
}

/// `POST /admin/v1/settlement/close?now=true|false`: closes what is due (or everything up to
/// now) and answers what was closed.
pub async fn close(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Query<CloseQuery>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let outcome = if q.now.unwrap_or(false) {
        acq.settle_now().await
    } else {
        acq.settle_due(acq.clock().now_ms()).await
    };
    match outcome {
        Ok(o) => Json(o).into_response(),
        Err(e) => admin_error(e),
    }
}

/// `GET /admin/v1/clearing?wallet=&limit=`
pub async fn clearings(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let n = limit(&q);
    match acq.clearings(q.wallet, n).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

/// `GET /admin/v1/clearing/{id}/report.csv`
pub async fn clearing_report(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq.clearing_report(&id).await {
        Ok(Some(text)) => csv(&format!("{}.csv", crate::settlement::file_stem(&id)), text),
        Ok(None) => not_found("no such clearing"),
        Err(e) => admin_error(e),
    }
}

/// `GET /admin/v1/rates`: the current table in the rate-file format.
pub async fn rates(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let mut resp = acq.rates().to_rate_file().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `POST /admin/v1/rates`: replaces the table with the rate file in the body.
pub async fn set_rates(State(acq): State<Acquirer>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq.set_rate_file(body).await {
        Ok(()) => Json(serde_json::json!({"pairs": acq.rates().mids().count()})).into_response(),
        Err(e) => admin_error(e),
    }
}

/// `POST /admin/v1/rates/ecb`: merges the ECB daily XML in the body into the current table
/// (its `EUR/XXX` mids replace those pairs; spreads, pivots and other pairs stay).
pub async fn import_ecb(State(acq): State<Acquirer>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let ecb = match paycode_core::ecb::parse(&body) {
        Ok(e) => e,
        Err(e) => return admin_error(ApiError::param("body", e)),
    };
    let mut table = (*acq.rates()).clone();
    if let Err(e) = ecb.apply_to(&mut table) {
        return admin_error(ApiError::param("body", e));
    }
    let text = format!(
        "# ECB reference rates of {} merged into the previous table\n{}",
        ecb.date(),
        table.to_rate_file()
    );
    match acq.set_rate_file(text).await {
        Ok(()) => Json(serde_json::json!({
            "date": ecb.date(),
            "imported": ecb.rates().len(),
            "skipped": ecb.skipped(),
        }))
        .into_response(),
        Err(e) => admin_error(e),
    }
}

/// `GET /admin/v1/audit`: the audit report; HTTP 200 either way (the report says whether
/// anything is wrong), 500 only when the audit itself could not run.
pub async fn audit(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq.audit_report().await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e) => admin_error(e),
    }
}
