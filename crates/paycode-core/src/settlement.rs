//! Settlement math, report files and the journal entries of money movements — all pure.
//!
//! **Signs.** Items carry positive magnitudes; their kind gives the direction. Reports and totals
//! are signed from the merchant's point of view: a payment's settlement amount is positive and
//! its fee negative (deducted); a refund or cancel has a negative settlement amount and a positive
//! fee (returned). So, in every report, `net = Σ settlementAmountValue + Σ feeAmountValue`, and
//! it equals the change of the merchant-payable account (see [`payment_entry`]).
//!
//! **Batches.** A merchant's business day ends at its local cut-off ([`CutOff`]). Closing the
//! batch of day `D` takes every pending item of the merchant and settlement currency whose
//! business day is `D` or earlier, so an event that arrives after its day's batch was closed
//! (which is immutable) lands in the next one. Batch ids are derived from merchant, currency and
//! day, so closing the same batch twice produces the same id (a storage key conflict, not a
//! duplicate payout).

use crate::fx::Rate;
use crate::ledger::{Account, JournalEntry, LedgerError, Posting};
use crate::{Currency, Money, MoneyError};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const SECONDS_PER_DAY: i64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("item {transaction_id} is in {got}, the batch settles in {expected}")]
    WrongCurrency {
        transaction_id: String,
        expected: Currency,
        got: Currency,
    },
    #[error("item {transaction_id} has a negative amount")]
    Negative { transaction_id: String },
    #[error("cut-off {cutoff_local_s}s after local midnight is not in 1..=86400")]
    BadCutOffTime { cutoff_local_s: u32 },
    #[error("UTC offset {utc_offset_s}s is beyond +-18 hours")]
    BadUtcOffset { utc_offset_s: i32 },
    #[error("a movement needs a positive wallet and settlement amount and a fee not above it")]
    BadMovement,
}

/// What an item does to the merchant's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKind {
    Payment,
    Refund,
    /// A reversal of a whole payment (its settlement amount and fee come back in full).
    Cancel,
}

impl ItemKind {
    /// The report's `transactionType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Payment => "PAYMENT",
            ItemKind::Refund => "REFUND",
            ItemKind::Cancel => "CANCEL",
        }
    }

    /// +1 for money towards the merchant, -1 for money back from it.
    fn sign(self) -> i64 {
        match self {
            ItemKind::Payment => 1,
            ItemKind::Refund | ItemKind::Cancel => -1,
        }
    }

    const ALL: [ItemKind; 3] = [ItemKind::Payment, ItemKind::Refund, ItemKind::Cancel];
}

/// One settled event, as the store hands it over. Amounts are positive magnitudes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementItem {
    /// The acquirer's merchant (the owner of the merchant-payable account).
    pub merchant: String,
    pub transaction_id: String,
    /// For a refund or cancel, the payment's id.
    pub original_transaction_id: Option<String>,
    /// `paymentRequestId` or `refundRequestId`.
    pub transaction_request_id: String,
    pub kind: ItemKind,
    pub payment_method_type: String,
    /// The wallet.
    pub psp_name: String,
    pub reference_merchant_id: Option<String>,
    pub reference_store_id: Option<String>,
    pub transaction_amount: Money,
    /// Gross, in the settlement currency.
    pub settlement_amount: Money,
    /// The settlement quote's price, when a conversion happened.
    pub quote_price: Option<Rate>,
    /// Charged (payment) or returned (refund, cancel), in the settlement currency.
    pub fee: Money,
    pub transaction_time_s: i64,
}

impl SettlementItem {
    /// The settlement amount signed from the merchant's point of view.
    pub fn signed_settlement_minor(&self) -> i64 {
        self.kind.sign() * self.settlement_amount.amount_minor()
    }

    /// The fee signed from the merchant's point of view (charged is negative).
    pub fn signed_fee_minor(&self) -> i64 {
        -self.kind.sign() * self.fee.amount_minor()
    }

    fn check(&self, currency: Currency) -> Result<(), SettlementError> {
        for m in [self.settlement_amount, self.fee] {
            if m.currency() != currency {
                return Err(SettlementError::WrongCurrency {
                    transaction_id: self.transaction_id.clone(),
                    expected: currency,
                    got: m.currency(),
                });
            }
        }
        let amounts = [self.settlement_amount, self.fee, self.transaction_amount];
        if amounts.iter().any(|m| m.amount_minor() < 0) {
            return Err(SettlementError::Negative {
                transaction_id: self.transaction_id.clone(),
            });
        }
        Ok(())
    }
}

/// A merchant's business-day boundary: the local time (seconds after midnight, 86400 = end of
/// day) at which a day's batch closes, and the UTC offset of its time zone.
///
/// A zone with daylight saving is handled at the edge: pass the offset in force on the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutOff {
    utc_offset_s: i32,
    cutoff_local_s: u32,
}

impl CutOff {
    pub fn new(utc_offset_s: i32, cutoff_local_s: u32) -> Result<CutOff, SettlementError> {
        if !(1..=86_400).contains(&cutoff_local_s) {
            return Err(SettlementError::BadCutOffTime { cutoff_local_s });
        }
        if utc_offset_s.unsigned_abs() > 18 * 3600 {
            return Err(SettlementError::BadUtcOffset { utc_offset_s });
        }
        Ok(CutOff {
            utc_offset_s,
            cutoff_local_s,
        })
    }

    pub fn utc_offset_s(self) -> i32 {
        self.utc_offset_s
    }

    /// The business day (days since 1970-01-01) of an event at `t_s`: day `D` runs from the
    /// cut-off of day `D - 1` (inclusive) to the cut-off of day `D` (exclusive), local time.
    pub fn business_day(self, t_s: i64) -> i64 {
        let local_s = t_s + i64::from(self.utc_offset_s);
        (local_s - i64::from(self.cutoff_local_s)).div_euclid(SECONDS_PER_DAY) + 1
    }

    /// The last business day whose batch can be closed at `now_s`.
    pub fn last_closed_day(self, now_s: i64) -> i64 {
        self.business_day(now_s) - 1
    }
}

/// Totals of a batch, signed from the merchant's point of view (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTotals {
    pub count: usize,
    /// Per kind: (count, signed settlement amount, signed fee).
    pub payments: KindTotals,
    pub refunds: KindTotals,
    pub cancels: KindTotals,
    /// Payments minus refunds and cancels, before fees.
    pub gross: Money,
    /// Net fee (charged minus returned), signed: negative when the merchant pays.
    pub fees: Money,
    /// What the merchant is paid: `gross + fees`.
    pub net: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindTotals {
    pub count: usize,
    pub settlement: Money,
    pub fee: Money,
}

impl KindTotals {
    fn zero(currency: Currency) -> KindTotals {
        KindTotals {
            count: 0,
            settlement: Money::new(0, currency),
            fee: Money::new(0, currency),
        }
    }

    fn net(self) -> Result<Money, MoneyError> {
        self.settlement.checked_add(self.fee)
    }
}

impl BatchTotals {
    /// Sums items, all in `currency`.
    pub fn of(
        currency: Currency,
        items: &[SettlementItem],
    ) -> Result<BatchTotals, SettlementError> {
        let mut per_kind = [KindTotals::zero(currency); 3];
        for item in items {
            item.check(currency)?;
            let slot = &mut per_kind[item.kind as usize];
            slot.count += 1;
            let settlement = Money::new(item.signed_settlement_minor(), currency);
            slot.settlement = slot.settlement.checked_add(settlement)?;
            slot.fee = slot
                .fee
                .checked_add(Money::new(item.signed_fee_minor(), currency))?;
        }
        let [payments, refunds, cancels] = per_kind;
        let sum = |f: fn(&KindTotals) -> Money| -> Result<Money, MoneyError> {
            per_kind
                .iter()
                .try_fold(Money::new(0, currency), |acc, k| acc.checked_add(f(k)))
        };
        let gross = sum(|k| k.settlement)?;
        let fees = sum(|k| k.fee)?;
        Ok(BatchTotals {
            count: items.len(),
            payments,
            refunds,
            cancels,
            gross,
            fees,
            net: gross.checked_add(fees)?,
        })
    }

    fn of_kind(&self, kind: ItemKind) -> KindTotals {
        match kind {
            ItemKind::Payment => self.payments,
            ItemKind::Refund => self.refunds,
            ItemKind::Cancel => self.cancels,
        }
    }
}

/// A closed settlement batch: one merchant, one settlement currency, one business day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    id: String,
    merchant: String,
    currency: Currency,
    business_day: i64,
    utc_offset_s: i32,
    items: Vec<SettlementItem>,
    totals: BatchTotals,
}

impl Batch {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn merchant(&self) -> &str {
        &self.merchant
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Days since 1970-01-01 in the merchant's calendar.
    pub fn business_day(&self) -> i64 {
        self.business_day
    }

    /// `YYYY-MM-DD`.
    pub fn settlement_date(&self) -> String {
        iso_date(self.business_day)
    }

    pub fn items(&self) -> &[SettlementItem] {
        &self.items
    }

    pub fn totals(&self) -> &BatchTotals {
        &self.totals
    }

    /// The same batch under another id (a second batch of the same merchant, currency and day,
    /// closed early by an operator, needs its own).
    pub fn with_id(mut self, id: impl Into<String>) -> Batch {
        self.id = id.into();
        self
    }

    /// The payout (or collection, when refunds outweigh payments) that settles this batch.
    pub fn payout_entry(&self) -> Result<Option<JournalEntry>, SettlementError> {
        payout_entry(&self.merchant, self.totals.net)
    }
}

/// The id of the batch of `merchant` in `currency` for `business_day`.
pub fn batch_id(merchant: &str, currency: Currency, business_day: i64) -> String {
    format!(
        "{}-{currency}-{merchant}",
        iso_date(business_day).replace('-', "")
    )
}

/// Closes the batch of `merchant` in `currency` for `business_day`: every pending item of theirs
/// with that business day or an earlier one. `None` when there is nothing to settle. Given the
/// stored items of a closed batch, it rebuilds that batch (for re-rendering its reports).
pub fn close_batch(
    merchant: &str,
    currency: Currency,
    cutoff: CutOff,
    business_day: i64,
    pending: &[SettlementItem],
) -> Result<Option<Batch>, SettlementError> {
    let mut items: Vec<SettlementItem> = pending
        .iter()
        .filter(|i| {
            i.merchant == merchant
                && i.settlement_amount.currency() == currency
                && cutoff.business_day(i.transaction_time_s) <= business_day
        })
        .cloned()
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    items.sort_by(|a, b| {
        (a.transaction_time_s, &a.transaction_id).cmp(&(b.transaction_time_s, &b.transaction_id))
    });
    let totals = BatchTotals::of(currency, &items)?;
    Ok(Some(Batch {
        id: batch_id(merchant, currency, business_day),
        merchant: merchant.to_string(),
        currency,
        business_day,
        utc_offset_s: cutoff.utc_offset_s,
        items,
        totals,
    }))
}

/// Every batch that can be closed at `now_s`: per merchant and settlement currency among the
/// pending items, the batch of the merchant's last finished business day.
pub fn due_batches(
    pending: &[SettlementItem],
    cutoff_for: impl Fn(&str) -> CutOff,
    now_s: i64,
) -> Result<Vec<Batch>, SettlementError> {
    let mut keys: Vec<(&str, Currency)> = pending
        .iter()
        .map(|i| (i.merchant.as_str(), i.settlement_amount.currency()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut batches = Vec::new();
    for (merchant, currency) in keys {
        let cutoff = cutoff_for(merchant);
        let day = cutoff.last_closed_day(now_s);
        if let Some(batch) = close_batch(merchant, currency, cutoff, day, pending)? {
            batches.push(batch);
        }
    }
    Ok(batches)
}

// ---------------------------------------------------------------------------------------------
// Report files

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180).
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn csv_line(out: &mut String, fields: &[&str]) {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&line.join(","));
    out.push('\n');
}

const END_LINE: &str = "<END>\n";

/// Header of [`detail_csv`].
pub const DETAIL_HEADER: [&str; 17] = [
    "settlementBatchId",
    "transactionId",
    "originalTransactionId",
    "transactionRequestId",
    "transactionType",
    "paymentMethodType",
    "pspName",
    "referenceMerchantId",
    "referenceStoreId",
    "transactionAmountValue",
    "transactionCurrency",
    "settlementAmountValue",
    "settlementCurrency",
    "quotePrice",
    "feeAmountValue",
    "feeCurrency",
    "transactionTime",
];

/// One line per item, amounts in minor units and signed (see the module doc), times in the
/// merchant's UTC offset; a header row first and `<END>` last.
pub fn detail_csv(batch: &Batch) -> String {
    let mut out = String::new();
    csv_line(&mut out, &DETAIL_HEADER);
    for i in &batch.items {
        let sign = i.kind.sign();
        let quote_price = i.quote_price.map(|p| p.to_string()).unwrap_or_default();
        csv_line(
            &mut out,
            &[
                &batch.id,
                &i.transaction_id,
                i.original_transaction_id.as_deref().unwrap_or(""),
                &i.transaction_request_id,
                i.kind.as_str(),
                &i.payment_method_type,
                &i.psp_name,
                i.reference_merchant_id.as_deref().unwrap_or(""),
                i.reference_store_id.as_deref().unwrap_or(""),
                &(sign * i.transaction_amount.amount_minor()).to_string(),
                i.transaction_amount.currency().code(),
                &i.signed_settlement_minor().to_string(),
                i.settlement_amount.currency().code(),
                &quote_price,
                &i.signed_fee_minor().to_string(),
                i.fee.currency().code(),
                &iso_time(i.transaction_time_s, batch.utc_offset_s),
            ],
        );
    }
    out.push_str(END_LINE);
    out
}

/// Header of [`summary_csv`].
pub const SUMMARY_HEADER: [&str; 9] = [
    "settlementBatchId",
    "merchantId",
    "settlementDate",
    "summaryType",
    "count",
    "grossAmountValue",
    "feeAmountValue",
    "settlementAmountValue",
    "settlementCurrency",
];

/// One row per transaction type and a `TOTAL` row whose `settlementAmountValue` is the payout.
pub fn summary_csv(batch: &Batch) -> Result<String, SettlementError> {
    let mut out = String::new();
    csv_line(&mut out, &SUMMARY_HEADER);
    let date = batch.settlement_date();
    let t = &batch.totals;
    let mut row = |kind: &str, count: usize, gross: Money, fee: Money, net: Money| {
        csv_line(
            &mut out,
            &[
                &batch.id,
                &batch.merchant,
                &date,
                kind,
                &count.to_string(),
                &gross.amount_minor().to_string(),
                &fee.amount_minor().to_string(),
                &net.amount_minor().to_string(),
                batch.currency.code(),
            ],
        );
    };
    for kind in ItemKind::ALL {
        let k = t.of_kind(kind);
        row(kind.as_str(), k.count, k.settlement, k.fee, k.net()?);
    }
    row("TOTAL", t.count, t.gross, t.fees, t.net);
    out.push_str(END_LINE);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Wallet clearing

/// One event as a wallet sees it: what it confirmed, in its own currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingItem {
    pub wallet: String,
    pub kind: ItemKind,
    /// Positive magnitude, in the wallet's currency.
    pub wallet_amount: Money,
}

/// What a wallet owes the acquirer in one currency, signed: payments positive, refunds and
/// cancels negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingTotals {
    pub wallet: String,
    pub currency: Currency,
    pub payments: KindCount,
    pub refunds: KindCount,
    pub cancels: KindCount,
    pub net: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindCount {
    pub count: usize,
    pub amount: Money,
}

/// Clearing totals per wallet and currency, sorted by wallet then currency.
pub fn clearing_totals(items: &[ClearingItem]) -> Result<Vec<ClearingTotals>, SettlementError> {
    let mut map: BTreeMap<(&str, Currency), [KindCount; 3]> = BTreeMap::new();
    for item in items {
        let c = item.wallet_amount.currency();
        if item.wallet_amount.amount_minor() < 0 {
            return Err(SettlementError::Negative {
                transaction_id: format!("clearing item of {}", item.wallet),
            });
        }
        let zero = KindCount {
            count: 0,
            amount: Money::new(0, c),
        };
        let slot =
            &mut map.entry((item.wallet.as_str(), c)).or_insert([zero; 3])[item.kind as usize];
        slot.count += 1;
        let signed = Money::new(item.kind.sign() * item.wallet_amount.amount_minor(), c);
        slot.amount = slot.amount.checked_add(signed)?;
    }
    map.into_iter()
        .map(|((wallet, currency), [payments, refunds, cancels])| {
            let net = payments
                .amount
                .checked_add(refunds.amount)?
                .checked_add(cancels.amount)?;
            Ok(ClearingTotals {
                wallet: wallet.to_string(),
                currency,
                payments,
                refunds,
                cancels,
                net,
            })
        })
        .collect()
}

/// Header of [`clearing_csv`].
pub const CLEARING_HEADER: [&str; 10] = [
    "clearingDate",
    "pspName",
    "currency",
    "paymentCount",
    "paymentAmountValue",
    "refundCount",
    "refundAmountValue",
    "cancelCount",
    "cancelAmountValue",
    "netAmountValue",
];

/// The clearing file both sides reconcile: one row per wallet and currency, minor units, signed.
pub fn clearing_csv(clearing_date: &str, totals: &[ClearingTotals]) -> String {
    let mut out = String::new();
    csv_line(&mut out, &CLEARING_HEADER);
    for t in totals {
        csv_line(
            &mut out,
            &[
                clearing_date,
                &t.wallet,
                t.currency.code(),
                &t.payments.count.to_string(),
                &t.payments.amount.amount_minor().to_string(),
                &t.refunds.count.to_string(),
                &t.refunds.amount.amount_minor().to_string(),
                &t.cancels.count.to_string(),
                &t.cancels.amount.amount_minor().to_string(),
                &t.net.amount_minor().to_string(),
            ],
        );
    }
    out.push_str(END_LINE);
    out
}

// ---------------------------------------------------------------------------------------------
// Journal entries

/// The amounts of one payment (or of one refund or cancel of it), as priced by `fx` and `fee`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub wallet: String,
    pub merchant: String,
    /// What the wallet owes, in its currency.
    pub wallet_amount: Money,
    /// Gross, in the settlement currency.
    pub settlement_amount: Money,
    /// Merchant discount fee, in the settlement currency.
    pub fee: Money,
}

/// A payment: the wallet owes `wallet_amount` (wallet currency) which the FX position turns into
/// `settlement_amount` (settlement currency), owed to the merchant less the fee, which is revenue.
///
/// ```text
/// D wallet_receivable:W:CNY   88.16     C fx_position::CNY          88.16
/// D fx_position::HKD          97.57     C merchant_payable:M:HKD    95.13
///                                       C fee_revenue::HKD           2.44
/// ```
/// Postings on the same account and currency are netted (wallet and settlement currency equal).
pub fn payment_entry(m: &Movement) -> Result<JournalEntry, SettlementError> {
    let fee_ok = m.fee.currency() == m.settlement_amount.currency()
        && (0..=m.settlement_amount.amount_minor()).contains(&m.fee.amount_minor());
    if !m.wallet_amount.is_positive() || !m.settlement_amount.is_positive() || !fee_ok {
        return Err(SettlementError::BadMovement);
    }
    let wallet = Account::WalletReceivable {
        wallet: m.wallet.clone(),
    };
    let merchant = Account::MerchantPayable {
        merchant: m.merchant.clone(),
    };
    let payable = m.settlement_amount.checked_sub(m.fee)?;
    let signed = [
        (wallet, m.wallet_amount),
        (Account::FxPosition, m.wallet_amount.checked_neg()?),
        (Account::FxPosition, m.settlement_amount),
        (merchant, payable.checked_neg()?),
        (Account::FeeRevenue, m.fee.checked_neg()?),
    ];
    netted_entry("payment", &signed)
}

/// A refund: the payment entry's shape with the refund's amounts (converted at the refund day's
/// rate, fee returned pro rata), in the opposite direction.
pub fn refund_entry(m: &Movement) -> Result<JournalEntry, SettlementError> {
    Ok(payment_entry(m)?.reversed("refund"))
}

/// A cancel of a paid payment: the exact reverse of its payment entry.
pub fn cancel_entry(payment: &Movement) -> Result<JournalEntry, SettlementError> {
    Ok(payment_entry(payment)?.reversed("cancel"))
}

/// Settles `net` with the merchant: a payout when positive, a collection when negative, nothing
/// when zero.
pub fn payout_entry(merchant: &str, net: Money) -> Result<Option<JournalEntry>, SettlementError> {
    let payable = Account::MerchantPayable {
        merchant: merchant.to_string(),
    };
    let paid = Account::SettlementPaid {
        merchant: merchant.to_string(),
    };
    let signed = [(payable, net), (paid, net.checked_neg()?)];
    optional_entry(
        if net.is_positive() {
            "settlement_payout"
        } else {
            "settlement_collection"
        },
        &signed,
    )
}

/// Clears `net` with a wallet: it pays what it owes when positive, is paid when negative.
pub fn clearing_entry(wallet: &str, net: Money) -> Result<Option<JournalEntry>, SettlementError> {
    let cleared = Account::WalletCleared {
        wallet: wallet.to_string(),
    };
    let receivable = Account::WalletReceivable {
        wallet: wallet.to_string(),
    };
    optional_entry(
        "wallet_clearing",
        &[(cleared, net), (receivable, net.checked_neg()?)],
    )
}

fn optional_entry(
    kind: &'static str,
    signed: &[(Account, Money)],
) -> Result<Option<JournalEntry>, SettlementError> {
    if signed.iter().all(|(_, m)| m.amount_minor() == 0) {
        return Ok(None);
    }
    netted_entry(kind, signed).map(Some)
}

/// Builds an entry from signed amounts (debit positive), netting each account and currency and
/// dropping zero lines. [`JournalEntry::new`] still checks the balance.
fn netted_entry(
    kind: &'static str,
    signed: &[(Account, Money)],
) -> Result<JournalEntry, SettlementError> {
    let mut net: Vec<(Account, Money)> = Vec::new();
    for (account, amount) in signed {
        match net
            .iter_mut()
            .find(|(a, m)| a == account && m.currency() == amount.currency())
        {
            Some((_, m)) => *m = m.checked_add(*amount)?,
            None => net.push((account.clone(), *amount)),
        }
    }
    let mut postings = Vec::new();
    for (account, amount) in net {
        if amount.is_positive() {
            postings.push(Posting::debit(&account, amount));
        } else if amount.amount_minor() < 0 {
            postings.push(Posting::credit(&account, amount.checked_neg()?));
        }
    }
    Ok(JournalEntry::new(kind, postings)?)
}

// ---------------------------------------------------------------------------------------------
// Calendar (proleptic Gregorian, no time zone database: offsets are given)

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
pub fn iso_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDThh:mm:ss+hh:mm` of `t_s` at `utc_offset_s`.
pub fn iso_time(t_s: i64, utc_offset_s: i32) -> String {
    let local = t_s + i64::from(utc_offset_s);
    let secs = local.rem_euclid(SECONDS_PER_DAY);
    let mut out = iso_date(local.div_euclid(SECONDS_PER_DAY));
    let sign = if utc_offset_s < 0 { '-' } else { '+' };
    let off = utc_offset_s.unsigned_abs() / 60;
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        off / 60,
        off % 60
    );
    out
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).expect("day of month is 1..=31");
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).expect("month is 1..=12");
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    fn hkd(v: i64) -> Money {
        Money::new(v, cur("HKD"))
    }

    // 2026-11-27T00:00:00Z
    const DAY_27_S: i64 = 1_795_737_600;

    fn item(id: &str, kind: ItemKind, settlement: i64, fee: i64, t_s: i64) -> SettlementItem {
        SettlementItem {
            merchant: "M1".into(),
            transaction_id: id.into(),
            original_transaction_id: (kind != ItemKind::Payment).then(|| "P1".to_string()),
            transaction_request_id: format!("req-{id}"),
            kind,
            payment_method_type: "CONNECT_WALLET".into(),
            psp_name: "macaupay".into(),
            reference_merchant_id: None,
            reference_store_id: Some("store, \"A\"".into()),
            transaction_amount: Money::new(settlement + 200, cur("MOP")),
            settlement_amount: hkd(settlement),
            quote_price: Some(Rate::parse("1.02487562").unwrap()),
            fee: hkd(fee),
            transaction_time_s: t_s,
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(DAY_27_S / 86_400), "2026-11-27");
        assert_eq!(iso_date(-1), "1969-12-31");
        assert_eq!(iso_date(11_016), "2000-02-29");
        assert_eq!(
            iso_time(DAY_27_S + 3_661, 8 * 3600),
            "2026-11-27T09:01:01+08:00"
        );
        assert_eq!(
            iso_time(DAY_27_S, -(5 * 3600 + 1800)),
            "2026-11-26T18:30:00-05:30"
        );
    }

    #[test]
    fn business_days_follow_the_local_cut_off() {
        let day = DAY_27_S / 86_400;
        // Cut-off at local midnight (end of day), UTC+8.
        let midnight = CutOff::new(8 * 3600, 86_400).unwrap();
        assert_eq!(midnight.business_day(DAY_27_S - 8 * 3600), day); // 00:00 local on the 27th
        assert_eq!(midnight.business_day(DAY_27_S - 8 * 3600 - 1), day - 1);
        assert_eq!(midnight.business_day(DAY_27_S + 15 * 3600), day); // 23:00 local
        // Cut-off at 18:00 local, UTC+8: 18:00 local (10:00Z) belongs to the next day.
        let evening = CutOff::new(8 * 3600, 18 * 3600).unwrap();
        assert_eq!(evening.business_day(DAY_27_S + 10 * 3600 - 1), day);
        assert_eq!(evening.business_day(DAY_27_S + 10 * 3600), day + 1);
        assert_eq!(evening.last_closed_day(DAY_27_S + 10 * 3600), day);
        assert!(CutOff::new(0, 0).is_err());
        assert!(CutOff::new(19 * 3600, 100).is_err());
    }

    #[test]
    fn batch_totals_and_reports() {
        let cutoff = CutOff::new(8 * 3600, 86_400).unwrap();
        let t = DAY_27_S; // 08:00 local on the 27th
        let pending = vec![
            item("P1", ItemKind::Payment, 9757, 244, t),
            item("P2", ItemKind::Payment, 1000, 25, t + 60),
            item("R1", ItemKind::Refund, 4000, 100, t + 120),
            item("C1", ItemKind::Cancel, 1000, 25, t + 180),
            item("P3", ItemKind::Payment, 500, 13, t + 86_400), // next day: not in this batch
        ];
        let due = due_batches(&pending, |_| cutoff, t + 86_400).unwrap();
        assert_eq!(due.len(), 1);
        let batch = &due[0];
        assert_eq!(batch.id(), "20261127-HKD-M1");
        assert_eq!(batch.items().len(), 4);
        let totals = batch.totals();
        assert_eq!(totals.gross, hkd(9757 + 1000 - 4000 - 1000));
        assert_eq!(totals.fees, hkd(-244 - 25 + 100 + 25));
        assert_eq!(totals.net, hkd(5757 - 144));
        assert_eq!(totals.refunds.count, 1);

        let summary = summary_csv(batch).unwrap();
        assert_eq!(
            summary,
            "settlementBatchId,merchantId,settlementDate,summaryType,count,grossAmountValue,\
             feeAmountValue,settlementAmountValue,settlementCurrency\n\
             20261127-HKD-M1,M1,2026-11-27,PAYMENT,2,10757,-269,10488,HKD\n\
             20261127-HKD-M1,M1,2026-11-27,REFUND,1,-4000,100,-3900,HKD\n\
             20261127-HKD-M1,M1,2026-11-27,CANCEL,1,-1000,25,-975,HKD\n\
             20261127-HKD-M1,M1,2026-11-27,TOTAL,4,5757,-144,5613,HKD\n<END>\n"
        );
        let detail = detail_csv(batch);
        let lines: Vec<&str> = detail.lines().collect();
        assert_eq!(lines[0], DETAIL_HEADER.join(","));
        assert_eq!(
            lines[1],
            "20261127-HKD-M1,P1,,req-P1,PAYMENT,CONNECT_WALLET,macaupay,,\"store, \"\"A\"\"\",\
             9957,MOP,9757,HKD,1.02487562,-244,HKD,2026-11-27T08:00:00+08:00"
        );
        assert!(lines[3].starts_with("20261127-HKD-M1,R1,P1,req-R1,REFUND,"));
        assert!(lines[3].contains(",-4200,MOP,-4000,HKD,1.02487562,100,HKD,"));
        assert_eq!(lines.last(), Some(&"<END>"));
        assert_eq!(lines.len(), 6);

        // The late item of the closed day goes into the next batch with the next day's item.
        let late = item("P0", ItemKind::Payment, 100, 3, t - 3600);
        let next = close_batch(
            "M1",
            cur("HKD"),
            cutoff,
            DAY_27_S / 86_400 + 1,
            &[late, pending[4].clone()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.items().len(), 2);
        assert_eq!(next.id(), "20261128-HKD-M1");
    }

    #[test]
    fn payment_refund_and_payout_entries() {
        let m = Movement {
            wallet: "alipaycn".into(),
            merchant: "M1".into(),
            wallet_amount: Money::new(8816, cur("CNY")),
            settlement_amount: hkd(9757),
            fee: hkd(244),
        };
        let e = payment_entry(&m).unwrap();
        assert_eq!(
            e.to_string(),
            "payment: D wallet_receivable:alipaycn:CNY 88.16 CNY; C fx_position::CNY 88.16 CNY; \
             D fx_position::HKD 97.57 HKD; C merchant_payable:M1:HKD 95.13 HKD; \
             C fee_revenue::HKD 2.44 HKD;"
        );
        assert_eq!(cancel_entry(&m).unwrap(), e.reversed("cancel"));
        // Same wallet and settlement currency: the FX position nets to the difference.
        let same = Movement {
            wallet_amount: hkd(9800),
            fee: hkd(0),
            ..m.clone()
        };
        assert_eq!(
            payment_entry(&same).unwrap().to_string(),
            "payment: D wallet_receivable:alipaycn:HKD 98.00 HKD; C fx_position::HKD 0.43 HKD; \
             C merchant_payable:M1:HKD 97.57 HKD;"
        );
        assert_eq!(
            payment_entry(&Movement {
                fee: hkd(9758),
                ..m.clone()
            }),
            Err(SettlementError::BadMovement)
        );
        assert_eq!(
            payout_entry("M1", hkd(5613)).unwrap().unwrap().to_string(),
            "settlement_payout: D merchant_payable:M1:HKD 56.13 HKD; C settlement_paid:M1:HKD 56.13 HKD;"
        );
        assert_eq!(
            payout_entry("M1", hkd(-10)).unwrap().unwrap().to_string(),
            "settlement_collection: C merchant_payable:M1:HKD 0.10 HKD; D settlement_paid:M1:HKD 0.10 HKD;"
        );
        assert_eq!(payout_entry("M1", hkd(0)).unwrap(), None);
    }

    #[test]
    fn clearing_totals_per_wallet_and_currency() {
        let c = |wallet: &str, kind, v: i64, code: &str| ClearingItem {
            wallet: wallet.into(),
            kind,
            wallet_amount: Money::new(v, cur(code)),
        };
        let items = [
            c("gcash", ItemKind::Payment, 1000, "PHP"),
            c("gcash", ItemKind::Payment, 500, "PHP"),
            c("gcash", ItemKind::Refund, 200, "PHP"),
            c("alipaycn", ItemKind::Payment, 8816, "CNY"),
            c("alipaycn", ItemKind::Cancel, 8816, "CNY"),
        ];
        let totals = clearing_totals(&items).unwrap();
        assert_eq!(
            clearing_csv("2026-11-27", &totals),
            "clearingDate,pspName,currency,paymentCount,paymentAmountValue,refundCount,\
             refundAmountValue,cancelCount,cancelAmountValue,netAmountValue\n\
             2026-11-27,alipaycn,CNY,1,8816,0,0,1,-8816,0\n\
             2026-11-27,gcash,PHP,2,1500,1,-200,0,0,1300\n<END>\n"
        );
        assert_eq!(
            clearing_entry("gcash", totals[1].net)
                .unwrap()
                .unwrap()
                .to_string(),
            "wallet_clearing: D wallet_cleared:gcash:PHP 13.00 PHP; C wallet_receivable:gcash:PHP 13.00 PHP;"
        );
        assert_eq!(clearing_entry("alipaycn", totals[0].net).unwrap(), None);
    }
}
