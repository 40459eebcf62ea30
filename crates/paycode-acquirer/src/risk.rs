//! The acquirer's risk rules as data: the JSON form operators edit (admin API, `paycode admin
//! risk`, or a TOML/JSON file given to `serve --risk-rules`, which the binary turns into this
//! form). Their storage, the counters and the seen-code set the rules read are in `store::risk`.
//! Evaluation itself is the core's [`paycode_core::risk::evaluate`]; the service runs it inside
//! the unit that inserts the payment, so counters, decision and row are atomic.
//!
//! ```json
//! [{"id": "max-sgd", "kind": "MAX_AMOUNT", "currency": "SGD", "maxMinor": 500000,
//!   "code": "PAYMENT_AMOUNT_EXCEED_LIMIT"},
//!  {"id": "buyer-burst", "kind": "CUSTOMER_VELOCITY", "windowMinutes": 10, "max": 5,
//!   "code": "PAYMENT_COUNT_EXCEED_LIMIT"},
//!  {"id": "big-for-you", "kind": "UNUSUAL_AMOUNT", "scope": "MERCHANT", "minHistory": 5,
//!   "factor": 5, "action": "CHALLENGE"},
//!  {"id": "night", "kind": "OPENING_HOURS", "open": "07:00", "close": "23:00", "mode": "SHADOW"}]
//! ```
//!
//! | kind | parameters |
//! |---|---|
//! | `MAX_AMOUNT` | `currency`, `maxMinor` |
//! | `MERCHANT_DAILY_AMOUNT` | `currency`, `maxMinor`, optional `merchant` (`client/merchantId`) |
//! | `MERCHANT_DAILY_COUNT` | `max`, optional `merchant` |
//! | `BLOCKED_MERCHANT` | `merchant` |
//! | `BLOCKED_MCC` | `mcc` |
//! | `CODE_REPLAY` | — |
//! | `CUSTOMER_VELOCITY` | `windowMinutes` (1–1440), `max` |
//! | `CUSTOMER_DAILY_AMOUNT` | `currency`, `maxMinor` |
//! | `BLOCKED_CUSTOMER` | — (the list is `/admin/v1/risk/blocked-customers`) |
//! | `UNUSUAL_AMOUNT` | `scope` (`MERCHANT` or `MCC`), `minHistory`, `factor` (above 1, two decimals) |
//! | `COUNTRY_MISMATCH` | — (merchant `country` versus wallet `countries`) |
//! | `CURRENCY_NOT_CONTRACTED` | — (wallet `transactionCurrencies`) |
//! | `HIGH_RISK_MCC` | `mccs`, `currency`, `minMinor` |
//! | `OPENING_HOURS` | `open`, `close` (`HH:MM`, merchant's time zone), optional `merchant` |
//!
//! Every rule also takes `action` (`REJECT`, the default, or `CHALLENGE`), `code` (a failure
//! code for a rejection, default `RISK_REJECT`) and `mode` (`ENFORCE`, the default, or
//! `SHADOW`). Daily counters use the UTC day.

use crate::service::ApiError;
use paycode_core::risk::{Action, HistoryScope, MINUTES_PER_DAY, Mode, Rule, RuleKind};
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
    pub min_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mccs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_history: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `HH:MM` as minutes after midnight.
fn clock(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.len() == 5).then_some(h * 60 + m)
}

/// The wire name of a rule kind, as [`parse_rules`] reads it.
pub fn kind_name(k: &RuleKind) -> &'static str {
    match k {
        RuleKind::MaxAmount { .. } => "MAX_AMOUNT",
        RuleKind::MerchantDailyAmount { .. } => "MERCHANT_DAILY_AMOUNT",
        RuleKind::MerchantDailyCount { .. } => "MERCHANT_DAILY_COUNT",
        RuleKind::BlockedMerchant { .. } => "BLOCKED_MERCHANT",
        RuleKind::BlockedMcc { .. } => "BLOCKED_MCC",
        RuleKind::CodeReplay => "CODE_REPLAY",
        RuleKind::CustomerVelocity { .. } => "CUSTOMER_VELOCITY",
        RuleKind::CustomerDailyAmount { .. } => "CUSTOMER_DAILY_AMOUNT",
        RuleKind::BlockedCustomer => "BLOCKED_CUSTOMER",
        RuleKind::UnusualAmount { .. } => "UNUSUAL_AMOUNT",
        RuleKind::CountryMismatch => "COUNTRY_MISMATCH",
        RuleKind::CurrencyNotContracted => "CURRENCY_NOT_CONTRACTED",
        RuleKind::HighRiskMcc { .. } => "HIGH_RISK_MCC",
        RuleKind::OpeningHours { .. } => "OPENING_HOURS",
    }
}

/// Parses and validates a rule list; errors name the rule (index and id) and the field.
pub fn parse_rules(json: &str) -> Result<Vec<Rule>, ApiError> {
    let list: Vec<RuleJson> = crate::api::parse_json(json.as_bytes())?;
    let mut ids = std::collections::HashSet::new();
    list.iter()
        .enumerate()
        .map(|(i, r)| parse_rule(i, r, &mut ids))
        .collect()
}

fn parse_rule(
    i: usize,
    r: &RuleJson,
    ids: &mut std::collections::HashSet<String>,
) -> Result<Rule, ApiError> {
    let field = |f: &str| {
        if r.id.is_empty() {
            format!("rules[{i}].{f}")
        } else {
            format!("rules[{i}] ({:?}).{f}", r.id)
        }
    };
    let bad = |f: &str, why: &str| ApiError::param(&field(f), why);
    if r.id.is_empty() || !ids.insert(r.id.clone()) {
        return Err(bad("id", "must be present and unique"));
    }
    let currency = || -> Result<Currency, ApiError> {
        let c = r
            .currency
            .as_deref()
            .ok_or_else(|| bad("currency", "is required"))?;
        Currency::parse(c).map_err(|e| ApiError::param(&field("currency"), e))
    };
    let positive = |v: Option<i64>, f: &str| -> Result<i64, ApiError> {
        v.filter(|v| *v > 0)
            .ok_or_else(|| bad(f, "must be a positive integer"))
    };
    let text = |v: &Option<String>, f: &str| -> Result<String, ApiError> {
        v.clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(f, "is required"))
    };
    let time = |v: &Option<String>, f: &str| -> Result<u32, ApiError> {
        clock(&text(v, f)?).ok_or_else(|| bad(f, "must be a local time HH:MM (00:00 to 23:59)"))
    };
    // Each kind takes its own parameters and no others, so a typo is an error, not a rule
    // that silently means something else.
    let allowed: &[&str] = match r.kind.as_str() {
        "MAX_AMOUNT" | "CUSTOMER_DAILY_AMOUNT" => &["currency", "maxMinor"],
        "MERCHANT_DAILY_AMOUNT" => &["currency", "maxMinor", "merchant"],
        "MERCHANT_DAILY_COUNT" => &["max", "merchant"],
        "BLOCKED_MERCHANT" => &["merchant"],
        "BLOCKED_MCC" => &["mcc"],
        "CUSTOMER_VELOCITY" => &["windowMinutes", "max"],
        "UNUSUAL_AMOUNT" => &["scope", "minHistory", "factor"],
        "HIGH_RISK_MCC" => &["mccs", "currency", "minMinor"],
        "OPENING_HOURS" => &["open", "close", "merchant"],
        _ => &[],
    };
    let given = [
        ("currency", r.currency.is_some()),
        ("maxMinor", r.max_minor.is_some()),
        ("minMinor", r.min_minor.is_some()),
        ("max", r.max.is_some()),
        ("merchant", r.merchant.is_some()),
        ("mcc", r.mcc.is_some()),
        ("mccs", r.mccs.is_some()),
        ("windowMinutes", r.window_minutes.is_some()),
        ("scope", r.scope.is_some()),
        ("minHistory", r.min_history.is_some()),
        ("factor", r.factor.is_some()),
        ("open", r.open.is_some()),
        ("close", r.close.is_some()),
    ];
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
        "CUSTOMER_VELOCITY" => {
            let window_minutes = positive(r.window_minutes, "windowMinutes")?;
            if window_minutes > MINUTES_PER_DAY {
                return Err(bad("windowMinutes", "must be at most 1440 (one day)"));
            }
            RuleKind::CustomerVelocity {
                window_minutes,
                max: positive(r.max, "max")?,
            }
        }
        "CUSTOMER_DAILY_AMOUNT" => RuleKind::CustomerDailyAmount {
            currency: currency()?,
            max_minor: positive(r.max_minor, "maxMinor")?,
        },
        "BLOCKED_CUSTOMER" => RuleKind::BlockedCustomer,
        "UNUSUAL_AMOUNT" => RuleKind::UnusualAmount {
            scope: match r.scope.as_deref() {
                Some("MERCHANT") => HistoryScope::Merchant,
                Some("MCC") => HistoryScope::Mcc,
                _ => return Err(bad("scope", "must be MERCHANT or MCC")),
            },
            min_history: positive(r.min_history, "minHistory")?,
            factor_pct: {
                let f = r
                    .factor
                    .as_ref()
                    .and_then(|n| n.as_f64())
                    .ok_or_else(|| bad("factor", "is required (a number above 1)"))?;
                let pct = (f * 100.0).round();
                if !(pct > 100.0 && pct <= 1_000_000.0) {
                    return Err(bad("factor", "must be above 1 and at most 10000"));
                }
                pct as i64
            },
        },
        "COUNTRY_MISMATCH" => RuleKind::CountryMismatch,
        "CURRENCY_NOT_CONTRACTED" => RuleKind::CurrencyNotContracted,
        "HIGH_RISK_MCC" => RuleKind::HighRiskMcc {
            mccs: r
                .mccs
                .clone()
                .filter(|l| !l.is_empty() && l.iter().all(|m| !m.is_empty()))
                .ok_or_else(|| bad("mccs", "must be a non-empty list of MCCs"))?,
            currency: currency()?,
            min_minor: positive(r.min_minor, "minMinor")?,
        },
        "OPENING_HOURS" => {
            let (open_minute, close_minute) = (time(&r.open, "open")?, time(&r.close, "close")?);
            if open_minute == close_minute {
                return Err(bad("close", "must differ from open"));
            }
            RuleKind::OpeningHours {
                merchant: r.merchant.clone(),
                open_minute,
                close_minute,
            }
        }
        other => {
            return Err(bad("kind", &format!("unknown kind {other:?}")));
        }
    };
    if let Some((name, _)) = given.iter().find(|(n, set)| *set && !allowed.contains(n)) {
        return Err(bad(name, &format!("is not a parameter of {}", r.kind)));
    }
    let code = match r.code.as_deref() {
        None => ResultCode::RISK_REJECT,
        Some(c) => ResultCode::parse(c)
            .filter(|c| c.status() == ResultStatus::F)
            .ok_or_else(|| bad("code", &format!("{c:?} is not a failure result code")))?,
    };
    let action = match r.action.as_deref() {
        None | Some("REJECT") => Action::Reject(code),
        Some("CHALLENGE") if r.code.is_none() => Action::Challenge,
        Some("CHALLENGE") => return Err(bad("code", "a CHALLENGE rule takes no code")),
        Some(other) => {
            return Err(bad(
                "action",
                &format!("{other:?} is not REJECT or CHALLENGE"),
            ));
        }
    };
    let mode = match r.mode.as_deref() {
        None | Some("ENFORCE") => Mode::Enforce,
        Some("SHADOW") => Mode::Shadow,
        Some(other) => {
            return Err(bad("mode", &format!("{other:?} is not ENFORCE or SHADOW")));
        }
    };
    Ok(Rule {
        id: r.id.clone(),
        kind,
        action,
        mode,
    })
}

/// The stored form of a code: 16 bytes of its SHA-256.
pub fn code_key(code_digits: &str) -> Vec<u8> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code_digits.as_bytes());
    d.as_ref()[..16].to_vec()
}

/// Digits of the UIN that name the device in the reference wallet's construction (SPEC §4.3:
/// `UIN = SLOT (8) || SEQ (1) || OTP (7)`).
pub const SLOT_DIGITS: usize = 8;

/// The buyer key of a code: its CII and the device slot at the head of the UIN. The slot is a
/// pseudonym the wallet assigns and rotates; it names a device, not a person, and the key is
/// linked to the wallet's `customerId` once a wallet answer reveals it. Legacy codes name no
/// buyer.
pub fn buyer_key(code: &paycode_core::code::PaymentCode) -> Option<String> {
    let (cii, uin) = (code.cii()?, code.uin()?);
    Some(format!("{cii}{}", &uin[..SLOT_DIGITS]))
}

/// What the service knows about a payment when its insert unit decides its risk.
pub struct PaymentContext<'a> {
    /// `client/merchantId`.
    pub merchant: &'a str,
    pub merchant_mcc: &'a str,
    pub store_mcc: Option<&'a str>,
    pub merchant_country: Option<&'a str>,
    pub merchant_time_zone: &'a str,
    pub wallet: &'a str,
    pub wallet_countries: &'a [String],
    pub wallet_transaction_currencies: &'a [String],
    pub amount: paycode_core::Money,
    pub code_key: &'a [u8],
    pub buyer: Option<&'a str>,
    pub now_ms: i64,
}

impl PaymentContext<'_> {
    /// The MCC the history and MCC rules go by: the store's when it has its own.
    pub fn mcc(&self) -> &str {
        self.store_mcc.unwrap_or(self.merchant_mcc)
    }
}

/// The history scopes of a payment: at its merchant and at its MCC.
pub fn history_scopes(merchant: &str, mcc: &str) -> [String; 2] {
    [format!("M:{merchant}"), format!("MCC:{mcc}")]
}

/// The key a customer's history is kept under: the wallet's customer once known, else the
/// buyer key.
pub fn customer_key(buyer: &str, link: Option<(&str, &str)>) -> String {
    match link {
        Some((wallet, customer_id)) => format!("{wallet}/{customer_id}"),
        None => buyer.to_string(),
    }
}

/// Minutes after local midnight in `time_zone` (UTC when it does not parse).
pub fn local_minute_of_day(time_zone: &str, now_ms: i64) -> u32 {
    use chrono::Timelike;
    let tz: chrono_tz::Tz = time_zone.parse().unwrap_or(chrono_tz::UTC);
    let t = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .with_timezone(&tz);
    t.hour() * 60 + t.minute()
}

/// Inside the unit that inserts the payment: counts the attempt (per merchant, and per buyer
/// when a rule reads buyers), reads what the rule set needs and decides. Counting first locks the
/// merchant's (and the buyer's) counter row, so concurrent payments of one merchant or one device
/// decide one after the other on every engine; the rules see the counts before this attempt.
pub fn decide(
    c: &paycode_db::sql::Connection<'_>,
    set: &paycode_core::risk::RuleSet,
    p: &PaymentContext<'_>,
) -> crate::store::StoreResult<paycode_core::risk::Decision> {
    use crate::store::risk as db;
    use paycode_core::risk::{BuyerFacts, Facts};
    let needs = set.needs();
    let (amount_minor, currency) = (p.amount.amount_minor(), p.amount.currency().code());
    db::count_attempt(c, p.merchant, currency, amount_minor, p.now_ms)?;
    let (with_this_minor, with_this_count) = db::merchant_today(c, p.merchant, currency, p.now_ms)?;
    let mut attempts = Vec::new();
    let mut buyer_facts = None;
    if let Some(buyer) = p.buyer {
        let mut facts = BuyerFacts::default();
        let wants_attempts = needs.buyer_minutes > 0;
        if wants_attempts {
            db::count_buyer_attempt(c, buyer, currency, amount_minor, p.now_ms)?;
        }
        if wants_attempts || needs.buyer_blocked || needs.history {
            let [m, mcc] = history_scopes(p.merchant, p.mcc());
            let read = db::buyer_read(
                c,
                buyer,
                wants_attempts.then(|| p.now_ms - needs.buyer_minutes * 60_000),
                currency,
                needs.history.then_some([m.as_str(), mcc.as_str()]),
            )?;
            attempts = read.attempts;
            // This attempt is in the current minute's row: the rules see the ones before it.
            let this_minute = p.now_ms.div_euclid(60_000);
            if let Some(a) = attempts
                .iter_mut()
                .find(|a| a.minute == this_minute && a.currency.code() == currency)
            {
                a.n_attempts -= 1;
                a.amount_minor -= amount_minor;
            }
            facts.blocked = read.blocked;
            [facts.history_merchant, facts.history_mcc] = read.history;
        }
        buyer_facts = Some(facts);
    }
    if let Some(b) = buyer_facts.as_mut() {
        b.attempts = &attempts;
    }
    let local_minute_of_day = if needs.local_time {
        local_minute_of_day(p.merchant_time_zone, p.now_ms)
    } else {
        0
    };
    let code_seen = needs.code_seen && db::code_seen(c, p.code_key, p.now_ms)?;
    Ok(paycode_core::risk::evaluate(
        set,
        &Facts {
            merchant: p.merchant,
            merchant_mcc: p.merchant_mcc,
            store_mcc: p.store_mcc,
            amount: p.amount,
            now_ms: p.now_ms,
            merchant_today_minor: with_this_minor - amount_minor,
            merchant_today_count: with_this_count - 1,
            code_seen,
            buyer: buyer_facts,
            merchant_country: p.merchant_country,
            wallet_countries: p.wallet_countries,
            wallet_transaction_currencies: p.wallet_transaction_currencies,
            local_minute_of_day,
        },
    ))
}

/// What a payment's success or answer teaches the buyer rules: the link from its buyer key to
/// the wallet's customer, and (when it was paid) one more payment in the customer's history.
/// Written in the unit that applies the wallet's answer; `mcc_of` is asked only when a history
/// is kept.
pub fn learn_from_answer(
    c: &paycode_db::sql::Connection<'_>,
    set: &paycode_core::risk::RuleSet,
    p: &crate::store::PaymentRow,
    mcc_of: &dyn Fn(&crate::store::PaymentRow) -> String,
    paid: bool,
    now_ms: i64,
) -> crate::store::StoreResult<()> {
    use crate::store::risk as db;
    let Some(buyer) = p.buyer.as_deref() else {
        return Ok(());
    };
    if !set.has_buyer_rules() {
        return Ok(());
    }
    if let Some(customer_id) = p.psp_customer_id.as_deref() {
        db::link_buyer(c, buyer, &p.wallet, customer_id, now_ms)?;
    }
    if paid && set.needs().history {
        let key = customer_key(
            buyer,
            p.psp_customer_id
                .as_deref()
                .map(|id| (p.wallet.as_str(), id)),
        );
        let merchant = format!("{}/{}", p.client_id, p.reference_merchant_id);
        let [m, mcc] = history_scopes(&merchant, &mcc_of(p));
        db::record_paid_at(c, &key, [&m, &mcc], &p.currency, p.amount_minor, now_ms)?;
    }
    Ok(())
}

/// A decision's hits as stored JSON: `[{ruleId, action, reason}]`.
pub fn hits_json(hits: &[paycode_core::risk::Hit]) -> String {
    let list: Vec<_> = hits
        .iter()
        .map(|h| {
            serde_json::json!({
                "ruleId": h.rule_id,
                "action": match h.action {
                    Action::Challenge => "CHALLENGE".to_string(),
                    Action::Reject(code) => format!("REJECT {code}"),
                },
                "reason": h.reason,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One rule list, and either the rules it gives or the error message it must contain.
    fn check(json: &str, expect: Result<usize, &str>) {
        match (parse_rules(json), expect) {
            (Ok(rules), Ok(n)) => assert_eq!(rules.len(), n, "{json}"),
            (Err(e), Err(word)) => assert!(
                e.message.contains(word),
                "{json}: {:?} does not contain {word:?}",
                e.message
            ),
            (got, want) => panic!("{json}: expected {want:?}, got {got:?}"),
        }
    }

    #[test]
    fn every_kind_parses_and_errors_name_the_rule_and_field() {
        check(
            r#"[{"id":"a","kind":"CUSTOMER_VELOCITY","windowMinutes":10,"max":3},
                {"id":"b","kind":"CUSTOMER_DAILY_AMOUNT","currency":"SGD","maxMinor":100},
                {"id":"c","kind":"BLOCKED_CUSTOMER"},
                {"id":"d","kind":"UNUSUAL_AMOUNT","scope":"MCC","minHistory":3,"factor":2.5,"action":"CHALLENGE"},
                {"id":"e","kind":"COUNTRY_MISMATCH","mode":"SHADOW"},
                {"id":"f","kind":"CURRENCY_NOT_CONTRACTED"},
                {"id":"g","kind":"HIGH_RISK_MCC","mccs":["7995"],"currency":"SGD","minMinor":1},
                {"id":"h","kind":"OPENING_HOURS","open":"22:00","close":"06:00"},
                {"id":"i","kind":"MAX_AMOUNT","currency":"SGD","maxMinor":5,"code":"PAYMENT_AMOUNT_EXCEED_LIMIT"}]"#,
            Ok(9),
        );
        check(
            r#"[{"id":"ok","kind":"CODE_REPLAY"},{"id":"v","kind":"CUSTOMER_VELOCITY","windowMinutes":2000,"max":3}]"#,
            Err(r#"rules[1] ("v").windowMinutes: must be at most 1440"#),
        );
        check(
            r#"[{"id":"u","kind":"UNUSUAL_AMOUNT","scope":"MERCHANT","minHistory":3,"factor":1}]"#,
            Err(r#"("u").factor: must be above 1"#),
        );
        check(
            r#"[{"id":"h","kind":"OPENING_HOURS","open":"7:00","close":"22:00"}]"#,
            Err(r#"("h").open: must be a local time HH:MM"#),
        );
        check(
            r#"[{"id":"x","kind":"MAX_AMOUNT","currency":"SGD","maxMinor":5,"windowMinutes":3}]"#,
            Err(r#"("x").windowMinutes: is not a parameter of MAX_AMOUNT"#),
        );
        check(
            r#"[{"id":"c","kind":"BLOCKED_CUSTOMER","action":"CHALLENGE","code":"RISK_REJECT"}]"#,
            Err("a CHALLENGE rule takes no code"),
        );
        check(
            r#"[{"id":"c","kind":"BLOCKED_CUSTOMER","mode":"LOUD"}]"#,
            Err(r#"("c").mode: "LOUD" is not ENFORCE or SHADOW"#),
        );
        check(
            r#"[{"id":"c","kind":"BLOCKED_CUSTOMER","code":"SUCCESS"}]"#,
            Err("not a failure result code"),
        );
        check(
            r#"[{"id":"c","kind":"NOPE"}]"#,
            Err(r#"("c").kind: unknown kind "NOPE""#),
        );
        check(
            r#"[{"id":"c","kind":"CODE_REPLAY"},{"id":"c","kind":"CODE_REPLAY"}]"#,
            Err("rules[1] (\"c\").id: must be present and unique"),
        );
        check(
            r#"[{"id":"c","kind":"CODE_REPLAY","colour":"red"}]"#,
            Err("unknown field `colour`"),
        );
    }

    /// Every kind the parser reads is named back the same way (the dry run's report uses it):
    /// the example file has a rule of each kind.
    #[test]
    fn kind_names_round_trip_through_the_parser() {
        let example = toml_free_example();
        let rules = parse_rules(&example.to_string()).unwrap();
        assert_eq!(rules.len(), 14);
        let kinds: std::collections::HashSet<_> =
            rules.iter().map(|r| kind_name(&r.kind)).collect();
        assert_eq!(kinds.len(), 14, "one of each kind");
        for (rule, json) in rules.iter().zip(example.as_array().unwrap()) {
            assert_eq!(kind_name(&rule.kind), json["kind"]);
        }
    }

    /// `docs/risk-rules.toml` as the JSON list the acquirer takes (the binary converts files).
    fn toml_free_example() -> serde_json::Value {
        let mut rules = Vec::new();
        let mut cur = serde_json::Map::new();
        for line in include_str!("../../../docs/risk-rules.toml").lines() {
            let line = line.trim();
            if line == "[[rule]]" {
                if !cur.is_empty() {
                    rules.push(serde_json::Value::Object(std::mem::take(&mut cur)));
                }
            } else if let Some((k, v)) = line.split_once(" = ") {
                let v: serde_json::Value =
                    serde_json::from_str(v).expect("simple TOML values are JSON");
                cur.insert(k.to_string(), v);
            }
        }
        rules.push(serde_json::Value::Object(cur));
        serde_json::Value::Array(rules)
    }

    #[test]
    fn the_buyer_key_is_the_cii_and_the_slot() {
        let code = paycode_core::code::PaymentCode::parse("281012021234567890123456").unwrap();
        assert_eq!(buyer_key(&code).as_deref(), Some("28101212345678"));
        let legacy = paycode_core::code::PaymentCode::parse("28123456789012345").unwrap();
        assert_eq!(buyer_key(&legacy), None);
    }

    /// One step of a random history: an attempt by a buyer at a merchant, or a wallet answer
    /// linking a buyer key to a customer.
    #[derive(Debug, Clone)]
    enum Step {
        Attempt {
            buyer: usize,
            merchant: usize,
            usd: bool,
            amount_minor: i64,
            after_s: i64,
        },
        Link {
            buyer: usize,
            customer: usize,
        },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..4usize, 0..3usize, any::<bool>(), 1..10_000i64, 0..900i64).prop_map(
                |(buyer, merchant, usd, amount_minor, after_s)| Step::Attempt {
                    buyer,
                    merchant,
                    usd,
                    amount_minor,
                    after_s,
                }
            ),
            1 => (0..4usize, 0..2usize).prop_map(|(buyer, customer)| Step::Link { buyer, customer }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The stored counters (merchant days, buyer minutes summed over every key of a
        /// customer) never drift from a naive model that keeps every attempt in a list.
        #[test]
        fn counters_agree_with_a_naive_model(steps in proptest::collection::vec(step(), 1..60)) {
            use crate::store::risk as db;
            let c = crate::store::test_support::conn();
            // 2026-12-01 23:40 UTC: histories cross midnight.
            let mut now_ms = 1_796_168_400_000i64;
            let mut attempts: Vec<(usize, usize, &str, i64, i64)> = Vec::new();
            let mut links: std::collections::HashMap<usize, usize> = Default::default();
            let key = |b: usize| format!("2810120000000{b}");
            for s in &steps {
                match s {
                    Step::Attempt { buyer, merchant, usd, amount_minor, after_s } => {
                        now_ms += after_s * 1000;
                        let cur = if *usd { "USD" } else { "SGD" };
                        let m = format!("C/M{merchant}");
                        db::count_attempt(&c, &m, cur, *amount_minor, now_ms).unwrap();
                        db::count_buyer_attempt(&c, &key(*buyer), cur, *amount_minor, now_ms).unwrap();
                        attempts.push((*buyer, *merchant, cur, *amount_minor, now_ms));
                    }
                    Step::Link { buyer, customer } => {
                        db::link_buyer(&c, &key(*buyer), "w", &format!("CUST{customer}"), now_ms).unwrap();
                        links.insert(*buyer, *customer);
                    }
                }
                // Check every buyer and merchant after every step.
                let day = now_ms.div_euclid(86_400_000);
                for m in 0..3 {
                    for cur in ["SGD", "USD"] {
                        let want_amount: i64 = attempts.iter()
                            .filter(|a| a.1 == m && a.2 == cur && a.4.div_euclid(86_400_000) == day)
                            .map(|a| a.3).sum();
                        let want_count = attempts.iter()
                            .filter(|a| a.1 == m && a.4.div_euclid(86_400_000) == day).count() as i64;
                        let got = db::merchant_today(&c, &format!("C/M{m}"), cur, now_ms).unwrap();
                        proptest::prop_assert_eq!(got, (want_amount, want_count));
                    }
                }
                let since_ms = now_ms - 600_000;
                for b in 0..4 {
                    let same = |other: usize| other == b
                        || links.get(&b).is_some_and(|c| links.get(&other) == Some(c));
                    let mut want: std::collections::BTreeMap<(i64, String), (i64, i64)> = Default::default();
                    for a in attempts.iter().filter(|a| same(a.0) && a.4.div_euclid(60_000) >= since_ms.div_euclid(60_000)) {
                        let e = want.entry((a.4.div_euclid(60_000), a.2.to_string())).or_default();
                        e.0 += a.3;
                        e.1 += 1;
                    }
                    let got: std::collections::BTreeMap<(i64, String), (i64, i64)> =
                        db::buyer_read(&c, &key(b), Some(since_ms), "SGD", None).unwrap().attempts.into_iter()
                            .map(|a| ((a.minute, a.currency.code().to_string()), (a.amount_minor, a.n_attempts)))
                            .collect();
                    proptest::prop_assert_eq!(got, want, "buyer {}", b);
                }
            }
        }
    }
}
