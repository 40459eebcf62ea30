//! Bulk writes for seeded history (`paycode seed`): the same tables and columns as the
//! one-row functions of the pay, refund and settlement paths, many rows per statement, so that
//! millions of past payments can be stored in minutes. Which rows make up a payment's history
//! is `history`'s decision; these functions only write what they are given, in the caller's
//! unit of work.

use super::journal::LedgerMoves;
use super::settlement::{ITEM_COLUMNS, ItemRow};
use super::{
    PARAMS_PER_STATEMENT_MAX, PaymentRow, RefundRow, StoreResult, insert_many, value_rows,
};
use paycode_core::ledger::JournalEntry;
use paycode_db::sql::types::{ToSql, ToSqlOutput, ValueRef};
use paycode_db::sql::{Connection, params};
use std::collections::{BTreeMap, HashMap};

fn text(s: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::from(s)
}

fn opt_text(s: Option<&str>) -> ToSqlOutput<'_> {
    s.map_or(ToSqlOutput::Borrowed(ValueRef::Null), ToSqlOutput::from)
}

fn int(n: i64) -> ToSqlOutput<'static> {
    ToSqlOutput::from(n)
}

fn opt_int(n: Option<i64>) -> ToSqlOutput<'static> {
    n.map_or(ToSqlOutput::Borrowed(ValueRef::Null), ToSqlOutput::from)
}

pub fn insert_payments(c: &Connection, rows: &[PaymentRow]) -> StoreResult<()> {
    let mut v: Vec<ToSqlOutput<'_>> = Vec::with_capacity(rows.len() * 37);
    for p in rows {
        v.extend([
            text(&p.payment_id),
            text(&p.client_id),
            text(&p.payment_request_id),
            text(&p.request_hash),
            text(&p.reference_merchant_id),
            opt_text(p.reference_store_id.as_deref()),
            text(&p.merchant_name),
            opt_text(p.store_name.as_deref()),
            opt_text(p.terminal_id.as_deref()),
            int(p.amount_minor),
            text(&p.currency),
            text(&p.wallet),
            text(&p.psp_name),
            text(&p.code_masked),
            int(p.pay_to_minor),
            text(&p.pay_to_currency),
            opt_text(p.payment_quote.as_deref()),
            int(p.settle_minor),
            text(&p.settle_currency),
            opt_text(p.settlement_quote.as_deref()),
            text(p.state.status_str()),
            text(p.result_code.as_str()),
            text(&p.result_message),
            opt_text(p.wallet_payment_id.as_deref()),
            opt_text(p.psp_customer_id.as_deref()),
            opt_text(p.notify_url.as_deref()),
            int(p.created_ms),
            int(p.expires_ms),
            opt_int(p.paid_ms),
            opt_int(p.cancelled_ms),
            int(p.updated_ms),
            opt_int(p.next_check_ms),
            int(p.n_checks),
            opt_int(p.cancel_requested_ms),
            int(p.fee_minor),
            opt_text(p.buyer.as_deref()),
            ToSqlOutput::from(super::payments::code_last4(&p.code_masked)),
        ]);
    }
    insert_many(
        c,
        &format!(
            "INSERT INTO payments ({}, code_last4)",
            super::payments::PAYMENT_COLUMNS
        ),
        "",
        37,
        &v,
    )
}

pub fn insert_refunds(c: &Connection, rows: &[RefundRow]) -> StoreResult<()> {
    let mut v: Vec<ToSqlOutput<'_>> = Vec::with_capacity(rows.len() * 21);
    for r in rows {
        v.extend([
            text(&r.refund_id),
            text(&r.client_id),
            text(&r.refund_request_id),
            text(&r.request_hash),
            text(&r.payment_id),
            int(r.amount_minor),
            text(&r.currency),
            int(r.wallet_amount_minor),
            text(&r.wallet_currency),
            int(r.settle_minor),
            text(&r.settle_currency),
            text(r.state.status_str()),
            text(r.result_code.as_str()),
            text(&r.result_message),
            opt_text(r.reason.as_deref()),
            opt_text(r.notify_url.as_deref()),
            int(r.created_ms),
            opt_int(r.refunded_ms),
            opt_int(r.next_check_ms),
            opt_text(r.settlement_quote.as_deref()),
            int(r.fee_minor),
        ]);
    }
    insert_many(
        c,
        &format!("INSERT INTO refunds ({})", super::payments::REFUND_COLUMNS),
        "",
        21,
        &v,
    )
}

/// A quote given out, as the `quotes` table holds it.
#[derive(Debug, Clone)]
pub struct QuoteRow {
    pub quote_id: String,
    pub pair: String,
    pub price: String,
    pub start_ms: i64,
    pub expiry_ms: i64,
    pub purpose: &'static str,
}

pub fn insert_quotes(c: &Connection, rows: &[QuoteRow]) -> StoreResult<()> {
    let mut v: Vec<ToSqlOutput<'_>> = Vec::with_capacity(rows.len() * 6);
    for q in rows {
        v.extend([
            text(&q.quote_id),
            text(&q.pair),
            text(&q.price),
            int(q.start_ms),
            int(q.expiry_ms),
            text(q.purpose),
        ]);
    }
    insert_many(
        c,
        "INSERT INTO quotes (quote_id, pair, price, start_ms, expiry_ms, purpose)",
        "",
        6,
        &v,
    )
}

/// A line of a payment's timeline.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub payment_id: String,
    pub at_ms: i64,
    pub kind: &'static str,
    pub detail: String,
}

pub fn insert_events(c: &Connection, rows: &[NewEvent]) -> StoreResult<()> {
    let mut v: Vec<ToSqlOutput<'_>> = Vec::with_capacity(rows.len() * 4);
    for e in rows {
        v.extend([
            text(&e.payment_id),
            int(e.at_ms),
            text(e.kind),
            text(&e.detail),
        ]);
    }
    insert_many(
        c,
        "INSERT INTO payment_events (payment_id, at_ms, kind, detail)",
        "",
        4,
        &v,
    )
}

pub fn insert_items(c: &Connection, rows: &[ItemRow]) -> StoreResult<()> {
    let mut v: Vec<ToSqlOutput<'_>> = Vec::with_capacity(rows.len() * 24);
    for i in rows {
        v.extend([
            text(&i.transaction_id),
            text(&i.kind),
            text(&i.payment_id),
            text(&i.merchant),
            text(&i.client_id),
            text(&i.reference_merchant_id),
            opt_text(i.reference_store_id.as_deref()),
            text(&i.transaction_request_id),
            text(&i.payment_method_type),
            text(&i.wallet),
            text(&i.psp_name),
            int(i.amount_minor),
            text(&i.currency),
            int(i.wallet_amount_minor),
            text(&i.wallet_currency),
            int(i.settle_minor),
            text(&i.settle_currency),
            opt_text(i.quote_price.as_deref()),
            int(i.fee_minor),
            int(i.event_ms),
            int(i.settle_due_ms),
            opt_text(i.batch_id.as_deref()),
            int(i.clearing_due_ms),
            opt_text(i.clearing_id.as_deref()),
        ]);
    }
    insert_many(
        c,
        &format!("INSERT INTO settlement_items ({ITEM_COLUMNS})"),
        "",
        24,
        &v,
    )
}

/// A journal entry to post, with its owner.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub entry: JournalEntry,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    pub created_ms: i64,
}

/// Appends many journal entries and moves the account balances once per account, in the
/// caller's transaction; returns the new entry ids in the order of `entries`. Owners must be
/// distinct per kind: (payment, refund, kind) names one entry of `entries`, or the entry has
/// no payment (a payout or clearing) and is posted alone.
pub fn post_entries(c: &Connection, entries: &[NewEntry]) -> StoreResult<Vec<i64>> {
    let mut ids: Vec<Option<i64>> = vec![None; entries.len()];
    let mut by_owner: HashMap<(&str, Option<&str>, &str), usize> = HashMap::new();
    let mut v: Vec<ToSqlOutput<'_>> = Vec::new();
    for (k, e) in entries.iter().enumerate() {
        match e.payment_id.as_deref() {
            Some(pid) => {
                let owner = (pid, e.refund_id.as_deref(), e.entry.kind());
                assert!(
                    by_owner.insert(owner, k).is_none(),
                    "one entry per owner and kind in a bulk post"
                );
                v.extend([
                    text(e.entry.kind()),
                    text(pid),
                    opt_text(e.refund_id.as_deref()),
                    int(e.created_ms),
                ]);
            }
            None => {
                ids[k] = Some(super::post_entry(
                    c,
                    &e.entry,
                    None,
                    e.refund_id.as_deref(),
                    e.created_ms,
                )?);
            }
        }
    }
    for chunk in v.chunks((PARAMS_PER_STATEMENT_MAX / 4) * 4) {
        let sql = format!(
            "INSERT INTO journal_entries (kind, payment_id, refund_id, created_ms) VALUES {} \
             RETURNING entry_id, payment_id, refund_id, kind",
            value_rows(chunk.len() / 4, 4)
        );
        let refs: Vec<&dyn ToSql> = chunk.iter().map(|v| v as &dyn ToSql).collect();
        let back: Vec<(i64, String, Option<String>, String)> =
            c.query_all_cached(&sql, refs.as_slice(), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        for (id, pid, rid, kind) in back {
            let k = by_owner
                .get(&(pid.as_str(), rid.as_deref(), kind.as_str()))
                .copied()
                .expect("every returned entry is one that was inserted");
            ids[k] = Some(id);
        }
    }
    let ids: Vec<i64> = ids
        .into_iter()
        .map(|id| id.expect("every entry got an id"))
        .collect();
    // Postings of the bulk-inserted entries, and their balance moves summed per account.
    let mut moves = LedgerMoves::default();
    for (e, id) in entries.iter().zip(&ids) {
        if e.payment_id.is_some() {
            moves.add(*id, &e.entry);
        }
    }
    moves.write(c)?;
    Ok(ids)
}

/// Adds attempts to the risk counters of merchants per UTC day and currency:
/// (merchant, day, currency) → (amount, attempts).
pub fn add_merchant_daily(
    c: &Connection,
    counts: &BTreeMap<(String, i64, String), (i64, i64)>,
) -> StoreResult<()> {
    for ((merchant, day, currency), (amount_minor, n)) in counts {
        c.prepare_cached(
            "INSERT INTO merchant_daily (merchant, day, currency, amount_minor, n_attempts) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (merchant, day, currency) DO UPDATE SET \
             amount_minor = merchant_daily.amount_minor + excluded.amount_minor, \
             n_attempts = merchant_daily.n_attempts + excluded.n_attempts",
        )?
        .execute(params![merchant, day, currency, amount_minor, n])?;
    }
    Ok(())
}

/// Whether a payment id starts with `prefix` (seeded history is told apart by its prefix).
pub fn any_payment_with_prefix(c: &Connection, prefix: &str) -> StoreResult<bool> {
    // A range on the primary key rather than LIKE: an index seek on every engine.
    let end = format!("{prefix}\u{7f}");
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM payments WHERE payment_id >= ?1 AND payment_id < ?2)",
        params![prefix, end],
        |r| r.get(0),
    )?)
}

/// Refreshes the planner's statistics of the tables seeding fills. PostgreSQL plans from
/// statistics that autovacuum gathers only later: right after a bulk load it believes the
/// tables small and a key lookup unselective, and chose a sequential scan of `postings` for
/// each payment's entries (the audit) until `ANALYZE` ran. SQLite plans from the schema alone.
pub fn refresh_statistics(c: &Connection) -> StoreResult<()> {
    if c.engine() == paycode_db::sql::Engine::Postgres {
        c.execute_batch(
            "ANALYZE payments, refunds, quotes, payment_events, journal_entries, postings, \
             account_balances, settlement_items, settlement_batches, clearing_batches, \
             merchant_daily",
        )?;
    }
    Ok(())
}
