//! The acquirer's risk rules, evaluated for every payment before it is routed to a wallet.
//!
//! Rules are data: each has an id, a kind with its parameters, an **action** (reject with a
//! result code, or **challenge**: ask the wallet to require the user's password even under the
//! user's password-free limit) and a **mode** (enforced, or *shadow*: evaluated and recorded,
//! never enforced). [`evaluate`] runs every rule over the [`Facts`] of one payment and returns a
//! [`Decision`]: the verdict, every enforced rule that fired, every shadow rule that fired, and
//! the version of the rule set, so each decision can be recorded with the rules behind it.
//!
//! The verdict: the first enforced rejecting rule (in the rule set's order) decides the code;
//! otherwise any enforced challenging rule makes it a challenge; otherwise allow.
//!
//! Three families, as SPEC §7 names them:
//! - **buyer**: attempts per customer within a window and per day, blocked customers, an amount
//!   far above the customer's own history (see [`AmountHistory`] for the statistic);
//! - **seller**: per-merchant daily amount and count, blocked merchants and MCCs;
//! - **transaction**: single-payment ceilings, code replay, merchant country versus the wallet's
//!   home countries, a currency the wallet is not contracted for, a high-risk MCC above an
//!   amount, and opening hours per merchant.
//!
//! The wallet applies its own users' limits and asks for the password; a challenge from here
//! composes with them (the wallet may still reject).

use crate::{Currency, Money, ResultCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryScope {
    /// The customer's payments at this merchant.
    Merchant,
    /// The customer's payments at merchants of this MCC.
    Mcc,
}

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
    /// Buyer velocity: at most `max` attempts by one customer within the last `window_minutes`
    /// whole minutes (the current one included), across merchants and terminals.
    CustomerVelocity { window_minutes: i64, max: i64 },
    /// Buyer: one customer's attempts of the UTC day in `currency` may not total more.
    CustomerDailyAmount { currency: Currency, max_minor: i64 },
    /// Buyer: the customer is on the blocked list (set by an operator or reported by a wallet).
    BlockedCustomer,
    /// Buyer: the amount is above `factor_pct`/100 times the customer's mean paid amount in this
    /// currency at this merchant (or MCC), once the customer has `min_history` paid payments.
    UnusualAmount {
        scope: HistoryScope,
        min_history: i64,
        factor_pct: i64,
    },
    /// Transaction: the merchant's country is not one of the wallet's home countries (only when
    /// both are known).
    CountryMismatch,
    /// Transaction: the wallet lists the transaction currencies it is contracted for and this
    /// payment's currency is not among them.
    CurrencyNotContracted,
    /// Transaction: a payment at one of these MCCs at or above this amount.
    HighRiskMcc {
        mccs: Vec<String>,
        currency: Currency,
        min_minor: i64,
    },
    /// Transaction: payments only between these local times of the merchant's time zone
    /// (minutes after midnight; `open > close` spans midnight).
    OpeningHours {
        merchant: Option<String>,
        open_minute: u32,
        close_minute: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reject(ResultCode),
    Challenge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Evaluated and recorded, never enforced: to see what a rule would do before it counts.
    Shadow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    pub action: Action,
    pub mode: Mode,
}

/// What the rule set needs read from the store for one payment, so that a set without buyer
/// rules costs no buyer query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The customer's attempts since this many minutes back (0: none).
    pub buyer_minutes: i64,
    pub buyer_blocked: bool,
    pub history: bool,
    pub code_seen: bool,
    /// The merchant's local time of day.
    pub local_time: bool,
}

/// A versioned list of rules: every decision names the version it was made under.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSet {
    pub version: i64,
    pub rules: Vec<Rule>,
}

impl RuleSet {
    pub fn needs(&self) -> Needs {
        let mut n = Needs::default();
        for r in &self.rules {
            match &r.kind {
                RuleKind::CustomerVelocity { window_minutes, .. } => {
                    n.buyer_minutes = n.buyer_minutes.max(*window_minutes)
                }
                // Today's attempts: up to a whole day back.
                RuleKind::CustomerDailyAmount { .. } => n.buyer_minutes = MINUTES_PER_DAY,
                RuleKind::BlockedCustomer => n.buyer_blocked = true,
                RuleKind::UnusualAmount { .. } => n.history = true,
                RuleKind::CodeReplay => n.code_seen = true,
                RuleKind::OpeningHours { .. } => n.local_time = true,
                _ => {}
            }
        }
        n
    }

    /// Whether any rule reads buyer data (so the customer behind a code is worth recording).
    pub fn has_buyer_rules(&self) -> bool {
        let n = self.needs();
        n.buyer_minutes > 0 || n.buyer_blocked || n.history
    }
}

pub const MINUTES_PER_DAY: i64 = 1_440;

/// One customer's attempts in one minute and currency (the store keeps them per minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteAttempts {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub currency: Currency,
    pub amount_minor: i64,
    pub n_attempts: i64,
}

/// A customer's paid payments in one currency at one merchant (or MCC): how many and their
/// total. Memory is bounded: one row per (customer, merchant or MCC, currency), and when the count
/// reaches [`AmountHistory::HALVE_AT`] both numbers are halved, so the mean follows the last
/// thousand or so payments instead of all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmountHistory {
    pub n_payments: i64,
    pub total_minor: i64,
}

impl AmountHistory {
    pub const HALVE_AT: i64 = 1_000;

    /// The history after one more paid payment of `amount_minor`.
    pub fn with_payment(self, amount_minor: i64) -> AmountHistory {
        let mut h = AmountHistory {
            n_payments: self.n_payments + 1,
            total_minor: self.total_minor.saturating_add(amount_minor),
        };
        if h.n_payments >= Self::HALVE_AT {
            h.n_payments /= 2;
            h.total_minor /= 2;
        }
        h
    }
}

/// What the buyer rules know about the customer behind the code.
#[derive(Debug, Clone, Default)]
pub struct BuyerFacts<'a> {
    /// The customer's earlier attempts (this one excluded), per minute.
    pub attempts: &'a [MinuteAttempts],
    pub blocked: bool,
    pub history_merchant: AmountHistory,
    pub history_mcc: AmountHistory,
}

/// What is known about a payment when it is evaluated.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// `client/merchantId`.
    pub merchant: &'a str,
    pub merchant_mcc: &'a str,
    pub store_mcc: Option<&'a str>,
    pub amount: Money,
    pub now_ms: i64,
    /// The merchant's attempts so far today, in the payment's currency and in count.
    pub merchant_today_minor: i64,
    pub merchant_today_count: i64,
    /// Whether this code was already used in another payment.
    pub code_seen: bool,
    /// `None` when the code names no customer (a legacy code).
    pub buyer: Option<BuyerFacts<'a>>,
    pub merchant_country: Option<&'a str>,
    pub wallet_countries: &'a [String],
    pub wallet_transaction_currencies: &'a [String],
    /// Minutes after local midnight in the merchant's time zone.
    pub local_minute_of_day: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Challenge,
    Reject(ResultCode),
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "ALLOW",
            Verdict::Challenge => "CHALLENGE",
            Verdict::Reject(_) => "REJECT",
        }
    }
}

/// One rule that fired, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule_id: String,
    pub action: Action,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub version: i64,
    pub verdict: Verdict,
    /// Enforced rules that fired, in rule order.
    pub hits: Vec<Hit>,
    /// Shadow rules that fired, in rule order.
    pub shadow: Vec<Hit>,
    pub n_checked: usize,
}

impl Decision {
    /// The enforced rule that decided a rejection.
    pub fn deciding_hit(&self) -> Option<&Hit> {
        match self.verdict {
            Verdict::Allow => None,
            Verdict::Reject(_) => self
                .hits
                .iter()
                .find(|h| matches!(h.action, Action::Reject(_))),
            Verdict::Challenge => self.hits.first(),
        }
    }

    /// Whether anything fired, enforced or shadow (such decisions are stored on their own).
    pub fn anything_fired(&self) -> bool {
        !self.hits.is_empty() || !self.shadow.is_empty()
    }

    /// One line for the payment's timeline.
    pub fn describe(&self) -> String {
        let hits = |hits: &[Hit]| {
            hits.iter()
                .map(|h| format!("{} ({})", h.rule_id, h.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut out = match self.verdict {
            Verdict::Allow => format!(
                "allow (rule set v{}, {} rules checked)",
                self.version, self.n_checked
            ),
            Verdict::Challenge => format!(
                "challenge by rule set v{}: {}",
                self.version,
                hits(&self.hits)
            ),
            Verdict::Reject(code) => format!(
                "reject {code} by rule set v{}: {}",
                self.version,
                hits(&self.hits)
            ),
        };
        if !self.shadow.is_empty() {
            out.push_str(&format!("; shadow: {}", hits(&self.shadow)));
        }
        out
    }
}

fn applies(scope: &Option<String>, merchant: &str) -> bool {
    scope.as_deref().is_none_or(|m| m == merchant)
}

fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

/// Why `rule` fires for the payment, or `None` when it lets it through.
fn check(rule: &Rule, f: &Facts<'_>) -> Option<String> {
    let amount = f.amount;
    let now_minute = minute_of(f.now_ms);
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
        RuleKind::CustomerVelocity {
            window_minutes,
            max,
        } => {
            let buyer = f.buyer.as_ref()?;
            let from = now_minute - window_minutes + 1;
            let n: i64 = buyer
                .attempts
                .iter()
                .filter(|a| a.minute >= from && a.minute <= now_minute)
                .map(|a| a.n_attempts)
                .sum();
            (n >= *max).then(|| {
                format!("the customer already made {n} payment attempts in the last {window_minutes} min (at most {max})")
            })
        }
        RuleKind::CustomerDailyAmount {
            currency,
            max_minor,
        } => {
            let buyer = f.buyer.as_ref()?;
            if amount.currency() != *currency {
                return None;
            }
            let day_start = now_minute - now_minute.rem_euclid(MINUTES_PER_DAY);
            let today: i64 = buyer
                .attempts
                .iter()
                .filter(|a| a.minute >= day_start && a.currency == *currency)
                .map(|a| a.amount_minor)
                .sum();
            let total = today.saturating_add(amount.amount_minor());
            (total > *max_minor).then(|| {
                format!(
                    "the customer's payments today would reach {}, above {}",
                    Money::new(total, *currency),
                    Money::new(*max_minor, *currency)
                )
            })
        }
        RuleKind::BlockedCustomer => f
            .buyer
            .as_ref()
            .filter(|b| b.blocked)
            .map(|_| "the customer is blocked".to_string()),
        RuleKind::UnusualAmount {
            scope,
            min_history,
            factor_pct,
        } => {
            let buyer = f.buyer.as_ref()?;
            let h = match scope {
                HistoryScope::Merchant => buyer.history_merchant,
                HistoryScope::Mcc => buyer.history_mcc,
            };
            // amount > factor · (total / n), in integers: amount · n · 100 > factor_pct · total.
            let above = i128::from(amount.amount_minor()) * i128::from(h.n_payments) * 100
                > i128::from(*factor_pct) * i128::from(h.total_minor);
            (h.n_payments >= *min_history && h.n_payments > 0 && above).then(|| {
                let mean = Money::new(h.total_minor / h.n_payments, amount.currency());
                let at = match scope {
                    HistoryScope::Merchant => "this merchant",
                    HistoryScope::Mcc => "this merchant category",
                };
                format!(
                    "{amount} is above {}.{:02}× the customer's mean of {mean} over {} payments at {at}",
                    factor_pct / 100,
                    factor_pct % 100,
                    h.n_payments
                )
            })
        }
        RuleKind::CountryMismatch => {
            let country = f.merchant_country?;
            (!f.wallet_countries.is_empty() && !f.wallet_countries.iter().any(|c| c == country))
                .then(|| {
                    format!(
                        "the merchant is in {country}; the wallet's home countries are {}",
                        f.wallet_countries.join(", ")
                    )
                })
        }
        RuleKind::CurrencyNotContracted => {
            let c = amount.currency().code();
            (!f.wallet_transaction_currencies.is_empty()
                && !f.wallet_transaction_currencies.iter().any(|x| x == c))
            .then(|| {
                format!(
                    "the wallet is not contracted for {c} (contracted: {})",
                    f.wallet_transaction_currencies.join(", ")
                )
            })
        }
        RuleKind::HighRiskMcc {
            mccs,
            currency,
            min_minor,
        } => {
            let mcc = [Some(f.merchant_mcc), f.store_mcc]
                .into_iter()
                .flatten()
                .find(|m| mccs.iter().any(|x| x == m))?;
            (amount.currency() == *currency && amount.amount_minor() >= *min_minor).then(|| {
                format!(
                    "{amount} at high-risk category {mcc} (threshold {})",
                    Money::new(*min_minor, *currency)
                )
            })
        }
        RuleKind::OpeningHours {
            merchant,
            open_minute,
            close_minute,
        } => {
            if !applies(merchant, f.merchant) {
                return None;
            }
            let t = f.local_minute_of_day;
            let open = if open_minute <= close_minute {
                (*open_minute..*close_minute).contains(&t)
            } else {
                t >= *open_minute || t < *close_minute
            };
            let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
            (!open).then(|| {
                format!(
                    "{} local time is outside the merchant's hours {}–{}",
                    hm(t),
                    hm(*open_minute),
                    hm(*close_minute)
                )
            })
        }
    }
}

/// Runs every rule of the set over the payment's facts.
pub fn evaluate(set: &RuleSet, facts: &Facts<'_>) -> Decision {
    let mut d = Decision {
        version: set.version,
        verdict: Verdict::Allow,
        hits: Vec::new(),
        shadow: Vec::new(),
        n_checked: set.rules.len(),
    };
    for rule in &set.rules {
        let Some(reason) = check(rule, facts) else {
            continue;
        };
        let hit = Hit {
            rule_id: rule.id.clone(),
            action: rule.action,
            reason,
        };
        if rule.mode == Mode::Shadow {
            d.shadow.push(hit);
            continue;
        }
        d.verdict = match (d.verdict, rule.action) {
            (Verdict::Reject(code), _) => Verdict::Reject(code),
            (_, Action::Reject(code)) => Verdict::Reject(code),
            (_, Action::Challenge) => Verdict::Challenge,
        };
        d.hits.push(hit);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    fn sgd(v: i64) -> Money {
        Money::new(v, cur("SGD"))
    }

    /// 2026-12-01 10:00 UTC.
    const NOW_MS: i64 = 1_796_119_200_000;

    fn facts(amount: Money) -> Facts<'static> {
        Facts {
            merchant: "C/M1",
            merchant_mcc: "5812",
            store_mcc: Some("5814"),
            amount,
            now_ms: NOW_MS,
            merchant_today_minor: 9_000,
            merchant_today_count: 10,
            code_seen: false,
            buyer: Some(BuyerFacts::default()),
            merchant_country: Some("SG"),
            wallet_countries: &[],
            wallet_transaction_currencies: &[],
            local_minute_of_day: 600,
        }
    }

    fn rule(kind: RuleKind) -> Rule {
        Rule {
            id: "r".into(),
            kind,
            action: Action::Reject(ResultCode::RISK_REJECT),
            mode: Mode::Enforce,
        }
    }

    /// One rule, one payment: whether it fires, and (when it does) a word its reason contains.
    fn check_rule(kind: RuleKind, f: &Facts<'_>, expect: Option<&str>) {
        let got = check(&rule(kind.clone()), f);
        match (expect, &got) {
            (None, None) => {}
            (Some(word), Some(reason)) if reason.contains(word) => {}
            _ => panic!("{kind:?}: expected {expect:?}, got {got:?}"),
        }
    }

    fn attempts(list: &[(i64, &str, i64, i64)]) -> Vec<MinuteAttempts> {
        list.iter()
            .map(|&(ago_min, c, amount_minor, n_attempts)| MinuteAttempts {
                minute: minute_of(NOW_MS) - ago_min,
                currency: cur(c),
                amount_minor,
                n_attempts,
            })
            .collect()
    }

    #[test]
    fn seller_and_transaction_rules() {
        let c = cur("SGD");
        let max = RuleKind::MaxAmount {
            currency: c,
            max_minor: 5_000,
        };
        check_rule(max.clone(), &facts(sgd(5_000)), None);
        check_rule(
            max.clone(),
            &facts(sgd(5_001)),
            Some("single-payment limit"),
        );
        check_rule(max, &facts(Money::new(9_999_999, cur("JPY"))), None);
        let daily = |merchant: Option<&str>| RuleKind::MerchantDailyAmount {
            merchant: merchant.map(str::to_string),
            currency: c,
            max_minor: 10_000,
        };
        check_rule(daily(None), &facts(sgd(1_000)), None);
        check_rule(daily(None), &facts(sgd(1_001)), Some("would reach"));
        check_rule(daily(Some("C/M2")), &facts(sgd(1_001)), None);
        let count = |max| RuleKind::MerchantDailyCount {
            merchant: None,
            max,
        };
        check_rule(count(11), &facts(sgd(1)), None);
        check_rule(count(10), &facts(sgd(1)), Some("10 payment attempts"));
        check_rule(
            RuleKind::BlockedMerchant {
                merchant: "C/M1".into(),
            },
            &facts(sgd(1)),
            Some("blocked"),
        );
        check_rule(
            RuleKind::BlockedMcc { mcc: "5814".into() },
            &facts(sgd(1)),
            Some("5814"),
        );
        check_rule(RuleKind::CodeReplay, &facts(sgd(1)), None);
        let mut f = facts(sgd(1));
        f.code_seen = true;
        check_rule(RuleKind::CodeReplay, &f, Some("already used"));
        let high = RuleKind::HighRiskMcc {
            mccs: vec!["5814".into(), "7995".into()],
            currency: c,
            min_minor: 2_000,
        };
        check_rule(high.clone(), &facts(sgd(1_999)), None);
        check_rule(high.clone(), &facts(sgd(2_000)), Some("5814"));
        let mut f = facts(sgd(2_000));
        f.store_mcc = None;
        check_rule(high, &f, None);
    }

    #[test]
    fn country_currency_and_opening_hours() {
        let home = ["CN".to_string(), "HK".to_string()];
        let mut f = facts(sgd(100));
        check_rule(RuleKind::CountryMismatch, &f, None);
        f.wallet_countries = &home;
        check_rule(RuleKind::CountryMismatch, &f, Some("SG"));
        f.merchant_country = Some("HK");
        check_rule(RuleKind::CountryMismatch, &f, None);
        f.merchant_country = None;
        check_rule(RuleKind::CountryMismatch, &f, None);

        let contracted = ["USD".to_string()];
        let mut f = facts(sgd(100));
        check_rule(RuleKind::CurrencyNotContracted, &f, None);
        f.wallet_transaction_currencies = &contracted;
        check_rule(RuleKind::CurrencyNotContracted, &f, Some("SGD"));
        f.amount = Money::new(100, cur("USD"));
        check_rule(RuleKind::CurrencyNotContracted, &f, None);

        let hours = |open_minute, close_minute| RuleKind::OpeningHours {
            merchant: None,
            open_minute,
            close_minute,
        };
        let at = |minute| {
            let mut f = facts(sgd(1));
            f.local_minute_of_day = minute;
            f
        };
        check_rule(hours(480, 1_320), &at(480), None);
        check_rule(hours(480, 1_320), &at(1_319), None);
        check_rule(hours(480, 1_320), &at(1_320), Some("22:00 local time"));
        check_rule(hours(480, 1_320), &at(479), Some("07:59"));
        // Across midnight: 22:00–02:00.
        check_rule(hours(1_320, 120), &at(1_400), None);
        check_rule(hours(1_320, 120), &at(60), None);
        check_rule(hours(1_320, 120), &at(600), Some("outside"));
    }

    #[test]
    fn buyer_rules() {
        let velocity = |window_minutes, max| RuleKind::CustomerVelocity {
            window_minutes,
            max,
        };
        // Two attempts this minute, one 4 minutes ago, five an hour ago.
        let seen = attempts(&[(0, "SGD", 200, 2), (4, "SGD", 100, 1), (60, "USD", 900, 5)]);
        let mut f = facts(sgd(100));
        f.buyer = Some(BuyerFacts {
            attempts: &seen,
            ..BuyerFacts::default()
        });
        check_rule(velocity(5, 4), &f, None);
        check_rule(velocity(5, 3), &f, Some("already made 3"));
        check_rule(velocity(4, 3), &f, None);
        check_rule(velocity(61, 8), &f, Some("already made 8"));
        let daily = |max_minor| RuleKind::CustomerDailyAmount {
            currency: cur("SGD"),
            max_minor,
        };
        check_rule(daily(400), &f, None);
        check_rule(daily(399), &f, Some("would reach"));
        // Yesterday's attempts do not count today (NOW is 10:00 UTC: 601 minutes ago is yesterday).
        let old = attempts(&[(601, "SGD", 1_000_000, 1)]);
        let mut g = facts(sgd(100));
        g.buyer = Some(BuyerFacts {
            attempts: &old,
            ..BuyerFacts::default()
        });
        check_rule(daily(399), &g, None);

        check_rule(RuleKind::BlockedCustomer, &f, None);
        let mut b = facts(sgd(100));
        b.buyer = Some(BuyerFacts {
            blocked: true,
            ..BuyerFacts::default()
        });
        check_rule(RuleKind::BlockedCustomer, &b, Some("blocked"));
        // A code that names no customer fires no buyer rule.
        let mut none = facts(sgd(100));
        none.buyer = None;
        check_rule(RuleKind::BlockedCustomer, &none, None);
        check_rule(velocity(5, 0), &none, None);

        let unusual = |scope, min_history| RuleKind::UnusualAmount {
            scope,
            min_history,
            factor_pct: 500,
        };
        let mut u = facts(sgd(5_001));
        u.buyer = Some(BuyerFacts {
            history_merchant: AmountHistory {
                n_payments: 4,
                total_minor: 4_000,
            },
            history_mcc: AmountHistory {
                n_payments: 2,
                total_minor: 20_000,
            },
            ..BuyerFacts::default()
        });
        check_rule(
            unusual(HistoryScope::Merchant, 4),
            &u,
            Some("5.00× the customer's mean of 10.00 SGD over 4 payments"),
        );
        check_rule(unusual(HistoryScope::Merchant, 5), &u, None);
        check_rule(unusual(HistoryScope::Mcc, 2), &u, None);
        u.amount = sgd(5_000);
        check_rule(unusual(HistoryScope::Merchant, 4), &u, None);
        let mut empty = facts(sgd(1_000_000));
        empty.buyer = Some(BuyerFacts::default());
        check_rule(unusual(HistoryScope::Merchant, 0), &empty, None);
    }

    #[test]
    fn history_is_bounded_and_keeps_its_mean() {
        let mut h = AmountHistory::default();
        for _ in 0..10_000 {
            h = h.with_payment(250);
        }
        assert!(h.n_payments < AmountHistory::HALVE_AT, "{h:?}");
        assert_eq!(h.total_minor / h.n_payments, 250);
    }

    #[test]
    fn verdict_shadow_and_version() {
        let c = cur("SGD");
        let mut set = RuleSet {
            version: 7,
            rules: vec![
                Rule {
                    id: "watch".into(),
                    kind: RuleKind::MaxAmount {
                        currency: c,
                        max_minor: 100,
                    },
                    action: Action::Reject(ResultCode::RISK_REJECT),
                    mode: Mode::Shadow,
                },
                Rule {
                    id: "password".into(),
                    kind: RuleKind::MaxAmount {
                        currency: c,
                        max_minor: 1_000,
                    },
                    action: Action::Challenge,
                    mode: Mode::Enforce,
                },
                Rule {
                    id: "ceiling".into(),
                    kind: RuleKind::MaxAmount {
                        currency: c,
                        max_minor: 5_000,
                    },
                    action: Action::Reject(ResultCode::PAYMENT_AMOUNT_EXCEED_LIMIT),
                    mode: Mode::Enforce,
                },
            ],
        };
        let d = evaluate(&set, &facts(sgd(50)));
        assert_eq!(d.verdict, Verdict::Allow);
        assert!(!d.anything_fired());
        assert_eq!(d.describe(), "allow (rule set v7, 3 rules checked)");

        let d = evaluate(&set, &facts(sgd(500)));
        assert_eq!(d.verdict, Verdict::Allow, "a shadow rule never enforces");
        assert_eq!(d.shadow[0].rule_id, "watch");
        assert!(
            d.describe().contains("; shadow: watch ("),
            "{}",
            d.describe()
        );

        let d = evaluate(&set, &facts(sgd(2_000)));
        assert_eq!(d.verdict, Verdict::Challenge);
        assert_eq!(d.deciding_hit().unwrap().rule_id, "password");

        let d = evaluate(&set, &facts(sgd(6_000)));
        assert_eq!(
            d.verdict,
            Verdict::Reject(ResultCode::PAYMENT_AMOUNT_EXCEED_LIMIT)
        );
        assert_eq!(d.hits.len(), 2, "every enforced hit is recorded");
        assert_eq!(d.deciding_hit().unwrap().rule_id, "ceiling");
        assert!(
            d.describe()
                .starts_with("reject PAYMENT_AMOUNT_EXCEED_LIMIT by rule set v7: password (")
        );

        // Rule order decides among rejects.
        set.rules.push(Rule {
            id: "second".into(),
            kind: RuleKind::MaxAmount {
                currency: c,
                max_minor: 10,
            },
            action: Action::Reject(ResultCode::RISK_REJECT),
            mode: Mode::Enforce,
        });
        let d = evaluate(&set, &facts(sgd(6_000)));
        assert_eq!(
            d.verdict,
            Verdict::Reject(ResultCode::PAYMENT_AMOUNT_EXCEED_LIMIT)
        );
    }

    #[test]
    fn needs_follow_the_rule_kinds() {
        let set = |kinds: Vec<RuleKind>| RuleSet {
            version: 1,
            rules: kinds.into_iter().map(rule).collect(),
        };
        assert_eq!(set(vec![]).needs(), Needs::default());
        assert!(!set(vec![RuleKind::CodeReplay]).has_buyer_rules());
        let n = set(vec![
            RuleKind::CustomerVelocity {
                window_minutes: 30,
                max: 3,
            },
            RuleKind::BlockedCustomer,
        ])
        .needs();
        assert_eq!(
            (n.buyer_minutes, n.buyer_blocked, n.history),
            (30, true, false)
        );
        let n = set(vec![RuleKind::CustomerDailyAmount {
            currency: cur("SGD"),
            max_minor: 1,
        }])
        .needs();
        assert_eq!(n.buyer_minutes, MINUTES_PER_DAY);
    }
}
