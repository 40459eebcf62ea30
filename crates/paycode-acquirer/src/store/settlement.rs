//! The settlement tables: `settlement_items`, `settlement_batches`, `clearing_batches` and the
//! one-row `settlement_cursor`, and the three queries that find settled events in `payments`
//! and `refunds`. Which items close into which batch, and when, is `settlement`'s decision.

use super::StoreResult;
use paycode_db::sql::{Connection, OptionalExtension, Row, params};

// ---------------------------------------------------------------------------------------------
// Items

/// One row of `settlement_items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub transaction_id: String,
    pub kind: String,
    pub payment_id: String,
    pub merchant: String,
    pub client_id: String,
    pub reference_merchant_id: String,
    pub reference_store_id: Option<String>,
    pub transaction_request_id: String,
    pub payment_method_type: String,
    pub wallet: String,
    pub psp_name: String,
    pub amount_minor: i64,
    pub currency: String,
    pub wallet_amount_minor: i64,
    pub wallet_currency: String,
    pub settle_minor: i64,
    pub settle_currency: String,
    pub quote_price: Option<String>,
    pub fee_minor: i64,
    pub event_ms: i64,
    pub settle_due_ms: i64,
    pub batch_id: Option<String>,
    pub clearing_due_ms: i64,
    pub clearing_id: Option<String>,
}

pub(super) const ITEM_COLUMNS: &str = "transaction_id, kind, payment_id, merchant, client_id, \
    reference_merchant_id, reference_store_id, transaction_request_id, payment_method_type, \
    wallet, psp_name, amount_minor, currency, wallet_amount_minor, wallet_currency, settle_minor, \
    settle_currency, quote_price, fee_minor, event_ms, settle_due_ms, batch_id, clearing_due_ms, \
    clearing_id";

pub(super) fn item_from_row(r: &Row<'_>) -> paycode_db::sql::Result<ItemRow> {
    Ok(ItemRow {
        transaction_id: r.get(0)?,
        kind: r.get(1)?,
        payment_id: r.get(2)?,
        merchant: r.get(3)?,
        client_id: r.get(4)?,
        reference_merchant_id: r.get(5)?,
        reference_store_id: r.get(6)?,
        transaction_request_id: r.get(7)?,
        payment_method_type: r.get(8)?,
        wallet: r.get(9)?,
        psp_name: r.get(10)?,
        amount_minor: r.get(11)?,
        currency: r.get(12)?,
        wallet_amount_minor: r.get(13)?,
        wallet_currency: r.get(14)?,
        settle_minor: r.get(15)?,
        settle_currency: r.get(16)?,
        quote_price: r.get(17)?,
        fee_minor: r.get(18)?,
        event_ms: r.get(19)?,
        settle_due_ms: r.get(20)?,
        batch_id: r.get(21)?,
        clearing_due_ms: r.get(22)?,
        clearing_id: r.get(23)?,
    })
}

pub fn insert_item(c: &Connection, i: &ItemRow) -> StoreResult<usize> {
    Ok(c.prepare_cached(&format!(
        "INSERT INTO settlement_items ({ITEM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
         ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24) \
         ON CONFLICT (transaction_id, kind) DO NOTHING"
    ))?
    .execute(params![
        i.transaction_id,
        i.kind,
        i.payment_id,
        i.merchant,
        i.client_id,
        i.reference_merchant_id,
        i.reference_store_id,
        i.transaction_request_id,
        i.payment_method_type,
        i.wallet,
        i.psp_name,
        i.amount_minor,
        i.currency,
        i.wallet_amount_minor,
        i.wallet_currency,
        i.settle_minor,
        i.settle_currency,
        i.quote_price,
        i.fee_minor,
        i.event_ms,
        i.settle_due_ms,
        i.batch_id,
        i.clearing_due_ms,
        i.clearing_id,
    ])?)
}

pub fn items_of_batch(c: &Connection, batch_id: &str) -> StoreResult<Vec<ItemRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {ITEM_COLUMNS} FROM settlement_items WHERE batch_id = ?1 \
         ORDER BY event_ms, transaction_id, kind"
        ),
        [batch_id],
        item_from_row,
    )?;
    Ok(rows)
}

pub fn items_of_clearing(c: &Connection, clearing_id: &str) -> StoreResult<Vec<ItemRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {ITEM_COLUMNS} FROM settlement_items WHERE clearing_id = ?1 \
         ORDER BY event_ms, transaction_id, kind"
        ),
        [clearing_id],
        item_from_row,
    )?;
    Ok(rows)
}

/// The three sources of settled events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Paid,
    Cancelled,
    Refunded,
}

impl Source {
    pub(crate) const ALL: [Source; 3] = [Source::Paid, Source::Cancelled, Source::Refunded];

    /// Rows (ordered by event time and id) as `ItemRow` facts, with `?1 <= time < ?2` and after
    /// the key `(?3, ?4)`, at most `?5`.
    fn query(self) -> &'static str {
        match self {
            Source::Paid => {
                "SELECT payment_id, 'PAYMENT', payment_id, client_id, reference_merchant_id, \
                 reference_store_id, payment_request_id, wallet, psp_name, amount_minor, currency, \
                 pay_to_minor, pay_to_currency, settle_minor, settle_currency, settlement_quote, \
                 fee_minor, paid_ms FROM payments WHERE paid_ms IS NOT NULL AND paid_ms >= ?1 \
                 AND paid_ms < ?2 AND (paid_ms > ?3 OR (paid_ms = ?3 AND payment_id > ?4)) \
                 AND NOT EXISTS (SELECT 1 FROM settlement_items i \
                 WHERE i.transaction_id = payments.payment_id AND i.kind = 'PAYMENT') \
                 ORDER BY paid_ms, payment_id LIMIT ?5"
            }
            Source::Cancelled => {
                "SELECT payment_id, 'CANCEL', payment_id, client_id, reference_merchant_id, \
                 reference_store_id, payment_request_id, wallet, psp_name, amount_minor, currency, \
                 pay_to_minor, pay_to_currency, settle_minor, settle_currency, settlement_quote, \
                 fee_minor, cancelled_ms FROM payments WHERE cancelled_ms IS NOT NULL \
                 AND paid_ms IS NOT NULL AND cancelled_ms >= ?1 AND cancelled_ms < ?2 \
                 AND (cancelled_ms > ?3 OR (cancelled_ms = ?3 AND payment_id > ?4)) \
                 AND NOT EXISTS (SELECT 1 FROM settlement_items i \
                 WHERE i.transaction_id = payments.payment_id AND i.kind = 'CANCEL') \
                 ORDER BY cancelled_ms, payment_id LIMIT ?5"
            }
            Source::Refunded => {
                "SELECT r.refund_id, 'REFUND', r.payment_id, p.client_id, p.reference_merchant_id, \
                 p.reference_store_id, r.refund_request_id, p.wallet, p.psp_name, r.amount_minor, \
                 r.currency, r.wallet_amount_minor, r.wallet_currency, r.settle_minor, \
                 r.settle_currency, r.settlement_quote, r.fee_minor, r.refunded_ms \
                 FROM refunds r JOIN payments p ON p.payment_id = r.payment_id \
                 WHERE r.status = 'SUCCESS' AND r.refunded_ms IS NOT NULL AND r.refunded_ms >= ?1 \
                 AND r.refunded_ms < ?2 AND (r.refunded_ms > ?3 OR (r.refunded_ms = ?3 \
                 AND r.refund_id > ?4)) AND NOT EXISTS (SELECT 1 FROM settlement_items i \
                 WHERE i.transaction_id = r.refund_id AND i.kind = 'REFUND') \
                 ORDER BY r.refunded_ms, r.refund_id LIMIT ?5"
            }
        }
    }
}

/// A settled event as its source query reads it: the transaction's own facts, before the
/// sweep adds its merchant name, method, quote price and due times.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub transaction_id: String,
    pub kind: String,
    pub payment_id: String,
    pub client_id: String,
    pub reference_merchant_id: String,
    pub reference_store_id: Option<String>,
    pub transaction_request_id: String,
    pub wallet: String,
    pub psp_name: String,
    pub amount_minor: i64,
    pub currency: String,
    pub wallet_amount_minor: i64,
    pub wallet_currency: String,
    pub settle_minor: i64,
    pub settle_currency: String,
    /// JSON of the wire settlement quote, when currencies differ.
    pub settlement_quote: Option<String>,
    pub fee_minor: i64,
    pub event_ms: i64,
}

/// Up to `limit` events of `source` with `from_ms <= time < to_ms`, after the key `after` and
/// not yet in `settlement_items`, ordered by event time and id.
pub(crate) fn source_chunk(
    c: &Connection,
    source: Source,
    from_ms: i64,
    to_ms: i64,
    after: &(i64, String),
    limit: usize,
) -> StoreResult<Vec<SourceRow>> {
    Ok(c.query_all_cached(
        source.query(),
        params![from_ms, to_ms, after.0, after.1, limit as i64],
        |r| {
            Ok(SourceRow {
                transaction_id: r.get(0)?,
                kind: r.get(1)?,
                payment_id: r.get(2)?,
                client_id: r.get(3)?,
                reference_merchant_id: r.get(4)?,
                reference_store_id: r.get(5)?,
                transaction_request_id: r.get(6)?,
                wallet: r.get(7)?,
                psp_name: r.get(8)?,
                amount_minor: r.get(9)?,
                currency: r.get(10)?,
                wallet_amount_minor: r.get(11)?,
                wallet_currency: r.get(12)?,
                settle_minor: r.get(13)?,
                settle_currency: r.get(14)?,
                settlement_quote: r.get(15)?,
                fee_minor: r.get(16)?,
                event_ms: r.get(17)?,
            })
        },
    )?)
}

/// `(swept_ms, next_sweep_ms)`; `(0, 0)` before the first sweep.
pub fn cursor(c: &Connection) -> StoreResult<(i64, i64)> {
    Ok(c.query_row(
        // Locked in a write unit on PostgreSQL: one sweep at a time across processes.
        &format!(
            "SELECT swept_ms, next_sweep_ms FROM settlement_cursor WHERE id = 1{}",
            c.for_update()
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .unwrap_or((0, 0)))
}

pub fn set_cursor(c: &Connection, swept_ms: i64, next_sweep_ms: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO settlement_cursor (id, swept_ms, next_sweep_ms) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET swept_ms = CASE WHEN settlement_cursor.swept_ms > excluded.swept_ms \
         THEN settlement_cursor.swept_ms ELSE excluded.swept_ms END, \
         next_sweep_ms = excluded.next_sweep_ms",
        params![swept_ms, next_sweep_ms],
    )?;
    Ok(())
}

/// Whether a batch or a clearing is due at `now_ms`, or a closed one still lacks its files.
pub fn anything_due(c: &Connection, now_ms: i64) -> StoreResult<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM settlement_items WHERE batch_id IS NULL \
         AND settle_due_ms <= ?1) OR EXISTS (SELECT 1 FROM settlement_items \
         WHERE clearing_id IS NULL AND clearing_due_ms <= ?1) \
         OR EXISTS (SELECT 1 FROM settlement_batches WHERE files_written_ms IS NULL) \
         OR EXISTS (SELECT 1 FROM clearing_batches WHERE files_written_ms IS NULL)",
        [now_ms],
        |r| r.get(0),
    )?)
}

// ---------------------------------------------------------------------------------------------
// Batches

/// A group of unsettled (or uncleared) items: merchant or wallet, and currency.
#[derive(Debug, Clone)]
pub struct Group {
    pub owner: String,
    pub currency: String,
    /// Empty for a wallet's group.
    pub client_id: String,
    pub reference_merchant_id: String,
}

/// Merchants and settlement currencies with unsettled items due by `bound_ms`, at most `limit`.
pub fn due_settlement_groups(
    c: &Connection,
    bound_ms: i64,
    limit: usize,
) -> StoreResult<Vec<Group>> {
    let rows = c.query_all_cached(
        "SELECT DISTINCT merchant, settle_currency, client_id, reference_merchant_id \
         FROM settlement_items WHERE batch_id IS NULL AND settle_due_ms <= ?1 \
         ORDER BY merchant, settle_currency LIMIT ?2",
        params![bound_ms, limit as i64],
        |r| {
            Ok(Group {
                owner: r.get(0)?,
                currency: r.get(1)?,
                client_id: r.get(2)?,
                reference_merchant_id: r.get(3)?,
            })
        },
    )?;
    Ok(rows)
}

/// The highest `seq` of a merchant's batches of this currency and day, if any.
pub fn last_batch_seq(c: &Connection, group: &Group, day: i64) -> StoreResult<Option<i64>> {
    Ok(c.query_row(
        "SELECT MAX(seq) FROM settlement_batches WHERE merchant = ?1 AND currency = ?2 \
         AND business_day = ?3",
        params![group.owner, group.currency, day],
        |r| r.get(0),
    )?)
}

/// The group's unsettled items due by `bound_ms`.
pub fn unsettled_items(c: &Connection, group: &Group, bound_ms: i64) -> StoreResult<Vec<ItemRow>> {
    Ok(c.query_all_cached(
        &format!(
            "SELECT {ITEM_COLUMNS} FROM settlement_items WHERE batch_id IS NULL AND merchant = ?1 \
             AND settle_currency = ?2 AND settle_due_ms <= ?3"
        ),
        params![group.owner, group.currency, bound_ms],
        item_from_row,
    )?)
}

pub fn insert_batch(c: &Connection, row: &BatchRow) -> StoreResult<()> {
    c.execute(
        &format!(
            "INSERT INTO settlement_batches ({BATCH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
             ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            row.batch_id,
            row.merchant,
            row.currency,
            row.business_day,
            row.seq,
            row.utc_offset_s,
            row.cutoff_local_s,
            row.item_count,
            row.gross_minor,
            row.fee_minor,
            row.net_minor,
            row.entry_id,
            row.closed_ms,
        ],
    )?;
    Ok(())
}

/// Puts an unbatched item into a batch; returns whether it was unbatched (and now is not).
pub fn assign_batch(
    c: &Connection,
    batch_id: &str,
    transaction_id: &str,
    kind: &str,
) -> StoreResult<bool> {
    let n = c.execute(
        "UPDATE settlement_items SET batch_id = ?1 WHERE transaction_id = ?2 \
         AND kind = ?3 AND batch_id IS NULL",
        params![batch_id, transaction_id, kind],
    )?;
    Ok(n == 1)
}

/// Moves the group's unsettled items due at `now_ms` to `next_due_ms`.
pub fn defer_unsettled(
    c: &Connection,
    group: &Group,
    now_ms: i64,
    next_due_ms: i64,
) -> StoreResult<()> {
    c.execute(
        "UPDATE settlement_items SET settle_due_ms = ?4 WHERE batch_id IS NULL \
         AND merchant = ?1 AND settle_currency = ?2 AND settle_due_ms <= ?3",
        params![group.owner, group.currency, now_ms, next_due_ms],
    )?;
    Ok(())
}

pub(super) const BATCH_COLUMNS: &str = "batch_id, merchant, currency, business_day, seq, \
    utc_offset_s, cutoff_local_s, item_count, gross_minor, fee_minor, net_minor, entry_id, closed_ms";

/// One row of `settlement_batches`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub batch_id: String,
    pub merchant: String,
    pub currency: String,
    pub business_day: i64,
    pub seq: i64,
    pub utc_offset_s: i32,
    pub cutoff_local_s: u32,
    pub item_count: i64,
    pub gross_minor: i64,
    pub fee_minor: i64,
    pub net_minor: i64,
    pub entry_id: Option<i64>,
    pub closed_ms: i64,
}

pub(super) fn batch_from_row(r: &Row<'_>) -> paycode_db::sql::Result<BatchRow> {
    Ok(BatchRow {
        batch_id: r.get(0)?,
        merchant: r.get(1)?,
        currency: r.get(2)?,
        business_day: r.get(3)?,
        seq: r.get(4)?,
        utc_offset_s: r.get(5)?,
        cutoff_local_s: r.get(6)?,
        item_count: r.get(7)?,
        gross_minor: r.get(8)?,
        fee_minor: r.get(9)?,
        net_minor: r.get(10)?,
        entry_id: r.get(11)?,
        closed_ms: r.get(12)?,
    })
}

pub fn batch_by_id(c: &Connection, batch_id: &str) -> StoreResult<Option<BatchRow>> {
    let sql = format!("SELECT {BATCH_COLUMNS} FROM settlement_batches WHERE batch_id = ?1");
    Ok(c.query_row(&sql, [batch_id], batch_from_row).optional()?)
}

/// Closed batches whose report files are not written yet, oldest first, at most `limit`.
pub fn batches_without_files(c: &Connection, limit: usize) -> StoreResult<Vec<BatchRow>> {
    Ok(c.query_all_cached(
        &format!(
            "SELECT {BATCH_COLUMNS} FROM settlement_batches \
             WHERE files_written_ms IS NULL ORDER BY closed_ms LIMIT ?1"
        ),
        [limit as i64],
        batch_from_row,
    )?)
}

pub fn set_batch_files_written(c: &Connection, batch_id: &str, now_ms: i64) -> StoreResult<()> {
    c.execute(
        "UPDATE settlement_batches SET files_written_ms = ?2 WHERE batch_id = ?1",
        params![batch_id, now_ms],
    )?;
    Ok(())
}

/// Closed batches, newest first, optionally of one merchant.
pub fn batches(c: &Connection, merchant: Option<&str>, limit: usize) -> StoreResult<Vec<BatchRow>> {
    Ok(c.query_all_cached(
        &format!(
            "SELECT {BATCH_COLUMNS} FROM settlement_batches \
             WHERE (CAST(?1 AS TEXT) IS NULL OR merchant = ?1) ORDER BY closed_ms DESC, batch_id LIMIT ?2"
        ),
        params![merchant, limit as i64],
        batch_from_row,
    )?)
}

// ---------------------------------------------------------------------------------------------
// Clearing

/// Wallets and wallet currencies with uncleared items due by `bound_ms`, at most `limit`.
pub fn due_clearing_groups(c: &Connection, bound_ms: i64, limit: usize) -> StoreResult<Vec<Group>> {
    let rows = c.query_all_cached(
        "SELECT DISTINCT wallet, wallet_currency FROM settlement_items \
         WHERE clearing_id IS NULL AND clearing_due_ms <= ?1 \
         ORDER BY wallet, wallet_currency LIMIT ?2",
        params![bound_ms, limit as i64],
        |r| {
            Ok(Group {
                owner: r.get(0)?,
                currency: r.get(1)?,
                client_id: String::new(),
                reference_merchant_id: String::new(),
            })
        },
    )?;
    Ok(rows)
}

/// The highest `seq` of a wallet's clearings of this currency and UTC day, if any.
pub fn last_clearing_seq(c: &Connection, group: &Group, day: i64) -> StoreResult<Option<i64>> {
    Ok(c.query_row(
        "SELECT MAX(seq) FROM clearing_batches WHERE wallet = ?1 AND currency = ?2 \
         AND business_day = ?3",
        params![group.owner, group.currency, day],
        |r| r.get(0),
    )?)
}

/// Moves the group's uncleared items due at `now_ms` to `next_due_ms`.
pub fn defer_uncleared(
    c: &Connection,
    group: &Group,
    now_ms: i64,
    next_due_ms: i64,
) -> StoreResult<()> {
    c.execute(
        "UPDATE settlement_items SET clearing_due_ms = ?4 WHERE clearing_id IS NULL \
         AND wallet = ?1 AND wallet_currency = ?2 AND clearing_due_ms <= ?3",
        params![group.owner, group.currency, now_ms, next_due_ms],
    )?;
    Ok(())
}

/// The group's uncleared items due by `bound_ms`.
pub fn uncleared_items(c: &Connection, group: &Group, bound_ms: i64) -> StoreResult<Vec<ItemRow>> {
    Ok(c.query_all_cached(
        &format!(
            "SELECT {ITEM_COLUMNS} FROM settlement_items WHERE clearing_id IS NULL AND wallet = ?1 \
             AND wallet_currency = ?2 AND clearing_due_ms <= ?3"
        ),
        params![group.owner, group.currency, bound_ms],
        item_from_row,
    )?)
}

pub fn insert_clearing(c: &Connection, row: &ClearingRow) -> StoreResult<()> {
    c.execute(
        &format!(
            "INSERT INTO clearing_batches ({CLEARING_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            row.clearing_id,
            row.wallet,
            row.currency,
            row.business_day,
            row.seq,
            row.item_count,
            row.net_minor,
            row.entry_id,
            row.closed_ms,
        ],
    )?;
    Ok(())
}

/// Puts an uncleared item into a clearing; returns whether it was uncleared (and now is not).
pub fn assign_clearing(
    c: &Connection,
    clearing_id: &str,
    transaction_id: &str,
    kind: &str,
) -> StoreResult<bool> {
    let n = c.execute(
        "UPDATE settlement_items SET clearing_id = ?1 WHERE transaction_id = ?2 \
         AND kind = ?3 AND clearing_id IS NULL",
        params![clearing_id, transaction_id, kind],
    )?;
    Ok(n == 1)
}

pub(super) const CLEARING_COLUMNS: &str = "clearing_id, wallet, currency, business_day, seq, \
    item_count, net_minor, entry_id, closed_ms";

/// One row of `clearing_batches`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingRow {
    pub clearing_id: String,
    pub wallet: String,
    pub currency: String,
    pub business_day: i64,
    pub seq: i64,
    pub item_count: i64,
    pub net_minor: i64,
    pub entry_id: Option<i64>,
    pub closed_ms: i64,
}

pub(super) fn clearing_from_row(r: &Row<'_>) -> paycode_db::sql::Result<ClearingRow> {
    Ok(ClearingRow {
        clearing_id: r.get(0)?,
        wallet: r.get(1)?,
        currency: r.get(2)?,
        business_day: r.get(3)?,
        seq: r.get(4)?,
        item_count: r.get(5)?,
        net_minor: r.get(6)?,
        entry_id: r.get(7)?,
        closed_ms: r.get(8)?,
    })
}

pub fn clearing_by_id(c: &Connection, clearing_id: &str) -> StoreResult<Option<ClearingRow>> {
    let sql = format!("SELECT {CLEARING_COLUMNS} FROM clearing_batches WHERE clearing_id = ?1");
    Ok(c.query_row(&sql, [clearing_id], clearing_from_row)
        .optional()?)
}

/// Closed clearings whose files are not written yet, oldest first, at most `limit`.
pub fn clearings_without_files(c: &Connection, limit: usize) -> StoreResult<Vec<ClearingRow>> {
    Ok(c.query_all_cached(
        &format!(
            "SELECT {CLEARING_COLUMNS} FROM clearing_batches \
             WHERE files_written_ms IS NULL ORDER BY closed_ms LIMIT ?1"
        ),
        [limit as i64],
        clearing_from_row,
    )?)
}

pub fn set_clearing_files_written(
    c: &Connection,
    clearing_id: &str,
    now_ms: i64,
) -> StoreResult<()> {
    c.execute(
        "UPDATE clearing_batches SET files_written_ms = ?2 WHERE clearing_id = ?1",
        params![clearing_id, now_ms],
    )?;
    Ok(())
}

/// Closed clearings, newest first, optionally of one wallet.
pub fn clearings(
    c: &Connection,
    wallet: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<ClearingRow>> {
    Ok(c.query_all_cached(
        &format!(
            "SELECT {CLEARING_COLUMNS} FROM clearing_batches \
             WHERE (CAST(?1 AS TEXT) IS NULL OR wallet = ?1) ORDER BY closed_ms DESC, clearing_id LIMIT ?2"
        ),
        params![wallet, limit as i64],
        clearing_from_row,
    )?)
}
