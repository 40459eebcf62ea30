//! The audit's read-only queries: the stored facts the audit compares, summed by SQL.

use super::StoreError;
use crate::payment_state::PayState;
use paycode_db::sql::Connection;

/// A user's balance and the sum of their ledger rows.
pub(crate) struct UserSums {
    pub name: String,
    pub balance_minor: i64,
    pub ledger_sum_minor: i64,
}

pub(crate) fn user_sums(conn: &Connection) -> Result<Vec<UserSums>, StoreError> {
    let mut st = conn.prepare(
        "SELECT u.name, u.balance_minor, COALESCE((SELECT SUM(l.amount_minor) FROM ledger l \
         WHERE l.user_name = u.name), 0) FROM users u ORDER BY u.name",
    )?;
    let rows = st.query_map([], |r| {
        Ok(UserSums {
            name: r.get(0)?,
            balance_minor: r.get(1)?,
            ledger_sum_minor: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A user's UTC day whose stored daily total differs from the sum of its paid, not reversed
/// payments.
pub(crate) struct DailyMismatch {
    pub user_name: String,
    pub day: i64,
    pub expected_minor: i64,
    pub stored_minor: i64,
}

pub(crate) fn daily_mismatches(conn: &Connection) -> Result<Vec<DailyMismatch>, StoreError> {
    let mut st = conn.prepare(
        "SELECT user_name, day, SUM(expected), SUM(stored) FROM ( \
           SELECT user_name, paid_at_ms / 86400000 AS day, amount_minor AS expected, 0 AS stored \
           FROM payments WHERE state = 'SUCCESS' AND reversed_at_ms IS NULL \
             AND paid_at_ms IS NOT NULL AND user_name IS NOT NULL \
           UNION ALL SELECT user_name, day, 0, paid_minor FROM user_daily) t \
         GROUP BY user_name, day HAVING SUM(expected) != SUM(stored)",
    )?;
    let rows = st.query_map([], |r| {
        Ok(DailyMismatch {
            user_name: r.get(0)?,
            day: r.get(1)?,
            expected_minor: r.get(2)?,
            stored_minor: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A payment with the sums of the ledger and refund rows that name it.
pub(crate) struct PaymentSums {
    pub payment_request_id: String,
    pub state: PayState,
    pub amount_minor: i64,
    pub reversed: bool,
    pub refunded_minor: i64,
    pub debit_minor: i64,
    pub n_debits: i64,
    pub reversal_minor: i64,
    pub refund_credit_minor: i64,
    pub refund_rows_minor: i64,
}

pub(crate) fn payment_sums(conn: &Connection) -> Result<Vec<PaymentSums>, StoreError> {
    let mut st = conn.prepare(
        "SELECT p.payment_request_id, p.state, p.amount_minor, p.reversed_at_ms IS NOT NULL, \
         p.refunded_minor, \
         COALESCE((SELECT SUM(amount_minor) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'PAYMENT'), 0), \
         (SELECT COUNT(*) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'PAYMENT'), \
         COALESCE((SELECT SUM(amount_minor) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'REVERSAL'), 0), \
         COALESCE((SELECT SUM(amount_minor) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'REFUND'), 0), \
         COALESCE((SELECT SUM(amount_minor) FROM refunds r WHERE r.payment_request_id = p.payment_request_id), 0) \
         FROM payments p",
    )?;
    let rows = st.query_map([], |r| {
        Ok(PaymentSums {
            payment_request_id: r.get(0)?,
            state: r.get(1)?,
            amount_minor: r.get(2)?,
            reversed: r.get(3)?,
            refunded_minor: r.get(4)?,
            debit_minor: r.get(5)?,
            n_debits: r.get(6)?,
            reversal_minor: r.get(7)?,
            refund_credit_minor: r.get(8)?,
            refund_rows_minor: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
