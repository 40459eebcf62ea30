//! The `payments` and `refunds` tables, read into rows whose states are typed.

use super::{StoreError, StoreResult, corrupt_column, ms_at, opt_ms_at, result_code_at};
use paycode_core::ResultCode;
use paycode_core::payment::{PaymentState, RefundState};
use paycode_db::sql::{self, Connection, OptionalExtension, Row, params};

/// A payment as stored.
#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub payment_id: String,
    pub client_id: String,
    pub payment_request_id: String,
    pub request_hash: String,
    pub reference_merchant_id: String,
    pub reference_store_id: Option<String>,
    pub merchant_name: String,
    pub store_name: Option<String>,
    pub terminal_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub wallet: String,
    pub psp_name: String,
    pub code_masked: String,
    pub pay_to_minor: i64,
    pub pay_to_currency: String,
    pub payment_quote: Option<String>,
    pub settle_minor: i64,
    pub settle_currency: String,
    pub settlement_quote: Option<String>,
    pub fee_minor: i64,
    /// Parsed from `status` (and, when failed, `result_code`) when the row is read.
    pub state: PaymentState,
    /// While processing, says whether the wallet waits for the user (`PAYMENT_IN_PROCESS`) or
    /// its answer was lost (`UNKNOWN_EXCEPTION`); once final, the state's code.
    pub result_code: ResultCode,
    pub result_message: String,
    pub wallet_payment_id: Option<String>,
    pub psp_customer_id: Option<String>,
    pub notify_url: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub paid_ms: Option<i64>,
    pub cancelled_ms: Option<i64>,
    pub cancel_requested_ms: Option<i64>,
    pub updated_ms: i64,
    pub next_check_ms: Option<i64>,
    pub n_checks: i64,
    /// The buyer key of the code (CII and device slot, `risk::buyer_key`); `None` for a
    /// legacy code. What the buyer rules count by, and what links the code's device to the
    /// wallet's `customerId` once an answer reveals it.
    pub buyer: Option<String>,
}

pub(super) const PAYMENT_COLUMNS: &str = "payment_id, client_id, payment_request_id, request_hash, \
    reference_merchant_id, reference_store_id, merchant_name, store_name, terminal_id, \
    amount_minor, currency, wallet, psp_name, code_masked, pay_to_minor, pay_to_currency, \
    payment_quote, settle_minor, settle_currency, settlement_quote, status, result_code, \
    result_message, wallet_payment_id, psp_customer_id, notify_url, created_ms, expires_ms, \
    paid_ms, cancelled_ms, updated_ms, next_check_ms, n_checks, cancel_requested_ms, fee_minor, buyer";

pub(super) fn payment_from_row(r: &Row<'_>) -> sql::Result<PaymentRow> {
    let payment_id: String = r.get(0)?;
    let row = || format!("payment {payment_id}");
    let result_code = result_code_at(r, 21, &row)?;
    let status: String = r.get(20)?;
    let state = PaymentState::from_stored(&status, result_code.as_str())
        .ok_or_else(|| corrupt_column(20, format!("{}: status {status:?}", row())))?;
    Ok(PaymentRow {
        created_ms: ms_at(r, 26, &row)?,
        expires_ms: ms_at(r, 27, &row)?,
        paid_ms: opt_ms_at(r, 28, &row)?,
        cancelled_ms: opt_ms_at(r, 29, &row)?,
        updated_ms: ms_at(r, 30, &row)?,
        cancel_requested_ms: opt_ms_at(r, 33, &row)?,
        payment_id,
        client_id: r.get(1)?,
        payment_request_id: r.get(2)?,
        request_hash: r.get(3)?,
        reference_merchant_id: r.get(4)?,
        reference_store_id: r.get(5)?,
        merchant_name: r.get(6)?,
        store_name: r.get(7)?,
        terminal_id: r.get(8)?,
        amount_minor: r.get(9)?,
        currency: r.get(10)?,
        wallet: r.get(11)?,
        psp_name: r.get(12)?,
        code_masked: r.get(13)?,
        pay_to_minor: r.get(14)?,
        pay_to_currency: r.get(15)?,
        payment_quote: r.get(16)?,
        settle_minor: r.get(17)?,
        settle_currency: r.get(18)?,
        settlement_quote: r.get(19)?,
        state,
        result_code,
        result_message: r.get(22)?,
        wallet_payment_id: r.get(23)?,
        psp_customer_id: r.get(24)?,
        notify_url: r.get(25)?,
        next_check_ms: r.get(31)?,
        n_checks: r.get(32)?,
        fee_minor: r.get(34)?,
        buyer: r.get(35)?,
    })
}

/// The last four digits of a masked code, kept in their own indexed column for the
/// dashboard's "code ends with" search.
pub(super) fn code_last4(masked: &str) -> String {
    let n = masked.chars().count();
    masked.chars().skip(n.saturating_sub(4)).collect()
}

pub fn insert_payment(c: &Connection, p: &PaymentRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}, code_last4) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, \
         ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37)"
    ))?
    .execute(params![
        p.payment_id,
        p.client_id,
        p.payment_request_id,
        p.request_hash,
        p.reference_merchant_id,
        p.reference_store_id,
        p.merchant_name,
        p.store_name,
        p.terminal_id,
        p.amount_minor,
        p.currency,
        p.wallet,
        p.psp_name,
        p.code_masked,
        p.pay_to_minor,
        p.pay_to_currency,
        p.payment_quote,
        p.settle_minor,
        p.settle_currency,
        p.settlement_quote,
        p.state.status_str(),
        p.result_code.as_str(),
        p.result_message,
        p.wallet_payment_id,
        p.psp_customer_id,
        p.notify_url,
        p.created_ms,
        p.expires_ms,
        p.paid_ms,
        p.cancelled_ms,
        p.updated_ms,
        p.next_check_ms,
        p.n_checks,
        p.cancel_requested_ms,
        p.fee_minor,
        p.buyer,
        code_last4(&p.code_masked),
    ])?;
    Ok(())
}

/// Writes the mutable part of a payment (state, wallet facts, times, reconciler schedule).
pub fn update_payment(c: &Connection, p: &PaymentRow) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE payments SET status = ?2, result_code = ?3, result_message = ?4, \
             wallet_payment_id = ?5, psp_customer_id = ?6, paid_ms = ?7, cancelled_ms = ?8, \
             updated_ms = ?9, next_check_ms = ?10, n_checks = ?11, cancel_requested_ms = ?12 \
             WHERE payment_id = ?1",
        )?
        .execute(params![
            p.payment_id,
            p.state.status_str(),
            p.result_code.as_str(),
            p.result_message,
            p.wallet_payment_id,
            p.psp_customer_id,
            p.paid_ms,
            p.cancelled_ms,
            p.updated_ms,
            p.next_check_ms,
            p.n_checks,
            p.cancel_requested_ms,
        ])?;
    if n != 1 {
        return Err(StoreError::NotFound(format!("payment {}", p.payment_id)));
    }
    Ok(())
}

pub fn payment_by_id(c: &Connection, payment_id: &str) -> StoreResult<Option<PaymentRow>> {
    // Locked in a write unit on PostgreSQL: whatever the unit decides from this state (finish,
    // cancel, refund) is decided by one unit at a time.
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = ?1{}",
        c.for_update()
    );
    Ok(c.query_row(&sql, [payment_id], payment_from_row)
        .optional()?)
}

pub fn payment_by_request_id(
    c: &Connection,
    client_id: &str,
    payment_request_id: &str,
) -> StoreResult<Option<PaymentRow>> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE client_id = ?1 AND payment_request_id = ?2{}",
        c.for_update()
    );
    Ok(
        c.query_row(&sql, [client_id, payment_request_id], payment_from_row)
            .optional()?,
    )
}

/// PROCESSING payments whose next wallet check is due, oldest first.
pub fn payments_due(c: &Connection, now_ms: i64, limit: usize) -> StoreResult<Vec<PaymentRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE next_check_ms IS NOT NULL \
         AND next_check_ms <= ?1 ORDER BY next_check_ms LIMIT ?2"
        ),
        params![now_ms, limit as i64],
        payment_from_row,
    )?;
    Ok(rows)
}

/// Pushes a payment's next check forward only if it is still as the caller saw it; returns
/// whether this caller won the claim (so two reconcilers never work the same payment at once).
pub fn claim_payment_check(
    c: &Connection,
    payment_id: &str,
    seen_next_check_ms: i64,
    lease_until_ms: i64,
) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE payments SET next_check_ms = ?3, n_checks = n_checks + 1 \
             WHERE payment_id = ?1 AND next_check_ms = ?2 AND status = 'PROCESSING'",
        )?
        .execute(params![payment_id, seen_next_check_ms, lease_until_ms])?;
    Ok(n == 1)
}

/// A refund as stored.
#[derive(Debug, Clone)]
pub struct RefundRow {
    pub refund_id: String,
    pub client_id: String,
    pub refund_request_id: String,
    pub request_hash: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub wallet_amount_minor: i64,
    pub wallet_currency: String,
    pub settle_minor: i64,
    pub settle_currency: String,
    pub settlement_quote: Option<String>,
    pub fee_minor: i64,
    /// Parsed from `status` (and, when failed, `result_code`) when the row is read.
    pub state: RefundState,
    pub result_code: ResultCode,
    pub result_message: String,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
    pub created_ms: i64,
    pub refunded_ms: Option<i64>,
    pub next_check_ms: Option<i64>,
}

pub(super) const REFUND_COLUMNS: &str = "refund_id, client_id, refund_request_id, request_hash, payment_id, \
    amount_minor, currency, wallet_amount_minor, wallet_currency, settle_minor, settle_currency, \
    status, result_code, result_message, reason, notify_url, created_ms, refunded_ms, next_check_ms, \
    settlement_quote, fee_minor";

fn refund_from_row(r: &Row<'_>) -> sql::Result<RefundRow> {
    let refund_id: String = r.get(0)?;
    let row = || format!("refund {refund_id}");
    let result_code = result_code_at(r, 12, &row)?;
    let status: String = r.get(11)?;
    let state = RefundState::from_stored(&status, result_code.as_str())
        .ok_or_else(|| corrupt_column(11, format!("{}: status {status:?}", row())))?;
    Ok(RefundRow {
        created_ms: ms_at(r, 16, &row)?,
        refunded_ms: opt_ms_at(r, 17, &row)?,
        refund_id,
        client_id: r.get(1)?,
        refund_request_id: r.get(2)?,
        request_hash: r.get(3)?,
        payment_id: r.get(4)?,
        amount_minor: r.get(5)?,
        currency: r.get(6)?,
        wallet_amount_minor: r.get(7)?,
        wallet_currency: r.get(8)?,
        settle_minor: r.get(9)?,
        settle_currency: r.get(10)?,
        state,
        result_code,
        result_message: r.get(13)?,
        reason: r.get(14)?,
        notify_url: r.get(15)?,
        next_check_ms: r.get(18)?,
        settlement_quote: r.get(19)?,
        fee_minor: r.get(20)?,
    })
}

pub fn insert_refund(c: &Connection, r: &RefundRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))?
    .execute(params![
        r.refund_id,
        r.client_id,
        r.refund_request_id,
        r.request_hash,
        r.payment_id,
        r.amount_minor,
        r.currency,
        r.wallet_amount_minor,
        r.wallet_currency,
        r.settle_minor,
        r.settle_currency,
        r.state.status_str(),
        r.result_code.as_str(),
        r.result_message,
        r.reason,
        r.notify_url,
        r.created_ms,
        r.refunded_ms,
        r.next_check_ms,
        r.settlement_quote,
        r.fee_minor,
    ])?;
    Ok(())
}

/// Writes the outcome of a refund (state, times, fee returned).
pub fn update_refund(c: &Connection, r: &RefundRow) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE refunds SET status = ?2, result_code = ?3, result_message = ?4, \
         refunded_ms = ?5, next_check_ms = ?6, fee_minor = ?7 WHERE refund_id = ?1",
        )?
        .execute(params![
            r.refund_id,
            r.state.status_str(),
            r.result_code.as_str(),
            r.result_message,
            r.refunded_ms,
            r.next_check_ms,
            r.fee_minor,
        ])?;
    if n != 1 {
        return Err(StoreError::NotFound(format!("refund {}", r.refund_id)));
    }
    Ok(())
}

pub fn refund_by_id(c: &Connection, refund_id: &str) -> StoreResult<Option<RefundRow>> {
    let sql = format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE refund_id = ?1{}",
        c.for_update()
    );
    Ok(c.query_row(&sql, [refund_id], refund_from_row).optional()?)
}

pub fn refund_by_request_id(
    c: &Connection,
    client_id: &str,
    refund_request_id: &str,
) -> StoreResult<Option<RefundRow>> {
    let sql = format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE client_id = ?1 AND refund_request_id = ?2{}",
        c.for_update()
    );
    Ok(
        c.query_row(&sql, [client_id, refund_request_id], refund_from_row)
            .optional()?,
    )
}

/// The payments with ids in `[first, last]`, by id (the audit reads them a chunk at a time).
pub fn payments_in_range(c: &Connection, first: &str, last: &str) -> StoreResult<Vec<PaymentRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id BETWEEN ?1 AND ?2 ORDER BY payment_id"
        ),
        [first, last],
        payment_from_row,
    )?;
    Ok(rows)
}

/// The payments with these ids (any order).
pub fn payments_by_ids(c: &Connection, ids: &[&str]) -> StoreResult<Vec<PaymentRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
    let rows = c.query_all_cached(
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id IN ({})",
            marks.join(", ")
        ),
        ids.iter()
            .map(|id| id as &dyn paycode_db::sql::types::ToSql)
            .collect::<Vec<_>>()
            .as_slice(),
        payment_from_row,
    )?;
    Ok(rows)
}

/// The refunds of the payments with ids in `[first, last]`, by payment, then as listed for one.
pub fn refunds_of_payments_in_range(
    c: &Connection,
    first: &str,
    last: &str,
) -> StoreResult<Vec<RefundRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id BETWEEN ?1 AND ?2 \
         ORDER BY payment_id, created_ms, refund_id"
        ),
        [first, last],
        refund_from_row,
    )?;
    Ok(rows)
}

/// The refunds with these ids (any order).
pub fn refunds_by_ids(c: &Connection, ids: &[&str]) -> StoreResult<Vec<RefundRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
    let rows = c.query_all_cached(
        &format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE refund_id IN ({})",
            marks.join(", ")
        ),
        ids.iter()
            .map(|id| id as &dyn paycode_db::sql::types::ToSql)
            .collect::<Vec<_>>()
            .as_slice(),
        refund_from_row,
    )?;
    Ok(rows)
}

pub fn refunds_of_payment(c: &Connection, payment_id: &str) -> StoreResult<Vec<RefundRow>> {
    let rows = c.query_all_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = ?1 ORDER BY created_ms, refund_id"
    ), [payment_id], refund_from_row)?;
    Ok(rows)
}

/// Pushes a refund's next check forward only if it is still as the caller saw it; returns
/// whether this caller won the claim. A refund that became final meanwhile (its check cleared)
/// is left alone, never written back from the caller's stale copy.
pub fn claim_refund_check(
    c: &Connection,
    refund_id: &str,
    seen_next_check_ms: i64,
    lease_until_ms: i64,
) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE refunds SET next_check_ms = ?3 WHERE refund_id = ?1 AND next_check_ms = ?2",
        )?
        .execute(params![refund_id, seen_next_check_ms, lease_until_ms])?;
    Ok(n == 1)
}

pub fn refunds_due(c: &Connection, now_ms: i64, limit: usize) -> StoreResult<Vec<RefundRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE next_check_ms IS NOT NULL \
         AND next_check_ms <= ?1 ORDER BY next_check_ms LIMIT ?2"
        ),
        params![now_ms, limit as i64],
        refund_from_row,
    )?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{conn, payment};

    fn refund(id: &str, payment_id: &str) -> RefundRow {
        RefundRow {
            refund_id: id.to_string(),
            client_id: "client-1".to_string(),
            refund_request_id: format!("req-{id}"),
            request_hash: "hash".to_string(),
            payment_id: payment_id.to_string(),
            amount_minor: 100,
            currency: "SGD".to_string(),
            wallet_amount_minor: 100,
            wallet_currency: "SGD".to_string(),
            settle_minor: 100,
            settle_currency: "SGD".to_string(),
            settlement_quote: None,
            fee_minor: 1,
            state: RefundState::Success,
            result_code: ResultCode::SUCCESS,
            result_message: String::new(),
            reason: None,
            notify_url: None,
            created_ms: 1_780_000_100_000,
            refunded_ms: Some(1_780_000_100_500),
            next_check_ms: None,
        }
    }

    /// Reads `payment_by_id` after `sql` changed the stored row, and checks it against `want`:
    /// `Ok(state)` or a corrupt-row error whose text contains every listed fragment.
    fn check_payment(c: &Connection, sql: &str, want: Result<PaymentState, &[&str]>) {
        c.execute_batch(sql).expect("the test update applies");
        match (payment_by_id(c, "P1"), want) {
            (Ok(Some(p)), Ok(state)) => assert_eq!(p.state, state, "{sql}"),
            (Err(StoreError::Corrupt(why)), Err(fragments)) => {
                for f in fragments {
                    assert!(why.contains(f), "{sql}: {why} lacks {f}");
                }
            }
            (other, want) => panic!("{sql}: got {other:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_payment_reads_back_as_written() {
        let c = conn();
        let mut p = payment("P1");
        insert_payment(&c, &p).unwrap();
        assert_eq!(
            format!("{:?}", payment_by_id(&c, "P1").unwrap().unwrap()),
            format!("{p:?}")
        );
        p.state = PaymentState::Fail(ResultCode::RISK_REJECT);
        p.result_code = ResultCode::RISK_REJECT;
        p.next_check_ms = None;
        update_payment(&c, &p).unwrap();
        let back = payment_by_request_id(&c, "client-1", "req-P1")
            .unwrap()
            .unwrap();
        assert_eq!(format!("{back:?}"), format!("{p:?}"));
        // The on-disk words are the ones every earlier release wrote.
        let stored: (String, String) = c
            .query_row("SELECT status, result_code FROM payments", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(stored, ("FAIL".to_string(), "RISK_REJECT".to_string()));
        assert!(payment_by_id(&c, "P2").unwrap().is_none());
    }

    /// The stored status is one of the four words the acquirer writes; anything else, an unknown
    /// result code or a time out of range fails the read with an error naming row and value.
    #[test]
    fn a_corrupt_stored_payment_is_an_error_naming_the_row() {
        let c = conn();
        insert_payment(&c, &payment("P1")).unwrap();
        let set = |s: &str, code: &str| {
            format!("UPDATE payments SET status = '{s}', result_code = '{code}'")
        };
        check_payment(&c, &set("SUCCESS", "SUCCESS"), Ok(PaymentState::Success));
        check_payment(
            &c,
            &set("CANCELLED", "ORDER_IS_CLOSED"),
            Ok(PaymentState::Cancelled),
        );
        check_payment(
            &c,
            &set("FAIL", "RISK_REJECT"),
            Ok(PaymentState::Fail(ResultCode::RISK_REJECT)),
        );
        check_payment(
            &c,
            &set("PROCESSING", "UNKNOWN_EXCEPTION"),
            Ok(PaymentState::Processing),
        );
        check_payment(
            &c,
            &set("PAID", "SUCCESS"),
            Err(&["payment P1", "\"PAID\""]),
        );
        check_payment(
            &c,
            &set("success", "SUCCESS"),
            Err(&["payment P1", "\"success\""]),
        );
        check_payment(
            &c,
            &set("FAIL", "NO_SUCH_CODE"),
            Err(&["payment P1", "\"NO_SUCH_CODE\""]),
        );
        check_payment(
            &c,
            "UPDATE payments SET status = 'PROCESSING', result_code = 'PAYMENT_IN_PROCESS', \
             paid_ms = -5",
            Err(&["payment P1", "-5"]),
        );
        check_payment(
            &c,
            "UPDATE payments SET paid_ms = NULL, created_ms = 9223372036854775807",
            Err(&["payment P1", "9223372036854775807"]),
        );
        check_payment(
            &c,
            "UPDATE payments SET created_ms = 'soon'",
            Err(&["column 26"]),
        );
        // A list read fails as a whole rather than skipping the corrupt row.
        c.execute_batch("UPDATE payments SET created_ms = 1, next_check_ms = 1, status = 'X'")
            .unwrap();
        match payments_due(&c, 10, 10) {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("payment P1"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_corrupt_stored_refund_is_an_error_naming_the_row() {
        let c = conn();
        insert_payment(&c, &payment("P1")).unwrap();
        insert_refund(&c, &refund("R1", "P1")).unwrap();
        let back = refund_by_id(&c, "R1").unwrap().unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", refund("R1", "P1")));
        for (status, code, want) in [
            (
                "PROCESSING",
                "UNKNOWN_EXCEPTION",
                Some(RefundState::Processing),
            ),
            (
                "FAIL",
                "REFUND_WINDOW_EXCEED",
                Some(RefundState::Fail(ResultCode::REFUND_WINDOW_EXCEED)),
            ),
            ("CANCELLED", "SUCCESS", None),
            ("FAIL", "", None),
        ] {
            c.execute(
                "UPDATE refunds SET status = ?1, result_code = ?2",
                params![status, code],
            )
            .unwrap();
            match (refunds_of_payment(&c, "P1"), want) {
                (Ok(rows), Some(want)) => assert_eq!(rows[0].state, want),
                (Err(StoreError::Corrupt(why)), None) => {
                    assert!(why.contains("refund R1"), "{why}");
                }
                (other, _) => panic!("{status} {code}: {other:?}"),
            }
        }
    }

    #[test]
    fn keys_are_named_in_conflicts() {
        let c = conn();
        insert_payment(&c, &payment("P1")).unwrap();
        let mut same_id = payment("P1");
        same_id.payment_request_id = "req-other".to_string();
        match insert_payment(&c, &same_id) {
            Err(StoreError::Unique { key }) => assert_eq!(key, "payments.payment_id"),
            other => panic!("{other:?}"),
        }
        let mut again = payment("P2");
        again.payment_request_id = "req-P1".to_string();
        match insert_payment(&c, &again) {
            Err(StoreError::Unique { key }) => {
                assert_eq!(key, "payments.client_id, payments.payment_request_id");
            }
            other => panic!("{other:?}"),
        }
        let mut gone = payment("P3");
        gone.state = PaymentState::Success;
        match update_payment(&c, &gone) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "payment P3"),
            other => panic!("{other:?}"),
        }
    }
}
