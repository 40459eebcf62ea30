//! Seeded history: millions of past payments written through the store's bulk functions, so
//! that the pay path, the inquiry, settlement and the audit can be measured on a store the size
//! of a year of trading (`paycode seed`).
//!
//! Each seeded payment is what a real one leaves behind once its story is over: the payment row
//! in a final state, its journal entries, its timeline events, its quotes when currencies
//! differ, its refund, its settlement items, and the merchant's risk counters of the day. Each
//! past business day of each registered merchant is one settlement batch and each UTC day of
//! each wallet and currency one clearing, closed with their payout and clearing entries, as
//! the settlement would have closed them; so `paycode audit` passes after seeding and the live
//! settlement has nothing of the past left to do. Amounts are priced with the store's rate
//! table and fees with the merchants' rates; entries, items and batches are built by the same
//! core functions as live ones.
//!
//! Seeded rows never collide with live traffic: payment ids start with [`SEED_PREFIX`], which
//! no live id does (those are digits), and request ids with `SEED-`. The history ends two days
//! before today, so every seeded business day has ended in any time zone.

use crate::registry::{Merchant, Wallet};
use crate::service::{
    Acquirer, ApiError, payment_entry, refund_entry, reversal_entry, sha256_hex, wire_quote,
};
use crate::settlement::{Calendar, ItemRow, PaymentFacts, due_ms, merchant_calendar};
use crate::store::seed::{NewEntry, NewEvent, QuoteRow};
use crate::store::settlement::{BatchRow, ClearingRow};
use crate::store::{self, PaymentRow, RefundRow, StoreError};
use paycode_core::fx::{Flow, FlowAmounts, FlowRequest};
use paycode_core::payment::{PaymentState, RefundState};
use paycode_core::settlement as core;
use paycode_core::{Currency, Money, ResultCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first character of every seeded payment id (refunds `SR`, quotes `SQ`).
pub const SEED_PREFIX: &str = "S";

const DAY_MS: i64 = 86_400_000;

/// How much history to write.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub n_payments: u64,
    /// Past business days the payments are spread over, ending two days before today.
    pub n_days: u32,
    /// Payments per unit of work.
    pub payments_per_unit: usize,
}

/// Where a seeding run is, for progress lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedProgress {
    pub n_payments: u64,
    pub n_rows: u64,
    pub elapsed: Duration,
}

impl SeedProgress {
    pub fn rows_per_s(&self) -> f64 {
        self.n_rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn payments_per_s(&self) -> f64 {
        self.n_payments as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a seeding run wrote.
#[derive(Debug, Clone, Default)]
pub struct SeedSummary {
    pub progress: SeedProgress,
    pub n_refunds: u64,
    pub n_batches: u64,
    pub n_clearings: u64,
    /// First and last seeded business day (days since 1970-01-01).
    pub days: (i64, i64),
    /// Merchants seeded, each numbered by its place in (client, merchant) order.
    pub n_shops: usize,
    /// Payments of each merchant on each day at least: request ids
    /// `SEED-{day}-{merchant}-{k}` exist for every `k` below it.
    pub per_day_min: u64,
}

/// A small deterministic generator (SplitMix64): the same options give the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One way a merchant is paid: transaction currency and wallet (whose currency is its first).
#[derive(Clone)]
struct Lane {
    currency: Currency,
    wallet: Wallet,
    wallet_currency: Currency,
    cii: String,
}

/// A registered merchant and what its seeded payments may use.
struct Shop {
    merchant: Merchant,
    settlement: Currency,
    calendar: Calendar,
    lanes: Vec<Lane>,
    store: Option<(String, String)>,
}

/// How a seeded payment's story ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Paid,
    PaidAndRefunded,
    PaidThenCancelled,
    Failed(ResultCode),
    ClosedUnpaid,
}

impl Ending {
    /// The mix of a year of trading: mostly paid, some declined, closed, cancelled, refunded.
    fn draw(rng: &mut Rng) -> Ending {
        match rng.below(1_000) {
            0..40 => Ending::Failed(ResultCode::USER_BALANCE_NOT_ENOUGH),
            40..50 => Ending::Failed(ResultCode::PROCESS_FAIL),
            50..70 => Ending::ClosedUnpaid,
            70..80 => Ending::PaidThenCancelled,
            80..110 => Ending::PaidAndRefunded,
            _ => Ending::Paid,
        }
    }
}

/// The rows of one unit of work.
#[derive(Default)]
struct Unit {
    payments: Vec<PaymentRow>,
    refunds: Vec<RefundRow>,
    quotes: Vec<QuoteRow>,
    events: Vec<NewEvent>,
    items: Vec<ItemRow>,
    entries: Vec<NewEntry>,
    /// (merchant, UTC day, currency) → (amount, attempts).
    daily: BTreeMap<(String, i64, String), (i64, i64)>,
    /// The day's batch, closed with this unit (its payout posted with it).
    batch: Option<(BatchRow, Option<paycode_core::ledger::JournalEntry>)>,
    clearings: Vec<(ClearingRow, Option<paycode_core::ledger::JournalEntry>)>,
}

impl Unit {
    fn n_rows(&self) -> u64 {
        let postings: usize = self.entries.iter().map(|e| e.entry.postings().len()).sum();
        (self.payments.len()
            + self.refunds.len()
            + self.quotes.len()
            + self.events.len()
            + self.items.len()
            + self.entries.len()
            + postings
            + self.daily.len()
            + usize::from(self.batch.is_some())
            + self.clearings.len()) as u64
    }
}

fn write_unit(c: &paycode_db::sql::Connection, u: &Unit) -> Result<(), StoreError> {
    store::seed::insert_payments(c, &u.payments)?;
    store::seed::insert_refunds(c, &u.refunds)?;
    store::seed::insert_quotes(c, &u.quotes)?;
    store::seed::insert_events(c, &u.events)?;
    store::seed::insert_items(c, &u.items)?;
    store::seed::post_entries(c, &u.entries)?;
    store::seed::add_merchant_daily(c, &u.daily)?;
    if let Some((row, payout)) = &u.batch {
        let mut row = row.clone();
        row.entry_id = match payout {
            Some(e) => Some(store::post_entry(c, e, None, None, row.closed_ms)?),
            None => None,
        };
        store::settlement::insert_batch(c, &row)?;
    }
    for (row, entry) in &u.clearings {
        let mut row = row.clone();
        row.entry_id = match entry {
            Some(e) => Some(store::post_entry(c, e, None, None, row.closed_ms)?),
            None => None,
        };
        store::settlement::insert_clearing(c, &row)?;
    }
    Ok(())
}

fn corrupt(what: impl std::fmt::Display) -> ApiError {
    ApiError::from(StoreError::Corrupt(what.to_string()))
}

/// The rows of one wire quote.
fn quote_row(q: &paycode_core::fx::Quote, purpose: &'static str) -> (QuoteRow, String) {
    let (wire, start_ms, expiry_ms) = wire_quote(q);
    let json = serde_json::to_string(&wire).expect("quotes serialize");
    (
        QuoteRow {
            quote_id: wire.quote_id,
            pair: wire.quote_currency_pair,
            price: wire.quote_price,
            start_ms,
            expiry_ms,
            purpose,
        },
        json,
    )
}

/// Builds one merchant's business day of history; the caller writes it.
struct DayBuilder<'a> {
    acq: &'a Acquirer,
    shop: &'a Shop,
    rng: Rng,
    quote_seq: u64,
}

impl DayBuilder<'_> {
    fn price(
        &mut self,
        flow: Flow,
        amount: Money,
        lane: &Lane,
        settlement: Currency,
        now_ms: i64,
        tag: &str,
    ) -> Result<FlowAmounts, ApiError> {
        let validity_ms = self.acq.config().limits.quote_validity_s * 1000;
        let seq = &mut self.quote_seq;
        self.acq
            .rates()
            .price_flow(
                &FlowRequest {
                    flow,
                    amount,
                    wallet: lane.wallet_currency,
                    settlement,
                    now_ms,
                    validity_ms,
                },
                || {
                    *seq += 1;
                    format!("SQ{tag}{seq:02}")
                },
            )
            .map_err(|e| {
                corrupt(format!(
                    "cannot price {amount} for {}: {e}",
                    lane.wallet.name
                ))
            })
    }

    /// One payment `k` of `day` created at `created_ms`, with everything its ending wrote.
    fn payment(
        &mut self,
        unit: &mut Unit,
        day: i64,
        shop_idx: usize,
        k: u64,
        created_ms: i64,
    ) -> Result<(), ApiError> {
        let shop = self.shop;
        let m = &shop.merchant;
        let lane = shop.lanes[self.rng.below(shop.lanes.len() as u64) as usize].clone();
        let exponent = lane.currency.exponent();
        // 1.00 to 200.00 in two-decimal currencies, 100 to 20,000 in whole units.
        let amount_minor = if exponent == 0 {
            (100 + self.rng.below(19_900)) as i64
        } else {
            (100 + self.rng.below(19_900)) as i64
                * 10_i64.pow(u32::from(exponent).saturating_sub(2))
        };
        let amount = Money::new(amount_minor, lane.currency);
        let id = format!("{SEED_PREFIX}{day:06}{shop_idx:02}{k:08}");
        let request_id = format!("SEED-{day}-{shop_idx}-{k}");
        let code = format!(
            "{}{:018}",
            lane.cii,
            self.rng.below(1_000_000_000_000_000_000)
        );
        let store_id = shop.store.as_ref().map(|s| s.0.clone());
        let hash = sha256_hex(&[
            "IN_STORE_PAYMENT",
            &amount_minor.to_string(),
            lane.currency.code(),
            &code,
            &m.reference_merchant_id,
            store_id.as_deref().unwrap_or(""),
        ]);
        let priced = self.price(
            Flow::Payment,
            amount,
            &lane,
            shop.settlement,
            created_ms,
            &id[1..],
        )?;
        let fee = paycode_core::fee::fee_on(priced.settlement_amount, m.fee_bps)
            .map_err(|e| corrupt(format!("fee: {e}")))?;
        let mut quote_json = |q: &Option<paycode_core::fx::Quote>, purpose| {
            q.as_ref().map(|q| {
                let (row, json) = quote_row(q, purpose);
                unit.quotes.push(row);
                json
            })
        };
        let payment_quote = quote_json(&priced.payment_quote, "PAYMENT");
        let settlement_quote = quote_json(&priced.settlement_quote, "SETTLEMENT");
        let ending = Ending::draw(&mut self.rng);
        let answered_ms = created_ms + 400 + self.rng.below(1_600) as i64;
        let mut p = PaymentRow {
            payment_id: id.clone(),
            client_id: m.client_id.clone(),
            payment_request_id: request_id,
            request_hash: hash,
            reference_merchant_id: m.reference_merchant_id.clone(),
            reference_store_id: store_id,
            merchant_name: m.name.clone(),
            store_name: shop.store.as_ref().map(|s| s.1.clone()),
            terminal_id: Some(format!("T{:02}", 1 + self.rng.below(8))),
            amount_minor,
            currency: lane.currency.code().to_string(),
            wallet: lane.wallet.name.clone(),
            psp_name: lane.wallet.psp_name.clone(),
            code_masked: paycode_core::code::mask(&code),
            pay_to_minor: priced.wallet_amount.amount_minor(),
            pay_to_currency: priced.wallet_amount.currency().code().to_string(),
            payment_quote,
            settle_minor: priced.settlement_amount.amount_minor(),
            settle_currency: priced.settlement_amount.currency().code().to_string(),
            settlement_quote,
            fee_minor: fee.amount_minor(),
            state: PaymentState::Success,
            result_code: ResultCode::SUCCESS,
            result_message: String::new(),
            wallet_payment_id: None,
            psp_customer_id: None,
            notify_url: None,
            created_ms,
            expires_ms: created_ms + self.acq.config().limits.payment_expiry_default_s * 1000,
            paid_ms: None,
            cancelled_ms: None,
            cancel_requested_ms: None,
            updated_ms: answered_ms,
            next_check_ms: None,
            n_checks: 0,
            buyer: paycode_core::code::PaymentCode::parse(&code)
                .ok()
                .and_then(|c| crate::risk::buyer_key(&c)),
        };
        let merchant_key = format!("{}/{}", m.client_id, m.reference_merchant_id);
        let counter = unit
            .daily
            .entry((
                merchant_key,
                created_ms.div_euclid(DAY_MS),
                p.currency.clone(),
            ))
            .or_default();
        counter.0 += amount_minor;
        counter.1 += 1;
        unit.events.push(NewEvent {
            payment_id: id.clone(),
            at_ms: created_ms,
            kind: "CREATED",
            detail: format!(
                "pay {} {} with code {} routed to {}; seeded history",
                p.amount_minor, p.currency, p.code_masked, p.wallet
            ),
        });
        let paid = matches!(
            ending,
            Ending::Paid | Ending::PaidAndRefunded | Ending::PaidThenCancelled
        );
        if paid {
            p.paid_ms = Some(answered_ms);
            p.wallet_payment_id = Some(format!("SW{}", &id[1..]));
            p.psp_customer_id = Some(format!("SU{:06}", self.rng.below(200_000)));
        }
        let final_state = match ending {
            Ending::Paid | Ending::PaidAndRefunded => PaymentState::Success,
            Ending::Failed(code) => PaymentState::Fail(code),
            Ending::ClosedUnpaid | Ending::PaidThenCancelled => PaymentState::Cancelled,
        };
        match ending {
            Ending::Failed(code) => {
                p.result_message = code.default_message().to_string();
            }
            Ending::ClosedUnpaid => {
                p.cancelled_ms = Some(answered_ms);
            }
            Ending::PaidThenCancelled => {
                let t = answered_ms + 60_000 + self.rng.below(240_000) as i64;
                p.cancelled_ms = Some(t);
                p.updated_ms = t;
            }
            Ending::Paid | Ending::PaidAndRefunded => {}
        }
        p.state = final_state;
        p.result_code = final_state.result_code();
        unit.events.push(NewEvent {
            payment_id: id.clone(),
            at_ms: answered_ms,
            kind: "STATE",
            detail: format!("PROCESSING -> {final_state} (seeded history)"),
        });
        let facts = PaymentFacts::of(&p);
        let mut items = Vec::new();
        if paid {
            unit.entries.push(NewEntry {
                entry: payment_entry(&p)?,
                payment_id: Some(id.clone()),
                refund_id: None,
                created_ms: answered_ms,
            });
            items.push(facts.payment_item()?);
        }
        if let (Ending::PaidThenCancelled, Some(t)) = (ending, p.cancelled_ms) {
            unit.entries.push(NewEntry {
                entry: reversal_entry(&p)?,
                payment_id: Some(id.clone()),
                refund_id: None,
                created_ms: t,
            });
            items.push(facts.cancel_item()?);
        }
        if let Ending::PaidAndRefunded = ending {
            let asked_ms = answered_ms + 600_000 + self.rng.below(3_000_000) as i64;
            let refunded_ms = asked_ms + 300 + self.rng.below(1_200) as i64;
            let refund_id = format!("SR{}", &id[1..]);
            let priced = self.price(
                Flow::Refund,
                amount,
                &lane,
                shop.settlement,
                asked_ms,
                &refund_id[1..],
            )?;
            let mut quote_json = |q: &Option<paycode_core::fx::Quote>, purpose| {
                q.as_ref().map(|q| {
                    let (row, json) = quote_row(q, purpose);
                    unit.quotes.push(row);
                    json
                })
            };
            let _ = quote_json(&priced.payment_quote, "REFUND");
            let settlement_quote = quote_json(&priced.settlement_quote, "REFUND_SETTLEMENT");
            let fee_back =
                paycode_core::fee::refund_fee(fee, amount, Money::new(0, lane.currency), amount)
                    .map_err(|e| corrupt(format!("refund fee: {e}")))?;
            let r = RefundRow {
                refund_id: refund_id.clone(),
                client_id: p.client_id.clone(),
                refund_request_id: format!("SEED-R-{day}-{shop_idx}-{k}"),
                request_hash: sha256_hex(&["REFUND", &id, &amount_minor.to_string()]),
                payment_id: id.clone(),
                amount_minor,
                currency: p.currency.clone(),
                wallet_amount_minor: p.pay_to_minor,
                wallet_currency: p.pay_to_currency.clone(),
                settle_minor: priced.settlement_amount.amount_minor(),
                settle_currency: p.settle_currency.clone(),
                settlement_quote,
                fee_minor: fee_back.amount_minor(),
                state: RefundState::Success,
                result_code: ResultCode::SUCCESS,
                result_message: String::new(),
                reason: Some("customer returned the goods".to_string()),
                notify_url: None,
                created_ms: asked_ms,
                refunded_ms: Some(refunded_ms),
                next_check_ms: None,
            };
            unit.events.push(NewEvent {
                payment_id: id.clone(),
                at_ms: asked_ms,
                kind: "REFUND",
                detail: format!(
                    "refund {refund_id} of {amount_minor} {} requested",
                    p.currency
                ),
            });
            unit.events.push(NewEvent {
                payment_id: id.clone(),
                at_ms: refunded_ms,
                kind: "REFUND",
                detail: format!("refund {refund_id} PROCESSING -> SUCCESS (seeded history)"),
            });
            unit.entries.push(NewEntry {
                entry: refund_entry(&p, &r)?,
                payment_id: Some(id.clone()),
                refund_id: Some(refund_id),
                created_ms: refunded_ms,
            });
            items.push(facts.refund_item(&r)?);
            unit.refunds.push(r);
        }
        let utc = Calendar::utc();
        for mut item in items {
            item.settle_due_ms = due_ms(&shop.calendar, item.event_ms);
            item.clearing_due_ms = due_ms(&utc, item.event_ms);
            unit.items.push(item);
        }
        unit.payments.push(p);
        Ok(())
    }
}

/// The merchants and lanes of the registry, in a fixed order; lanes that cannot be priced are
/// left out.
fn shops(acq: &Acquirer) -> Result<Vec<Shop>, ApiError> {
    let snap = acq.snapshot();
    let mut wallets: Vec<&Wallet> = snap.wallets.values().filter(|w| w.enabled).collect();
    wallets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut merchants: Vec<&Merchant> = snap.merchants.values().filter(|m| m.active).collect();
    merchants.sort_by(|a, b| {
        (&a.client_id, &a.reference_merchant_id).cmp(&(&b.client_id, &b.reference_merchant_id))
    });
    let mut out = Vec::new();
    for m in merchants {
        let Ok(settlement) = Currency::parse(&m.settlement_currency) else {
            continue;
        };
        let mut lanes = Vec::new();
        for code in &m.currencies {
            let Ok(currency) = Currency::parse(code) else {
                continue;
            };
            for w in &wallets {
                let Some(wallet_currency) =
                    w.currencies.first().and_then(|c| Currency::parse(c).ok())
                else {
                    continue;
                };
                // The wallet's code prefix, from its route (codes are seeded, never scanned).
                let cii = snap
                    .routes
                    .iter()
                    .find(|r| r.wallet == w.name)
                    .and_then(|r| match &r.pattern {
                        crate::registry::RoutePattern::Cii(p) => Some(p.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "28".to_string());
                let probe = acq.rates().price_flow(
                    &FlowRequest {
                        flow: Flow::Payment,
                        amount: Money::new(1_000, currency),
                        wallet: wallet_currency,
                        settlement,
                        now_ms: acq.now_ms(),
                        validity_ms: 1_000,
                    },
                    || "probe".to_string(),
                );
                if probe.is_ok() {
                    lanes.push(Lane {
                        currency,
                        wallet: (*w).clone(),
                        wallet_currency,
                        cii,
                    });
                }
            }
        }
        if lanes.is_empty() {
            continue;
        }
        let mut stores: Vec<_> = m.stores.values().collect();
        stores.sort_by(|a, b| a.reference_store_id.cmp(&b.reference_store_id));
        out.push(Shop {
            calendar: merchant_calendar(&snap, &m.client_id, &m.reference_merchant_id),
            settlement,
            lanes,
            store: stores
                .first()
                .map(|s| (s.reference_store_id.clone(), s.name.clone())),
            merchant: m.clone(),
        });
    }
    Ok(out)
}

/// Closes the clearings of `open` whose UTC day is at most `through_day`.
fn close_clearings(
    open: &mut BTreeMap<(i64, String, String), Vec<core::ClearingItem>>,
    through_day: i64,
) -> Result<Vec<(ClearingRow, Option<paycode_core::ledger::JournalEntry>)>, ApiError> {
    let keys: Vec<_> = open
        .keys()
        .filter(|(day, _, _)| *day <= through_day)
        .cloned()
        .collect();
    let mut out = Vec::new();
    for key in keys {
        let items = open.remove(&key).expect("the key was just listed");
        let (day, wallet, currency) = key;
        let totals = core::clearing_totals(&items)
            .map_err(|e| corrupt(format!("clearing {wallet} {currency}: {e}")))?;
        let [total] = totals.as_slice() else {
            return Err(corrupt(format!(
                "clearing {wallet} {currency} spans currencies"
            )));
        };
        let ccy = Currency::parse(&currency).map_err(|e| corrupt(format!("{e}")))?;
        let entry = core::clearing_entry(&wallet, total.net)
            .map_err(|e| corrupt(format!("clearing entry: {e}")))?;
        out.push((
            ClearingRow {
                clearing_id: clearing_id(&wallet, ccy, day),
                wallet,
                currency,
                business_day: day,
                seq: 1,
                item_count: items.len() as i64,
                net_minor: total.net.amount_minor(),
                entry_id: None,
                closed_ms: (day + 1) * DAY_MS + 10 * 60_000,
            },
            entry,
        ));
    }
    Ok(out)
}

fn clearing_id(wallet: &str, currency: Currency, day: i64) -> String {
    format!("CLR-{}", core::batch_id(wallet, currency, day))
}

impl Acquirer {
    /// Writes `opts.n_payments` past payments with their whole history (see the module
    /// documentation), calling `progress` after each unit of work. Refuses a store that holds
    /// seeded payments already.
    pub async fn seed_history(
        &self,
        opts: &SeedOptions,
        mut progress: impl FnMut(&SeedProgress),
    ) -> Result<SeedSummary, ApiError> {
        if opts.n_days == 0 || opts.payments_per_unit == 0 {
            return Err(ApiError::param(
                "days",
                "days and payments per unit must be positive",
            ));
        }
        let seeded = self
            .db()
            .read(|c| store::seed::any_payment_with_prefix(c, SEED_PREFIX).map_err(ApiError::from))
            .await?;
        if seeded {
            return Err(ApiError::new(
                ResultCode::REPEAT_REQ_INCONSISTENT,
                "this store holds seeded payments already; seed a fresh store",
            ));
        }
        let shops = shops(self)?;
        if shops.is_empty() {
            return Err(ApiError::new(
                ResultCode::MERCHANT_NOT_REGISTERED,
                "no active merchant with a wallet and rates to pay it: start `paycode serve` once",
            ));
        }
        let today = self.now_ms().div_euclid(DAY_MS);
        let last_day = today - 2;
        let first_day = last_day - i64::from(opts.n_days) + 1;
        let n_slots = u64::from(opts.n_days) * shops.len() as u64;
        let started = Instant::now();
        let mut summary = SeedSummary {
            days: (first_day, last_day),
            n_shops: shops.len(),
            per_day_min: opts.n_payments / n_slots,
            ..SeedSummary::default()
        };
        let mut open_clearings: BTreeMap<(i64, String, String), Vec<core::ClearingItem>> =
            BTreeMap::new();
        // One unit in flight while the next is built: generation and writing overlap.
        let mut in_flight: Option<tokio::task::JoinHandle<Result<u64, ApiError>>> = None;
        let mut slot = 0u64;
        for day in first_day..=last_day {
            for (shop_idx, shop) in shops.iter().enumerate() {
                let n = opts.n_payments / n_slots + u64::from(slot < opts.n_payments % n_slots);
                slot += 1;
                if n == 0 {
                    continue;
                }
                let mut builder = DayBuilder {
                    acq: self,
                    shop,
                    rng: Rng(day as u64 * 1_000 + shop_idx as u64),
                    quote_seq: 0,
                };
                // The merchant's business day, less half an hour at each end and the hour
                // refunds may take, so every event of the day's payments falls within it.
                let start_ms = shop.calendar.day_end_s(day - 1) * 1000 + 30 * 60_000;
                let end_ms = shop.calendar.day_end_s(day) * 1000 - 90 * 60_000;
                let span_ms = (end_ms - start_ms).max(1);
                let mut units: Vec<Unit> = Vec::new();
                let mut unit = Unit::default();
                for k in 0..n {
                    let created_ms =
                        start_ms + (i128::from(span_ms) * i128::from(k) / i128::from(n)) as i64;
                    builder.payment(&mut unit, day, shop_idx, k, created_ms)?;
                    if unit.payments.len() >= opts.payments_per_unit {
                        units.push(std::mem::take(&mut unit));
                    }
                }
                if !unit.payments.is_empty() {
                    units.push(unit);
                }
                // The day's batch: every item of the day, closed as the cut-off would have.
                let all_items: Vec<&ItemRow> = units.iter().flat_map(|u| &u.items).collect();
                let core_items = all_items
                    .iter()
                    .map(|i| i.to_item())
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let owner = format!(
                    "{}/{}",
                    shop.merchant.client_id, shop.merchant.reference_merchant_id
                );
                let day_end_s = shop.calendar.day_end_s(day);
                let cutoff = shop.calendar.cutoff_at(day_end_s - 1);
                let batch = core::close_batch(&owner, shop.settlement, cutoff, day, &core_items)
                    .map_err(|e| corrupt(format!("batch of {owner}: {e}")))?;
                if let Some(batch) = batch {
                    if batch.items().len() != core_items.len() {
                        return Err(corrupt(format!(
                            "{} items of {owner} on day {day} fall outside its batch",
                            core_items.len() - batch.items().len()
                        )));
                    }
                    let batch_id = batch.id().to_string();
                    for u in &mut units {
                        for item in &mut u.items {
                            item.batch_id = Some(batch_id.clone());
                            let wallet_ccy = Currency::parse(&item.wallet_currency)
                                .map_err(|e| corrupt(format!("{e}")))?;
                            let utc_day = item.event_ms.div_euclid(DAY_MS);
                            item.clearing_id = Some(clearing_id(&item.wallet, wallet_ccy, utc_day));
                            open_clearings
                                .entry((utc_day, item.wallet.clone(), item.wallet_currency.clone()))
                                .or_default()
                                .push(item.to_clearing_item()?);
                        }
                    }
                    let t = batch.totals();
                    let payout = batch
                        .payout_entry()
                        .map_err(|e| corrupt(format!("payout of {batch_id}: {e}")))?;
                    let row = BatchRow {
                        batch_id,
                        merchant: owner.clone(),
                        currency: shop.settlement.code().to_string(),
                        business_day: day,
                        seq: 1,
                        utc_offset_s: cutoff.utc_offset_s(),
                        cutoff_local_s: shop.calendar.cutoff_local_s(),
                        item_count: t.count as i64,
                        gross_minor: t.gross.amount_minor(),
                        fee_minor: t.fees.amount_minor(),
                        net_minor: t.net.amount_minor(),
                        entry_id: None,
                        closed_ms: day_end_s * 1000 + 5 * 60_000,
                    };
                    let last = units.last_mut().expect("a day with payments has a unit");
                    last.batch = Some((row, payout));
                    summary.n_batches += 1;
                }
                // Clearings of UTC days no later business day can reach (time zones are
                // within a day of UTC).
                if shop_idx + 1 == shops.len() {
                    let closing = close_clearings(&mut open_clearings, day - 2)?;
                    summary.n_clearings += closing.len() as u64;
                    units
                        .last_mut()
                        .expect("a day with payments has a unit")
                        .clearings
                        .extend(closing);
                }
                for u in units {
                    summary.n_refunds += u.refunds.len() as u64;
                    let n_payments = u.payments.len() as u64;
                    let rows = u.n_rows();
                    let unit = Arc::new(u);
                    let db = self.db().clone();
                    if let Some(prev) = in_flight.take() {
                        let (n_p, n_r) = prev
                            .await
                            .map_err(|e| corrupt(format!("seeding task: {e}")))?
                            .map(|r| (r >> 32, r & 0xffff_ffff))?;
                        summary.progress.n_payments += n_p;
                        summary.progress.n_rows += n_r;
                        summary.progress.elapsed = started.elapsed();
                        progress(&summary.progress);
                    }
                    in_flight = Some(tokio::spawn(async move {
                        db.write(move |c| write_unit(c, &unit).map_err(ApiError::from))
                            .await?;
                        Ok((n_payments << 32) | rows)
                    }));
                }
            }
        }
        let leftover = close_clearings(&mut open_clearings, i64::MAX)?;
        summary.n_clearings += leftover.len() as u64;
        if let Some(prev) = in_flight.take() {
            let r = prev
                .await
                .map_err(|e| corrupt(format!("seeding task: {e}")))??;
            summary.progress.n_payments += r >> 32;
            summary.progress.n_rows += r & 0xffff_ffff;
        }
        if !leftover.is_empty() {
            let unit = Unit {
                clearings: leftover,
                ..Unit::default()
            };
            summary.progress.n_rows += unit.n_rows();
            let unit = Arc::new(unit);
            self.db()
                .write(move |c| write_unit(c, &unit).map_err(ApiError::from))
                .await?;
        }
        self.db()
            .write(|c| store::seed::refresh_statistics(c).map_err(ApiError::from))
            .await?;
        summary.progress.elapsed = started.elapsed();
        progress(&summary.progress);
        Ok(summary)
    }
}
