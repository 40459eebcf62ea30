//! The acquirer's risk rules, evaluated for every payment before it is routed to a wallet.
//!
//! Rules are data: each has an id, a kind with its parameters, and the result code it answers
//! with. [`evaluate`] runs them in order over the facts of one payment and returns the first
//! rejection (with the rule's id and a reason) or an allow that lists every rule it checked, so
//! each decision can be recorded with the rules behind it. The wallet applies its own users'
//! limits and asks for the password; the acquirer's rules protect sellers and transactions.

use crate::{Currency, Money, ResultCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// Transaction: no single payment above this amount in this currency.
    MaxAmount { currency: Currency, max_minor: i64 },
    /// Seller: a merchant's payments of the day (attempts included) may not total more.
    MerchantDailyAmount {
        merchant: Option<String>,
        currency: Currency,
        max_minor: i64,
    },
    /// Seller velocity: at most this many payment attempts per merchant per day.
    MerchantDailyCount { merchant: Option<String>, max: i64 },
    /// Seller: no payments for this merchant (`client/merchantId`).
    BlockedMerchant { merchant: String },
    /// Seller: no payments for merchants or stores with this MCC.
    BlockedMcc { mcc: String },
    /// Transaction: a code the acquirer has already seen in another payment is not sent on.
    CodeReplay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    /// What a rejection answers with (e.g. `RISK_REJECT`, `PAYMENT_AMOUNT_EXCEED_LIMIT`).
    pub code: ResultCode,
}

/// What is known about a payment when it is evaluated.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// `client/merchantId`.
    pub merchant: &'a str,
    pub merchant_mcc: &'a str,
    pub store_mcc: Option<&'a str>,
    pub amount: Money,
    /// The merchant's attempts so far today, in the payment's currency and in count.
    pub merchant_today_minor: i64,
    pub merchant_today_count: i64,
    /// Whether this code was already used in another payment.
    pub code_seen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        checked: Vec<String>,
    },
    Reject {
        rule_id: String,
        code: ResultCode,
        reason: String,
    },
}

impl Decision {
    /// One line for the payment's timeline.
    pub fn describe(&self) -> String {
        match self {
            Decision::Allow { checked } if checked.is_empty() => "allow (no rules)".to_string(),
            Decision::Allow { checked } => format!("allow (rules checked: {})", checked.join(", ")),
            Decision::Reject {
                rule_id,
                code,
                reason,
            } => format!("reject {code} by rule {rule_id}: {reason}"),
        }
    }
}

fn applies(scope: &Option<String>, merchant: &str) -> bool {
    scope.as_deref().is_none_or(|m| m == merchant)
}

/// Why `rule` rejects the payment, or `None` when it lets it through.
fn check(rule: &Rule, f: &Facts<'_>) -> Option<String> {
    let amount = f.amount;
    match &rule.kind {
        RuleKind::MaxAmount {
            currency,
            max_minor,
        } => (amount.currency() == *currency && amount.amount_minor() > *max_minor).then(|| {
            format!(
                "{amount} is above the single-payment limit of {}",
                Money::new(*max_minor, *currency)
            )
        }),
        RuleKind::MerchantDailyAmount {
            merchant,
            currency,
            max_minor,
        } => {
            let total = f.merchant_today_minor.saturating_add(amount.amount_minor());
            (applies(merchant, f.merchant) && amount.currency() == *currency && total > *max_minor)
                .then(|| {
                    format!(
                        "the merchant's payments today would reach {}, above {}",
                        Money::new(total, *currency),
                        Money::new(*max_minor, *currency)
                    )
                })
        }
        RuleKind::MerchantDailyCount { merchant, max } => (applies(merchant, f.merchant)
            && f.merchant_today_count >= *max)
            .then(|| format!("the merchant already has {max} payment attempts today")),
        RuleKind::BlockedMerchant { merchant } => {
            (merchant == f.merchant).then(|| "the merchant is blocked".to_string())
        }
        RuleKind::BlockedMcc { mcc } => (f.merchant_mcc == mcc || f.store_mcc == Some(mcc))
            .then(|| format!("merchant category {mcc} is blocked")),
        RuleKind::CodeReplay => f
            .code_seen
            .then(|| "this payment code was already used in another payment".to_string()),
    }
}

/// Runs the rules in order; the first that rejects decides.
pub fn evaluate(rules: &[Rule], facts: &Facts<'_>) -> Decision {
    let mut checked = Vec::with_capacity(rules.len());
    for rule in rules {
        if let Some(reason) = check(rule, facts) {
            return Decision::Reject {
                rule_id: rule.id.clone(),
                code: rule.code,
                reason,
            };
        }
        checked.push(rule.id.clone());
    }
    Decision::Allow { checked }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgd(v: i64) -> Money {
        Money::new(v, Currency::parse("SGD").unwrap())
    }

    fn facts(amount: Money) -> Facts<'static> {
        Facts {
            merchant: "C/M1",
            merchant_mcc: "5812",
            store_mcc: Some("5814"),
            amount,
            merchant_today_minor: 9_000,
            merchant_today_count: 10,
            code_seen: false,
        }
    }

    fn rule(id: &str, kind: RuleKind, code: ResultCode) -> Rule {
        Rule {
            id: id.into(),
            kind,
            code,
        }
    }

    #[test]
    fn first_rejecting_rule_decides_and_allow_lists_every_rule() {
        let c = Currency::parse("SGD").unwrap();
        let rules = vec![
            rule(
                "max",
                RuleKind::MaxAmount {
                    currency: c,
                    max_minor: 5_000,
                },
                ResultCode::RISK_REJECT,
            ),
            rule(
                "daily",
                RuleKind::MerchantDailyAmount {
                    merchant: None,
                    currency: c,
                    max_minor: 10_000,
                },
                ResultCode::PAYMENT_AMOUNT_EXCEED_LIMIT,
            ),
            rule(
                "count",
                RuleKind::MerchantDailyCount {
                    merchant: Some("C/M2".into()),
                    max: 1,
                },
                ResultCode::PAYMENT_COUNT_EXCEED_LIMIT,
            ),
            rule(
                "mcc",
                RuleKind::BlockedMcc { mcc: "7995".into() },
                ResultCode::RISK_REJECT,
            ),
            rule("replay", RuleKind::CodeReplay, ResultCode::EXPIRED_CODE),
        ];
        assert_eq!(
            evaluate(&rules, &facts(sgd(500))),
            Decision::Allow {
                checked: vec![
                    "max".into(),
                    "daily".into(),
                    "count".into(),
                    "mcc".into(),
                    "replay".into()
                ]
            }
        );
        let d = evaluate(&rules, &facts(sgd(6_000)));
        assert!(
            matches!(&d, Decision::Reject { rule_id, code: ResultCode::RISK_REJECT, .. } if rule_id == "max"),
            "{d:?}"
        );
        let d = evaluate(&rules, &facts(sgd(1_500)));
        assert!(
            matches!(&d, Decision::Reject { rule_id, .. } if rule_id == "daily"),
            "{d:?}"
        );
        assert!(
            d.describe()
                .contains("PAYMENT_AMOUNT_EXCEED_LIMIT by rule daily")
        );
        let mut f = facts(sgd(100));
        f.code_seen = true;
        assert!(matches!(
            evaluate(&rules, &f),
            Decision::Reject {
                code: ResultCode::EXPIRED_CODE,
                ..
            }
        ));
        f.code_seen = false;
        f.store_mcc = Some("7995");
        assert!(
            matches!(evaluate(&rules, &f), Decision::Reject { rule_id, .. } if rule_id == "mcc")
        );
        // A rule in another currency does not apply.
        let jpy = Money::new(1_000_000, Currency::parse("JPY").unwrap());
        assert!(matches!(
            evaluate(&rules[..1], &facts(jpy)),
            Decision::Allow { .. }
        ));
    }
}
