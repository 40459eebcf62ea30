//! The acquirer's risk rules as data: the JSON form operators edit (admin API), its storage, and
//! the per-merchant daily counters and seen-code set the rules read. Evaluation itself is the
//! core's [`paycode_core::risk::evaluate`]; the service runs it inside the job that inserts the
//! payment, so counters and decision are atomic with the payment row.
//!
//! ```json
//! [{"id": "max-sgd", "kind": "MAX_AMOUNT", "currency": "SGD", "maxMinor": 500000,
//!   "code": "PAYMENT_AMOUNT_EXCEED_LIMIT"},
//!  {"id": "velocity", "kind": "MERCHANT_DAILY_COUNT", "max": 100000, "code": "PAYMENT_COUNT_EXCEED_LIMIT"},
//!  {"id": "replay", "kind": "CODE_REPLAY", "code": "EXPIRED_CODE"}]
//! ```
//! Kinds: `MAX_AMOUNT`, `MERCHANT_DAILY_AMOUNT` (optional `merchant` = `client/merchantId`),
//! `MERCHANT_DAILY_COUNT`, `BLOCKED_MERCHANT`, `BLOCKED_MCC`, `CODE_REPLAY`. `code` defaults
//! to `RISK_REJECT` and must be a failure code. Daily counters use the UTC day.

use crate::service::ApiError;
use crate::store::StoreResult;
use paycode_core::risk::{Rule, RuleKind};
use paycode_core::{Currency, ResultCode, ResultStatus};
use paycode_db::rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS risk_rules (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    rules_json    TEXT NOT NULL,
    updated_ms    INTEGER NOT NULL
);
-- Payment attempts per merchant, UTC day and currency (risk velocity and daily amounts).
CREATE TABLE IF NOT EXISTS merchant_daily (
    merchant      TEXT NOT NULL,
    day           INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    amount_minor  INTEGER NOT NULL,
    n_attempts    INTEGER NOT NULL,
    PRIMARY KEY (merchant, day, currency)
);
-- The first 16 bytes of SHA-256 of every code sent to a wallet (never the code itself), by UTC
-- day, for the replay rule. One B-tree (no rowid); pruning drops whole past days.
CREATE TABLE IF NOT EXISTS seen_codes (
    day           INTEGER NOT NULL,
    code_hash     BLOB NOT NULL,
    payment_id    TEXT NOT NULL,
    PRIMARY KEY (day, code_hash)
) WITHOUT ROWID;
"#;

/// One rule as operators write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleJson {
    pub id: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Parses and validates a rule list; errors name the rule index and field.
pub fn parse_rules(json: &str) -> Result<Vec<Rule>, ApiError> {
    let list: Vec<RuleJson> = crate::api::parse_json(json.as_bytes())?;
    let mut ids = std::collections::HashSet::new();
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let field = |f: &str| format!("[{i}].{f}");
            if r.id.is_empty() || !ids.insert(r.id.clone()) {
                return Err(ApiError::param(&field("id"), "must be present and unique"));
            }
            let currency = || -> Result<Currency, ApiError> {
                let c = r
                    .currency
                    .as_deref()
                    .ok_or_else(|| ApiError::param(&field("currency"), "is required"))?;
                Currency::parse(c).map_err(|e| ApiError::param(&field("currency"), e))
            };
            let positive = |v: Option<i64>, f: &str| -> Result<i64, ApiError> {
                v.filter(|v| *v > 0)
                    .ok_or_else(|| ApiError::param(&field(f), "must be a positive integer"))
            };
            let text = |v: &Option<String>, f: &str| -> Result<String, ApiError> {
                v.clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ApiError::param(&field(f), "is required"))
            };
            let kind = match r.kind.as_str() {
                "MAX_AMOUNT" => RuleKind::MaxAmount {
                    currency: currency()?,
                    max_minor: positive(r.max_minor, "maxMinor")?,
                },
                "MERCHANT_DAILY_AMOUNT" => RuleKind::MerchantDailyAmount {
                    merchant: r.merchant.clone(),
                    currency: currency()?,
                    max_minor: positive(r.max_minor, "maxMinor")?,
                },
                "MERCHANT_DAILY_COUNT" => RuleKind::MerchantDailyCount {
                    merchant: r.merchant.clone(),
                    max: positive(r.max, "max")?,
                },
                "BLOCKED_MERCHANT" => RuleKind::BlockedMerchant {
                    merchant: text(&r.merchant, "merchant")?,
                },
                "BLOCKED_MCC" => RuleKind::BlockedMcc {
                    mcc: text(&r.mcc, "mcc")?,
                },
                "CODE_REPLAY" => RuleKind::CodeReplay,
                other => {
                    return Err(ApiError::param(
                        &field("kind"),
                        format!("unknown kind {other:?}"),
                    ));
                }
            };
            let code = match r.code.as_deref() {
                None => ResultCode::RISK_REJECT,
                Some(c) => ResultCode::parse(c)
                    .filter(|c| c.status() == ResultStatus::F)
                    .ok_or_else(|| {
                        ApiError::param(
                            &field("code"),
                            format!("{c:?} is not a failure result code"),
                        )
                    })?,
            };
            Ok(Rule {
                id: r.id.clone(),
                kind,
                code,
            })
        })
        .collect()
}

pub fn stored_rules(c: &Connection) -> StoreResult<Option<String>> {
    Ok(
        c.query_row("SELECT rules_json FROM risk_rules WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub fn store_rules(c: &Connection, json: &str, now_ms: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO risk_rules (id, rules_json, updated_ms) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET rules_json = excluded.rules_json, updated_ms = excluded.updated_ms",
        params![json, now_ms],
    )?;
    Ok(())
}

pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// The merchant's attempts today in `currency`: (amount, count across currencies).
pub fn merchant_today(
    c: &Connection,
    merchant: &str,
    currency: &str,
    now_ms: i64,
) -> StoreResult<(i64, i64)> {
    Ok(c.prepare_cached(
        "SELECT COALESCE(SUM(CASE WHEN currency = ?3 THEN amount_minor END), 0), \
         COALESCE(SUM(n_attempts), 0) FROM merchant_daily WHERE merchant = ?1 AND day = ?2",
    )?
    .query_row(params![merchant, day_of(now_ms), currency], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?)
}

pub fn count_attempt(
    c: &Connection,
    merchant: &str,
    currency: &str,
    amount_minor: i64,
    now_ms: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO merchant_daily (merchant, day, currency, amount_minor, n_attempts) VALUES (?1, ?2, ?3, ?4, 1) \
         ON CONFLICT (merchant, day, currency) DO UPDATE SET amount_minor = amount_minor + excluded.amount_minor, \
         n_attempts = n_attempts + 1",
    )?
    .execute(params![merchant, day_of(now_ms), currency, amount_minor])?;
    Ok(())
}

/// The stored form of a code: 16 bytes of its SHA-256.
pub fn code_key(code_digits: &str) -> Vec<u8> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code_digits.as_bytes());
    d.as_ref()[..16].to_vec()
}

/// Whether the code was sent on today or yesterday (no code lives longer than minutes).
pub fn code_seen(c: &Connection, key: &[u8], now_ms: i64) -> StoreResult<bool> {
    let day = day_of(now_ms);
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM seen_codes WHERE day IN (?1, ?2) AND code_hash = ?3)",
    )?
    .query_row(params![day - 1, day, key], |r| r.get(0))?)
}

pub fn remember_code(c: &Connection, key: &[u8], payment_id: &str, now_ms: i64) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO seen_codes (day, code_hash, payment_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?
    .execute(params![day_of(now_ms), key, payment_id])?;
    Ok(())
}

/// Whether there are seen codes from before yesterday.
pub fn any_stale_seen_codes(c: &Connection, now_ms: i64) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("SELECT EXISTS (SELECT 1 FROM seen_codes WHERE day < ?1)")?
            .query_row([day_of(now_ms) - 1], |r| r.get(0))?,
    )
}

/// Drops up to `limit` seen codes from before yesterday (bounded work per call).
pub fn prune_seen_codes(c: &Connection, now_ms: i64, limit: usize) -> StoreResult<usize> {
    Ok(c.prepare_cached(
        "DELETE FROM seen_codes WHERE (day, code_hash) IN \
         (SELECT day, code_hash FROM seen_codes WHERE day < ?1 LIMIT ?2)",
    )?
    .execute(params![day_of(now_ms) - 1, limit as i64])?)
}
