//! The operator's registration API (`/admin/v1/…`, bearer token): API clients and their keys
//! (several key versions may be active during a rotation), merchants with their stores, fees,
//! settlement currency and cut-off, wallets with their routing rules. Every body is validated
//! whole before anything is written; the in-memory registry is reloaded after each write.

use crate::api::{admin_allowed, admin_error};
use crate::registry::{self, NewClient, NewMerchant, NewWallet, Store};
use crate::service::{Acquirer, ApiError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use paycode_core::{Currency, ResultCode};
use paycode_sign::PublicKey;
use serde::Deserialize;

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::api::parse_json(bytes)
}

fn currencies(field: &str, list: &[String]) -> Result<Vec<String>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::param(field, "needs at least one currency"));
    }
    list.iter()
        .map(|c| {
            Currency::parse(c)
                .map(|c| c.code().to_string())
                .map_err(|e| ApiError::param(field, e))
        })
        .collect()
}

/// Who made an admin change: the `Operator-Name` header (the CLI sends the user's name), or
/// `operator` (the one admin token does not say who holds it).
fn actor(headers: &HeaderMap) -> String {
    headers
        .get("operator-name")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().chars().take(64).collect::<String>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "operator".to_string())
}

/// Records an admin change in the operator log, after it committed. A failure to log is
/// reported, never hidden: the change stands and the answer says the log line is missing.
pub(crate) async fn log_change(
    acq: &Acquirer,
    headers: &HeaderMap,
    action: &str,
    target: &str,
    detail: String,
) -> Result<(), ApiError> {
    let row = crate::store::agents::OperatorLogRow {
        at_ms: acq.clock().now_ms(),
        actor: actor(headers),
        action: action.to_string(),
        target: target.to_string(),
        detail,
    };
    tracing::info!(actor = %row.actor, action, target, "admin change");
    acq.db()
        .write(move |c| crate::store::agents::log_operator(c, &row).map_err(ApiError::from))
        .await
}

/// Answers a successful change once it is in the operator log.
pub(crate) async fn logged(
    acq: &Acquirer,
    headers: &HeaderMap,
    (action, target, detail): (&str, String, String),
    answer: Response,
) -> Response {
    if !answer.status().is_success() {
        return answer;
    }
    match log_change(acq, headers, action, &target, detail).await {
        Ok(()) => answer,
        Err(e) => admin_error(ApiError::new(
            e.code,
            format!("the change was made but not logged: {}", e.message),
        )),
    }
}

pub async fn get_operator_log(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1_000);
    match acq
        .db()
        .read(move |c| crate::store::agents::operator_log(c, limit).map_err(ApiError::from))
        .await
    {
        Ok(rows) => Json(
            serde_json::json!({"entries": rows.iter().map(|r| serde_json::json!({
            "time": crate::wire::iso(r.at_ms), "actor": r.actor, "action": r.action,
            "target": r.target, "detail": r.detail,
        })).collect::<Vec<_>>()}),
        )
        .into_response(),
        Err(e) => admin_error(e),
    }
}

async fn write_and_reload<F>(acq: &Acquirer, f: F) -> Response
where
    F: Fn(&paycode_db::sql::Connection<'_>) -> Result<(), ApiError> + Send + 'static,
{
    let result = acq.db().write(f).await;
    match result {
        Ok(()) => match acq.registry().reload(acq.db()).await {
            Ok(()) => Json(serde_json::json!({"result": "SUCCESS"})).into_response(),
            Err(e) => admin_error(ApiError::from(e)),
        },
        Err(e) => admin_error(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientBody {
    client_id: String,
    name: String,
    #[serde(default)]
    notify_url: Option<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

pub async fn put_client(State(acq): State<Acquirer>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let b: ClientBody = match body(&raw) {
        Ok(b) => b,
        Err(e) => return admin_error(e),
    };
    if b.client_id.is_empty() || b.client_id.len() > 64 {
        return admin_error(ApiError::param("clientId", "must be 1 to 64 characters"));
    }
    let now = acq.clock().now_ms();
    let log = (
        "client.put",
        b.client_id.clone(),
        format!("name {:?}, active {}", b.name, b.active),
    );
    let answer = write_and_reload(&acq, move |c| {
        registry::upsert_client(
            c,
            &NewClient {
                client_id: &b.client_id,
                name: &b.name,
                notify_url: b.notify_url.as_deref(),
            },
            now,
        )?;
        registry::set_client_status(c, &b.client_id, b.active)?;
        Ok(())
    })
    .await;
    logged(&acq, &headers, log, answer).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyBody {
    key_version: u32,
    public_key: String,
    #[serde(default = "yes")]
    active: bool,
}

/// Registers (or retires, with `active: false`) one key version of a client.
pub async fn put_client_key(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    raw: Bytes,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let b: KeyBody = match body(&raw) {
        Ok(b) => b,
        Err(e) => return admin_error(e),
    };
    let key = match PublicKey::parse(&b.public_key) {
        Ok(k) => k,
        Err(e) => return admin_error(ApiError::param("publicKey", e)),
    };
    if !acq.snapshot().clients.contains_key(&client_id) {
        return admin_error(ApiError::new(
            ResultCode::ORDER_NOT_EXIST,
            format!("no client {client_id}"),
        ));
    }
    let log = (
        "key.put",
        format!("{client_id} v{}", b.key_version),
        format!("active {}", b.active),
    );
    let answer = write_and_reload(&acq, move |c| {
        registry::upsert_client_key(c, &client_id, b.key_version, &key, b.active)?;
        Ok(())
    })
    .await;
    logged(&acq, &headers, log, answer).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoreBody {
    reference_store_id: String,
    name: String,
    mcc: String,
}

/// `POST /admin/v1/merchants/{client}/{merchant}/stores`: adds a store to a registered
/// merchant, or changes its name and MCC, without restating the merchant.
pub async fn put_store(
    State(acq): State<Acquirer>,
    Path((client_id, merchant_id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let s: StoreBody = match body(&raw) {
        Ok(s) => s,
        Err(e) => return admin_error(e),
    };
    let checked = (|| {
        if acq.snapshot().merchant(&client_id, &merchant_id).is_none() {
            return Err(ApiError::new(
                ResultCode::ORDER_NOT_EXIST,
                format!("no merchant {merchant_id} of client {client_id}"),
            ));
        }
        s.check()
    })();
    if let Err(e) = checked {
        return admin_error(e);
    }
    let log = (
        "store.put",
        format!("{client_id}/{merchant_id}/{}", s.reference_store_id),
        format!("name {:?}, MCC {}", s.name, s.mcc),
    );
    let answer = write_and_reload(&acq, move |c| {
        registry::upsert_store(c, &client_id, &merchant_id, &s.to_store())?;
        Ok(())
    })
    .await;
    logged(&acq, &headers, log, answer).await
}

impl StoreBody {
    fn to_store(&self) -> Store {
        Store {
            reference_store_id: self.reference_store_id.clone(),
            name: self.name.clone(),
            mcc: self.mcc.clone(),
        }
    }

    fn check(&self) -> Result<(), ApiError> {
        let id = &self.reference_store_id;
        if id.is_empty() || id.chars().count() > 64 {
            return Err(ApiError::param(
                "referenceStoreId",
                "must be 1 to 64 characters",
            ));
        }
        if self.name.trim().is_empty() {
            return Err(ApiError::param("name", "must not be empty"));
        }
        if self.mcc.len() != 4 || !self.mcc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::param(
                "mcc",
                format!("{:?} is not a 4-digit MCC", self.mcc),
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MerchantBody {
    client_id: String,
    reference_merchant_id: String,
    name: String,
    mcc: String,
    currencies: Vec<String>,
    settlement_currency: String,
    #[serde(default)]
    max_amount_minor: Option<i64>,
    #[serde(default)]
    notify_url: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    fee_bps: u32,
    #[serde(default = "utc")]
    time_zone: String,
    #[serde(default)]
    cutoff_minutes: u32,
    /// ISO 3166 alpha-2 (the country risk rule).
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    stores: Vec<StoreBody>,
}

/// An ISO 3166 alpha-2 country code: two capital letters.
fn country(field: &str, c: &str) -> Result<String, ApiError> {
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c.to_string())
    } else {
        Err(ApiError::param(
            field,
            format!("{c:?} is not an ISO 3166 alpha-2 country code (two capital letters)"),
        ))
    }
}

fn utc() -> String {
    "UTC".into()
}

pub async fn put_merchant(State(acq): State<Acquirer>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let b: MerchantBody = match body(&raw) {
        Ok(b) => b,
        Err(e) => return admin_error(e),
    };
    let checked = (|| {
        if !acq.snapshot().clients.contains_key(&b.client_id) {
            return Err(ApiError::param(
                "clientId",
                format!("no client {}", b.client_id),
            ));
        }
        let list = currencies("currencies", &b.currencies)?;
        let settle = currencies(
            "settlementCurrency",
            std::slice::from_ref(&b.settlement_currency),
        )?;
        b.time_zone.parse::<chrono_tz::Tz>().map_err(|_| {
            ApiError::param(
                "timeZone",
                format!("{:?} is not an IANA time zone", b.time_zone),
            )
        })?;
        if b.cutoff_minutes >= 24 * 60 {
            return Err(ApiError::param("cutoffMinutes", "must be less than 1440"));
        }
        if b.fee_bps > 10_000 {
            return Err(ApiError::param("feeBps", "must be at most 10000"));
        }
        if b.max_amount_minor.is_some_and(|m| m <= 0) {
            return Err(ApiError::param("maxAmountMinor", "must be positive"));
        }
        if let Some(c) = &b.country {
            country("country", c)?;
        }
        Ok((list, settle[0].clone()))
    })();
    let (list, settle) = match checked {
        Ok(x) => x,
        Err(e) => return admin_error(e),
    };
    let log = (
        "merchant.put",
        format!("{}/{}", b.client_id, b.reference_merchant_id),
        format!("name {:?}, {} store(s)", b.name, b.stores.len()),
    );
    let answer = write_and_reload(&acq, move |c| {
        registry::upsert_merchant(
            c,
            &NewMerchant {
                client_id: &b.client_id,
                reference_merchant_id: &b.reference_merchant_id,
                name: &b.name,
                mcc: &b.mcc,
                currencies: &list,
                settlement_currency: &settle,
                max_amount_minor: b.max_amount_minor,
                notify_url: b.notify_url.as_deref(),
                active: b.active,
                fee_bps: b.fee_bps,
                time_zone: &b.time_zone,
                cutoff_minutes: b.cutoff_minutes,
            },
        )?;
        registry::set_merchant_country(
            c,
            &b.client_id,
            &b.reference_merchant_id,
            b.country.as_deref(),
        )?;
        for s in &b.stores {
            registry::upsert_store(c, &b.client_id, &b.reference_merchant_id, &s.to_store())?;
        }
        Ok(())
    })
    .await;
    logged(&acq, &headers, log, answer).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteBody {
    /// `CII` or `REGEX`.
    kind: String,
    pattern: String,
    #[serde(default = "default_priority")]
    priority: i64,
}

fn default_priority() -> i64 {
    100
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WalletBody {
    name: String,
    #[serde(default)]
    psp_name: Option<String>,
    base_url: String,
    public_key: String,
    currencies: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
    /// Home countries, ISO 3166 alpha-2 (the country risk rule).
    #[serde(default)]
    countries: Vec<String>,
    /// Transaction currencies the wallet is contracted for; empty: any.
    #[serde(default)]
    transaction_currencies: Vec<String>,
    #[serde(default)]
    routes: Vec<RouteBody>,
}

/// Registers a wallet (any MPP that speaks the protocol) and its routing rules.
pub async fn put_wallet(State(acq): State<Acquirer>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let b: WalletBody = match body(&raw) {
        Ok(b) => b,
        Err(e) => return admin_error(e),
    };
    let checked = (|| {
        let key = PublicKey::parse(&b.public_key).map_err(|e| ApiError::param("publicKey", e))?;
        let list = currencies("currencies", &b.currencies)?;
        for (i, c) in b.countries.iter().enumerate() {
            country(&format!("countries[{i}]"), c)?;
        }
        if !b.transaction_currencies.is_empty() {
            currencies("transactionCurrencies", &b.transaction_currencies)?;
        }
        if !(b.base_url.starts_with("http://") || b.base_url.starts_with("https://")) {
            return Err(ApiError::param("baseUrl", "must be an http(s) URL"));
        }
        for (i, r) in b.routes.iter().enumerate() {
            match r.kind.as_str() {
                "CII" if r.pattern.len() == 6 && r.pattern.bytes().all(|x| x.is_ascii_digit()) => {}
                "CII" => {
                    return Err(ApiError::param(
                        &format!("routes[{i}].pattern"),
                        "a CII is 6 digits",
                    ));
                }
                "REGEX" => {
                    regex::Regex::new(&r.pattern)
                        .map_err(|e| ApiError::param(&format!("routes[{i}].pattern"), e))?;
                }
                _ => {
                    return Err(ApiError::param(
                        &format!("routes[{i}].kind"),
                        "must be CII or REGEX",
                    ));
                }
            }
        }
        Ok((key, list))
    })();
    let (key, list) = match checked {
        Ok(x) => x,
        Err(e) => return admin_error(e),
    };
    let log = (
        "wallet.put",
        b.name.clone(),
        format!(
            "{} {}, {} route(s)",
            b.base_url,
            if b.enabled { "enabled" } else { "disabled" },
            b.routes.len()
        ),
    );
    let answer = write_and_reload(&acq, move |c| {
        registry::upsert_wallet(
            c,
            &NewWallet {
                name: &b.name,
                psp_name: b.psp_name.as_deref().unwrap_or(&b.name),
                base_url: &b.base_url,
                public_key: &key,
                currencies: &list,
                enabled: b.enabled,
            },
        )?;
        registry::set_wallet_contract(c, &b.name, &b.countries, &b.transaction_currencies)?;
        for r in &b.routes {
            registry::upsert_route(c, &r.kind, &r.pattern, &b.name, r.priority)?;
        }
        Ok(())
    })
    .await;
    logged(&acq, &headers, log, answer).await
}

/// The reference data as the acquirer currently sees it.
pub async fn get_registry(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let snap = acq.snapshot();
    let mut clients: Vec<_> = snap
        .clients
        .values()
        .map(|c| {
            let mut versions: Vec<_> = c.keys.keys().copied().collect();
            versions.sort();
            serde_json::json!({"clientId": c.client_id, "name": c.name, "active": c.active, "notifyUrl": c.notify_url, "keyVersions": versions})
        })
        .collect();
    clients.sort_by_key(|v| v["clientId"].as_str().unwrap_or("").to_string());
    let mut merchants: Vec<_> = snap
        .merchants
        .values()
        .map(|m| {
            let mut stores: Vec<_> = m.stores.values().collect();
            stores.sort_by(|a, b| a.reference_store_id.cmp(&b.reference_store_id));
            let stores: Vec<_> = stores
                .iter()
                .map(|s| serde_json::json!({"referenceStoreId": s.reference_store_id, "name": s.name, "mcc": s.mcc}))
                .collect();
            serde_json::json!({
                "clientId": m.client_id, "referenceMerchantId": m.reference_merchant_id, "name": m.name,
                "currencies": m.currencies, "settlementCurrency": m.settlement_currency, "feeBps": m.fee_bps,
                "timeZone": m.time_zone, "cutoffMinutes": m.cutoff_minutes, "active": m.active,
                "country": m.country, "stores": stores,
            })
        })
        .collect();
    merchants.sort_by_key(|v| v["referenceMerchantId"].as_str().unwrap_or("").to_string());
    let mut wallets: Vec<_> = snap
        .wallets
        .values()
        .map(|w| serde_json::json!({"name": w.name, "pspName": w.psp_name, "baseUrl": w.base_url, "currencies": w.currencies, "enabled": w.enabled, "countries": w.countries, "transactionCurrencies": w.transaction_currencies}))
        .collect();
    wallets.sort_by_key(|v| v["name"].as_str().unwrap_or("").to_string());
    let routes: Vec<_> = snap
        .routes
        .iter()
        .map(|r| {
            let (kind, pattern) = match &r.pattern {
                registry::RoutePattern::Cii(c) => ("CII", c.clone()),
                registry::RoutePattern::Regex(re) => ("REGEX", re.as_str().to_string()),
            };
            serde_json::json!({"kind": kind, "pattern": pattern, "wallet": r.wallet, "priority": r.priority})
        })
        .collect();
    Json(serde_json::json!({"clients": clients, "merchants": merchants, "wallets": wallets, "routes": routes}))
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AgentTokenBody {
    integrator_client_id: String,
    client_id: String,
    reference_merchant_id: String,
    scope: Vec<String>,
    #[serde(default = "day_s")]
    expires_in_s: i64,
}

fn day_s() -> i64 {
    86_400
}

fn agent_token_json(t: &crate::store::agents::AgentTokenRow) -> serde_json::Value {
    serde_json::json!({
        "tokenId": t.token_id, "integratorClientId": t.integrator_client_id,
        "clientId": t.client_id, "referenceMerchantId": t.reference_merchant_id,
        "scope": t.scope, "createdTime": crate::wire::iso(t.created_ms),
        "expiresTime": crate::wire::iso(t.expires_ms),
        "revokedTime": t.revoked_ms.map(crate::wire::iso),
    })
}

/// Grants an integrator an `Agent-Token` for one merchant; the token is in this answer only.
pub async fn issue_agent_token(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let result = async {
        let b: AgentTokenBody = body(&raw)?;
        acq.issue_agent_token(
            &b.integrator_client_id,
            &b.client_id,
            &b.reference_merchant_id,
            b.scope,
            b.expires_in_s,
        )
        .await
    }
    .await;
    match result {
        Ok(issued) => {
            let mut v = agent_token_json(&issued.row);
            v["agentToken"] = serde_json::Value::String(issued.token);
            let t = &issued.row;
            let log = (
                "agent-token.issue",
                t.token_id.clone(),
                format!(
                    "{} for {}/{}: {}",
                    t.integrator_client_id,
                    t.client_id,
                    t.reference_merchant_id,
                    t.scope.join(",")
                ),
            );
            logged(&acq, &headers, log, Json(v).into_response()).await
        }
        Err(e) => admin_error(e),
    }
}

pub async fn list_agent_tokens(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq.agent_tokens().await {
        Ok(list) => Json(serde_json::json!({
            "agentTokens": list.iter().map(agent_token_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => admin_error(e),
    }
}

pub async fn revoke_agent_token(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq.revoke_agent_token(&id).await {
        Ok(true) => {
            let answer = Json(serde_json::json!({"result": "SUCCESS"})).into_response();
            let log = ("agent-token.revoke", id.clone(), String::new());
            logged(&acq, &headers, log, answer).await
        }
        Ok(false) => admin_error(ApiError::new(
            ResultCode::ORDER_NOT_EXIST,
            format!("no unrevoked agent token {id}"),
        )),
        Err(e) => admin_error(e),
    }
}
