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
use crate::settlement::{self, BatchRow, ClearingRow, ItemRow, PaymentFacts, SWEEP_LOOKBACK_MS};
use crate::store::audit::{Line, SettledEvent};
use crate::store::{self, PaymentRow, RefundRow, StoreError, StoreResult};
use paycode_core::ledger::JournalEntry;
use paycode_core::payment::{PaymentState, RefundState};
use paycode_core::settlement as core;
use paycode_db::sql::Connection;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
    Ok(group_entries(store::postings_of_payment(c, payment_id)?))
}

/// One payment's posting rows, in entry and line order, as its entries.
fn group_entries(rows: Vec<store::PostingRow>) -> Vec<StoredEntry> {
    let mut out: Vec<StoredEntry> = Vec::new();
    for r in rows {
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
    out
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
    report.n_entries = store::audit::count_entries(c)?;
    store::audit::each_unbalanced_entry(c, |(id, currency, d, cr)| {
        report.flag(
            "journal_entries",
            id,
            format!("does not balance in {currency}: debits {d}, credits {cr}"),
        );
        Ok(())
    })?;
    store::audit::each_malformed_posting(c, |(id, idx, side, amount)| {
        report.flag(
            "postings",
            format!("{id}/{idx}"),
            format!("posting must be a positive amount on side D or C, got {side} {amount}"),
        );
        Ok(())
    })?;
    store::audit::each_short_entry(c, |(id, n)| {
        report.flag(
            "journal_entries",
            id,
            format!("has {n} postings, an entry needs at least two"),
        );
        Ok(())
    })?;
    store::audit::each_orphan_posting_entry(c, |id| {
        report.flag(
            "postings",
            id,
            "postings of a journal entry that does not exist",
        );
        Ok(())
    })?;
    // Every entry has an owner: a payment (or its refund), a settlement batch or a clearing.
    store::audit::each_ownerless_entry(c, |(id, kind, payment)| {
        let problem = match payment {
            Some(p) => format!("{kind} entry of payment {p}, which does not exist"),
            None => format!("{kind} entry belongs to no payment, batch or clearing"),
        };
        report.flag("journal_entries", id, problem);
        Ok(())
    })
}

fn check_balances(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    report.n_accounts = store::audit::count_accounts(c)?;
    store::audit::each_balance_mismatch(c, |m| {
        let (total, currency) = (m.total, &m.currency);
        let problem = match m.balance {
            Some((bc, b)) => format!(
                "balance {b} {bc} but its postings sum to {total} {currency} (debit positive)"
            ),
            None => format!("has postings summing to {total} {currency} but no balance row"),
        };
        report.flag("account_balances", m.account, problem);
        Ok(())
    })?;
    store::audit::each_balance_without_postings(c, |(account, balance, currency)| {
        report.flag(
            "account_balances",
            account,
            format!("balance {balance} {currency} without any posting"),
        );
        Ok(())
    })
}

/// Payments read per chunk: three statements per chunk instead of three per payment.
const AUDIT_CHUNK: usize = 1_000;

/// Every payment, a chunk of ids at a time: the chunk's payments, refunds and postings in three
/// range reads. A chunk with a row that cannot be read is checked again one payment at a time,
/// so that the unreadable row is named and the others are still checked.
fn check_payments(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    let mut after = String::new();
    loop {
        let ids = store::audit::payment_ids_after(c, &after, AUDIT_CHUNK)?;
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(());
        };
        let read = store::payments_in_range(c, first, last)
            .and_then(|p| Ok((p, store::refunds_of_payments_in_range(c, first, last)?)));
        match read {
            Ok((payments, refunds)) => {
                let mut refunds_of: HashMap<String, Vec<RefundRow>> = HashMap::new();
                for r in refunds {
                    refunds_of.entry(r.payment_id.clone()).or_default().push(r);
                }
                let mut postings_of: HashMap<String, Vec<store::PostingRow>> = HashMap::new();
                for r in store::postings_of_payments_in_range(c, first, last)? {
                    if let Some(id) = r.payment_id.clone() {
                        postings_of.entry(id).or_default().push(r);
                    }
                }
                for p in payments {
                    let refunds = refunds_of.remove(&p.payment_id).unwrap_or_default();
                    let entries =
                        group_entries(postings_of.remove(&p.payment_id).unwrap_or_default());
                    check_read_payment(report, &p, &refunds, &entries);
                }
            }
            Err(StoreError::Corrupt(_)) => {
                for id in &ids {
                    check_payment(c, report, id.clone())?;
                }
            }
            Err(e) => return Err(e),
        }
        if ids.len() < AUDIT_CHUNK {
            return Ok(());
        }
        after = last.clone();
    }
}

/// One payment's entries and its refunds'; a row that cannot be read is a violation, and the
/// audit goes on with the next.
fn check_payment(c: &Connection, report: &mut AuditReport, id: String) -> StoreResult<()> {
    let read =
        store::payment_by_id(c, &id).and_then(|p| Ok((p, store::refunds_of_payment(c, &id)?)));
    let (p, refunds) = match read {
        Ok((Some(p), refunds)) => (p, refunds),
        Ok((None, _)) => return Ok(()),
        Err(StoreError::Corrupt(why)) => {
            report.flag("payments", &id, format!("cannot be read: {why}"));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let entries = entries_of_payment(c, &id)?;
    check_read_payment(report, &p, &refunds, &entries);
    Ok(())
}

/// Checks one payment's stored entries, and its refunds', against what their states call for.
fn check_read_payment(
    report: &mut AuditReport,
    p: &PaymentRow,
    refunds: &[RefundRow],
    entries: &[StoredEntry],
) {
    let id = p.payment_id.as_str();
    {
        report.n_payments += 1;
        // The payment's own entries.
        let own: Vec<&StoredEntry> = entries.iter().filter(|e| e.refund_id.is_none()).collect();
        let expected = match expected_payment_entries(p) {
            Ok(e) => e,
            Err(e) => {
                report.flag("payments", id, format!("cannot recompute its entries: {e}"));
                return;
            }
        };
        compare_entries(report, "payments", id, &own, &expected);
        // Each refund's entries.
        for r in refunds {
            report.n_refunds += 1;
            let stored: Vec<&StoredEntry> = entries
                .iter()
                .filter(|e| e.refund_id.as_deref() == Some(r.refund_id.as_str()))
                .collect();
            let expected = if r.state == RefundState::Success {
                match refund_entry(p, r) {
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
        for e in entries {
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
    let mut chunk: Vec<ItemRow> = Vec::with_capacity(AUDIT_CHUNK);
    store::audit::each_item(c, |item| {
        chunk.push(item);
        if chunk.len() == AUDIT_CHUNK {
            check_item_chunk(c, report, std::mem::take(&mut chunk))?;
        }
        Ok(())
    })?;
    check_item_chunk(c, report, chunk)?;
    // Items in batches or clearings that do not exist.
    store::audit::each_dangling_item(c, |(kind, tx, batch, clearing)| {
        report.flag(
            "settlement_items",
            format!("{kind} {tx}"),
            format!("refers to a batch or clearing that does not exist ({batch:?}, {clearing:?})"),
        );
        Ok(())
    })?;
    // Settled events older than the sweep that are in no item.
    let (swept_ms, _) = store::settlement::cursor(c)?;
    let before_ms = swept_ms - SWEEP_LOOKBACK_MS;
    for event in SettledEvent::ALL {
        let (table, kind) = event.table_and_kind();
        store::audit::each_unswept(c, event, before_ms, |id| {
            report.flag(
                table,
                id,
                format!(
                    "its {kind} event predates the settlement sweep but is in no settlement item"
                ),
            );
            Ok(())
        })?;
    }
    Ok(())
}

/// Items against their payments and refunds, read for the whole chunk in two statements; a
/// chunk with a row that cannot be read is checked again one item at a time.
fn check_item_chunk(
    c: &Connection,
    report: &mut AuditReport,
    items: Vec<ItemRow>,
) -> StoreResult<()> {
    let payment_ids: Vec<&str> = items.iter().map(|i| i.payment_id.as_str()).collect();
    let refund_ids: Vec<&str> = items
        .iter()
        .filter(|i| i.kind == "REFUND")
        .map(|i| i.transaction_id.as_str())
        .collect();
    let read = store::payments_by_ids(c, &payment_ids)
        .and_then(|p| Ok((p, store::refunds_by_ids(c, &refund_ids)?)));
    let (payments, refunds) = match read {
        Ok((p, r)) => (p, r),
        Err(StoreError::Corrupt(_)) => {
            for item in &items {
                let expected = expected_item(c, item)?;
                judge_item(report, item, expected);
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let payments: HashMap<&str, &PaymentRow> = payments
        .iter()
        .map(|p| (p.payment_id.as_str(), p))
        .collect();
    let refunds: HashMap<&str, &RefundRow> =
        refunds.iter().map(|r| (r.refund_id.as_str(), r)).collect();
    for item in &items {
        let expected = match payments.get(item.payment_id.as_str()) {
            None => Err(format!("payment {} does not exist", item.payment_id)),
            Some(p) => expected_item_of(
                p,
                item,
                Ok(refunds.get(item.transaction_id.as_str()).copied()),
            )?,
        };
        judge_item(report, item, expected);
    }
    Ok(())
}

fn judge_item(report: &mut AuditReport, item: &ItemRow, expected: Result<ItemRow, String>) {
    report.n_items += 1;
    let id = format!("{} {}", item.kind, item.transaction_id);
    match expected {
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

/// The facts an item should hold, from its payment or refund; `Err` names why there is none.
fn expected_item(c: &Connection, item: &ItemRow) -> StoreResult<Result<ItemRow, String>> {
    let p = match store::payment_by_id(c, &item.payment_id) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Err(format!("payment {} does not exist", item.payment_id))),
        Err(StoreError::Corrupt(why)) => return Ok(Err(format!("payment cannot be read: {why}"))),
        Err(e) => return Err(e),
    };
    let refund = if item.kind == "REFUND" {
        match store::refund_by_id(c, &item.transaction_id) {
            Err(StoreError::Corrupt(why)) => Err(format!("refund cannot be read: {why}")),
            Err(e) => return Err(e),
            Ok(r) => Ok(r),
        }
    } else {
        Ok(None)
    };
    expected_item_of(
        &p,
        item,
        refund.as_ref().map(Option::as_ref).map_err(Clone::clone),
    )
}

/// The facts an item should hold given its payment and (for a refund item) its refund as read.
fn expected_item_of(
    p: &PaymentRow,
    item: &ItemRow,
    refund: Result<Option<&RefundRow>, String>,
) -> StoreResult<Result<ItemRow, String>> {
    let facts = PaymentFacts::of(p);
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
        "REFUND" => match refund {
            Err(why) => Err(why),
            Ok(None) => Err("refund does not exist".to_string()),
            Ok(Some(r)) if r.state == RefundState::Success && r.payment_id == p.payment_id => {
                Ok(facts.refund_item(r)?)
            }
            Ok(Some(r)) => Err(format!(
                "refund is {} of payment {}, not a successful refund of {}",
                r.state.status_str(),
                r.payment_id,
                p.payment_id
            )),
        },
        other => Err(format!("unknown kind {other}")),
    })
}

fn check_batches(c: &Connection, report: &mut AuditReport) -> StoreResult<()> {
    store::audit::each_batch(c, |row: BatchRow| {
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
                return Ok(());
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
                return Ok(());
            }
        };
        check_owned_entry(c, report, "settlement_batches", &id, row.entry_id, expected)
    })
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
        (Some(eid), Some(e)) => match store::audit::entry_by_id(c, eid)? {
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
    store::audit::each_clearing(c, |row: ClearingRow| {
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
                return Ok(());
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
                return Ok(());
            }
        };
        check_owned_entry(c, report, "clearing_batches", &id, row.entry_id, expected)
    })
}

/// Runs every check on one consistent snapshot.
pub fn audit_store(c: &Connection) -> StoreResult<AuditReport> {
    store::audit::in_snapshot(c, |c| {
        let mut report = AuditReport::default();
        check_entries(c, &mut report)?;
        check_balances(c, &mut report)?;
        check_payments(c, &mut report)?;
        check_items(c, &mut report)?;
        check_batches(c, &mut report)?;
        check_clearings(c, &mut report)?;
        Ok(report)
    })
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
