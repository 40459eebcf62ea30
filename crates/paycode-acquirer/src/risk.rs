//! The acquirer's risk rules as data: the JSON form operators edit (admin API). Their storage,
//! the per-merchant daily counters and the seen-code set the rules read are in `store::risk`. Evaluation itself is the
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
use paycode_core::risk::{Rule, RuleKind};
use paycode_core::{Currency, ResultCode, ResultStatus};
use serde::{Deserialize, Serialize};

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

/// The stored form of a code: 16 bytes of its SHA-256.
pub fn code_key(code_digits: &str) -> Vec<u8> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code_digits.as_bytes());
    d.as_ref()[..16].to_vec()
}
