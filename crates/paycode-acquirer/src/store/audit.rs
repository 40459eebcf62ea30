//! The audit's whole-store queries. Each streams its rows to the caller's function (the audit
//! reads every payment, item and batch, so none is collected into memory first); the checks
//! themselves are `audit`'s.

use super::StoreResult;
use super::settlement::{
    BATCH_COLUMNS, BatchRow, CLEARING_COLUMNS, ClearingRow, ITEM_COLUMNS, ItemRow, batch_from_row,
    clearing_from_row, item_from_row,
};
use paycode_db::sql::{self, Connection, OptionalExtension, Params, Row};

/// A posting as the audit compares it: account, side, amount, currency.
pub type Line = (String, String, i64, String);

/// Runs `sql` and hands each row, mapped, to `f`, stopping at the first error.
fn each<T, P: Params>(
    c: &Connection,
    sql: &str,
    params: P,
    map: impl Fn(&Row<'_>) -> sql::Result<T>,
    mut f: impl FnMut(T) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut stmt = c.prepare(sql)?;
    let mut rows = stmt.query(params)?;
    while let Some(r) = rows.next()? {
        f(map(&r)?)?;
    }
    Ok(())
}

fn count(c: &Connection, table_sql: &str) -> StoreResult<i64> {
    Ok(c.query_row(table_sql, [], |r| r.get(0))?)
}

pub fn count_entries(c: &Connection) -> StoreResult<i64> {
    count(c, "SELECT COUNT(*) FROM journal_entries")
}

pub fn count_accounts(c: &Connection) -> StoreResult<i64> {
    count(c, "SELECT COUNT(*) FROM account_balances")
}

/// A journal entry's kind and postings in order, if it exists.
pub fn entry_by_id(c: &Connection, entry_id: i64) -> StoreResult<Option<(String, Vec<Line>)>> {
    let kind: Option<String> = c
        .query_row(
            "SELECT kind FROM journal_entries WHERE entry_id = ?1",
            [entry_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let lines = c.query_all_cached(
        "SELECT account, side, amount_minor, currency FROM postings WHERE entry_id = ?1 ORDER BY idx",
        [entry_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    Ok(Some((kind, lines)))
}

/// Entries whose debits and credits differ in a currency: (entry, currency, debits, credits).
pub fn each_unbalanced_entry(
    c: &Connection,
    f: impl FnMut((i64, String, i64, i64)) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT entry_id, currency, SUM(CASE WHEN side = 'D' THEN amount_minor ELSE 0 END), \
         SUM(CASE WHEN side = 'C' THEN amount_minor ELSE 0 END) FROM postings \
         GROUP BY entry_id, currency \
         HAVING SUM(CASE WHEN side = 'D' THEN amount_minor ELSE -amount_minor END) <> 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        f,
    )
}

/// Postings that are not a positive amount on side D or C: (entry, idx, side, amount).
pub fn each_malformed_posting(
    c: &Connection,
    f: impl FnMut((i64, i64, String, i64)) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT entry_id, idx, side, amount_minor FROM postings \
         WHERE amount_minor <= 0 OR side NOT IN ('D', 'C')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        f,
    )
}

/// Entries with fewer than two postings: (entry, number of postings).
pub fn each_short_entry(
    c: &Connection,
    f: impl FnMut((i64, i64)) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT e.entry_id, COUNT(p.idx) FROM journal_entries e \
         LEFT JOIN postings p ON p.entry_id = e.entry_id GROUP BY e.entry_id HAVING COUNT(p.idx) < 2",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
        f,
    )
}

/// Entry ids that postings refer to but that do not exist.
pub fn each_orphan_posting_entry(
    c: &Connection,
    f: impl FnMut(i64) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT DISTINCT p.entry_id FROM postings p WHERE NOT EXISTS \
         (SELECT 1 FROM journal_entries e WHERE e.entry_id = p.entry_id)",
        [],
        |r| r.get(0),
        f,
    )
}

/// Entries that belong to no existing payment, batch or clearing: (entry, kind, payment id).
pub fn each_ownerless_entry(
    c: &Connection,
    f: impl FnMut((i64, String, Option<String>)) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT e.entry_id, e.kind, e.payment_id FROM journal_entries e WHERE \
         (e.payment_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.payment_id = e.payment_id)) \
         OR (e.payment_id IS NULL AND NOT EXISTS (SELECT 1 FROM settlement_batches b WHERE b.entry_id = e.entry_id) \
             AND NOT EXISTS (SELECT 1 FROM clearing_batches k WHERE k.entry_id = e.entry_id))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        f,
    )
}

/// A balance row that disagrees with the sum of its account's postings.
pub struct BalanceMismatch {
    pub account: String,
    pub currency: String,
    /// Debit-positive sum of the postings.
    pub total: i64,
    /// The balance row's currency and amount, when there is one.
    pub balance: Option<(String, i64)>,
}

pub fn each_balance_mismatch(
    c: &Connection,
    f: impl FnMut(BalanceMismatch) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT s.account, s.currency, s.total, b.currency, b.balance_minor FROM \
         (SELECT account, currency, SUM(CASE WHEN side = 'D' THEN amount_minor ELSE -amount_minor END) AS total \
          FROM postings GROUP BY account, currency) s \
         LEFT JOIN account_balances b ON b.account = s.account \
         WHERE b.account IS NULL OR b.currency <> s.currency OR b.balance_minor <> s.total",
        [],
        |r| {
            let (b_currency, balance): (Option<String>, Option<i64>) = (r.get(3)?, r.get(4)?);
            Ok(BalanceMismatch {
                account: r.get(0)?,
                currency: r.get(1)?,
                total: r.get(2)?,
                balance: b_currency.zip(balance),
            })
        },
        f,
    )
}

/// Non-zero balances of accounts without any posting: (account, balance, currency).
pub fn each_balance_without_postings(
    c: &Connection,
    f: impl FnMut((String, i64, String)) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT b.account, b.balance_minor, b.currency FROM account_balances b WHERE b.balance_minor <> 0 \
         AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.account = b.account)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        f,
    )
}

/// Every payment id, in order.
/// Up to `limit` payment ids after `after`, in order (the audit's chunks).
pub fn payment_ids_after(c: &Connection, after: &str, limit: usize) -> StoreResult<Vec<String>> {
    Ok(c.query_all_cached(
        "SELECT payment_id FROM payments WHERE payment_id > ?1 ORDER BY payment_id LIMIT ?2",
        paycode_db::params![after, limit as i64],
        |r| r.get(0),
    )?)
}

pub fn each_payment_id(
    c: &Connection,
    f: impl FnMut(String) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT payment_id FROM payments ORDER BY payment_id",
        [],
        |r| r.get(0),
        f,
    )
}

/// Every settlement item, by transaction and kind.
pub fn each_item(c: &Connection, f: impl FnMut(ItemRow) -> StoreResult<()>) -> StoreResult<()> {
    each(
        c,
        &format!("SELECT {ITEM_COLUMNS} FROM settlement_items ORDER BY transaction_id, kind"),
        [],
        item_from_row,
        f,
    )
}

/// Items in a batch or clearing that does not exist: (kind, transaction, batch, clearing).
#[allow(clippy::type_complexity)]
pub fn each_dangling_item(
    c: &Connection,
    f: impl FnMut((String, String, Option<String>, Option<String>)) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        "SELECT i.kind, i.transaction_id, i.batch_id, i.clearing_id FROM settlement_items i WHERE \
         (i.batch_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM settlement_batches b WHERE b.batch_id = i.batch_id)) \
         OR (i.clearing_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM clearing_batches k WHERE k.clearing_id = i.clearing_id))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        f,
    )
}

/// The kinds of settled event, by the table they are in.
#[derive(Debug, Clone, Copy)]
pub enum SettledEvent {
    Payment,
    Cancel,
    Refund,
}

impl SettledEvent {
    pub const ALL: [SettledEvent; 3] = [
        SettledEvent::Payment,
        SettledEvent::Cancel,
        SettledEvent::Refund,
    ];

    /// The table the event's row is in and the item kind it becomes.
    pub fn table_and_kind(self) -> (&'static str, &'static str) {
        match self {
            SettledEvent::Payment => ("payments", "PAYMENT"),
            SettledEvent::Cancel => ("payments", "CANCEL"),
            SettledEvent::Refund => ("refunds", "REFUND"),
        }
    }

    fn query(self) -> &'static str {
        match self {
            SettledEvent::Payment => {
                "SELECT payment_id FROM payments WHERE paid_ms IS NOT NULL AND paid_ms < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM settlement_items i WHERE i.transaction_id = payments.payment_id AND i.kind = 'PAYMENT')"
            }
            SettledEvent::Cancel => {
                "SELECT payment_id FROM payments WHERE cancelled_ms IS NOT NULL AND paid_ms IS NOT NULL \
                 AND cancelled_ms < ?1 AND NOT EXISTS (SELECT 1 FROM settlement_items i \
                 WHERE i.transaction_id = payments.payment_id AND i.kind = 'CANCEL')"
            }
            SettledEvent::Refund => {
                "SELECT refund_id FROM refunds WHERE status = 'SUCCESS' AND refunded_ms IS NOT NULL \
                 AND refunded_ms < ?1 AND NOT EXISTS (SELECT 1 FROM settlement_items i \
                 WHERE i.transaction_id = refunds.refund_id AND i.kind = 'REFUND')"
            }
        }
    }
}

/// Ids of settled events of this kind from before `before_ms` that are in no settlement item.
pub fn each_unswept(
    c: &Connection,
    event: SettledEvent,
    before_ms: i64,
    f: impl FnMut(String) -> StoreResult<()>,
) -> StoreResult<()> {
    each(c, event.query(), [before_ms], |r| r.get(0), f)
}

/// Every settlement batch, by id.
pub fn each_batch(c: &Connection, f: impl FnMut(BatchRow) -> StoreResult<()>) -> StoreResult<()> {
    each(
        c,
        &format!("SELECT {BATCH_COLUMNS} FROM settlement_batches ORDER BY batch_id"),
        [],
        batch_from_row,
        f,
    )
}

/// Every clearing, by id.
pub fn each_clearing(
    c: &Connection,
    f: impl FnMut(ClearingRow) -> StoreResult<()>,
) -> StoreResult<()> {
    each(
        c,
        &format!("SELECT {CLEARING_COLUMNS} FROM clearing_batches ORDER BY clearing_id"),
        [],
        clearing_from_row,
        f,
    )
}

/// Runs `f` inside one read transaction, so every check sees the same snapshot of the store.
pub fn in_snapshot<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    c.snapshot(f)
}
