//! Dry runs: a candidate rule set evaluated against the stored payments of a period, changing
//! nothing. The payments are replayed oldest first through the same core evaluation as live
//! payments, with the counters the rules read (merchant days, buyer minutes, buyer-to-customer
//! links, paid histories) rebuilt in memory from the replayed payments themselves. Replay starts a
//! day before the period so that day-long counters are warm when it begins; only payments of the
//! period are reported.
//!
//! What a dry run cannot know: whether a code was a replay (codes are not stored, only their
//! hashes for two days), so `CODE_REPLAY` rules are reported as not evaluable; the blocked list,
//! registry facts (countries, contracted currencies, time zones, MCCs) are today's.

use crate::service::{Acquirer, ApiError};
use crate::store::{self, risk::ReplayRow};
use paycode_core::risk::{
    Action, AmountHistory, BuyerFacts, Facts, MINUTES_PER_DAY, MinuteAttempts, Mode, RuleKind,
    RuleSet,
};
use paycode_core::{Currency, Money};
use std::collections::{HashMap, HashSet};

/// Payments read per store round trip.
const REPLAY_CHUNK: usize = 2_000;

/// What one rule would have done over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleReport {
    pub rule_id: String,
    pub kind: String,
    pub shadow: bool,
    /// `false` for rules a dry run cannot evaluate (code replay).
    pub evaluable: bool,
    pub would_challenge: u64,
    pub would_reject: u64,
    /// Of the payments it fired on, how many the wallet actually paid.
    pub of_which_paid: u64,
    /// Of the payments it fired on, how many were refunded.
    pub of_which_refunded: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TryReport {
    pub since_ms: i64,
    pub until_ms: i64,
    pub n_payments: u64,
    pub n_allowed: u64,
    pub n_challenged: u64,
    pub n_rejected: u64,
    pub rules: Vec<RuleReport>,
}

impl TryReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sinceMs": self.since_ms,
            "untilMs": self.until_ms,
            "payments": self.n_payments,
            "wouldAllow": self.n_allowed,
            "wouldChallenge": self.n_challenged,
            "wouldReject": self.n_rejected,
            "rules": self.rules.iter().map(|r| serde_json::json!({
                "ruleId": r.rule_id,
                "kind": r.kind,
                "mode": if r.shadow { "SHADOW" } else { "ENFORCE" },
                "evaluable": r.evaluable,
                "wouldChallenge": r.would_challenge,
                "wouldReject": r.would_reject,
                "ofWhichPaid": r.of_which_paid,
                "ofWhichRefunded": r.of_which_refunded,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The counters a replay rebuilds, one payment at a time.
#[derive(Default)]
struct Replay {
    /// Amount per merchant, UTC day and currency.
    merchant_amounts: HashMap<(String, i64, String), i64>,
    /// Attempts per merchant and UTC day, across currencies.
    merchant_counts: HashMap<(String, i64), i64>,
    buyer_minutes: HashMap<String, Vec<MinuteAttempts>>,
    links: HashMap<String, (String, String)>,
    buyers_of: HashMap<(String, String), HashSet<String>>,
    history: HashMap<(String, String, String), AmountHistory>,
}

impl Replay {
    /// Every buyer key of the customer behind `buyer` (itself included).
    fn keys_of(&self, buyer: &str) -> Vec<String> {
        let mut keys = vec![buyer.to_string()];
        if let Some(link) = self.links.get(buyer)
            && let Some(all) = self.buyers_of.get(link)
        {
            keys.extend(all.iter().filter(|k| *k != buyer).cloned());
        }
        keys
    }

    fn attempts_of(&self, buyer: &str, since_minute: i64) -> Vec<MinuteAttempts> {
        self.keys_of(buyer)
            .iter()
            .filter_map(|k| self.buyer_minutes.get(k))
            .flatten()
            .filter(|a| a.minute >= since_minute)
            .copied()
            .collect()
    }

    fn count(&mut self, p: &ReplayRow, merchant: &str, currency: Currency) {
        let day = p.created_ms.div_euclid(86_400_000);
        *self
            .merchant_amounts
            .entry((merchant.to_string(), day, p.currency.clone()))
            .or_default() += p.amount_minor;
        *self
            .merchant_counts
            .entry((merchant.to_string(), day))
            .or_default() += 1;
        if let Some(buyer) = &p.buyer {
            let minute = p.created_ms.div_euclid(60_000);
            let list = self.buyer_minutes.entry(buyer.clone()).or_default();
            // Bounded: a buyer's minutes older than a day are never read again.
            list.retain(|a| a.minute > minute - MINUTES_PER_DAY);
            match list
                .iter_mut()
                .find(|a| a.minute == minute && a.currency == currency)
            {
                Some(a) => {
                    a.n_attempts += 1;
                    a.amount_minor += p.amount_minor;
                }
                None => list.push(MinuteAttempts {
                    minute,
                    currency,
                    amount_minor: p.amount_minor,
                    n_attempts: 1,
                }),
            }
        }
    }

    fn learn(&mut self, p: &ReplayRow, merchant: &str, mcc: &str) {
        let Some(buyer) = &p.buyer else { return };
        if let Some(customer) = &p.psp_customer_id {
            let link = (p.wallet.clone(), customer.clone());
            if let Some(old) = self.links.insert(buyer.clone(), link.clone())
                && let Some(set) = self.buyers_of.get_mut(&old)
            {
                set.remove(buyer);
            }
            self.buyers_of
                .entry(link)
                .or_default()
                .insert(buyer.clone());
        }
        if p.paid {
            let key = self.customer_key(buyer);
            for scope in crate::risk::history_scopes(merchant, mcc) {
                let h = self
                    .history
                    .entry((key.clone(), scope, p.currency.clone()))
                    .or_default();
                *h = h.with_payment(p.amount_minor);
            }
        }
    }

    fn customer_key(&self, buyer: &str) -> String {
        crate::risk::customer_key(
            buyer,
            self.links
                .get(buyer)
                .map(|(w, id)| (w.as_str(), id.as_str())),
        )
    }
}

impl Acquirer {
    /// A wallet reported one of its customers: `BLOCKED` adds a block with source
    /// `wallet:NAME`, `CLEARED` removes the block that wallet reported (never an operator's).
    pub async fn wallet_reported_customer(
        &self,
        wallet: &str,
        r: paycode_proto::mpp::CustomerRiskReport,
    ) -> Result<(), ApiError> {
        if r.customer_id.trim().is_empty() {
            return Err(ApiError::param("customerId", "is required"));
        }
        let source = format!("wallet:{wallet}");
        let (wallet, now_ms) = (wallet.to_string(), self.now_ms());
        match r.risk_status.as_str() {
            "BLOCKED" => {
                let row = crate::store::risk::BlockedCustomer {
                    wallet,
                    customer_id: r.customer_id,
                    reason: r
                        .reason
                        .unwrap_or_else(|| "reported by the wallet".to_string()),
                    source,
                    created_ms: now_ms,
                };
                self.db()
                    .write(move |c| store::risk::block_customer(c, &row).map_err(ApiError::from))
                    .await?;
            }
            "CLEARED" => {
                let id = r.customer_id;
                self.db()
                    .write(move |c| {
                        store::risk::unblock_customer_from(c, &wallet, &id, &source)
                            .map_err(ApiError::from)
                    })
                    .await?;
            }
            other => {
                return Err(ApiError::param(
                    "riskStatus",
                    format!("{other:?} is not BLOCKED or CLEARED"),
                ));
            }
        }
        Ok(())
    }

    /// Evaluates `rules_json` against the payments created in `[since_ms, now)`; changes
    /// nothing.
    pub async fn try_risk_rules(
        &self,
        rules_json: &str,
        since_ms: i64,
    ) -> Result<TryReport, ApiError> {
        let set = RuleSet {
            version: 0,
            rules: crate::risk::parse_rules(rules_json)?,
        };
        let until_ms = self.now_ms();
        if since_ms >= until_ms {
            return Err(ApiError::param("since", "must be in the past"));
        }
        let snap = self.snapshot();
        let blocked: HashSet<(String, String)> = self
            .db()
            .read(|c| store::risk::blocked_customers(c).map_err(ApiError::from))
            .await?
            .into_iter()
            .map(|b| (b.wallet, b.customer_id))
            .collect();
        let mut report = TryReport {
            since_ms,
            until_ms,
            rules: set
                .rules
                .iter()
                .map(|r| RuleReport {
                    rule_id: r.id.clone(),
                    kind: crate::risk::kind_name(&r.kind).to_string(),
                    shadow: r.mode == Mode::Shadow,
                    evaluable: r.kind != RuleKind::CodeReplay,
                    ..RuleReport::default()
                })
                .collect(),
            ..TryReport::default()
        };
        let index: HashMap<&str, usize> = set
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let needs = set.needs();
        let mut replay = Replay::default();
        let mut after: Option<(i64, String)> = None;
        let start_ms = since_ms - 86_400_000;
        loop {
            let cursor = after.clone();
            let rows = self
                .db()
                .read(move |c| {
                    store::risk::replay_rows(
                        c,
                        start_ms,
                        until_ms,
                        cursor.as_ref().map(|(t, id)| (*t, id.as_str())),
                        REPLAY_CHUNK,
                    )
                    .map_err(ApiError::from)
                })
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some((last.created_ms, last.payment_id.clone()));
            for p in &rows {
                let Ok(currency) = Currency::parse(&p.currency) else {
                    continue;
                };
                let merchant_key = format!("{}/{}", p.client_id, p.reference_merchant_id);
                let m = snap.merchant(&p.client_id, &p.reference_merchant_id);
                let merchant_mcc = m.map(|m| m.mcc.as_str()).unwrap_or("");
                let store_mcc = m
                    .zip(p.reference_store_id.as_ref())
                    .and_then(|(m, s)| m.stores.get(s))
                    .map(|s| s.mcc.as_str());
                let mcc = store_mcc.unwrap_or(merchant_mcc).to_string();
                if p.created_ms >= since_ms {
                    let day = p.created_ms.div_euclid(86_400_000);
                    let today_minor = replay
                        .merchant_amounts
                        .get(&(merchant_key.clone(), day, p.currency.clone()))
                        .copied()
                        .unwrap_or_default();
                    let today_count = replay
                        .merchant_counts
                        .get(&(merchant_key.clone(), day))
                        .copied()
                        .unwrap_or_default();
                    let attempts = p.buyer.as_deref().map_or_else(Vec::new, |b| {
                        replay.attempts_of(
                            b,
                            p.created_ms.div_euclid(60_000) - needs.buyer_minutes.max(1),
                        )
                    });
                    let buyer = p.buyer.as_deref().map(|b| {
                        let key = replay.customer_key(b);
                        let hist = |scope: &str| {
                            replay
                                .history
                                .get(&(key.clone(), scope.to_string(), p.currency.clone()))
                                .copied()
                                .unwrap_or_default()
                        };
                        let [sm, sc] = crate::risk::history_scopes(&merchant_key, &mcc);
                        BuyerFacts {
                            attempts: &attempts,
                            blocked: replay.links.get(b).is_some_and(|l| blocked.contains(l)),
                            history_merchant: hist(&sm),
                            history_mcc: hist(&sc),
                        }
                    });
                    let wallet = snap.wallets.get(&p.wallet);
                    let empty = Vec::new();
                    let d = paycode_core::risk::evaluate(
                        &set,
                        &Facts {
                            merchant: &merchant_key,
                            merchant_mcc,
                            store_mcc,
                            amount: Money::new(p.amount_minor, currency),
                            now_ms: p.created_ms,
                            merchant_today_minor: today_minor,
                            merchant_today_count: today_count,
                            code_seen: false,
                            buyer,
                            merchant_country: m.and_then(|m| m.country.as_deref()),
                            wallet_countries: wallet.map_or(&empty, |w| &w.countries),
                            wallet_transaction_currencies: wallet
                                .map_or(&empty, |w| &w.transaction_currencies),
                            local_minute_of_day: crate::risk::local_minute_of_day(
                                m.map_or("UTC", |m| m.time_zone.as_str()),
                                p.created_ms,
                            ),
                        },
                    );
                    report.n_payments += 1;
                    match d.verdict {
                        paycode_core::risk::Verdict::Allow => report.n_allowed += 1,
                        paycode_core::risk::Verdict::Challenge => report.n_challenged += 1,
                        paycode_core::risk::Verdict::Reject(_) => report.n_rejected += 1,
                    }
                    for h in d.hits.iter().chain(d.shadow.iter()) {
                        let r = &mut report.rules[index[h.rule_id.as_str()]];
                        match h.action {
                            Action::Challenge => r.would_challenge += 1,
                            Action::Reject(_) => r.would_reject += 1,
                        }
                        r.of_which_paid += u64::from(p.paid);
                        r.of_which_refunded += u64::from(p.refunded);
                    }
                }
                replay.count(p, &merchant_key, currency);
                replay.learn(p, &merchant_key, &mcc);
            }
            if rows.len() < REPLAY_CHUNK {
                break;
            }
        }
        Ok(report)
    }
}
