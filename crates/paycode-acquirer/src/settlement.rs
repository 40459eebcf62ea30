//! Settlement batches per merchant and settlement currency, wallet clearing per wallet and
//! currency, and their report files — the storage side of `paycode_core::settlement`.
//!
//! **Intake.** Settled events (a paid payment, a successful refund, the cancel of a paid
//! payment) are swept from `payments` and `refunds` into `settlement_items` by their event time,
//! in bounded chunks read on a reader connection (the writer only inserts what is new), each
//! at most once (keyed by transaction and kind). A sweep starts
//! [`SWEEP_LOOKBACK_MS`] before the previous one ended, so an event whose write committed a
//! little after its timestamp is still taken; `paycode audit` checks that nothing older was
//! missed. Each item records when its business day ends (`settle_due_ms`, in the merchant's IANA
//! time zone at its cut-off) and when its UTC clearing day ends (`clearing_due_ms`).
//!
//! **Closing.** A batch is closed in one write job: its row, the `batch_id` of each of its items
//! and its payout (or collection) journal entry commit together, so a batch and its payout are
//! never apart; the report files are written after the commit and can always be rebuilt from
//! the store, because a closed batch never changes. [`Acquirer::settle_due`] closes the batches
//! whose cut-off has passed; [`Acquirer::settle_now`] closes everything up to now. An event that
//! arrives after its day's batch was closed (at the cut-off, or early by an operator) goes into
//! the next day's batch; an operator closing the same day again gets a further batch of that
//! day (`…-2`, `…-3`), since a closed batch is never reopened.
//!
//! **Cost.** The background pass sweeps at most every [`SWEEP_INTERVAL_MS`] and otherwise asks
//! one question of the store — is a batch, a clearing or a file due? — through partial indexes,
//! so an idle acquirer pays one cheap read, and a write of the sweep cursor once an hour.

use crate::registry::Snapshot;
use crate::service::{Acquirer, ApiError};
pub use crate::store::settlement::{BatchRow, ClearingRow, ItemRow};
use crate::store::settlement::{Group, Source, SourceRow};
use crate::store::{self, PaymentRow, RefundRow, StoreError, StoreResult};
use chrono::{Offset, TimeZone};
use paycode_core::fx::Rate;
use paycode_core::settlement::{
    self as core, Batch, ClearingItem, ClearingTotals, CutOff, ItemKind, SettlementItem,
};
use paycode_core::{Currency, Money};
use paycode_db::sql::Connection;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A background pass sweeps new events at most this often (closing always sweeps first).
pub const SWEEP_INTERVAL_MS: i64 = 60_000;
/// A sweep re-reads this far before where the previous one ended.
pub const SWEEP_LOOKBACK_MS: i64 = 60_000;
/// Events taken into `settlement_items` per write job.
pub const SWEEP_CHUNK_MAX: usize = 1_000;
/// A sweep that finds nothing new still moves its cursor when its window is longer than this,
/// so that an idle acquirer writes the cursor at most once per this time.
pub const SWEEP_WINDOW_MAX_MS: i64 = 3_600_000;
/// Batches (and clearings) closed per pass at most; the next pass takes the rest.
pub const CLOSE_MAX_PER_PASS: usize = 1_000;

/// Closed batches (or clearings) whose files one read job renders at most.
const FILES_PER_JOB_MAX: usize = 64;

/// The `paymentMethodType` of every payment the acquirer takes.
const PAYMENT_METHOD_TYPE: &str = "CONNECT_WALLET";

/// How [`Acquirer`] decides which batches to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only business days whose cut-off has passed.
    Due,
    /// Everything up to now, the current business day included.
    Now,
}

/// A merchant's settlement calendar: its IANA zone and its daily cut-off.
#[derive(Debug, Clone, Copy)]
pub struct Calendar {
    tz: chrono_tz::Tz,
    cutoff_local_s: u32,
}

impl Calendar {
    /// `cutoff_minutes` after local midnight; 0 means the end of the day.
    pub fn new(time_zone: &str, cutoff_minutes: u32) -> Calendar {
        let tz = time_zone.parse().unwrap_or_else(|_| {
            tracing::warn!(time_zone, "unknown time zone: settling in UTC");
            chrono_tz::UTC
        });
        let cutoff_local_s = if cutoff_minutes == 0 || cutoff_minutes >= 24 * 60 {
            86_400
        } else {
            cutoff_minutes * 60
        };
        Calendar { tz, cutoff_local_s }
    }

    /// Wallet clearing days end at UTC midnight.
    pub fn utc() -> Calendar {
        Calendar::new("UTC", 0)
    }

    fn offset_at_s(&self, t_s: i64) -> i32 {
        chrono::DateTime::from_timestamp(t_s, 0)
            .map(|d| d.with_timezone(&self.tz).offset().fix().local_minus_utc())
            .unwrap_or(0)
    }

    /// The core cut-off with the UTC offset in force at `t_s`.
    pub fn cutoff_at(&self, t_s: i64) -> CutOff {
        CutOff::new(self.offset_at_s(t_s), self.cutoff_local_s)
            .or_else(|_| CutOff::new(0, self.cutoff_local_s))
            .expect("a cut-off of 1..=86400 s at UTC is valid")
    }

    /// The business day of an event at `t_s`.
    pub fn business_day(&self, t_s: i64) -> i64 {
        self.cutoff_at(t_s).business_day(t_s)
    }

    /// The UTC instant (unix seconds) at which business day `day` ends.
    pub fn day_end_s(&self, day: i64) -> i64 {
        let local_s = day * 86_400 + i64::from(self.cutoff_local_s);
        let Some(naive) = chrono::DateTime::from_timestamp(local_s, 0).map(|d| d.naive_utc())
        else {
            return local_s;
        };
        match self.tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(d) => d.timestamp(),
            chrono::LocalResult::Ambiguous(first, _) => first.timestamp(),
            // A local time skipped by a clock change: the day ends when the clock jumps.
            chrono::LocalResult::None => local_s - i64::from(self.offset_at_s(local_s - 86_400)),
        }
    }

    pub fn cutoff_local_s(&self) -> u32 {
        self.cutoff_local_s
    }
}

/// A closed settlement batch as listed by the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    pub batch_id: String,
    pub merchant: String,
    pub currency: String,
    pub settlement_date: String,
    pub seq: i64,
    pub item_count: i64,
    pub gross_minor: i64,
    pub fee_minor: i64,
    /// The payout (negative: a collection from the merchant).
    pub net_minor: i64,
    pub entry_id: Option<i64>,
    pub closed_ms: i64,
}

/// A closed wallet clearing as listed by the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearingInfo {
    pub clearing_id: String,
    pub wallet: String,
    pub currency: String,
    pub clearing_date: String,
    pub seq: i64,
    pub item_count: i64,
    /// What the wallet owes (negative: what it is owed).
    pub net_minor: i64,
    pub entry_id: Option<i64>,
    pub closed_ms: i64,
}

/// What one settlement run closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleOutcome {
    /// Events taken into settlement by this run's sweep.
    pub n_swept: usize,
    pub batches: Vec<BatchInfo>,
    pub clearings: Vec<ClearingInfo>,
}

/// A file name safe on every platform for a batch or clearing id (merchant names hold `/`).
pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn currency(code: &str) -> StoreResult<Currency> {
    Currency::parse(code).map_err(|e| corrupt(format!("stored currency {code:?}: {e}")))
}

fn kind_of(text: &str) -> StoreResult<ItemKind> {
    match text {
        "PAYMENT" => Ok(ItemKind::Payment),
        "REFUND" => Ok(ItemKind::Refund),
        "CANCEL" => Ok(ItemKind::Cancel),
        other => Err(corrupt(format!("settlement item kind {other:?}"))),
    }
}

/// The price of a stored wire quote (JSON), if any.
pub(crate) fn quote_price(quote_json: Option<&str>) -> StoreResult<Option<String>> {
    let Some(text) = quote_json else {
        return Ok(None);
    };
    let q: paycode_proto::Quote =
        serde_json::from_str(text).map_err(|e| corrupt(format!("stored quote: {e}")))?;
    Ok(Some(q.quote_price))
}

// ---------------------------------------------------------------------------------------------
// Items

impl ItemRow {
    /// The core settlement item.
    pub fn to_item(&self) -> StoreResult<SettlementItem> {
        let settle = currency(&self.settle_currency)?;
        let quote_price = match &self.quote_price {
            Some(p) => Some(Rate::parse(p).map_err(|e| corrupt(format!("quote price {p}: {e}")))?),
            None => None,
        };
        let kind = kind_of(&self.kind)?;
        Ok(SettlementItem {
            merchant: self.merchant.clone(),
            transaction_id: self.transaction_id.clone(),
            original_transaction_id: (kind != ItemKind::Payment).then(|| self.payment_id.clone()),
            transaction_request_id: self.transaction_request_id.clone(),
            kind,
            payment_method_type: self.payment_method_type.clone(),
            psp_name: self.psp_name.clone(),
            reference_merchant_id: Some(self.reference_merchant_id.clone()),
            reference_store_id: self.reference_store_id.clone(),
            transaction_amount: Money::new(self.amount_minor, currency(&self.currency)?),
            settlement_amount: Money::new(self.settle_minor, settle),
            quote_price,
            fee: Money::new(self.fee_minor, settle),
            transaction_time_s: self.event_ms.div_euclid(1000),
        })
    }

    /// The core clearing item.
    pub fn to_clearing_item(&self) -> StoreResult<ClearingItem> {
        Ok(ClearingItem {
            wallet: self.wallet.clone(),
            kind: kind_of(&self.kind)?,
            wallet_amount: Money::new(self.wallet_amount_minor, currency(&self.wallet_currency)?),
        })
    }

    /// The columns that the transaction's own row determines (everything but the due times and
    /// the batch references), for comparing a stored item with its source.
    pub fn facts(&self) -> ItemRow {
        ItemRow {
            settle_due_ms: 0,
            batch_id: None,
            clearing_due_ms: 0,
            clearing_id: None,
            ..self.clone()
        }
    }
}

/// An item's facts from a source query row (due times and batch references left empty).
pub(crate) fn source_item(r: SourceRow) -> StoreResult<ItemRow> {
    Ok(ItemRow {
        merchant: format!("{}/{}", r.client_id, r.reference_merchant_id),
        quote_price: quote_price(r.settlement_quote.as_deref())?,
        transaction_id: r.transaction_id,
        kind: r.kind,
        payment_id: r.payment_id,
        client_id: r.client_id,
        reference_merchant_id: r.reference_merchant_id,
        reference_store_id: r.reference_store_id,
        transaction_request_id: r.transaction_request_id,
        payment_method_type: PAYMENT_METHOD_TYPE.to_string(),
        wallet: r.wallet,
        psp_name: r.psp_name,
        amount_minor: r.amount_minor,
        currency: r.currency,
        wallet_amount_minor: r.wallet_amount_minor,
        wallet_currency: r.wallet_currency,
        settle_minor: r.settle_minor,
        settle_currency: r.settle_currency,
        fee_minor: r.fee_minor,
        event_ms: r.event_ms,
        settle_due_ms: 0,
        batch_id: None,
        clearing_due_ms: 0,
        clearing_id: None,
    })
}

/// Item facts built from stored payment and refund rows: the audit's independent view of what
/// the sweep's queries (see [`Source`]) must have produced.
pub struct PaymentFacts<'a> {
    p: &'a PaymentRow,
}

impl<'a> PaymentFacts<'a> {
    pub fn of(p: &'a PaymentRow) -> PaymentFacts<'a> {
        PaymentFacts { p }
    }

    fn base(&self, kind: ItemKind, event_ms: Option<i64>) -> StoreResult<ItemRow> {
        let p = self.p;
        let event_ms = event_ms.ok_or_else(|| {
            corrupt(format!(
                "payment {} has no {} time",
                p.payment_id,
                kind.as_str()
            ))
        })?;
        Ok(ItemRow {
            transaction_id: p.payment_id.clone(),
            kind: kind.as_str().to_string(),
            payment_id: p.payment_id.clone(),
            merchant: format!("{}/{}", p.client_id, p.reference_merchant_id),
            client_id: p.client_id.clone(),
            reference_merchant_id: p.reference_merchant_id.clone(),
            reference_store_id: p.reference_store_id.clone(),
            transaction_request_id: p.payment_request_id.clone(),
            payment_method_type: PAYMENT_METHOD_TYPE.to_string(),
            wallet: p.wallet.clone(),
            psp_name: p.psp_name.clone(),
            amount_minor: p.amount_minor,
            currency: p.currency.clone(),
            wallet_amount_minor: p.pay_to_minor,
            wallet_currency: p.pay_to_currency.clone(),
            settle_minor: p.settle_minor,
            settle_currency: p.settle_currency.clone(),
            quote_price: quote_price(p.settlement_quote.as_deref())?,
            fee_minor: p.fee_minor,
            event_ms,
            settle_due_ms: 0,
            batch_id: None,
            clearing_due_ms: 0,
            clearing_id: None,
        })
    }

    pub fn payment_item(&self) -> StoreResult<ItemRow> {
        self.base(ItemKind::Payment, self.p.paid_ms)
    }

    pub fn cancel_item(&self) -> StoreResult<ItemRow> {
        self.base(ItemKind::Cancel, self.p.cancelled_ms)
    }

    pub fn refund_item(&self, r: &RefundRow) -> StoreResult<ItemRow> {
        let mut item = self.base(ItemKind::Refund, r.refunded_ms)?;
        item.transaction_id = r.refund_id.clone();
        item.transaction_request_id = r.refund_request_id.clone();
        item.amount_minor = r.amount_minor;
        item.currency = r.currency.clone();
        item.wallet_amount_minor = r.wallet_amount_minor;
        item.wallet_currency = r.wallet_currency.clone();
        item.settle_minor = r.settle_minor;
        item.settle_currency = r.settle_currency.clone();
        item.quote_price = quote_price(r.settlement_quote.as_deref())?;
        item.fee_minor = r.fee_minor;
        Ok(item)
    }
}

/// The calendar of a merchant as registered now (UTC midnight when it is unknown).
pub(crate) fn merchant_calendar(snap: &Snapshot, client_id: &str, merchant_id: &str) -> Calendar {
    match snap.merchant(client_id, merchant_id) {
        Some(m) => Calendar::new(&m.time_zone, m.cutoff_minutes),
        None => Calendar::utc(),
    }
}

pub(crate) fn due_ms(cal: &Calendar, event_ms: i64) -> i64 {
    cal.day_end_s(cal.business_day(event_ms.div_euclid(1000))) * 1000
}

/// Reads up to [`SWEEP_CHUNK_MAX`] events of `source` with `from_ms <= time < to_ms`, after
/// the key `after` and not yet in `settlement_items`, with their due times (a read: the writer
/// only inserts what this found).
fn read_chunk(
    c: &Connection,
    snap: &Snapshot,
    source: Source,
    from_ms: i64,
    to_ms: i64,
    after: &(i64, String),
) -> StoreResult<Vec<ItemRow>> {
    let rows = store::settlement::source_chunk(c, source, from_ms, to_ms, after, SWEEP_CHUNK_MAX)?;
    let mut calendars: HashMap<(String, String), Calendar> = HashMap::new();
    let utc = Calendar::utc();
    let mut out = Vec::new();
    for r in rows {
        let mut item = source_item(r)?;
        let cal = *calendars
            .entry((item.client_id.clone(), item.reference_merchant_id.clone()))
            .or_insert_with(|| {
                merchant_calendar(snap, &item.client_id, &item.reference_merchant_id)
            });
        item.settle_due_ms = due_ms(&cal, item.event_ms);
        item.clearing_due_ms = due_ms(&utc, item.event_ms);
        out.push(item);
    }
    Ok(out)
}

/// When this process next sweeps, per store. Kept in memory (a process-wide map keyed by the
/// store's path, since the throttle is this process's own business): an idle background pass
/// then neither writes nor sweeps, and a restarted process sweeps at once.
fn sweep_schedule() -> &'static std::sync::Mutex<HashMap<PathBuf, i64>> {
    static NEXT: std::sync::OnceLock<std::sync::Mutex<HashMap<PathBuf, i64>>> =
        std::sync::OnceLock::new();
    NEXT.get_or_init(Default::default)
}

fn next_sweep_ms(db_path: &Path) -> i64 {
    sweep_schedule()
        .lock()
        .map(|m| m.get(db_path).copied().unwrap_or(0))
        .unwrap_or(0)
}

fn set_next_sweep_ms(db_path: &Path, at_ms: i64) {
    if let Ok(mut m) = sweep_schedule().lock() {
        m.insert(db_path.to_path_buf(), at_ms);
    }
}

// ---------------------------------------------------------------------------------------------
// Batches

impl BatchRow {
    pub fn info(&self) -> BatchInfo {
        BatchInfo {
            batch_id: self.batch_id.clone(),
            merchant: self.merchant.clone(),
            currency: self.currency.clone(),
            settlement_date: core::iso_date(self.business_day),
            seq: self.seq,
            item_count: self.item_count,
            gross_minor: self.gross_minor,
            fee_minor: self.fee_minor,
            net_minor: self.net_minor,
            entry_id: self.entry_id,
            closed_ms: self.closed_ms,
        }
    }
}

/// Rebuilds a closed batch from its stored items, for its reports and for audit. The batch's
/// id, day, offset and cut-off are the stored ones, so the result is what was closed.
pub fn rebuild_batch(c: &Connection, row: &BatchRow) -> StoreResult<Batch> {
    let items = store::settlement::items_of_batch(c, &row.batch_id)?
        .iter()
        .map(ItemRow::to_item)
        .collect::<StoreResult<Vec<_>>>()?;
    let cutoff = CutOff::new(row.utc_offset_s, row.cutoff_local_s)
        .map_err(|e| corrupt(format!("batch {}: {e}", row.batch_id)))?;
    let batch = core::close_batch(
        &row.merchant,
        currency(&row.currency)?,
        cutoff,
        row.business_day,
        &items,
    )
    .map_err(|e| corrupt(format!("batch {}: {e}", row.batch_id)))?
    .ok_or_else(|| corrupt(format!("batch {} has no items", row.batch_id)))?;
    if batch.items().len() != items.len() {
        return Err(corrupt(format!(
            "batch {} holds {} items of which {} belong to its merchant, currency and day",
            row.batch_id,
            items.len(),
            batch.items().len()
        )));
    }
    Ok(batch.with_id(row.batch_id.clone()))
}

fn batch_id_with_seq(base: &str, seq: i64) -> String {
    if seq == 1 {
        base.to_string()
    } else {
        format!("{base}-{seq}")
    }
}

/// The latest due time a pass in this mode closes.
fn bound_ms(mode: Mode, now_ms: i64) -> i64 {
    match mode {
        Mode::Due => now_ms,
        Mode::Now => i64::MAX,
    }
}

/// The business day to close and the cut-off (offset) it is closed with.
fn day_to_close(cal: &Calendar, mode: Mode, now_ms: i64) -> (i64, CutOff) {
    let now_s = now_ms.div_euclid(1000);
    match mode {
        Mode::Due => {
            let day = cal.business_day(now_s) - 1;
            // The offset in force just before the day ended: every earlier event falls on or
            // before that day with it.
            (day, cal.cutoff_at(cal.day_end_s(day) - 1))
        }
        Mode::Now => (cal.business_day(now_s), cal.cutoff_at(now_s)),
    }
}

/// Closes the batch of one merchant and currency in the caller's transaction; returns it with
/// its row, or `None` when nothing was due.
fn close_settlement(
    c: &Connection,
    group: &Group,
    cal: &Calendar,
    mode: Mode,
    now_ms: i64,
) -> StoreResult<Option<(BatchRow, Batch)>> {
    let (day, cutoff) = day_to_close(cal, mode, now_ms);
    let last_seq = store::settlement::last_batch_seq(c, group, day)?;
    if mode == Mode::Due && last_seq.is_some() {
        // The day was closed already (early, or these are late events): they go into the next
        // day's batch.
        defer_settlement(c, group, cal, day, now_ms)?;
        return Ok(None);
    }
    let rows = store::settlement::unsettled_items(c, group, bound_ms(mode, now_ms))?;
    let items = rows
        .iter()
        .map(ItemRow::to_item)
        .collect::<StoreResult<Vec<_>>>()?;
    let settle_currency = currency(&group.currency)?;
    let Some(batch) = core::close_batch(&group.owner, settle_currency, cutoff, day, &items)
        .map_err(|e| corrupt(format!("closing {} {}: {e}", group.owner, group.currency)))?
    else {
        if mode == Mode::Due {
            defer_settlement(c, group, cal, day, now_ms)?;
        }
        return Ok(None);
    };
    let seq = last_seq.map_or(1, |s| s + 1);
    let batch_id = batch_id_with_seq(batch.id(), seq);
    let batch = batch.with_id(batch_id.clone());
    let entry_id = match batch
        .payout_entry()
        .map_err(|e| corrupt(format!("payout of {batch_id}: {e}")))?
    {
        Some(entry) => Some(store::post_entry(c, &entry, None, None, now_ms)?),
        None => None,
    };
    let t = batch.totals();
    let row = BatchRow {
        batch_id: batch_id.clone(),
        merchant: group.owner.clone(),
        currency: group.currency.clone(),
        business_day: day,
        seq,
        utc_offset_s: cutoff.utc_offset_s(),
        cutoff_local_s: cal.cutoff_local_s(),
        item_count: t.count as i64,
        gross_minor: t.gross.amount_minor(),
        fee_minor: t.fees.amount_minor(),
        net_minor: t.net.amount_minor(),
        entry_id,
        closed_ms: now_ms,
    };
    store::settlement::insert_batch(c, &row)?;
    for item in batch.items() {
        if !store::settlement::assign_batch(c, &batch_id, &item.transaction_id, item.kind.as_str())?
        {
            return Err(corrupt(format!(
                "item {} {} is already in a batch",
                item.kind.as_str(),
                item.transaction_id
            )));
        }
    }
    if mode == Mode::Due {
        // Whatever the day's cut-off left out waits for the next day.
        defer_settlement(c, group, cal, day, now_ms)?;
    }
    Ok(Some((row, batch)))
}

/// Moves a group's unsettled items that are due at `now_ms` to the end of the day after `day`,
/// so that a closed day is never reopened and a due item is never due twice.
fn defer_settlement(
    c: &Connection,
    group: &Group,
    cal: &Calendar,
    day: i64,
    now_ms: i64,
) -> StoreResult<()> {
    let next_due_ms = cal.day_end_s(day + 1) * 1000;
    store::settlement::defer_unsettled(c, group, now_ms, next_due_ms)
}

// ---------------------------------------------------------------------------------------------
// Clearing

impl ClearingRow {
    pub fn info(&self) -> ClearingInfo {
        ClearingInfo {
            clearing_id: self.clearing_id.clone(),
            wallet: self.wallet.clone(),
            currency: self.currency.clone(),
            clearing_date: core::iso_date(self.business_day),
            seq: self.seq,
            item_count: self.item_count,
            net_minor: self.net_minor,
            entry_id: self.entry_id,
            closed_ms: self.closed_ms,
        }
    }
}

/// The totals of a closed clearing, from its stored items (exactly one wallet and currency).
pub fn rebuild_clearing(c: &Connection, row: &ClearingRow) -> StoreResult<ClearingTotals> {
    let items = store::settlement::items_of_clearing(c, &row.clearing_id)?
        .iter()
        .map(ItemRow::to_clearing_item)
        .collect::<StoreResult<Vec<_>>>()?;
    let mut totals = core::clearing_totals(&items)
        .map_err(|e| corrupt(format!("clearing {}: {e}", row.clearing_id)))?;
    if totals.len() != 1 {
        return Err(corrupt(format!(
            "clearing {} spans {} wallet currencies",
            row.clearing_id,
            totals.len()
        )));
    }
    Ok(totals.remove(0))
}

/// The clearing file of one closed clearing.
pub fn clearing_file(c: &Connection, row: &ClearingRow) -> StoreResult<String> {
    let totals = rebuild_clearing(c, row)?;
    Ok(core::clearing_csv(
        &core::iso_date(row.business_day),
        &[totals],
    ))
}

fn close_clearing(
    c: &Connection,
    group: &Group,
    mode: Mode,
    now_ms: i64,
) -> StoreResult<Option<ClearingRow>> {
    let cal = Calendar::utc();
    let (day, _) = day_to_close(&cal, mode, now_ms);
    let last_seq = store::settlement::last_clearing_seq(c, group, day)?;
    if mode == Mode::Due && last_seq.is_some() {
        let next_due_ms = cal.day_end_s(day + 1) * 1000;
        store::settlement::defer_uncleared(c, group, now_ms, next_due_ms)?;
        return Ok(None);
    }
    let rows = store::settlement::uncleared_items(c, group, bound_ms(mode, now_ms))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let items = rows
        .iter()
        .map(ItemRow::to_clearing_item)
        .collect::<StoreResult<Vec<_>>>()?;
    let totals = core::clearing_totals(&items)
        .map_err(|e| corrupt(format!("clearing {} {}: {e}", group.owner, group.currency)))?;
    let [total] = totals.as_slice() else {
        return Err(corrupt(format!(
            "clearing {} {} spans several currencies",
            group.owner, group.currency
        )));
    };
    let seq = last_seq.map_or(1, |s| s + 1);
    let base = format!(
        "CLR-{}",
        core::batch_id(&group.owner, currency(&group.currency)?, day)
    );
    let clearing_id = batch_id_with_seq(&base, seq);
    let entry_id = match core::clearing_entry(&group.owner, total.net)
        .map_err(|e| corrupt(format!("clearing entry of {clearing_id}: {e}")))?
    {
        Some(entry) => Some(store::post_entry(c, &entry, None, None, now_ms)?),
        None => None,
    };
    let row = ClearingRow {
        clearing_id: clearing_id.clone(),
        wallet: group.owner.clone(),
        currency: group.currency.clone(),
        business_day: day,
        seq,
        item_count: rows.len() as i64,
        net_minor: total.net.amount_minor(),
        entry_id,
        closed_ms: now_ms,
    };
    store::settlement::insert_clearing(c, &row)?;
    for item in &rows {
        if !store::settlement::assign_clearing(c, &clearing_id, &item.transaction_id, &item.kind)? {
            return Err(corrupt(format!(
                "item {} {} is already cleared",
                item.kind, item.transaction_id
            )));
        }
    }
    Ok(Some(row))
}

// ---------------------------------------------------------------------------------------------
// Report files

/// Where report files go: `<data-dir>/reports`, the data directory being the store's folder.
pub fn reports_dir(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("reports")
}

/// The summary and detail files of a batch.
pub fn batch_file_paths(reports: &Path, batch_id: &str) -> (PathBuf, PathBuf) {
    let dir = reports.join("settlement");
    let stem = file_stem(batch_id);
    (
        dir.join(format!("{stem}-summary.csv")),
        dir.join(format!("{stem}-detail.csv")),
    )
}

pub fn clearing_file_path(reports: &Path, clearing_id: &str) -> PathBuf {
    reports
        .join("clearing")
        .join(format!("{}.csv", file_stem(clearing_id)))
}

/// Writes `text` to `path` unless it already holds exactly that (through a temporary file and
/// a rename, so a reader never sees half a report).
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn io_error(path: &Path, e: std::io::Error) -> ApiError {
    tracing::error!(path = %path.display(), error = %e, "writing a report file failed");
    ApiError::new(
        paycode_core::ResultCode::UNKNOWN_EXCEPTION,
        format!("cannot write report {}: {e}", path.display()),
    )
}

// ---------------------------------------------------------------------------------------------
// The use cases

impl Acquirer {
    fn reports_dir(&self) -> PathBuf {
        reports_dir(&self.config().db_path)
    }

    /// Closes every batch and clearing whose cut-off has passed at `now_ms`. Cheap when nothing
    /// is due: one indexed read, and no write.
    pub async fn settle_due(&self, now_ms: i64) -> Result<SettleOutcome, ApiError> {
        let sweep_due = now_ms >= next_sweep_ms(&self.config().db_path);
        let due = sweep_due
            || self
                .db()
                .read(move |c| store::settlement::anything_due(c, now_ms).map_err(ApiError::from))
                .await?;
        if !due {
            return Ok(SettleOutcome::default());
        }
        self.run_settlement(Mode::Due, now_ms).await
    }

    /// Closes everything up to now, the current business day included (an operator's close).
    pub async fn settle_now(&self) -> Result<SettleOutcome, ApiError> {
        self.run_settlement(Mode::Now, self.now_ms()).await
    }

    /// One background settlement pass; failures are logged, never fatal to other work.
    pub(crate) async fn settle_pass(&self) {
        if let Err(e) = self.settle_due(self.now_ms()).await {
            tracing::error!(code = %e.code, error = %e.message, "settlement pass failed");
        }
    }

    async fn run_settlement(&self, mode: Mode, now_ms: i64) -> Result<SettleOutcome, ApiError> {
        let n_swept = self.sweep(now_ms).await?;
        let mut out = SettleOutcome {
            n_swept,
            ..SettleOutcome::default()
        };
        let groups = self
            .db()
            .read(move |c| {
                store::settlement::due_settlement_groups(
                    c,
                    bound_ms(mode, now_ms),
                    CLOSE_MAX_PER_PASS,
                )
                .map_err(ApiError::from)
            })
            .await?;
        let snap = self.snapshot();
        // One group's failure (say a corrupt row) must not hold up the others' payouts.
        let mut first_error: Option<ApiError> = None;
        for group in groups {
            let cal = merchant_calendar(&snap, &group.client_id, &group.reference_merchant_id);
            let what = format!("{} {}", group.owner, group.currency);
            let closed = self
                .db()
                .write(move |c| {
                    close_settlement(c, &group, &cal, mode, now_ms).map_err(ApiError::from)
                })
                .await;
            let closed = match closed {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(group = %what, error = %e.message, "closing a settlement batch failed");
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            if let Some((row, _)) = closed {
                tracing::info!(batch_id = %row.batch_id, items = row.item_count, net_minor = row.net_minor, currency = %row.currency, "settlement batch closed");
                out.batches.push(row.info());
            }
        }
        let groups = self
            .db()
            .read(move |c| {
                store::settlement::due_clearing_groups(
                    c,
                    bound_ms(mode, now_ms),
                    CLOSE_MAX_PER_PASS,
                )
                .map_err(ApiError::from)
            })
            .await?;
        for group in groups {
            let what = format!("{} {}", group.owner, group.currency);
            let closed = self
                .db()
                .write(move |c| close_clearing(c, &group, mode, now_ms).map_err(ApiError::from))
                .await;
            let closed = match closed {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(group = %what, error = %e.message, "closing a wallet clearing failed");
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            if let Some(row) = closed {
                tracing::info!(clearing_id = %row.clearing_id, items = row.item_count, net_minor = row.net_minor, currency = %row.currency, "wallet clearing closed");
                out.clearings.push(row.info());
            }
        }
        self.write_pending_files().await?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Takes new settled events into `settlement_items`; returns how many were new.
    async fn sweep(&self, now_ms: i64) -> Result<usize, ApiError> {
        let (swept_ms, _) = self
            .db()
            .read(|c| store::settlement::cursor(c).map_err(ApiError::from))
            .await?;
        let from_ms = (swept_ms - SWEEP_LOOKBACK_MS).max(0);
        let to_ms = now_ms.saturating_add(1);
        let mut n_new_total = 0;
        for source in Source::ALL {
            let mut after = (i64::MIN, String::new());
            loop {
                let snap: Arc<Snapshot> = self.snapshot();
                let key = after.clone();
                let items = self
                    .db()
                    .read(move |c| {
                        read_chunk(c, &snap, source, from_ms, to_ms, &key).map_err(ApiError::from)
                    })
                    .await?;
                let full = items.len() == SWEEP_CHUNK_MAX;
                let last = items.last().map(|i| (i.event_ms, i.transaction_id.clone()));
                if !items.is_empty() {
                    n_new_total += self
                        .db()
                        .write(move |c| {
                            let mut n = 0;
                            for item in &items {
                                n += store::settlement::insert_item(c, item)?;
                            }
                            Ok::<_, ApiError>(n)
                        })
                        .await?;
                }
                match last {
                    Some(last) if full => after = last,
                    _ => break,
                }
            }
        }
        // The cursor moves when something was taken in, so an idle sweep costs no write; its
        // window then stays at most the lookback plus the time since the last event. It also
        // moves when the window has grown past an hour: the sweep still scans the events of
        // its window that are items already, and a store seeded or restored with its items
        // (its cursor far behind) was otherwise scanned whole at every sweep.
        if n_new_total > 0 || swept_ms < now_ms - SWEEP_WINDOW_MAX_MS {
            self.db()
                .write(move |c| {
                    store::settlement::set_cursor(c, to_ms, now_ms + SWEEP_INTERVAL_MS)
                        .map_err(ApiError::from)
                })
                .await?;
        }
        set_next_sweep_ms(&self.config().db_path, now_ms + SWEEP_INTERVAL_MS);
        Ok(n_new_total)
    }

    /// Writes the report files of closed batches and clearings that have none yet.
    async fn write_pending_files(&self) -> Result<(), ApiError> {
        let reports = self.reports_dir();
        loop {
            let todo = self
                .db()
                .read(|c| {
                    let rows = store::settlement::batches_without_files(c, FILES_PER_JOB_MAX)?;
                    let mut out = Vec::new();
                    for row in rows {
                        let batch = rebuild_batch(c, &row)?;
                        let summary = core::summary_csv(&batch)
                            .map_err(|e| corrupt(format!("batch {}: {e}", row.batch_id)))?;
                        out.push((row.batch_id, summary, core::detail_csv(&batch)));
                    }
                    Ok::<_, ApiError>(out)
                })
                .await?;
            if todo.is_empty() {
                break;
            }
            let mut done = Vec::new();
            for (batch_id, summary, detail) in todo {
                let (summary_path, detail_path) = batch_file_paths(&reports, &batch_id);
                write_file(&summary_path, &summary).map_err(|e| io_error(&summary_path, e))?;
                write_file(&detail_path, &detail).map_err(|e| io_error(&detail_path, e))?;
                done.push(batch_id);
            }
            let now = self.now_ms();
            self.db()
                .write(move |c| {
                    for id in &done {
                        store::settlement::set_batch_files_written(c, id, now)?;
                    }
                    Ok::<_, ApiError>(())
                })
                .await?;
        }
        loop {
            let todo = self
                .db()
                .read(|c| {
                    let rows = store::settlement::clearings_without_files(c, FILES_PER_JOB_MAX)?;
                    let mut out = Vec::new();
                    for row in rows {
                        let text = clearing_file(c, &row)?;
                        out.push((row.clearing_id, text));
                    }
                    Ok::<_, ApiError>(out)
                })
                .await?;
            if todo.is_empty() {
                break;
            }
            let mut done = Vec::new();
            for (clearing_id, text) in todo {
                let path = clearing_file_path(&reports, &clearing_id);
                write_file(&path, &text).map_err(|e| io_error(&path, e))?;
                done.push(clearing_id);
            }
            let now = self.now_ms();
            self.db()
                .write(move |c| {
                    for id in &done {
                        store::settlement::set_clearing_files_written(c, id, now)?;
                    }
                    Ok::<_, ApiError>(())
                })
                .await?;
        }
        Ok(())
    }

    /// Closed batches, newest first, optionally of one merchant (`client_id/reference_id`).
    pub async fn settlement_batches(
        &self,
        merchant: Option<String>,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, ApiError> {
        self.db()
            .read(move |c| {
                let rows = store::settlement::batches(c, merchant.as_deref(), limit)?;
                Ok::<_, ApiError>(rows.iter().map(BatchRow::info).collect())
            })
            .await
    }

    /// One closed batch.
    pub async fn settlement_batch(&self, batch_id: &str) -> Result<Option<BatchInfo>, ApiError> {
        let id = batch_id.to_string();
        self.db()
            .read(move |c| {
                Ok::<_, ApiError>(store::settlement::batch_by_id(c, &id)?.map(|b| b.info()))
            })
            .await
    }

    /// Closed clearings, newest first, optionally of one wallet.
    pub async fn clearings(
        &self,
        wallet: Option<String>,
        limit: usize,
    ) -> Result<Vec<ClearingInfo>, ApiError> {
        self.db()
            .read(move |c| {
                let rows = store::settlement::clearings(c, wallet.as_deref(), limit)?;
                Ok::<_, ApiError>(rows.iter().map(ClearingRow::info).collect())
            })
            .await
    }

    /// A closed batch's summary and detail reports, rendered from the store.
    pub async fn batch_reports(
        &self,
        batch_id: &str,
    ) -> Result<Option<(String, String)>, ApiError> {
        let id = batch_id.to_string();
        self.db()
            .read(move |c| {
                let Some(row) = store::settlement::batch_by_id(c, &id)? else {
                    return Ok(None);
                };
                let batch = rebuild_batch(c, &row)?;
                let summary =
                    core::summary_csv(&batch).map_err(|e| corrupt(format!("batch {id}: {e}")))?;
                Ok::<_, ApiError>(Some((summary, core::detail_csv(&batch))))
            })
            .await
    }

    /// A closed clearing's file, rendered from the store.
    pub async fn clearing_report(&self, clearing_id: &str) -> Result<Option<String>, ApiError> {
        let id = clearing_id.to_string();
        self.db()
            .read(move |c| match store::settlement::clearing_by_id(c, &id)? {
                Some(row) => Ok::<_, ApiError>(Some(clearing_file(c, &row)?)),
                None => Ok(None),
            })
            .await
    }

    /// Where the report files of a batch are written.
    pub fn batch_report_paths(&self, batch_id: &str) -> (PathBuf, PathBuf) {
        batch_file_paths(&self.reports_dir(), batch_id)
    }

    /// Where the file of a clearing is written.
    pub fn clearing_report_path(&self, clearing_id: &str) -> PathBuf {
        clearing_file_path(&self.reports_dir(), clearing_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-03-08 is the day US clocks spring forward (02:00 local).
    const MAR_08_2026_DAY: i64 = 20_520;

    #[test]
    fn calendar_follows_the_zone_and_its_clock_changes() {
        assert_eq!(core::iso_date(MAR_08_2026_DAY), "2026-03-08");
        let ny = Calendar::new("America/New_York", 0);
        // Before the change the day ends at 05:00Z, after it at 04:00Z.
        assert_eq!(
            ny.day_end_s(MAR_08_2026_DAY - 1),
            MAR_08_2026_DAY * 86_400 + 5 * 3600
        );
        assert_eq!(
            ny.day_end_s(MAR_08_2026_DAY),
            (MAR_08_2026_DAY + 1) * 86_400 + 4 * 3600
        );
        let t = MAR_08_2026_DAY * 86_400 + 4 * 3600 + 59 * 60; // 23:59 local on the 7th
        assert_eq!(ny.business_day(t), MAR_08_2026_DAY - 1);
        assert_eq!(ny.business_day(t + 60), MAR_08_2026_DAY);
        // An 18:00 cut-off in Singapore (UTC+8) ends the day at 10:00Z.
        let sg = Calendar::new("Asia/Singapore", 18 * 60);
        assert_eq!(
            sg.day_end_s(MAR_08_2026_DAY),
            MAR_08_2026_DAY * 86_400 + 10 * 3600
        );
        let ten_z = MAR_08_2026_DAY * 86_400 + 10 * 3600;
        assert_eq!(sg.business_day(ten_z - 1), MAR_08_2026_DAY);
        assert_eq!(sg.business_day(ten_z), MAR_08_2026_DAY + 1);
        assert_eq!(due_ms(&sg, (ten_z - 1) * 1000), ten_z * 1000);
        // An unknown zone settles in UTC.
        assert_eq!(Calendar::new("Mars/Olympus", 0).day_end_s(0), 86_400);
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(
            file_stem("20261127-SGD-client-1/M 1"),
            "20261127-SGD-client-1_M_1"
        );
        assert_eq!(batch_id_with_seq("X", 1), "X");
        assert_eq!(batch_id_with_seq("X", 3), "X-3");
    }
}
