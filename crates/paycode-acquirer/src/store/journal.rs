//! The `journal_entries`, `postings` and `account_balances` tables: the append-only ledger and
//! the running balances kept in the same transaction.

use super::{StoreResult, insert_many};
use paycode_core::ledger::{JournalEntry, Side};
use paycode_db::sql::types::ToSqlOutput;
use paycode_db::sql::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

/// Appends a journal entry and moves the account balances, in the caller's transaction.
pub fn post_entry(
    c: &Connection,
    entry: &JournalEntry,
    payment_id: Option<&str>,
    refund_id: Option<&str>,
    now_ms: i64,
) -> StoreResult<i64> {
    let entry_id: i64 = c.query_row(
        "INSERT INTO journal_entries (kind, payment_id, refund_id, created_ms) \
         VALUES (?1, ?2, ?3, ?4) RETURNING entry_id",
        params![entry.kind(), payment_id, refund_id, now_ms],
        |r| r.get(0),
    )?;
    let mut moves = LedgerMoves::default();
    moves.add(entry_id, entry);
    moves.write(c)?;
    Ok(entry_id)
}

/// The postings of entries being posted in one unit, and their balance moves summed per
/// account. Written with one statement for the postings and one for the balances (round trips
/// matter on a server database). Balances move in account order, whatever the order of the
/// postings: two units moving the same accounts lock their rows in the same order and never
/// deadlock.
#[derive(Default)]
pub(super) struct LedgerMoves<'a> {
    postings: Vec<ToSqlOutput<'a>>,
    deltas: BTreeMap<&'a str, (&'a str, i64)>,
}

impl<'a> LedgerMoves<'a> {
    /// Adds the postings of `entry`, stored as entry `entry_id`.
    pub(super) fn add(&mut self, entry_id: i64, entry: &'a JournalEntry) {
        for (idx, p) in entry.postings().iter().enumerate() {
            let amount = p.amount();
            self.postings.extend([
                ToSqlOutput::from(entry_id),
                ToSqlOutput::from(idx as i64),
                ToSqlOutput::from(p.account()),
                ToSqlOutput::from(p.side().as_str()),
                ToSqlOutput::from(amount.amount_minor()),
                ToSqlOutput::from(amount.currency().code()),
            ]);
            let delta = match p.side() {
                Side::Debit => amount.amount_minor(),
                Side::Credit => -amount.amount_minor(),
            };
            self.deltas
                .entry(p.account())
                .or_insert((amount.currency().code(), 0))
                .1 += delta;
        }
    }

    /// Inserts the postings and moves the balances, in the caller's transaction.
    pub(super) fn write(&self, c: &Connection) -> StoreResult<()> {
        insert_many(
            c,
            "INSERT INTO postings (entry_id, idx, account, side, amount_minor, currency)",
            "",
            6,
            &self.postings,
        )?;
        let balances: Vec<ToSqlOutput<'_>> = self
            .deltas
            .iter()
            .flat_map(|(account, (currency, delta))| {
                [
                    ToSqlOutput::from(*account),
                    ToSqlOutput::from(*currency),
                    ToSqlOutput::from(*delta),
                ]
            })
            .collect();
        insert_many(
            c,
            "INSERT INTO account_balances (account, currency, balance_minor)",
            " ON CONFLICT (account) DO UPDATE SET \
             balance_minor = account_balances.balance_minor + excluded.balance_minor",
            3,
            &balances,
        )
    }
}

/// One posting as stored, for audits and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingRow {
    pub entry_id: i64,
    pub kind: String,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    pub account: String,
    pub side: String,
    pub amount_minor: i64,
    pub currency: String,
}

pub fn postings_of_payment(c: &Connection, payment_id: &str) -> StoreResult<Vec<PostingRow>> {
    let rows = c.query_all_cached(
        "SELECT e.entry_id, e.kind, e.payment_id, e.refund_id, p.account, p.side, p.amount_minor, \
         p.currency FROM journal_entries e JOIN postings p ON p.entry_id = e.entry_id \
         WHERE e.payment_id = ?1 ORDER BY e.entry_id, p.idx",
        [payment_id],
        |r| {
            Ok(PostingRow {
                entry_id: r.get(0)?,
                kind: r.get(1)?,
                payment_id: r.get(2)?,
                refund_id: r.get(3)?,
                account: r.get(4)?,
                side: r.get(5)?,
                amount_minor: r.get(6)?,
                currency: r.get(7)?,
            })
        },
    )?;
    Ok(rows)
}

/// The postings of the payments with ids in `[first, last]`, by payment, entry and line.
pub fn postings_of_payments_in_range(
    c: &Connection,
    first: &str,
    last: &str,
) -> StoreResult<Vec<PostingRow>> {
    let rows = c.query_all_cached(
        "SELECT e.entry_id, e.kind, e.payment_id, e.refund_id, p.account, p.side, p.amount_minor, \
         p.currency FROM journal_entries e JOIN postings p ON p.entry_id = e.entry_id \
         WHERE e.payment_id BETWEEN ?1 AND ?2 ORDER BY e.payment_id, e.entry_id, p.idx",
        [first, last],
        |r| {
            Ok(PostingRow {
                entry_id: r.get(0)?,
                kind: r.get(1)?,
                payment_id: r.get(2)?,
                refund_id: r.get(3)?,
                account: r.get(4)?,
                side: r.get(5)?,
                amount_minor: r.get(6)?,
                currency: r.get(7)?,
            })
        },
    )?;
    Ok(rows)
}

pub fn account_balance(c: &Connection, account: &str) -> StoreResult<i64> {
    Ok(c.query_row(
        "SELECT balance_minor FROM account_balances WHERE account = ?1",
        [account],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or(0))
}

/// One account's running balance (debit-positive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub account: String,
    pub currency: String,
    pub balance_minor: i64,
}

/// Every account's balance, by account.
pub fn balances(c: &Connection) -> StoreResult<Vec<BalanceRow>> {
    Ok(c.query_all_cached(
        "SELECT account, currency, balance_minor FROM account_balances ORDER BY account",
        [],
        |r| {
            Ok(BalanceRow {
                account: r.get(0)?,
                currency: r.get(1)?,
                balance_minor: r.get(2)?,
            })
        },
    )?)
}
