//! `paycode audit`: re-checks every money invariant from the stored rows, independently of the
//! code paths that wrote them (the pair of the assertions made when writing).
//!
//! Checks: every journal entry balances per currency and has at least two positive postings;
//! every account balance equals the sum of its postings; each payment's and refund's postings
//! are exactly the entries its state calls for (recomputed with the core functions from the
//! stored row); every settlement item matches its payment or refund; every settled event older
//! than the sweep is in `settlement_items`; every closed batch and clearing equals the sum of
//! its items and its journal entry; no entry is without an owner.
//!
//! The audit runs in one read transaction (a consistent snapshot while the acquirer keeps
//! writing) as streaming passes over statements: only one payment, one batch or one group of
//! postings is held in memory at a time. It stops collecting after [`VIOLATIONS_MAX`].

use crate::service::{Acquirer, ApiError, payment_entry, refund_entry, reversal_entry};
use crate::settlement::{
    self, BATCH_COLUMNS, BatchRow, CLEARING_COLUMNS, ClearingRow, ITEM_COLUMNS, ItemRow,
    PaymentFacts, SWEEP_LOOKBACK_MS,
};
use crate::store::{self, PaymentRow, StoreError, StoreResult};
use paycode_core::ledger::JournalEntry;
use paycode_core::payment::{PaymentState, RefundState};
use paycode_core::settlement as core;
use paycode_db::rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Violations collected at most; the audit reports that it stopped.
pub const VIOLATIONS_MAX: usize = 10_000;

/// One broken invariant, naming the row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub table: String,
    pub id: String,
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.table, self.id, self.problem)
    }
}

/// What the audit checked and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub n_entries: i64,
    pub n_accounts: i64,
    pub n_payments: u64,
    pub n_refunds: u64,
    pub n_items: u64,
    pub n_batches: u64,
    pub n_clearings: u64,
    pub violations: Vec<Violation>,
    /// More violations exist than were collected.
    pub truncated: bool,
}

impl AuditReport {
    fn flag(&mut self, table: &str, id: impl fmt::Display, problem: impl Into<String>) {
        if self.violations.len() >= VIOLATIONS_MAX {
            self.truncated = true;
            return;
        }
        self.violations.push(Violation {
            table: table.to_string(),
            id: id.to_string(),
            problem: problem.into(),
        });
    }

    /// `OK: …` with the counts, for the one-line summary of `paycode audit`.
    pub fn summary(&self) -> String {
        format!(
            "{} journal entries, {} accounts, {} payments, {} refunds, {} settlement items, \
             {} batches, {} clearings checked",
            self.n_entries,
            self.n_accounts,
            self.n_payments,
            self.n_refunds,
            self.n_items,
            self.n_batches,
            self.n_clearings
        )
    }
}

/// A posting as compared: account, side, amount, currency.
type Line = (String, String, i64, String);

fn lines_of(e: &JournalEntry) -> Vec<Line> {
    e.postings()
        .iter()
        .map(|p| {
            (
                p.account().to_string(),
                p.side().as_str().to_string(),
                p.amount().amount_minor(),
                p.amount().currency().code().to_string(),
            )
        })
        .collect()
}

fn describe(kind: &str, lines: &[Line]) -> String {
    let mut out = format!("{kind}:");
    for (account, side, amount, currency) in lines {
        out.push_str(&format!(" {side} {account} {amount} {currency};"));
    }
    out
}

/// A stored entry: id, kind, refund id, postings in order.
struct StoredEntry {
    entry_id: i64,
    kind: String,
    refund_id: Option<String>,
    lines: Vec<Line>,
}

fn entries_of_payment(c: &Connection, payment_id: &str) -> StoreResult<Vec<StoredEntry>> {
    let mut out: Vec<StoredEntry> = Vec::new();
    for r in store::postings_of_payment(c, payment_id)? {
        let line = (r.account, r.side, r.amount_minor, r.currency);
        match out.last_mut() {
            Some(e) if e.entry_id == r.entry_id => e.lines.push(line),
            _ => out.push(StoredEntry {
                entry_id: r.entry_id,
                kind: r.kind,
                refund_id: r.refund_id,
                lines: vec![line],
            }),
        }
    }
    Ok(out)
}

fn entry_by_id(c: &Connection, entry_id: i64) -> StoreResult<Option<(String, Vec<Line>)>> {
    let kind: Option<String> = c
        .prepare_cached("SELECT kind FROM journal_entries WHERE entry_id = ?1")?
        .query_row([entry_id], |r| r.get(0))
        .map(Some)
        .or_else(|e| match e {
            paycode_db::rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT account, side, amount_minor, currency FROM postings WHERE entry_id = ?1 ORDER BY idx",
    )?;
    let lines = stmt
        .query_map([entry_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<Vec<Line>, _>>()?;
    Ok(Some((kind, lines)))
}

/// Compares the stored entries of one owner with the expected ones, in order.
fn compare_entries(
    report: &mut AuditReport,
    table: &str,
    id: &str,
    stored: &[&StoredEntry],
    expected: &[JournalEntry],
) {
    if stored.len() != expected.len() {
        let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|e| e.kind()).collect();
        report.flag(
            table,
            id,
            format!(
                "has journal entries [{}] but its state calls for [{}]",
                kinds.join(", "),
                want.join(", ")
            ),
        );
        return;
    }
    for (s, e) in stored.iter().zip(expected) {
        let want = lines_of(e);
        if s.kind != e.kind() || s.lines != want {
            report.flag(
                table,
                id,
                format!(
                    "journal entry {} is {} but should be {}",
                    s.entry_id,
                    describe(&s.kind, &s.lines),
                    describe(e.kind(), &want)
                ),
            );
        }
    }
}

fn check_entries(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    report.n_entries = c.query_row("SELECT COUNT(*) FROM journal_entries", [], |r| r.get(0))?;
    let mut stmt = c.prepare(
        "SELECT entry_id, currency, SUM(CASE WHEN side = 'D' THEN amount_minor ELSE 0 END), \
         SUM(CASE WHEN side = 'C' THEN amount_minor ELSE 0 END) FROM postings \
         GROUP BY entry_id, currency \
         HAVING SUM(CASE WHEN side = 'D' THEN amount_minor ELSE -amount_minor END) <> 0",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (id, currency, d, cr): (i64, String, i64, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        report.flag(
            "journal_entries",
            id,
            format!("does not balance in {currency}: debits {d}, credits {cr}"),
        );
    }
    let mut stmt = c.prepare(
        "SELECT entry_id, idx, side, amount_minor FROM postings \
         WHERE amount_minor <= 0 OR side NOT IN ('D', 'C')",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (id, idx, side, amount): (i64, i64, String, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        report.flag(
            "postings",
            format!("{id}/{idx}"),
            format!("posting must be a positive amount on side D or C, got {side} {amount}"),
        );
    }
    let mut stmt = c.prepare(
        "SELECT e.entry_id, COUNT(p.idx) FROM journal_entries e \
         LEFT JOIN postings p ON p.entry_id = e.entry_id GROUP BY e.entry_id HAVING COUNT(p.idx) < 2",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (id, n): (i64, i64) = (r.get(0)?, r.get(1)?);
        report.flag(
            "journal_entries",
            id,
            format!("has {n} postings, an entry needs at least two"),
        );
    }
    let mut stmt = c.prepare(
        "SELECT DISTINCT p.entry_id FROM postings p WHERE NOT EXISTS \
         (SELECT 1 FROM journal_entries e WHERE e.entry_id = p.entry_id)",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        report.flag(
            "postings",
            id,
            "postings of a journal entry that does not exist",
        );
    }
    // Every entry has an owner: a payment (or its refund), a settlement batch or a clearing.
    let mut stmt = c.prepare(
        "SELECT e.entry_id, e.kind, e.payment_id FROM journal_entries e WHERE \
         (e.payment_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.payment_id = e.payment_id)) \
         OR (e.payment_id IS NULL AND NOT EXISTS (SELECT 1 FROM settlement_batches b WHERE b.entry_id = e.entry_id) \
             AND NOT EXISTS (SELECT 1 FROM clearing_batches k WHERE k.entry_id = e.entry_id))",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (id, kind, payment): (i64, String, Option<String>) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let problem = match payment {
            Some(p) => format!("{kind} entry of payment {p}, which does not exist"),
            None => format!("{kind} entry belongs to no payment, batch or clearing"),
        };
        report.flag("journal_entries", id, problem);
    }
    Ok(())
}

fn check_balances(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    report.n_accounts = c.query_row("SELECT COUNT(*) FROM account_balances", [], |r| r.get(0))?;
    let mut stmt = c.prepare(
        "SELECT s.account, s.currency, s.total, b.currency, b.balance_minor FROM \
         (SELECT account, currency, SUM(CASE WHEN side = 'D' THEN amount_minor ELSE -amount_minor END) AS total \
          FROM postings GROUP BY account, currency) s \
         LEFT JOIN account_balances b ON b.account = s.account \
         WHERE b.account IS NULL OR b.currency <> s.currency OR b.balance_minor <> s.total",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (account, currency, total): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let (b_currency, balance): (Option<String>, Option<i64>) = (r.get(3)?, r.get(4)?);
        let problem = match (b_currency, balance) {
            (Some(bc), Some(b)) => format!(
                "balance {b} {bc} but its postings sum to {total} {currency} (debit positive)"
            ),
            _ => format!("has postings summing to {total} {currency} but no balance row"),
        };
        report.flag("account_balances", account, problem);
    }
    let mut stmt = c.prepare(
        "SELECT b.account, b.balance_minor, b.currency FROM account_balances b WHERE b.balance_minor <> 0 \
         AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.account = b.account)",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (account, balance, currency): (String, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        report.flag(
            "account_balances",
            account,
            format!("balance {balance} {currency} without any posting"),
        );
    }
    Ok(())
}

fn check_payments(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    let mut stmt = c.prepare("SELECT payment_id FROM payments ORDER BY payment_id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let Some(p) = store::payment_by_id(c, &id)? else {
            continue;
        };
        report.n_payments += 1;
        let entries = entries_of_payment(c, &id)?;
        let refunds = store::refunds_of_payment(c, &id)?;
        // The payment's own entries.
        let own: Vec<&StoredEntry> = entries.iter().filter(|e| e.refund_id.is_none()).collect();
        let expected = match expected_payment_entries(&p) {
            Ok(e) => e,
            Err(e) => {
                report.flag(
                    "payments",
                    &id,
                    format!("cannot recompute its entries: {e}"),
                );
                continue;
            }
        };
        compare_entries(report, "payments", &id, &own, &expected);
        // Each refund's entries.
        for r in &refunds {
            report.n_refunds += 1;
            let stored: Vec<&StoredEntry> = entries
                .iter()
                .filter(|e| e.refund_id.as_deref() == Some(r.refund_id.as_str()))
                .collect();
            let expected = if r.state == RefundState::Success {
                match refund_entry(&p, r) {
                    Ok(e) => vec![e],
                    Err(e) => {
                        report.flag(
                            "refunds",
                            &r.refund_id,
                            format!("cannot recompute its entry: {e}"),
                        );
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            compare_entries(report, "refunds", &r.refund_id, &stored, &expected);
        }
        for e in &entries {
            if let Some(rid) = &e.refund_id
                && !refunds.iter().any(|r| &r.refund_id == rid)
            {
                report.flag(
                    "journal_entries",
                    e.entry_id,
                    format!(
                        "{} entry of refund {rid}, which is not a refund of payment {id}",
                        e.kind
                    ),
                );
            }
        }
    }
    Ok(())
}

/// The entries a payment's state calls for (its refunds aside).
fn expected_payment_entries(p: &PaymentRow) -> Result<Vec<JournalEntry>, StoreError> {
    Ok(match (p.state, p.paid_ms) {
        (PaymentState::Success, _) => vec![payment_entry(p)?],
        (PaymentState::Cancelled, Some(_)) => vec![payment_entry(p)?, reversal_entry(p)?],
        _ => Vec::new(),
    })
}

fn check_items(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    let mut stmt = c.prepare(&format!(
        "SELECT {ITEM_COLUMNS} FROM settlement_items ORDER BY transaction_id, kind"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let item = settlement::item_from_row(r)?;
        report.n_items += 1;
        let id = format!("{} {}", item.kind, item.transaction_id);
        match expected_item(c, &item)? {
            Err(problem) => report.flag("settlement_items", &id, problem),
            Ok(expected) if expected != item.facts() => report.flag(
                "settlement_items",
                &id,
                format!(
                    "does not match its {}: stored {:?}, expected {:?}",
                    if item.kind == "REFUND" {
                        "refund"
                    } else {
                        "payment"
                    },
                    item.facts(),
                    expected
                ),
            ),
            Ok(_) => {}
        }
    }
    // Items in batches or clearings that do not exist.
    let mut stmt = c.prepare(
        "SELECT i.kind, i.transaction_id, i.batch_id, i.clearing_id FROM settlement_items i WHERE \
         (i.batch_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM settlement_batches b WHERE b.batch_id = i.batch_id)) \
         OR (i.clearing_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM clearing_batches k WHERE k.clearing_id = i.clearing_id))",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (kind, tx, batch, clearing): (String, String, Option<String>, Option<String>) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        report.flag(
            "settlement_items",
            format!("{kind} {tx}"),
            format!("refers to a batch or clearing that does not exist ({batch:?}, {clearing:?})"),
        );
    }
    // Settled events older than the sweep that are in no item.
    let (swept_ms, _) = settlement::cursor(c)?;
    let before_ms = swept_ms - SWEEP_LOOKBACK_MS;
    let missing = [
        (
            "payments",
            "PAYMENT",
            "SELECT payment_id FROM payments WHERE paid_ms IS NOT NULL AND paid_ms < ?1 AND NOT EXISTS \
             (SELECT 1 FROM settlement_items i WHERE i.transaction_id = payments.payment_id AND i.kind = 'PAYMENT')",
        ),
        (
            "payments",
            "CANCEL",
            "SELECT payment_id FROM payments WHERE cancelled_ms IS NOT NULL AND paid_ms IS NOT NULL \
             AND cancelled_ms < ?1 AND NOT EXISTS (SELECT 1 FROM settlement_items i \
             WHERE i.transaction_id = payments.payment_id AND i.kind = 'CANCEL')",
        ),
        (
            "refunds",
            "REFUND",
            "SELECT refund_id FROM refunds WHERE status = 'SUCCESS' AND refunded_ms IS NOT NULL \
             AND refunded_ms < ?1 AND NOT EXISTS (SELECT 1 FROM settlement_items i \
             WHERE i.transaction_id = refunds.refund_id AND i.kind = 'REFUND')",
        ),
    ];
    for (table, kind, sql) in missing {
        let mut stmt = c.prepare(sql)?;
        let mut rows = stmt.query([before_ms])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            report.flag(
                table,
                id,
                format!(
                    "its {kind} event predates the settlement sweep but is in no settlement item"
                ),
            );
        }
    }
    Ok(())
}

/// The facts an item should hold, from its payment or refund; `Err` names why there is none.
fn expected_item(c: &Connection, item: &ItemRow) -> StoreResult<Result<ItemRow, String>> {
    let Some(p) = store::payment_by_id(c, &item.payment_id)? else {
        return Ok(Err(format!("payment {} does not exist", item.payment_id)));
    };
    let facts = PaymentFacts::of(&p);
    Ok(match item.kind.as_str() {
        "PAYMENT" => match p.paid_ms {
            Some(_) => Ok(facts.payment_item()?),
            None => Err(format!(
                "payment is {} and was never paid",
                p.state.status_str()
            )),
        },
        "CANCEL" => match (p.state, p.paid_ms) {
            (PaymentState::Cancelled, Some(_)) => Ok(facts.cancel_item()?),
            (state, _) => Err(format!(
                "payment is {}, not a cancelled paid payment",
                state.status_str()
            )),
        },
        "REFUND" => match store::refund_by_id(c, &item.transaction_id)? {
            Some(r) if r.state == RefundState::Success && r.payment_id == p.payment_id => {
                Ok(facts.refund_item(&r)?)
            }
            Some(r) => Err(format!(
                "refund is {} of payment {}, not a successful refund of {}",
                r.state.status_str(),
                r.payment_id,
                p.payment_id
            )),
            None => Err("refund does not exist".to_string()),
        },
        other => Err(format!("unknown kind {other}")),
    })
}

fn check_batches(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    let mut stmt = c.prepare(&format!(
        "SELECT {BATCH_COLUMNS} FROM settlement_batches ORDER BY batch_id"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let row: BatchRow = settlement::batch_from_row(r)?;
        report.n_batches += 1;
        let id = row.batch_id.clone();
        let batch = match settlement::rebuild_batch(c, &row) {
            Ok(b) => b,
            Err(e) => {
                report.flag(
                    "settlement_batches",
                    &id,
                    format!("cannot rebuild from its items: {e}"),
                );
                continue;
            }
        };
        let t = batch.totals();
        let sums = (
            t.count as i64,
            t.gross.amount_minor(),
            t.fees.amount_minor(),
            t.net.amount_minor(),
        );
        let stored = (
            row.item_count,
            row.gross_minor,
            row.fee_minor,
            row.net_minor,
        );
        if sums != stored {
            report.flag(
                "settlement_batches",
                &id,
                format!(
                    "stores (count, gross, fee, net) = {stored:?} but its items sum to {sums:?}"
                ),
            );
        }
        let expected = match batch.payout_entry() {
            Ok(e) => e,
            Err(e) => {
                report.flag(
                    "settlement_batches",
                    &id,
                    format!("cannot recompute its payout: {e}"),
                );
                continue;
            }
        };
        check_owned_entry(c, report, "settlement_batches", &id, row.entry_id, expected)?;
    }
    Ok(())
}

fn check_owned_entry(
    c: &Connection,
    report: &mut AuditReport,
    table: &str,
    id: &str,
    entry_id: Option<i64>,
    expected: Option<JournalEntry>,
) -> StoreResult<()> {
    match (entry_id, expected) {
        (None, None) => {}
        (Some(eid), None) => report.flag(
            table,
            id,
            format!("nets to zero but has journal entry {eid}"),
        ),
        (None, Some(e)) => report.flag(
            table,
            id,
            format!(
                "has no journal entry but should have {}",
                describe(e.kind(), &lines_of(&e))
            ),
        ),
        (Some(eid), Some(e)) => match entry_by_id(c, eid)? {
            None => report.flag(table, id, format!("its journal entry {eid} does not exist")),
            Some((kind, lines)) => {
                let want = lines_of(&e);
                if kind != e.kind() || lines != want {
                    report.flag(
                        table,
                        id,
                        format!(
                            "journal entry {eid} is {} but should be {}",
                            describe(&kind, &lines),
                            describe(e.kind(), &want)
                        ),
                    );
                }
            }
        },
    }
    Ok(())
}

fn check_clearings(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    let mut stmt = c.prepare(&format!(
        "SELECT {CLEARING_COLUMNS} FROM clearing_batches ORDER BY clearing_id"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let row: ClearingRow = settlement::clearing_from_row(r)?;
        report.n_clearings += 1;
        let id = row.clearing_id.clone();
        let totals = match settlement::rebuild_clearing(c, &row) {
            Ok(t) => t,
            Err(e) => {
                report.flag(
                    "clearing_batches",
                    &id,
                    format!("cannot rebuild from its items: {e}"),
                );
                continue;
            }
        };
        let count = (totals.payments.count + totals.refunds.count + totals.cancels.count) as i64;
        if (count, totals.net.amount_minor()) != (row.item_count, row.net_minor)
            || totals.wallet != row.wallet
            || totals.currency.code() != row.currency
        {
            report.flag(
                "clearing_batches",
                &id,
                format!(
                    "stores {} items netting {} {} for {} but its items are {count} netting {} for {}",
                    row.item_count,
                    row.net_minor,
                    row.currency,
                    row.wallet,
                    totals.net,
                    totals.wallet
                ),
            );
        }
        let expected = match core::clearing_entry(&row.wallet, totals.net) {
            Ok(e) => e,
            Err(e) => {
                report.flag(
                    "clearing_batches",
                    &id,
                    format!("cannot recompute its entry: {e}"),
                );
                continue;
            }
        };
        check_owned_entry(c, report, "clearing_batches", &id, row.entry_id, expected)?;
    }
    Ok(())
}

/// Runs every check on one consistent snapshot.
pub fn audit_store(c: &Connection) -> StoreResult<AuditReport> {
    let tx = c.unchecked_transaction()?;
    let mut report = AuditReport::default();
    check_entries(&tx, &mut report)?;
    check_balances(&tx, &mut report)?;
    check_payments(&tx, &mut report)?;
    check_items(&tx, &mut report)?;
    check_batches(&tx, &mut report)?;
    check_clearings(&tx, &mut report)?;
    drop(tx);
    Ok(report)
}

impl Acquirer {
    /// Every violated invariant (empty when the books are sound).
    pub async fn audit(&self) -> Result<Vec<Violation>, ApiError> {
        Ok(self.audit_report().await?.violations)
    }

    /// The audit with the counts of what it checked.
    pub async fn audit_report(&self) -> Result<AuditReport, ApiError> {
        self.db()
            .read(|c| audit_store(c).map_err(ApiError::from))
            .await
    }
}
