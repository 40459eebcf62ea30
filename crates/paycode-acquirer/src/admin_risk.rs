//! The operator's risk API (`/admin/v1/risk/…`, bearer token): the rule set (versioned), dry
//! runs of a candidate set against stored payments, the blocked customers, and the recent
//! decisions in which a rule fired with counts per rule.

use crate::api::{admin_allowed, admin_error};
use crate::service::{Acquirer, ApiError};
use crate::store::risk::BlockedCustomer;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;

fn utf8(raw: &Bytes) -> Result<String, ApiError> {
    String::from_utf8(raw.to_vec()).map_err(|_| ApiError::param("body", "is not UTF-8"))
}

/// The rules as stored (a JSON list; see `risk`); the version is the `rules-version` header.
pub async fn get_rules(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq.risk_rules_json().await {
        Ok((text, version)) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/json".to_string(),
                ),
                (
                    axum::http::HeaderName::from_static("rules-version"),
                    version.to_string(),
                ),
            ],
            text,
        )
            .into_response(),
        Err(e) => admin_error(e),
    }
}

/// Replaces the rules; the whole list is validated first (errors name the rule and field).
pub async fn put_rules(State(acq): State<Acquirer>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let result = async { acq.set_risk_rules(utf8(&raw)?).await }.await;
    match result {
        Ok(version) => {
            let answer =
                Json(serde_json::json!({"result": "SUCCESS", "version": version})).into_response();
            let log = ("risk.rules", format!("v{version}"), String::new());
            crate::admin::logged(&acq, &headers, log, answer).await
        }
        Err(e) => admin_error(e),
    }
}

#[derive(Deserialize)]
pub struct TryQuery {
    /// How far back: `30m`, `24h`, `7d`.
    since: Option<String>,
}

/// A period such as `30m`, `24h` or `7d`, in milliseconds.
pub fn parse_period_ms(text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::param(
            "since",
            format!("{text:?} is not a period like 30m, 24h or 7d"),
        )
    };
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n <= 0 || n > 366 * 86_400_000 / unit_ms {
        return Err(ApiError::param(
            "since",
            "must be between one minute and a year",
        ));
    }
    Ok(n * unit_ms)
}

/// Evaluates the candidate rules in the body against the payments since `?since=` (default
/// `7d`) and reports per rule; changes nothing.
pub async fn try_rules(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Query<TryQuery>,
    raw: Bytes,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let result = async {
        let period_ms = parse_period_ms(q.since.as_deref().unwrap_or("7d"))?;
        let since_ms = acq.clock().now_ms() - period_ms;
        acq.try_risk_rules(&utf8(&raw)?, since_ms).await
    }
    .await;
    match result {
        Ok(report) => Json(report.to_json()).into_response(),
        Err(e) => admin_error(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockBody {
    wallet: String,
    customer_id: String,
    reason: String,
}

pub async fn list_blocked(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq
        .db()
        .read(|c| crate::store::risk::blocked_customers(c).map_err(ApiError::from))
        .await
    {
        Ok(list) => Json(serde_json::json!({
            "blockedCustomers": list.iter().map(|b| serde_json::json!({
                "wallet": b.wallet, "customerId": b.customer_id, "reason": b.reason,
                "source": b.source, "createdTime": crate::wire::iso(b.created_ms),
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => admin_error(e),
    }
}

/// Blocks a wallet customer (the `BLOCKED_CUSTOMER` rule reads the list).
pub async fn block(State(acq): State<Acquirer>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let result = async {
        let b: BlockBody = crate::api::parse_json(&raw)?;
        if !acq.snapshot().wallets.contains_key(&b.wallet) {
            return Err(ApiError::param(
                "wallet",
                format!("no wallet {:?}", b.wallet),
            ));
        }
        for (field, v) in [("customerId", &b.customer_id), ("reason", &b.reason)] {
            if v.trim().is_empty() {
                return Err(ApiError::param(field, "is required"));
            }
        }
        let target = format!("{}/{}", b.wallet, b.customer_id);
        let row = BlockedCustomer {
            wallet: b.wallet,
            customer_id: b.customer_id,
            reason: b.reason,
            source: "operator".to_string(),
            created_ms: acq.clock().now_ms(),
        };
        let added = acq
            .db()
            .write(move |c| crate::store::risk::block_customer(c, &row).map_err(ApiError::from))
            .await?;
        Ok((added, target))
    }
    .await;
    match result {
        Ok((added, target)) => {
            let answer =
                Json(serde_json::json!({"result": "SUCCESS", "added": added})).into_response();
            let log = ("risk.block", target, String::new());
            crate::admin::logged(&acq, &headers, log, answer).await
        }
        Err(e) => admin_error(e),
    }
}

pub async fn unblock(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path((wallet, customer_id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let target = format!("{wallet}/{customer_id}");
    match acq
        .db()
        .write(move |c| {
            crate::store::risk::unblock_customer(c, &wallet, &customer_id).map_err(ApiError::from)
        })
        .await
    {
        Ok(removed) => {
            let answer =
                Json(serde_json::json!({"result": "SUCCESS", "removed": removed})).into_response();
            crate::admin::logged(
                &acq,
                &headers,
                ("risk.unblock", target, String::new()),
                answer,
            )
            .await
        }
        Err(e) => admin_error(e),
    }
}

#[derive(Deserialize)]
pub struct DecisionsQuery {
    limit: Option<usize>,
}

/// The latest decisions in which a rule fired (default 100, at most 1000), with hit counts per
/// rule over them.
pub async fn decisions(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Query<DecisionsQuery>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let rows = match acq
        .db()
        .read(move |c| crate::store::risk::recent_decisions(c, limit).map_err(ApiError::from))
        .await
    {
        Ok(r) => r,
        Err(e) => return admin_error(e),
    };
    Json(decisions_summary(&rows)).into_response()
}

/// Decisions as the API lists them, with the count of hits per rule (enforced and shadow).
pub fn decisions_summary(rows: &[crate::store::risk::DecisionRow]) -> serde_json::Value {
    let mut per_rule: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let list: Vec<_> = rows
        .iter()
        .map(|d| {
            let hits: serde_json::Value = serde_json::from_str(&d.hits).unwrap_or_default();
            let shadow: serde_json::Value = serde_json::from_str(&d.shadow).unwrap_or_default();
            for (v, is_shadow) in [(&hits, false), (&shadow, true)] {
                for h in v.as_array().into_iter().flatten() {
                    if let Some(id) = h["ruleId"].as_str() {
                        let e = per_rule.entry(id.to_string()).or_default();
                        if is_shadow { e.1 += 1 } else { e.0 += 1 }
                    }
                }
            }
            serde_json::json!({
                "paymentId": d.payment_id, "time": crate::wire::iso(d.created_ms),
                "rulesVersion": d.rules_version, "verdict": d.verdict,
                "hits": hits, "shadow": shadow,
            })
        })
        .collect();
    serde_json::json!({
        "decisions": list,
        "hitsPerRule": per_rule.iter().map(|(id, (enforced, shadow))| serde_json::json!({
            "ruleId": id, "enforced": enforced, "shadow": shadow,
        })).collect::<Vec<_>>(),
    })
}
