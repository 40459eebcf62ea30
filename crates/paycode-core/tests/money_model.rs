//! The money machinery against a naive model: random sequences of payments, refunds, cancels,
//! settlements and wallet clearings in several currencies, checking after every step that the
//! books balance, that balances equal what the model says is outstanding, that every conversion
//! is the exact value rounded half-even, and that reports agree with the ledger.

use paycode_core::fee::{FeeSchedule, refund_fee};
use paycode_core::fx::{
    Flow, FlowAmounts, FlowRequest, FxError, Quote, RateTable, parse_rate_file,
};
use paycode_core::ledger::{JournalEntry, Side};
use paycode_core::settlement::{
    self, ClearingItem, CutOff, ItemKind, Movement, SettlementItem, clearing_totals, close_batch,
};
use paycode_core::{Currency, Money, ecb};
use proptest::prelude::*;
use std::collections::BTreeMap;

const MERCHANTS: [(&str, &str, i32, u32, u32); 3] = [
    // (id, settlement currency, UTC offset, cut-off local seconds, fee bps)
    ("M-mo", "HKD", 8 * 3600, 86_400, 250),
    ("M-sg", "SGD", 8 * 3600, 18 * 3600, 180),
    ("M-jp", "JPY", 9 * 3600, 86_400, 320),
];
const WALLETS: [(&str, &str); 5] = [
    ("alipaycn", "CNY"),
    ("gcash", "PHP"),
    ("kpay", "KWD"),
    ("hkpay", "HKD"),
    ("jpay", "JPY"),
];
const TRANSACTION_CURRENCIES: [&str; 5] = ["MOP", "HKD", "SGD", "JPY", "USD"];
const START_S: i64 = 1_795_737_600; // 2026-11-27T00:00:00Z

fn cur(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

fn table() -> RateTable {
    let mut table = parse_rate_file(
        "mid HKD/MOP 1.03\nmid EUR/MOP 8.6724\nmid EUR/KWD 0.3325\nspread default 40 60\nspread MOP/CNY 25 25\n",
    )
    .unwrap();
    ecb::parse(include_str!("../testdata/eurofxref-daily.xml"))
        .unwrap()
        .apply_to(&mut table)
        .unwrap();
    table
}

#[derive(Debug, Clone)]
enum Op {
    Pay {
        merchant: usize,
        wallet: usize,
        currency: usize,
        amount: i64,
    },
    Refund {
        payment: usize,
        percent: i64,
    },
    Cancel {
        payment: usize,
    },
    Settle {
        merchant: usize,
    },
    Clear {
        wallet: usize,
    },
    Wait {
        seconds: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..MERCHANTS.len(), 0..WALLETS.len(), 0..TRANSACTION_CURRENCIES.len(), 1i64..5_000_000)
            .prop_map(|(merchant, wallet, currency, amount)| Op::Pay { merchant, wallet, currency, amount }),
        2 => (any::<usize>(), 1i64..=100).prop_map(|(payment, percent)| Op::Refund { payment, percent }),
        1 => any::<usize>().prop_map(|payment| Op::Cancel { payment }),
        1 => (0..MERCHANTS.len()).prop_map(|merchant| Op::Settle { merchant }),
        1 => (0..WALLETS.len()).prop_map(|wallet| Op::Clear { wallet }),
        2 => (1i64..100_000).prop_map(|seconds| Op::Wait { seconds }),
    ]
}

#[derive(Debug)]
struct Payment {
    movement: Movement,
    amount: Money,
    refunded: Money,
    fee_returned: i64,
    cancelled: bool,
    id: String,
}

/// The naive model: what is outstanding, kept as plain lists, and the books as a map.
#[derive(Default)]
struct World {
    now_s: i64,
    n_ids: usize,
    payments: Vec<Payment>,
    unsettled: Vec<SettlementItem>,
    uncleared: Vec<ClearingItem>,
    /// Debit-positive balances by account name.
    balances: BTreeMap<String, i64>,
    /// Per currency: sum of every posting, debit-positive.
    totals: BTreeMap<Currency, i64>,
    batch_nets: BTreeMap<(String, Currency), i64>,
    batch_fees: BTreeMap<Currency, i64>,
    closed_batch_ids: Vec<String>,
}

impl World {
    fn next_id(&mut self, prefix: &str) -> String {
        self.n_ids += 1;
        format!("{prefix}{}", self.n_ids)
    }

    fn post(&mut self, entry: &JournalEntry) {
        let mut per_currency: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
        for p in entry.postings() {
            assert!(p.amount().is_positive(), "{entry}");
            let signed = match p.side() {
                Side::Debit => p.amount().amount_minor(),
                Side::Credit => -p.amount().amount_minor(),
            };
            *self.balances.entry(p.account().to_string()).or_default() += signed;
            *self.totals.entry(p.amount().currency()).or_default() += signed;
            let slot = per_currency.entry(p.amount().currency()).or_default();
            match p.side() {
                Side::Debit => slot.0 += p.amount().amount_minor(),
                Side::Credit => slot.1 += p.amount().amount_minor(),
            }
        }
        for (c, (d, cr)) in per_currency {
            assert_eq!(d, cr, "entry unbalanced in {c}: {entry}");
        }
    }

    fn balance(&self, account: &str) -> i64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    fn price(
        &mut self,
        flow: Flow,
        amount: Money,
        wallet: Currency,
        settlement: Currency,
    ) -> Result<FlowAmounts, FxError> {
        let table = table();
        let mut ids = Vec::new();
        let req = FlowRequest {
            flow,
            amount,
            wallet,
            settlement,
            now_ms: self.now_s * 1000,
            validity_ms: 60_000,
        };
        let got = table.price_flow(&req, || {
            ids.push(());
            format!("Q{}", ids.len())
        })?;
        if let Some(q) = &got.payment_quote {
            check_rounding(q, amount, got.wallet_amount);
        } else {
            assert_eq!(got.wallet_amount, amount);
        }
        if let Some(q) = &got.settlement_quote {
            check_rounding(q, amount, got.settlement_amount);
        } else {
            assert_eq!(got.settlement_amount, amount);
        }
        Ok(got)
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Wait { seconds } => self.now_s += seconds,
            Op::Pay {
                merchant,
                wallet,
                currency,
                amount,
            } => {
                let (merchant_id, settle, ..) = MERCHANTS[merchant];
                let (wallet_id, wallet_ccy) = WALLETS[wallet];
                let amount = Money::new(amount, cur(TRANSACTION_CURRENCIES[currency]));
                let priced = match self.price(Flow::Payment, amount, cur(wallet_ccy), cur(settle)) {
                    Err(FxError::ConvertsToZero { .. }) => return, // the acquirer rejects it
                    other => other.unwrap(),
                };
                let fee = FeeSchedule::new(MERCHANTS[merchant].4)
                    .unwrap()
                    .with_wallet_rate("gcash", 90)
                    .unwrap()
                    .fee(wallet_id, priced.settlement_amount)
                    .unwrap();
                let movement = Movement {
                    wallet: wallet_id.into(),
                    merchant: merchant_id.into(),
                    wallet_amount: priced.wallet_amount,
                    settlement_amount: priced.settlement_amount,
                    fee,
                };
                let entry = settlement::payment_entry(&movement).unwrap();
                self.post(&entry);
                let id = self.next_id("P");
                self.record(
                    ItemKind::Payment,
                    &id,
                    None,
                    &movement,
                    amount,
                    priced.settlement_quote.as_ref(),
                );
                self.payments.push(Payment {
                    movement,
                    amount,
                    refunded: Money::new(0, amount.currency()),
                    fee_returned: 0,
                    cancelled: false,
                    id,
                });
            }
            Op::Refund { payment, percent } => {
                if self.payments.is_empty() {
                    return;
                }
                let idx = payment % self.payments.len();
                let p = &self.payments[idx];
                let left = p.amount.amount_minor() - p.refunded.amount_minor();
                if p.cancelled || left == 0 {
                    return;
                }
                let refund_minor = (p.amount.amount_minor() * percent / 100).clamp(1, left);
                let refund = Money::new(refund_minor, p.amount.currency());
                let (wallet_ccy, settle_ccy) = (
                    p.movement.wallet_amount.currency(),
                    p.movement.settlement_amount.currency(),
                );
                let priced = match self.price(Flow::Refund, refund, wallet_ccy, settle_ccy) {
                    Err(FxError::ConvertsToZero { .. }) => return,
                    other => other.unwrap(),
                };
                let p = &self.payments[idx];
                let fee = refund_fee(p.movement.fee, p.amount, p.refunded, refund).unwrap();
                if fee.amount_minor() > priced.settlement_amount.amount_minor() {
                    return; // not reachable with these fee rates; the acquirer would reject it
                }
                let movement = Movement {
                    wallet_amount: priced.wallet_amount,
                    settlement_amount: priced.settlement_amount,
                    fee,
                    ..p.movement.clone()
                };
                let original = p.id.clone();
                self.post(&settlement::refund_entry(&movement).unwrap());
                let id = self.next_id("R");
                self.record(
                    ItemKind::Refund,
                    &id,
                    Some(original),
                    &movement,
                    refund,
                    priced.settlement_quote.as_ref(),
                );
                let p = &mut self.payments[idx];
                p.refunded = p.refunded.checked_add(refund).unwrap();
                p.fee_returned += fee.amount_minor();
                assert!(p.fee_returned <= p.movement.fee.amount_minor());
                if p.refunded == p.amount {
                    assert_eq!(
                        p.fee_returned,
                        p.movement.fee.amount_minor(),
                        "a full refund returns the whole fee"
                    );
                }
            }
            Op::Cancel { payment } => {
                if self.payments.is_empty() {
                    return;
                }
                let idx = payment % self.payments.len();
                let p = &self.payments[idx];
                if p.cancelled || p.refunded.amount_minor() != 0 {
                    return;
                }
                let (movement, amount, original) = (p.movement.clone(), p.amount, p.id.clone());
                self.post(&settlement::cancel_entry(&movement).unwrap());
                let id = self.next_id("C");
                self.record(
                    ItemKind::Cancel,
                    &id,
                    Some(original),
                    &movement,
                    amount,
                    None,
                );
                self.payments[idx].cancelled = true;
            }
            Op::Settle { merchant } => self.settle(merchant),
            Op::Clear { wallet } => self.clear(wallet),
        }
    }

    fn record(
        &mut self,
        kind: ItemKind,
        id: &str,
        original: Option<String>,
        m: &Movement,
        amount: Money,
        quote: Option<&Quote>,
    ) {
        self.unsettled.push(SettlementItem {
            merchant: m.merchant.clone(),
            transaction_id: id.into(),
            original_transaction_id: original,
            transaction_request_id: format!("req-{id}"),
            kind,
            payment_method_type: "CONNECT_WALLET".into(),
            psp_name: m.wallet.clone(),
            reference_merchant_id: None,
            reference_store_id: None,
            transaction_amount: amount,
            settlement_amount: m.settlement_amount,
            quote_price: quote.map(|q| q.price()),
            fee: m.fee,
            transaction_time_s: self.now_s,
        });
        self.uncleared.push(ClearingItem {
            wallet: m.wallet.clone(),
            kind,
            wallet_amount: m.wallet_amount,
        });
    }

    fn settle(&mut self, merchant: usize) {
        let (id, settle, offset, cutoff_s, _) = MERCHANTS[merchant];
        let cutoff = CutOff::new(offset, cutoff_s).unwrap();
        let day = cutoff.last_closed_day(self.now_s);
        let Some(batch) = close_batch(id, cur(settle), cutoff, day, &self.unsettled).unwrap()
        else {
            return;
        };
        assert!(
            !self.closed_batch_ids.contains(&batch.id().to_string()),
            "a closed batch is never reopened"
        );
        self.closed_batch_ids.push(batch.id().to_string());
        // Naive totals from the items.
        let naive_net: i64 = batch
            .items()
            .iter()
            .map(|i| {
                let s = i.settlement_amount.amount_minor() - i.fee.amount_minor();
                if i.kind == ItemKind::Payment { s } else { -s }
            })
            .sum();
        assert_eq!(batch.totals().net.amount_minor(), naive_net);
        for item in batch.items() {
            assert!(cutoff.business_day(item.transaction_time_s) <= day);
        }
        // The reports agree with the totals.
        let summary = settlement::summary_csv(&batch).unwrap();
        let total_row = summary.lines().find(|l| l.contains(",TOTAL,")).unwrap();
        let fields: Vec<&str> = total_row.split(',').collect();
        assert_eq!(fields[7].parse::<i64>().unwrap(), naive_net);
        assert_eq!(summary.lines().last(), Some("<END>"));
        let detail = settlement::detail_csv(&batch);
        let rows: Vec<Vec<&str>> = detail
            .lines()
            .skip(1)
            .filter(|l| *l != "<END>")
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), batch.items().len());
        let detail_net: i64 = rows
            .iter()
            .map(|r| r[11].parse::<i64>().unwrap() + r[14].parse::<i64>().unwrap())
            .sum();
        assert_eq!(detail_net, naive_net);

        if let Some(entry) = batch.payout_entry().unwrap() {
            self.post(&entry);
        }
        let key = (id.to_string(), cur(settle));
        *self.batch_nets.entry(key).or_default() += naive_net;
        *self.batch_fees.entry(cur(settle)).or_default() += batch.totals().fees.amount_minor();
        let settled: Vec<String> = batch
            .items()
            .iter()
            .map(|i| i.transaction_id.clone())
            .collect();
        self.unsettled
            .retain(|i| !settled.contains(&i.transaction_id));
    }

    fn clear(&mut self, wallet: usize) {
        let (wallet_id, _) = WALLETS[wallet];
        let (mine, rest): (Vec<ClearingItem>, Vec<ClearingItem>) = self
            .uncleared
            .drain(..)
            .partition(|i| i.wallet == wallet_id);
        self.uncleared = rest;
        for t in clearing_totals(&mine).unwrap() {
            let csv = settlement::clearing_csv("2026-11-27", std::slice::from_ref(&t));
            let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
            assert_eq!(row[9].parse::<i64>().unwrap(), t.net.amount_minor());
            if let Some(entry) = settlement::clearing_entry(wallet_id, t.net).unwrap() {
                self.post(&entry);
            }
        }
    }

    fn check_invariants(&self) {
        for (c, total) in &self.totals {
            assert_eq!(*total, 0, "the books do not sum to zero in {c}");
        }
        // Merchant payable equals the net of what is not yet settled.
        for (merchant, settle, ..) in MERCHANTS {
            let c = cur(settle);
            let outstanding: i64 = self
                .unsettled
                .iter()
                .filter(|i| i.merchant == merchant)
                .map(|i| i.signed_settlement_minor() + i.signed_fee_minor())
                .sum();
            let payable = -self.balance(&format!("merchant_payable:{merchant}:{c}"));
            assert_eq!(payable, outstanding, "{merchant}");
            let paid = -self.balance(&format!("settlement_paid:{merchant}:{c}"));
            let reported = self
                .batch_nets
                .get(&(merchant.to_string(), c))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                paid, reported,
                "payouts equal the batch reports of {merchant}"
            );
        }
        // Wallet receivable equals what is not yet cleared.
        for (wallet, _) in WALLETS {
            let mut outstanding: BTreeMap<Currency, i64> = BTreeMap::new();
            for i in self.uncleared.iter().filter(|i| i.wallet == wallet) {
                let sign = if i.kind == ItemKind::Payment { 1 } else { -1 };
                *outstanding.entry(i.wallet_amount.currency()).or_default() +=
                    sign * i.wallet_amount.amount_minor();
            }
            for code in ["CNY", "PHP", "KWD", "HKD", "JPY"] {
                let c = cur(code);
                let got = self.balance(&format!("wallet_receivable:{wallet}:{c}"));
                assert_eq!(
                    got,
                    outstanding.get(&c).copied().unwrap_or(0),
                    "{wallet} {c}"
                );
            }
        }
        // Fee revenue equals the fees in closed batches plus those still pending.
        for (_, settle, ..) in MERCHANTS {
            let c = cur(settle);
            let pending: i64 = self
                .unsettled
                .iter()
                .filter(|i| i.fee.currency() == c)
                .map(|i| i.signed_fee_minor())
                .sum();
            let reported = self.batch_fees.get(&c).copied().unwrap_or(0);
            assert_eq!(
                self.balance(&format!("fee_revenue::{c}")),
                reported + pending,
                "fees in {c}"
            );
        }
    }
}

/// `got` is `amount` converted by `quote` exactly, then rounded half-even to a minor unit.
fn check_rounding(quote: &Quote, amount: Money, got: Money) {
    let price = quote.price();
    let (m, p) = (i128::from(price.mantissa()), 10i128.pow(price.scale()));
    let (num_f, den_f) = if amount.currency() == quote.base() {
        (m, p)
    } else {
        (p, m)
    };
    let shift = i32::from(got.currency().exponent()) - i32::from(amount.currency().exponent());
    let mut num = i128::from(amount.amount_minor()) * num_f;
    let mut den = den_f;
    if shift >= 0 {
        num *= 10i128.pow(shift.unsigned_abs());
    } else {
        den *= 10i128.pow(shift.unsigned_abs());
    }
    let err2 = (i128::from(got.amount_minor()) * den - num) * 2;
    assert!(err2.abs() <= den, "{amount} at {} gave {got}", price);
    if err2.abs() == den {
        assert_eq!(got.amount_minor() % 2, 0, "ties round to even");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn books_balance_and_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut world = World { now_s: START_S, ..World::default() };
        for op in &ops {
            world.apply(op);
            world.check_invariants();
        }
        // Settle and clear everything: every balance but FX, fees and cash nets to zero.
        world.now_s += 3 * 86_400;
        for m in 0..MERCHANTS.len() {
            world.settle(m);
        }
        for w in 0..WALLETS.len() {
            world.clear(w);
        }
        world.check_invariants();
        prop_assert!(world.unsettled.is_empty());
        for (account, balance) in &world.balances {
            if account.starts_with("merchant_payable:") || account.starts_with("wallet_receivable:") {
                prop_assert_eq!(*balance, 0, "{}", account);
            }
        }
    }
}

#[test]
fn legacy_example_end_to_end() {
    let table = parse_rate_file("mid MOP/CNY 0.88156063\nmid HKD/MOP 1.02487562\n").unwrap();
    let mut n = 0;
    let amount = Money::from_decimal_str("100.00", cur("MOP")).unwrap();
    let priced = table
        .price_flow(
            &FlowRequest {
                flow: Flow::Payment,
                amount,
                wallet: cur("CNY"),
                settlement: cur("HKD"),
                now_ms: 0,
                validity_ms: 60_000,
            },
            || {
                n += 1;
                format!("Q{n}")
            },
        )
        .unwrap();
    assert_eq!(priced.wallet_amount.to_string(), "88.16 CNY");
    assert_eq!(priced.settlement_amount.to_string(), "97.57 HKD");
    let fee = FeeSchedule::new(250)
        .unwrap()
        .fee("alipaycn", priced.settlement_amount)
        .unwrap();
    let movement = Movement {
        wallet: "alipaycn".into(),
        merchant: "M-mo".into(),
        wallet_amount: priced.wallet_amount,
        settlement_amount: priced.settlement_amount,
        fee,
    };
    let mut world = World {
        now_s: START_S,
        ..World::default()
    };
    world.post(&settlement::payment_entry(&movement).unwrap());
    assert_eq!(world.balance("merchant_payable:M-mo:HKD"), -(9757 - 244));
    assert_eq!(world.balance("wallet_receivable:alipaycn:CNY"), 8816);
    assert_eq!(world.balance("fx_position::CNY"), -8816);
    assert_eq!(world.balance("fx_position::HKD"), 9757);
}
